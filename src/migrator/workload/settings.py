"""Planner settings: a value shared by scenarios (which load it) and the planner (which uses it).

This module also holds the checks every number, size and name of a scenario goes through
(``number_in``, ``integer_in``, ``flag``, ``text``) and the limits they enforce, so that the
scenario, its tenants and its planner settings refuse the same things with the same words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError
from . import forecast
from .checks import flag, integer_in, number_in, shown

__all__ = ["FORECASTERS", "PlannerConfig"]

FORECASTERS = tuple(forecast.FORECASTERS)

# -- limits ------------------------------------------------------------------------------------
# Far beyond what the project plans for (up to 512 GPUs and 1024 tenants in one scenario,
# issue 18; docs/model.md measures up to 128 GPUs / 256 tenants, horizons of 15-60 slots and
# set-up times of seconds). They exist so that a slip
# (``count: 100000``, ``slot_s: 0.000001``, ``--horizon 100000``) is an error naming the field
# and the limit, not minutes of work or gigabytes allocated before anything is checked.

#: Slots planned ahead. The built-in scenario plans 10,000 in about 10 s; 100,000 took 103 s
#: and 2 GB.
MAX_HORIZON = 10_000
#: GPUs and tenants of one scenario: four times the 512 GPUs and 1024 tenants supported.
MAX_GPUS = 2048
MAX_TENANTS = 4096
#: Slots of one scenario (``duration_s / slot_s``): 11.6 days of one-second slots.
MAX_SLOTS = 1_000_000
#: Tenants x slots of a scenario's (or a trace file's) arrival counts: 800 MB as float64.
MAX_CELLS = 10**8
#: Slot length in seconds: MIG reconfiguration takes seconds, so a slot below a millisecond
#: or above a day is a unit mistake.
MIN_SLOT_S, MAX_SLOT_S = 1e-3, 86_400.0
#: Durations of a tenant (retraining window, retraining work), in seconds: about 31 years.
MAX_SECONDS = 1e9
#: Expected requests of one tenant in one slot; more would swamp the solver's tolerances.
MAX_SLOT_REQUESTS = 1e12
#: Set-up time of an instance: GPU/compute instance creation and a model load take seconds.
MAX_SETUP_S = 3600.0
#: Solver time limit: a decision is due every slot; a day is beyond any use.
MAX_TIME_LIMIT_S = 86_400.0
#: Objective coefficients (penalty, terminal weight) beyond these leave the program badly
#: scaled: HiGHS counts costs of 1e20 as infinite and its tolerances are relative.
MAX_PENALTY = 1e12
MAX_TERMINAL_WEIGHT = 1e3
#: Threads solving a split's parts side by side.
MAX_WORKERS = 1024
#: Branch-and-bound nodes per solve: far past what any decision explores (HiGHS counts in int64).
MAX_NODE_LIMIT = 10**9
#: Instances retraining one tenant at once: no GPU holds more than 8 MIG instances.
MAX_RETRAIN_INSTANCES = 8 * MAX_GPUS


@dataclass(frozen=True)
class PlannerConfig:
    """How the planner decides.

    Every field is checked when the value is built (a :class:`ConfigError` naming the field
    and its allowed values); the sizes are bounded by this module's ``MAX_*`` limits.

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
        ``{"name": "last" | "ewma" | "holt-winters", ...parameters}``. Default an EWMA with
        ``alpha`` 0.05: per-second counts of real traces are bursty, and a level that follows
        them (0.3, the default before) re-plans on noise. Graded request by request, 0.05
        earned +1.1 % to +10.9 % over 0.3 on six of the suite's scenarios and
        ``sized(8, 16)`` (three seeds), -0.5 % and -0.1 % on the other two. The price: an
        abrupt shift takes some 40 slots to follow (a 26-fold swap between two tenants cost
        30 %), so where loads jump set a larger ``alpha`` (docs/results.md, "The
        forecaster's smoothing").
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
    load_headroom : float
        The share of each instance's SLO capacity the planner plans to fill (0 to 1). The
        capacity model is the most a steady Poisson stream can have served within the SLO
        (docs/goodput.md); a slot whose arrivals exceed the forecast then overloads the
        instance and most of its requests miss the SLO, which the slot model does not see.
        The rest is headroom for forecast error. Default 0.85: on 120 s of the built-in
        scenario and of 8 A100s / 16 tenants it gained 9.6 % and 5.8 % request-level Goodput
        over 1 (the capacity model as it is); docs/results.md, "Planning headroom".
    node_limit : int or None
        Branch-and-bound nodes each of a decision's integer programs may explore (HiGHS's
        ``mip_max_nodes``; 0 stops before the root node's relaxation, which leaves the warm
        start as presolve finds it: another, faster planner). None (default): no limit, the time
        limit alone stops the solver. Set, a decision no longer reads the clock: no stage
        is cut short by the time limit, each HiGHS run has ten times ``time_limit_s`` as a
        safety stop rather than a share of the time left, and so the same inputs give the
        same plan on any machine and under any load, which a simulation graded on modelled
        latency needs in order to repeat (docs/results.md, "Runs that repeat"). A decision
        may then take longer than ``time_limit_s``; a run the safety stop ends says
        "Time limit reached" in its status.
    """

    horizon: int = 30
    setup_s: float = 2.0
    reconfig_penalty: float = 1.0
    time_limit_s: float = 1.0
    mip_gap: float = 1e-3
    max_wait_slots: int = 1
    forecaster: Mapping[str, Any] = field(default_factory=lambda: {"name": "ewma", "alpha": 0.05})
    terminal_value: bool = False
    terminal_weight: float = 1.0
    retrain_over_window: bool = False
    decompose_above: int = 4000
    retrain_instances: int = 1
    workers: int = 0
    load_headroom: float = 0.85
    node_limit: int | None = None

    def __post_init__(self) -> None:
        integer_in(self.horizon, "planner.horizon", low=1, high=MAX_HORIZON)
        integer_in(self.max_wait_slots, "planner.max_wait_slots", low=0, high=MAX_HORIZON)
        integer_in(self.decompose_above, "planner.decompose_above", low=0)
        integer_in(self.retrain_instances, "planner.retrain_instances", low=0, high=MAX_RETRAIN_INSTANCES)
        integer_in(self.workers, "planner.workers", low=0, high=MAX_WORKERS)
        if self.node_limit is not None:
            integer_in(self.node_limit, "planner.node_limit", low=0, high=MAX_NODE_LIMIT)
        number_in(self.setup_s, "planner.setup_s", low=0.0, high=MAX_SETUP_S)
        number_in(self.reconfig_penalty, "planner.reconfig_penalty", low=0.0, high=MAX_PENALTY)
        number_in(self.time_limit_s, "planner.time_limit_s", low=0.0, low_open=True, high=MAX_TIME_LIMIT_S)
        number_in(self.mip_gap, "planner.mip_gap", low=0.0)
        number_in(self.terminal_weight, "planner.terminal_weight", low=0.0, high=MAX_TERMINAL_WEIGHT)
        number_in(self.load_headroom, "planner.load_headroom", low=0.0, low_open=True, high=1.0)
        flag(self.terminal_value, "planner.terminal_value")
        flag(self.retrain_over_window, "planner.retrain_over_window")
        object.__setattr__(self, "forecaster", _forecaster(self.forecaster))

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], where: str = "planner") -> PlannerConfig:
        """Build from a scenario's ``planner:`` mapping; unknown keys are errors."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(table).__name__}", field=where)
        allowed = [f for f in cls.__dataclass_fields__]
        # In the file's order: YAML keys need not be strings, so they need not sort.
        unknown = [key for key in table if key not in allowed]
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]} is not a planner setting; allowed: {', '.join(allowed)}",
                field=f"{where}.{unknown[0]}",
            )
        return cls(**table)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def make_forecaster(self) -> Any:
        options = dict(self.forecaster)
        return forecast.make(options.pop("name"), **options)


def _forecaster(table: Any) -> dict[str, Any]:
    """The forecaster mapping, checked by building the forecaster once: ``run`` builds it
    at its first step, and ``plan`` must refuse what ``run`` would."""
    where = "planner.forecaster"
    if not isinstance(table, Mapping) or table.get("name") not in FORECASTERS:
        raise ConfigError(
            f"{where} must be a mapping with name one of {', '.join(FORECASTERS)}, got {shown(table)}",
            field=where,
        )
    options = dict(table)
    name = options.pop("name")
    odd = [key for key in options if not isinstance(key, str)]
    if odd:
        raise ConfigError(f"{where}: parameter names must be strings, got {shown(odd[0])}", field=where)
    try:
        forecast.make(name, **options)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc.field}: {exc}", field=f"{where}.{exc.field}") from exc
    return dict(table)


