"""Splitting a planning problem into independent parts, one per GPU.

The whole program couples every GPU through the tenants they share. When it is too large
to solve in the decision time, every GPU is planned on its own with a share of the tenants'
demand: the share a starting plan gives it (:func:`shares_from_plan`; the planner picks the
greedy plan, the last plan, the current layouts or the packed plan, whichever is worth most), or, for a
tenant that plan serves nowhere, all of it on the GPU it loads least (:func:`assign_tenants`);
demand no GPU's capacity covers may go to a GPU the plan leaves empty (:func:`part_arrivals`).
Only as many parts as may retrain a tenant at once get its retraining
(:func:`retraining_gpus`); a GPU that retrains a tenant keeps it in its part, and a part
with no requests of its own is credited with what finishing the job adds to the requests
other GPUs serve (:func:`served_elsewhere`). The parts are exact programs; what the split gives up is moving
demand between GPUs after the split, which is why it is used only above a size
(``PlannerConfig.decompose_above``). The merged plan serves at least what the parts do.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from .planner_problem import IDLE, GpuProblem, Problem, RawSolution, retraining_counts

__all__ = ["assign_tenants", "empty_gpu", "merge", "part_arrivals", "retraining_gpus", "served_elsewhere",
           "shares_from_plan", "split", "split_by_plan"]


def assign_tenants(problem: Problem) -> list[list[int]]:
    """Tenant indices for each GPU: largest demand first, each to the GPU whose best
    instance leaves it the most capacity after what that GPU already carries."""
    demand = problem.demand_rps()
    # What one GPU could serve of each tenant, at most: its best placement times the
    # number of such placements that fit (a coarse yardstick, only used to balance).
    room = np.array([g.capacity_rps.max(axis=1) * max(1, g.compute_slices // max(1, int(g.compute.max()))) for g in problem.gpus])
    load = np.zeros(len(problem.gpus))
    parts: list[list[int]] = [[] for _ in problem.gpus]
    for i in np.argsort(-demand * problem.acc_before, kind="stable"):
        share = np.where(room[:, i] > 0, demand[i] / np.maximum(room[:, i], 1e-9), np.inf)
        g = int(np.argmin(load + share))
        parts[g].append(int(i))
        load[g] += share[g]
    return parts


def _capacity_by_gpu(problem: Problem, tasks: Sequence[np.ndarray]) -> np.ndarray:
    """(G, N) req/s each GPU's first-period inference instances in ``tasks`` give each tenant."""
    capacity = np.zeros((len(problem.gpus), len(problem.tenants)))
    for g, (gpu, plan) in enumerate(zip(problem.gpus, tasks)):
        for q, k in enumerate(plan[0]):
            if k > 0 and (k - 1) % 2 == 0:
                capacity[g, (k - 1) // 2] += gpu.capacity_rps[(k - 1) // 2, q]
    return capacity


def shares_from_plan(problem: Problem, tasks: Sequence[np.ndarray]) -> np.ndarray:
    """(G, N) share of each tenant's demand per GPU: its part of the capacity ``tasks`` give
    the tenant in the first period; a tenant they serve nowhere goes whole to the GPU that
    :func:`assign_tenants` picks for it."""
    capacity = _capacity_by_gpu(problem, tasks)
    total = capacity.sum(axis=0)
    shares = np.divide(capacity, total, out=np.zeros_like(capacity), where=total > 0)
    fallback = assign_tenants(problem)
    for g, tenants in enumerate(fallback):
        for i in tenants:
            if total[i] <= 0:
                shares[g, i] = 1.0
    return shares


def empty_gpu(problem: Problem, tasks: Sequence[np.ndarray]) -> int | None:
    """The first GPU on which ``tasks`` hold no instance at all in the first period, or None."""
    for g, plan in enumerate(tasks):
        if not (plan[0] >= 0).any():
            return g
    return None


def part_arrivals(problem: Problem, tasks: Sequence[np.ndarray], shares: np.ndarray) -> np.ndarray:
    """(G, N, T) arrivals each GPU's part plans for: its share of each tenant's, except what
    no GPU's capacity in ``tasks`` covers after the first period (a burst later in the
    horizon, say), which goes to a GPU that ``tasks`` leave empty (:func:`empty_gpu`).

    With shares alone, that excess is planned for where the tenant already is, and an empty
    GPU's part has no tenant, so the GPU stays empty: on 8 A100s without retraining the split
    plan was 0.33 % below the whole program's optimum for that alone. Room on GPUs that do
    hold instances, and the first period anywhere, is left to the retraining pass: handing
    that to the excess too took it from retraining and cost 0.6 % of the built-in
    scenario's Goodput; while retraining is pending even the empty GPU is worth more to the
    pass (0.4 % on 8 GPUs), so the planner only asks for this when none is (docs/model.md)."""
    arrivals = shares[:, :, None] * problem.arrivals[None, :, :]
    spare = empty_gpu(problem, tasks)
    if spare is None:
        return arrivals
    covered = _capacity_by_gpu(problem, tasks).sum(axis=0) * problem.slot_s
    # A tenant served nowhere keeps the GPU assign_tenants gave it.
    excess = np.where(covered[:, None] > 0, np.maximum(problem.arrivals - covered[:, None], 0.0), 0.0)
    excess[:, : problem.periods[0]] = 0.0
    arrivals -= shares[:, :, None] * excess[None, :, :]
    arrivals[spare] += excess
    return arrivals


def split_by_plan(problem: Problem, tasks: Sequence[np.ndarray], fill_empty: bool = True) -> tuple[list[list[int]], list[Problem]]:
    """Each GPU's part as the starting plan ``tasks`` deals demand out (:func:`shares_from_plan`,
    and, with ``fill_empty``, :func:`part_arrivals`): the tenants of each part and its problem."""
    shares = shares_from_plan(problem, tasks)
    retraining = _retraining_by_gpu(problem, tasks)
    if not fill_empty or empty_gpu(problem, tasks) is None:
        # The shares alone: no (G, N, T) array of arrivals to build on every decision.
        parts = parts_of(shares + retraining)
        return parts, split(problem, parts, shares)
    arrivals = part_arrivals(problem, tasks, shares)
    parts = parts_of(shares + (arrivals > 0).any(axis=2) + retraining)
    return parts, split(problem, parts, shares, arrivals)


def _retraining_by_gpu(problem: Problem, tasks: Sequence[np.ndarray]) -> np.ndarray:
    """(G, N) 1 where a GPU retrains the tenant now or in the first period of ``tasks``: its
    part keeps the tenant, to go on with the job where it runs, even with no share of its
    requests (a GPU given over to retraining would otherwise have an empty part)."""
    n = len(problem.tenants)
    counts = [retraining_counts(n, (gpu.current, plan[0])) for gpu, plan in zip(problem.gpus, tasks)]
    return (np.array(counts) > 0).astype(np.float64).reshape(len(problem.gpus), n)


def task_map(tenants: Sequence[int]) -> dict[int, int]:
    """Global task index -> the part's task index, for the part's tenants."""
    mapping = {IDLE: IDLE}
    for new, i in enumerate(tenants):
        mapping[1 + 2 * i] = 1 + 2 * new
        mapping[2 + 2 * i] = 2 + 2 * new
    return mapping


def sub_gpu(gpu: GpuProblem, tenants: Sequence[int], retrains: Sequence[bool] | None = None) -> GpuProblem:
    """The GPU seen by a part with only ``tenants``; where ``retrains`` (one flag per part
    tenant) is given, the tenants it leaves out cannot retrain here."""
    mapping = task_map(tenants)
    # An instance now serving a tenant of another part is idle as far as this part goes:
    # giving it a task of this part is a re-assignment either way.
    current = np.array([-1 if k < 0 else mapping.get(int(k), IDLE) for k in gpu.current], dtype=np.int64)
    speed = gpu.retrain_speed[list(tenants)]
    if retrains is not None:
        speed = speed * np.asarray(retrains, dtype=np.float64)[:, None]
    return replace(gpu, capacity_rps=gpu.capacity_rps[list(tenants)], retrain_speed=speed, current=current)


def retraining_gpus(problem: Problem, parts: Sequence[Sequence[int]], shares: np.ndarray | None) -> list[set[int]]:
    """Per tenant, the GPUs whose parts may retrain it: all its parts, or, where the problem
    limits the instances retraining one tenant (``retrain_instances``), that many of them:
    those retraining it now first, then those with the largest share of its demand. The
    parts cannot see one another, so without this they could exceed the limit together."""
    limit = problem.retrain_instances
    out = []
    for i in range(len(problem.tenants)):
        holders = [g for g, tenants in enumerate(parts) if i in tenants]
        if limit > 0:
            share = (lambda g: 0.0) if shares is None else (lambda g: float(shares[g][i]))
            now = [g for g in holders if (problem.gpus[g].current == 2 + 2 * i).any()]
            holders = sorted(holders, key=lambda g: (g not in now, -share(g), g))[:limit]
        out.append(set(holders))
    return out


def parts_of(shares: np.ndarray) -> list[list[int]]:
    """The tenants each GPU has a share of."""
    return [[int(i) for i in np.flatnonzero(row > 0)] for row in shares]


def split(problem: Problem, parts: Sequence[Sequence[int]], shares: np.ndarray | None = None,
          arrivals: np.ndarray | None = None) -> list[Problem]:
    """One problem per GPU with only its tenants (``parts[g]``), each with its share of their
    arrivals (``shares[g][i]``; all of them by default), or the arrivals ``arrivals[g][i]``
    (G, N, T) where given."""
    out = []
    retraining = retraining_gpus(problem, parts, shares)
    for g, tenants in enumerate(parts):
        idx = list(tenants)
        scale = np.ones(len(idx)) if shares is None else np.asarray(shares[g])[idx]
        own = problem.arrivals[idx] * scale[:, None] if arrivals is None else arrivals[g][idx]
        retrains = np.array([g in retraining[i] for i in idx], dtype=bool)
        out.append(
            replace(
                problem,
                tenants=tuple(problem.tenants[i] for i in idx),
                arrivals=own,
                acc_before=problem.acc_before[idx],
                acc_after=problem.acc_after[idx],
                work_left=problem.work_left[idx],
                done0=problem.done0[idx],
                window_slots=problem.window_slots[idx],
                window_offset=problem.window_offset[idx],
                work_full=problem.work_full[idx],
                gpus=(sub_gpu(problem.gpus[g], idx, retrains.tolist()),),
                # Only a part with no requests of its own (a GPU given over to retraining) is
                # credited: beside the part's own inference the credited completion is the
                # relaxation's weak spot, and the built-in replay took 1.7 times as long for
                # +0.5 % Goodput (docs/model.md, "Crediting a part's completions").
                served_elsewhere=None if own.any() else served_elsewhere(problem, idx, own, retrains),
                # The gain of finishing a retraining is earned on the requests this part
                # serves, as its arrivals are.
                terminal_gain=None if problem.terminal_gain is None else problem.terminal_gain[idx] * scale,
                # A floor is a share of arrivals: each part keeps it on the arrivals it serves.
                min_attainment=None if problem.min_attainment is None else problem.min_attainment[idx],
            )
        )
    return out


def served_elsewhere(problem: Problem, idx: Sequence[int], own: np.ndarray, retrains: np.ndarray) -> np.ndarray | None:
    """(len(idx), T) what a part takes the other GPUs to serve of each of its tenants that it
    may retrain: the arrivals it does not plan for itself, in the slots whose accuracy a
    completion decides (none where the window holding slot 0 is finished already). A part
    that retrains a tenant whose requests other GPUs serve would otherwise see no value in
    finishing the job (18); None where no tenant of the part has such requests."""
    idx = list(idx)
    rest = np.maximum(problem.arrivals[idx] - own, 0.0)
    gain = np.asarray(problem.acc_after, dtype=np.float64)[idx] > np.asarray(problem.acc_before, dtype=np.float64)[idx]
    rest[~(retrains & gain)] = 0.0
    rest[:, :1] = 0.0  # slot 0's accuracy is the state's
    next_window = problem.next_window_start()
    for row, i in enumerate(idx):
        if problem.done0[i] and next_window[i] > 0:  # finished already, until the next window
            rest[row, : next_window[i]] = 0.0
    return rest if (rest > 0).any() else None


def merge(problem: Problem, parts: Sequence[Sequence[int]], solutions: Sequence[RawSolution]) -> RawSolution:
    """The parts' plans as one: tasks mapped back to the whole problem's numbering; the
    objective, the bound and the times add up (the bound is that of the split problem). A
    part without a plan (``kept_gpus``) keeps its GPU's current layout and tasks: those of
    the whole ``problem``, since the part maps instances serving other parts' tenants to idle."""
    tasks = []
    for g, (tenants, solution) in enumerate(zip(parts, solutions)):
        if solution.kept_gpus:
            tasks.append(np.tile(problem.gpus[g].current, (len(problem.periods), 1)))
            continue
        back = {v: k for k, v in task_map(tenants).items()}
        (local,) = solution.tasks
        tasks.append(np.vectorize(lambda k: back.get(int(k), -1) if k >= 0 else -1, otypes=[np.int64])(local))
    objective = float(sum(s.objective for s in solutions))
    bound = float(sum(s.bound for s in solutions))
    statuses = sorted({s.status for s in solutions})
    return RawSolution(
        tasks=tuple(tasks),
        objective=objective,
        bound=bound,
        status=f"split into {len(solutions)} GPUs: " + ", ".join(statuses),
        mip_gap=abs(bound - objective) / abs(bound) if np.isfinite(bound) and bound else float("inf"),
        build_s=float(sum(s.build_s for s in solutions)),
        solve_s=float(sum(s.solve_s for s in solutions)),
        n_columns=sum(s.n_columns for s in solutions),
        n_rows=sum(s.n_rows for s in solutions),
        n_integers=sum(s.n_integers for s in solutions),
        kept_gpus=tuple(g for g, s in enumerate(solutions) if s.kept_gpus),
    )
