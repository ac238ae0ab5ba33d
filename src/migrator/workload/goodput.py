"""The Goodput estimator: SLO capacity of an instance, and Goodput of an allocation.

Goodput = sum over requests served within their SLO of the accuracy of the model version
that served them. Both the planner (its coefficients) and the simulator (its scoring)
use these functions, which run on the Numba kernels of ``_kernels.py``, so that what is
optimised and what is scored cannot drift apart. The model is written out in
docs/goodput.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..geometry.layout import Placement
from . import _kernels
from .tenant import Tenant

__all__ = [
    "Instance",
    "model_table",
    "tenant_arrays",
    "operating_batch",
    "ScoreResult",
    "allocation_rates",
    "score",
    "score_arrays",
    "slo_capacity",
    "slo_capacity_from_service",
    "serving_batch_cap",
]

INFER = "infer"
RETRAIN = "retrain"


# The planner credits each instance with this fraction of the exact capacity of its queue.
# The queue model is exact up to 0.5 % (docs/goodput.md, section 4); what a run measures is
# not: the request-level capacity of one instance, estimated from 10^6 Poisson requests per
# rate, spreads over seeds by up to 0.6 % (0.25 % median; its error shrinks as one over the
# square root of the requests), so 2 % keeps the plan below any such measurement by more
# than three of its standard deviations.
CAPACITY_MARGIN = 0.98

# The exact queue takes work that grows as the cube of the batch cap; larger caps (the
# built-in tables stop at 64) are modelled as this one.
MODELLED_CAP = 128


def serving_batch_cap(
    batch_sizes: Sequence[int] | np.ndarray, service_ms: Sequence[float] | np.ndarray, slo_ms: float,
    max_batch: int | None = None,
) -> int:
    """The largest batch an instance forms: ``max_batch`` where the tenant sets one (at most
    the table's largest), else the largest profiled batch ``b`` with ``2 s(b) <= slo_ms``
    (a request may wait for the batch in service and then ride a full one), else the
    smallest profiled batch. The operator's rule of the request-level grader
    (``evaluation.requests.batch_cap``), which the capacity model serves with."""
    sizes = [int(b) for b in batch_sizes]
    if max_batch is not None:
        return max(1, min(int(max_batch), sizes[-1]))
    quick = [b for b, ms in zip(sizes, service_ms) if 2.0 * float(ms) <= slo_ms]
    return quick[-1] if quick else sizes[0]


def slo_capacity_from_service(
    batch_sizes: Sequence[int], service_ms: Sequence[float], slo_ms: float, percentile: float = 99.0,
    *, max_batch: int | None = None,
) -> float:
    """Highest Poisson arrival rate (req/s) at which a greedy batching server (whenever free,
    it takes every waiting request up to ``serving_batch_cap`` as one batch, which runs for
    ``service_ms`` interpolated at its size) keeps ``percentile`` per cent of requests within
    ``slo_ms``, times the planning margin ``CAPACITY_MARGIN`` (caps above ``MODELLED_CAP``
    are modelled as that cap).

    The queue is solved exactly (``_kernels.greedy_capacity_kernel``); docs/goodput.md has
    the model and its calibration against the request-level grader.
    """
    sizes = np.asarray(batch_sizes, dtype=np.int64)
    service = np.asarray(service_ms, dtype=np.float64)
    if sizes.ndim != 1 or sizes.shape != service.shape or sizes.size == 0:
        raise ConfigError("batch_sizes and service_ms must be 1-D of the same, non-zero length")
    if np.any(sizes < 1) or np.any(np.diff(sizes) <= 0):
        raise ConfigError("batch_sizes must be positive and increasing", field="batch_sizes")
    if np.any(~np.isfinite(service)) or np.any(service <= 0):
        raise ConfigError("service_ms must be positive and finite", field="service_ms")
    if not slo_ms > 0:
        raise ConfigError(f"slo_ms must be positive, got {slo_ms!r}", field="slo_ms")
    if not 50.0 < percentile < 100.0:
        raise ConfigError(f"percentile must be in (50, 100), got {percentile!r}", field="percentile")
    cap = min(serving_batch_cap(sizes, service, slo_ms, max_batch), MODELLED_CAP)
    tail = 1.0 - percentile / 100.0
    exact = _kernels.greedy_capacity_kernel(sizes, service / 1000.0, cap, slo_ms / 1000.0, tail)
    return float(CAPACITY_MARGIN * exact)


def operating_batch(
    batch_sizes: Sequence[int], service_ms: Sequence[float], rate_rps: float, percentile: float = 99.0
) -> int:
    """The fixed batch size with the lowest latency bound at ``rate_rps`` (the fixed-batch
    bound of ``_kernels.batch_latency_bound``). The capacity model itself no longer runs
    fixed batches: its server batches greedily up to ``serving_batch_cap``."""
    return int(
        _kernels.best_batch(
            float(rate_rps),
            np.asarray(batch_sizes, dtype=np.int64),
            np.asarray(service_ms, dtype=np.float64) / 1000.0,
            percentile / 100.0,
        )
    )


def slo_capacity(
    model: str,
    profile: str,
    slo_ms: float,
    *,
    gpu: str = "A100-40GB",
    percentile: float = 99.0,
    max_batch: int | None = None,
    models: Mapping[str, Any] | None = None,
) -> float:
    """SLO capacity (req/s) of one instance of ``profile`` on ``gpu`` serving ``model``.

    Parameters
    ----------
    model : str
        Model key in the model table (``migrator.workload.models``).
    profile : str
        MIG profile name on ``gpu`` (``"3g.20gb"``, ``"MIG 1g.5gb+me"``).
    slo_ms, percentile : float
        ``percentile`` per cent of requests must finish within ``slo_ms``.
    max_batch : int, optional
        Largest batch the server may form; default ``serving_batch_cap``'s rule (the
        largest profiled batch that takes at most half the SLO).
    models : mapping, optional
        Model tables from ``migrator.workload.models.load_models``; the built-in table by default.

    Returns 0.0 when the model does not fit the profile or cannot meet the SLO there.
    """
    table = model_table(model, models)
    if not table.fits(gpu, profile):
        return 0.0
    sizes = tuple(int(b) for b in table.batch_sizes)
    service = tuple(float(ms) for ms in table.inference_ms(gpu, profile))
    if max_batch is not None and max_batch < sizes[0]:
        raise ConfigError(
            f"max_batch {max_batch} is below the smallest profiled batch size {sizes[0]}", field="max_batch"
        )
    return _capacity_cached(sizes, service, float(slo_ms), float(percentile), max_batch)


@functools.lru_cache(maxsize=4096)
def _capacity_cached(
    sizes: tuple[int, ...], service: tuple[float, ...], slo_ms: float, percentile: float, max_batch: int | None
) -> float:
    return slo_capacity_from_service(sizes, service, slo_ms, percentile, max_batch=max_batch)


def model_table(name: str, models: Mapping[str, Any] | None) -> Any:
    """The table of model ``name`` in ``models`` (the built-in ones when None); a clear
    error naming the known models otherwise."""
    from .models import builtin_models

    tables = builtin_models() if models is None else models
    try:
        return tables[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; known models: {', '.join(sorted(tables))}", field="model"
        ) from None


# -- allocations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One GPU instance in one slot: where it is and which task it serves.

    ``task`` is ``(tenant name, "infer" | "retrain")`` or None for an idle instance.
    """

    gpu: int
    placement: Placement
    task: tuple[str, str] | None = None


def _ready_times(
    allocation: Sequence[Iterable[Instance]], slot_s: float, setup_s: float, initial: Iterable[Instance]
) -> list[list[tuple[Instance, float]]]:
    """Each instance of each slot with the time (s) it is ready to serve its task.

    An instance is ready ``setup_s`` after it first appears with its current task
    (created, or re-assigned: model load); one that keeps its task keeps its readiness.
    Instances in ``initial`` were running before slot 0.
    """
    ready: dict[tuple[int, Placement], tuple[Any, float]] = {
        (i.gpu, i.placement): (i.task, -np.inf) for i in initial
    }
    out = []
    for t, instances in enumerate(allocation):
        now: dict[tuple[int, Placement], tuple[Any, float]] = {}
        row = []
        for inst in instances:
            key = (inst.gpu, inst.placement)
            if key in now:
                raise ConfigError(f"slot {t}: instance {inst.placement} on GPU {inst.gpu} appears twice")
            task, at = ready.get(key, (None, np.inf))
            if key not in ready or task != inst.task:
                at = t * slot_s + setup_s
            now[key] = (inst.task, at)
            row.append((inst, at))
        ready = now
        out.append(row)
    return out


def allocation_rates(
    allocation: Sequence[Iterable[Instance]],
    tenants: Sequence[Tenant],
    gpus: Sequence[str],
    *,
    slot_s: float = 1.0,
    setup_s: float = 0.0,
    initial: Iterable[Instance] = (),
    models: Mapping[str, Any] | None = None,
    figures: Callable[[Instance, int], float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per tenant and slot: inference capacity within SLO (req/s) and retraining speed
    (fraction of a full GPU), averaged over each slot, set-up downtime taken off.

    Parameters
    ----------
    allocation : sequence over slots of iterables of Instance
    tenants : the tenants, in the row order of the result
    gpus : GPU model of each GPU index used by the instances (``"A100-40GB"``)
    figures : callable, optional
        ``figures(instance, tenant_index)``: the instance's capacity (req/s) or retraining
        speed, instead of looking them up (the planner passes its own arrays this way).

    Returns
    -------
    capacity_rps, retrain_speed : float64 arrays of shape (n_tenants, n_slots)
    """
    index = {t.name: i for i, t in enumerate(tenants)}
    capacity = np.zeros((len(tenants), len(allocation)))
    retrain = np.zeros_like(capacity)
    for t, row in enumerate(_ready_times(allocation, slot_s, setup_s, initial)):
        for inst, ready_at in row:
            if inst.task is None:
                continue
            name, kind = inst.task
            if name not in index or kind not in (INFER, RETRAIN):
                raise ConfigError(
                    f"slot {t}: task {inst.task!r} must be (tenant, 'infer'|'retrain') "
                    f"with tenant one of {', '.join(index)}",
                    field="task",
                )
            start = max(ready_at, t * slot_s)
            share = min(1.0, max(0.0, ((t + 1) * slot_s - start) / slot_s))
            if figures is not None:
                target = capacity if kind == INFER else retrain
                target[index[name], t] += share * figures(inst, index[name])
                continue
            tenant = tenants[index[name]]
            gpu = gpus[inst.gpu]
            if kind == INFER:
                capacity[index[name], t] += share * slo_capacity(
                    tenant.model, inst.placement.profile, tenant.slo_ms, gpu=gpu,
                    percentile=tenant.percentile, max_batch=tenant.max_batch, models=models,
                )
            else:
                retrain[index[name], t] += share * model_table(tenant.model, models).retrain_speed(
                    gpu, inst.placement.profile
                )
    return capacity, retrain


# -- scoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreResult:
    """Goodput accounting of a replay. Arrays have shape (n_tenants, n_slots).

    ``within + late + dropped == arrived`` per tenant (requests still queued when the
    replay ends are counted as dropped in its last slot).
    """

    tenants: tuple[str, ...]
    arrived: np.ndarray
    within: np.ndarray
    late: np.ndarray
    dropped: np.ndarray
    accuracy: np.ndarray
    completed: np.ndarray

    @property
    def goodput(self) -> float:
        return float((self.within * self.accuracy).sum())

    def goodput_per_tenant(self) -> dict[str, float]:
        per = (self.within * self.accuracy).sum(axis=1)
        return {name: float(v) for name, v in zip(self.tenants, per)}

    @property
    def slo_attainment(self) -> float:
        total = self.arrived.sum()
        return float(self.within.sum() / total) if total > 0 else 1.0

    @property
    def mean_accuracy(self) -> float:
        """Accuracy of the model versions that served requests within SLO, averaged per request."""
        served = self.within.sum()
        return float((self.within * self.accuracy).sum() / served) if served > 0 else 0.0

    def completion_slots(self, tenant: str) -> list[int]:
        """Slots in which a retraining of ``tenant`` finished."""
        return np.flatnonzero(self.completed[self.tenants.index(tenant)]).tolist()


def tenant_arrays(tenants: Sequence[Tenant], slot_s: float) -> tuple[np.ndarray, ...]:
    """Per tenant: accuracy before and after retraining (after = before for a tenant that
    does not retrain), retraining work (full-GPU s) and window (slots, 0 = none)."""
    before = np.array([t.accuracy_before for t in tenants], dtype=np.float64)
    after = np.array([t.accuracy_after if t.retrains else t.accuracy_before for t in tenants])
    work = np.array([t.work_gpu_s for t in tenants], dtype=np.float64)
    window = np.array(
        [0 if t.window_s is None else max(1, int(round(t.window_s / slot_s))) for t in tenants],
        dtype=np.int64,
    )
    return before, after, work, window


def score(
    arrivals: np.ndarray,
    capacity_rps: np.ndarray,
    retrain_speed: np.ndarray,
    tenants: Sequence[Tenant],
    *,
    slot_s: float = 1.0,
    max_wait_slots: int = 1,
    start_slot: int = 0,
    progress_gpu_s: Sequence[float] | None = None,
    done: Sequence[bool] | None = None,
) -> ScoreResult:
    """Goodput of an allocation on realised arrivals.

    Parameters
    ----------
    arrivals : array (n_tenants, n_slots)
        Requests arriving in each slot.
    capacity_rps, retrain_speed : arrays (n_tenants, n_slots)
        From :func:`allocation_rates`: requests per second servable within SLO, and
        retraining speed as a fraction of a full GPU.
    tenants : sequence of Tenant, in row order
    slot_s : float
        Slot length in seconds.
    max_wait_slots : int
        Slots a request may wait in a queue (late) before it is dropped.
    start_slot : int
        Absolute index of the first slot: windows restart at multiples of ``window_s``.
    progress_gpu_s, done : sequences (n_tenants,), optional
        Retraining progress and completion in the window holding ``start_slot``
        (a window that starts at ``start_slot`` starts afresh regardless).
    """
    return score_arrays(
        arrivals, capacity_rps, retrain_speed, tuple(t.name for t in tenants), *tenant_arrays(tenants, slot_s),
        slot_s=slot_s, max_wait_slots=max_wait_slots, start_slot=start_slot, progress_gpu_s=progress_gpu_s, done=done,
    )


def score_arrays(
    arrivals: np.ndarray,
    capacity_rps: np.ndarray,
    retrain_speed: np.ndarray,
    names: Sequence[str],
    before: np.ndarray,
    after: np.ndarray,
    work: np.ndarray,
    window: np.ndarray,
    *,
    slot_s: float = 1.0,
    max_wait_slots: int = 1,
    start_slot: int = 0,
    progress_gpu_s: Sequence[float] | np.ndarray | None = None,
    done: Sequence[bool] | np.ndarray | None = None,
) -> ScoreResult:
    """:func:`score` with the tenants given as :func:`tenant_arrays` (``before``, ``after``,
    ``work``, ``window``) and ``names``: for callers that hold those arrays already, as the
    planner does for thousands of tenants on every candidate plan."""
    n = len(names)
    arrived = _matrix(arrivals, "arrivals", n)
    cap = _matrix(capacity_rps, "capacity_rps", n, arrived.shape) * slot_s
    work_done = _matrix(retrain_speed, "retrain_speed", n, arrived.shape) * slot_s
    if not isinstance(max_wait_slots, int) or max_wait_slots < 0:
        raise ConfigError("max_wait_slots must be an integer >= 0", field="max_wait_slots")
    queue = np.zeros((n, max_wait_slots))
    progress = np.zeros(n) if progress_gpu_s is None else np.array(progress_gpu_s, dtype=np.float64)
    finished = np.zeros(n, dtype=np.bool_) if done is None else np.array(done, dtype=np.bool_)
    if progress.shape != (n,) or finished.shape != (n,):
        raise ConfigError("progress_gpu_s and done must have one entry per tenant", field="progress_gpu_s")
    within, late, dropped, accuracy, completed = _kernels.score_kernel(
        arrived, cap, work_done, before, after, work, window, int(start_slot),
        queue, progress, finished,
    )
    if arrived.shape[1]:
        dropped[:, -1] += queue.sum(axis=1)
    return ScoreResult(tuple(names), arrived, within, late, dropped, accuracy, completed)


def _matrix(value: Any, name: str, rows: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.ascontiguousarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != rows or (shape is not None and array.shape != shape):
        want = shape if shape is not None else f"({rows}, n_slots)"
        raise ConfigError(f"{name} must have shape {want}, got {array.shape}", field=name)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ConfigError(f"{name} must be finite and non-negative", field=name)
    return array
