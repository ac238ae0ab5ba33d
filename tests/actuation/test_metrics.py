"""migrator.actuation.metrics: prometheus_client metrics in a registry of their own, served on
/metrics and written as a textfile; checked with prometheus_client's own parser."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import migrator
from migrator.actuation.metrics import Metrics, serve_metrics
from migrator.actuation.nvml import GpuState
from migrator.cli import main


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(x.name, frozenset(x.labels.items())): x.value
            for family in text_string_to_metric_families(text) for x in family.samples}


def scrape(server: Any, path: str = "/metrics") -> str:
    host, port = server.server_address[:2]
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
        return response.read().decode()


@dataclass
class _Result:  # the fields of ApplyResult the metrics read
    duration_s: float
    changed: bool
    executed: int


def _state(index: int, uuid: str, instances: int = 2) -> GpuState:
    return GpuState(index, "NVIDIA A100-SXM4-40GB", "A100-40GB", True, True, (None,) * instances, uuid)  # type: ignore[arg-type]


def test_each_metrics_object_has_its_own_registry():
    one, two = Metrics(), Metrics()
    one.record_decision(0.2)
    assert samples(one.render())[("migrator_decisions_total", frozenset())] == 1
    assert samples(two.render())[("migrator_decisions_total", frozenset())] == 0
    assert REGISTRY.get_sample_value("migrator_decisions_total") is None  # never the global registry


def test_gpu_samples_are_labelled_by_index_and_uuid():
    m = Metrics()
    m.record_state(_state(3, "GPU-abc"))
    m.record_apply(3, _Result(0.05, True, 4))
    m.record_apply(3, _Result(0.01, False, 0))
    m.record_failure("apply", 3)
    m.record_failure("plan")
    m.record_external_change(3)
    gpu = {("gpu", "3"), ("gpu_uuid", "GPU-abc")}
    values = samples(m.render())
    assert values[("migrator_reconfigurations_total", frozenset(gpu))] == 1
    assert values[("migrator_nvml_actions_total", frozenset(gpu))] == 4
    assert values[("migrator_external_changes_total", frozenset(gpu))] == 1
    assert values[("migrator_failures_total", frozenset(gpu | {("stage", "apply")}))] == 1
    assert values[("migrator_failures_total", frozenset({("stage", "plan"), ("gpu", ""), ("gpu_uuid", "")}))] == 1
    assert values[("migrator_gpu_instances", frozenset(gpu | {("model", "A100-40GB")}))] == 2
    assert values[("migrator_apply_latency_seconds_count", frozenset(gpu))] == 2
    assert values[("migrator_apply_latency_seconds_sum", frozenset(gpu))] == pytest.approx(0.06)
    totals = m.totals()
    assert (totals["reconfigurations"], totals["failures"], totals["external_changes"]) == (1, 2, 1)
    assert totals["apply_ms_p50"] == pytest.approx(30.0)


def test_decision_latency_is_a_histogram_with_cumulative_buckets():
    m = Metrics()
    for seconds in (0.003, 0.04, 0.04, 3.0):
        m.record_decision(seconds)
    families = {f.name: f for f in text_string_to_metric_families(m.render())}
    assert families["migrator_decision_latency_seconds"].type == "histogram"
    buckets = {s.labels["le"]: s.value for s in families["migrator_decision_latency_seconds"].samples
               if s.name.endswith("_bucket")}
    assert (buckets["0.005"], buckets["0.05"], buckets["2.5"], buckets["+Inf"]) == (1, 3, 3, 4)
    assert m.totals()["decision_ms_p50"] == pytest.approx(40.0)


def test_plan_gauges_follow_the_last_plan():
    scenario = migrator.Scenario.default()
    plan = migrator.Planner(scenario, migrator.PlannerConfig(horizon=2, time_limit_s=0.5)).plan()
    m = Metrics()
    m.record_plan(plan)
    values = samples(m.render())
    assert values[("migrator_planned_goodput", frozenset())] == pytest.approx(plan.total_goodput)
    for tenant, value in plan.attainment.items():
        assert values[("migrator_planned_slo_attainment", frozenset({("tenant", tenant)}))] == pytest.approx(value)
    for tenant, value in plan.goodput.items():
        assert values[("migrator_planned_tenant_goodput", frozenset({("tenant", tenant)}))] == pytest.approx(value)


def test_served_on_an_ephemeral_port_only_at_metrics():
    m = Metrics()
    m.record_decision(0.1)
    server = serve_metrics(m, 0)
    try:
        assert samples(scrape(server)) == samples(m.render())
        with pytest.raises(urllib.error.HTTPError) as info:
            scrape(server, "/")
        assert info.value.code == 404
        info.value.close()
        # scrapes from several threads at once
        texts: list[str] = []
        threads = [threading.Thread(target=lambda: texts.append(scrape(server))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(texts) == 4 and all(samples(t) == samples(m.render()) for t in texts)
    finally:
        server.shutdown()
        server.server_close()


def test_textfile_is_written_atomically_and_parses(tmp_path):
    m = Metrics()
    m.record_decision(0.1)
    target, elsewhere = tmp_path / "m.prom", tmp_path / "elsewhere"
    elsewhere.write_text("keep")
    target.symlink_to(elsewhere)
    m.write_textfile(target)
    assert samples(target.read_text())[("migrator_decisions_total", frozenset())] == 1
    assert elsewhere.read_text() == "keep" and not target.is_symlink()


def test_run_serves_metrics_while_it_runs(monkeypatch):
    """`migrator run --metrics-port 0`: the endpoint is scraped just before the command stops it."""
    import migrator.cli.actuation as command
    from migrator.cli._common import stop_metrics

    scraped: list[str] = []

    def scrape_then_stop(server: Any) -> None:
        scraped.append(scrape(server))
        stop_metrics(server)

    monkeypatch.setattr(command, "stop_metrics", scrape_then_stop)
    result = CliRunner().invoke(main, ["run", "--steps", "2", "--json", "--metrics-port", "0", "--horizon", "2",
                                       "--time-limit", "0.3", "--log-level", "error"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    (text,) = scraped
    values = samples(text)
    assert values[("migrator_decisions_total", frozenset())] == summary["decisions"] == 2
    uuids = {dict(labels)["gpu_uuid"] for (name, labels), _ in values.items() if name == "migrator_gpu_instances"}
    # One emulated machine: its GPUs share the machine id and differ by index.
    machines = {uuid[4:12] for uuid in uuids}
    assert len(machines) == 1 and re.fullmatch(r"[0-9a-f]{8}", machines.pop())
    assert {uuid[12:] for uuid in uuids} == {f"-0000-0000-0000-emulated{i:04d}" for i in range(len(summary["gpus"]))}


def test_run_without_a_port_serves_nothing(monkeypatch):
    import migrator.actuation.metrics as module

    monkeypatch.setattr(module, "serve_metrics", lambda *a, **k: pytest.fail("metrics served without a port"))
    result = CliRunner().invoke(main, ["run", "--steps", "1", "--json", "--horizon", "2", "--time-limit", "0.3",
                                       "--log-level", "error"])
    assert result.exit_code == 0, result.output


def test_a_port_in_use_is_a_one_line_error():
    m = Metrics()
    server = serve_metrics(m, 0)
    try:
        port = str(server.server_address[1])
        result = CliRunner().invoke(main, ["run", "--steps", "1", "--metrics-port", port, "--horizon", "2",
                                           "--time-limit", "0.3", "--log-level", "error"])
        assert result.exit_code == 2 and "cannot serve metrics" in result.output and "Traceback" not in result.output
    finally:
        server.shutdown()
        server.server_close()
