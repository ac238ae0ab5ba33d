"""The planning program as a configuration master (Dantzig-Wolfe), solved by column generation.

A **column** is one GPU's whole timeline over the horizon's periods: the task of the instance
at each placement in each period (``tasks``, as a plan holds it), with what that timeline
supplies, set-up downtime and reconfigurations included (:func:`column_of`). GPUs alike in
model, placements and current instances form a **class**; the master chooses how many GPUs of
each class follow each column (``x``, integer), so it has no GPU symmetry. The tenants' side
is the program of docs/model.md as it stands (served requests, retrained share, progress,
completion, terminal value: rows 8-13, built by the reference builder's own functions), the
GPUs' side a convexity row per class and the one-instance-per-retraining-job row (16) over
columns. With every feasible timeline as a column, the master is the program itself.

Column generation: the master's LP relaxation over the columns so far gives duals; for each
class the **pricing** programme finds the timeline of most reduced cost (the per-GPU block of
the program, rows 1-7, under the duals' objective: an exact single-GPU MIP); columns of
positive reduced cost join and the LP is solved again. The LP value plus, per class, its
GPU count times the largest reduced cost still possible is an upper bound on the program
(the Lagrangian bound); when no column can enter it is the LP value. The integer plan is the
restricted master solved as a MIP over the columns generated (price-and-branch): its gap to
the bound is reported as it is.

Issue 16's planner; not yet what :class:`~migrator.planning.planner.Planner` runs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Sequence

import highspy
import numpy as np

from .. import _core
from ._ilp_reference import (
    _capacity,
    _completion,
    _floors,
    _Model,
    _monotone,
    _objective,
    _progress,
    _retrained_share,
    _tenant_variables,
    _terminal,
)
from .highs import HighsRun, checked_run, new_highs, relative_gap
from .planner_problem import (
    GpuProblem,
    Problem,
    RawSolution,
    core_gpu,
    gpu_supply,
    start_shares,
)

__all__ = ["Column", "MasterResult", "column_of", "gpu_classes", "solve_master"]

_CONTINUOUS, _INTEGER = highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger


@dataclass(frozen=True)
class Column:
    """One GPU's timeline and what it supplies.

    ``tasks`` (J, Q): task per period and placement, -1 for none; ``capacity`` (N, T):
    requests each tenant can have served in each slot (``slot_s`` x SLO capacity x serving
    share); ``progress`` (N, T): retraining progress (full-GPU seconds); ``retraining``
    (N, J): instances retraining each tenant; ``new``: instances created or re-assigned.
    """

    tasks: np.ndarray
    capacity: np.ndarray
    progress: np.ndarray
    retraining: np.ndarray
    new: int

    @property
    def key(self) -> bytes:
        return self.tasks.tobytes()


def column_of(problem: Problem, gpu: GpuProblem, tasks: np.ndarray) -> Column:
    """The column of ``gpu`` following ``tasks`` (J, Q): what it supplies by the program's
    own rules (:func:`~migrator.planning.planner_problem.gpu_supply`)."""
    tasks = np.asarray(tasks, dtype=np.int64)
    supply = gpu_supply(problem, gpu, tasks)
    return Column(tasks, supply.capacity, supply.progress, supply.retraining, supply.new)


def gpu_classes(problem: Problem) -> list[list[int]]:
    """GPUs that are interchangeable in the program: the same model, candidate placements,
    current instances and figures. In order of their first GPU."""
    classes: dict[Any, list[int]] = {}
    for g, gpu in enumerate(problem.gpus):
        key = (gpu.model, gpu.placements, gpu.current.tobytes(), gpu.capacity_rps.tobytes(),
               gpu.retrain_speed.tobytes())
        classes.setdefault(key, []).append(g)
    return list(classes.values())


@dataclass(frozen=True)
class MasterResult:
    """A solved master: the plan (``solution``) with the Lagrangian bound as its bound, and
    how the column generation went."""

    solution: RawSolution
    lp_value: float
    iterations: int
    columns: int
    priced_out: bool  # no column could enter: the LP value is the bound


class _Pricing:
    """One class's pricing: the GPU's timeline of most reduced cost under the master's duals,
    found exactly by the C++ dynamic programme over periods (``_core.best_timeline``, the
    per-GPU block of the program, rows 1-7, with the duals as its objective)."""

    def __init__(self, problem: Problem, gpu: GpuProblem, cls: int) -> None:
        self.problem, self.gpu, self.cls = problem, gpu, cls
        self.layouts = [list(layout) for layout in _core.maximal_layouts(core_gpu(gpu))]
        self.shares = start_shares(problem)

    def best(self, duals: _Duals) -> tuple[np.ndarray, float]:
        """The timeline of most reduced cost before the class's convexity dual, and that
        reduced cost (exact: the bound on it is the value itself)."""
        p, gpu = self.problem, self.gpu
        value = timeline_values(p, gpu, duals.capacity, duals.progress, duals.limit, self.shares)
        for branch, dual in duals.branches:
            if branch.cls == self.cls:
                value[:, branch.j, branch.q, branch.k] -= dual
        worth, flat = _core.best_timeline(self.layouts, len(p.periods), len(gpu.placements), p.n_tasks,
                                          value.reshape(-1), np.asarray(gpu.current, dtype=np.int32), p.reconfig_penalty)
        return np.asarray(flat, dtype=np.int64).reshape(len(p.periods), len(gpu.placements)), float(worth)


def timeline_values(problem: Problem, gpu: GpuProblem, capacity: np.ndarray, progress: np.ndarray,
                    limit: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """(J + 1, J, Q, K): what an instance of task k at placement q earns in period j under
    the duals of the served-requests rows (``capacity``, (N, T)), the progress rows
    (``progress``, (N, T)) and the one-job-at-a-time rows (``limit``, (N, J)), by the period
    its run started (``start_shares``): ``_core.best_timeline``'s ``value``."""
    periods = len(problem.periods)
    in_period = np.repeat(np.eye(periods), problem.periods, axis=1)  # (J, T)
    weight = problem.slot_s * in_period[None, :, :] * shares[:, None, :]  # (J + 1, J, T)
    serve = np.einsum("sjt,it,iq->sjqi", weight, capacity, gpu.capacity_rps)
    train = np.einsum("sjt,it,iq->sjqi", weight, progress, gpu.retrain_speed)
    value = np.zeros((periods + 1, periods, len(gpu.placements), problem.n_tasks))
    value[..., 1::2] = serve
    value[..., 2::2] = train - limit.T[None, :, None, :]
    return value


@dataclass(frozen=True)
class _Duals:
    capacity: np.ndarray  # (N, T), rows 8
    progress: np.ndarray  # (N, T), rows 10 (0 where the tenant has no progress row)
    limit: np.ndarray  # (N, J), rows 16 (0 where there is no limit)
    convexity: np.ndarray  # (classes,)
    branches: tuple[tuple[_Branch, float], ...] = ()  # the dive's rows in force, with their duals


@dataclass(frozen=True)
class _Branch:
    """A row of the dive: how many GPUs of class ``cls`` have task ``k`` at placement ``q``
    in period ``j``, held within [lower, upper]."""

    cls: int
    j: int
    q: int
    k: int
    row: int

    def holds(self, column: Column) -> bool:
        return int(column.tasks[self.j, self.q]) == self.k


class _Master:
    """The restricted master: the tenants' side of the program, then columns as they come."""

    def __init__(self, problem: Problem, classes: Sequence[Sequence[int]]) -> None:
        self.problem, self.classes = problem, classes
        self.h = new_highs()
        self.m = _Model(dataclasses.replace(problem, gpus=()), self.h)
        _tenant_variables(self.m)
        for rows in (_capacity, _retrained_share, _progress, _completion, _monotone, _terminal, _floors):
            rows(self.m)
        self.h.setObjective(_objective(self.m), highspy.ObjSense.kMaximize)
        self.integers = [int(c.index) for c in self.m.c.values() if not isinstance(c, float)]
        n, periods = len(problem.tenants), len(problem.periods)
        self.limit_rows = np.full((n, periods), -1, dtype=np.int64)
        if problem.retrain_instances > 0:
            for i in map(int, np.flatnonzero(problem.window_slots > 0)):
                for j in range(periods):
                    self.limit_rows[i, j] = self._empty_row(-highspy.kHighsInf, problem.retrain_instances)
        self.convexity_rows = [self._empty_row(len(c), len(c)) for c in classes]
        self.columns: list[tuple[int, Column]] = []  # (class, column) by master column
        self.branches: list[_Branch] = []  # the dive's rows in force
        self._completions_set: set[int] = set()  # completion variables the dive has bounded
        self.first_x = self.h.getNumCol()
        self._seen: set[tuple[int, bytes]] = set()
        # Rows (8) and (10) by tenant and slot (-1 where the tenant has none), for adding columns in whole arrays.
        self.row_of = {kind: np.full((n, problem.horizon), -1, dtype=np.int64) for kind in ("capacity", "progress")}
        for (kind, i, t), row in self.m.rows.items():
            self.row_of[kind][i, t] = row.index

    def _empty_row(self, lower: float, upper: float) -> int:
        self.h.addRow(float(lower), float(upper), 0, np.zeros(0, dtype=np.int32), np.zeros(0))
        return self.h.getNumRow() - 1

    def add(self, cls: int, column: Column) -> bool:
        """Add ``column`` for class ``cls``; False where the class has it already."""
        if (cls, column.key) in self._seen:
            return False
        self._seen.add((cls, column.key))
        index, value = [self.convexity_rows[cls]], [1.0]
        for kind, figure in (("capacity", column.capacity), ("progress", column.progress)):
            rows = self.row_of[kind]
            used = (figure != 0) & (rows >= 0)
            index.extend(rows[used].tolist())
            value.extend((-figure[used]).tolist())
        used = (column.retraining > 0) & (self.limit_rows >= 0)
        index.extend(self.limit_rows[used].tolist())
        value.extend(column.retraining[used].astype(np.float64).tolist())
        for branch in self.branches:
            if branch.cls == cls and branch.holds(column):
                index.append(branch.row)
                value.append(1.0)
        self.h.addCol(-self.problem.reconfig_penalty * column.new, 0.0, float(len(self.classes[cls])),
                      len(index), np.asarray(index, dtype=np.int32), np.asarray(value))
        self.columns.append((cls, column))
        return True

    def branch(self, cls: int, j: int, q: int, k: int, lower: float, upper: float) -> _Branch:
        """Hold the number of class ``cls``'s GPUs with task ``k`` at ``q`` in period ``j``
        within [lower, upper]."""
        members = [c for c, (owner, column) in enumerate(self.columns) if owner == cls and int(column.tasks[j, q]) == k]
        self.h.addRow(float(lower), float(upper), len(members),
                      np.asarray([self.first_x + c for c in members], dtype=np.int32), np.ones(len(members)))
        branch = _Branch(cls, j, q, k, self.h.getNumRow() - 1)
        self.branches.append(branch)
        return branch

    def set_completion(self, column: int, lower: float, upper: float) -> None:
        """Bound a completion variable ``c`` (HiGHS column ``column``) for the dive."""
        self.h.changeColBounds(column, lower, upper)
        self._completions_set.add(column)

    def free_completions(self) -> None:
        for column in self._completions_set:
            self.h.changeColBounds(column, 0.0, 1.0)
        self._completions_set.clear()

    def unbranch(self, branch: _Branch) -> None:
        """Lift ``branch``'s row (it stays, free, so that row numbers do not move)."""
        self.h.changeRowBounds(branch.row, -highspy.kHighsInf, highspy.kHighsInf)
        self.branches.remove(branch)

    def held(self, cls: int) -> dict[tuple[int, int, int], float]:
        """How many of class ``cls``'s GPUs have each (period, placement, task) in the last
        LP solution."""
        counts, out = self.counts(), dict[tuple[int, int, int], float]()
        for c, (owner, column) in enumerate(self.columns):
            if owner != cls or counts[c] <= 1e-9:
                continue
            for j, q in zip(*np.nonzero(column.tasks >= 0)):
                key = (int(j), int(q), int(column.tasks[j, q]))
                out[key] = out.get(key, 0.0) + float(counts[c])
        return out

    def counts(self) -> np.ndarray:
        """Each column's count in the last solution."""
        return np.asarray(self.h.getSolution().col_value)[self.first_x:]

    def raise_count(self, column: int, lowest: float) -> None:
        """At least ``lowest`` GPUs follow master column ``column`` (0 releases it)."""
        cls = self.columns[column][0]
        self.h.changeColBounds(self.first_x + column, float(lowest), float(len(self.classes[cls])))

    def _integrality(self, kind: Any) -> None:
        cols = self.integers + list(range(self.first_x, self.h.getNumCol()))
        if cols:
            # highspy takes a list of HighsVarType here, which its stubs do not say.
            self.h.changeColsIntegrality(len(cols), np.asarray(cols, dtype=np.int32), [kind] * len(cols))  # type: ignore[arg-type]

    def solve_lp(self) -> tuple[float, _Duals]:
        self._integrality(_CONTINUOUS)
        self.h.setOptionValue("time_limit", highspy.kHighsInf)
        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return float("nan"), None  # type: ignore[return-value]
        row_dual = np.asarray(self.h.getSolution().row_dual)
        n, horizon = len(self.problem.tenants), self.problem.horizon
        capacity, progress = np.zeros((n, horizon)), np.zeros((n, horizon))
        for (kind, i, t), row in self.m.rows.items():
            (capacity if kind == "capacity" else progress)[i, t] = row_dual[row.index]
        limit = np.where(self.limit_rows >= 0, row_dual[np.maximum(self.limit_rows, 0)], 0.0)
        duals = _Duals(capacity, progress, limit, row_dual[np.asarray(self.convexity_rows, dtype=np.int64)],
                       tuple((b, float(row_dual[b.row])) for b in self.branches))
        return float(self.h.getInfo().objective_function_value), duals

    def reduced_cost(self, cls: int, column: Column, duals: _Duals) -> float:
        return float(
            -self.problem.reconfig_penalty * column.new
            + np.sum(duals.capacity * column.capacity) + np.sum(duals.progress * column.progress)
            - np.sum(duals.limit * column.retraining) - duals.convexity[cls]
            - sum(dual for branch, dual in duals.branches if branch.cls == cls and branch.holds(column))
        )

    def solve_mip(self, time_limit_s: float, mip_gap: float) -> tuple[HighsRun, tuple[np.ndarray, ...]]:
        """The restricted master as a MIP over the columns so far: the run and the plan
        (empty where no integer solution was found)."""
        self._integrality(_INTEGER)
        self.h.setOptionValue("mip_rel_gap", float(mip_gap))
        cost = np.asarray(self.h.getLp().col_cost_)

        def run(limit: float | None, presolve: bool) -> HighsRun:
            self.h.setOptionValue("time_limit", highspy.kHighsInf if limit is None else max(limit, 0.01))
            self.h.setOptionValue("presolve", "choose" if presolve else "off")
            self.h.run()
            return HighsRun.of(self.h, cost)

        result = checked_run(run, time_limit_s, mip_gap)
        counts = np.rint(result.values[self.first_x:]).astype(np.int64) if result.feasible else None
        return result, self._decode(counts)

    def _decode(self, counts: np.ndarray | None) -> tuple[np.ndarray, ...]:
        tasks: list[np.ndarray | None] = [None] * len(self.problem.gpus)
        free = [list(gpus) for gpus in self.classes]
        for x, (cls, column) in zip(counts if counts is not None else [], self.columns):
            for _ in range(int(x)):
                tasks[free[cls].pop(0)] = column.tasks
        return tuple(t for t in tasks if t is not None) if all(t is not None for t in tasks) else ()


def _empty(problem: Problem, gpu: GpuProblem) -> np.ndarray:
    return np.full((len(problem.periods), len(gpu.placements)), -1, dtype=np.int64)


def solve_master(
    problem: Problem, starts: Sequence[Sequence[np.ndarray]] = (), *, time_limit_s: float = 10.0,
    mip_gap: float = 1e-4, max_rounds: int = 100,
) -> MasterResult:
    """Solve ``problem`` by column generation, a dive, and the master as a MIP.

    The root's column generation gives the bound. The restricted master's LP optimum mixes
    timelines fractionally, and a MIP over only the columns priced there often misses the
    program's optimum; so a dive then rounds the LP's largest fractional count up, one at a
    time, generating the columns each rounding calls for, until the LP's plan is integral.
    The MIP is solved over every column seen, so it is at least as good as the dive's plan.

    Parameters
    ----------
    starts : sequence of plans
        Plans (``tasks`` per GPU, as :class:`RawSolution` holds them) whose GPUs' timelines
        are the first columns, beside each class's empty GPU and its current instances kept.
    time_limit_s : float
        For the whole solve: the root may take half, the dive what the root leaves of that
        half, the integer master the rest.
    """
    began = time.perf_counter()
    classes = gpu_classes(problem)
    master = _Master(problem, classes)
    pricing = [_Pricing(problem, problem.gpus[members[0]], cls) for cls, members in enumerate(classes)]
    for cls, members in enumerate(classes):
        gpu = problem.gpus[members[0]]
        for timeline in [_empty(problem, gpu), np.tile(gpu.current, (len(problem.periods), 1))]:
            master.add(cls, column_of(problem, gpu, timeline))
        for plan in starts:
            for g in members:
                master.add(cls, column_of(problem, gpu, plan[g]))
    built = time.perf_counter()
    generation = _Generation(master, pricing, deadline=began + time_limit_s / 2, max_rounds=max_rounds)
    root = generation.run()
    generation.dive()
    solved = time.perf_counter()
    run, found = master.solve_mip(time_limit_s - (solved - began), mip_gap)
    status = f"master: {generation.rounds} pricing rounds, {len(master.columns)} columns; {run.status}"
    objective, kept = run.objective, tuple[int, ...]()
    tasks = tuple(found)
    if not tasks:  # no integer plan in time: the GPUs stay as they are
        tasks = tuple(np.tile(g.current, (len(problem.periods), 1)) for g in problem.gpus)
        objective, kept, status = float("nan"), tuple(range(len(problem.gpus))), status + "; current layouts kept"
    finished = time.perf_counter()
    solution = RawSolution(
        tasks=tasks, objective=objective, bound=root.bound, status=status, kept_gpus=kept,
        mip_gap=relative_gap(objective, root.bound),
        build_s=built - began, solve_s=finished - built,
        n_columns=int(master.h.getNumCol()), n_rows=int(master.h.getNumRow()),
        n_integers=len(master.integers) + len(master.columns),
    )
    return MasterResult(solution, root.lp_value, generation.rounds, len(master.columns), root.priced_out)


@dataclass(frozen=True)
class _Root:
    lp_value: float
    bound: float  # the Lagrangian bound, the LP value where no column could enter
    priced_out: bool


class _Generation:
    """Column generation on a master, under whatever rows the dive has added."""

    def __init__(self, master: _Master, pricing: Sequence[_Pricing], deadline: float, max_rounds: int) -> None:
        self.master, self.pricing, self.deadline, self.max_rounds = master, pricing, deadline, max_rounds
        self.rounds = 0  # pricing rounds in all

    def run(self) -> _Root:
        """Price until no column enters (or the deadline, or ``max_rounds`` rounds)."""
        master, classes = self.master, self.master.classes
        bound, lp_value, priced_out = float("inf"), float("nan"), False
        for _ in range(self.max_rounds):
            if time.perf_counter() >= self.deadline:
                break
            self.rounds += 1
            lp_value, duals = master.solve_lp()
            if not np.isfinite(lp_value):
                break
            tolerance = 1e-7 * max(1.0, abs(lp_value))
            entered, most = 0, 0.0
            for cls, members in enumerate(classes):
                tasks, ceiling = self.pricing[cls].best(duals)
                most += len(members) * max(0.0, ceiling - duals.convexity[cls])
                column = column_of(master.problem, master.problem.gpus[members[0]], tasks)
                if master.reduced_cost(cls, column, duals) > tolerance:
                    entered += master.add(cls, column)
            bound = min(bound, lp_value + most)
            if not entered:
                priced_out = most <= tolerance * len(classes)
                break
        return _Root(lp_value, min(bound, lp_value) if priced_out else bound, priced_out)

    def dive(self) -> None:
        """Round the LP's plan towards an integral one, one decision at a time: the
        (class, period, placement, task) held by the most nearly whole number of GPUs is
        held by that number rounded up (down, where up cannot be had), and columns are
        priced under it, until every such number is whole; then the rows are lifted."""
        master = self.master
        while time.perf_counter() < self.deadline:
            if self._settle_a_completion():
                continue
            choice = self._most_nearly_whole()
            if choice is None:
                break
            cls, (j, q, k), held = choice
            branch = master.branch(cls, j, q, k, np.ceil(held), highspy.kHighsInf)
            if np.isfinite(self.run().lp_value):
                continue
            master.unbranch(branch)
            branch = master.branch(cls, j, q, k, -highspy.kHighsInf, np.floor(held))
            if not np.isfinite(self.run().lp_value):
                master.unbranch(branch)
                break
        for branch in list(master.branches):
            master.unbranch(branch)
        master.free_completions()

    def _settle_a_completion(self) -> bool:
        """Where the LP finishes a retraining fractionally by some slot, decide it: finished
        by the slot of the largest such share (not finished, where that cannot be had).
        Completion shapes which timelines pay, so it is decided before the timelines are."""
        master = self.master
        values = np.asarray(master.h.getSolution().col_value)
        fractional = [(values[c], c) for c in master.integers if 1e-6 < values[c] < 1 - 1e-6]
        if not fractional:
            return False
        _, column = max(fractional)
        master.set_completion(column, 1.0, 1.0)
        if np.isfinite(self.run().lp_value):
            return True
        master.set_completion(column, 0.0, 0.0)
        return np.isfinite(self.run().lp_value)

    def _most_nearly_whole(self) -> tuple[int, tuple[int, int, int], float] | None:
        best, most = None, 0.0
        for cls in range(len(self.master.classes)):
            for key, held in self.master.held(cls).items():
                part = held - np.floor(held)
                if 1e-6 < part < 1 - 1e-6 and part > most:
                    best, most = (cls, key, held), part
        return best
