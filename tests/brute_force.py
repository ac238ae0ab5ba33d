"""Exhaustive search over layout-and-assignment sequences of tiny planning problems.

Independent of both ILP builders: a sequence is scored only through the Goodput
estimator (``goodput.allocation_rates`` for capacities, speeds and set-up downtime,
``goodput.score`` for served requests and accuracy), with capacities taken from the model
table through the tenants, never from the :class:`Problem`'s arrays; layouts are checked by
``Geometry.is_valid`` (the C++ core), never by the Problem's memory/compute/count/engine
arrays. From the Problem it takes only the list of placements to search over.

A :class:`Case` holds the scenario inputs; :meth:`Case.problem` builds the Problem with
``build_problem`` (all periods one slot long) and keeps only the listed placements, so the
search space stays small.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from migrator import Geometry
from migrator.workload.goodput import Instance, allocation_rates, score
from migrator.geometry.layout import Placement
from migrator.workload.models import builtin_models
from migrator.planning.planner_problem import FLOOR_WEIGHT, PlannerState, Problem, TenantState, build_problem
from migrator.workload.settings import PlannerConfig
from migrator.workload.tenant import Tenant

# One slot of a plan: (gpu, placement text, task number) for every instance, sorted.
Slot = tuple[tuple[int, str, int], ...]
Sequence_ = tuple[Slot, ...]


@dataclass(frozen=True)
class Case:
    """Scenario inputs of a tiny problem (one slot per period unless ``periods`` says)."""

    name: str
    tenants: tuple[Tenant, ...]
    arrivals: np.ndarray  # (N, T) requests per slot
    gpus: tuple[str, ...] = ("A100-40GB",)
    placements: tuple[tuple[str, ...], ...] | None = None  # per GPU; None: all planning placements
    layouts: tuple[str, ...] = ("",)
    assignments: tuple[Mapping[str, str], ...] = ({},)
    setup_s: float = 0.0
    reconfig_penalty: float = 0.0
    slot_s: float = 1.0
    slot: int = 0  # absolute slot of the decision (places the windows)
    progress: Mapping[str, TenantState] = field(default_factory=dict)
    periods: tuple[int, ...] | None = None
    # The brute force scores horizon Goodput only; the terminal credit (13) has its own tests.
    terminal_value: bool = False
    retrain_instances: int = 1  # (16): instances that may retrain one tenant at once; 0 any

    @property
    def horizon(self) -> int:
        return int(np.asarray(self.arrivals).shape[1])

    def geometries(self) -> list[Geometry]:
        return [Geometry.for_gpu(g) for g in self.gpus]

    def problem(self) -> Problem:
        periods = self.periods if self.periods is not None else (1,) * self.horizon
        problem = build_problem(
            self.geometries(),
            self.tenants,
            np.asarray(self.arrivals, dtype=np.float64),
            PlannerState(self.layouts, self.assignments, dict(self.progress), self.slot),
            # The brute force values plans with the capacity model as it is (allocation_rates):
            # the program is held to it without headroom (tests/planning/test_headroom.py
            # holds the headroom's scaling on its own).
            PlannerConfig(horizon=sum(periods), setup_s=self.setup_s, reconfig_penalty=self.reconfig_penalty,
                          terminal_value=self.terminal_value, retrain_instances=self.retrain_instances,
                          load_headroom=1.0),
            slot_s=self.slot_s,
            models=builtin_models(),
            periods=periods,
        )
        return problem if self.placements is None else restrict(problem, self.placements)

    def __str__(self) -> str:
        return self.name


def restrict(problem: Problem, keep: Sequence[Sequence[str]]) -> Problem:
    """``problem`` with only the placements named in ``keep[g]`` on GPU ``g`` (which must
    include the GPU's current layout)."""
    gpus = []
    for gpu, names in zip(problem.gpus, keep, strict=True):
        wanted = {str(Placement.parse(n)) for n in names}
        index = [q for q, pl in enumerate(gpu.placements) if str(pl) in wanted]
        missing = wanted - {str(gpu.placements[q]) for q in index}
        if missing:
            raise ValueError(f"{sorted(missing)} are not planning placements of {gpu.model}")
        dropped = [q for q in range(len(gpu.placements)) if q not in index and gpu.current[q] >= 0]
        if dropped:
            raise ValueError(f"restriction drops current instances {[str(gpu.placements[q]) for q in dropped]}")
        gpus.append(
            dataclasses.replace(
                gpu,
                placements=tuple(gpu.placements[q] for q in index),
                memory_mask=gpu.memory_mask[index],
                compute=gpu.compute[index],
                profile=gpu.profile[index],
                engines=gpu.engines[index],
                capacity_rps=gpu.capacity_rps[:, index],
                retrain_speed=gpu.retrain_speed[:, index],
                current=gpu.current[index],
            )
        )
    return dataclasses.replace(problem, gpus=tuple(gpus))


# -- scoring a sequence ---------------------------------------------------------------------


def _task(k: int, tenants: Sequence[Tenant]) -> tuple[str, str] | None:
    """Task number (0 idle, 1+2i infer, 2+2i retrain) as goodput.Instance's task."""
    if k == 0:
        return None
    i, kind = divmod(k - 1, 2)
    return (tenants[i].name, "retrain" if kind else "infer")


def _number(task: str, tenants: Sequence[Tenant]) -> int:
    if task == "idle":
        return 0
    name, _, kind = task.rpartition(":")
    i = [t.name for t in tenants].index(name)
    return 1 + 2 * i + (kind == "retrain")


def initial(case: Case) -> Slot:
    """The instances running before slot 0, from the case's layouts and assignments."""
    out = []
    for g, (geometry, layout, assignment) in enumerate(zip(case.geometries(), case.layouts, case.assignments)):
        tasks = {str(geometry.normalize(p)): t for p, t in assignment.items()}
        for pl in geometry.validate(layout):
            out.append((g, str(pl), _number(tasks.get(str(pl), "idle"), case.tenants)))
    return tuple(sorted(out))


def new_instances(case: Case, sequence: Sequence_) -> int:
    """Instances created or re-assigned: a placement is new in a slot if in the previous
    slot it held no instance or one serving a different task (idle included)."""
    count = 0
    before = {(g, pl): k for g, pl, k in initial(case)}
    for slot in sequence:
        now = {(g, pl): k for g, pl, k in slot}
        count += sum(1 for key, k in now.items() if before.get(key) != k)
        before = now
    return count


def goodput(case: Case, sequence: Sequence_) -> float:
    """Goodput of ``sequence`` on the case's arrivals, by the estimator alone."""
    return _score(case, sequence).goodput


def _score(case: Case, sequence: Sequence_) -> Any:
    tenants = list(case.tenants)

    def instances(slot: Slot) -> list[Instance]:
        return [Instance(g, Placement.parse(pl), _task(k, tenants)) for g, pl, k in slot]

    capacity, speed = allocation_rates(
        [instances(slot) for slot in sequence],
        tenants,
        list(case.gpus),
        slot_s=case.slot_s,
        setup_s=case.setup_s,
        initial=instances(initial(case)),
        models=builtin_models(),
    )
    state = [case.progress.get(t.name, TenantState()) for t in tenants]
    return score(
        np.asarray(case.arrivals, dtype=np.float64), capacity, speed, tenants, slot_s=case.slot_s,
        start_slot=case.slot, progress_gpu_s=[x.progress_gpu_s for x in state], done=[x.done for x in state],
    )


def value(case: Case, sequence: Sequence_) -> float:
    """What the planner maximises: Goodput minus the penalty per new instance, and the floor
    weight per request short of a tenant's floor (its share of its arrivals over the case)."""
    result = _score(case, sequence)
    floors = np.array([(t.min_slo_attainment or 0.0) for t in case.tenants]) * np.asarray(case.arrivals).sum(axis=1)
    short = np.maximum(floors - result.within.sum(axis=1), 0.0).sum()
    return result.goodput - case.reconfig_penalty * new_instances(case, sequence) - FLOOR_WEIGHT * short


def sequence_of(problem: Problem, tasks: Sequence[np.ndarray]) -> Sequence_:
    """A solution's ``tasks[g]`` (J, Q), -1 for no instance, expanded to one entry per slot."""
    slots = []
    for j, length in enumerate(problem.periods):
        slot = tuple(
            sorted(
                (g, str(gpu.placements[q]), int(tasks[g][j, q]))
                for g, gpu in enumerate(problem.gpus)
                for q in range(len(gpu.placements))
                if tasks[g][j, q] >= 0
            )
        )
        slots.extend([slot] * length)
    return tuple(slots)


# -- the search -----------------------------------------------------------------------------


def slot_options(case: Case, problem: Problem) -> list[Slot]:
    """Every (valid layout over the problem's placements, task of each instance) of one GPU."""
    if len(problem.gpus) != 1:
        raise ValueError("the brute force takes one GPU")
    geometry = case.geometries()[0]
    placements = list(problem.gpus[0].placements)
    n_tasks = 2 * len(case.tenants) + 1
    options: list[Slot] = []
    for size in range(len(placements) + 1):
        for subset in itertools.combinations(placements, size):
            if not geometry.is_valid(list(subset)):
                continue
            for tasks in itertools.product(range(n_tasks), repeat=size):
                if case.retrain_instances and _most_retraining_one_tenant(tasks) > case.retrain_instances:
                    continue
                options.append(tuple(sorted((0, str(pl), k) for pl, k in zip(subset, tasks))))
    return options


def _most_retraining_one_tenant(tasks: Sequence[int]) -> int:
    retraining = [k for k in tasks if k > 0 and k % 2 == 0]
    return max((retraining.count(k) for k in set(retraining)), default=0)


def search_size(case: Case) -> int:
    return len(slot_options(case, case.problem())) ** case.horizon


def brute_force(case: Case, limit: int = 200_000) -> tuple[float, Sequence_]:
    """Best value (Goodput - penalty x new instances) over every sequence, and one sequence
    reaching it. Refuses searches of more than ``limit`` sequences."""
    problem = case.problem()
    if any(length != 1 for length in problem.periods):
        raise ValueError("the brute force takes periods of one slot")
    options = slot_options(case, problem)
    if len(options) ** case.horizon > limit:
        raise ValueError(f"{len(options)}^{case.horizon} sequences is more than {limit}")
    best, best_sequence = -np.inf, ()
    for sequence in itertools.product(options, repeat=case.horizon):
        v = value(case, sequence)
        if v > best:
            best, best_sequence = v, sequence
    return float(best), best_sequence
