"""Retraining that cannot finish inside the horizon is left out of the program: the optimum
must not change, and only hopeless tenants lose their retraining options."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from migrator import planner
from test_planner_exact import small_random_case


def pruned_and_full(seed: int):
    case = small_random_case(seed)
    # Every other case gives its first retraining tenant far more work than fits the horizon.
    if seed % 2:
        tenants = list(case.tenants)
        for i, t in enumerate(tenants):
            if t.retrains:
                tenants[i] = dataclasses.replace(t, work_gpu_s=500.0)
                break
        case = dataclasses.replace(case, tenants=tuple(tenants), progress={})
    pruned = case.problem()
    # terminal_value switches the pruning off; dropping the credit again leaves the plain model.
    full = dataclasses.replace(dataclasses.replace(case, terminal_value=True).problem(), terminal_gain=None)
    return pruned, full


@pytest.mark.parametrize("seed", range(12))
def test_pruning_keeps_the_optimum(seed: int) -> None:
    pruned, full = pruned_and_full(seed)
    a = planner.solve_problem(pruned, time_limit_s=60, mip_gap=0.0)
    b = planner.solve_problem(full, time_limit_s=60, mip_gap=0.0)
    assert a.status == b.status == "Optimal"
    assert a.objective == pytest.approx(b.objective, rel=1e-7, abs=1e-6)


def test_only_hopeless_tenants_lose_retraining() -> None:
    seen = set()
    for seed in range(40):
        pruned, full = pruned_and_full(seed)
        for i in range(len(pruned.tenants)):
            before = sum(g.retrain_speed[i].sum() for g in full.gpus)
            after = sum(g.retrain_speed[i].sum() for g in pruned.gpus)
            if before > 0 and after == 0:
                seen.add("pruned")
                # Flat out, every GPU retraining this tenant for the whole horizon falls short.
                rate = sum(g.compute_slices * np.max(g.retrain_speed[i] / g.compute) for g in full.gpus)
                assert rate * pruned.horizon * pruned.slot_s < max(pruned.work_left[i], pruned.work_full[i])
            elif before > 0:
                seen.add("kept")
                assert after == before
    assert seen == {"pruned", "kept"}


@pytest.mark.parametrize("seed", range(12))
def test_late_completions_match_the_reference(seed: int) -> None:
    # Work that can only finish late in the horizon: the C++ builder drops the completion
    # binaries of the slots before the earliest possible finish; the reference keeps them all.
    from migrator import _ilp_reference as reference

    case = small_random_case(seed)
    tenants = tuple(
        dataclasses.replace(t, work_gpu_s=t.work_gpu_s * 6) if t.retrains else t for t in case.tenants
    )
    problem = dataclasses.replace(case, tenants=tenants, progress={}).problem()
    ours = planner.solve_problem(problem, time_limit_s=60, mip_gap=0.0)
    theirs = reference.solve(problem, time_limit_s=60)
    assert ours.status == theirs.status == "Optimal"
    assert ours.objective == pytest.approx(theirs.objective, rel=1e-7, abs=1e-6)
