"""The request-level grader: a replay's instance timeline served request by request.

The simulator (``simulate.py``) decides and applies allocations slot by slot; it records every
instance it runs as a :class:`Segment` (one instance serving one task from the moment a
decision creates or re-assigns it until a later decision removes or re-assigns it). This
module replays those segments with individual requests, independently of the planner's
analytic SLO capacity (``workload.goodput.slo_capacity``):

* **arrivals**: each slot's arrival count of the trace, at times drawn uniformly in the slot
  (a Poisson stream, given its count per slot, is exactly that); a fractional count (a scaled
  trace) is rounded up with the probability of its fraction. Deterministic given the seed.
* **routing**: join-shortest-queue among the tenant's *ready* instances (set-up done: an
  instance in set-up serves nothing and takes no requests); while none is ready, requests
  wait at the tenant's router.
* **batching**: each instance serves first come first served in greedy dynamic batches (when
  free, it takes every waiting request up to its batch cap: the tenant's ``max_batch``, or by
  default the largest profiled batch whose service time is at most half the SLO, see
  :func:`batch_cap`); a batch of ``k`` takes the table's service time on that GPU and
  profile, interpolated at ``k``. An instance whose model does not fit its profile serves
  nothing and takes no requests.
* **timeouts**: a request that has waited ``slo_ms + max_wait_slots x slot_s`` without its
  batch starting is **dropped** (a serving system's queue timeout; ``max_wait_slots`` is the
  scenario's ``planner.max_wait_slots``, the same allowance the slot grader gives).
* **removed instances**: requests queued on an instance that a decision removes (or
  re-assigns), and those of its unfinished batch, are **re-routed** at once, keeping their
  arrival time; they are dropped only by the timeout. Instances still in place when the
  replay ends keep serving until their queues are empty, so the last slot's requests are
  graded by their latency too; requests still at the router then are dropped.
* **SLO and accuracy**: a request served within its tenant's ``slo_ms`` (arrival to batch
  end) is *within*, one served later is *late*. It earns the accuracy of the model version
  its batch starts with: ``accuracy_after`` once the tenant's retraining of the current
  window has finished, ``accuracy_before`` otherwise. Retraining progress is the integral of
  the retraining instances' speeds over their ready time, exact in continuous time (the
  slot grader switches from the slot after completion); windows start at multiples of
  ``window_s`` (rounded to slots, as the slot grader does).

Per tenant and slot of arrival, ``within + late + dropped == arrived`` exactly. What the grader
does not model: the planner's SLO percentile (each request is judged on its own), arrivals
burstier than Poisson within a slot, interference between MIG instances, the time to load
a retrained model, network and pre/post-processing time (docs/goodput.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..geometry.layout import Placement
from ..workload.goodput import INFER, ScoreResult, model_table, tenant_arrays
from ..workload.scenario import Scenario
from ._request_kernels import replay_tenant

__all__ = [
    "GRADERS", "MAX_TENANT_REQUESTS", "Segment", "TenantRequests", "batch_cap", "grade_requests", "replay_requests",
]

#: The gradings ``simulate`` knows: request level (this module) and slot level (the
#: Goodput estimator's ``score_kernel`` on the analytic SLO capacity).
GRADERS = ("request", "slot")

#: Requests of one tenant in one replay that the grader holds in memory at once
#: (about 60 bytes each); more is an error suggesting ``grader="slot"``.
MAX_TENANT_REQUESTS = 20_000_000

_SALT = 0x7265717565737473  # "requests": this grader's own random stream of each seed


@dataclass(frozen=True)
class Segment:
    """One instance serving one task: created (or re-assigned) at ``start_s``, ready to serve
    at ``ready_s`` (after set-up; ``-inf`` for an instance in place before the replay) and in
    place until ``end_s`` (``inf`` when still in place at the end of the replay)."""

    gpu: int
    placement: str
    task: str
    start_s: float
    ready_s: float
    end_s: float


@dataclass(frozen=True)
class TenantRequests:
    """Every request of one tenant, in arrival order. Arrays have shape (n_requests,);
    ``start_s`` and ``done_s`` are NaN and ``segment`` is -1 for a dropped request;
    ``segment`` indexes the segments passed to :func:`replay_requests`; ``completion_s`` holds,
    per retraining window, when its retraining finished (inf: not in the window)."""

    tenant: str
    slo_s: float
    arrival_s: np.ndarray
    start_s: np.ndarray
    done_s: np.ndarray
    segment: np.ndarray
    accuracy: np.ndarray
    completion_s: np.ndarray

    @property
    def latency_s(self) -> np.ndarray:
        return self.done_s - self.arrival_s

    @property
    def served(self) -> np.ndarray:
        return self.segment >= 0

    @property
    def within(self) -> np.ndarray:
        # NaN compares False: a dropped request is never within.
        return self.latency_s <= self.slo_s


def replay_requests(
    scenario: Scenario,
    segments: Sequence[Segment],
    counts: np.ndarray,
    *,
    seed: int,
    models: Mapping[str, Any] | None = None,
) -> tuple[TenantRequests, ...]:
    """Serve the arrivals ``counts`` (shape (n_tenants, n_slots), the replay's per-slot
    trace) with the instances ``segments``; one :class:`TenantRequests` per tenant.

    Retraining progress and completion come from the ``retrain`` segments; see the module's
    docstring for the model.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = len(scenario.tenants)
    if counts.ndim != 2 or counts.shape[0] != n:
        raise ConfigError(f"counts must have shape ({n}, n_slots), got {counts.shape}", field="counts")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ConfigError("counts must be finite and non-negative", field="counts")
    tables = scenario.model_tables() if models is None else models
    slot_s = scenario.slot_s
    before, after, work, window = tenant_arrays(scenario.tenants, slot_s)
    by_tenant: list[list[int]] = [[] for _ in range(n)]
    index = {t.name: i for i, t in enumerate(scenario.tenants)}
    for k, seg in enumerate(segments):
        name, _, kind = seg.task.rpartition(":")
        if name not in index:
            raise ConfigError(f"segment {k}: task {seg.task!r} names no tenant of the scenario", field="task")
        by_tenant[index[name]].append(k)
    out = []
    for i, tenant in enumerate(scenario.tenants):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, i, _SALT])
        arrival = _arrival_times(counts[i], slot_s, rng, tenant.name)
        mine = [segments[k] for k in by_tenant[i]]
        infer = [(k, s) for k, s in zip(by_tenant[i], mine) if s.task.rpartition(":")[2] == INFER]
        serving, arrays = _serving_arrays(scenario, tenant, infer, tables)
        timeout_s = tenant.slo_ms / 1000.0 + scenario.planner.max_wait_slots * slot_s
        start, done, local = replay_tenant(arrival, *arrays, timeout_s)  # type: ignore[call-arg]  # a Numba dispatcher
        segment = np.where(local >= 0, np.asarray(serving, dtype=np.int64)[np.maximum(local, 0)], -1) \
            if serving else np.full(arrival.shape, -1, dtype=np.int64)
        retraining = [s for s in mine if s.task.rpartition(":")[2] != INFER]
        completions = _completions(scenario, i, retraining, tables, counts.shape[1], work[i], window[i])
        accuracy = _accuracy(start, completions, window[i] * slot_s, before[i], after[i])
        out.append(TenantRequests(tenant.name, tenant.slo_ms / 1000.0, arrival, start, done, segment, accuracy,
                                  completions))
    return tuple(out)


def grade_requests(
    scenario: Scenario,
    segments: Sequence[Segment],
    counts: np.ndarray,
    *,
    seed: int,
    models: Mapping[str, Any] | None = None,
) -> ScoreResult:
    """The request-level grading of a replay, per tenant and slot of arrival, as a
    :class:`~migrator.workload.goodput.ScoreResult`.

    ``within``, ``late`` and ``dropped`` count requests by the slot they arrived in;
    ``accuracy[i, t]`` is the mean accuracy of slot ``t``'s requests served within SLO (the
    accuracy in force at the slot's start where none was), so that ``goodput`` is the exact
    sum over requests; ``completed`` marks the slot in which a retraining finished;
    ``arrived`` holds the realised (integer) request counts.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n, slots = len(scenario.tenants), counts.shape[1] if counts.ndim == 2 else 0
    replayed = replay_requests(scenario, segments, counts, seed=seed, models=models)
    slot_s = scenario.slot_s
    before, after, _, window = tenant_arrays(scenario.tenants, slot_s)
    arrived, within, late, dropped, accuracy = (np.zeros((n, slots)) for _ in range(5))
    completed = np.zeros((n, slots), dtype=np.bool_)
    for i, r in enumerate(replayed):
        slot = np.minimum((r.arrival_s / slot_s).astype(np.int64), slots - 1)
        ok = r.within
        arrived[i] = np.bincount(slot, minlength=slots)
        within[i] = np.bincount(slot[ok], minlength=slots)
        late[i] = np.bincount(slot[r.served & ~ok], minlength=slots)
        dropped[i] = arrived[i] - within[i] - late[i]
        earned = np.bincount(slot[ok], weights=r.accuracy[ok], minlength=slots)
        completions = r.completion_s
        starts = np.arange(slots) * slot_s
        in_force = _accuracy(starts, completions, window[i] * slot_s, before[i], after[i])
        accuracy[i] = np.where(within[i] > 0, earned / np.maximum(within[i], 1), in_force)
        for done_at in completions[np.isfinite(completions)]:
            t = int(done_at / slot_s)
            if t < slots:
                completed[i, t] = True
    return ScoreResult(tuple(t.name for t in scenario.tenants), arrived, within, late, dropped, accuracy, completed)


# -- pieces --------------------------------------------------------------------------------------


def _arrival_times(counts: np.ndarray, slot_s: float, rng: np.random.Generator, tenant: str) -> np.ndarray:
    """Sorted arrival times (s): each slot's count, uniform within the slot."""
    whole = np.floor(counts)
    frac = counts - whole
    extra = rng.random(counts.shape[0]) < frac if np.any(frac > 0) else np.zeros(counts.shape[0], dtype=bool)
    per_slot = (whole + extra).astype(np.int64)
    total = int(per_slot.sum())
    if total > MAX_TENANT_REQUESTS:
        raise ConfigError(
            f"tenant {tenant!r} has {total} requests in this replay, more than the request-level grader's "
            f"limit of {MAX_TENANT_REQUESTS}; grade with grader='slot' or replay a shorter duration",
            field="grader",
        )
    slot = np.repeat(np.arange(counts.shape[0], dtype=np.float64), per_slot)
    return np.sort((slot + rng.random(total)) * slot_s)


def batch_cap(batch_sizes: np.ndarray, service_s: np.ndarray, slo_s: float, max_batch: int | None = None) -> int:
    """The largest batch an instance of the grader forms: the tenant's ``max_batch`` where it
    sets one (at most the table's largest), else the largest profiled batch ``b`` with
    ``2 s(b) <= slo`` (a request may wait for the batch in service and then ride a full one),
    and the smallest profiled batch where none is that quick. An operator's rule that needs
    no capacity model; docs/goodput.md compares it with the best cap."""
    sizes = np.asarray(batch_sizes, dtype=np.int64)
    if max_batch is not None:
        return max(1, min(int(max_batch), int(sizes[-1])))
    quick = sizes[2.0 * np.asarray(service_s) <= slo_s]
    return int(quick[-1]) if quick.size else int(sizes[0])


def _serving_arrays(scenario: Scenario, tenant: Any, infer: Sequence[tuple[int, Segment]],
                    tables: Mapping[str, Any]) -> tuple[list[int], tuple[np.ndarray, ...]]:
    """The kernel's segment arrays for a tenant's inference segments that can serve (the
    model fits, ready before the end), sorted by ready time; and their segment indices."""
    table = model_table(tenant.model, tables)
    sizes = np.asarray(table.batch_sizes, dtype=np.int64)
    slo_s = tenant.slo_ms / 1000.0
    rows: list[tuple[float, int, float, np.ndarray, int]] = []
    service_of: dict[tuple[int, str], tuple[np.ndarray, int] | None] = {}
    for k, seg in infer:
        ready = max(seg.ready_s, seg.start_s)
        if not ready < seg.end_s:
            continue
        key = (seg.gpu, seg.placement)
        if key not in service_of:
            gpu = scenario.gpus[seg.gpu].model
            profile = Placement.parse(seg.placement).profile
            if table.fits(gpu, profile):
                service = np.asarray(table.inference_ms(gpu, profile), dtype=np.float64) / 1000.0
                service_of[key] = (service, batch_cap(sizes, service, slo_s, tenant.max_batch))
            else:
                service_of[key] = None
        found = service_of[key]
        if found is not None:
            rows.append((ready, k, seg.end_s, *found))
    rows.sort(key=lambda row: (row[0], row[1]))
    m = sizes.shape[0]
    count = len(rows)
    ready_s = np.array([row[0] for row in rows], dtype=np.float64)
    end_s = np.array([row[2] for row in rows], dtype=np.float64)
    seg_sizes = np.tile(sizes, (count, 1)).reshape(count, m)
    seg_service = np.array([row[3] for row in rows], dtype=np.float64).reshape(count, m)
    n_sizes = np.full(count, m, dtype=np.int64)
    caps = np.array([row[4] for row in rows], dtype=np.int64)
    return [row[1] for row in rows], (ready_s, end_s, seg_sizes, seg_service, n_sizes, caps)


def _completions(scenario: Scenario, tenant: int, retraining: Sequence[Segment], tables: Mapping[str, Any],
                 n_slots: int, work: float, window_slots: int) -> np.ndarray:
    """When each retraining window's work is done (s; inf: not within the window or the
    replay). Shape (n_windows,); empty for a tenant that does not retrain."""
    if window_slots <= 0:
        return np.zeros(0)
    slot_s = scenario.slot_s
    length = window_slots * slot_s
    n_windows = max(1, math.ceil(n_slots / window_slots))
    t = scenario.tenants[tenant]
    table = model_table(t.model, tables)
    times, deltas = [], []  # the summed speed steps up at a piece's ready time and down at its end
    speeds: dict[tuple[int, str], float] = {}
    for seg in retraining:
        key = (seg.gpu, seg.placement)
        if key not in speeds:
            gpu, profile = scenario.gpus[seg.gpu].model, Placement.parse(seg.placement).profile
            speeds[key] = table.retrain_speed(gpu, profile) if table.fits(gpu, profile) else 0.0
        ready = max(seg.ready_s, seg.start_s)
        if speeds[key] > 0 and ready < seg.end_s:
            times += [ready, seg.end_s]
            deltas += [speeds[key], -speeds[key]]
    end_s = n_slots * slot_s
    bounds = np.minimum(np.arange(n_windows + 1) * length, end_s)
    if work <= 0:
        return bounds[:-1].copy()
    out = np.full(n_windows, np.inf)
    if not times:
        return out
    step_at = np.asarray(times)
    order = np.argsort(step_at, kind="stable")
    step_at, level = step_at[order], np.cumsum(np.asarray(deltas)[order])
    inside = step_at[(step_at > 0) & (step_at < end_s)]
    points = np.unique(np.concatenate([inside, bounds]))
    at = np.searchsorted(step_at, points[:-1], side="right") - 1
    speed = np.where(at >= 0, level[np.maximum(at, 0)], 0.0)
    speed = np.where(speed > 1e-12, speed, 0.0)  # sums of +s and -s leave rounding dust
    gained = speed * np.diff(points)
    for w in range(n_windows):
        lo, hi = np.searchsorted(points, [bounds[w], bounds[w + 1]])
        progress = np.cumsum(gained[lo:hi])
        j = int(np.searchsorted(progress, work))  # first interval where progress >= work
        if j < progress.size:
            before_j = progress[j] - gained[lo + j]
            out[w] = points[lo + j] + (work - before_j) / speed[lo + j]
    return out


def _accuracy(at_s: np.ndarray, completions: np.ndarray, window_s: float, before: float, after: float) -> np.ndarray:
    """Accuracy of the model version in force at each time (NaN times: before)."""
    if completions.size == 0 or after == before:
        return np.full(at_s.shape, before)
    finite = np.where(np.isfinite(at_s), at_s, 0.0)
    w = np.minimum((finite / window_s).astype(np.int64), completions.size - 1)
    return np.where(np.isfinite(at_s) & (at_s >= completions[w]), after, before)
