"""Fixtures shared by the mig-manager tests: a node's emulated GPUs and the fake Kubernetes
API server with its simulated mig-manager over them (tests/fake_kubernetes.py). A test
module that needs other GPUs overrides ``node_emulator``; ``fake_cluster`` then serves those."""

from __future__ import annotations

from typing import Iterator

import pytest
from fake_kubernetes import A100, FakeCluster, serve

from migrator.actuation.emulator import NvmlEmulator
from migrator.actuation.nvml import NvmlBackend


@pytest.fixture
def node_emulator() -> NvmlEmulator:
    """Three A100s: two MIG layouts and one GPU with MIG off."""
    return NvmlEmulator([A100, A100, A100], layouts=["3g.20gb@0,3g.20gb@4", "7g.40gb@0", ""],
                        mig_enabled=[True, True, False])


@pytest.fixture
def fake_cluster(node_emulator: NvmlEmulator) -> Iterator[FakeCluster]:
    """The node and the ConfigMap behind a fake API server on 127.0.0.1 (``.port``)."""
    reader = NvmlBackend(node_emulator).open()
    geometries = [reader.geometry(d) for d in range(reader.device_count())]
    reader.close()
    fake = FakeCluster(node_emulator, geometries)
    server = serve(fake)
    yield fake
    server.shutdown()
    server.server_close()
