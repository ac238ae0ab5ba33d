"""The terminal value (constraint 13): both builders agree on it, and the objective is the
estimator's horizon Goodput plus the credited share of unfinished retraining."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from migrator.planning import _ilp_reference as reference
import migrator
from migrator.planning import planner
from migrator.planning.planner_problem import Problem
from random_cases import small_random_case


def _credited(problem: Problem, tasks) -> float:
    """Σ G · min(1, work done by the end in the last window / that window's work)."""
    _, speed = planner._rates(problem, tasks)
    horizon = problem.horizon
    total = 0.0
    for i, gain in enumerate(problem.terminal_gain):
        if gain <= 0:
            continue
        window, offset = int(problem.window_slots[i]), int(problem.window_offset[i])
        starts = [t for t in range(horizon) if (offset + t) % window == 0]
        first = max([t for t in starts if t <= horizon - 1], default=0)
        current = not any(0 < t <= horizon - 1 for t in starts)
        work = problem.work_left[i] if current else problem.work_full[i]
        done = speed[i, first:horizon].sum() * problem.slot_s
        total += gain * (1.0 if work <= 0 else min(1.0, done / work))
    return total


@pytest.mark.parametrize("seed", range(10))
def test_builders_agree_and_the_objective_adds_up(seed: int) -> None:
    case = dataclasses.replace(small_random_case(seed), terminal_value=True)
    problem = case.problem()
    assert problem.terminal_gain is not None
    ours = planner.solve_problem(problem, time_limit_s=60, mip_gap=0.0)
    theirs = reference.solve(problem, time_limit_s=60)
    assert ours.status == theirs.status == "Optimal"
    assert ours.objective == pytest.approx(theirs.objective, rel=1e-6, abs=1e-6)
    goodput = planner.expected_score(problem, ours.tasks).goodput
    changes = planner.reconfigurations(problem, ours.tasks)
    expected = goodput - problem.reconfig_penalty * changes + _credited(problem, ours.tasks)
    assert ours.objective == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_gain_is_zero_when_the_window_ends_with_the_horizon() -> None:
    case = dataclasses.replace(small_random_case(3), terminal_value=True)
    problem = case.problem()
    for i, gain in enumerate(problem.terminal_gain):
        window = problem.window_slots[i]
        if window and (problem.window_offset[i] + problem.horizon) % window == 0:
            assert gain == 0.0
    assert np.all(problem.terminal_gain >= 0)


def test_the_terminal_weight_scales_the_terminal_gains():
    from dataclasses import replace as _replace

    scenario = migrator.Scenario.default()
    full = migrator.Planner(scenario, _replace(scenario.planner, terminal_value=True)).problem()
    tenth = migrator.Planner(scenario, _replace(scenario.planner, terminal_value=True, terminal_weight=0.1)).problem()
    assert full.terminal_gain.sum() > 0
    np.testing.assert_allclose(tenth.terminal_gain, 0.1 * full.terminal_gain)
