"""Pure-Python reference builder of the planning model (docs/model.md), on highspy's
modelling API: one variable object per column, one function per constraint family named
after the contract's numbering. Slow and plain on purpose; the tests hold the C++ builder
(``migrator.planning.planner.solve_problem``) and brute-force enumeration to it, and the benchmark
reports the C++ builder's speed against it.

Semantics chosen where the contract leaves room (each agrees with ``goodput.score``):

* when slot 0 starts a window (``window_offset == 0``) the window holding slot 0 is a fresh
  one, as the estimator resets progress there: ``c = 0`` at slot 0, work ``Wfull``, and the
  carried ``work_left`` / ``done0`` (which describe the window that just ended) are unused;
* in the current window, the accuracy of slot 0 is fixed by ``done0`` (``c[i][0] = done0``),
  also when ``work_left`` is 0 ((11) read literally would leave ``c[i][0]`` free then);
* where ``W' = 0``, ``c`` is fixed to 1 after the window's first slot rather than left free:
  the estimator completes such a retraining whether or not it helps, which matters when
  ``acc_after < acc_before`` (the objective alone would keep ``c = 0``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np

from .planner_problem import FLOOR_WEIGHT, IDLE, GpuProblem, Problem, RawSolution

__all__ = ["solve"]

# Where a tenant's accuracy at a slot is not a decision: fixed to the before/after value.
_BEFORE, _AFTER = 0.0, 1.0


@dataclass
class _Model:
    """The highspy model and its columns, keyed by their indices in docs/model.md."""

    problem: Problem
    h: Any
    z: list[dict[tuple[int, int, int], Any]] = field(default_factory=list)  # per g: (j, q, k)
    n: list[dict[tuple[int, int, int], Any]] = field(default_factory=list)  # per g: (j, q, k)
    e: list[dict[tuple[int, int, int], Any]] = field(default_factory=list)  # per g: (t, q, k)
    s: dict[tuple[int, int], Any] = field(default_factory=dict)  # (i, t)
    u: dict[tuple[int, int], Any] = field(default_factory=dict)  # (i, t), where c is a variable
    c: dict[tuple[int, int], Any] = field(default_factory=dict)  # (i, t), variable or fixed float
    P: dict[tuple[int, int], Any] = field(default_factory=dict)  # (i, t)
    tau: dict[int, Any] = field(default_factory=dict)  # i, share of the last window's work done
    short: dict[int, Any] = field(default_factory=dict)  # i, requests short of its floor (17)
    # rows (8) and (10) by ("capacity" | "progress", i, t): the configuration master adds its
    # columns' coefficients to them
    rows: dict[tuple[str, int, int], Any] = field(default_factory=dict)

    # -- time -------------------------------------------------------------------------

    @property
    def T(self) -> int:
        return self.problem.horizon

    @property
    def J(self) -> int:
        return len(self.problem.periods)

    def first(self, j: int) -> int:
        return int(self.problem.period_starts()[j])

    def period_of(self, t: int) -> int:
        return int(np.searchsorted(self.problem.period_starts(), t, side="right") - 1)

    def f(self, d: int) -> float:
        """Downtime share ``d`` slots after a start: clamp(setup_s/slot_s - d, 0, 1)."""
        return self.problem.downtime(d)

    # -- tenants and windows ------------------------------------------------------------

    @property
    def N(self) -> int:
        return len(self.problem.tenants)

    def retrains(self, i: int) -> bool:
        return int(self.problem.window_slots[i]) > 0

    def starts_window(self, i: int, t: int) -> bool:
        win = int(self.problem.window_slots[i])
        return win > 0 and (int(self.problem.window_offset[i]) + t) % win == 0

    def in_current_window(self, i: int, t: int) -> bool:
        """No window starts in slots 0..t: ``t`` belongs to the window in progress at the
        decision (never the case when slot 0 starts a window)."""
        return not any(self.starts_window(i, t2) for t2 in range(t + 1))

    def work(self, i: int, t: int) -> float:
        """``W'``: the work of the window holding ``t``."""
        p = self.problem
        return float(p.work_left[i] if self.in_current_window(i, t) else p.work_full[i])

    def fixed_accuracy(self, i: int, t: int) -> float | None:
        """_AFTER or _BEFORE where ``c[i][t]`` is fixed, None where it is a decision."""
        if not self.retrains(i):
            return _BEFORE  # A1 = A0: the retrained share earns nothing extra
        if self.in_current_window(i, t):
            if bool(self.problem.done0[i]):
                return _AFTER  # finished before slot 0: c = 1 until the window ends
            if t == 0:
                return _BEFORE  # P[i][-1] = 0: not finished before slot 0
        if self.starts_window(i, t):
            return _BEFORE  # (12) a window starts unfinished
        if self.work(i, t) <= 0:
            return _AFTER  # (11) with W' = 0: finished after the window's first slot
        return None

    # -- placements and tasks -----------------------------------------------------------

    def tasks(self, gpu: GpuProblem, q: int) -> list[int]:
        """Tasks ``k`` that get a variable at placement ``q``: idle always; inference where
        ``cap > 0``; retraining where the tenant retrains and ``spd > 0``."""
        out = [IDLE]
        for i in range(self.N):
            if gpu.capacity_rps[i, q] > 0:
                out.append(1 + 2 * i)
            if self.retrains(i) and gpu.retrain_speed[i, q] > 0:
                out.append(2 + 2 * i)
        return out

    def y(self, g: int, j: int, q: int) -> Any:
        """``y[q] = Σ_k z[g][j][q][k]``: placement ``q`` holds an instance in period ``j``."""
        gpu = self.problem.gpus[g]
        return highspy.Highs.qsum([self.z[g][(j, q, k)] for k in self.tasks(gpu, q)])

    def E(self, g: int, t: int, q: int, k: int) -> Any | None:
        """Serving share of slot ``t`` of the instance at ``q`` serving ``k`` (None: no column)."""
        if (t, q, k) in self.e[g]:
            return self.e[g][(t, q, k)]
        return self.z[g].get((self.period_of(t), q, k))


# -- variables ----------------------------------------------------------------------------


def _variables(m: _Model) -> None:
    _gpu_variables(m)
    _tenant_variables(m)


def _gpu_variables(m: _Model) -> None:
    """``z``, ``n`` and ``e`` of every GPU."""
    p, h = m.problem, m.h
    for g, gpu in enumerate(p.gpus):
        z: dict[tuple[int, int, int], Any] = {}
        n: dict[tuple[int, int, int], Any] = {}
        e: dict[tuple[int, int, int], Any] = {}
        for j in range(m.J):
            for q in range(len(gpu.placements)):
                for k in m.tasks(gpu, q):
                    z[(j, q, k)] = h.addBinary(name=f"z[{g}][{j}][{q}][{k}]")
                    n[(j, q, k)] = h.addVariable(0.0, 1.0, name=f"n[{g}][{j}][{q}][{k}]")
        for t in range(m.T):
            # a downtime can apply at t only if the latest possible start, first(j(t)), is
            # still setting up (f decreases, so earlier starts are then set up too)
            if m.f(t - m.first(m.period_of(t))) <= 0:
                continue
            for q in range(len(gpu.placements)):
                for k in m.tasks(gpu, q):
                    if k != IDLE:
                        e[(t, q, k)] = h.addVariable(0.0, 1.0, name=f"e[{g}][{t}][{q}][{k}]")
        m.z.append(z)
        m.n.append(n)
        m.e.append(e)


def _tenant_variables(m: _Model) -> None:
    """``s``, ``u``, ``c`` and ``P`` of every tenant."""
    p, h = m.problem, m.h
    for i in range(m.N):
        for t in range(m.T):
            m.s[(i, t)] = h.addVariable(0.0, float(p.arrivals[i, t]), name=f"s[{i}][{t}]")
            fixed = m.fixed_accuracy(i, t)
            if fixed is None:
                m.c[(i, t)] = h.addBinary(name=f"c[{i}][{t}]")
                m.u[(i, t)] = h.addVariable(0.0, highspy.kHighsInf, name=f"u[{i}][{t}]")
            else:
                m.c[(i, t)] = fixed
            if m.retrains(i) and not (m.in_current_window(i, t) and bool(p.done0[i])):
                m.P[(i, t)] = h.addVariable(0.0, highspy.kHighsInf, name=f"P[{i}][{t}]")


# -- constraints, numbered as in docs/model.md --------------------------------------------


def _one_task_per_placement(m: _Model) -> None:
    """(1) ``y[q] <= 1``."""
    for g, gpu in enumerate(m.problem.gpus):
        for j in range(m.J):
            for q in range(len(gpu.placements)):
                m.h.addConstr(m.y(g, j, q) <= 1)


def _memory(m: _Model) -> None:
    """(2) every memory slice is used by at most one instance."""
    for g, gpu in enumerate(m.problem.gpus):
        masks = [int(x) for x in gpu.memory_mask]
        slices = max((mask.bit_length() for mask in masks), default=0)
        for j in range(m.J):
            for s in range(slices):
                users = [q for q, mask in enumerate(masks) if mask >> s & 1]
                if len(users) > 1:
                    m.h.addConstr(highspy.Highs.qsum([m.y(g, j, q) for q in users]) <= 1)


def _compute(m: _Model) -> None:
    """(3) ``Σ_q cs(q) y[q] <= compute slices``."""
    for g, gpu in enumerate(m.problem.gpus):
        for j in range(m.J):
            total = highspy.Highs.qsum(
                [int(gpu.compute[q]) * m.y(g, j, q) for q in range(len(gpu.placements))]
            )
            m.h.addConstr(total <= int(gpu.compute_slices))


def _profile_counts(m: _Model) -> None:
    """(4) ``Σ_{q: p(q)=p} y[q] <= max_count(p)``."""
    for g, gpu in enumerate(m.problem.gpus):
        for j in range(m.J):
            for prof, most in enumerate(gpu.max_count):
                users = [q for q in range(len(gpu.placements)) if int(gpu.profile[q]) == prof]
                if users:
                    m.h.addConstr(highspy.Highs.qsum([m.y(g, j, q) for q in users]) <= int(most))


def _engines(m: _Model) -> None:
    """(5) per engine kind, ``Σ_q eng_e(q) y[q] <= total_e``."""
    for g, gpu in enumerate(m.problem.gpus):
        for j in range(m.J):
            for kind in range(gpu.engines.shape[1]):
                users = [q for q in range(len(gpu.placements)) if int(gpu.engines[q, kind]) > 0]
                if users:
                    total = highspy.Highs.qsum([int(gpu.engines[q, kind]) * m.y(g, j, q) for q in users])
                    m.h.addConstr(total <= int(gpu.engine_totals[kind]))


def _transitions(m: _Model) -> None:
    """(6) ``n[j][q][k] >= z[j][q][k] - z[j-1][q][k]``, ``z[-1][q][k] = [cur[q] = k]``."""
    for g, gpu in enumerate(m.problem.gpus):
        for (j, q, k), z in m.z[g].items():
            if j == 0:
                before = 1.0 if int(gpu.current[q]) == k else 0.0
                m.h.addConstr(m.n[g][(j, q, k)] >= z - before)
            else:
                m.h.addConstr(m.n[g][(j, q, k)] >= z - m.z[g][(j - 1, q, k)])


def _downtime(m: _Model) -> None:
    """(7) ``e <= z[j(t)]`` and ``e <= 1 - f(t - first(j')) n[j']`` for every ``j' <= j(t)``
    with ``f(t - first(j')) > 0``."""
    for g in range(len(m.problem.gpus)):
        for (t, q, k), e in m.e[g].items():
            jt = m.period_of(t)
            m.h.addConstr(e <= m.z[g][(jt, q, k)])
            for j2 in range(jt + 1):
                share = m.f(t - m.first(j2))
                if share > 0:
                    m.h.addConstr(e + share * m.n[g][(j2, q, k)] <= 1)


def _supply(m: _Model, i: int, t: int, k: int, figure: str) -> list[Any]:
    """``slot_s · figure[i][q] · E(t, q, k)`` for every placement of every GPU that has one."""
    p = m.problem
    terms = []
    for g, gpu in enumerate(p.gpus):
        for q in range(len(gpu.placements)):
            share = m.E(g, t, q, k)
            if share is not None:
                terms.append(p.slot_s * float(getattr(gpu, figure)[i, q]) * share)
    return terms


def _capacity(m: _Model) -> None:
    """(8) ``s[i][t] <= slot_s Σ_{g,q} cap[i][q] E(t, q, 1+2i)``."""
    for (i, t), s in m.s.items():
        terms = _supply(m, i, t, 1 + 2 * i, "capacity_rps")
        expr = s - highspy.Highs.qsum(terms) if terms else s + 0.0
        m.rows[("capacity", i, t)] = m.h.addConstr(expr <= 0)


def _retrained_share(m: _Model) -> None:
    """(9) ``u <= s`` and ``u <= a c`` where ``c`` is a variable (elsewhere ``u`` is ``s``
    or 0 and enters the objective through the fixed accuracy)."""
    for (i, t), u in m.u.items():
        m.h.addConstr(u <= m.s[(i, t)])
        m.h.addConstr(u <= float(m.problem.arrivals[i, t]) * m.c[(i, t)])


def _progress(m: _Model) -> None:
    """(10) ``P[t] = P[t-1] + slot_s Σ_{g,q} spd[i][q] E(t, q, 2+2i)``, ``P[t-1]`` read as 0
    at ``t = 0`` and where ``t`` starts a window."""
    for (i, t), P in m.P.items():
        terms = _supply(m, i, t, 2 + 2 * i, "retrain_speed")
        earlier = m.P.get((i, t - 1)) if t > 0 and not m.starts_window(i, t) else None
        expr = P - highspy.Highs.qsum(terms) if terms else P + 0.0
        if earlier is not None:
            expr = expr - earlier
        m.rows[("progress", i, t)] = m.h.addConstr(expr == 0)


def _completion(m: _Model) -> None:
    """(11) ``W' c[t] <= P[t-1]`` where ``c[t]`` is a variable (then ``t`` does not start a
    window and ``t >= 1``, so ``P[t-1]`` is in the same window)."""
    for (i, t), c in m.c.items():
        if isinstance(c, float):
            continue
        m.h.addConstr(m.work(i, t) * c - m.P[(i, t - 1)] <= 0)


def _monotone(m: _Model) -> None:
    """(12) ``c[t] >= c[t-1]`` within a window (the start at 0 is fixed in the variables)."""
    for (i, t), c in m.c.items():
        if isinstance(c, float):
            continue
        earlier = m.c[(i, t - 1)]
        if not isinstance(earlier, float):  # fixed 0 bounds nothing; fixed 1 fixes t too
            m.h.addConstr(c - earlier >= 0)


def _terminal(m: _Model) -> None:
    """(13) ``W' tau[i] <= P[i][T-1]``: the last window's retraining share done by the end."""
    p = m.problem
    if p.terminal_gain is None:
        return
    last = m.T - 1
    for i in range(m.N):
        progress = m.P.get((i, last))
        if float(p.terminal_gain[i]) <= 0 or progress is None or not m.retrains(i):
            continue
        work = m.work(i, last)
        m.tau[i] = m.h.addVariable(0.0, 1.0, name=f"tau[{i}]")
        m.h.addConstr(work * m.tau[i] - progress <= 0)


def _floors(m: _Model) -> None:
    """(17) ``Σ_t s[i][t] + short[i] >= floor[i]``, each short request costing the floor
    weight in the objective."""
    for i, floor in enumerate(m.problem.floors()):
        if floor > 0:
            m.short[i] = m.h.addVariable(0.0, float(floor), name=f"short[{i}]")
            served = [s for (k, _t), s in m.s.items() if k == i]
            m.h.addConstr(highspy.Highs.qsum(served) + m.short[i] >= float(floor))


def _retraining_limits(m: _Model) -> None:
    """(16) ``Σ_{g,q} z[g][j][q][2+2i] <= L`` per tenant and period, where the problem sets a
    limit ``L`` (``retrain_instances > 0``)."""
    limit = m.problem.retrain_instances
    if limit <= 0:
        return
    for i in range(m.N):
        for j in range(m.J):
            terms = [z for per_gpu in m.z for (jj, _q, k), z in per_gpu.items() if jj == j and k == 2 + 2 * i]
            if len(terms) > limit:
                m.h.addConstr(highspy.Highs.qsum(terms) <= limit)


def _objective(m: _Model) -> Any:
    """``Σ (A0 s + (A1 - A0) u) - ρ Σ n`` (and the credits of (13), (17), (18))."""
    p = m.problem
    terms = []
    for (i, t), s in m.s.items():
        a0, a1 = float(p.acc_before[i]), float(p.acc_after[i])
        c = m.c[(i, t)]
        if isinstance(c, float):
            terms.append((a1 if c == _AFTER else a0) * s)
        else:
            terms.append(a0 * s + (a1 - a0) * m.u[(i, t)])
    if p.reconfig_penalty > 0:
        terms.extend(-p.reconfig_penalty * n for per_gpu in m.n for n in per_gpu.values())
    if p.terminal_gain is not None:  # m.tau holds variables only then
        terms.extend(float(p.terminal_gain[i]) * tau for i, tau in m.tau.items())
    terms.extend(-FLOOR_WEIGHT * short for short in m.short.values())
    if p.served_elsewhere is not None:  # (18): a completion lifts the requests served elsewhere
        terms.extend(float((p.acc_after[i] - p.acc_before[i]) * p.served_elsewhere[i, t]) * c
                     for (i, t), c in m.c.items() if not isinstance(c, float) and p.served_elsewhere[i, t] > 0)
    return highspy.Highs.qsum(terms)


# -- solve ---------------------------------------------------------------------------------


def build(problem: Problem) -> _Model:
    """The model of ``problem`` on a fresh ``highspy.Highs`` (objective set, not solved)."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    m = _Model(problem, h)
    _variables(m)
    _one_task_per_placement(m)
    _memory(m)
    _compute(m)
    _profile_counts(m)
    _engines(m)
    _transitions(m)
    _downtime(m)
    _capacity(m)
    _retrained_share(m)
    _progress(m)
    _completion(m)
    _monotone(m)
    _terminal(m)
    _floors(m)
    _retraining_limits(m)
    h.setObjective(_objective(m), highspy.ObjSense.kMaximize)
    return m


def solve(problem: Problem, *, time_limit_s: float | None = None, mip_gap: float = 0.0) -> RawSolution:
    """Build and solve ``problem`` with the reference builder.

    Returns a :class:`RawSolution` whose ``tasks[g]`` is an int array (J, Q): the task at
    each placement in each period, -1 where there is no instance.
    """
    started = time.perf_counter()
    m = build(problem)
    h = m.h
    h.setOptionValue("mip_rel_gap", float(mip_gap))
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    built = time.perf_counter()
    h.run()
    solved = time.perf_counter()
    info = h.getInfo()
    status = h.modelStatusToString(h.getModelStatus())
    columns = np.asarray(h.getSolution().col_value, dtype=np.float64)
    tasks = []
    for g, gpu in enumerate(problem.gpus):
        chosen = np.full((m.J, len(gpu.placements)), -1, dtype=np.int64)
        if columns.size:
            for (j, q, k), z in m.z[g].items():
                if columns[z.index] > 0.5:
                    chosen[j, q] = k
        tasks.append(chosen)
    integrality = h.getLp().integrality_
    return RawSolution(
        tasks=tuple(tasks),
        objective=float(info.objective_function_value),
        bound=float(info.mip_dual_bound),
        status=status,
        mip_gap=float(info.mip_gap),
        build_s=built - started,
        solve_s=solved - built,
        n_columns=int(h.getNumCol()),
        n_rows=int(h.getNumRow()),
        n_integers=sum(1 for v in integrality if v != highspy.HighsVarType.kContinuous),
    )
