"""Planner settings: a value shared by scenarios (which load it) and the planner (which uses it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError

__all__ = ["FORECASTERS", "PlannerConfig"]

FORECASTERS = ("last", "ewma", "holt-winters")


@dataclass(frozen=True)
class PlannerConfig:
    """How the planner decides.

    Parameters
    ----------
    horizon : int
        Slots planned ahead at each decision (receding horizon; only the first is applied).
    setup_s : float
        Seconds a created or re-assigned instance cannot serve: GPU/compute instance
        creation plus model load. See docs/model.md for the figure's source.
    reconfig_penalty : float
        Goodput charged per created or re-assigned instance. The default, one request's
        worth, only breaks ties towards fewer changes; raise it to damp churn.
    time_limit_s, mip_gap : float
        Solver limits; at the limit the best valid plan found is returned with its gap
        (with none found, every GPU keeps its current layout and tasks).
    max_wait_slots : int
        Slots a request may wait (late) before it is dropped.
    forecaster : mapping
        ``{"name": "last" | "ewma" | "holt-winters", ...parameters}``.
    terminal_value : bool
        Credit retraining progress still unfinished at the horizon's end with its share of
        the accuracy gain over the rest of its window (docs/model.md, constraint 13), so that
        a retraining longer than the horizon can still be started. Off by default: in the
        simulator it made receding plans move retraining around without finishing any
        (docs/results.md); off: plain horizon Goodput.
    terminal_weight : float
        Scales the terminal value (1: the full share of the gain). A small weight only breaks
        ties, so that instances with nothing better to do retrain rather than idle.
    retrain_over_window : bool
        After solving, move instances of the first period to retraining where the accuracy
        it adds over the rest of its window outweighs the inference given up
        (``migrator.planning.retraining``); the plan's expected Goodput then values the changed plan.
    decompose_above : int
        When the whole program would have more task variables than this (periods x
        placements x tasks, summed over GPUs), each GPU is planned on its own with the
        tenants given to it (``migrator.planning.decompose``); 0 never splits.
    retrain_instances : int
        How many instances may retrain one tenant at the same time, over all GPUs (docs/model.md,
        constraint 16). A MIG instance is a CUDA device of its own, without peer-to-peer
        access to the others (no CUDA IPC; NVLink unavailable), so a retraining job runs on
        one instance: 1 by default. 0: any number, their progress adding up.
    workers : int
        How many of a split's parts (and its bound) are solved at once, in threads: HiGHS
        solves separate programs in parallel. 0 (default): one per CPU core; 1: one after
        another. The parts share the time limit either way.
    """

    horizon: int = 30
    setup_s: float = 2.0
    reconfig_penalty: float = 1.0
    time_limit_s: float = 1.0
    mip_gap: float = 1e-3
    max_wait_slots: int = 1
    forecaster: Mapping[str, Any] = field(default_factory=lambda: {"name": "ewma", "alpha": 0.3})
    terminal_value: bool = False
    terminal_weight: float = 1.0
    retrain_over_window: bool = False
    decompose_above: int = 4000
    retrain_instances: int = 1
    workers: int = 0

    def __post_init__(self) -> None:
        _integer(self.horizon, "planner.horizon", low=1)
        _integer(self.max_wait_slots, "planner.max_wait_slots", low=0)
        _integer(self.decompose_above, "planner.decompose_above", low=0)
        _integer(self.retrain_instances, "planner.retrain_instances", low=0)
        _integer(self.workers, "planner.workers", low=0)
        _number(self.setup_s, "planner.setup_s", low=0.0)
        _number(self.reconfig_penalty, "planner.reconfig_penalty", low=0.0)
        _number(self.time_limit_s, "planner.time_limit_s", low=0.0, strict=True)
        _number(self.mip_gap, "planner.mip_gap", low=0.0)
        _number(self.terminal_weight, "planner.terminal_weight", low=0.0)
        if not isinstance(self.forecaster, Mapping) or self.forecaster.get("name") not in FORECASTERS:
            raise ConfigError(
                f"planner.forecaster must be a mapping with name one of {', '.join(FORECASTERS)}, "
                f"got {self.forecaster!r}",
                field="planner.forecaster",
            )
        object.__setattr__(self, "forecaster", dict(self.forecaster))

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], where: str = "planner") -> PlannerConfig:
        """Build from a scenario's ``planner:`` mapping; unknown keys are errors."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(table).__name__}", field=where)
        allowed = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]} is not a planner setting; allowed: {', '.join(allowed)}",
                field=f"{where}.{unknown[0]}",
            )
        return cls(**table)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def make_forecaster(self) -> Any:
        from .forecast import make

        options = dict(self.forecaster)
        return make(options.pop("name"), **options)


def _integer(value: Any, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}", field=name)


def _number(value: Any, name: str, low: float, strict: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or value < low or (strict and value == low):
        relation = ">" if strict else ">="
        raise ConfigError(f"{name} must be a number {relation} {low}, got {value!r}", field=name)
