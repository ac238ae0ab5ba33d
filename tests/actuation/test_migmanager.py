"""The mig-manager backend against a fake Kubernetes API server and a simulated mig-manager.

The server (an http.server thread on 127.0.0.1) answers the four REST calls the backend makes
through the official client (read/patch a ConfigMap, read/patch a Node) with Kubernetes'
semantics that matter here: JSON merge of the patch, ``null`` deleting a label, the
``resourceVersion`` precondition (409), 403 and 404 as ``Status`` objects. Its simulated
mig-manager does what NVIDIA's does (NVIDIA/mig-parted pkg/mig/reconfigure/reconfigure.go):
on a new ``nvidia.com/mig.config`` it writes ``pending``, then reads the named configuration
from the ConfigMap *with migrator's own importer* and recreates each named GPU's instances in
the emulator (as mig-parted clears and recreates), then writes ``success``. So a passing test
means the configuration the backend wrote, read back independently, gives each GPU its
target's counts.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
import yaml

from migrator.actuation.emulator import NvmlEmulator
from migrator.actuation.migmanager import (
    CONFIG_KEY,
    CONFIG_LABEL,
    STATE_LABEL,
    KubernetesForbidden,
    MigManagerBackend,
    MigManagerError,
    MigManagerFailed,
    MigManagerTimeout,
    config_name,
    merge_config,
    node_config,
)
from migrator.actuation.migparted import import_config
from migrator.actuation.nvml import NvmlBackend
from migrator.actuation.reconfig import apply
from migrator.errors import ConfigError, ExternalChange, InstanceBusy, MigModeDisabled
from migrator.geometry.geometry import Geometry

kubernetes = pytest.importorskip("kubernetes")

NODE = "gpu-node-7"
NAMESPACE = "gpu-operator"
CONFIG_MAP = "migrator-mig-parted-config"
A100 = "A100-40GB"
# What the operator's default ConfigMap starts with; the backend must keep it.
INITIAL = "version: v1\nmig-configs:\n  all-disabled:\n    - devices: all\n      mig-enabled: false\n"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # Kubernetes' label-value rule


def counts(layout: str) -> dict[str, int]:
    return dict(Counter(p.split("@")[0] for p in layout.split(",") if p))


# -- the fake cluster ---------------------------------------------------------------------------


class FakeCluster:
    """One Node and one ConfigMap behind the API server's REST paths, and the node's
    simulated mig-manager (``behaviour``: ``success``, ``failed``, or ``silent``: never
    answers, as on a node where mig-manager does not run)."""

    def __init__(self, emulator: NvmlEmulator, behaviour: str = "success") -> None:
        self.emulator = emulator
        self.behaviour = behaviour
        self.lock = threading.Lock()
        self.node: dict[str, Any] = {"metadata": {"name": NODE, "resourceVersion": "1", "labels": {
            "nvidia.com/mig.capable": "true", CONFIG_LABEL: "all-disabled", STATE_LABEL: "success"}}}
        self.config_map: dict[str, Any] = {"metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE,
                                                        "resourceVersion": "1"}, "data": {CONFIG_KEY: INITIAL}}
        self.requests: list[tuple[str, str, Any]] = []
        self.forbidden: set[tuple[str, str]] = set()  # (method, "nodes" | "configmaps")
        self.missing_config_map = False
        self.races = 0  # ConfigMap writes another agent slips in before ours
        self.handled: str | None = "all-disabled"  # what the node was labelled with at the start
        self.step = 0

    # -- REST --------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append((method, path, body))
            node = re.fullmatch(r"/api/v1/nodes/([^/?]+)", path)
            cm = re.fullmatch(r"/api/v1/namespaces/([^/]+)/configmaps/([^/?]+)", path)
            kind = "nodes" if node else "configmaps" if cm else None
            if kind is None:
                return 404, status(404, "NotFound", f"no route {path}")
            if (method, kind) in self.forbidden:
                return 403, status(403, "Forbidden", f'{kind} is forbidden: User "system:serviceaccount:migrator:'
                                   f'migrator-mig-manager" cannot {method.lower()} resource "{kind}"')
            if node:
                if node.group(1) != NODE:
                    return 404, status(404, "NotFound", f'nodes "{node.group(1)}" not found')
                if method == "GET":
                    self.mig_manager()
                    return 200, {"apiVersion": "v1", "kind": "Node", **json.loads(json.dumps(self.node))}
                return self.patch(self.node, body, "Node")
            if self.missing_config_map or cm.group(2) != CONFIG_MAP or cm.group(1) != NAMESPACE:
                return 404, status(404, "NotFound", f'configmaps "{cm.group(2)}" not found')
            if method == "GET":
                return 200, {"apiVersion": "v1", "kind": "ConfigMap", **json.loads(json.dumps(self.config_map))}
            if self.races:
                self.races -= 1
                self.other_agent_writes()
            return self.patch(self.config_map, body, "ConfigMap")

    def patch(self, obj: dict[str, Any], body: Any, kind: str) -> tuple[int, dict[str, Any]]:
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            return 409, status(409, "Conflict", "the object has been modified; please apply your changes to the "
                                                "latest version and try again")
        body = json.loads(json.dumps(body))
        body.get("metadata", {}).pop("resourceVersion", None)
        merge(obj, body)
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
        return 200, {"apiVersion": "v1", "kind": kind, **obj}

    def other_agent_writes(self) -> None:
        document = yaml.safe_load(self.config_map["data"][CONFIG_KEY])
        document["mig-configs"]["migrator-othernode-1"] = [
            {"devices": [0], "mig-enabled": True, "mig-devices": {"7g.40gb": 1}}]
        self.config_map["data"][CONFIG_KEY] = yaml.safe_dump(document)
        self.config_map["metadata"]["resourceVersion"] = str(int(self.config_map["metadata"]["resourceVersion"]) + 1)

    # -- the simulated mig-manager -----------------------------------------------------------

    def mig_manager(self) -> None:
        """One step per read of the node: a new label -> pending -> applied."""
        labels = self.node["metadata"]["labels"]
        wanted = labels.get(CONFIG_LABEL)
        if wanted == self.handled or self.behaviour == "silent":
            return
        if labels.get(STATE_LABEL) != "pending":
            labels[STATE_LABEL] = "pending"
            return
        self.handled = wanted
        if self.behaviour == "failed":
            labels[STATE_LABEL] = "failed"
            return
        document = yaml.safe_load(self.config_map["data"][CONFIG_KEY])
        geometries = [Geometry.for_gpu(A100)] * 3
        for target in import_config(document, wanted, geometries):
            self.emulator.set_layout(target.index, target.layout)  # cleared and recreated, as mig-parted does
        labels[STATE_LABEL] = "success"

    def writes(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] != "GET"]

    def config_document(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_map["data"][CONFIG_KEY])


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": message, "reason": reason,
            "code": code}


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386), which a strategic merge patch is for maps of strings."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def serve(cluster: FakeCluster) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.answer("GET")

        def do_PATCH(self) -> None:  # noqa: N802
            self.answer("PATCH")

        def answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if method == "PATCH":
                assert self.headers["Content-Type"] in ("application/strategic-merge-patch+json",
                                                        "application/merge-patch+json"), self.headers["Content-Type"]
            code, document = cluster.handle(method, self.path.split("?")[0], body)
            data = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


class FakeClock:
    """Time that passes only when the backend sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def emulator() -> NvmlEmulator:
    return NvmlEmulator([A100, A100, A100], layouts=["3g.20gb@0,3g.20gb@4", "7g.40gb@0", ""],
                        mig_enabled=[True, True, False])


@pytest.fixture
def cluster(emulator: NvmlEmulator) -> Iterator[FakeCluster]:
    fake = FakeCluster(emulator)
    server = serve(fake)
    fake.port = server.server_address[1]  # type: ignore[attr-defined]
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(cluster: FakeCluster, emulator: NvmlEmulator, clock: FakeClock) -> Iterator[MigManagerBackend]:
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{cluster.port}"  # type: ignore[attr-defined]
    api_client = kubernetes.client.ApiClient(configuration)
    opened = MigManagerBackend(NODE, reader=NvmlBackend(emulator), namespace=NAMESPACE, config_map=CONFIG_MAP,
                               api=kubernetes.client.CoreV1Api(api_client), timeout_s=60, poll_s=2, settle_s=90,
                               clock=clock, sleep=clock.sleep)
    with opened:
        yield opened
    api_client.close()


# -- success ------------------------------------------------------------------------------------


def test_success_writes_the_config_sets_the_label_and_the_gpus_get_the_counts(
        backend: MigManagerBackend, cluster: FakeCluster, emulator: NvmlEmulator, clock: FakeClock) -> None:
    targets = {0: "4g.20gb@0,1g.5gb@4,1g.5gb@5,1g.5gb@6", 1: "7g.40gb@0"}
    result = backend.apply_layouts({**targets, 2: ""}, expected={0: "3g.20gb@0,3g.20gb@4", 1: "7g.40gb@0", 2: ""})

    assert result.applied and result.states == ("pending", "success")
    assert result.changed == (0,) and result.previous == "all-disabled"
    assert cluster.node["metadata"]["labels"][CONFIG_LABEL] == result.config
    assert cluster.node["metadata"]["labels"][STATE_LABEL] == "success"
    # The GPUs, read back through NVML, hold the targets' counts; GPU 1 kept its instance.
    assert counts(emulator.layout(0)) == counts(targets[0])
    assert emulator.layout(1) == "7g.40gb@0" and emulator.layout(2) == ""
    assert result.per_gpu[0].after == emulator.layout(0) and result.per_gpu[0].changed
    assert not result.per_gpu[1].changed and not result.per_gpu[2].changed and set(result.per_gpu) == {0, 1, 2}
    # The configuration, read with the importer: the named devices only (GPU 2 has MIG off).
    document = cluster.config_document()
    assert document["mig-configs"]["all-disabled"] == [{"devices": "all", "mig-enabled": False}]  # kept
    assert [e["devices"] for e in document["mig-configs"][result.config]] == [[0], [1]]
    # One patch sets the label and removes the old state (an old "success" is no answer).
    node_patches = [body for method, path, body in cluster.writes() if "/nodes/" in path]
    assert node_patches == [{"metadata": {"labels": {CONFIG_LABEL: result.config, STATE_LABEL: None}}}]
    # A new configuration waits for the kubelet to update mig-manager's copy of the ConfigMap.
    assert clock.sleeps[0] == 90


def test_the_config_written_is_what_migrator_mig_parted_export_writes(backend: MigManagerBackend,
                                                                       cluster: FakeCluster) -> None:
    from migrator.actuation.migparted import export_layouts

    targets = {0: "2g.10gb@0,2g.10gb@2,3g.20gb@4", 1: "3g.20gb@0,3g.20gb@4"}
    result = backend.apply_layouts(targets)
    assert cluster.config_document()["mig-configs"][result.config] == export_layouts([targets[0], targets[1]])


def test_nothing_to_change_writes_nothing(backend: MigManagerBackend, cluster: FakeCluster) -> None:
    # Same counts, other placements: mig-parted cannot move instances, so nothing to do.
    result = backend.apply_layouts({0: "3g.20gb@4,3g.20gb@0", 1: "7g.40gb@0"})
    assert not result.applied and result.changed == () and cluster.writes() == []


def test_dry_run_describes_mig_parted_clearing_the_gpu(backend: MigManagerBackend, cluster: FakeCluster,
                                                        emulator: NvmlEmulator) -> None:
    result = backend.apply_layouts({0: "7g.40gb@0"}, dry_run=True)
    assert not result.applied and cluster.writes() == [] and emulator.layout(0) == "3g.20gb@0,3g.20gb@4"
    kinds = [a.kind for a in result.per_gpu[0].reconfiguration.actions]
    assert kinds == ["destroy_ci", "destroy_gi", "destroy_ci", "destroy_gi", "create_gi", "create_ci"]
    assert result.per_gpu[0].dry_run and result.per_gpu[0].executed == 0


def test_the_previous_config_is_kept_and_older_ones_pruned(backend: MigManagerBackend, cluster: FakeCluster) -> None:
    first = backend.apply_layouts({0: "7g.40gb@0"}).config
    second = backend.apply_layouts({0: "4g.20gb@0,3g.20gb@4"}).config
    assert {first, second} <= set(cluster.config_document()["mig-configs"])
    third = backend.apply_layouts({0: "1g.5gb@0"}).config
    names = set(cluster.config_document()["mig-configs"])
    assert names == {"all-disabled", second, third}


def test_a_write_that_loses_a_race_is_merged_again(backend: MigManagerBackend, cluster: FakeCluster) -> None:
    cluster.races = 2
    result = backend.apply_layouts({0: "7g.40gb@0"})
    names = set(cluster.config_document()["mig-configs"])
    assert {"all-disabled", "migrator-othernode-1", result.config} <= names
    patches = [r for r in cluster.writes() if "/configmaps/" in r[1]]
    assert len(patches) == 3  # two refused with 409, the third merged over the other agent's write


# -- failure, timeout, forbidden ----------------------------------------------------------------


def test_failed_is_a_named_error(backend: MigManagerBackend, cluster: FakeCluster) -> None:
    cluster.behaviour = "failed"
    with pytest.raises(MigManagerFailed) as info:
        backend.apply_layouts({0: "7g.40gb@0"})
    assert info.value.state == "failed" and info.value.node == NODE
    assert info.value.config == cluster.node["metadata"]["labels"][CONFIG_LABEL]
    assert info.value.layouts == {0: "3g.20gb@0,3g.20gb@4"}


def test_timeout_is_a_named_error_after_timeout_s(backend: MigManagerBackend, cluster: FakeCluster,
                                                  clock: FakeClock) -> None:
    cluster.behaviour = "silent"
    with pytest.raises(MigManagerTimeout) as info:
        backend.apply_layouts({0: "7g.40gb@0"})
    assert info.value.state is None and info.value.timeout_s == 60
    assert "is nvidia-mig-manager running" in str(info.value)
    polls = [r for r in cluster.requests if r[0] == "GET" and "/nodes/" in r[1]]
    assert len(polls) == 1 + 60 // 2 + 1  # the label read before, then one per poll_s until the deadline
    assert clock.now == 90 + 60


@pytest.mark.parametrize("method, kind", [("PATCH", "configmaps"), ("GET", "configmaps"), ("PATCH", "nodes"),
                                          ("GET", "nodes")])
def test_forbidden_names_the_missing_rule(backend: MigManagerBackend, cluster: FakeCluster, method: str,
                                          kind: str) -> None:
    cluster.forbidden.add((method, kind))
    with pytest.raises(KubernetesForbidden) as info:
        backend.apply_layouts({0: "7g.40gb@0"})
    assert info.value.verb == {"PATCH": "patch", "GET": "get"}[method] and info.value.resource == kind
    assert info.value.namespace == (NAMESPACE if kind == "configmaps" else None)
    assert "deploy/mig-manager-rbac.yaml" in str(info.value)
    assert cluster.node["metadata"]["labels"][CONFIG_LABEL] == "all-disabled"  # the node was not relabelled


def test_missing_config_map_says_how_to_create_it(backend: MigManagerBackend, cluster: FakeCluster) -> None:
    cluster.missing_config_map = True
    with pytest.raises(MigManagerError, match="migManager.config.name"):
        backend.apply_layouts({0: "7g.40gb@0"})


def test_someone_else_changing_the_label_while_waiting_is_an_error(backend: MigManagerBackend,
                                                                   cluster: FakeCluster) -> None:
    cluster.behaviour = "silent"
    original = cluster.mig_manager

    def relabel() -> None:
        cluster.node["metadata"]["labels"][CONFIG_LABEL] = "all-1g.5gb"

    cluster.mig_manager = relabel  # type: ignore[method-assign]
    with pytest.raises(MigManagerError, match="someone else manages"):
        backend.apply_layouts({0: "7g.40gb@0"})
    cluster.mig_manager = original  # type: ignore[method-assign]


# -- refused before anything is written ---------------------------------------------------------


def test_busy_instances_on_a_gpu_that_changes_are_refused_unless_force(
        backend: MigManagerBackend, cluster: FakeCluster, emulator: NvmlEmulator) -> None:
    # The 3g.20gb@0 instance stays in the target, but mig-parted recreates the whole GPU.
    emulator.set_processes(0, emulator.gi_id(0, "3g.20gb@0"), [4242])
    with pytest.raises(InstanceBusy) as info:
        backend.apply_layouts({0: "3g.20gb@0,2g.10gb@4"})
    assert info.value.pids == (4242,) and cluster.writes() == []
    emulator.set_processes(0, emulator.gi_id(0, "3g.20gb@0"), [])
    assert backend.apply_layouts({0: "3g.20gb@0,2g.10gb@4"}, force=True).applied


def test_an_external_change_is_refused(backend: MigManagerBackend, cluster: FakeCluster) -> None:
    with pytest.raises(ExternalChange):
        backend.apply_layouts({0: "7g.40gb@0"}, expected={0: "7g.40gb@0"})
    assert cluster.writes() == []


def test_mig_mode_is_never_switched(backend: MigManagerBackend, cluster: FakeCluster) -> None:
    with pytest.raises(MigModeDisabled):
        backend.apply_layouts({2: "7g.40gb@0"})
    result = backend.apply_layouts({2: ""})  # left out of the configuration: it would switch MIG on
    assert not result.applied and result.per_gpu[2].after == "" and not result.per_gpu[2].changed
    assert cluster.writes() == []


@pytest.mark.parametrize("targets", [{}, {3: ""}, {-1: ""}, {True: ""}])
def test_bad_targets_name_the_field(backend: MigManagerBackend, targets: dict[Any, str]) -> None:
    with pytest.raises(ConfigError) as info:
        backend.apply_layouts(targets)
    assert info.value.field == "targets"


def test_per_gpu_nvml_apply_is_refused_before_any_action(backend: MigManagerBackend, emulator: NvmlEmulator) -> None:
    with pytest.raises(ConfigError, match="apply_layouts"):
        apply(backend, 0, "7g.40gb@0")  # type: ignore[arg-type]
    assert emulator.layout(0) == "3g.20gb@0,3g.20gb@4"


# -- the pure parts -----------------------------------------------------------------------------


def test_node_config_names_only_the_targets_and_imports_back() -> None:
    targets = {1: "3g.20gb@0,3g.20gb@4", 3: "3g.20gb@4,3g.20gb@0", 4: "7g.40gb@0"}
    entries = node_config(targets)
    assert entries == [{"devices": [1, 3], "mig-enabled": True, "mig-devices": {"3g.20gb": 2}},
                       {"devices": [4], "mig-enabled": True, "mig-devices": {"7g.40gb": 1}}]
    geometry = Geometry.for_gpu(A100)
    back = import_config({"version": "v1", "mig-configs": {"c": entries}}, "c", [geometry] * 5)
    assert {t.index: dict(t.counts) for t in back} == {d: counts(t) for d, t in targets.items()}


def test_config_names_are_label_values_that_change_with_content_and_node() -> None:
    entries = node_config({0: "7g.40gb@0"})
    name = config_name("n" * 253, entries)
    assert len(name) <= 63 and LABEL_VALUE.match(name)
    assert config_name("a", entries) != config_name("b", entries)
    assert config_name("a", entries) != config_name("a", node_config({0: "1g.5gb@0"}))
    assert config_name("a", entries) == config_name("a", node_config({0: "7g.40gb@0"}))


@pytest.mark.parametrize("text", ["version: v2\nmig-configs: {}\n", "[1, 2]\n", "mig-configs: [1]\n", "a: [\n"])
def test_a_config_map_that_is_no_mig_parted_document_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        merge_config(text, NODE, "migrator-x", [])
    assert info.value.field.startswith(CONFIG_KEY)


@pytest.mark.parametrize("field, value", [("node", ""), ("namespace", None), ("timeout_s", -1), ("poll_s", True),
                                          ("settle_s", float("nan"))])
def test_bad_settings_name_the_field(emulator: NvmlEmulator, field: str, value: Any) -> None:
    settings: dict[str, Any] = {"node": NODE, "reader": NvmlBackend(emulator), "api": object(), field: value}
    node = settings.pop("node")
    with pytest.raises(ConfigError) as info:
        MigManagerBackend(node, **settings)
    assert info.value.field == field
