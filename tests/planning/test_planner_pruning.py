"""Retraining that cannot finish inside the horizon is left out of the program (the C++
builder decides it, ModelArrays.retrains says where): the optimum must not change, and only
hopeless tenants lose their retraining options."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from migrator.planning import planner
from random_cases import small_random_case


def case_with_hopeless(seed: int):
    case = small_random_case(seed)
    # Every other case gives its first retraining tenant far more work than fits the horizon.
    if seed % 2:
        tenants = list(case.tenants)
        for i, t in enumerate(tenants):
            if t.retrains:
                tenants[i] = dataclasses.replace(t, work_gpu_s=500.0)
                break
        case = dataclasses.replace(case, tenants=tuple(tenants), progress={})
    return case.problem()


@pytest.mark.parametrize("seed", range(12))
def test_pruning_keeps_the_optimum(seed: int) -> None:
    # The C++ builder leaves such retraining out; the reference keeps every variable.
    from migrator.planning import _ilp_reference as reference

    problem = case_with_hopeless(seed)
    a = planner.solve_problem(problem, time_limit_s=60, mip_gap=0.0)
    b = reference.solve(problem, time_limit_s=60)
    assert a.status == b.status == "Optimal"
    assert a.objective == pytest.approx(b.objective, rel=1e-7, abs=1e-6)


def test_only_hopeless_tenants_lose_retraining() -> None:
    seen = set()
    for seed in range(40):
        problem = case_with_hopeless(seed)
        kept = planner._core_input(problem).retrains
        for i in range(len(problem.tenants)):
            if problem.window_slots[i] == 0 or problem.acc_after[i] <= problem.acc_before[i]:
                assert not kept[i]
                continue
            if kept[i]:
                seen.add("kept")
                continue
            seen.add("pruned")
            # Flat out, every GPU retraining this tenant (or as many of its fastest instances
            # as may retrain it at once), no window's work is done before its last slot inside
            # the horizon (the first window from the work left, later ones from the full work,
            # one set-up first unless an instance already retrains it).
            rate = sum(g.compute_slices * np.max(g.retrain_speed[i] / g.compute) for g in problem.gpus)
            if problem.retrain_instances:
                rate = min(rate, problem.retrain_instances * max(g.retrain_speed[i].max() for g in problem.gpus))
            running = any(int(k) == 2 + 2 * i for g in problem.gpus for k in g.current)
            starts = [t for t in range(problem.horizon) if (problem.window_offset[i] + t) % problem.window_slots[i] == 0]
            edges = sorted({0, *starts, problem.horizon})
            for a, b in zip(edges[:-1], edges[1:]):
                current = a == 0 and problem.window_offset[i] != 0
                if current and problem.done0[i]:
                    continue
                work = problem.work_left[i] if current else problem.work_full[i]
                seconds = (b - 1 - a) * problem.slot_s - (problem.setup_s if a == 0 and not running else 0.0)
                assert work > 0 and rate * max(seconds, 0.0) < work * (1 - 1e-9)
    assert seen == {"pruned", "kept"}


@pytest.mark.parametrize("seed", range(12))
def test_late_completions_match_the_reference(seed: int) -> None:
    # Work that can only finish late in the horizon: the C++ builder drops the completion
    # binaries of the slots before the earliest possible finish; the reference keeps them all.
    from migrator.planning import _ilp_reference as reference

    case = small_random_case(seed)
    tenants = tuple(
        dataclasses.replace(t, work_gpu_s=t.work_gpu_s * 6) if t.retrains else t for t in case.tenants
    )
    problem = dataclasses.replace(case, tenants=tenants, progress={}).problem()
    ours = planner.solve_problem(problem, time_limit_s=60, mip_gap=0.0)
    theirs = reference.solve(problem, time_limit_s=60)
    assert ours.status == theirs.status == "Optimal"
    assert ours.objective == pytest.approx(theirs.objective, rel=1e-7, abs=1e-6)
