"""The online controller over the emulator: decisions applied, faults and external changes
counted, a clean stop on SIGTERM, Prometheus metrics, arrival sources."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import migrator
from migrator.actuation.controller import (
    Controller,
    CsvTailArrivals,
    PushArrivals,
    SimulatedClock,
    TraceArrivals,
    placed_assignment,
    serve_metrics,
)
from migrator.actuation.emulator import MUTATING_CALLS, NvmlEmulator
from migrator.actuation.journal import Journal, read_journal
from migrator.actuation.nvml import NvmlBackend
from migrator.actuation.reconfig import apply
from migrator.errors import ConfigError, InstanceBusy, MigManagerFailed
from migrator.geometry.layout import Placement
from migrator.planning.planner import SlotPlan

CONFIG = migrator.PlannerConfig(horizon=3, time_limit_s=0.3)
SUMMARY_KEYS = {"decisions", "reconfigurations", "failures", "decision_ms_p50", "gpus"}


@pytest.fixture(scope="module")
def scenario() -> migrator.Scenario:
    return migrator.Scenario.from_dict({
        "name": "small", "duration_s": 60,
        "gpus": [{"model": "A100-40GB", "layout": "3g.20gb@0,3g.20gb@4"}],
        "tenants": [
            {"name": "resnet50", "model": "resnet50", "slo_ms": 100,
             "arrivals": {"synthetic": "poisson", "mean_rps": 600}},
            {"name": "bert", "model": "bert_base", "slo_ms": 100,
             "arrivals": {"synthetic": "poisson", "mean_rps": 500}},
        ],
    })


def controller(scenario: Any, emu: NvmlEmulator, **options: Any) -> Controller:
    backend = NvmlBackend(emu).open()
    options.setdefault("arrivals", TraceArrivals(scenario.arrivals(), [t.name for t in scenario.tenants]))
    return Controller(scenario, backend, config=CONFIG, clock=options.pop("clock", SimulatedClock()), **options)


def mutations(emu: NvmlEmulator) -> int:
    return sum(call in MUTATING_CALLS for call in emu.calls)


def test_run_applies_each_decision_and_summarises(scenario, tmp_path):
    emu = NvmlEmulator(["A100-40GB"], layouts=[""])
    seen = []
    with Journal(tmp_path / "j.jsonl") as journal:
        c = controller(scenario, emu, journal=journal)
        summary = c.run(steps=3, on_step=lambda d: seen.append((d, emu.layout(0))))
    assert SUMMARY_KEYS <= set(summary) and summary["decisions"] == 3 and summary["failures"] == 0
    assert [d.slot for d, _ in seen] == [0, 1, 2]
    assert all(d.layouts[0] == layout for d, layout in seen)  # what was decided is what the GPU holds
    assert summary["gpus"] == [{"name": "gpu0", "model": "A100-40GB", "device": 0, "layout": emu.layout(0)}]
    assert summary["reconfigurations"] == sum(1 for d, _ in seen if d.reconfigured) >= 1  # from empty
    assert summary["decision_ms_p50"] > 0
    # The first decision is the planner's own, from the observed (empty) layout.
    state = migrator.planning.planner.PlannerState(layouts=("",), assignments=({},))
    first = migrator.Planner(scenario, CONFIG).plan(state=state)
    assert seen[0][0].layouts[0] == first.first(0).layout
    assert all(t.status == "committed" and not t.problems() for t in read_journal(tmp_path / "j.jsonl"))


def test_simulated_clock_runs_faster_than_real_time(scenario, monkeypatch):
    # Faster than real time: the run never waits on the wall clock (no wall-clock assert:
    # what is checked is that no real wait is made, whatever the machine's speed).
    from migrator.actuation import controller as controller_module

    def no_real_wait(*args, **kwargs):
        raise AssertionError("a simulated run waited on the wall clock")

    monkeypatch.setattr(controller_module.WallClock, "sleep_until", no_real_wait)
    slow = dataclasses.replace(scenario, slot_s=10.0)
    clock = SimulatedClock()
    c = controller(slow, NvmlEmulator.from_scenario(slow), clock=clock,
                   arrivals=PushArrivals([t.name for t in slow.tenants]))
    assert c.run(steps=3)["decisions"] == 3
    assert clock.now() == 20.0  # two waits of one slot, none after the last step


def test_external_change_is_counted_and_planned_from(scenario):
    emu = NvmlEmulator.from_scenario(scenario)
    c = controller(scenario, emu)
    c.step()
    emu.set_layout(0, "7g.40gb@0")  # an administrator
    decision = c.step()
    summary = c.summary()
    assert summary["external_changes"] == 1 and summary["failures"] == 0
    assert decision.layouts[0] == emu.layout(0)
    assert sample(c.metrics, "migrator_external_changes_total", gpu="0", gpu_uuid=emulated_uuid(emu, 0)) == 1


def test_a_failed_apply_is_counted_and_the_gpu_keeps_a_valid_layout(scenario):
    emu = NvmlEmulator(["A100-40GB"], layouts=[""])  # any useful decision creates instances
    emu.fail(2)
    c = controller(scenario, emu)
    failed = c.step()
    assert failed.failures and "rolled back" in failed.failures[0] and emu.layout(0) == ""
    assert c.summary()["failures"] == 1
    ok = c.step()
    assert not ok.failures and emu.layout(0) == ok.layouts[0] != ""
    assert migrator.Geometry.for_gpu("A100-40GB").is_valid(emu.layout(0))
    assert sample(c.metrics, "migrator_failures_total", stage="apply", gpu="0", gpu_uuid=emulated_uuid(emu, 0)) == 1


def test_dry_run_plans_actions_and_changes_nothing(scenario):
    emu = NvmlEmulator(["A100-40GB"], layouts=[""])
    c = controller(scenario, emu, dry_run=True)
    decision = c.step()
    assert decision.dry_run and decision.actions[0] and decision.actions[0][0].startswith("create GPU instance")
    assert mutations(emu) == 0 and emu.layout(0) == ""
    assert c.summary()["actions"] == [list(decision.actions[0])] and c.summary()["reconfigurations"] == 0


def test_sigterm_stops_after_the_step_under_way(scenario):
    emu = NvmlEmulator(["A100-40GB"], layouts=[""])

    class SignalOnSecondPoll(PushArrivals):
        polls = 0

        def poll(self) -> list[np.ndarray]:
            self.polls += 1
            if self.polls == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step
            return super().poll()

    previous = signal.getsignal(signal.SIGTERM)
    c = controller(scenario, emu, arrivals=SignalOnSecondPoll([t.name for t in scenario.tenants]))
    summary = c.run()  # no step limit: only the signal ends it
    assert summary["stopped_by"] == "SIGTERM" and summary["decisions"] == 2
    assert signal.getsignal(signal.SIGTERM) is previous
    assert summary["gpus"][0]["layout"] == emu.layout(0)
    assert migrator.Geometry.for_gpu("A100-40GB").is_valid(emu.layout(0))


def test_gpu_instances_left_without_compute_instance_are_removed(scenario):
    emu = NvmlEmulator(["A100-40GB"], layouts=["3g.20gb@0"])
    with NvmlBackend(emu) as backend:
        backend.create_gpu_instance(0, Placement("3g.20gb", 4))  # a crash left it half-made
    c = controller(scenario, emu)
    decision = c.step()
    assert not decision.failures and emu.layout(0) == decision.layouts[0]
    with NvmlBackend(emu) as backend:
        assert not backend.state(0).incomplete


def test_scenario_and_devices_must_match(scenario):
    with pytest.raises(ConfigError, match="gpus\\[0\\].*H100") as info:
        controller(scenario, NvmlEmulator(["H100-80GB"]))
    assert info.value.field == "gpus[0]"
    with pytest.raises(ConfigError, match="device 0 does not exist"):
        controller(scenario, NvmlEmulator([]))
    with pytest.raises(ConfigError, match="distinct") as info:
        controller(scenario, NvmlEmulator(["A100-40GB"] * 2), devices=[0, 1])
    assert info.value.field == "devices"


def test_scenario_gpus_map_to_the_devices_given(scenario):
    # A machine with an H100 and two A100s; the scenario's one A100 is device 2.
    emu = NvmlEmulator(["H100-80GB", "A100-40GB", "A100-40GB"], layouts=["3g.40gb@0", "7g.40gb@0", ""])
    c = controller(scenario, emu, devices=[2])
    c.step()
    assert emu.layout(0) == "3g.40gb@0" and emu.layout(1) == "7g.40gb@0"  # untouched
    assert emu.layout(2) == c.summary()["gpus"][0]["layout"] != ""
    assert c.summary()["gpus"][0]["device"] == 2
    assert sample(c.metrics, "migrator_reconfigurations_total", gpu="2", gpu_uuid=emulated_uuid(emu, 2)) == 1


def test_the_scenario_names_its_devices(scenario):
    # The same machine; the scenario says its A100 is device 2, so no --devices is needed.
    emu = NvmlEmulator(["H100-80GB", "A100-40GB", "A100-40GB"], layouts=["3g.40gb@0", "7g.40gb@0", ""])
    placed = dataclasses.replace(scenario, gpus=(dataclasses.replace(scenario.gpus[0], device=2),))
    c = controller(placed, emu)
    assert c.devices == (2,)
    c.step()
    assert emu.layout(1) == "7g.40gb@0" and emu.layout(2) == c.summary()["gpus"][0]["layout"] != ""
    assert controller(placed, emu, devices=[1]).devices == (1,)  # an explicit mapping wins


# -- metrics ----------------------------------------------------------------------------------------

def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, parsed by prometheus_client's own parser (which
    refuses text that is not the exposition format)."""
    return {(x.name, frozenset(x.labels.items())): x.value
            for family in text_string_to_metric_families(text) for x in family.samples}


def sample(metrics: Any, name: str, **labels: str) -> float:
    return samples(metrics.render())[(name, frozenset(labels.items()))]


def emulated_uuid(emu: NvmlEmulator, index: int) -> str:
    return f"GPU-{emu.machine}-0000-0000-0000-emulated{index:04d}"


def test_metrics_render_in_prometheus_text_format(scenario):
    emu = NvmlEmulator(["A100-40GB"], layouts=[""])
    c = controller(scenario, emu)
    c.run(steps=2)
    text = c.metrics.render()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types["migrator_decisions"] == "counter"
    assert types["migrator_decision_latency_seconds"] == "histogram"
    assert types["migrator_planned_slo_attainment"] == "gauge"
    values = samples(text)
    summary = c.summary()
    assert values[("migrator_decisions_total", frozenset())] == summary["decisions"] == 2
    reconfigured = sum(v for (n, _), v in values.items() if n == "migrator_reconfigurations_total")
    assert reconfigured == summary["reconfigurations"] >= 1
    buckets = [v for (n, labels), v in sorted(values.items(), key=lambda kv: float(dict(kv[0][1]).get("le", 0)))
               if n == "migrator_decision_latency_seconds_bucket"]
    assert buckets == sorted(buckets) and buckets[-1] == values[("migrator_decision_latency_seconds_count",
                                                                  frozenset())] == 2
    assert values[("migrator_decision_latency_seconds_sum", frozenset())] > 0
    # every per-GPU sample carries the GPU's index and NVML UUID
    per_gpu = [dict(labels) for (n, labels), _ in values.items() if n == "migrator_gpu_instances"]
    assert per_gpu == [{"gpu": "0", "gpu_uuid": emulated_uuid(emu, 0), "model": "A100-40GB"}]


def test_metrics_gauges_hold_the_last_plans_goodput_and_slo_attainment(scenario):
    c = controller(scenario, NvmlEmulator.from_scenario(scenario))
    c.step()
    values = samples(c.metrics.render())
    attainment = {dict(labels)["tenant"]: v for (n, labels), v in values.items()
                  if n == "migrator_planned_slo_attainment"}
    goodput = {dict(labels)["tenant"]: v for (n, labels), v in values.items() if n == "migrator_planned_tenant_goodput"}
    plan = c.last_plan
    assert attainment == pytest.approx(dict(plan.attainment)) and goodput == pytest.approx(dict(plan.goodput))
    assert set(attainment) == {"resnet50", "bert"} and all(0.0 <= v <= 1.0 for v in attainment.values())
    assert values[("migrator_planned_goodput", frozenset())] == pytest.approx(plan.total_goodput)


def test_metrics_of_two_controllers_do_not_mix(scenario):
    one, two = (controller(scenario, NvmlEmulator.from_scenario(scenario)) for _ in range(2))
    one.step()
    one.step()
    two.step()
    assert sample(one.metrics, "migrator_decisions_total") == 2 and sample(two.metrics, "migrator_decisions_total") == 1


def test_metrics_are_served_over_http(scenario):
    c = controller(scenario, NvmlEmulator.from_scenario(scenario))
    c.step()
    server = serve_metrics(c.metrics, 0)
    try:
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            served = samples(response.read().decode())
        assert served == samples(c.metrics.render())
        assert served[("migrator_decisions_total", frozenset())] == 1
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://{host}:{port}/other", timeout=5)
        assert info.value.code == 404
        info.value.close()
    finally:
        server.shutdown()
        server.server_close()


# -- arrival sources -----------------------------------------------------------------------------


def test_csv_tail_reads_complete_rows_as_they_are_appended(tmp_path):
    path = tmp_path / "arrivals.csv"
    path.write_text("")
    source = CsvTailArrivals(path, ["a", "b"])
    assert source.poll() == []  # nothing written yet
    path.write_text("slot,b,a,extra\n0,2,1,9\n1,4,")
    rows = source.poll()
    assert [r.tolist() for r in rows] == [[1.0, 2.0]]  # tenant order, not file order
    with open(path, "a") as stream:
        stream.write("3,7\n2,6,5,0\n")
    assert [r.tolist() for r in source.poll()] == [[3.0, 4.0], [5.0, 6.0]]
    assert source.poll() == []


def test_csv_tail_refuses_a_file_that_is_not_there(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        CsvTailArrivals(tmp_path / "typo.csv", ["a"])


def test_csv_tail_refuses_a_name_too_long_to_look_up(tmp_path):
    # Path.is_file() raises ENAMETOOLONG rather than answering False (found by the CLI fuzz test).
    with pytest.raises(ConfigError, match="File name too long"):
        CsvTailArrivals(tmp_path / ("9" * 5000), ["a"])


@pytest.mark.parametrize(
    "text, words",
    [
        ("when,a,b\n", "first column"),
        ("slot,a\n", "no column for tenant 'b'"),
        ("slot,a,b\n0,1,x\n", "line 2, column 'b'"),
        ("slot,a,b\n0,1,-3\n", "non-negative"),
        ("slot,a,b\n0,1,1\n0,2,2\n", "line 3: the time column"),  # the issue: accepted before
        ("slot,a,b\n0,1,1\nnan,2,2\n", "line 3: the time column"),
    ],
    ids=["time-column", "tenant", "number", "negative", "time-repeats", "time-nan"],
)
def test_csv_tail_errors_name_the_place(tmp_path, text, words):
    path = tmp_path / "arrivals.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(words)):
        CsvTailArrivals(path, ["a", "b"]).poll()


def test_pushed_and_observed_counts_feed_the_forecaster(scenario):
    source = PushArrivals(["resnet50", "bert"])
    c = controller(scenario, NvmlEmulator.from_scenario(scenario), arrivals=source)
    source.push({"resnet50": 100.0, "bert": 40.0})
    c.observe([100.0, 40.0])
    with pytest.raises(ConfigError, match="unknown tenant 'gpt'"):
        source.push({"gpt": 1.0})
    with pytest.raises(ConfigError, match="2 finite, non-negative counts"):
        c.observe([1.0])
    c.step()
    np.testing.assert_allclose(c.forecaster.forecast(2), [[100.0, 100.0], [40.0, 40.0]])
    with pytest.raises(ConfigError, match="unknown tenant"):
        c.report_progress("gpt", 1.0)


def test_trace_arrivals_see_each_slot_once_it_has_ended(scenario):
    trace = scenario.arrivals()
    source = TraceArrivals(trace, ["bert", "resnet50"])
    assert source.poll() == []
    first, second = source.poll(), source.poll()
    np.testing.assert_array_equal(first[0], trace.counts[::-1, 0])
    np.testing.assert_array_equal(second[0], trace.counts[::-1, 1])


# -- a backend that changes the node's GPUs together (the mig-manager backend's shape) ------------


class NodeWide:
    """NVML on the emulator behind ``apply_layouts`` (the mig-manager backend's call): each
    call recorded; a GPU in ``busy`` refused before anything changes, as the mig-manager
    backend refuses a GPU with running processes; ``error`` raised instead of any change."""

    def __init__(self, emu: NvmlEmulator, busy: tuple[int, ...] = (), error: Exception | None = None) -> None:
        self.reader = NvmlBackend(emu).open()
        self.busy, self.error = busy, error
        self.calls: list[dict[int, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)

    def apply_layouts(self, targets: dict[int, str], *, expected: dict[int, str], force: bool, dry_run: bool,
                      journal: Any) -> Any:
        self.calls.append(dict(targets))
        refused = [d for d in targets if d in self.busy]
        if refused:
            raise InstanceBusy(f"gpu{refused[0]}: busy", placement="3g.20gb@0", pids=(1,), gpu=refused[0])
        if self.error is not None:
            raise self.error
        return dataclasses.make_dataclass("Result", ["per_gpu"])(
            {d: apply(self.reader, d, t, expected=expected[d], dry_run=dry_run, journal=journal)
             for d, t in targets.items()})


@pytest.fixture(scope="module")
def two_gpus(scenario: migrator.Scenario) -> migrator.Scenario:
    table = scenario.to_dict()
    table["gpus"] = [{"model": "A100-40GB", "count": 2, "layout": ""}]
    return migrator.Scenario.from_dict(table)


def node_controller(scenario: Any, backend: NodeWide) -> Controller:
    return Controller(scenario, backend, config=CONFIG, clock=SimulatedClock(),  # type: ignore[arg-type]
                      arrivals=TraceArrivals(scenario.arrivals(), [t.name for t in scenario.tenants]))


def test_a_node_wide_backend_gets_the_whole_step_in_one_call(two_gpus):
    emu = NvmlEmulator(["A100-40GB"] * 2, layouts=["", ""])
    backend = NodeWide(emu)
    decision = node_controller(two_gpus, backend).step()
    assert not decision.failures and len(backend.calls) == 1
    assert backend.calls[0] == {0: decision.layouts[0], 1: decision.layouts[1]}
    assert [emu.layout(0), emu.layout(1)] == list(decision.layouts)
    # Which GPUs the plan fills is the planner's; every one it fills was reconfigured.
    assert decision.reconfigured == tuple(g for g in (0, 1) if decision.layouts[g]) != ()


def test_a_gpu_refused_by_the_node_wide_backend_does_not_hold_back_the_others(two_gpus):
    emu = NvmlEmulator(["A100-40GB"] * 2, layouts=["", ""])
    backend = NodeWide(emu, busy=(0,))
    c = node_controller(two_gpus, backend)
    decision = c.step()
    assert decision.failures == ("gpu0: busy",) and [set(call) for call in backend.calls] == [{0, 1}, {1}]
    assert emu.layout(0) == "" and emu.layout(1) == decision.layouts[1]
    assert decision.reconfigured == ((1,) if decision.layouts[1] else ())
    assert sample(c.metrics, "migrator_failures_total", stage="apply", gpu="0", gpu_uuid=emulated_uuid(emu, 0)) == 1


def test_a_node_wide_failure_is_one_failure_of_the_step(two_gpus):
    emu = NvmlEmulator(["A100-40GB"] * 2, layouts=["", ""])
    failed = MigManagerFailed("node n: mig-manager could not apply migrator-x", node="n", config="migrator-x",
                              state="failed", layouts={0: "", 1: ""})
    c = node_controller(two_gpus, NodeWide(emu, error=failed))
    decision = c.step()
    assert decision.failures == (str(failed),) and decision.reconfigured == () and decision.layouts == ("", "")
    assert c.summary()["failures"] == 1 and mutations(emu) == 0


def test_a_node_wide_backend_is_not_asked_to_repair(scenario):
    # mig-parted rebuilds a half-made GPU itself; NVML calls of migrator's own would race it.
    emu = NvmlEmulator(["A100-40GB"], layouts=["3g.20gb@0"])
    with NvmlBackend(emu) as backend:
        backend.create_gpu_instance(0, Placement("3g.20gb", 4))  # a crash left it half-made
    before = mutations(emu)
    decision = node_controller(scenario, NodeWide(emu, busy=(0,))).step()
    assert decision.failures == ("gpu0: busy",) and mutations(emu) == before
    with NvmlBackend(emu) as backend:
        assert backend.state(0).incomplete


def test_placed_assignment_follows_the_driver_s_placements():
    planned = SlotPlan("1g.5gb@0,1g.5gb@1,2g.10gb@2,3g.20gb@4",
                       {"1g.5gb@0": "a:infer", "1g.5gb@1": "b:infer", "3g.20gb@4": "c:retrain"})
    assert placed_assignment(planned, planned.layout) == dict(planned.assignment)
    # Same counts, the driver's placements: each profile's instances matched in order of start.
    assert placed_assignment(planned, "3g.20gb@0,2g.10gb@4,1g.5gb@6,1g.5gb@5") == {
        "1g.5gb@5": "a:infer", "1g.5gb@6": "b:infer", "3g.20gb@0": "c:retrain"}

