"""Simulator speed on the default scenario (2 A100s, 4 tenants, 600 s of 1 s slots).

* The replay engine alone, with a scripted policy (a new layout every 10 s), against the
  estimator path (``allocation_rates`` + ``score``) on the same allocations: both give the
  same Goodput, and ``ratio_vs_reference`` says how the engine's slot-by-slot bookkeeping
  compares with scoring the whole allocation at once.
* The migrator policy on the first 20 s: simulated seconds per wall second including its
  decisions (each one an ILP solve), the figure that says how long a comparison takes.
* The request-level grader (``migrator.evaluation.requests``) on the scripted 600 s timeline
  (about 2.9 million requests), its Numba kernel against the plain-Python twin of
  tests/evaluation/test_requests.py on the first 30 s of it; and the issue's target, 600 s of
  the default scenario under the migrator policy graded request by request (>= 50 simulated
  seconds per wall second wanted), with the share of the time the grading takes.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scripted import Scripted

import migrator
from migrator.evaluation import requests as request_grader
from migrator.evaluation.policy import Allocation, make_policy
from migrator.evaluation.simulate import simulate
from migrator.geometry.layout import Layout, Placement
from migrator.workload.goodput import Instance, allocation_rates, score

GROUP = pytest.mark.benchmark(group="simulate-default-600s")
LAYOUTS = [
    ("3g.20gb@0,3g.20gb@4", ("resnet50:infer", "distilbert:infer")),
    ("4g.20gb@0,2g.10gb@4,1g.5gb@6", ("distilbert:infer", "bert:infer", "vit:retrain")),
    ("2g.10gb@0,2g.10gb@2,3g.20gb@4", ("resnet50:infer", "vit:infer", "bert:infer")),
]

# Timed replays charge decisions their wall clock (as the figures in the docs were measured):
# the default modelled cost would time its one-off measurement too (migrator.evaluation.latency).
WALL = "wall"


@pytest.fixture(scope="module")
def scenario() -> migrator.Scenario:
    return migrator.Scenario.default()


@pytest.fixture(scope="module")
def script(scenario) -> list[Allocation]:
    """A new allocation every 10 s on both GPUs, cycling three layouts."""
    out = []
    for k in range(scenario.n_slots // 10):
        gpus = [LAYOUTS[(k + g) % len(LAYOUTS)] for g in range(len(scenario.gpus))]
        layouts = [layout for layout, _ in gpus]
        tasks = [dict(zip((str(p) for p in Layout.parse(layout)), names)) for layout, names in gpus]
        out.append(Allocation.of(layouts, tasks))
    return out


def replay(scenario, script) -> float:
    return simulate(scenario, Scripted(script, interval_s=10.0), decision_latency_s=0.0, grader="slot").goodput


def estimator(scenario, script) -> float:
    slots = []
    for allocation in script:
        instances = [
            Instance(g, Placement.parse(p), tuple(task.split(":")))
            for g in range(len(scenario.gpus)) for p, task in allocation.tasks(g).items() if task != "idle"
        ]
        slots.extend([instances] * 10)
    initial = [Instance(g, p) for g, gpu in enumerate(scenario.gpus) for p in Layout.parse(gpu.layout)]
    capacity, retrain = allocation_rates(
        slots, scenario.tenants, [g.model for g in scenario.gpus], slot_s=scenario.slot_s,
        setup_s=scenario.planner.setup_s, initial=initial,
    )
    arrivals = scenario.arrivals().counts.astype(np.float64)
    return score(arrivals, capacity, retrain, scenario.tenants, slot_s=scenario.slot_s,
                 max_wait_slots=scenario.planner.max_wait_slots).goodput


@GROUP
def test_replay_engine_reference(benchmark, timings, scenario, script) -> None:
    result = benchmark.pedantic(estimator, args=(scenario, script), rounds=3, iterations=1)
    assert result == pytest.approx(replay(scenario, script), rel=1e-9)
    timings.record("replay 600 s, default scenario", "reference", benchmark)


@GROUP
def test_replay_engine(benchmark, timings, scenario, script) -> None:
    replay(scenario, script)  # compile (or load the cache) before timing
    result = benchmark.pedantic(replay, args=(scenario, script), rounds=3, iterations=1)
    assert result == pytest.approx(estimator(scenario, script), rel=1e-9)
    timings.record("replay 600 s, default scenario", "fast", benchmark)
    if benchmark.enabled and benchmark.stats is not None:
        benchmark.extra_info["simulated_s_per_wall_s"] = scenario.duration_s / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="simulate-default-migrator")
def test_replay_with_the_migrator_policy(benchmark, scenario) -> None:
    duration_s = 20.0

    def run():
        started = time.perf_counter()
        result = simulate(scenario, make_policy("migrator"), duration_s=duration_s, latency=WALL)
        return result, time.perf_counter() - started

    (result, wall_s) = benchmark.pedantic(run, rounds=1, iterations=1)
    assert result.score.arrived.shape[1] == duration_s
    assert len(result.decisions) >= duration_s / 2 - 1 and result.goodput > 0
    benchmark.extra_info["simulated_s_per_wall_s"] = duration_s / wall_s
    benchmark.extra_info["decision_ms_p50"] = result.decision_ms(50)


# The baselines' decisions on the default scenario, each against the migrator policy's in the
# same session (moved from tests/, where a 50 ms wall-clock assert failed on a loaded machine).
_DECISION_P99: dict[str, float] = {}


@pytest.mark.benchmark(group="baseline-decisions")
@pytest.mark.parametrize("name", ["migrator", "ekya", "astraea", "paris"])
def test_baseline_decision_latency(benchmark, scenario, name: str) -> None:
    duration_s = 60.0 if name == "migrator" else None  # migrator's decisions are ILP solves
    result = benchmark.pedantic(lambda: simulate(scenario, make_policy(name), duration_s=duration_s, latency=WALL),
                                rounds=1, iterations=1)
    assert result.goodput > 0 and result.decisions
    _DECISION_P99[name] = result.decision_ms(99)
    benchmark.extra_info["decision_ms_p99"] = _DECISION_P99[name]
    if name != "migrator" and "migrator" in _DECISION_P99:
        benchmark.extra_info["p99_vs_migrator"] = _DECISION_P99[name] / _DECISION_P99["migrator"]


# -- the request-level grader -------------------------------------------------------------------


def _twin():
    """The kernel's plain-Python twin, from the tests (tests/evaluation is not a package)."""
    path = Path(__file__).resolve().parent.parent / "tests" / "evaluation" / "test_requests.py"
    spec = importlib.util.spec_from_file_location("request_twin", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("request_twin", module)
    spec.loader.exec_module(module)
    return module.reference_replay


@pytest.fixture(scope="module")
def timeline(scenario, script):
    """The scripted 600 s replay's instance timeline and arrivals."""
    result = simulate(scenario, Scripted(script, interval_s=10.0), decision_latency_s=0.0)
    return result.segments, scenario.arrivals().counts.astype(np.float64), result


REQUEST_GROUP = pytest.mark.benchmark(group="request-grader-default-30s")


def _grade_30s(scenario, timeline):
    segments, counts, _ = timeline
    return request_grader.grade_requests(scenario, segments, counts[:, :30], seed=0).goodput


@REQUEST_GROUP
def test_request_grader_reference(benchmark, timings, scenario, timeline, monkeypatch) -> None:
    fast = _grade_30s(scenario, timeline)
    monkeypatch.setattr(request_grader, "replay_tenant", _twin())
    result = benchmark.pedantic(_grade_30s, args=(scenario, timeline), rounds=1, iterations=1)
    assert result == pytest.approx(fast, rel=1e-9)
    timings.record("request grader, default scenario 30 s", "reference", benchmark)


@REQUEST_GROUP
def test_request_grader(benchmark, timings, scenario, timeline) -> None:
    _grade_30s(scenario, timeline)  # compile (or load the cache) before timing
    result = benchmark.pedantic(_grade_30s, args=(scenario, timeline), rounds=3, iterations=1)
    assert result > 0
    timings.record("request grader, default scenario 30 s", "fast", benchmark)


@pytest.mark.benchmark(group="request-grader-default-600s")
def test_request_grader_600s(benchmark, scenario, timeline) -> None:
    segments, counts, result = timeline
    graded = benchmark.pedantic(
        lambda: request_grader.grade_requests(scenario, segments, counts, seed=result.seed), rounds=3, iterations=1
    )
    assert graded.goodput == pytest.approx(result.gradings["request"].goodput, rel=1e-12)
    np.testing.assert_array_equal(graded.within + graded.late + graded.dropped, graded.arrived)
    if benchmark.enabled and benchmark.stats is not None:
        benchmark.extra_info["requests"] = float(graded.arrived.sum())
        benchmark.extra_info["requests_per_wall_s"] = graded.arrived.sum() / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="simulate-default-migrator-600s")
def test_migrator_policy_600s_graded_by_requests(benchmark, scenario) -> None:
    """The issue's target: >= 50 simulated seconds per wall second (reported, not asserted:
    the migrator's decisions are ILP solves whose time depends on the machine's load)."""

    def run():
        started = time.perf_counter()
        result = simulate(scenario, make_policy("migrator"), grader="request", latency=WALL)
        took = time.perf_counter() - started
        grading = time.perf_counter()
        request_grader.grade_requests(scenario, result.segments, result.score.arrived, seed=result.seed)
        return result, took, time.perf_counter() - grading

    result, wall_s, grading_s = benchmark.pedantic(run, rounds=1, iterations=1)
    assert result.grader == "request" and result.goodput > 0
    np.testing.assert_array_equal(result.score.within + result.score.late + result.score.dropped,
                                  result.score.arrived)
    benchmark.extra_info["simulated_s_per_wall_s"] = scenario.duration_s / wall_s
    benchmark.extra_info["request_grading_s"] = grading_s
    benchmark.extra_info["decision_ms_p50"] = result.decision_ms(50)
