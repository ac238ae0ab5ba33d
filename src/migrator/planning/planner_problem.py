"""The planning problem as plain arrays: what both ILP builders (C++ and the Python
reference) and the brute-force check take. docs/model.md defines every field.

Tasks are numbered ``0`` idle, ``1 + 2i`` inference of tenant ``i``, ``2 + 2i`` retraining
of tenant ``i``; :func:`task_name` and :func:`parse_task` convert to the text form
``"idle"``, ``"<tenant>:infer"``, ``"<tenant>:retrain"``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .. import _core
from ..errors import ConfigError, InvalidLayout
from ..geometry.geometry import Geometry
from ..geometry.layout import Placement
from ..workload.goodput import slo_capacity
from ..workload.settings import PlannerConfig
from ..workload.tenant import Tenant

__all__ = [
    "FLOOR_WEIGHT",
    "GpuProblem",
    "PlannerState",
    "Problem",
    "ProfileFigures",
    "RawSolution",
    "Supply",
    "TenantState",
    "alike_gpus",
    "build_problem",
    "core_gpu",
    "default_periods",
    "per_profile",
    "fleet_supply",
    "gpu_supply",
    "inference_tenant",
    "parse_task",
    "planning_placements",
    "retraining_counts",
    "retraining_now",
    "retraining_rates",
    "start_shares",
    "task_name",
]

#: What one request short of a tenant's floor (row 17) costs: ten times the most a request
#: earns (an accuracy is at most 1), so the planner meets floors before it weighs Goodput, and
#: gives up on one only where meeting it would cost more than ten requests each elsewhere.
FLOOR_WEIGHT = 10.0

IDLE = 0
_MEDIA_VARIANT = re.compile(r"^\d+g\.\d+gb[+-]")


def task_name(k: int, tenants: Sequence[str]) -> str:
    if k == IDLE:
        return "idle"
    i, kind = divmod(k - 1, 2)
    return f"{tenants[i]}:{'retrain' if kind else 'infer'}"


def inference_tenant(task: int) -> int:
    """The tenant an inference task serves; -1 for idle, retraining or no instance."""
    return (task - 1) // 2 if task > IDLE and task % 2 == 1 else -1


def parse_task(text: str, tenants: Sequence[str] | Mapping[str, int]) -> int:
    """The task number of ``text``; ``tenants`` the names in order, or each name's index (a
    caller parsing many tasks makes it once: a fleet's build parses one per instance)."""
    if text == "idle":
        return IDLE
    index = tenants if isinstance(tenants, Mapping) else {t: i for i, t in enumerate(tenants)}
    name, _, kind = text.rpartition(":")
    if name not in index or kind not in ("infer", "retrain"):
        raise ConfigError(
            f"task {text!r} must be 'idle' or '<tenant>:infer|retrain' with tenant one of "
            f"{', '.join(index)}",
            field="assignment",
        )
    return 1 + 2 * index[name] + (kind == "retrain")


def default_periods(horizon: int, first: int = 1) -> tuple[int, ...]:
    """Period lengths ``first``, 2 ``first``, 4 ``first``, ... truncated to ``horizon`` slots.

    The first period is the decision; the look-ahead coarsens with distance, since the
    solve time grows with the number of periods. The planner passes the set-up time in
    slots as ``first``, so that an instance created at a period start is ready within that
    period: the downtime rows then stay inside one period, which keeps the relaxation tight
    (docs/model.md has the measurements).
    """
    lengths: list[int] = []
    step = max(1, int(first))
    while sum(lengths) < horizon:
        lengths.append(min(step, horizon - sum(lengths)))
        step *= 2
    return tuple(lengths)


@dataclass(frozen=True)
class TenantState:
    """Retraining state of one tenant at the decision time."""

    progress_gpu_s: float = 0.0
    done: bool = False

    def __post_init__(self) -> None:
        value = self.progress_gpu_s
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0 or value == np.inf:
            raise ConfigError(
                f"progress_gpu_s must be a finite number of GPU-seconds >= 0, got {value!r}", field="progress_gpu_s"
            )
        if not isinstance(self.done, (bool, np.bool_)):
            raise ConfigError(f"done must be true or false, got {self.done!r}", field="done")


@dataclass(frozen=True)
class PlannerState:
    """What the planner starts from: per GPU the layout and each instance's task, per tenant
    the retraining progress, and the absolute slot index (which places the windows)."""

    layouts: tuple[str, ...]
    assignments: tuple[Mapping[str, str], ...]
    tenants: Mapping[str, TenantState] = field(default_factory=dict)
    slot: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.slot, bool) or not isinstance(self.slot, (int, np.integer)) or self.slot < 0:
            raise ConfigError(f"state.slot must be an integer >= 0, got {self.slot!r}", field="state.slot")
        for name, tenant in dict(self.tenants).items():
            if not isinstance(tenant, TenantState):
                raise ConfigError(
                    f"state.tenants[{name!r}] must be a TenantState, got {type(tenant).__name__}",
                    field="state.tenants",
                )


@dataclass(frozen=True)
class GpuProblem:
    """One GPU: candidate placements and what an instance at each earns.

    Arrays of length Q (placements) unless noted: ``memory_mask`` uint64, ``compute`` int,
    ``profile`` int index into ``max_count``, ``engines`` (Q, 4); ``capacity_rps`` and
    ``retrain_speed`` (N, Q); ``current`` task now at each placement, -1 for none.
    """

    name: str
    model: str
    placements: tuple[Placement, ...]
    memory_mask: np.ndarray
    compute: np.ndarray
    profile: np.ndarray
    engines: np.ndarray
    max_count: np.ndarray
    compute_slices: int
    engine_totals: np.ndarray
    capacity_rps: np.ndarray
    retrain_speed: np.ndarray
    current: np.ndarray


@dataclass(frozen=True)
class Problem:
    """Everything one decision needs, as arrays (see docs/model.md)."""

    tenants: tuple[str, ...]
    slot_s: float
    periods: tuple[int, ...]
    setup_s: float
    reconfig_penalty: float
    arrivals: np.ndarray  # (N, T)
    acc_before: np.ndarray  # (N,)
    acc_after: np.ndarray  # (N,)
    work_left: np.ndarray  # (N,)
    done0: np.ndarray  # (N,) bool
    window_slots: np.ndarray  # (N,) int, 0 = never retrains
    window_offset: np.ndarray  # (N,) int
    work_full: np.ndarray  # (N,)
    gpus: tuple[GpuProblem, ...]
    terminal_gain: np.ndarray | None = None  # (N,), None = no terminal value
    slot: int = 0  # absolute index of slot 0 (places the windows, as window_offset does)
    retrain_instances: int = 0  # instances that may retrain one tenant at once (16); 0: any
    min_attainment: np.ndarray | None = None  # (N,) floors (17) as shares of arrivals; None: none
    # (N, T) a split part's view of the requests other GPUs serve: a completion lifts their
    # accuracy too (18). None: the whole problem, where every request is the program's own.
    served_elsewhere: np.ndarray | None = None

    @property
    def horizon(self) -> int:
        return int(sum(self.periods))

    @property
    def n_tasks(self) -> int:
        return 2 * len(self.tenants) + 1

    def elsewhere_credit(self, accuracy: np.ndarray) -> float:
        """What the plan's completions earn on :attr:`served_elsewhere` (18), from the
        estimator's (N, T) accuracy of each slot; 0 for the whole problem. Only slots whose
        accuracy a completion decides carry requests there (a part leaves out the rest)."""
        if self.served_elsewhere is None:
            return 0.0
        lift = np.asarray(accuracy, dtype=np.float64) - np.asarray(self.acc_before, dtype=np.float64)[:, None]
        return float((np.asarray(self.served_elsewhere, dtype=np.float64) * lift).sum())

    def most_elsewhere_credit(self) -> float:
        """The most the completions can earn on :attr:`served_elsewhere` (18): every request
        there from the earliest slot the current window's work could be done by (one job at
        the fastest speed any GPU gives it, ``retrain_instances`` of them where set, after a
        set-up unless it retrains now), and every request of later windows. 0 for the whole
        problem."""
        if self.served_elsewhere is None:
            return 0.0
        credit = np.asarray(self.served_elsewhere, dtype=np.float64)
        gain = np.asarray(self.acc_after, dtype=np.float64) - np.asarray(self.acc_before, dtype=np.float64)
        rate, now = retraining_rates(self, np.ones(len(self.tenants)))[0], retraining_now(self)
        total = 0.0
        for i in np.flatnonzero((credit > 0).any(axis=1)):
            first = self._earliest_completion(int(i), float(rate[i]), bool(now[i]))
            total += float(gain[i]) * float(credit[i, first:].sum())
        return total

    def _earliest_completion(self, i: int, rate: float, retraining_now: bool) -> int:
        """The first slot whose accuracy tenant i's retraining may have lifted: where its
        current window's work could be done at one job's most ``rate`` (after a set-up
        unless it retrains now), or where the next window starts if sooner."""
        next_window = int(self.next_window_start()[i])
        later = next_window if next_window > 0 else self.horizon
        if rate <= 0:
            return later
        seconds = float(self.work_left[i]) / rate + (0.0 if retraining_now else self.setup_s)
        # Done by slot t takes t slots of progress (slots 0..t-1), less the set-up.
        return min(later, max(1, int(np.ceil(seconds / self.slot_s - 1e-9))))

    def next_window_start(self) -> np.ndarray:
        """(N,) slots from slot 0 to the start of each tenant's next retraining window; 0
        where slot 0 starts one or the tenant never retrains."""
        window = np.asarray(self.window_slots, dtype=np.int64)
        offset = np.asarray(self.window_offset, dtype=np.int64) % np.maximum(window, 1)
        return np.where(window > 0, (window - offset) % np.maximum(window, 1), 0)

    def mean_arrivals(self) -> np.ndarray:
        """(N,) each tenant's mean forecast arrivals per slot over the horizon (0 for an
        empty horizon)."""
        if not self.arrivals.shape[1]:
            return np.zeros(len(self.tenants))
        return self.arrivals.mean(axis=1)

    def retraining_gain(self) -> np.ndarray:
        """(N,) what finishing each tenant's retraining adds per slot: its accuracy gain on
        its mean forecast arrivals, and on those other GPUs serve where this is a split part
        (the greedy start and the retraining pass value a retraining by it)."""
        requests = self.mean_arrivals()
        if self.served_elsewhere is not None and self.horizon:
            requests = requests + np.asarray(self.served_elsewhere, dtype=np.float64).mean(axis=1)
        return (self.acc_after - self.acc_before) * requests

    def demand_rps(self) -> np.ndarray:
        """(N,) :meth:`mean_arrivals` per second."""
        return self.mean_arrivals() / self.slot_s

    def floors(self) -> np.ndarray:
        """(N,) requests each tenant is to have served within SLO over the horizon (row 17),
        0 where it has no floor: its share of its own forecast arrivals, so that a part of a
        split gets the share of the part's arrivals."""
        if self.min_attainment is None:
            return np.zeros(len(self.tenants))
        return self.min_attainment * self.arrivals.sum(axis=1)

    def shortfall_cost(self, within: np.ndarray) -> float:
        """What row 17 charges for ``within`` (N, T) requests served within SLO."""
        short = np.maximum(self.floors() - np.asarray(within).sum(axis=1), 0.0)
        return float(FLOOR_WEIGHT * short.sum())

    def period_starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.periods)[:-1]]).astype(np.int64)

    def downtime(self, d: int) -> float:
        """Share of a slot lost ``d`` slots after an instance started."""
        return float(min(1.0, max(0.0, self.setup_s / self.slot_s - d)))


@dataclass(frozen=True)
class Supply:
    """What one GPU following a timeline supplies. ``capacity`` (N, T): requests each
    tenant can have served in each slot (``slot_s`` x SLO capacity x serving share);
    ``progress`` (N, T): retraining progress (full-GPU seconds); ``retraining`` (N, J):
    instances retraining each tenant per period; ``new``: instances created or re-assigned."""

    capacity: np.ndarray
    progress: np.ndarray
    retraining: np.ndarray
    new: int


def retraining_counts(n_tenants: int, tasks: Sequence[np.ndarray]) -> np.ndarray:
    """(N,) entries of ``tasks`` (arrays of any shape: a first period, or whole timelines)
    that retrain each tenant."""
    ids = np.concatenate([np.asarray(t).ravel() for t in tasks]) if len(tasks) else np.zeros(0, dtype=np.int64)
    retraining = ids[(ids > IDLE) & (ids % 2 == 0)].astype(np.int64)
    return np.bincount((retraining - 2) // 2, minlength=n_tenants)


def retraining_rates(problem: Problem, jobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most retraining each tenant could get per second (full-GPU seconds), shape (N,),
    for one of its jobs and for all of its ``jobs`` (its members where tenants are pooled):
    every GPU flat out, and at most ``retrain_instances`` of the fastest instances per job
    where that is set. Alike GPUs (one template) are counted at once."""
    rate, fastest = np.zeros(len(problem.tenants)), np.zeros(len(problem.tenants))
    for members in alike_gpus(problem):
        gpu = problem.gpus[members[0]]
        if not gpu.placements:
            continue
        per_slice = (gpu.retrain_speed / np.maximum(gpu.compute, 1)[None, :]).max(axis=1)
        rate += len(members) * gpu.compute_slices * per_slice
        fastest = np.maximum(fastest, gpu.retrain_speed.max(axis=1))
    if problem.retrain_instances <= 0:
        return rate, rate
    per_job = problem.retrain_instances * fastest
    return np.minimum(rate, per_job), np.minimum(rate, per_job * np.asarray(jobs))


def retraining_now(problem: Problem) -> np.ndarray:
    """Which tenants an instance retrains now (their next retraining needs no set-up)."""
    return retraining_counts(len(problem.tenants), [gpu.current for gpu in problem.gpus]) > 0


def alike_gpus(problem: Problem) -> list[list[int]]:
    """GPUs whose placements and figures are the same arrays (built from one template, see
    :class:`ProfileFigures`): what is worked out for one holds for all, in whole arrays."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for g, gpu in enumerate(problem.gpus):
        key = (id(gpu.capacity_rps), id(gpu.retrain_speed), len(gpu.placements))
        groups.setdefault(key, []).append(g)
    return list(groups.values())


def gpu_supply(problem: Problem, gpu: GpuProblem, tasks: np.ndarray) -> Supply:
    """What ``gpu`` supplies following ``tasks`` (J, Q), by the program's rules: an instance
    is new where its placement held nothing or another task the period before (the current
    instances before period 0), and serves ``1 - downtime(d)`` of a slot ``d`` slots after
    its latest start (docs/model.md, rows 6-7)."""
    return fleet_supply(problem, np.asarray(gpu.current)[None, :], np.asarray(tasks)[None, :, :],
                        gpu.capacity_rps, gpu.retrain_speed)


def start_shares(problem: Problem) -> np.ndarray:
    """(J + 1, T): the share of each slot an instance serves by the period its latest run
    started (row ``s + 1`` for period ``s``; row 0: running since before the plan), set-up
    downtime taken off (docs/model.md, rows 6-7)."""
    since = np.arange(problem.horizon)[None, :] - problem.period_starts()[:, None]
    shares = 1.0 - np.clip(problem.setup_s / problem.slot_s - since, 0.0, 1.0)
    return np.vstack([np.ones((1, problem.horizon)), shares])


def fleet_supply(problem: Problem, current: np.ndarray, tasks: np.ndarray,
                 capacity_rps: np.ndarray, retrain_speed: np.ndarray) -> Supply:
    """What G GPUs with the same placements and figures (``capacity_rps``, ``retrain_speed``,
    (N, Q)) supply together, their current tasks ``current`` (G, Q) and timelines ``tasks``
    (G, J, Q): :func:`gpu_supply`'s figures summed over the GPUs, in whole arrays (the planner
    scores every candidate plan on up to thousands of GPUs)."""
    tasks = np.asarray(tasks, dtype=np.int64)
    n, horizon, periods = len(problem.tenants), problem.horizon, np.asarray(problem.periods)
    before = np.concatenate([np.asarray(current, dtype=np.int64)[:, None, :], tasks[:, :-1]], axis=1)
    new = (tasks >= 0) & (tasks != before)
    # The period of each instance's latest start; -1 for one running since before the plan.
    started = np.maximum.accumulate(np.where(new, np.arange(len(periods))[None, :, None], -1), axis=1)
    period = np.repeat(np.arange(len(periods)), periods)  # (T,) period of each slot
    slot_tasks = tasks[:, period]
    serving = start_shares(problem)[started[:, period] + 1, np.arange(horizon)[None, :, None]]
    busy = slot_tasks > IDLE
    tenant = np.where(busy, (slot_tasks - 1) // 2, 0)
    retrains = busy & ((slot_tasks - 1) % 2 == 1)
    infers = busy & ~retrains
    cells = tenant * horizon + np.arange(horizon)[None, :, None]
    columns = np.broadcast_to(np.arange(tasks.shape[2]), slot_tasks.shape)

    def spread(mask: np.ndarray, figure: np.ndarray) -> np.ndarray:
        weights = problem.slot_s * figure[tenant[mask], columns[mask]] * serving[mask]
        return np.bincount(cells[mask], weights=weights, minlength=n * horizon).reshape(n, horizon)

    period_busy = tasks > IDLE
    period_retrains = period_busy & ((tasks - 1) % 2 == 1)
    who = np.where(period_retrains, (tasks - 1) // 2, 0) * len(periods) + np.arange(len(periods))[None, :, None]
    retraining = np.bincount(who[period_retrains], minlength=n * len(periods)).reshape(n, len(periods))
    return Supply(spread(infers, capacity_rps), spread(retrains, retrain_speed), retraining.astype(np.int64),
                  int(new.sum()))


def per_profile(gpu: GpuProblem, figure: np.ndarray) -> np.ndarray:
    """(N, profiles): the best placement's ``figure`` (N, Q) per profile (an upper bound for
    all of the profile's placements)."""
    out = np.zeros((figure.shape[0], len(gpu.max_count)))
    for q in range(len(gpu.placements)):
        out[:, gpu.profile[q]] = np.maximum(out[:, gpu.profile[q]], figure[:, q])
    return out


def core_gpu(gpu: GpuProblem) -> Any:
    """The GPU as the C++ builder takes it (``migrator._core.GpuInput``)."""
    return _core.GpuInput(
        memory_mask=gpu.memory_mask,
        compute=gpu.compute,
        profile=gpu.profile,
        engines=gpu.engines.reshape(-1),
        max_count=gpu.max_count,
        compute_slices=gpu.compute_slices,
        engine_totals=gpu.engine_totals,
        capacity=gpu.capacity_rps.reshape(-1),
        speed=gpu.retrain_speed.reshape(-1),
        current=gpu.current,
    )


def planning_placements(geometry: Geometry, models_fit: Any = None, keep: Sequence[str] = ()) -> list[Placement]:
    """Placements worth planning with: no media variants, no profile whose compute a
    smaller-memory profile already offers (where ``models_fit(profile)`` says every model
    fits it), plus every placement in ``keep`` (the current layout)."""
    useful: dict[int, Any] = {}  # compute slices -> the profile kept
    for p in sorted(geometry.profiles, key=lambda p: (p.compute_slices, p.memory_slices, p.name)):
        if _MEDIA_VARIANT.match(p.name):
            continue
        if p.compute_slices in useful and (models_fit is None or models_fit(useful[p.compute_slices].name)):
            continue
        useful[p.compute_slices] = p
    chosen = {(p.name, start) for p in useful.values() for start in p.starts}
    chosen |= {(pl.profile, pl.start) for pl in (Placement.parse(k) for k in keep)}
    return [pl for pl in geometry.placements() if (pl.profile, pl.start) in chosen]


class ProfileFigures:
    """What each tenant gets from one profile of one GPU model (SLO capacity, retraining
    speed, whether every tenant's model fits), computed once per decision however many GPUs
    and placements share the profile: the problem's build stays linear in GPUs."""

    def __init__(self, tenants: Sequence[Tenant], models: Mapping[str, Any], headroom: float = 1.0) -> None:
        self.tenants, self.models, self.headroom = tenants, models, float(headroom)
        self._model_names = sorted({t.model for t in tenants})
        self._rates: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._fits: dict[tuple[str, str], bool] = {}
        self._templates: dict[tuple[str, str], GpuProblem] = {}
        self._indices: dict[tuple[str, str, str], int] = {}

    def prepare(self, geometries: Sequence[Geometry]) -> None:
        """Work out every tenant kind's figures on every profile of ``geometries`` now (and
        compile the estimator's kernels on the way), so that no decision's deadline pays
        for it."""
        for geometry in {g.name: g for g in geometries}.values():
            for profile in geometry.profiles:
                self.fits_all(geometry.name, profile.name)
                self.rates(geometry.name, profile.name)

    def template(self, geometry: Geometry, layout: str) -> GpuProblem:
        """A GPU of ``geometry`` holding ``layout``, every instance idle (``_gpu_template``)."""
        key = (geometry.name, layout)
        if key not in self._templates:
            self._templates[key] = _gpu_template(geometry, layout, self)
        return self._templates[key]

    def placement_index(self, geometry: Geometry, layout: str, placement: str) -> int:
        """Where ``placement`` (as a state names it) is among the placements of
        :meth:`template` ``(geometry, layout)``; -1 where it is not one of them. Raises
        InvalidLayout where it names no placement of the geometry."""
        key = (geometry.name, layout, placement)
        if key not in self._indices:
            canonical = str(geometry.normalize(placement))
            names = [str(pl) for pl in self.template(geometry, layout).placements]
            self._indices[key] = names.index(canonical) if canonical in names else -1
        return self._indices[key]

    def fits_all(self, gpu_model: str, profile: str) -> bool:
        key = (gpu_model, profile)
        if key not in self._fits:
            self._fits[key] = all(self.models[m].fits(gpu_model, profile) for m in self._model_names)
        return self._fits[key]

    def rates(self, gpu_model: str, profile: str) -> tuple[np.ndarray, np.ndarray]:
        """Every tenant's SLO capacity and retraining speed, shape (N,) each: worked out once
        per kind of tenant (model, SLO, percentile, batch cap, retraining), since fleets of
        thousands of tenants run a handful of kinds."""
        key = (gpu_model, profile)
        if key not in self._rates:
            kinds: dict[tuple[Any, ...], tuple[float, float]] = {}
            capacity, speed = np.zeros(len(self.tenants)), np.zeros(len(self.tenants))
            for i, t in enumerate(self.tenants):
                kind = (t.model, t.slo_ms, t.percentile, t.max_batch, t.retrains)
                if kind not in kinds:
                    kinds[kind] = self._tenant_rates(t, gpu_model, profile)
                capacity[i], speed[i] = kinds[kind]
            self._rates[key] = (capacity, speed)
        return self._rates[key]

    def _tenant_rates(self, t: Tenant, gpu_model: str, profile: str) -> tuple[float, float]:
        model = self.models[t.model]
        if not model.fits(gpu_model, profile):
            return 0.0, 0.0
        capacity = slo_capacity(t.model, profile, t.slo_ms, gpu=gpu_model, percentile=t.percentile,
                                max_batch=t.max_batch, models=self.models)
        # The planner fills instances to `headroom` of their capacity (PlannerConfig.load_headroom).
        return self.headroom * float(capacity), float(model.retrain_speed(gpu_model, profile)) if t.retrains else 0.0


def _gpu_problem(
    index: int, geometry: Geometry, layout: str, assignment: Mapping[str, str],
    tenant_index: Mapping[str, int], figures: ProfileFigures,
) -> GpuProblem:
    template = figures.template(geometry, layout)
    current = np.where(template.current >= 0, IDLE, -1)
    for placement, task in assignment.items():
        try:
            q = figures.placement_index(geometry, layout, placement)
        except InvalidLayout as exc:
            raise ConfigError(f"state.assignments[{index}]: {exc}", field="state.assignments") from exc
        if q < 0 or current[q] < 0:
            raise ConfigError(
                f"state.assignments[{index}]: {placement} is not in the GPU's layout {layout!r}",
                field="state.assignments",
            )
        current[q] = parse_task(task, tenant_index)
    return dataclasses.replace(template, name=f"gpu{index}", current=current)


def _gpu_template(geometry: Geometry, layout: str, figures: ProfileFigures) -> GpuProblem:
    """What a GPU of ``geometry`` holding ``layout`` is in the program, every instance idle:
    the same for all such GPUs, so :class:`ProfileFigures` builds it once per decision."""
    current_layout = geometry.validate(layout)
    keep = [str(p) for p in current_layout]
    placements = planning_placements(geometry, lambda profile: figures.fits_all(geometry.name, profile), keep)
    profiles = sorted({p.profile for p in placements})
    by_name = {p.name: p for p in geometry.profiles}
    capacity = np.zeros((len(figures.tenants), len(placements)))
    speed = np.zeros_like(capacity)
    for q, pl in enumerate(placements):
        capacity[:, q], speed[:, q] = figures.rates(geometry.name, pl.profile)
    kept = set(keep)
    # Shared by every GPU built from the template: read-only, so that no one changes them all.
    for figure in (capacity, speed):
        figure.setflags(write=False)
    return GpuProblem(
        name="",
        model=geometry.name,
        placements=tuple(placements),
        memory_mask=np.array([_mask(geometry, pl) for pl in placements], dtype=np.uint64),
        compute=np.array([by_name[pl.profile].compute_slices for pl in placements], dtype=np.int64),
        profile=np.array([profiles.index(pl.profile) for pl in placements], dtype=np.int64),
        engines=np.array([by_name[pl.profile].engines.as_tuple() for pl in placements], dtype=np.int64).reshape(-1, 4),
        max_count=np.array([by_name[p].max_count for p in profiles], dtype=np.int64),
        compute_slices=geometry.compute_slices,
        engine_totals=np.array(geometry.engines.as_tuple(), dtype=np.int64),
        capacity_rps=capacity,
        retrain_speed=speed,
        current=np.array([IDLE if str(pl) in kept else -1 for pl in placements], dtype=np.int64),
    )


def _mask(geometry: Geometry, placement: Placement) -> int:
    size = geometry.profile(placement.profile).memory_slices
    return ((1 << size) - 1) << placement.start


def build_problem(
    geometries: Sequence[Geometry],
    tenants: Sequence[Tenant],
    arrivals: np.ndarray,
    state: PlannerState,
    config: PlannerConfig,
    *,
    slot_s: float,
    models: Mapping[str, Any],
    periods: Sequence[int] | None = None,
    figures: ProfileFigures | None = None,
) -> Problem:
    """Assemble a :class:`Problem` from scenario objects (see :class:`migrator.Planner`);
    ``figures``, the tenants' figures per GPU model and profile, where a caller keeps them
    from one decision to the next (they depend on the tenants and model tables only)."""
    names = tuple(t.name for t in tenants)
    arrivals = np.asarray(arrivals, dtype=np.float64)
    setup_slots = int(np.ceil(config.setup_s / slot_s - 1e-9)) if config.setup_s > 0 else 1
    lengths = tuple(periods) if periods is not None else default_periods(config.horizon, setup_slots)
    if arrivals.shape != (len(tenants), sum(lengths)):
        raise ConfigError(
            f"forecast must have shape ({len(tenants)}, {sum(lengths)}) (tenants x horizon), "
            f"got {arrivals.shape}",
            field="forecast",
        )
    if len(state.layouts) != len(geometries) or len(state.assignments) != len(geometries):
        raise ConfigError(f"state must give a layout and an assignment for each of the {len(geometries)} GPUs", field="state")
    unknown = sorted(set(state.tenants) - set(names))
    if unknown:
        # A misspelt tenant would silently restart its retraining from nothing.
        raise ConfigError(
            f"state.tenants has no tenant {unknown[0]!r}; tenants are {', '.join(names)}", field="state.tenants"
        )
    window = np.array([0 if t.window_s is None else max(1, round(t.window_s / slot_s)) for t in tenants], dtype=np.int64)
    offset = np.array([state.slot % w if w else 0 for w in window], dtype=np.int64)
    # A window that starts at the decision slot starts afresh, whatever the state says.
    fresh = offset == 0
    progress = np.array([0.0 if f else state.tenants.get(n, TenantState()).progress_gpu_s for n, f in zip(names, fresh)])
    done = np.array([False if f else state.tenants.get(n, TenantState()).done for n, f in zip(names, fresh)], dtype=bool)
    work_full = np.array([t.work_gpu_s if t.retrains else 0.0 for t in tenants])
    acc_before = np.array([t.accuracy_before for t in tenants])
    acc_after = np.array([t.accuracy_after if t.retrains else t.accuracy_before for t in tenants])
    terminal = (
        config.terminal_weight * _terminal_gain(arrivals, acc_after - acc_before, window, offset, done, sum(lengths))
        if config.terminal_value else None
    )
    figures = figures if figures is not None else ProfileFigures(tenants, models, config.load_headroom)
    tenant_index = {name: i for i, name in enumerate(names)}
    gpus = tuple(
        _gpu_problem(g, geometry, state.layouts[g], state.assignments[g], tenant_index, figures)
        for g, geometry in enumerate(geometries)
    )
    return Problem(
        tenants=names,
        slot_s=float(slot_s),
        periods=lengths,
        setup_s=float(config.setup_s),
        reconfig_penalty=float(config.reconfig_penalty),
        arrivals=arrivals,
        acc_before=acc_before,
        acc_after=acc_after,
        work_left=np.maximum(work_full - progress, 0.0),
        # Done only when the state says so: with no work left the retraining still
        # finishes in the next slot, as the estimator has it.
        done0=done & (window > 0),
        window_slots=window,
        window_offset=offset,
        work_full=work_full,
        gpus=gpus,
        terminal_gain=terminal,
        slot=int(state.slot),
        retrain_instances=int(config.retrain_instances),
        min_attainment=_floors(tenants),
    )


def _floors(tenants: Sequence[Tenant]) -> np.ndarray | None:
    shares = np.array([t.min_slo_attainment or 0.0 for t in tenants])
    return shares if shares.any() else None


def _terminal_gain(
    arrivals: np.ndarray, gain: np.ndarray, window: np.ndarray, offset: np.ndarray,
    done: np.ndarray, horizon: int,
) -> np.ndarray:
    """Accuracy gain x mean forecast arrivals per slot x slots of the window that holds the
    horizon's last slot left after the horizon: what finishing that window's retraining is
    worth beyond the horizon (0 where the window ends with the horizon, or is already done)."""
    out = np.zeros(len(gain))
    rate = arrivals.mean(axis=1) if arrivals.shape[1] else np.zeros(len(gain))
    for i in range(len(gain)):
        if window[i] <= 0 or gain[i] <= 0:
            continue
        left = (window[i] - (offset[i] + horizon) % window[i]) % window[i]
        # `done` is already False for a window that starts at slot 0.
        if left == 0 or (offset[i] + horizon <= window[i] and done[i]):
            continue
        out[i] = gain[i] * rate[i] * left
    return out


@dataclass(frozen=True)
class RawSolution:
    """A solved :class:`Problem`, before decoding into a plan.

    ``tasks[g]`` is an int array (J, Q): the task of the instance at each placement of GPU
    ``g`` in each period, -1 where there is none. ``objective`` is the solver's value (Goodput
    minus the reconfiguration penalty), ``bound`` its best bound, ``status`` HiGHS's model
    status text, ``build_s`` and ``solve_s`` the seconds spent. ``kept_gpus``: GPUs for which
    the solver found no plan in time; they keep their current layout and tasks (in the
    planner's split, the starting plan's), and the retraining pass leaves them as they are.
    """

    tasks: tuple[np.ndarray, ...]
    objective: float
    bound: float
    status: str
    mip_gap: float
    build_s: float
    solve_s: float
    n_columns: int = 0
    n_rows: int = 0
    n_integers: int = 0
    kept_gpus: tuple[int, ...] = ()
    scored: bool = False  # ``objective`` is the Goodput estimator's own value of ``tasks``
