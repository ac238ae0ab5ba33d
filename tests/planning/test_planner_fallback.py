"""No plan in time: the GPUs keep their current layouts and tasks (issue 5)."""

from __future__ import annotations

import logging

import numpy as np

import migrator
from migrator.planning import planner
from migrator.planning.decompose import merge, parts_of, shares_from_plan, split
from migrator.planning.greedy import greedy_tasks
from migrator.planning.planner_problem import PlannerState
from scenarios import sized

NO_TIME = 1e-9  # HiGHS stops before it even takes the warm start


def serving_state(scenario: migrator.Scenario) -> PlannerState:
    """Every GPU's instances serving some tenant, so that "kept" and "idle" differ."""
    names = [t.name for t in scenario.tenants]
    layouts = tuple(g.layout for g in scenario.gpus)
    assignments = tuple(
        {p: f"{names[(g + k) % len(names)]}:infer" for k, p in enumerate(layout.split(","))}
        for g, layout in enumerate(layouts)
    )
    return PlannerState(layouts=layouts, assignments=assignments, slot=3)


def test_the_solver_keeps_the_current_layouts_not_the_warm_start() -> None:
    scenario = sized(2, 4)
    problem = planner.Planner(scenario).problem(state=serving_state(scenario))
    warm = greedy_tasks(problem)
    assert any((w != planner.keep_current(problem)[g]).any() for g, w in enumerate(warm))
    raw = planner.solve_problem(problem, time_limit_s=NO_TIME, warm_start=warm)
    assert "current layouts kept" in raw.status and np.isnan(raw.objective)
    assert raw.kept_gpus == (0, 1)
    for got, now in zip(raw.tasks, planner.keep_current(problem)):
        np.testing.assert_array_equal(got, now)


def test_a_decision_without_a_plan_warns_once_with_what_it_kept(caplog) -> None:
    scenario = sized(1, 4).with_planner(time_limit_s=NO_TIME)
    with caplog.at_level(logging.INFO, logger="migrator"):
        plan = migrator.Planner(scenario).plan(state=serving_state(scenario))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"no plan found in time: {plan.stats.status.split('; time limit')[0]}"]
    assert "kept" in warnings[0]


def test_split_parts_without_a_plan_do_not_warn_one_by_one(monkeypatch, caplog) -> None:
    # At 128 GPUs dozens of parts a decision end before HiGHS takes their warm start; the
    # plan's status counts them, and none of them keeps "the current layouts".
    scenario = sized(4, 8, horizon=4).with_planner(decompose_above=1, time_limit_s=10.0, workers=1)
    solve = planner.solve_problem
    calls = []

    def no_time_for_one(sub, **kwargs):
        calls.append(sub)
        return solve(sub, **{**kwargs, "time_limit_s": NO_TIME} if len(calls) == 2 else kwargs)

    monkeypatch.setattr(planner, "solve_problem", no_time_for_one)
    with caplog.at_level(logging.INFO, logger="migrator"):
        plan = migrator.Planner(scenario).plan()
    assert "; 1 of 4 parts without a plan in time, their starting plan kept" in plan.stats.status
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("HiGHS found no plan in time" in r.getMessage() for r in caplog.records)


def test_a_plan_without_time_changes_nothing_not_even_by_the_retraining_pass() -> None:
    scenario = sized(1, 4).with_planner(time_limit_s=NO_TIME, retrain_over_window=True)
    state = serving_state(scenario)
    plan = migrator.Planner(scenario).plan(state=state)
    assert plan.first(0).layout == state.layouts[0]
    assert dict(plan.first(0).assignment) == dict(state.assignments[0])
    assert plan.stats.reconfigurations == 0


def test_a_part_without_a_plan_keeps_the_whole_problems_tasks() -> None:
    scenario = sized(2, 4)
    problem = planner.Planner(scenario).problem(state=serving_state(scenario))
    shares = shares_from_plan(problem, greedy_tasks(problem))
    parts = parts_of(shares)
    subs = split(problem, parts, shares)
    # GPU 1's part gets no time; its part maps the instances serving GPU 0's tenants to idle.
    solutions = [planner.solve_problem(sub, time_limit_s=t, warm_start=greedy_tasks(sub))
                 for sub, t in zip(subs, (5.0, NO_TIME))]
    assert solutions[1].kept_gpus == (0,) and not solutions[0].kept_gpus
    merged = merge(problem, parts, solutions)
    assert merged.kept_gpus == (1,)
    np.testing.assert_array_equal(merged.tasks[1], np.tile(problem.gpus[1].current, (len(problem.periods), 1)))
    # GPU 0's plan is what it is had GPU 1's part found one.
    solved = planner.solve_problem(subs[1], time_limit_s=5.0, warm_start=greedy_tasks(subs[1]))
    np.testing.assert_array_equal(merged.tasks[0], merge(problem, parts, [solutions[0], solved]).tasks[0])
    assert (problem.gpus[1].current > 0).sum() == 2  # both instances serve, none left idle


class SteppedClock:
    """A clock that stands still until a stage moves it on (so that a test, not the
    machine's speed, decides which stages the deadline reaches)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_split_parts_past_the_time_limit_keep_the_starting_plan(monkeypatch) -> None:
    # The deadline passes while the first part is solved: the other three are not solved,
    # each of their GPUs keeps the starting plan's share, the status says so, and the plan
    # is a valid one worth what the estimator says.
    scenario = sized(4, 8, horizon=4).with_planner(decompose_above=1, time_limit_s=10.0, retrain_over_window=False,
                                                   workers=1)
    p = planner.Planner(scenario)
    p.clock = clock = SteppedClock()
    problem = p.problem(state=serving_state(scenario))
    start = p.split_start(problem)
    solve = planner.solve_problem

    def slow_solve(*args, **kwargs):
        clock.now += 100.0  # this part takes the rest of the time limit
        return solve(*args, **kwargs)

    monkeypatch.setattr(planner, "solve_problem", slow_solve)
    plan = p.plan(state=serving_state(scenario))
    assert "3 of 4 parts not reached in time" in plan.stats.status
    assert "split parts" in plan.stats.status and "bound" in plan.stats.status  # both cut by the deadline
    merged = [g for g in range(len(problem.gpus)) if not np.array_equal(plan.tasks[g], start[g])]
    assert len(merged) <= 1  # only the solved part may differ from the start
    assert plan.stats.objective == planner.Planner._worth(problem, plan.tasks)
    assert not np.isfinite(plan.stats.bound)


def test_split_parts_without_a_plan_keep_the_starting_plan(monkeypatch) -> None:
    # A part whose solve ends before HiGHS takes its warm start (its share of a large
    # decision's time is tiny) keeps the starting plan's share, not the current layout.
    scenario = sized(4, 8, horizon=4).with_planner(decompose_above=1, time_limit_s=10.0, retrain_over_window=False,
                                                   workers=1)
    p = planner.Planner(scenario)
    state = p.initial_state()
    problem = p.problem(state=state)
    start = p.split_start(problem)
    moved = [g for g in range(len(problem.gpus))
             if not np.array_equal(start[g], np.tile(problem.gpus[g].current, (len(problem.periods), 1)))]
    assert moved, "the start must move some GPU for this test to tell the two apart"
    solve = planner.solve_problem
    calls = []

    def no_plan_for_one(sub, **kwargs):
        calls.append(sub)
        if len(calls) != moved[0] + 1:  # one after another (workers=1): the parts come in GPU order
            return solve(sub, **kwargs)
        return planner.RawSolution(planner.keep_current(sub), float("nan"), float("inf"),
                                   "Time limit reached; current layouts kept", float("inf"), 0.0, 0.0, kept_gpus=(0,))

    monkeypatch.setattr(planner, "solve_problem", no_plan_for_one)
    plan = p.plan(state=state)
    assert "; 1 of 4 parts without a plan in time, their starting plan kept" in plan.stats.status
    np.testing.assert_array_equal(plan.tasks[moved[0]], start[moved[0]])
    assert plan.stats.objective == planner.Planner._worth(problem, plan.tasks)


def test_without_time_the_split_is_not_even_started() -> None:
    # No time at all: the current layouts are the only start scored, nothing is split.
    scenario = sized(4, 8, horizon=4).with_planner(decompose_above=1, time_limit_s=NO_TIME, retrain_over_window=False,
                                                   workers=1)
    p = planner.Planner(scenario)
    problem = p.problem(state=serving_state(scenario))
    plan = p.plan(state=serving_state(scenario))
    assert plan.stats.status.startswith("starting plan kept; time limit:")
    assert "greedy start" in plan.stats.status and "split parts" in plan.stats.status
    for got, now in zip(plan.tasks, planner.keep_current(problem)):
        np.testing.assert_array_equal(got, now)
    assert plan.stats.reconfigurations == 0 and not np.isfinite(plan.stats.bound)
