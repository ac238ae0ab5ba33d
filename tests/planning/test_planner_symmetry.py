"""The rows that order twin placements in the first period (docs/model.md, "Symmetry") rest
on one fact, that swapping two twins' whole timelines keeps a plan's value; they are added
exactly for the twins a plain rule finds, and they never change the optimum."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from migrator.planning import planner
from migrator.geometry.geometry import Geometry
from migrator.planning.greedy import maximal_sets
from migrator.planning.planner_problem import GpuProblem, PlannerState, Problem, task_name
from scenarios import sized


def _random_problem(seed: int, horizon: int = 6) -> Problem:
    """One A100 with every planning placement, a random current layout of small instances
    with random tasks (so some twins differ in their current task), random set-up."""
    rng = np.random.default_rng(seed)
    scenario = sized(1, 2 + seed % 2, horizon=horizon)
    config = dataclasses.replace(scenario.planner, setup_s=float(rng.choice([0.0, 1.0, 2.0])),
                                 reconfig_penalty=float(rng.choice([0.0, 10.0])), terminal_value=bool(seed % 2))
    plan = planner.Planner(scenario, config=config)
    names = [t.name for t in scenario.tenants]
    tasks = ["idle"] + [task_name(k, names) for k in range(1, 2 * len(names) + 1)]
    layouts = [lay for lay in Geometry.for_gpu("A100-40GB").layouts() if "1g.5gb" in lay and "+" not in lay]
    layout = str(rng.choice(layouts))
    assignment = {str(p): str(rng.choice(tasks)) for p in Geometry.for_gpu("A100-40GB").validate(layout)}
    problem = plan.problem(state=PlannerState(layouts=(layout,), assignments=(assignment,)))
    scale = rng.uniform(0.3, 2.0, size=(len(names), 1))
    return dataclasses.replace(problem, arrivals=np.round(problem.arrivals * scale))


def _twin_groups(gpu: GpuProblem) -> list[list[int]]:
    """Placements alike in profile, figures, current task and overlap with all others."""

    def signature(q: int) -> tuple:
        overlaps = tuple(bool(gpu.memory_mask[o] & gpu.memory_mask[q]) for o in range(len(gpu.placements)))
        return (int(gpu.profile[q]), int(gpu.current[q]), gpu.capacity_rps[:, q].tobytes(),
                gpu.retrain_speed[:, q].tobytes(), overlaps)

    groups: list[list[int]] = []
    for q in range(len(gpu.placements)):
        for group in groups:
            r = group[0]
            a, b = signature(q), signature(r)
            # Overlaps alike except with each other (a placement overlaps itself).
            same = [o for o in range(len(gpu.placements)) if o not in (q, r) and a[4][o] != b[4][o]] == []
            if a[:4] == b[:4] and same:
                group.append(q)
                break
        else:
            groups.append([q])
    return groups


@pytest.mark.parametrize("seed", range(12))
def test_rows_are_added_for_the_twins_a_plain_rule_finds(seed: int) -> None:
    problem = _random_problem(seed)
    with_rows = planner._core_input(problem, break_symmetry=True)
    without = planner._core_input(problem, break_symmetry=False)
    expected = sum(len(group) - 1 for group in _twin_groups(problem.gpus[0]))
    assert len(with_rows.row_lower) - len(without.row_lower) == expected
    assert expected >= 1  # an A100's 1g placements always hold a twin pair


def test_an_idle_a100_has_three_twin_pairs() -> None:
    # 1g@0/1g@1, 1g@2/1g@3, 1g@4/1g@5; 1g@6 alone (2g@4 overlaps 1g@4 and 1g@5, not 1g@6).
    problem = planner.Planner(sized(1, 4)).problem()
    pairs = [[str(problem.gpus[0].placements[q]) for q in group] for group in _twin_groups(problem.gpus[0]) if len(group) > 1]
    assert sorted(pairs) == [["1g.5gb@0", "1g.5gb@1"], ["1g.5gb@2", "1g.5gb@3"], ["1g.5gb@4", "1g.5gb@5"]]


def _random_plan(problem: Problem, rng: np.random.Generator) -> np.ndarray:
    """Per period a random maximal layout with a random task (or none) at each instance."""
    gpu = problem.gpus[0]
    layouts = maximal_sets(gpu)
    plan = np.full((len(problem.periods), len(gpu.placements)), -1, dtype=np.int64)
    for j in range(len(problem.periods)):
        for q in layouts[rng.integers(len(layouts))]:
            plan[j, q] = rng.integers(-1, problem.n_tasks)
    return plan


@pytest.mark.parametrize("seed", range(6))
def test_swapping_twin_timelines_keeps_the_value(seed: int) -> None:
    problem = _random_problem(seed)
    rng = np.random.default_rng(seed)
    swaps = 0
    for _ in range(40):
        plan = _random_plan(problem, rng)
        for group in _twin_groups(problem.gpus[0]):
            if len(group) < 2 or (plan[:, group[0]] == plan[:, group[1]]).all():
                continue
            swapped = plan.copy()
            swapped[:, [group[0], group[1]]] = swapped[:, [group[1], group[0]]]
            before = planner.expected_score(problem, (plan,)).goodput
            assert planner.expected_score(problem, (swapped,)).goodput == pytest.approx(before, rel=1e-12)
            assert planner.reconfigurations(problem, (swapped,)) == planner.reconfigurations(problem, (plan,))
            swaps += 1
    assert swaps >= 5  # the timelines swapped did differ


@pytest.mark.parametrize("seed", range(12))
def test_symmetry_rows_keep_the_optimum(seed: int) -> None:
    problem = _random_problem(seed, horizon=4 + seed % 3)
    plain = planner.solve_problem(problem, time_limit_s=60, mip_gap=0.0, break_symmetry=False)
    ordered = planner.solve_problem(problem, time_limit_s=60, mip_gap=0.0)
    assert plain.status == ordered.status == "Optimal"
    assert ordered.objective == pytest.approx(plain.objective, rel=1e-7, abs=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_a_starting_plan_is_sorted_into_the_twin_order(seed: int) -> None:
    # A starting plan that breaks rows (15) would be refused by the solver; the planner
    # offers the same plan with its twins' timelines swapped into order.
    problem = _random_problem(seed)
    arrays = planner._core_input(problem)
    rng = np.random.default_rng(seed)
    for _ in range(10):
        plan = _random_plan(problem, rng)
        (ordered,) = planner.twin_ordered(problem, arrays, (plan,))
        for group in _twin_groups(problem.gpus[0]):
            first = ordered[0, group]
            rank = np.where(first >= 0, problem.n_tasks - first, 0)
            assert (np.diff(rank) <= 0).all()
            # The same timelines, only moved between the group's placements.
            assert sorted(map(tuple, ordered[:, group].T)) == sorted(map(tuple, plan[:, group].T))
        alone = [g[0] for g in _twin_groups(problem.gpus[0]) if len(g) == 1]
        assert (ordered[:, alone] == plan[:, alone]).all()
        assert planner.expected_score(problem, (ordered,)).goodput == pytest.approx(
            planner.expected_score(problem, (plan,)).goodput, rel=1e-12)
