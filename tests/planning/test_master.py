"""The configuration master (migrator.planning.master) against independent methods: a plan
written as columns is worth what the Goodput estimator says; pricing finds the timeline of
most reduced cost that enumerating every timeline finds; the master's plan and bound bracket
the program's proven optimum (C++ builder, HiGHS), which brute force holds on tiny cases."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
from brute_force import slot_options
from random_cases import small_random_case
from scenarios import sized

from migrator.planning import master as M
from migrator.planning.greedy import greedy_tasks
from migrator.planning.planner import Planner, solve_problem

_spec = importlib.util.spec_from_file_location("exact_cases", Path(__file__).with_name("test_planner_exact.py"))
_exact = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_exact)
TINY = [case for case in _exact.ALL_TINY if not case.terminal_value]


def _close(a: float, b: float, rtol: float = 1e-6) -> bool:
    return abs(a - b) <= rtol * max(1.0, abs(a), abs(b))


def _only(problem, plan):
    """A master whose columns are exactly ``plan``'s GPUs' timelines."""
    classes = [[g] for g in range(len(problem.gpus))]
    master = M._Master(problem, classes)
    for g, tasks in enumerate(plan):
        master.add(g, M.column_of(problem, problem.gpus[g], tasks))
    return master


@pytest.mark.parametrize("seed", range(12))
def test_a_plan_as_columns_is_worth_what_the_estimator_says(seed):
    problem = small_random_case(seed).problem()
    for plan in (greedy_tasks(problem), solve_problem(problem, time_limit_s=30).tasks):
        run, tasks = _only(problem, plan).solve_mip(30.0, 0.0)
        assert [t.tolist() for t in tasks] == [np.asarray(t).tolist() for t in plan]
        assert _close(run.objective, Planner._worth(problem, plan)), (run.objective, Planner._worth(problem, plan))


def _timelines(case, problem):
    """Every timeline of the problem's one GPU: a slot option per period. Row 16 (one
    retraining instance per tenant) is the master's, across GPUs: a GPU's timeline may break
    it on its own (the master's LP takes such a column at most fractionally), so pricing
    searches those timelines too."""
    index = {str(pl): q for q, pl in enumerate(problem.gpus[0].placements)}
    options = []
    every = dataclasses.replace(case, retrain_instances=0)
    for option in slot_options(every, dataclasses.replace(problem, periods=(1,))):
        row = np.full(len(index), -1, dtype=np.int64)
        for _, placement, k in option:
            row[index[placement]] = k
        options.append(row)
    for choice in itertools.product(options, repeat=len(problem.periods)):
        yield np.stack(choice)


def _random_duals(problem, master, rng):
    n, horizon, periods = len(problem.tenants), problem.horizon, len(problem.periods)
    return M._Duals(
        capacity=rng.uniform(0, 1, (n, horizon)) * (rng.random((n, horizon)) < 0.7),
        progress=rng.uniform(0, 300, (n, horizon)),
        limit=np.where(master.limit_rows >= 0, rng.uniform(0, 50, (n, periods)), 0.0),
        convexity=rng.uniform(0, 100, len(master.classes)),
    )


SMALL_SEARCH = [case for case in TINY if len(case.gpus) == 1 and _exact._options_count(case) ** len(case.problem().periods) <= 20_000]


@pytest.mark.parametrize("case", SMALL_SEARCH, ids=str)
def test_pricing_finds_the_timeline_enumeration_finds(case):
    problem = case.problem()
    master = M._Master(problem, M.gpu_classes(problem))
    pricing = M._Pricing(problem, problem.gpus[0], 0)
    rng = np.random.default_rng(7)
    for _ in range(5):
        duals = _random_duals(problem, master, rng)
        best = max(master.reduced_cost(0, M.column_of(problem, problem.gpus[0], t), duals)
                   for t in _timelines(case, problem))
        tasks, ceiling = pricing.best(duals)
        found = master.reduced_cost(0, M.column_of(problem, problem.gpus[0], tasks), duals)
        assert _close(found, best, 1e-6), (found, best)
        assert ceiling - duals.convexity[0] >= best - 1e-6 * max(1.0, abs(best))


@pytest.mark.parametrize("seed", range(8))
def test_pricing_finds_the_timeline_the_single_gpu_mip_finds(seed):
    # Whole A100s, four periods (with set-up spanning a period boundary on some seeds), every
    # kind of dual: the dynamic programme against the per-GPU block solved as a MIP by HiGHS.
    from mip_pricing import MipPricing

    rng = np.random.default_rng(seed)
    scenario = sized(1, int(rng.integers(2, 5)), horizon=int(rng.choice([8, 15]))).with_planner(
        setup_s=float(rng.choice([1.0, 2.0, 3.0])), reconfig_penalty=float(rng.choice([0.0, 5.0, 50.0])))
    names = [t.name for t in scenario.tenants]
    layout = scenario.gpus[0].layout.split(",")
    state = Planner(scenario).initial_state()
    state = dataclasses.replace(state, assignments=({layout[0]: f"{names[0]}:infer", layout[-1]: f"{names[-1]}:retrain"},))
    problem = Planner(scenario).problem(state=state)
    master = M._Master(problem, M.gpu_classes(problem))
    duals = _random_duals(problem, master, rng)
    tasks, worth = M._Pricing(problem, problem.gpus[0], 0).best(duals)
    _, mip = MipPricing(problem, problem.gpus[0]).best(duals.capacity, duals.progress, duals.limit)
    assert _close(worth, mip, 1e-6), (worth, mip)
    # and the timeline found is worth what the DP says, by the column's own figures
    found = master.reduced_cost(0, M.column_of(problem, problem.gpus[0], tasks), duals) + duals.convexity[0]
    assert _close(found, worth, 1e-6), (found, worth)


def test_alike_gpus_form_one_class():
    problem = Planner(sized(4, 8, horizon=8)).problem()
    assert M.gpu_classes(problem) == [[0, 1, 2, 3]]


BRACKETED = TINY + [small_random_case(seed) for seed in range(6)]


@pytest.mark.parametrize("case", BRACKETED, ids=str)
def test_the_plan_and_the_bound_bracket_the_proven_optimum(case):
    problem = case.problem()
    optimum = solve_problem(problem, time_limit_s=60, mip_gap=0.0)
    assert optimum.status.startswith("Optimal")
    result = M.solve_master(problem, [greedy_tasks(problem)], time_limit_s=60.0, mip_gap=0.0)
    plan = result.solution
    tolerance = 1e-6 * max(1.0, abs(optimum.objective))
    assert plan.objective <= optimum.objective + tolerance
    assert plan.bound >= optimum.objective - tolerance
    assert _close(plan.objective, Planner._worth(problem, plan.tasks))
    assert plan.objective >= Planner._worth(problem, greedy_tasks(problem)) - tolerance  # its start is a column
    for geometry, gpu, tasks in zip(case.geometries(), problem.gpus, plan.tasks):
        for row in tasks:
            geometry.validate([gpu.placements[q] for q in np.flatnonzero(row >= 0)])
