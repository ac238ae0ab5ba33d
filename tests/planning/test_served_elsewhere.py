"""A split part credits a completion with the requests other GPUs serve (docs/model.md row
18): the C++ program, the reference builder and the estimator agree on it; a GPU given over
to retraining a tenant whose requests another GPU serves keeps the tenant in its part and
goes on with the job to its end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from brute_force import Case
from migrator.planning import _ilp_reference as reference
from migrator.planning.decompose import merge, served_elsewhere, split_by_plan
from migrator.planning.greedy import greedy_tasks
from migrator.planning.planner import PERIOD_BOUNDS_STATUS, _core_input, expected_score, plan_value, solve_problem
from migrator.planning.planner_problem import TenantState
from migrator.workload.tenant import Tenant
from random_cases import small_random_case


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def _with_credit(seed: int):
    """A random small problem, each tenant's requests partly served by other GPUs."""
    problem = small_random_case(seed).problem()
    rng = np.random.default_rng(seed + 1000)
    own = problem.arrivals * rng.uniform(0.0, 1.0, size=(len(problem.tenants), 1))
    credit = served_elsewhere(problem, range(len(problem.tenants)), own, np.ones(len(problem.tenants), dtype=bool))
    return dataclasses.replace(problem, arrivals=own, served_elsewhere=credit)


@pytest.mark.parametrize("seed", range(16))
def test_the_program_the_reference_and_the_estimator_agree_on_the_credit(seed: int) -> None:
    problem = _with_credit(seed)
    cpp = solve_problem(problem, time_limit_s=60, mip_gap=0.0)
    ref = reference.solve(problem, time_limit_s=60)
    assert cpp.status == "Optimal" and ref.status == "Optimal"
    assert _close(cpp.objective, ref.objective)
    # The estimator, which shares no code with either builder, values the plan the same.
    assert _close(plan_value(problem, cpp.tasks, expected_score(problem, cpp.tasks)), cpp.objective)


def test_the_credit_changes_what_is_worth_planning() -> None:
    # Over the random cases, some optimum earns more with the credit than without it (a
    # completion pays on requests the part does not serve), and never less.
    gained = 0
    for seed in range(16):
        problem = _with_credit(seed)
        if problem.served_elsewhere is None:
            continue
        with_credit = solve_problem(problem, time_limit_s=60, mip_gap=0.0).objective
        without = solve_problem(dataclasses.replace(problem, served_elsewhere=None), time_limit_s=60,
                                mip_gap=0.0).objective
        assert with_credit >= without - 1e-6 * max(1.0, abs(without))
        gained += with_credit > without + 1e-6 * max(1.0, abs(without))
    assert gained >= 2


# GPU 0's 7g serves tenant a; GPU 1's 7g retrains it, 10 of its 40 GPU-s left: done within the
# first 10 of the 16 slots at the 7g's full speed.
A = Tenant("a", "resnet50", 100.0, window_s=200, work_gpu_s=40.0, accuracy_before=0.70, accuracy_after=0.82)
RETRAINING_GPU = Case(
    "retraining-gpu", (A,), np.full((1, 16), 1000.0), gpus=("A100-40GB", "A100-40GB"),
    layouts=("7g.40gb@0", "7g.40gb@0"), assignments=({"7g.40gb@0": "a:infer"}, {"7g.40gb@0": "a:retrain"}),
    setup_s=2.0, reconfig_penalty=10.0, slot=5, progress={"a": TenantState(progress_gpu_s=30.0, done=False)},
    periods=(2, 4, 10),
)


def _current(problem) -> tuple[np.ndarray, ...]:
    return tuple(np.tile(gpu.current, (len(problem.periods), 1)) for gpu in problem.gpus)


def test_a_gpu_given_over_to_retraining_keeps_its_tenant_and_finishes_the_job() -> None:
    problem = RETRAINING_GPU.problem()
    parts, subs = split_by_plan(problem, _current(problem))
    assert parts[1] == [0]  # no share of a's requests, but the job that runs there
    part = subs[1]
    assert part.arrivals.sum() == 0
    # Every request GPU 0 serves, but slot 0's (its accuracy is the state's).
    assert part.served_elsewhere is not None
    assert part.served_elsewhere[0, 0] == 0 and np.all(part.served_elsewhere[0, 1:] == 1000.0)
    solved = solve_problem(part, time_limit_s=30, mip_gap=0.0)
    (tasks,) = solved.tasks
    q = [str(p) for p in part.gpus[0].placements].index("7g.40gb@0")
    assert np.all(tasks[:, q] == 2)  # retraining a, every period
    # Done by the end of slot 9 (10 GPU-s at full speed, no set-up): slots 10-15 of GPU 0's
    # requests are served at the retrained accuracy.
    assert _close(solved.objective, 0.12 * 1000.0 * 6)


def test_the_merged_split_plan_finishes_the_job() -> None:
    # GPU 0's part serves a, GPU 1's goes on retraining it: the merged plan serves a's last
    # slots at the retrained accuracy and is worth the lift more than the plan that drops the job.
    problem = RETRAINING_GPU.problem()
    parts, subs = split_by_plan(problem, _current(problem))
    merged = merge(problem, parts, [solve_problem(sub, time_limit_s=30, mip_gap=0.0) for sub in subs])
    score = expected_score(problem, merged.tasks)
    assert score.accuracy[0, -1] == pytest.approx(0.82)
    dropped = (merged.tasks[0], np.where(merged.tasks[1] == 2, -1, merged.tasks[1]))
    lift = plan_value(problem, merged.tasks, score) - plan_value(problem, dropped, expected_score(problem, dropped))
    assert lift == pytest.approx(0.12 * 1000.0 * 6)


@pytest.mark.parametrize("seed", range(16))
def test_the_most_credit_and_the_period_bounds_bound_the_optimum(seed: int) -> None:
    # What lets a part with the credit settle on its start (docs/model.md, "Parts the period
    # bounds settle"): never below the proven optimum.
    problem = _with_credit(seed)
    optimum = solve_problem(problem, time_limit_s=60, mip_gap=0.0, settle=False)
    assert optimum.status == "Optimal"
    bound = float(np.sum(_core_input(problem).period_bounds)) + problem.most_elsewhere_credit()
    assert bound >= optimum.objective - 1e-6 * max(1.0, abs(optimum.objective))


def test_a_part_that_only_retrains_settles_on_its_start() -> None:
    # The greedy start goes on with the job (it values the requests served elsewhere), which
    # earns the most credit there is: no HiGHS run.
    problem = RETRAINING_GPU.problem()
    _, subs = split_by_plan(problem, _current(problem))
    solved = solve_problem(subs[1], time_limit_s=30, mip_gap=1e-3, warm_start=greedy_tasks(subs[1]))
    assert solved.status == PERIOD_BOUNDS_STATUS
    assert _close(solved.objective, 0.12 * 1000.0 * 6)
