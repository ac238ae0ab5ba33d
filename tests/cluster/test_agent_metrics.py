"""The node agent's own /metrics (AgentSpec.metrics_port), as a plain object: no Ray needed."""

from __future__ import annotations

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from migrator.actuation.emulator import NvmlEmulator
from migrator.cluster.agent import TOKEN_ENV, AgentSpec, GpuTarget, NodeAgent
from migrator.errors import ConfigError


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(x.name, frozenset(x.labels.items())): x.value
            for family in text_string_to_metric_families(text) for x in family.samples}


def test_an_agent_serves_its_gpus_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    state = tmp_path / "gpus.json"
    emulator = NvmlEmulator(["A100-40GB", "H100-80GB"], layouts=["", "7g.80gb@0"])
    emulator.save(state)
    agent = NodeAgent(AgentSpec(node="n0", backend="emulator", emulator_state=str(state), metrics_port=0))
    try:
        host, port = agent.metrics_address
        agent.report()
        results = agent.apply({0: GpuTarget("3g.20gb@0,3g.20gb@4"), 1: GpuTarget("1g.10gb@9")}, "s3cret")
        assert isinstance(results[1], str)  # no such placement: refused, counted as a failure
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            values = samples(response.read().decode())
    finally:
        agent.close()
    uuid = {i: f"GPU-{emulator.machine}-0000-0000-0000-emulated{i:04d}" for i in range(2)}
    gpu0 = frozenset({("gpu", "0"), ("gpu_uuid", uuid[0])})
    gpu1 = frozenset({("gpu", "1"), ("gpu_uuid", uuid[1])})
    assert values[("migrator_reconfigurations_total", gpu0)] == 1
    assert values[("migrator_nvml_actions_total", gpu0)] == 4  # two GPU and two compute instances
    assert values[("migrator_failures_total", gpu1 | {("stage", "apply")})] == 1
    assert values[("migrator_gpu_instances", gpu1 | {("model", "H100-80GB")})] == 1
    assert values[("migrator_apply_latency_seconds_count", gpu0)] == 1


def test_an_agent_without_a_port_serves_nothing(tmp_path):
    agent = NodeAgent(AgentSpec(node="n0", backend="emulator", emulator_state=str(tmp_path / "s.json"),
                                gpus=("A100-40GB",)))
    try:
        agent.report()
        assert agent.metrics_address is None
        machine = json.loads((tmp_path / "s.json").read_text())["machine"]  # the state file the agent made
        assert ("migrator_gpu_instances", frozenset({("gpu", "0"), ("model", "A100-40GB"), (
            "gpu_uuid", f"GPU-{machine}-0000-0000-0000-emulated0000")})) in samples(agent.metrics_text())
    finally:
        agent.close()


@pytest.mark.parametrize("port", [-1, 70000, True, "9410"])
def test_a_bad_metrics_port_is_named(tmp_path, port):
    with pytest.raises(ConfigError) as info:
        AgentSpec(node="n0", backend="emulator", emulator_state=str(tmp_path / "s.json"), metrics_port=port)
    assert info.value.field == "metrics_port"
