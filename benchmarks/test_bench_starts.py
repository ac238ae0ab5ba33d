"""The split's packed start, the greedy start and the retraining pass's larger placements at
cluster scale, each against a plain scan in the same session (docs/model.md, "The packed
start" and "The greedy start's layout ceilings"; the module docstring of migrator.planning.retraining): ``ratio_vs_reference`` is how many times faster
the grouped or cached search is. Both must give the scan's answer."""

from __future__ import annotations

import numpy as np
import pytest

from migrator.planning import planner
from migrator.planning.greedy import greedy_tasks, packed_tasks
from migrator.planning.retraining import _GiveWay, _serving
from scenarios import inference_only, sized
from scans import best_candidate_by_scanning, give_way_by_scanning, packed_by_scanning

N_GPUS, N_TENANTS = 32, 64


@pytest.fixture(scope="module")
def serving_only():
    return planner.Planner(inference_only(sized(N_GPUS, N_TENANTS, horizon=15))).problem()


@pytest.mark.benchmark(group="starts")
def test_packing_grouped(benchmark, timings, serving_only) -> None:
    tasks = benchmark(packed_tasks, serving_only)
    expected = packed_by_scanning(serving_only)
    assert all(np.array_equal(t[0], e) for t, e in zip(tasks, expected))
    timings.record(f"packed start {N_GPUS} gpus", "fast", benchmark)


@pytest.mark.benchmark(group="starts")
def test_packing_scanned(benchmark, timings, serving_only) -> None:
    first = benchmark.pedantic(packed_by_scanning, args=(serving_only,), rounds=3, iterations=1)
    assert any((row >= 0).any() for row in first)
    timings.record(f"packed start {N_GPUS} gpus", "reference", benchmark)


GREEDY_GPUS, GREEDY_TENANTS = 128, 256


@pytest.fixture(scope="module")
def greedy_case():
    return planner.Planner(sized(GREEDY_GPUS, GREEDY_TENANTS)).problem()


@pytest.mark.benchmark(group="starts")
def test_greedy_start_with_layout_ceilings(benchmark, timings, greedy_case) -> None:
    tasks = benchmark.pedantic(greedy_tasks, args=(greedy_case,), rounds=3, iterations=1)
    assert any((t[0] > 0).any() for t in tasks)
    timings.record(f"greedy start {GREEDY_GPUS} gpus", "fast", benchmark)


@pytest.mark.benchmark(group="starts")
def test_greedy_start_scanning_every_layout(benchmark, timings, greedy_case, monkeypatch) -> None:
    from migrator.planning import greedy

    monkeypatch.setattr(greedy, "_best_candidate", best_candidate_by_scanning)
    scanned = benchmark.pedantic(greedy_tasks, args=(greedy_case,), rounds=3, iterations=1)
    monkeypatch.undo()
    assert all(np.array_equal(a, b) for a, b in zip(scanned, greedy_tasks(greedy_case)))
    timings.record(f"greedy start {GREEDY_GPUS} gpus", "reference", benchmark)


@pytest.fixture(scope="module")
def give_way_case():
    """A greedy plan and, for 16 tenants, where their retraining would be done."""
    problem = planner.Planner(sized(N_GPUS, N_TENANTS, horizon=15)).problem()
    plan = [t.copy() for t in greedy_tasks(problem)]
    width = max(len(g.placements) for g in problem.gpus)
    queries = []
    for i in range(0, N_TENANTS, N_TENANTS // 16):
        finish = np.full((len(problem.gpus), width), np.inf)
        for g, gpu in enumerate(problem.gpus):
            finish[g, : len(gpu.placements)] = 1.0 + problem.work_left[i] / np.maximum(gpu.retrain_speed[i], 1e-9)
        queries.append((float(problem.retraining_gain()[i]), 200.0, finish, 0.0))
    return problem, plan, width, queries


def _answers_cached(problem, plan, width, queries):
    give_way = _GiveWay(problem, plan, (), width, _serving(problem, [t[0] for t in plan]), problem.demand_rps())
    return [give_way.best(*query)[:3] for query in queries]


def _answers_scanned(problem, plan, queries):
    serving = _serving(problem, [t[0] for t in plan])
    return [give_way_by_scanning(problem, plan, serving, *query) for query in queries]


@pytest.mark.benchmark(group="starts")
def test_give_way_cached(benchmark, timings, give_way_case) -> None:
    problem, plan, width, queries = give_way_case
    got = benchmark(_answers_cached, problem, plan, width, queries)
    expected = _answers_scanned(problem, plan, queries)
    for (worth, g, q), (want, wg, wq) in zip(got, expected):
        assert worth == pytest.approx(want, rel=1e-9) if np.isfinite(want) else worth == -np.inf
        assert not np.isfinite(want) or (g, q) == (wg, wq)
    timings.record(f"larger placements {N_GPUS} gpus", "fast", benchmark)


@pytest.mark.benchmark(group="starts")
def test_give_way_scanned(benchmark, timings, give_way_case) -> None:
    problem, plan, _, queries = give_way_case
    answers = benchmark.pedantic(_answers_scanned, args=(problem, plan, queries), rounds=3, iterations=1)
    assert len(answers) == len(queries)
    timings.record(f"larger placements {N_GPUS} gpus", "reference", benchmark)
