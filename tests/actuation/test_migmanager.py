"""The mig-manager backend against a fake Kubernetes API server and a simulated mig-manager
(tests/fake_kubernetes.py: the server's semantics, and why a passing test means the
configuration written, read back independently, gives each GPU its target's counts).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from fake_kubernetes import CONFIG_MAP, NAMESPACE, NODE, FakeClock, FakeCluster, counts

from migrator.actuation.emulator import NvmlEmulator
from migrator.actuation.journal import Journal, Transaction, read_journal
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

A100 = "A100-40GB"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # Kubernetes' label-value rule


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(fake_cluster: FakeCluster, node_emulator: NvmlEmulator, clock: FakeClock) -> Iterator[MigManagerBackend]:
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{fake_cluster.port}"
    api_client = kubernetes.client.ApiClient(configuration)
    opened = MigManagerBackend(NODE, reader=NvmlBackend(node_emulator), namespace=NAMESPACE, config_map=CONFIG_MAP,
                               api=kubernetes.client.CoreV1Api(api_client), timeout_s=60, poll_s=2, settle_s=90,
                               clock=clock, sleep=clock.sleep)
    with opened:
        yield opened
    api_client.close()


# -- success ------------------------------------------------------------------------------------


def test_success_writes_the_config_sets_the_label_and_the_gpus_get_the_counts(
        backend: MigManagerBackend, fake_cluster: FakeCluster, node_emulator: NvmlEmulator, clock: FakeClock) -> None:
    targets = {0: "4g.20gb@0,1g.5gb@4,1g.5gb@5,1g.5gb@6", 1: "7g.40gb@0"}
    result = backend.apply_layouts({**targets, 2: ""}, expected={0: "3g.20gb@0,3g.20gb@4", 1: "7g.40gb@0", 2: ""})

    assert result.applied and result.states == ("pending", "success")
    assert result.changed == (0,) and result.previous == "all-disabled"
    assert fake_cluster.node["metadata"]["labels"][CONFIG_LABEL] == result.config
    assert fake_cluster.node["metadata"]["labels"][STATE_LABEL] == "success"
    # The GPUs, read back through NVML, hold the targets' counts; GPU 1 kept its instance.
    assert counts(node_emulator.layout(0)) == counts(targets[0])
    assert node_emulator.layout(1) == "7g.40gb@0" and node_emulator.layout(2) == ""
    assert result.per_gpu[0].after == node_emulator.layout(0) and result.per_gpu[0].changed
    assert not result.per_gpu[1].changed and not result.per_gpu[2].changed and set(result.per_gpu) == {0, 1, 2}
    # The configuration, read with the importer: the named devices only (GPU 2 has MIG off).
    document = fake_cluster.config_document()
    assert document["mig-configs"]["all-disabled"] == [{"devices": "all", "mig-enabled": False}]  # kept
    assert [e["devices"] for e in document["mig-configs"][result.config]] == [[0], [1]]
    # One patch sets the label and removes the old state (an old "success" is no answer).
    node_patches = [body for method, path, body in fake_cluster.writes() if "/nodes/" in path]
    assert node_patches == [{"metadata": {"labels": {CONFIG_LABEL: result.config, STATE_LABEL: None}}}]
    # A new configuration waits for the kubelet to update mig-manager's copy of the ConfigMap.
    assert clock.sleeps[0] == 90


def test_the_config_written_is_what_migrator_mig_parted_export_writes(backend: MigManagerBackend,
                                                                       fake_cluster: FakeCluster) -> None:
    from migrator.actuation.migparted import export_layouts

    targets = {0: "2g.10gb@0,2g.10gb@2,3g.20gb@4", 1: "3g.20gb@0,3g.20gb@4"}
    result = backend.apply_layouts(targets)
    assert fake_cluster.config_document()["mig-configs"][result.config] == export_layouts([targets[0], targets[1]])


def test_nothing_to_change_writes_nothing(backend: MigManagerBackend, fake_cluster: FakeCluster) -> None:
    # Same counts, other placements: mig-parted cannot move instances, so nothing to do.
    result = backend.apply_layouts({0: "3g.20gb@4,3g.20gb@0", 1: "7g.40gb@0"})
    assert not result.applied and result.changed == () and fake_cluster.writes() == []


def test_dry_run_describes_mig_parted_clearing_the_gpu(backend: MigManagerBackend, fake_cluster: FakeCluster,
                                                        node_emulator: NvmlEmulator) -> None:
    result = backend.apply_layouts({0: "7g.40gb@0"}, dry_run=True)
    assert not result.applied and fake_cluster.writes() == [] and node_emulator.layout(0) == "3g.20gb@0,3g.20gb@4"
    kinds = [a.kind for a in result.per_gpu[0].reconfiguration.actions]
    assert kinds == ["destroy_ci", "destroy_gi", "destroy_ci", "destroy_gi", "create_gi", "create_ci"]
    assert result.per_gpu[0].dry_run and result.per_gpu[0].executed == 0


def test_the_previous_config_is_kept_and_older_ones_pruned(backend: MigManagerBackend,
                                                           fake_cluster: FakeCluster) -> None:
    first = backend.apply_layouts({0: "7g.40gb@0"}).config
    second = backend.apply_layouts({0: "4g.20gb@0,3g.20gb@4"}).config
    assert {first, second} <= set(fake_cluster.config_document()["mig-configs"])
    third = backend.apply_layouts({0: "1g.5gb@0"}).config
    names = set(fake_cluster.config_document()["mig-configs"])
    assert names == {"all-disabled", second, third}


def test_a_write_that_loses_a_race_is_merged_again(backend: MigManagerBackend, fake_cluster: FakeCluster) -> None:
    fake_cluster.races = 2
    result = backend.apply_layouts({0: "7g.40gb@0"})
    names = set(fake_cluster.config_document()["mig-configs"])
    assert {"all-disabled", "migrator-othernode-1", result.config} <= names
    patches = [r for r in fake_cluster.writes() if "/configmaps/" in r[1]]
    assert len(patches) == 3  # two refused with 409, the third merged over the other agent's write


# -- failure, timeout, forbidden ----------------------------------------------------------------


def test_failed_is_a_named_error(backend: MigManagerBackend, fake_cluster: FakeCluster) -> None:
    fake_cluster.behaviour = "failed"
    with pytest.raises(MigManagerFailed) as info:
        backend.apply_layouts({0: "7g.40gb@0"})
    assert info.value.state == "failed" and info.value.node == NODE
    assert info.value.config == fake_cluster.node["metadata"]["labels"][CONFIG_LABEL]
    assert info.value.layouts == {0: "3g.20gb@0,3g.20gb@4"}


def test_after_failed_the_same_layouts_are_asked_for_under_a_second_name(backend: MigManagerBackend,
                                                                         fake_cluster: FakeCluster,
                                                                         node_emulator: NvmlEmulator) -> None:
    # Setting the label to the value it has is no change: mig-manager would never act again.
    fake_cluster.behaviour = "failed"
    with pytest.raises(MigManagerFailed) as info:
        backend.apply_layouts({0: "7g.40gb@0"})
    fake_cluster.behaviour = "success"
    result = backend.apply_layouts({0: "7g.40gb@0"})
    assert result.previous == info.value.config != result.config and result.states == ("pending", "success")
    assert node_emulator.layout(0) == "7g.40gb@0"
    assert set(fake_cluster.config_document()["mig-configs"]) == {"all-disabled", info.value.config, result.config}


def test_timeout_is_a_named_error_after_timeout_s(backend: MigManagerBackend, fake_cluster: FakeCluster,
                                                  clock: FakeClock) -> None:
    fake_cluster.behaviour = "silent"
    with pytest.raises(MigManagerTimeout) as info:
        backend.apply_layouts({0: "7g.40gb@0"})
    assert info.value.state is None and info.value.timeout_s == 60
    assert "is nvidia-mig-manager running" in str(info.value)
    polls = [r for r in fake_cluster.requests if r[0] == "GET" and "/nodes/" in r[1]]
    assert len(polls) == 1 + 60 // 2 + 1  # the label read before, then one per poll_s until the deadline
    assert clock.now == 90 + 60


@pytest.mark.parametrize("method, kind", [("PATCH", "configmaps"), ("GET", "configmaps"), ("PATCH", "nodes"),
                                          ("GET", "nodes")])
def test_forbidden_names_the_missing_rule(backend: MigManagerBackend, fake_cluster: FakeCluster, method: str,
                                          kind: str) -> None:
    fake_cluster.forbidden.add((method, kind))
    with pytest.raises(KubernetesForbidden) as info:
        backend.apply_layouts({0: "7g.40gb@0"})
    assert info.value.verb == {"PATCH": "patch", "GET": "get"}[method] and info.value.resource == kind
    assert info.value.namespace == (NAMESPACE if kind == "configmaps" else None)
    assert "deploy/mig-manager-rbac.yaml" in str(info.value)
    assert fake_cluster.node["metadata"]["labels"][CONFIG_LABEL] == "all-disabled"  # the node was not relabelled


def test_missing_config_map_says_how_to_create_it(backend: MigManagerBackend, fake_cluster: FakeCluster) -> None:
    fake_cluster.missing_config_map = True
    with pytest.raises(MigManagerError, match="migManager.config.name"):
        backend.apply_layouts({0: "7g.40gb@0"})


def test_someone_else_changing_the_label_while_waiting_is_an_error(backend: MigManagerBackend,
                                                                   fake_cluster: FakeCluster) -> None:
    fake_cluster.behaviour = "silent"
    original = fake_cluster.mig_manager

    def relabel() -> None:
        fake_cluster.node["metadata"]["labels"][CONFIG_LABEL] = "all-1g.5gb"

    fake_cluster.mig_manager = relabel  # type: ignore[method-assign]
    with pytest.raises(MigManagerError, match="someone else manages"):
        backend.apply_layouts({0: "7g.40gb@0"})
    fake_cluster.mig_manager = original  # type: ignore[method-assign]


# -- the journal --------------------------------------------------------------------------------


def journaled(path: Path) -> dict[int, Transaction]:
    transactions = read_journal(path)
    assert all(not t.problems() for t in transactions)
    return {t.gpu: t for t in transactions}


def test_each_changing_gpu_is_one_committed_transaction(backend: MigManagerBackend, node_emulator: NvmlEmulator,
                                                        tmp_path: Path) -> None:
    with Journal(tmp_path / "j.jsonl") as journal:
        backend.apply_layouts({0: "7g.40gb@0", 1: "7g.40gb@0"}, journal=journal)
    (txn,) = journaled(tmp_path / "j.jsonl").values()  # GPU 1 did not change: no transaction
    assert (txn.gpu, txn.status, txn.current, txn.target) == (0, "committed", "3g.20gb@0,3g.20gb@4", "7g.40gb@0")
    assert txn.layout == node_emulator.layout(0) and txn.records[-1]["via"] == "mig-manager"
    assert [a["kind"] for a in txn.actions] == ["destroy_ci", "destroy_gi", "destroy_ci", "destroy_gi", "create_gi",
                                                "create_ci"]


@pytest.mark.parametrize("behaviour, status", [("failed", "aborted"), ("silent", "open"), ("forbidden", "aborted"),
                                              ("success, GPUs unchanged", "aborted")])
def test_a_transaction_ends_as_what_the_gpu_is_known_to_hold(backend: MigManagerBackend, fake_cluster: FakeCluster,
                                                             tmp_path: Path, behaviour: str, status: str) -> None:
    # failed, or success with other counts: the GPUs were read after it; forbidden: the label
    # was never set, so nothing changed; a timeout: mig-manager may still be changing the GPU.
    if behaviour == "forbidden":
        fake_cluster.forbidden.add(("PATCH", "nodes"))
    elif behaviour == "success, GPUs unchanged":
        labels = fake_cluster.node["metadata"]["labels"]
        fake_cluster.mig_manager = lambda: labels.update({STATE_LABEL: "success"})  # type: ignore[method-assign]
    else:
        fake_cluster.behaviour = behaviour
    with Journal(tmp_path / "j.jsonl") as journal, pytest.raises(MigManagerError) as info:
        backend.apply_layouts({0: "7g.40gb@0"}, journal=journal)
    txn = journaled(tmp_path / "j.jsonl")[0]
    assert txn.status == status
    if status == "aborted":
        assert txn.layout == "3g.20gb@0,3g.20gb@4" and txn.records[-1]["error"] == str(info.value)


# -- refused before anything is written ---------------------------------------------------------


def test_busy_instances_on_a_gpu_that_changes_are_refused_unless_force(
        backend: MigManagerBackend, fake_cluster: FakeCluster, node_emulator: NvmlEmulator) -> None:
    # The 3g.20gb@0 instance stays in the target, but mig-parted recreates the whole GPU.
    node_emulator.set_processes(0, node_emulator.gi_id(0, "3g.20gb@0"), [4242])
    with pytest.raises(InstanceBusy) as info:
        backend.apply_layouts({0: "3g.20gb@0,2g.10gb@4"})
    assert info.value.pids == (4242,) and fake_cluster.writes() == []
    node_emulator.set_processes(0, node_emulator.gi_id(0, "3g.20gb@0"), [])
    assert backend.apply_layouts({0: "3g.20gb@0,2g.10gb@4"}, force=True).applied


def test_an_external_change_is_refused(backend: MigManagerBackend, fake_cluster: FakeCluster) -> None:
    with pytest.raises(ExternalChange):
        backend.apply_layouts({0: "7g.40gb@0"}, expected={0: "7g.40gb@0"})
    assert fake_cluster.writes() == []


def test_mig_mode_is_never_switched(backend: MigManagerBackend, fake_cluster: FakeCluster) -> None:
    with pytest.raises(MigModeDisabled):
        backend.apply_layouts({2: "7g.40gb@0"})
    result = backend.apply_layouts({2: ""})  # left out of the configuration: it would switch MIG on
    assert not result.applied and result.per_gpu[2].after == "" and not result.per_gpu[2].changed
    assert fake_cluster.writes() == []


@pytest.mark.parametrize("targets", [{}, {3: ""}, {-1: ""}, {True: ""}])
def test_bad_targets_name_the_field(backend: MigManagerBackend, targets: dict[Any, str]) -> None:
    with pytest.raises(ConfigError) as info:
        backend.apply_layouts(targets)
    assert info.value.field == "targets"


def test_per_gpu_nvml_apply_is_refused_before_any_action(backend: MigManagerBackend,
                                                         node_emulator: NvmlEmulator) -> None:
    with pytest.raises(ConfigError, match="apply_layouts"):
        apply(backend, 0, "7g.40gb@0")  # type: ignore[arg-type]
    assert node_emulator.layout(0) == "3g.20gb@0,3g.20gb@4"


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
def test_bad_settings_name_the_field(node_emulator: NvmlEmulator, field: str, value: Any) -> None:
    settings: dict[str, Any] = {"node": NODE, "reader": NvmlBackend(node_emulator), "api": object(), field: value}
    node = settings.pop("node")
    with pytest.raises(ConfigError) as info:
        MigManagerBackend(node, **settings)
    assert info.value.field == field
