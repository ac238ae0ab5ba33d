"""A decision's deadline (issue 16, item 3): stages skipped by it, the reserve kept for
finishing, and the pieces that make a decision's cost linear in GPUs."""

from __future__ import annotations

import dataclasses

import highspy
import numpy as np
import pytest

from migrator.errors import ConfigError
from migrator.planning import planner
from migrator.planning.deadline import MAX_LAG_SHARE, Deadline, FinishReserve
from migrator.planning.greedy import greedy_start, greedy_tasks
from migrator.planning.highs import HighsRun, new_highs, run_within
from migrator.planning.planner_problem import PlannerState, fleet_supply, gpu_supply
from migrator.planning.split_bound import whole_bound
from scenarios import inference_only, sized


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_deadline_hands_out_the_limit_less_the_reserve_and_names_what_it_cut() -> None:
    clock = ManualClock()
    deadline = Deadline(1.0, reserve_s=0.25, clock=clock)
    assert deadline.left() == pytest.approx(0.75)
    assert deadline.reaches("solve", needs_s=0.5)
    clock.now = 0.5
    assert not deadline.reaches("solve", needs_s=0.5)  # 0.25 left, 0.5 needed
    assert deadline.reaches("bound")  # 0.25 > 0 left
    clock.now = 0.8
    assert deadline.left() == 0.0 and not deadline.reaches("bound") and not deadline.reaches("solve")
    assert deadline.note() == "; time limit: solve, bound skipped, the best plan found kept"
    deadline.hold(5.0)  # a reserve is never more than the limit
    assert deadline.reserve_s == 1.0
    assert Deadline(1.0, clock=clock).note() == ""


def test_finish_reserve_estimates_from_one_score_then_learns_the_slowest_recent_finish_but_one() -> None:
    reserve = FinishReserve()
    assert reserve.estimate(None) == 0.0
    assert reserve.estimate(0.02) == pytest.approx(FinishReserve.per_score * 0.02)
    reserve.record(0.3)
    assert reserve.estimate(0.02) == pytest.approx(FinishReserve.margin * 0.3)  # the one known
    for seconds in (0.1, 0.25):
        reserve.record(seconds)
    assert reserve.estimate(0.02) == pytest.approx(FinishReserve.margin * 0.25)  # 0.3 may be a stall
    reserve.record(0.3)
    assert reserve.estimate(None) == pytest.approx(FinishReserve.margin * 0.3)  # seen twice: what it takes
    for _ in range(FinishReserve.remembered):
        reserve.record(0.1)  # the slow ones are forgotten
    assert reserve.estimate(None) == pytest.approx(FinishReserve.margin * 0.1)


def test_the_solvers_lag_is_held_back_beside_the_reserve_and_learnt_from_each_decision() -> None:
    clock = ManualClock()
    deadline = Deadline(1.0, reserve_s=0.1, clock=clock, lag_s=0.05)
    assert deadline.left() == pytest.approx(0.85)
    clock.now = 0.88  # the solve ran 30 ms past what was handed out ...
    deadline.solved()
    assert deadline.lag() == pytest.approx(0.03)
    assert not deadline.finishing_late()  # ... within the lag held back: the reserve is whole
    clock.now = 0.99
    assert deadline.finishing_late()
    on_time = Deadline(1.0, reserve_s=0.1, clock=clock)
    clock.now += 0.5
    on_time.solved()
    assert on_time.lag() == 0.0

    reserve = FinishReserve()
    assert reserve.lag() == 0.0
    reserve.record(0.01, lag_s=0.04)
    for _ in range(FinishReserve.remembered):
        reserve.record(0.01)  # decisions whose solve ended early show no lag
    assert reserve.lag() == pytest.approx(FinishReserve.margin * 0.04)  # still held, unlike a slow finish
    assert reserve.estimate(None) == pytest.approx(FinishReserve.margin * 0.01)
    for _ in range(FinishReserve.remembered_lags):
        reserve.record(0.01)
    assert reserve.lag() == 0.0


def test_a_stall_is_not_held_back_as_the_solvers_lag() -> None:
    clock = ManualClock()
    assert Deadline(1.0, clock=clock, lag_s=5.0).lag_s == pytest.approx(MAX_LAG_SHARE)
    assert Deadline(1.0, reserve_s=0.1, clock=clock, lag_s=5.0).left() == pytest.approx(0.9 - MAX_LAG_SHARE)
    # Where the reserve and the lag held back the whole limit, no solve was handed time: the
    # time it took to get to the solve stage is no lag (it would feed on itself).
    nothing = Deadline(1.0, reserve_s=1.0, clock=clock)
    clock.now += 0.05
    nothing.solved()
    assert nothing.left() == 0.0 and nothing.lag() == 0.0


class _Stall:
    """A fake clock that one call of a planner stage moves on by ``seconds``, once: the
    machine stalled there."""

    def __init__(self, seconds: float) -> None:
        self.clock, self.seconds = ManualClock(), seconds

    def wrap(self, stage):
        def stalled(*args, **kwargs):
            if self.seconds:
                self.clock.now += self.seconds
                self.seconds = 0.0
            return stage(*args, **kwargs)
        return stalled


def _cut_short(p: planner.Planner, count: int) -> list[bool]:
    """Whether each of ``count`` receding decisions was cut short by its time limit."""
    state, cut = p.initial_state(), []
    for _ in range(count):
        plan = p.plan(state=state)
        cut.append(plan.stats.time_limited)
        state = planner.Planner.advance(plan)
    return cut


def test_one_stalled_solve_leaves_the_next_decisions_their_time(monkeypatch) -> None:
    """A decision whose solve stage the machine stalled in for five limits: the next ones
    still solve (before MAX_LAG_SHARE they held the whole limit back for 50 decisions and
    kept their starting plans)."""
    p = planner.Planner(sized(1, 4))
    stall = _Stall(5 * p.config.time_limit_s)
    p.clock = stall.clock
    monkeypatch.setattr(planner, "solve_problem", stall.wrap(planner.solve_problem))
    cut = _cut_short(p, 3)
    assert p._reserve.lag() >= MAX_LAG_SHARE * p.config.time_limit_s  # the stall was seen ...
    assert cut[1:] == [False, False]  # ... and cost nothing


def test_one_stalled_finish_costs_one_decision(monkeypatch) -> None:
    """A decision whose finishing the machine stalled in: the next one keeps its starting
    plan (the stall is all it knows of finishing), the one after solves again (it used to
    take five)."""
    p = planner.Planner(sized(1, 4))
    stall = _Stall(5 * p.config.time_limit_s)
    p.clock = stall.clock
    monkeypatch.setattr(planner.Planner, "decode", stall.wrap(planner.Planner.decode))
    assert _cut_short(p, 4)[1:] == [True, False, False]


def test_greedy_start_past_its_deadline_keeps_the_other_gpus_as_they_are() -> None:
    scenario = inference_only(sized(4, 8, horizon=4))
    problem = planner.Planner(scenario).problem()
    full = greedy_tasks(problem)
    clock = ManualClock()
    deadline = Deadline(1.0, clock=clock)
    calls = []

    def tick() -> float:
        calls.append(clock.now)
        if len(calls) > 2:  # two GPUs reached, then the time is up
            clock.now = 2.0
        return clock.now

    deadline.clock = tick
    cut = greedy_tasks(problem, deadline)
    for g in range(2):
        np.testing.assert_array_equal(cut[g], full[g])
    for g in range(2, 4):
        np.testing.assert_array_equal(cut[g], planner.keep_current(problem)[g])
    assert any((full[g] != cut[g]).any() for g in range(2, 4))  # the cut made a difference
    assert deadline.skipped and deadline.skipped[0].startswith("greedy start")


def _deadline_after(reads: int) -> Deadline:
    """A deadline whose time is up after ``reads`` readings of its clock."""
    clock, calls = ManualClock(), []
    deadline = Deadline(1.0, clock=clock)

    def tick() -> float:
        calls.append(clock.now)
        if len(calls) > reads:
            clock.now = 2.0
        return clock.now

    deadline.clock = tick
    return deadline


def _two_serving_one_idle() -> tuple:
    """Three A100s as one 7g each: GPUs 1 and 2 serve resnet (nearly all its demand between
    them), GPU 0 serves nobody, and vit is served nowhere."""
    scenario = inference_only(sized(3, 2, horizon=4))
    resnet = scenario.tenants[0].name
    state = PlannerState(layouts=("7g.40gb@0",) * 3,
                         assignments=({}, {"7g.40gb@0": f"{resnet}:infer"}, {"7g.40gb@0": f"{resnet}:infer"}))
    return planner.Planner(scenario).problem(state=state), 0, 1  # resnet's and vit's indices


def test_a_sweep_plans_a_gpu_against_what_the_others_serve_and_says_where_it_stopped() -> None:
    # The deadline reaches GPU 0 only. From scratch the greedy start gives it to resnet, which
    # GPUs 1 and 2 (not reached, kept) serve already; the sweep gives it to vit. Fails if the
    # sweep plans a GPU against the whole demand, or touches a GPU it did not reach.
    problem, resnet, vit = _two_serving_one_idle()
    scratch, stopped = greedy_start(problem, _deadline_after(1))
    assert stopped == 1 and scratch[0][0].max() == 1 + 2 * resnet
    swept, stopped = greedy_start(problem, _deadline_after(1), sweep_from=0)
    assert stopped == 1 and swept[0][0].max() == 1 + 2 * vit
    for g in (1, 2):
        np.testing.assert_array_equal(swept[g], planner.keep_current(problem)[g])
    # Round from GPU 2: every GPU re-planned, none left, both tenants served.
    swept, stopped = greedy_start(problem, sweep_from=2)
    assert stopped is None and {int(t[0].max()) for t in swept} == {1 + 2 * vit, 1 + 2 * resnet}


def test_the_planner_sweeps_on_from_where_the_last_start_stopped(monkeypatch) -> None:
    # 8 GPUs, a deadline that reaches 3 GPUs per start: from scratch it stops at GPU 3, the
    # sweeps of the last plan then start at 3 and at 6, and the one after goes round from 1.
    p = planner.Planner(inference_only(sized(8, 8, horizon=4)))
    problem = p.problem()
    p._previous = greedy_tasks(problem)  # a last plan to sweep
    starts = []
    real = planner.greedy_start

    def spy(problem, deadline=None, sweep_from=None, base=None):
        starts.append(sweep_from)
        assert (base is None) == (sweep_from is None)
        return real(problem, _deadline_after(3) if sweep_from != 1 else None, sweep_from, base)

    monkeypatch.setattr(planner, "greedy_start", spy)
    for _ in range(5):
        p._greedy_start(problem, None)
    assert starts == [None, 3, 6, 1, None]


def test_bound_given_up_when_its_build_outlasts_the_deadline() -> None:
    problem = planner.Planner(sized(2, 4, horizon=8)).problem()
    value, basis = whole_bound(problem, 10.0, deadline=Deadline(1.0, clock=ManualClock()))
    assert np.isfinite(value) and basis is not None
    readings = iter([0.0, 0.5])  # the deadline set at 0, half-way at the first class, then past it

    def clock() -> float:
        return next(readings, 2.0)

    assert whole_bound(problem, 10.0, deadline=Deadline(1.0, clock=clock)) == (float("inf"), None)


def test_fleet_supply_is_the_sum_of_each_gpus_supply() -> None:
    problem = planner.Planner(sized(3, 6, horizon=8)).problem()
    rng = np.random.default_rng(7)
    gpu = problem.gpus[0]
    shape = (len(problem.periods), len(gpu.placements))
    timelines = rng.integers(-1, problem.n_tasks, size=(5, *shape))
    current = rng.integers(-1, problem.n_tasks, size=(5, shape[1]))
    fleet = fleet_supply(problem, current, timelines, gpu.capacity_rps, gpu.retrain_speed)

    each = [gpu_supply(problem, dataclasses.replace(gpu, current=c), t) for c, t in zip(current, timelines)]
    np.testing.assert_allclose(fleet.capacity, sum(s.capacity for s in each))
    np.testing.assert_allclose(fleet.progress, sum(s.progress for s in each))
    np.testing.assert_array_equal(fleet.retraining, sum(s.retraining for s in each))
    assert fleet.new == sum(s.new for s in each) and fleet.new > 0


def test_gpus_alike_share_one_read_only_template_but_not_their_tasks() -> None:
    scenario = sized(3, 6, horizon=8)
    p = planner.Planner(scenario)
    state = p.initial_state()
    names = [t.name for t in scenario.tenants]
    first = scenario.gpus[0].layout.split(",")[0]
    state = planner.PlannerState(layouts=state.layouts, assignments=({first: f"{names[0]}:infer"}, {}, {}))
    problem = p.problem(state=state)
    a, b = problem.gpus[0], problem.gpus[1]
    assert a.capacity_rps is b.capacity_rps and not a.capacity_rps.flags.writeable
    assert (a.current != b.current).any()
    assert p.problem(state=state).gpus[0].capacity_rps is a.capacity_rps  # kept from one decision to the next


def test_a_horizon_past_what_the_time_limit_can_solve_is_planned_in_its_first_slots() -> None:
    scenario = sized(2, 4, horizon=1000)
    config = dataclasses.replace(scenario.planner, time_limit_s=1.0)
    p = planner.Planner(scenario, config)
    assert p.program_slots() == planner.PROGRAM_SLOTS_PER_S
    plan = p.plan()
    assert plan.problem is not None and plan.problem.horizon == planner.PROGRAM_SLOTS_PER_S
    assert all(len(gpu.slots) == planner.PROGRAM_SLOTS_PER_S for gpu in plan.gpus)
    assert f"planned the first {planner.PROGRAM_SLOTS_PER_S} of the horizon's 1000 slots" in plan.stats.status
    # The horizon asked for is still what a forecast must cover.
    with pytest.raises(ConfigError, match="forecast must have shape"):
        p.plan(np.ones((4, 999)))


def test_a_horizon_within_the_cap_is_planned_whole() -> None:
    scenario = sized(1, 2, horizon=planner.MIN_PROGRAM_SLOTS)
    config = dataclasses.replace(scenario.planner, time_limit_s=0.01)  # the floor keeps the default horizon
    p = planner.Planner(scenario, config)
    assert p.program_slots() == planner.MIN_PROGRAM_SLOTS
    assert "planned the first" not in p.plan().stats.status


def test_a_solve_stopped_by_its_timer_reads_as_hitting_the_time_limit() -> None:
    # A knapsack of 400 items with close weights: far more than a millisecond's work.
    rng = np.random.default_rng(0)
    weights = rng.integers(1000, 1100, 400).astype(np.float64)
    h = new_highs()
    h.setOptionValue("presolve", "off")
    inf = highspy.kHighsInf
    for w in weights:
        h.addVar(0.0, 1.0)
        h.changeColCost(h.getNumCol() - 1, -(w + rng.uniform(0, 5)))
    h.changeColsIntegrality(len(weights), np.arange(len(weights), dtype=np.int32),
                            np.full(len(weights), highspy.HighsVarType.kInteger))
    h.addRow(-inf, float(weights.sum() / 2 + 0.5), len(weights), np.arange(len(weights), dtype=np.int32), weights)
    run_within(h, 1e-3)
    run = HighsRun.of(h, np.zeros(len(weights)))
    assert run.status == "Time limit reached"
    assert h.getModelStatus() in (highspy.HighsModelStatus.kInterrupt, highspy.HighsModelStatus.kTimeLimit)


def test_a_bound_too_large_to_solve_in_time_is_not_attempted(monkeypatch) -> None:
    scenario = sized(2, 4)
    p = planner.Planner(scenario)
    assert np.isfinite(p.plan().stats.bound)  # the split's bound, within the cap
    monkeypatch.setattr(planner, "MAX_BOUND_TENANT_SLOTS", 4 * scenario.planner.horizon - 1)
    plan = planner.Planner(scenario).plan()
    assert plan.stats.bound is None or not np.isfinite(plan.stats.bound)
    assert "bound (too large to solve in time)" in plan.stats.status
