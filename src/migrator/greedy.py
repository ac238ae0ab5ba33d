"""A quick, always valid plan to start the solver from (and to fall back on).

For each GPU in turn, every maximal set of its planning placements (and its current layout)
is given tasks greedily, largest instance first, each to the tenant whose remaining demand it
serves best, weighted by accuracy; the candidate worth most over the horizon, less what its
new instances lose while they set up, is kept and its service taken off the demand. Every
period gets the same tasks. It knows nothing of retraining: the solver adds that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .planner_problem import IDLE, GpuProblem, Problem

__all__ = ["greedy_tasks", "maximal_sets"]


def _fits(gpu: GpuProblem, chosen: list[int], q: int) -> bool:
    used = 0
    for p in chosen:
        used |= int(gpu.memory_mask[p])
    if int(gpu.memory_mask[q]) & used:
        return False
    if sum(int(gpu.compute[p]) for p in chosen) + int(gpu.compute[q]) > gpu.compute_slices:
        return False
    profile = int(gpu.profile[q])
    if sum(1 for p in chosen if int(gpu.profile[p]) == profile) + 1 > int(gpu.max_count[profile]):
        return False
    engines = gpu.engines[chosen].sum(axis=0) if chosen else np.zeros(4, dtype=np.int64)
    return bool(np.all(engines + gpu.engines[q] <= gpu.engine_totals))


def maximal_sets(gpu: GpuProblem) -> list[list[int]]:
    """Every valid set of the GPU's placements to which none of them can be added."""
    out: list[list[int]] = []
    count = len(gpu.placements)

    def visit(chosen: list[int], start: int) -> None:
        extended = False
        for q in range(start, count):
            if _fits(gpu, chosen, q):
                extended = True
                visit(chosen + [q], q + 1)
        if not extended and all(not _fits(gpu, chosen, q) for q in range(count) if q not in chosen):
            out.append(chosen)

    visit([], 0)
    return out


def _assign(gpu: GpuProblem, chosen: list[int], remaining: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tasks for the chosen placements, what each serves (req/s) and the demand left."""
    tasks = np.full(len(gpu.placements), -1, dtype=np.int64)
    served = np.zeros(len(gpu.placements))
    left = remaining.copy()
    for q in sorted(chosen, key=lambda q: -int(gpu.compute[q])):
        take = np.minimum(left, gpu.capacity_rps[:, q])
        i = int(np.argmax(take * accuracy)) if len(take) else 0
        if len(take) and take[i] * accuracy[i] > 0:
            tasks[q] = 1 + 2 * i
            served[q] = take[i] * accuracy[i]
            left[i] -= take[i]
        else:
            tasks[q] = IDLE
    return tasks, served, left


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
        best: Any = None
        for chosen in candidates:
            tasks, served, left = _assign(gpu, chosen, remaining, accuracy)
            worth = _worth(problem, gpu, tasks, served)
            if best is None or worth > best[0]:
                best = (worth, tasks, left)
        _, tasks, remaining = best
        out.append(np.tile(tasks, (len(problem.periods), 1)))
    return tuple(out)
