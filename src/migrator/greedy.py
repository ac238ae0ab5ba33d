"""A quick, always valid plan to start the solver from (and to fall back on).

For each GPU in turn, every maximal set of its planning placements (and its current layout)
is given tasks greedily, largest instance first, each to the tenant whose remaining demand it
serves best, weighted by accuracy; one more candidate is the GPU's best pattern for the
remaining demand (``_core.best_pattern``: the best maximal layout and tenants, exactly). The
candidate worth most over the horizon, less what its new instances lose while they set up,
is kept and its service taken off the demand. Every period gets the same tasks. It knows nothing of retraining: the solver adds that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from .planner_problem import IDLE, GpuProblem, Problem, core_gpu

__all__ = ["greedy_tasks", "maximal_sets"]


def maximal_sets(gpu: GpuProblem) -> list[list[int]]:
    """Every valid set of the GPU's placements to which none of them can be added (the
    geometry core's enumeration, on the planning placements only; the ILP builder's layout
    bounds use the same sets)."""
    return [list(layout) for layout in _core.maximal_layouts(core_gpu(gpu))]


def _assign(
    gpu: GpuProblem, chosen: list[int], remaining: np.ndarray, accuracy: np.ndarray,
    given: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tasks for the chosen placements, what each serves (req/s) and the demand left.

    Each instance goes to the tenant it serves best, or, with ``given`` (a task per
    placement), to the tenant given there."""
    tasks = np.full(len(gpu.placements), -1, dtype=np.int64)
    served = np.zeros(len(gpu.placements))
    left = remaining.copy()
    for q in sorted(chosen, key=lambda q: -int(gpu.compute[q])):
        take = np.minimum(left, gpu.capacity_rps[:, q])
        if given is not None:
            i = (int(given[q]) - 1) // 2
        else:
            i = int(np.argmax(take * accuracy)) if len(take) else 0
        if len(take) and take[i] * accuracy[i] > 0:
            tasks[q] = 1 + 2 * i
            served[q] = take[i] * accuracy[i]
            left[i] -= take[i]
        else:
            tasks[q] = IDLE
    return tasks, served, left


def _best_pattern(problem: Problem, gpu: GpuProblem, remaining: np.ndarray, accuracy: np.ndarray) -> np.ndarray | None:
    """The placements and tenants of the GPU's best maximal layout for the remaining demand
    (the C++ search the builder bounds each period with); None where there is none."""
    n = len(problem.tenants)
    if n == 0:
        return None
    _, tasks = _core.best_pattern(core_gpu(gpu), n, np.asarray(accuracy, dtype=np.float64),
                                  np.asarray(remaining, dtype=np.float64) * problem.slot_s, problem.slot_s)
    return tasks if (tasks > 0).any() else None


def _worth(problem: Problem, gpu: GpuProblem, tasks: np.ndarray, served: np.ndarray) -> float:
    """Goodput per horizon, less what new instances lose while setting up."""
    horizon_s = problem.horizon * problem.slot_s
    new = (tasks >= 0) & (tasks != gpu.current)
    setup = min(problem.setup_s, horizon_s)
    return float(served.sum() * horizon_s - served[new].sum() * setup)


def greedy_tasks(problem: Problem) -> tuple[np.ndarray, ...]:
    """Tasks (periods x placements, -1 for no instance) for every GPU, as the solver takes them."""
    remaining = problem.arrivals.mean(axis=1) / problem.slot_s
    accuracy = problem.acc_before
    out = []
    for gpu in problem.gpus:
        current = [q for q in range(len(gpu.placements)) if gpu.current[q] >= 0]
        candidates = ([current] if current else []) + maximal_sets(gpu)
        pattern = _best_pattern(problem, gpu, remaining, accuracy)
        given: list[Any] = [None] * len(candidates)
        if pattern is not None:
            candidates.append([int(q) for q in np.flatnonzero(pattern > 0)])
            given.append(pattern)
        best: Any = None
        for chosen, tasks_given in zip(candidates, given):
            tasks, served, left = _assign(gpu, chosen, remaining, accuracy, tasks_given)
            worth = _worth(problem, gpu, tasks, served)
            if best is None or worth > best[0]:
                best = (worth, tasks, left)
        _, tasks, remaining = best
        out.append(np.tile(tasks, (len(problem.periods), 1)))
    return tuple(out)
