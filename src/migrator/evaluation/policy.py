"""The one interface every allocation policy implements, and the registry of policies.

A policy is asked, every ``interval_s`` seconds of simulated (or real) time, for the
allocation it wants: per GPU a MIG layout and the task of each instance. It sees what a real
controller sees at that moment (:class:`Observation`: arrivals so far, the allocation in
place, retraining progress) and what an operator knows beforehand (:class:`Environment`:
the scenario, each instance's figures, each tenant's average rate from past traffic).

The simulator (``migrator.evaluation.simulate``) and the online controller call policies the same way;
the migrator planner, the oracle, the static partition and the published baselines all sit
behind this interface (``make_policy(name)``).
"""

from __future__ import annotations

import functools
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..geometry.geometry import Geometry
from ..geometry.layout import Layout
from ..planning.planner_problem import PlannerState, TenantState
from ..workload.goodput import model_table, slo_capacity
from ..workload.scenario import Scenario

__all__ = [
    "POLICY_NAMES",
    "Allocation",
    "Environment",
    "Observation",
    "Policy",
    "make_policy",
]

# name -> "module:Class"; loaded on demand so that the registry does not import every policy.
_REGISTRY = {
    "migrator": "migrator.evaluation.planning_policies:MigratorPolicy",
    "oracle": "migrator.evaluation.planning_policies:OraclePolicy",
    "static": "migrator.evaluation.planning_policies:StaticPolicy",
    "ekya": "migrator.evaluation.baselines:EkyaPolicy",
    "astraea": "migrator.evaluation.baselines:AstraeaPolicy",
    "paris": "migrator.evaluation.baselines:ParisPolicy",
}
POLICY_NAMES = tuple(_REGISTRY)


@dataclass(frozen=True)
class Allocation:
    """Per GPU: the layout (canonical text) and the task of each instance.

    ``assignments[g]`` maps a placement (``"3g.20gb@4"``) to ``"idle"``,
    ``"<tenant>:infer"`` or ``"<tenant>:retrain"``; an instance missing from it is idle.
    """

    layouts: tuple[str, ...]
    assignments: tuple[Mapping[str, str], ...]

    @classmethod
    def of(cls, layouts: Sequence[str], assignments: Sequence[Mapping[str, str]]) -> Allocation:
        return cls(tuple(layouts), tuple(dict(a) for a in assignments))

    def tasks(self, gpu: int) -> dict[str, str]:
        """Every instance of GPU ``gpu`` with its task (idle ones included)."""
        assignment = self.assignments[gpu]
        return {str(p): assignment.get(str(p), "idle") for p in Layout.parse(self.layouts[gpu])}


@dataclass(frozen=True)
class Environment:
    """What a policy may know before the run starts.

    ``mean_rps`` is each tenant's average arrival rate, the figure an operator sizes a
    static partition with (from past traffic): the simulator takes it from ``warmup``, the
    arrivals of a stretch before the scored window, shape (n_tenants, warmup slots), which
    no grader scores (``migrator.evaluation.warmup``). ``trace`` holds the realised arrivals
    of the run, shape (n_tenants, n_slots): only the oracle reads it.
    """

    scenario: Scenario
    mean_rps: np.ndarray
    seed: int
    trace: np.ndarray = field(repr=False)
    warmup: np.ndarray | None = field(default=None, repr=False)

    @property
    def tenant_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.scenario.tenants)

    @functools.cached_property
    def geometries(self) -> list[Geometry]:
        return self.scenario.geometries()

    def capacity_rps(self, tenant: int, gpu: int, profile: str) -> float:
        """Requests per second an instance of ``profile`` on GPU ``gpu`` serves within the
        tenant's SLO (0 where the model does not fit)."""
        t = self.scenario.tenants[tenant]
        return slo_capacity(
            t.model, profile, t.slo_ms, gpu=self.scenario.gpus[gpu].model, percentile=t.percentile,
            max_batch=t.max_batch, models=self._models,
        )

    def retrain_speed(self, tenant: int, gpu: int, profile: str) -> float:
        """Retraining speed of an instance of ``profile``, as a fraction of a full GPU."""
        table = model_table(self.scenario.tenants[tenant].model, self._models)
        gpu_model = self.scenario.gpus[gpu].model
        return table.retrain_speed(gpu_model, profile) if table.fits(gpu_model, profile) else 0.0

    @functools.cached_property
    def _models(self) -> Mapping[str, Any]:
        return self.scenario.model_tables()


@dataclass(frozen=True)
class Observation:
    """What a policy sees when it decides, at the start of slot ``slot``.

    ``arrived`` has shape (n_tenants, slot): the requests of every slot already over.
    ``progress_gpu_s`` and ``done`` give each tenant's retraining in its current window.
    """

    slot: int
    slot_s: float
    arrived: np.ndarray
    allocation: Allocation
    progress_gpu_s: Mapping[str, float]
    done: Mapping[str, bool]

    def planner_state(self) -> PlannerState:
        """The same moment as the planner's starting point."""
        return PlannerState(
            layouts=self.allocation.layouts,
            assignments=self.allocation.assignments,
            tenants={
                name: TenantState(progress_gpu_s=float(self.progress_gpu_s[name]), done=bool(self.done[name]))
                for name in self.progress_gpu_s
            },
            slot=self.slot,
        )


class Policy(ABC):
    """Decides allocations. Subclasses set ``name`` and implement :meth:`decide`.

    ``interval_s`` is how often the caller asks; :meth:`reset` is called once before a run
    with what the policy may know beforehand.
    """

    name: ClassVar[str] = "policy"
    interval_s: float = 1.0
    #: Whether the last decision was cut short by a time limit, so that what it decided
    #: depends on the machine's speed and load: the replay counts such decisions, since a
    #: run with any may not repeat exactly (docs/results.md, "Runs that repeat").
    time_limited: bool = False

    def reset(self, env: Environment) -> None:
        self.env = env

    @abstractmethod
    def decide(self, observation: Observation) -> Allocation | None:
        """The allocation wanted from now on, or None to keep the current one."""

    def describe(self) -> dict[str, Any]:
        """Settings worth recording next to the policy's results."""
        # JSON has no infinity: a policy that never re-decides (static) records None.
        interval = self.interval_s if np.isfinite(self.interval_s) else None
        return {"name": self.name, "interval_s": interval}


def make_policy(name: str, **options: Any) -> Policy:
    """A policy by name (one of :data:`POLICY_NAMES`), with its options."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown policy {name!r}; known policies: {', '.join(POLICY_NAMES)}", field="policies"
        )
    module, _, cls = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**options)


def check_interval(value: Any, field_name: str = "interval_s") -> float:
    """A decision interval: a number of seconds > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{field_name} must be a number of seconds > 0, got {value!r}", field=field_name)
    return float(value)
