"""A policy that applies a fixed list of allocations (tests and benchmarks of the simulator)."""

from __future__ import annotations

from migrator.evaluation.policy import Allocation, Observation, Policy


class Scripted(Policy):
    """Applies a fixed list of allocations, one per decision."""

    name = "scripted"

    def __init__(self, allocations, interval_s: float = 1.0) -> None:
        self.allocations = list(allocations)
        self.interval_s = interval_s
        self.seen: list[Observation] = []

    def decide(self, observation):
        self.seen.append(observation)
        k = len(self.seen) - 1
        return self.allocations[k] if k < len(self.allocations) else None


def one_gpu(layout: str, assignment: dict) -> Allocation:
    return Allocation.of([layout], [assignment])
