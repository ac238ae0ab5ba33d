"""A fake Kubernetes API server and a simulated GPU Operator mig-manager, for the tests of
the mig-manager backend (tests/actuation/test_migmanager.py) and of ``migrator run --backend
mig-manager`` through the CLI (tests/actuation/test_migmanager_run.py).

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
from pathlib import Path
from typing import Any, Sequence

import yaml

from migrator.actuation.emulator import NvmlEmulator
from migrator.actuation.migmanager import CONFIG_KEY, CONFIG_LABEL, STATE_LABEL
from migrator.actuation.migparted import import_config
from migrator.geometry.geometry import Geometry

NODE = "gpu-node-7"
NAMESPACE = "gpu-operator"
CONFIG_MAP = "migrator-mig-parted-config"
A100 = "A100-40GB"
# What the operator's default ConfigMap starts with; the backend must keep it.
INITIAL = "version: v1\nmig-configs:\n  all-disabled:\n    - devices: all\n      mig-enabled: false\n"


def counts(layout: str) -> dict[str, int]:
    return dict(Counter(p.split("@")[0] for p in layout.split(",") if p))


# -- the fake cluster ---------------------------------------------------------------------------


class FakeCluster:
    """One Node and one ConfigMap behind the API server's REST paths, and the node's
    simulated mig-manager (``behaviour``: ``success``, ``failed``, or ``silent``: never
    answers, as on a node where mig-manager does not run)."""

    def __init__(self, emulator: NvmlEmulator, geometries: Sequence[Geometry], behaviour: str = "success") -> None:
        self.emulator = emulator
        self.geometries = list(geometries)  # the emulator's GPUs, for the importer
        self.port = 0  # set by serve()
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
        for target in import_config(document, wanted, self.geometries):
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
    cluster.port = server.server_address[1]
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


def write_kubeconfig(path: Path, port: int) -> Path:
    """A kubeconfig that points the official client at the fake server (plain HTTP, no
    credentials): what ``KUBECONFIG`` names for a command that builds its own client."""
    document = {
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }
    path.write_text(yaml.safe_dump(document))
    return path
