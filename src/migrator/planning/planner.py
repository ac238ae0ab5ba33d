"""The exact planner: C++-built integer program, solved by HiGHS, decoded into a Plan.

``Planner(scenario).plan()`` decides, for every GPU and each slot of the horizon, the MIG
layout and the task of every instance, maximising the Goodput of docs/model.md. Only the
first slot is meant to be applied; the rest is the look-ahead that justifies it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Collection, Mapping, Sequence

import highspy
import numpy as np

from .. import _core
from ..errors import ConfigError
from ..geometry.layout import Layout
from ..workload.goodput import score_arrays
from ..workload.scenario import Scenario
from ..workload.settings import PlannerConfig
from .deadline import SKIPPED_NOTE, Deadline, FinishReserve
from .decompose import merge, split_by_plan
from .greedy import greedy_start, greedy_tasks, packed_tasks
from .highs import TIME_LIMIT_STATUS, HighsRun, checked_run, new_highs, relative_gap, run_within
from .planner_problem import (
    FLOOR_WEIGHT,
    PlannerState,
    Problem,
    ProfileFigures,
    RawSolution,
    TenantState,
    alike_gpus,
    build_problem,
    core_gpu,
    fleet_supply,
    task_name,
)
from .retraining import eligible_tenants, retrain_over_window
from .split_bound import BoundKeeper, relaxed_tenant_slots

__all__ = ["Plan", "PlanStats", "Planner", "SlotPlan", "GpuPlan", "solve_problem"]

log = logging.getLogger(__name__)

# -- solving ------------------------------------------------------------------------------------

#: Status of a split's part that the time limit did not reach.
NOT_REACHED = "not reached by the time limit"
#: Seconds a split must have left to be worth starting (a part's build and solve take ~20 ms).
MIN_SPLIT_S = 0.05
#: Status of a solve the period bounds settled without HiGHS: the warm start is within the
#: gap of their sum (:func:`solve_problem`).
PERIOD_BOUNDS_STATUS = "Optimal: the starting plan reaches the period bounds"
#: Slots of horizon the program may plan per second of time limit, and at least. HiGHS does
#: not stop its presolve at the time limit, nor its branch-and-bound between two checks: on
#: the built-in scenario (2 A100s, 4 tenants, 2-core machine under load) a 10000-slot horizon
#: took 6 s under a 2 s limit, 1000 slots 1.4 s under 1 s, 200 slots 2.7 s under 2 s; with
#: 60 slots per second, 1.03-1.05 times the limit at 1, 2 and 5 s. Past the cap the program
#: plans the horizon's first slots only (the plan's status says so); docs/model.md measured
#: 200 slots worth no more than 30 with the retraining pass.
PROGRAM_SLOTS_PER_S, MIN_PROGRAM_SLOTS = 60, 30
#: Tenant-slots of its relaxation above which the split's bound is not attempted: at 512
#: GPUs / 1024 tenants (30 720) the relaxation was not solved in 120 s from cold, and building
#: it beside the starting plans took the time they needed (the decision went to 1.16 s under
#: 1 s); at 128 GPUs / 256 tenants (7 680) it takes 1.8 s from cold and 0.3 s from a basis.
#: Above split_bound.POOL_ABOVE alike tenants are pooled, which makes most relaxations small.
MAX_BOUND_TENANT_SLOTS = 16_000
#: Under a node limit, each HiGHS run still stops after this many times ``time_limit_s``.
NODE_LIMIT_SAFETY = 10.0
#: HiGHS options for the program's MIPs (the whole program and the split's parts).
#: Restarts off: HiGHS restarts its search when a tenth of the integers are fixed at the
#: root, and on the per-GPU parts that repeated five or six times, each a new presolve and
#: cut loop (13 slow parts proved their gap in 8.1 s instead of 17.1 s; docs/model.md, "How
#: latency grows"). Light presolve (``presolve_mode`` 2 of 0 default, 1 initial sweep, 2
#: light, 3 full): the full one took 0.07 s of a 0.18 s one-GPU decision and removed little,
#: the light one halved the solve time of 1-GPU receding decisions and of the 8-GPU split's
#: parts (docs/model.md, "HiGHS's presolve"). No feasibility jump: it looks for a first plan,
#: and every caller passes one as the warm start. No RINS or RENS: their sub-MIPs took half of
#: the root node of the slow parts (a retraining within reach), whose warm start or first
#: rounding is already the optimum; without them the built-in scenario's 600 s replay ran in
#: 70 s instead of 85 s over three seeds at the same Goodput, and plans elsewhere moved within
#: the noise of HiGHS's own random seed (docs/model.md, "HiGHS's sub-MIP heuristics").
MIP_OPTIONS: Mapping[str, Any] = MappingProxyType({
    "mip_allow_restart": False,
    "presolve_mode": 2,
    "mip_heuristic_run_feasibility_jump": False,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
})


def _core_input(problem: Problem, strengthen: bool = True, break_symmetry: bool = True) -> Any:
    return _core.build_plan_model(
        n_tenants=len(problem.tenants),
        slot_s=problem.slot_s,
        periods=np.asarray(problem.periods),
        setup_s=problem.setup_s,
        penalty=problem.reconfig_penalty,
        arrivals=problem.arrivals.reshape(-1),
        acc_before=problem.acc_before,
        acc_after=problem.acc_after,
        work_left=problem.work_left,
        work_full=problem.work_full,
        done0=problem.done0.astype(np.int32),
        window=problem.window_slots,
        offset=problem.window_offset,
        terminal_gain=terminal_gains(problem),
        gpus=[core_gpu(g) for g in problem.gpus],
        strengthen=strengthen,
        break_symmetry=break_symmetry,
        retrain_instances=problem.retrain_instances,
        floor=problem.floors(),
        floor_weight=FLOOR_WEIGHT,
        served_elsewhere=(np.zeros(0) if problem.served_elsewhere is None
                          else np.asarray(problem.served_elsewhere, dtype=np.float64).reshape(-1)),
    )


def terminal_gains(problem: Problem) -> np.ndarray:
    """Constraint (13)'s gains, zeros where the problem has no terminal value."""
    if problem.terminal_gain is None:
        return np.zeros(len(problem.tenants))
    return np.asarray(problem.terminal_gain, dtype=np.float64)


def _highs_lp(arrays: Any) -> highspy.HighsLp:
    lp = highspy.HighsLp()
    lp.num_col_ = len(arrays.col_cost)
    lp.num_row_ = len(arrays.row_lower)
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = arrays.col_cost
    lp.col_lower_ = arrays.col_lower
    lp.col_upper_ = arrays.col_upper
    lp.row_lower_ = arrays.row_lower
    lp.row_upper_ = arrays.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = lp.num_col_
    lp.a_matrix_.num_row_ = lp.num_row_
    lp.a_matrix_.start_ = arrays.a_start
    lp.a_matrix_.index_ = arrays.a_index
    lp.a_matrix_.value_ = arrays.a_value
    kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
    lp.integrality_ = [kinds[int(v)] for v in arrays.integrality]
    return lp


def _z_columns(problem: Problem, arrays: Any, g: int) -> np.ndarray:
    """Columns of GPU ``g``'s z variables as (periods, placements, tasks), -1 where absent."""
    periods, k, q = len(problem.periods), problem.n_tasks, len(problem.gpus[g].placements)
    start = arrays.z_offset[g]
    return arrays.z_column[start : start + periods * q * k].reshape(periods, q, k)


def _decode_tasks(problem: Problem, arrays: Any, values: np.ndarray) -> tuple[np.ndarray, ...]:
    out = []
    for g in range(len(problem.gpus)):
        columns = _z_columns(problem, arrays, g)
        chosen = np.where(columns >= 0, values[np.maximum(columns, 0)], 0.0) > 0.5
        tasks = np.where(chosen.any(axis=2), chosen.argmax(axis=2), -1)
        out.append(tasks.astype(np.int64))
    return tuple(out)


def keep_current(problem: Problem) -> tuple[np.ndarray, ...]:
    """Every period as now: the plan when the solver found nothing in time."""
    return tuple(np.tile(g.current, (len(problem.periods), 1)) for g in problem.gpus)


def solve_problem(
    problem: Problem, *, time_limit_s: float | None = None, mip_gap: float = 1e-4,
    warm_start: Sequence[np.ndarray] | None = None, strengthen: bool = True, break_symmetry: bool = True,
    node_limit: int | None = None, settle: bool = True,
) -> RawSolution:
    """Build the program in C++, solve it with HiGHS, decode the instances' tasks.

    Where the ``warm_start`` is already within ``mip_gap`` of the sum of the period bounds
    (14), it is returned as it is, proven, without HiGHS (``settle=False`` solves anyway).

    At the time limit the best plan found is returned with its gap; with none found, the
    current layout and tasks are kept (status says so). ``strengthen=False`` leaves out the
    redundant rows that tighten the relaxation and ``break_symmetry=False`` the rows that
    order twin placements in the first period (docs/model.md), for tests and measurements.
    ``node_limit`` stops the branch-and-bound after that many nodes; 0 stops it before the
    root node's relaxation, with the warm start as presolve leaves it
    (``PlannerConfig.node_limit``; None: no limit).
    """
    started = time.perf_counter()
    arrays = _core_input(problem, strengthen, break_symmetry)
    proven = _start_at_period_bounds(problem, arrays, warm_start, mip_gap) if settle else None
    if proven is not None:
        return dataclasses.replace(proven, build_s=time.perf_counter() - started)
    lp = _highs_lp(arrays)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    run = checked_run(lambda limit, presolve: _run_highs(lp, problem, arrays, limit, mip_gap, warm_start,
                                                         presolve=presolve, node_limit=node_limit),
                      time_limit_s, mip_gap)
    solve_s = time.perf_counter() - started
    common = dict(
        bound=run.bound, build_s=build_s, solve_s=solve_s,
        n_columns=len(arrays.col_cost), n_rows=len(arrays.row_lower), n_integers=arrays.n_integers,
    )
    if not run.feasible:
        # No plan in time (HiGHS did not even take the warm start): the GPUs stay as they
        # are. A layout kept is valid and costs nothing; an unverified guess could cost both.
        # The caller says what it kept instead (its start, a part's share): logged there.
        log.info("HiGHS found no plan in time (%s)", run.status)
        return RawSolution(keep_current(problem), float("nan"), status=f"{run.status}; current layouts kept",
                           mip_gap=float("inf"), kept_gpus=tuple(range(len(problem.gpus))), **common)
    return RawSolution(
        tasks=_decode_tasks(problem, arrays, run.values),
        objective=run.objective,
        status=run.status,
        mip_gap=run.mip_gap,
        **common,
    )


def _start_at_period_bounds(problem: Problem, arrays: Any, warm_start: Sequence[np.ndarray] | None,
                            mip_gap: float) -> RawSolution | None:
    """The warm start, where its value is already within ``mip_gap`` of the sum of the
    period bounds (14): no plan can be worth more than that sum, so HiGHS would only prove
    what the bounds already do (docs/model.md, "Parts the period bounds settle"). None where
    the bounds were not built (``strengthen=False``), the program has a terminal credit
    (which the bounds leave out), or the start falls short of them. A split part's credit
    for completions on the requests other GPUs serve (18) adds the most it can earn."""
    if warm_start is None or problem.terminal_gain is not None or len(warm_start) != len(problem.gpus):
        return None
    bound = float(np.sum(arrays.period_bounds)) + problem.most_elsewhere_credit()
    if not np.isfinite(bound):
        return None
    tasks = tuple(np.asarray(t, dtype=np.int64) for t in warm_start)
    worth = plan_value(problem, tasks, expected_score(problem, tasks))
    gap = relative_gap(worth, bound) if worth < bound else 0.0
    if gap > mip_gap:
        return None
    return RawSolution(tasks=tasks, objective=worth, bound=max(bound, worth), status=PERIOD_BOUNDS_STATUS,
                       mip_gap=gap, build_s=0.0, solve_s=0.0, n_columns=len(arrays.col_cost),
                       n_rows=len(arrays.row_lower), n_integers=arrays.n_integers, scored=True)


def _run_highs(lp: highspy.HighsLp, problem: Problem, arrays: Any, time_limit_s: float | None, mip_gap: float,
               warm_start: Sequence[np.ndarray] | None, presolve: bool, node_limit: int | None = None) -> HighsRun:
    h = new_highs()
    h.setOptionValue("mip_rel_gap", float(mip_gap))
    if node_limit is not None:
        h.setOptionValue("mip_max_nodes", int(node_limit))
    for name, value in MIP_OPTIONS.items():
        h.setOptionValue(name, value)
    if not presolve:
        h.setOptionValue("presolve", "off")
    h.passModel(lp)
    if warm_start is not None:
        _warm_start(h, problem, arrays, warm_start)
    run_within(h, time_limit_s)
    return HighsRun.of(h, arrays.col_cost)


def twin_ordered(problem: Problem, arrays: Any, tasks: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The plan with each group of twin placements' timelines swapped into the order the
    symmetry rows (15) ask of period 0: the same plan, by value, that the solver accepts."""
    out = [np.array(t, copy=True) for t in tasks]
    groups: dict[tuple[int, int], list[int]] = {}
    for g, first, r in np.asarray(arrays.twin_pairs, dtype=np.int64).reshape(-1, 3).tolist():
        groups.setdefault((g, first), [first]).append(r)
    for (g, _), members in groups.items():
        first_tasks = out[g][0, members]
        rank = np.where(first_tasks >= 0, problem.n_tasks - first_tasks, 0)
        order = [members[m] for m in np.argsort(-rank, kind="stable")]
        out[g][:, members] = out[g][:, order]
    return tuple(out)


def _warm_start(h: highspy.Highs, problem: Problem, arrays: Any, tasks: Sequence[np.ndarray]) -> None:
    """Offer a previous plan's z values as a starting point; HiGHS completes the rest."""
    tasks = twin_ordered(problem, arrays, tasks)
    index, value = [], []
    for g in range(len(problem.gpus)):
        columns = _z_columns(problem, arrays, g)
        present = columns >= 0
        chosen = np.arange(problem.n_tasks)[None, None, :] == tasks[g][:, :, None]
        index.append(columns[present])
        value.append(chosen[present].astype(np.float64))
    index_all = np.concatenate(index).astype(np.int32) if index else np.zeros(0, dtype=np.int32)
    if index_all.size:
        h.setSolution(index_all.size, index_all, np.concatenate(value))


# -- plans --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotPlan:
    """One GPU in one slot: the canonical layout and the task of each instance."""

    layout: str
    assignment: Mapping[str, str]


@dataclass(frozen=True)
class GpuPlan:
    name: str
    model: str
    slots: tuple[SlotPlan, ...]


@dataclass(frozen=True)
class PlanStats:
    """How a plan was found. ``objective``, ``bound`` and ``mip_gap`` describe the program's
    solution over the horizon (for a split, the merged plan's value and the bound of
    ``migrator.planning.split_bound``); the retraining pass (``retrain_over_window``) may then move
    first-period instances to retraining for gains beyond the horizon, which the plan's
    ``goodput`` and ``reconfigurations`` include and ``objective`` does not. For a split,
    ``build_s`` and ``solve_s`` add up the parts' own times (and the bound's), which exceed
    the wall-clock time where the parts are solved side by side (``PlannerConfig.workers``)."""

    build_s: float
    solve_s: float
    decode_s: float
    status: str
    objective: float
    bound: float
    mip_gap: float
    columns: int
    rows: int
    integers: int
    reconfigurations: int

    @property
    def time_limited(self) -> bool:
        """Whether the time limit cut the decision short: a HiGHS run it stopped, or a stage
        the deadline did not reach. What such a decision found depends on the machine's
        speed and load (``PlannerConfig.node_limit`` avoids it)."""
        return TIME_LIMIT_STATUS in self.status or SKIPPED_NOTE in self.status


@dataclass(frozen=True)
class Plan:
    """Per GPU and slot the layout and assignment; expected Goodput per tenant; solver stats."""

    gpus: tuple[GpuPlan, ...]
    goodput: Mapping[str, float]
    stats: PlanStats
    slot_s: float = 1.0
    attainment: Mapping[str, float] = field(default_factory=dict)
    tasks: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)
    problem: Problem | None = field(default=None, repr=False, compare=False)

    @property
    def total_goodput(self) -> float:
        return float(sum(self.goodput.values()))

    def first(self, gpu: int) -> SlotPlan:
        """What to apply now on GPU ``gpu``."""
        return self.gpus[gpu].slots[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": [
                {
                    "name": g.name,
                    "model": g.model,
                    "slots": [{"layout": s.layout, "assignment": dict(s.assignment)} for s in g.slots],
                }
                for g in self.gpus
            ],
            # each tenant's expected share of its arrivals served within SLO beside its Goodput
            "goodput": {"total": self.total_goodput, "per_tenant": dict(self.goodput),
                        "slo_attainment": dict(self.attainment)},
            # JSON has no infinity: an unknown bound or gap is null.
            "stats": {k: _finite_or_none(v) for k, v in asdict(self.stats).items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        """A stable JSON document: keys ``gpus`` (``name``, ``model``, ``slots``), ``goodput``, ``stats``."""
        return json.dumps(self.to_dict(), indent=indent, default=json_default, allow_nan=False)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default`` for our documents: numpy scalars as Python numbers."""
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _slot_plans(problem: Problem, tasks: np.ndarray, gpu: int) -> tuple[SlotPlan, ...]:
    g = problem.gpus[gpu]
    out = []
    for j, length in enumerate(problem.periods):
        present = [(g.placements[q], int(k)) for q, k in enumerate(tasks[j]) if k >= 0]
        layout = str(Layout.of(p for p, _ in present))
        assignment = {str(p): task_name(k, problem.tenants) for p, k in present}
        out.extend([SlotPlan(layout, assignment)] * length)
    return tuple(out)


def _first_slots(periods: Sequence[int], slots: int) -> tuple[int, ...]:
    """``periods`` cut to their first ``slots`` slots."""
    out: list[int] = []
    for length in periods:
        if sum(out) >= slots:
            break
        out.append(min(int(length), slots - sum(out)))
    return tuple(out)


def _kept_parts(solutions: Sequence[RawSolution]) -> str:
    """How many of the split's parts have no plan of their own, and why."""
    n = len(solutions)
    not_reached = sum(s.status == NOT_REACHED for s in solutions)
    unsolved = sum(bool(s.kept_gpus) for s in solutions) - not_reached
    phrases = []
    if not_reached:
        phrases.append(f"{not_reached} of {n} parts not reached in time")
    if unsolved:
        phrases.append(f"{unsolved} of {n} parts without a plan in time")
    return " and ".join(phrases)


def reconfigurations(problem: Problem, tasks: Sequence[np.ndarray]) -> int:
    """Instances created or re-assigned over the plan (the penalty's count)."""
    count = 0
    for g, gpu in enumerate(problem.gpus):
        before = gpu.current
        for j in range(len(problem.periods)):
            now = tasks[g][j]
            count += int(np.sum((now >= 0) & (now != before)))
            before = now
    return count


# -- the planner --------------------------------------------------------------------------------


class Planner:
    """Plans MIG layouts and instance tasks for a scenario.

    Parameters
    ----------
    scenario : Scenario
        GPUs, tenants, slot length and default settings.
    config : PlannerConfig, optional
        Overrides the scenario's ``planner`` settings.
    periods : sequence of int, optional
        Period lengths (slots) instead of the growing default; all ones is the per-slot model.
    """

    def __init__(
        self, scenario: Scenario, config: PlannerConfig | None = None, *, periods: Sequence[int] | None = None
    ) -> None:
        self.scenario = scenario
        self.config = config if config is not None else scenario.planner
        self.periods = tuple(periods) if periods is not None else None
        if self.periods is not None and sum(self.periods) != self.config.horizon:
            raise ConfigError(
                f"periods must add up to the horizon ({self.config.horizon}), got {sum(self.periods)}",
                field="periods",
            )
        self._models = scenario.model_tables()
        self._arrivals: np.ndarray | None = None  # the scenario's trace, drawn on first use
        self._previous: tuple[np.ndarray, ...] | None = None
        self._bounds = BoundKeeper()  # the split bounds of this planner's decisions
        # Seconds each GPU's split part took at the last decision, where every part was solved.
        self._part_seconds: np.ndarray | None = None
        # Where the last greedy start stopped at its deadline: the next one sweeps on from there.
        self._sweep_from: int | None = None
        # The tenants' figures per GPU model and profile do not change between decisions.
        self._figures = ProfileFigures(scenario.tenants, self._models, self.config.load_headroom)
        # Figures and compiled kernels are the planner's to set up, not a decision's to wait for.
        self._figures.prepare(scenario.geometries())
        _warm_estimator()
        self._reserve = FinishReserve()
        # Decisions' deadlines run on it; under a node limit they must not depend on the time.
        self.clock: Callable[[], float] = _stopped_clock if self._by_nodes else time.perf_counter

    def initial_state(self) -> PlannerState:
        """The scenario's starting point: its layouts, every instance idle, slot 0."""
        return PlannerState(
            layouts=tuple(g.layout for g in self.scenario.gpus),
            assignments=tuple({} for _ in self.scenario.gpus),
        )

    def default_forecast(self, state: PlannerState) -> np.ndarray:
        """The scenario's own arrivals for the horizon (held at the last value past its end)."""
        if self._arrivals is None:
            self._arrivals = self.scenario.arrivals().counts.astype(np.float64)
        counts = self._arrivals
        stop = state.slot + self.config.horizon
        if stop > counts.shape[1]:
            counts = np.concatenate([counts, np.repeat(counts[:, -1:], stop - counts.shape[1], axis=1)], axis=1)
        return counts[:, state.slot : stop]

    def problem(self, forecast: np.ndarray | None = None, state: PlannerState | None = None) -> Problem:
        state = state if state is not None else self.initial_state()
        forecast = self.default_forecast(state) if forecast is None else np.asarray(forecast, dtype=np.float64)
        return build_problem(
            self.scenario.geometries(), self.scenario.tenants, forecast, state, self.config,
            slot_s=self.scenario.slot_s, models=self._models, periods=self.periods, figures=self._figures,
        )

    def plan(self, forecast: np.ndarray | None = None, state: PlannerState | None = None) -> Plan:
        """Decide the next horizon.

        Parameters
        ----------
        forecast : array (n_tenants, horizon), optional
            Expected arrivals per slot; default the scenario's own arrivals.
        state : PlannerState, optional
            Current layouts, tasks and retraining progress; default :meth:`initial_state`.
        """
        state = state if state is not None else self.initial_state()
        # Drawing the scenario's own arrivals (the default forecast, once per planner) is the
        # scenario's cost, not the decision's: the deadline starts after it.
        forecast = self.default_forecast(state) if forecast is None else forecast
        deadline = Deadline(self.config.time_limit_s, self._reserve.estimate(None), clock=self.clock,
                            lag_s=self._reserve.lag())
        forecast, cut = self._within_program_slots(forecast)
        problem = self._problem(forecast, state, cut)
        if self._split_needed(problem):
            raw = self._solve_split(problem, deadline)
        else:
            warm = self._shifted_previous(problem) or greedy_tasks(problem, deadline)
            raw = solve_problem(problem, time_limit_s=self._solve_limit(deadline.left()), mip_gap=self.config.mip_gap,
                                warm_start=warm, node_limit=self.config.node_limit)
            deadline.solved()
            if raw.kept_gpus:
                raw = self._warm_start_if_better(problem, raw, warm)
                log.warning("no plan found in time: %s", raw.status)
        if cut:
            raw = dataclasses.replace(raw, status=f"{raw.status}; planned the first {problem.horizon} of the "
                                                  f"horizon's {self.config.horizon} slots (the time limit)")
        return self.finish(problem, raw, deadline=deadline)

    def program_slots(self) -> int:
        """Slots the program plans: the horizon, or its first ``PROGRAM_SLOTS_PER_S`` per
        second of ``time_limit_s`` (at least ``MIN_PROGRAM_SLOTS``) where it is longer, since
        HiGHS's presolve of a longer program outlasts the time limit."""
        cap = max(MIN_PROGRAM_SLOTS, int(PROGRAM_SLOTS_PER_S * self.config.time_limit_s))
        return min(self.config.horizon, cap)

    def _within_program_slots(self, forecast: np.ndarray) -> tuple[np.ndarray, bool]:
        forecast = np.asarray(forecast, dtype=np.float64)
        slots = self.program_slots()
        if slots >= self.config.horizon or forecast.ndim != 2 or forecast.shape[1] != self.config.horizon:
            return forecast, False  # a forecast of the wrong shape is build_problem's to refuse
        return forecast[:, :slots], True

    def _problem(self, forecast: np.ndarray, state: PlannerState, cut: bool) -> Problem:
        if not cut:
            return self.problem(forecast, state)
        slots = forecast.shape[1]
        config = dataclasses.replace(self.config, horizon=slots)
        periods = None if self.periods is None else _first_slots(self.periods, slots)
        return build_problem(self.scenario.geometries(), self.scenario.tenants, forecast, state, config,
                             slot_s=self.scenario.slot_s, models=self._models, periods=periods, figures=self._figures)

    def finish(self, problem: Problem, raw: RawSolution, keep: Collection[int] = (),
               deadline: Deadline | None = None) -> Plan:
        """The Plan of a solved ``problem``: the retraining pass where the settings ask for it
        (``retrain_over_window``; GPUs in ``keep`` untouched), remembered as the next
        decision's start, decoded. For callers that solve the parts themselves, as the
        cluster controller does. How long it takes is what the next decision's deadline
        keeps back for it (:class:`~migrator.planning.deadline.FinishReserve`); under a
        ``deadline`` the retraining pass stops where the time limit would be passed."""
        # Finishing, for the reserve, runs from the solve's end (merging and scoring included).
        started = deadline.solved_at if deadline is not None and deadline.solved_at is not None else self.clock()
        keep = set(keep) | set(raw.kept_gpus)
        raw = self._rescored(problem, raw)
        # Past the point where finishing must stop, the pass is not even set up (its set-up
        # alone is a pass over every GPU and tenant).
        if self.config.retrain_over_window and not (deadline is not None and deadline.finishing_late()):
            stop = deadline.finishing_late if deadline is not None else None
            raw = dataclasses.replace(raw, tasks=retrain_over_window(problem, raw.tasks, keep, stop=stop))
        if deadline is not None:
            raw = dataclasses.replace(raw, status=raw.status + deadline.note())
        self._previous = raw.tasks
        plan = self.decode(problem, raw)
        self._reserve.record(self.clock() - started, lag_s=deadline.lag() if deadline is not None else 0.0)
        return plan

    @staticmethod
    def advance(plan: Plan) -> PlannerState:
        """The state one slot on, had the plan's first slot been applied: its layouts and
        tasks, and the retraining progress its instances make (set-up downtime included).

        This is what a receding-horizon loop feeds back into :meth:`plan`; a controller
        that observes the real GPUs builds the state from them instead.
        """
        problem = plan.problem
        if problem is None:
            raise ConfigError("advance needs a plan made by Planner.plan", field="plan")
        _, speed = _rates(problem, plan.tasks)
        progress = problem.work_full - problem.work_left + speed[:, 0] * problem.slot_s
        tenants = {}
        for i, name in enumerate(problem.tenants):
            done = bool(problem.done0[i]) or (problem.window_slots[i] > 0 and progress[i] >= problem.work_full[i])
            tenants[name] = TenantState(progress_gpu_s=float(progress[i]), done=done)
        return PlannerState(
            layouts=tuple(g.slots[0].layout for g in plan.gpus),
            assignments=tuple(dict(g.slots[0].assignment) for g in plan.gpus),
            tenants=tenants,
            slot=problem.slot + 1,
        )

    def _split_needed(self, problem: Problem) -> bool:
        limit = self.config.decompose_above
        size = len(problem.periods) * sum(len(g.placements) for g in problem.gpus) * problem.n_tasks
        return limit > 0 and len(problem.gpus) > 1 and size > limit

    def _solve_split(self, problem: Problem, deadline: Deadline) -> RawSolution:
        """Each GPU on its own with the share of demand the starting plan gives it, the parts
        and the whole problem's bound solved side by side (``PlannerConfig.workers``) within
        what the ``deadline`` leaves; the merged plan, or the starting one where it is worth
        more. Parts the deadline does not reach keep the starting plan's share."""
        def solve(sub: Problem, budget: float) -> Callable[[], RawSolution]:
            def run() -> RawSolution:
                # Solving a part the deadline does not reach would overrun it.
                if not deadline.reaches("split parts", needs_s=0.01):
                    return RawSolution(keep_current(sub), float("nan"), float("inf"), NOT_REACHED, float("inf"),
                                       0.0, 0.0, kept_gpus=(0,))
                return solve_problem(sub, time_limit_s=self._solve_limit(min(budget, deadline.left())),
                                     mip_gap=self.config.mip_gap, warm_start=greedy_tasks(sub),
                                     node_limit=self.config.node_limit, settle=settle)
            return run

        def bound() -> tuple[float, float]:
            started = time.perf_counter()
            if relaxed_tenant_slots(problem) > MAX_BOUND_TENANT_SLOTS:
                deadline.skipped.append("bound (too large to solve in time)")
                return float("inf"), 0.0
            value = self._bounds.bound(problem, deadline) if deadline.reaches("bound", needs_s=0.01) else float("inf")
            if not np.isfinite(value) and "bound" not in deadline.skipped:  # started, but not proven in time
                deadline.skipped.append("bound")
            return value, time.perf_counter() - started

        # Parts the period bounds settle save their solve where the deadline reaches every part.
        # Where it does not (128 GPUs), the time saved reached more parts and the plans were
        # worse (docs/model.md, "Parts the period bounds settle"): there every part is solved.
        settle = self._part_seconds is not None
        lanes = self.workers(len(problem.gpus))
        with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="migrator-part") as pool:
            # Side by side the bound starts at once, beside the starting plans (it does not
            # depend on them: 0.2 s of a 128-GPU decision); one after another it takes what
            # the parts leave.
            bounding = pool.submit(bound) if lanes > 1 else None
            start_worth, start = self._scored_start(problem, deadline)
            if not deadline.reaches("split parts", needs_s=MIN_SPLIT_S):
                # Splitting costs a pass over every GPU; with no time to solve a part it buys nothing.
                the_bound = bounding.result()[0] if bounding is not None else float("inf")
                deadline.solved()
                return RawSolution(start, start_worth, the_bound, "starting plan kept",
                                   relative_gap(start_worth, the_bound), 0.0, 0.0, kept_gpus=(), scored=True)
            parts, subs = split_by_plan(problem, start, fill_empty=self.fills_empty_gpus(problem))
            # The parts run in `lanes` queues: each gets its queue's share of the time left.
            # One after another the bound is one more job in the one queue, so that parts
            # that use their whole share (a loaded machine) still leave it its turn.
            budget = deadline.left() * lanes / (len(subs) + (bounding is None))
            order = self._part_order(len(subs))
            jobs = [solve(subs[g], budget) for g in order]
            ordered = list(pool.map(lambda job: job(), jobs)) if lanes > 1 else [job() for job in jobs]
            the_bound, bound_s = bounding.result() if bounding is not None else bound()
        deadline.solved()
        solutions = [ordered[at] for at in np.argsort(order)]
        self._remember_part_seconds(solutions)
        merged = merge(problem, parts, solutions)
        # A part the deadline did not reach, or whose solve ended before HiGHS took its warm
        # start (a part's share of a 128-GPU decision can be 15 ms), keeps the starting plan's
        # share, a valid plan the start was scored with, rather than the current layout. Its
        # GPU stays in kept_gpus, so the retraining pass leaves it as the start has it: opening
        # those GPUs to the pass cost 1 % at 32 GPUs and doubled the proven gap at 128
        # (docs/results.md, "The retraining pass at scale").
        skipped = {g for g, s in enumerate(solutions) if s.kept_gpus}
        if skipped:
            kept = f"{_kept_parts(solutions)}, their starting plan kept"
            merged = dataclasses.replace(
                merged, tasks=tuple(start[g] if g in skipped else t for g, t in enumerate(merged.tasks)),
                status=f"{merged.status}; {kept}",
            )
            # Routine at scale (the deadline reaches a few dozen of 128 parts), and in the status.
            log.info("%s", kept)
        # The parts' values add up to a lower bound of the merged plan (shared tenants pool
        # their capacity); what the whole problem is worth is the estimator's to say. The
        # parts' bounds do not bound it; the relaxation of migrator.planning.split_bound does.
        # Where every part kept its share, the merged plan is the start.
        merged_worth = start_worth if len(skipped) == len(solutions) else self._worth(problem, merged.tasks)
        worth = {"merged": merged_worth, "start": start_worth}
        best = max(worth, key=lambda name: worth[name])
        return dataclasses.replace(
            merged,
            tasks=merged.tasks if best == "merged" else start,
            kept_gpus=merged.kept_gpus if best == "merged" else (),
            objective=worth[best],
            bound=the_bound,
            mip_gap=relative_gap(worth[best], the_bound),
            solve_s=merged.solve_s + bound_s,
            status=merged.status + ("" if best == "merged" else "; starting plan kept (better)"),
            scored=True,
        )

    @property
    def _by_nodes(self) -> bool:
        """Whether decisions are held to ``PlannerConfig.node_limit`` rather than the clock."""
        return self.config.node_limit is not None

    def _solve_limit(self, share_s: float) -> float:
        """Seconds one HiGHS run may take: its share of the decision's time, or, under a node
        limit, ``NODE_LIMIT_SAFETY`` times the whole time limit (a share would depend on the
        machine's cores and speed, and the plan with it; the safety stop only ends a run that
        the node limit would let go on far longer than a decision should)."""
        return NODE_LIMIT_SAFETY * self.config.time_limit_s if self._by_nodes else share_s

    def _part_order(self, parts: int) -> list[int]:
        """The order the split's parts are queued in: longest first by the last decision's
        times where it solved every part (so that the lanes finish together rather than one
        waiting on a slow part queued last), else GPU order (where the deadline cuts parts
        short, the ones reached stay the same from one decision to the next: docs/model.md,
        "At scale", on rotating them)."""
        seconds = self._part_seconds
        if seconds is None or len(seconds) != parts:
            return list(range(parts))
        return [int(g) for g in np.argsort(-seconds, kind="stable")]

    def _remember_part_seconds(self, solutions: Sequence[RawSolution]) -> None:
        solved = all(s.status != NOT_REACHED for s in solutions)
        self._part_seconds = np.array([s.build_s + s.solve_s for s in solutions]) if solved else None

    def fills_empty_gpus(self, problem: Problem) -> bool:
        """Whether the split may give room to inference that the retraining pass could use:
        hand demand no GPU covers to a GPU the start leaves empty
        (:func:`migrator.planning.decompose.part_arrivals`) and start from the packed plan
        (:func:`migrator.planning.greedy.packed_tasks`). Not while the pass has retraining to place:
        both cost replay Goodput then (docs/results.md)."""
        return not (self.config.retrain_over_window and bool(eligible_tenants(problem).any()))

    def workers(self, parts: int) -> int:
        """How many of the split's ``parts`` are solved at once: ``PlannerConfig.workers``,
        or one per CPU core where it is 0, and never more than there are parts."""
        wanted = self.config.workers or os.cpu_count() or 1
        return max(1, min(wanted, parts))

    def split_start(self, problem: Problem, deadline: Deadline | None = None) -> tuple[np.ndarray, ...]:
        """The plan whose shares of demand the split gives each GPU: the greedy plan, the
        last plan moved on, the layouts and tasks as they are, or, where
        :meth:`fills_empty_gpus`, the packed plan, whichever is worth most (set-up and
        penalty included). Left to the greedy plan alone, the split re-deals tenants among
        alike GPUs from one decision to the next and reconfigures for nothing, and from a
        cold start deals them out in slices (docs/model.md). Under a ``deadline``, the
        candidates it does not reach are left out (the current layouts always stay in)."""
        return self._scored_start(problem, deadline)[1]

    def _scored_start(self, problem: Problem, deadline: Deadline | None = None) -> tuple[float, tuple[np.ndarray, ...]]:
        # Cheapest first: the current layouts always, the others while the deadline allows.
        makers: list[tuple[str, Callable[[], tuple[np.ndarray, ...] | None]]] = [
            ("current layouts", lambda: keep_current(problem)),
            ("last plan", lambda: self._shifted_previous(problem)),
            ("greedy start", lambda: self._greedy_start(problem, deadline)),
        ]
        if self.fills_empty_gpus(problem):
            makers.append(("packed start", lambda: packed_tasks(problem)))
        scored: list[tuple[float, tuple[np.ndarray, ...]]] = []
        for stage, make in makers:
            if scored and deadline is not None and not deadline.reaches(stage):
                continue
            tasks = make()
            if tasks is None:
                continue
            began = self.clock()
            scored.append((self._worth(problem, tasks), tasks))
            if deadline is not None and len(scored) == 1:
                deadline.hold(self._reserve.estimate(self.clock() - began))
        return max(scored, key=lambda pair: pair[0])

    def _greedy_start(self, problem: Problem, deadline: Deadline | None) -> tuple[np.ndarray, ...]:
        """The greedy start; where the last one stopped at its deadline, a sweep over the
        last plan from the GPU it stopped at instead, until a sweep goes round
        (:func:`~migrator.planning.greedy.greedy_start`; docs/model.md, "Sweeping the start
        at scale")."""
        first = self._sweep_from
        base = self._shifted_previous(problem) if first is not None and first < len(problem.gpus) else None
        tasks, self._sweep_from = greedy_start(problem, deadline, sweep_from=None if base is None else first, base=base)
        return tasks

    def _warm_start_if_better(self, problem: Problem, raw: RawSolution, warm: Sequence[np.ndarray]) -> RawSolution:
        """Where the solver found no plan in time, the start it was given (a valid plan) if
        that is worth more than the current layouts the solver fell back on."""
        kept, started = self._worth(problem, raw.tasks), self._worth(problem, warm)
        if started <= kept:
            return raw
        return dataclasses.replace(raw, tasks=tuple(warm), objective=started, kept_gpus=(), scored=True,
                                   mip_gap=relative_gap(started, raw.bound),
                                   status=raw.status.replace("current layouts kept", "starting plan kept (worth more)"))

    def _rescored(self, problem: Problem, raw: RawSolution) -> RawSolution:
        """``raw`` with the objective the Goodput estimator gives its plan, where the two
        differ: a plan is never returned with a value it does not have. The program's
        terminal credit (``terminal_value``) is not the estimator's to check."""
        if raw.scored or not np.isfinite(raw.objective) or problem.terminal_gain is not None:
            return raw
        worth = self._worth(problem, raw.tasks)
        if abs(worth - raw.objective) <= 1e-5 * max(1.0, abs(worth)):
            return raw
        log.warning("the plan is worth %.6g by the estimator, the solver said %.6g (%s): reporting %.6g",
                    worth, raw.objective, raw.status, worth)
        return dataclasses.replace(raw, objective=worth, mip_gap=relative_gap(worth, raw.bound),
                                   status=raw.status + "; objective re-scored by the estimator")

    @staticmethod
    def _worth(problem: Problem, tasks: Sequence[np.ndarray]) -> float:
        return plan_value(problem, tasks, expected_score(problem, tasks))

    def _shifted_previous(self, problem: Problem) -> tuple[np.ndarray, ...] | None:
        """The last plan moved one period on (its last period repeated), if shapes agree."""
        if self._previous is None or len(self._previous) != len(problem.gpus):
            return None
        shifted = []
        for tasks, gpu in zip(self._previous, problem.gpus):
            if tasks.shape != (len(problem.periods), len(gpu.placements)):
                return None
            shifted.append(np.vstack([tasks[1:], tasks[-1:]]))
        return tuple(shifted)

    def decode(self, problem: Problem, raw: RawSolution) -> Plan:
        """The Plan of a raw solution of ``problem`` (layouts, assignments, Goodput, stats),
        as it is (:meth:`finish` adds the retraining pass first)."""
        started = time.perf_counter()
        result = expected_score(problem, raw.tasks)
        changes = reconfigurations(problem, raw.tasks)
        objective = raw.objective
        if not np.isfinite(objective):  # a kept plan: its value by the model's own measure
            objective = plan_value(problem, raw.tasks, result)
        gpus = tuple(
            GpuPlan(name=f"gpu{g}", model=gpu.model, slots=_slot_plans(problem, raw.tasks[g], g))
            for g, gpu in enumerate(problem.gpus)
        )
        stats = PlanStats(
            build_s=raw.build_s, solve_s=raw.solve_s, decode_s=time.perf_counter() - started,
            status=raw.status, objective=objective, bound=raw.bound,
            mip_gap=relative_gap(objective, raw.bound) if not np.isfinite(raw.mip_gap) else raw.mip_gap,
            columns=raw.n_columns, rows=raw.n_rows, integers=raw.n_integers, reconfigurations=changes,
        )
        return Plan(gpus=gpus, goodput=result.goodput_per_tenant(), stats=stats, attainment=_attainment(result),
                    slot_s=problem.slot_s, tasks=raw.tasks, problem=problem)


def _stopped_clock() -> float:
    """The clock of a decision under a node limit: no stage is ever late, so what the
    decision does depends on its inputs alone."""
    return 0.0


def _warm_estimator() -> None:
    """Compile the Goodput estimator's kernel (a one-slot, one-tenant score): the first
    decision of a process would otherwise spend its time limit compiling it."""
    one = np.ones((1, 1))
    score_arrays(one, one, one, ("warm-up",), np.ones(1), np.ones(1), np.ones(1), np.ones(1, dtype=np.int64))


def plan_value(problem: Problem, tasks: Sequence[np.ndarray], result: Any) -> float:
    """What the program values a plan at, from its estimator ``result``: Goodput, less the
    penalty per new instance and the cost of requests short of the tenants' floors."""
    changes = reconfigurations(problem, tasks)
    return (result.goodput - problem.reconfig_penalty * changes - problem.shortfall_cost(result.within)
            + problem.elsewhere_credit(result.accuracy))


def _attainment(result: Any) -> dict[str, float]:
    """Each tenant's expected share of its forecast arrivals served within SLO (1 with none)."""
    arrived, within = result.arrived.sum(axis=1), result.within.sum(axis=1)
    share = np.divide(within, arrived, out=np.ones_like(within), where=arrived > 0)
    return {name: float(v) for name, v in zip(result.tenants, share)}


def expected_score(problem: Problem, tasks: Sequence[np.ndarray]) -> Any:
    """The Goodput estimator's score of a plan on the problem's forecast, from the problem's
    decision slot and retraining progress (``migrator.workload.goodput.ScoreResult``)."""
    capacity, retrain = _rates(problem, tasks)
    return score_arrays(
        problem.arrivals, capacity, retrain, problem.tenants,
        np.asarray(problem.acc_before, dtype=np.float64), np.asarray(problem.acc_after, dtype=np.float64),
        np.asarray(problem.work_full, dtype=np.float64), np.asarray(problem.window_slots, dtype=np.int64),
        slot_s=problem.slot_s, start_slot=problem.slot,
        progress_gpu_s=problem.work_full - problem.work_left, done=problem.done0,
    )


def _rates(problem: Problem, tasks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per tenant and slot the inference capacity (req/s) and retraining speed the plan's
    instances give, set-up downtime taken off: ``allocation_rates``'s figures from the
    problem's own arrays, GPUs with the same placements and figures at once (tests hold the
    two to each other)."""
    capacity = np.zeros((len(problem.tenants), problem.horizon))
    speed = np.zeros_like(capacity)
    for members in alike_gpus(problem):
        first = problem.gpus[members[0]]
        supply = fleet_supply(problem, np.stack([problem.gpus[g].current for g in members]),
                              np.stack([tasks[g] for g in members]), first.capacity_rps, first.retrain_speed)
        capacity += supply.capacity
        speed += supply.progress
    return capacity / problem.slot_s, speed / problem.slot_s
