"""Replay a scenario under an allocation policy and score what it earns.

The replay runs slot by slot (``slot_s``, one second in the built-in scenario):

* at the start of a slot a policy that is due (every ``interval_s``, and not still busy with
  its last decision) observes what a controller would (:class:`migrator.evaluation.policy.Observation`)
  and decides; the decision takes effect the decision's charged time later, so a slow policy
  acts on old news: by default the policy's decision cost, one figure measured once per
  machine (``latency="model"``, :mod:`migrator.evaluation.latency`), so that a replay repeats
  exactly wherever no decision stops at its time limit (each run counts those; with
  ``PlannerConfig.node_limit`` none does); with ``latency="wall"`` the wall-clock time each
  decision took; or a fixed figure;
* when it takes effect, instances that keep their placement and task keep serving; created
  or re-assigned ones serve only after the set-up time (GI/CI creation, model load), as in
  the planner's model; removed ones stop;
* each slot's inference capacity within SLO and retraining speed per tenant come from the
  instances live in it, pro rata of the time each could serve;
* every instance the replay runs is recorded as a :class:`~migrator.evaluation.requests.Segment`
  (task, creation, ready and end times): the instance timeline.

Every run is graded twice, and ``grader`` picks the headline (``SimResult.score``):

* ``"request"`` (default): the request-level grader (``migrator.evaluation.requests``) serves the
  trace's requests one by one on the recorded timeline (join-shortest-queue routing, greedy
  batching with the model table's service times, set-up downtime, per-request SLO and the
  accuracy of the model version serving it), independent of the planner's capacity model;
* ``"slot"``: each slot's inference capacity within SLO and retraining speed per tenant come
  from the instances live in it, pro rata of the time each could serve, and the slot is
  scored by the Goodput estimator's own Numba kernel (``score_kernel``), whose queues, SLO
  accounting, retraining windows and accuracy switch carry from slot to slot. This is the
  planner's own model: requests of one tenant share one queue across its instances (ideal
  routing) and an instance serves its analytic SLO capacity.

The policies observe the slot replay's state (arrivals so far, allocation, retraining
progress), whichever grader is the headline.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, MigratorError
from ..geometry.layout import Layout, Placement
from ..planning.planner_problem import parse_task
from ..workload import _kernels
from ..workload.goodput import INFER, ScoreResult, tenant_arrays
from ..workload.scenario import Scenario
from .latency import check_latency, decision_cost, machine, software
from .policy import Allocation, Environment, Observation, Policy
from .requests import GRADERS, Segment, grade_requests
from .warmup import ArrivalWindows, arrival_windows

__all__ = ["DecisionRecord", "SimResult", "check_grader", "simulate", "tenant_figures"]

#: Per tenant figures of a grading (``tenant_figures``): the three a report shows, and the
#: request counts that weigh them into the aggregate.
TENANT_METRICS = ("goodput", "slo_attainment", "mean_accuracy")


@dataclass(frozen=True)
class DecisionRecord:
    """One decision: when it was asked for, how long it took (wall clock), when it took
    effect and what it changed (``layout_changes``: GPUs whose layout changed;
    ``instance_changes``: instances created or re-assigned to a task); ``charged_s`` is the
    simulated time it was charged; ``time_limited`` whether a time limit cut it short
    (:attr:`Policy.time_limited <migrator.evaluation.policy.Policy.time_limited>`)."""

    slot: int
    latency_s: float
    applied_s: float | None
    layout_changes: int = 0
    instance_changes: int = 0
    kept: bool = False
    charged_s: float | None = None
    time_limited: bool = False


@dataclass(frozen=True)
class SimResult:
    """What a policy earned on one replay. Arrays have shape (n_tenants, n_slots);
    ``layouts[g][t]`` is GPU ``g``'s layout at the end of slot ``t``.

    ``score`` is the grading by ``grader`` (the headline); ``gradings`` holds every grading
    of the run by grader name (``"request"``, ``"slot"``), the headline included;
    ``segments`` is the instance timeline the request-level grader replayed; ``warmup_s``
    is the warm-up the policies sized on and ``start_slot`` where the scored window starts
    in the scenario's recorded traces (None without one); ``latency`` says how decisions
    were charged (``mode``: ``"model"``, ``"wall"``, ``"fixed"`` or ``"policy"`` for a policy
    with its own figure; ``decision_s``: the figure, None for ``"wall"``; ``machine`` and
    ``software``: where, and with which releases of migrator and highspy, a modelled figure
    was measured)."""

    policy: str
    seed: int
    slot_s: float
    score: ScoreResult
    layouts: tuple[tuple[str, ...], ...]
    decisions: tuple[DecisionRecord, ...]
    gpu_models: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    grader: str = "slot"
    gradings: Mapping[str, ScoreResult] = field(default_factory=dict)
    segments: tuple[Segment, ...] = ()
    warmup_s: float = 0.0
    start_slot: int | None = None
    latency: Mapping[str, Any] = field(default_factory=dict)

    @property
    def goodput(self) -> float:
        return self.score.goodput

    @property
    def slo_attainment(self) -> float:
        return self.score.slo_attainment

    @property
    def mean_accuracy(self) -> float:
        return self.score.mean_accuracy

    @property
    def reconfigurations(self) -> int:
        """MIG reconfigurations: decisions' layout changes, summed over GPUs."""
        return sum(d.layout_changes for d in self.decisions)

    @property
    def instance_changes(self) -> int:
        return sum(d.instance_changes for d in self.decisions)

    @property
    def time_limited_decisions(self) -> int:
        """Decisions a time limit cut short: with any, the run may not repeat exactly."""
        return sum(d.time_limited for d in self.decisions)

    def decision_ms(self, percentile: float) -> float:
        """Decision latency percentile (wall clock, ms); 0 with no decision."""
        latencies = [d.latency_s for d in self.decisions]
        return float(np.percentile(latencies, percentile) * 1000.0) if latencies else 0.0

    def goodput_per_slot(self) -> np.ndarray:
        """Goodput earned in each slot, all tenants together, shape (n_slots,)."""
        return (self.score.within * self.score.accuracy).sum(axis=0)

    def summary(self) -> dict[str, float]:
        """The figures of the comparison table (``results.json`` keys); ``worst_slo_attainment``
        is the lowest SLO attainment of any tenant."""
        return {
            "goodput": self.goodput,
            "slo_attainment": self.slo_attainment,
            "mean_accuracy": self.mean_accuracy,
            "reconfigurations": float(self.reconfigurations),
            "decision_ms_p50": self.decision_ms(50),
            "decision_ms_p99": self.decision_ms(99),
            "worst_slo_attainment": _worst(tenant_figures(self.score)),
            "decisions_at_time_limit": float(self.time_limited_decisions),
        }

    def grading_summary(self) -> dict[str, dict[str, float]]:
        """Per grader: Goodput, SLO attainment, mean accuracy and the worst tenant's SLO
        attainment of the run."""
        gradings = dict(self.gradings) or {self.grader: self.score}
        return {
            name: {"goodput": s.goodput, "slo_attainment": s.slo_attainment, "mean_accuracy": s.mean_accuracy,
                   "worst_slo_attainment": _worst(tenant_figures(s))}
            for name, s in gradings.items()
        }

    def tenant_summary(self, grader: str | None = None) -> dict[str, dict[str, float]]:
        """Per tenant, :func:`tenant_figures` of the grading ``grader`` (default the headline)."""
        return tenant_figures(self.score if grader is None else self.gradings[grader])


def tenant_figures(score: ScoreResult) -> dict[str, dict[str, float]]:
    """Per tenant: Goodput, SLO attainment and mean accuracy, and the requests that weigh them
    (``arrived``, ``within`` SLO).

    They add up to the aggregate as ``ScoreResult`` computes it: Goodputs sum to its Goodput;
    SLO attainments weighted by ``arrived``, and accuracies by ``within``, average to its SLO
    attainment and mean accuracy. A tenant with no arrival attains its SLO (1, as the
    aggregate does); one with none served has accuracy 0.
    """
    arrived = score.arrived.sum(axis=1)
    within = score.within.sum(axis=1)
    goodput = (score.within * score.accuracy).sum(axis=1)
    return {
        name: {
            "goodput": float(goodput[i]),
            "slo_attainment": float(within[i] / arrived[i]) if arrived[i] > 0 else 1.0,
            "mean_accuracy": float(goodput[i] / within[i]) if within[i] > 0 else 0.0,
            "arrived": float(arrived[i]),
            "within": float(within[i]),
        }
        for i, name in enumerate(score.tenants)
    }


def _worst(tenants: Mapping[str, Mapping[str, float]]) -> float:
    """The lowest SLO attainment of any tenant (1 with no tenant)."""
    return min((t["slo_attainment"] for t in tenants.values()), default=1.0)


# -- instance bookkeeping ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Live:
    """An instance in service: its task and the time it can serve it from."""

    task: str
    ready_s: float


class _Rates:
    """Capacity and retraining speed per (tenant, GPU, profile), looked up once each."""

    def __init__(self, env: Environment) -> None:
        self._env = env
        self._index = {name: i for i, name in enumerate(env.tenant_names)}
        self._cache: dict[tuple[str, int, str], tuple[int, float, bool]] = {}

    def of(self, task: str, gpu: int, placement: str) -> tuple[int, float, bool]:
        """(tenant index, figure, is inference) for an instance; figure 0 when idle."""
        key = (task, gpu, placement)
        if key not in self._cache:
            self._cache[key] = self._lookup(task, gpu, Placement.parse(placement).profile)
        return self._cache[key]

    def _lookup(self, task: str, gpu: int, profile: str) -> tuple[int, float, bool]:
        if task == "idle":
            return -1, 0.0, True
        name, _, kind = task.rpartition(":")
        tenant = self._index[name]
        if kind == INFER:
            return tenant, self._env.capacity_rps(tenant, gpu, profile), True
        return tenant, self._env.retrain_speed(tenant, gpu, profile), False


def _initial_live(scenario: Scenario) -> list[dict[str, _Live]]:
    """The scenario's layouts, every instance idle and long set up."""
    return [{str(p): _Live("idle", -math.inf) for p in Layout.parse(g.layout)} for g in scenario.gpus]


def _allocation_of(live: Sequence[Mapping[str, _Live]]) -> Allocation:
    layouts = [str(Layout.of(Placement.parse(p) for p in instances)) for instances in live]
    assignments = [{p: inst.task for p, inst in instances.items() if inst.task != "idle"} for instances in live]
    return Allocation.of(layouts, assignments)


def _checked(allocation: Any, env: Environment, policy: str) -> Allocation:
    """The policy's allocation with canonical layouts, or a ConfigError naming what is wrong."""
    if not isinstance(allocation, Allocation) or len(allocation.layouts) != len(env.geometries):
        raise ConfigError(
            f"policy {policy!r} must return an Allocation with one layout per GPU "
            f"({len(env.geometries)}), got {allocation!r}",
            field="allocation",
        )
    tenants = env.tenant_names
    layouts = []
    for g, (geometry, layout, assignment) in enumerate(zip(env.geometries, allocation.layouts, allocation.assignments)):
        try:
            canonical = geometry.canonical(layout)
        except MigratorError as exc:
            raise ConfigError(f"policy {policy!r}, GPU {g}: {exc}", field="allocation.layouts") from exc
        placed = {str(p) for p in Layout.parse(canonical)}
        for placement, task in assignment.items():
            if placement not in placed:
                raise ConfigError(
                    f"policy {policy!r}, GPU {g}: task for {placement}, which is not in layout {canonical!r}",
                    field="allocation.assignments",
                )
            try:
                parse_task(task, tenants)
            except ConfigError as exc:
                raise ConfigError(f"policy {policy!r}, GPU {g}: {exc}", field="allocation.assignments") from exc
        layouts.append(canonical)
    return Allocation.of(layouts, allocation.assignments)


def _apply(live: list[dict[str, _Live]], target: Allocation, at_s: float, setup_s: float) -> tuple[int, int]:
    """Switch to ``target`` at ``at_s``; returns (GPUs whose layout changed, instances
    created or re-assigned to a task)."""
    layout_changes = instance_changes = 0
    for g, instances in enumerate(live):
        wanted = target.tasks(g)
        if set(wanted) != set(instances):
            layout_changes += 1
        fresh = {}
        for placement, task in wanted.items():
            old = instances.get(placement)
            if old is not None and old.task == task:
                fresh[placement] = old
                continue
            fresh[placement] = _Live(task, at_s + setup_s)
            instance_changes += task != "idle"
        live[g] = fresh
    return layout_changes, instance_changes


def _serve(
    live: Sequence[Mapping[str, _Live]], rates: _Rates, start_s: float, stop_s: float, slot_s: float,
    capacity: np.ndarray, retrain: np.ndarray,
) -> None:
    """Add what the live instances deliver in ``[start_s, stop_s)`` (in slot shares)."""
    for g, instances in enumerate(live):
        for placement, inst in instances.items():
            share = (stop_s - max(start_s, inst.ready_s)) / slot_s
            if share <= 0:
                continue
            tenant, figure, infer = rates.of(inst.task, g, placement)
            if tenant >= 0:
                (capacity if infer else retrain)[tenant] += share * figure


# -- the replay ---------------------------------------------------------------------------------


class _Replay:
    """The state of one replay: instances, queues, retraining, and the policy's pending decision."""

    def __init__(self, scenario: Scenario, policy: Policy, seed: int, windows: ArrivalWindows) -> None:
        self.scenario = scenario
        self.policy = policy
        # Simulated seconds every decision is charged; None charges the wall-clock time each
        # took. Set once the environment is known (a modelled cost is measured on it).
        self.latency_s: float | None = None
        self.slot_s = scenario.slot_s
        self.windows = windows
        trace = windows.scored
        self.n_slots = trace.shape[1]
        self.arrivals = trace
        # What the policies know beforehand comes from the warm-up, never from the scored trace.
        self.env = Environment(scenario, mean_rps=windows.mean_rps(), seed=seed, trace=trace, warmup=windows.warmup)
        self.rates = _Rates(self.env)
        self.live = _initial_live(scenario)
        self.layouts = _allocation_of(self.live).layouts  # changes only when a decision applies
        n = len(scenario.tenants)
        self.before, self.after, self.work, self.window = tenant_arrays(scenario.tenants, self.slot_s)
        self.queue = np.zeros((n, scenario.planner.max_wait_slots))
        self.progress = np.zeros(n)
        self.done = np.zeros(n, dtype=np.bool_)
        self.pending: tuple[float, Allocation, int] | None = None
        self.segments: list[Segment] = []  # the instance timeline, closed segments
        self.opened: dict[tuple[int, str], Segment] = {}  # instances serving a task now
        self.next_decision = 0
        self.records: list[DecisionRecord] = []
        # A policy that never asks again (static) has an infinite interval.
        every = policy.interval_s / self.slot_s
        self.interval = max(1, int(round(every))) if math.isfinite(every) else self.n_slots + 1

    # -- deciding ---------------------------------------------------------------------------

    def observe(self, t: int) -> Observation:
        progress, done = self.progress.copy(), self.done.copy()
        starts = (self.window > 0) & (t % np.maximum(self.window, 1) == 0)
        progress[starts], done[starts] = 0.0, False  # a new window starts now
        names = self.env.tenant_names
        return Observation(
            slot=t, slot_s=self.slot_s, arrived=self.arrivals[:, :t].copy(),
            allocation=_allocation_of(self.live),
            progress_gpu_s={n: float(v) for n, v in zip(names, progress)},
            done={n: bool(v) for n, v in zip(names, done)},
        )

    def maybe_decide(self, t: int) -> None:
        if self.pending is not None or t < self.next_decision:
            return
        observation = self.observe(t)
        started = time.perf_counter()
        decision = self.policy.decide(observation)
        took = time.perf_counter() - started
        charged = took if self.latency_s is None else self.latency_s
        limited = bool(self.policy.time_limited)
        self.next_decision = max(t + self.interval, math.ceil(t + charged / self.slot_s))
        if decision is None:
            self.records.append(DecisionRecord(slot=t, latency_s=took, applied_s=None, kept=True, charged_s=charged,
                                               time_limited=limited))
            return
        target = _checked(decision, self.env, self.policy.name)
        self.pending = (t * self.slot_s + charged, target, len(self.records))
        self.records.append(DecisionRecord(slot=t, latency_s=took, applied_s=None, charged_s=charged,
                                           time_limited=limited))

    # -- serving ----------------------------------------------------------------------------

    def run_slot(self, t: int) -> tuple[np.ndarray, ...]:
        self.maybe_decide(t)
        start, stop = t * self.slot_s, (t + 1) * self.slot_s
        n = len(self.scenario.tenants)
        capacity, retrain = np.zeros(n), np.zeros(n)
        if self.pending is not None and self.pending[0] < stop:
            at, target, index = self.pending
            at = max(at, start)
            _serve(self.live, self.rates, start, at, self.slot_s, capacity, retrain)
            before = [dict(instances) for instances in self.live]
            changes = _apply(self.live, target, at, self.scenario.planner.setup_s)
            self._record(before, at)
            self.layouts = target.layouts
            record = self.records[index]
            self.records[index] = replace(record, applied_s=at, layout_changes=changes[0],
                                          instance_changes=changes[1])
            self.pending = None
            start = at
        _serve(self.live, self.rates, start, stop, self.slot_s, capacity, retrain)
        return self._score(t, capacity, retrain)

    def _record(self, before: Sequence[Mapping[str, _Live]], at: float) -> None:
        """Close the segments of instances that ``_apply`` removed or re-assigned at ``at``,
        open those of the instances it created or re-assigned (idle ones serve nothing)."""
        for g, (old, new) in enumerate(zip(before, self.live)):
            for placement, inst in old.items():
                if new.get(placement) is not inst and inst.task != "idle":
                    seg = self.opened.pop((g, placement))
                    self.segments.append(Segment(g, placement, seg.task, seg.start_s, seg.ready_s, at))
            for placement, inst in new.items():
                if old.get(placement) is not inst and inst.task != "idle":
                    self.opened[(g, placement)] = Segment(g, placement, inst.task, at, inst.ready_s, math.inf)

    def timeline(self) -> tuple[Segment, ...]:
        """Every segment of the replay, those still open ending at ``inf``, by start time."""
        return tuple(sorted([*self.segments, *self.opened.values()], key=lambda s: (s.start_s, s.gpu, s.placement)))

    def _score(self, t: int, capacity: np.ndarray, retrain: np.ndarray) -> tuple[np.ndarray, ...]:
        column = (slice(None), slice(t, t + 1))
        return _kernels.score_kernel(
            np.ascontiguousarray(self.arrivals[column]),
            (capacity * self.slot_s).reshape(-1, 1), (retrain * self.slot_s).reshape(-1, 1),
            self.before, self.after, self.work, self.window, t, self.queue, self.progress, self.done,
        )


def simulate(
    scenario: Scenario,
    policy: Policy,
    *,
    seed: int | None = None,
    decision_latency_s: float | None = None,
    duration_s: float | None = None,
    on_slot: Callable[[int], None] | None = None,
    grader: str = "request",
    warmup_s: float | None = None,
    latency: str = "model",
) -> SimResult:
    """Replay ``scenario`` under ``policy`` and score it.

    Parameters
    ----------
    scenario : Scenario
        GPUs, tenants and arrivals (drawn with ``seed``; default the scenario's own).
    policy : Policy
        Any policy of ``migrator.evaluation.policy`` (``make_policy("migrator")``, ...).
    seed : int, optional
        Seed of the scenario's synthetic arrivals.
    decision_latency_s : float, optional
        Simulated seconds every decision takes, whatever ``latency`` says.
    duration_s : float, optional
        Replay only the first ``duration_s`` seconds (at most the scenario's ``duration_s``).
    on_slot : callable, optional
        Called with each slot index once it is scored (progress bars).
    grader : {"request", "slot"}
        The grading reported as ``SimResult.score`` (the other one is in ``gradings``):
        ``"request"`` serves individual requests on the replay's instance timeline
        (``migrator.evaluation.requests``); ``"slot"`` scores each slot with the planner's
        analytic SLO capacity (``workload.goodput``).
    warmup_s : float, optional
        Seconds of traffic before the scored window that the policies may know beforehand
        (their average rates), never scored; default and sources as
        :mod:`migrator.evaluation.warmup` says. On a recorded trace ``seed`` picks the window.
    latency : {"model", "wall"}
        How decisions are charged without ``decision_latency_s`` (a policy with its own
        ``charged_latency_s``, static and the oracle, keeps it): ``"model"`` (default) the
        policy's decision cost, measured once per machine and kept
        (:func:`migrator.evaluation.latency.decision_cost`), so that a replay repeats
        exactly unless a decision stops at its time limit (``SimResult.time_limited_decisions``);
        ``"wall"`` the wall-clock time each decision took (varies with the load).
    """
    grader = check_grader(grader)
    if decision_latency_s is not None and (not isinstance(decision_latency_s, (int, float)) or decision_latency_s < 0):
        raise ConfigError(
            f"decision_latency_s must be a number of seconds >= 0, got {decision_latency_s!r}",
            field="decision_latency_s",
        )
    seed = scenario.seed if seed is None else int(seed)
    latency = check_latency(latency)
    windows = arrival_windows(scenario, seed, _n_slots(scenario, duration_s), warmup_s)
    replay = _Replay(scenario, policy, seed, windows)
    charge = _charge(policy, replay.env, latency, decision_latency_s)
    replay.latency_s = charge["decision_s"]
    policy.reset(replay.env)
    columns: list[tuple[np.ndarray, ...]] = []
    layouts: list[list[str]] = [[] for _ in scenario.gpus]
    for t in range(replay.n_slots):
        columns.append(replay.run_slot(t))
        for g, text in enumerate(replay.layouts):
            layouts[g].append(text)
        if on_slot is not None:
            on_slot(t)
    segments = replay.timeline()
    gradings = {
        "slot": _result(scenario, replay, columns),
        "request": grade_requests(scenario, segments, replay.arrivals, seed=seed),
    }
    return SimResult(
        policy=policy.name, seed=seed, slot_s=scenario.slot_s,
        score=gradings[grader],
        layouts=tuple(tuple(row) for row in layouts),
        decisions=tuple(replay.records),
        gpu_models=tuple(g.model for g in scenario.gpus),
        settings=policy.describe(),
        grader=grader,
        gradings={name: gradings[name] for name in GRADERS},
        segments=segments,
        warmup_s=windows.warmup_s,
        start_slot=windows.start_slot,
        latency=charge,
    )


def _charge(policy: Policy, env: Environment, latency: str, fixed_s: float | None) -> dict[str, Any]:
    """How the replay charges decisions: a fixed figure, the policy's own, the modelled
    decision cost (measured once per machine) or the wall clock (``decision_s`` None)."""
    if fixed_s is not None:
        return {"mode": "fixed", "decision_s": float(fixed_s)}
    own = getattr(policy, "charged_latency_s", None)
    if own is not None:
        return {"mode": "policy", "decision_s": float(own)}
    if latency == "wall":
        return {"mode": "wall", "decision_s": None}
    return {"mode": "model", "decision_s": decision_cost(policy, env), "machine": machine(), "software": software()}


def check_grader(value: Any, field_name: str = "grader") -> str:
    """A grader name: one of :data:`~migrator.evaluation.requests.GRADERS`."""
    if not isinstance(value, str) or value not in GRADERS:
        raise ConfigError(f"{field_name} must be one of {', '.join(GRADERS)}, got {value!r}", field=field_name)
    return value


def _n_slots(scenario: Scenario, duration_s: float | None) -> int:
    if duration_s is None:
        return scenario.n_slots
    ok = isinstance(duration_s, (int, float)) and not isinstance(duration_s, bool)
    if not ok or not 0 < duration_s <= scenario.duration_s:
        raise ConfigError(
            f"duration_s must be a number of seconds in (0, {scenario.duration_s:g}] (the scenario's "
            f"duration_s), got {duration_s!r}",
            field="duration_s",
        )
    return max(1, int(round(duration_s / scenario.slot_s)))


def _result(scenario: Scenario, replay: _Replay, columns: Sequence[tuple[np.ndarray, ...]]) -> ScoreResult:
    n, slots = len(scenario.tenants), len(columns)
    if slots == 0:
        empty = np.zeros((n, 0))
        return ScoreResult(tuple(t.name for t in scenario.tenants), empty, empty, empty, empty, empty,
                           np.zeros((n, 0), dtype=np.bool_))
    within, late, dropped, accuracy, completed = (np.hstack(part) for part in zip(*columns))
    dropped[:, -1] += replay.queue.sum(axis=1)  # still queued at the end: never served
    return ScoreResult(
        tuple(t.name for t in scenario.tenants), replay.arrivals[:, :slots].copy(),
        within, late, dropped, accuracy, completed,
    )
