"""The published GPU-sharing baselines of the MIGRator comparison, as MIG policies.

* ``ekya`` -- Ekya's thief scheduler (Bhardwaj et al., NSDI'22): per retraining window,
  shares of the GPUs move between the retraining and inference jobs of every tenant, one
  quantum at a time, towards the highest estimated mean inference accuracy.
* ``astraea`` -- Astraea's QoS-first deployment (Zhang et al., ASPLOS'22): each tenant's
  inference gets the least resource that meets its latency target at the load it sees now;
  what is left runs best-effort work (here: retraining).
* ``paris`` -- PARIS and ELSA (Kim et al., DAC'22): one heterogeneous partition per GPU,
  chosen before the run for the load, never changed; ELSA's routing of requests across a
  tenant's instances is the simulator's pooled queue.

All three share one realisation step: candidate layouts of each GPU (its maximal layouts,
one per distinct multiset of instance kinds) are given tasks by a policy-specific rule,
GPU after GPU, and the best candidate is kept. How each paper was adapted, and what is lost,
is in docs/baselines.md.
"""

from __future__ import annotations

import collections
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..geometry.layout import Layout
from ..workload.goodput import INFER, RETRAIN
from .policy import Allocation, Environment, Observation, Policy, check_interval

__all__ = [
    "AstraeaPolicy",
    "EkyaPolicy",
    "ParisPolicy",
    "ekya_objective",
    "ekya_tables",
    "fair_shares",
    "thief_schedule",
]

IDLE = -1
_EPS = 1e-9

# -- jobs: every tenant has an inference job (2i) and a retraining job (2i + 1) ----------------


def _infer_job(tenant: int) -> int:
    return 2 * tenant


def _retrain_job(tenant: int) -> int:
    return 2 * tenant + 1


def _task_name(names: Sequence[str], job: int) -> str:
    if job == IDLE:
        return "idle"
    return f"{names[job // 2]}:{INFER if job % 2 == 0 else RETRAIN}"


def _job_of(names: Sequence[str], task: str) -> int:
    """Inverse of :func:`_task_name` (``IDLE`` for idle or unknown tasks)."""
    name, _, kind = task.rpartition(":")
    if name not in names or kind not in (INFER, RETRAIN):
        return IDLE
    tenant = names.index(name)
    return _infer_job(tenant) if kind == INFER else _retrain_job(tenant)


# -- what each GPU can hold --------------------------------------------------------------------


@dataclass(frozen=True)
class _Instance:
    """One instance of a candidate layout and what it delivers to each job
    (``figures[j]``: req/s within SLO for an inference job, fraction of a full GPU for a
    retraining job; 0 where the model does not fit)."""

    placement: str
    compute: int
    figures: tuple[float, ...]

    def kind(self) -> tuple[Any, ...]:
        """Instances of one kind are interchangeable for every job."""
        return (self.compute, self.figures)


@dataclass(frozen=True)
class _Shape:
    """A candidate layout of one GPU, its instances largest first."""

    layout: str
    instances: tuple[_Instance, ...]

    @property
    def compute(self) -> int:
        return sum(i.compute for i in self.instances)


class _Catalog:
    """Per GPU: the instance figures and the candidate layouts worth considering.

    Candidates are the GPU's maximal layouts, one per distinct multiset of instance kinds
    (profiles with equal figures for every job, such as ``1g.5gb`` and ``1g.10gb`` for a
    model that fits both, are one kind), without those whose kinds are a sub-multiset of
    another's: more instances of the same kinds never deliver less.
    """

    def __init__(self, env: Environment) -> None:
        self.names = env.tenant_names
        self._figures: list[dict[str, tuple[float, ...]]] = []
        self._compute: list[dict[str, int]] = []
        self.shapes: list[list[_Shape]] = []
        for g, geometry in enumerate(env.geometries):
            self._compute.append({p.name: p.compute_slices for p in geometry.profiles})
            self._figures.append({p.name: _profile_figures(env, g, p.name) for p in geometry.profiles})
            self.shapes.append(_undominated([self.shape(g, text) for text in geometry.layouts(maximal=True)]))

    def shape(self, gpu: int, layout: str) -> _Shape:
        instances = [
            _Instance(str(p), self._compute[gpu][p.profile], self._figures[gpu][p.profile])
            for p in Layout.parse(layout)
        ]
        # Largest first, interchangeable instances side by side (the searches rely on it).
        instances.sort(key=lambda i: (-i.compute, i.figures, i.placement))
        return _Shape(layout, tuple(instances))

    def candidates(self, gpu: int, current: str) -> list[_Shape]:
        """The GPU's candidates, its current layout first (kept on ties: no reconfiguration)."""
        mine = self.shape(gpu, current)
        kinds = _kinds(mine)
        return [mine] + [s for s in self.shapes[gpu] if _kinds(s) != kinds]

    def best_figure(self, job: int, compute: int) -> float:
        """Mean over GPUs of the best figure of an instance of ``compute`` slices for ``job``."""
        values = []
        for figures, sizes in zip(self._figures, self._compute):
            values.append(max((f[job] for p, f in figures.items() if sizes[p] == compute), default=0.0))
        return float(np.mean(values)) if values else 0.0

    def sizes(self) -> list[int]:
        return sorted({c for sizes in self._compute for c in sizes.values()})


def _profile_figures(env: Environment, gpu: int, profile: str) -> tuple[float, ...]:
    figures = []
    for tenant in range(len(env.tenant_names)):
        figures.append(env.capacity_rps(tenant, gpu, profile))
        figures.append(env.retrain_speed(tenant, gpu, profile))
    return tuple(figures)


def _kinds(shape: _Shape) -> collections.Counter:
    return collections.Counter(i.kind() for i in shape.instances)


def _undominated(shapes: list[_Shape]) -> list[_Shape]:
    """One shape per kind multiset (the one with fewest media-extension profiles), and
    none whose kinds another shape holds and more."""
    by_kinds: dict[tuple[Any, ...], _Shape] = {}
    for shape in shapes:
        key = tuple(sorted(_kinds(shape).items()))
        if key not in by_kinds or shape.layout.count("+") < by_kinds[key].layout.count("+"):
            by_kinds[key] = shape
    counted = [(shape, _kinds(shape)) for shape in by_kinds.values()]
    return [
        shape for shape, kinds in counted
        if not any(other != kinds and not (kinds - other) for _, other in counted)
    ]


# -- realisation: GPU after GPU, the candidate whose task assignment scores best -----------------


@dataclass(frozen=True)
class _Pick:
    """A candidate layout of one GPU with one job (or ``IDLE``) per instance."""

    shape: _Shape
    jobs: tuple[int, ...]


class _Rule(ABC):
    """How one policy gives a candidate layout's instances their tasks.

    A rule carries what the GPUs already chosen cover; :meth:`commit` adds a chosen GPU.
    """

    @abstractmethod
    def __call__(self, shape: _Shape, current: Mapping[str, int]) -> tuple[tuple[Any, ...], tuple[int, ...]]:
        """``(key, jobs)``: the candidate's score (smaller is better) and the job of each instance."""

    @abstractmethod
    def commit(self, shape: _Shape, jobs: Sequence[int]) -> None:
        """Take the chosen candidate's instances into account for the GPUs still to come."""


def _realise(catalog: _Catalog, in_place: Allocation, rule: _Rule) -> list[_Pick]:
    """For each GPU in turn, the candidate whose assignment under ``rule`` has the smallest
    key (the layout ``in_place`` on ties)."""
    picks = []
    for g in range(len(catalog.shapes)):
        current = {p: _job_of(catalog.names, task) for p, task in in_place.tasks(g).items()}
        options = [(rule(shape, current), shape) for shape in catalog.candidates(g, in_place.layouts[g])]
        (_, jobs), shape = min(options, key=lambda option: option[0][0])
        picks.append(_Pick(shape, jobs))
        rule.commit(shape, jobs)
    return picks


def _changes(shape: _Shape, jobs: Sequence[int], current: Mapping[str, int]) -> int:
    """Instances that would have to be created or re-assigned (each pays the set-up time)."""
    return sum(1 for inst, job in zip(shape.instances, jobs) if job != IDLE and current.get(inst.placement) != job)


def _keep_current(shape: _Shape, jobs: Sequence[int], current: Mapping[str, int]) -> list[int]:
    """The same jobs, permuted among interchangeable instances so that as many instances as
    possible keep their current task (an equal allocation then moves nothing)."""
    groups: dict[tuple[Any, ...], list[int]] = collections.defaultdict(list)
    for k, inst in enumerate(shape.instances):
        groups[inst.kind()].append(k)
    out = list(jobs)
    for members in groups.values():
        pool = collections.Counter(out[k] for k in members)
        unplaced = []
        for k in members:
            job = current.get(shape.instances[k].placement)
            if job is not None and pool[job] > 0:
                out[k] = job
                pool[job] -= 1
            else:
                unplaced.append(k)
        for k, job in zip(unplaced, pool.elements()):
            out[k] = job
    return out


def _allocation(catalog: _Catalog, picks: Sequence[_Pick]) -> Allocation:
    layouts = [pick.shape.layout for pick in picks]
    assignments = [
        {inst.placement: _task_name(catalog.names, job) for inst, job in zip(pick.shape.instances, pick.jobs)}
        for pick in picks
    ]
    return Allocation.of(layouts, assignments)


def _positive_int(value: Any, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field_name} must be a positive integer, got {value!r}", field=field_name)
    return value


# -- observed load and retraining state ----------------------------------------------------------


def _recent_rate(env: Environment, observation: Observation, lookback_s: float, how: Callable[..., Any]) -> np.ndarray:
    """Per tenant, ``how`` (mean or max) of the arrival rate over the last ``lookback_s``;
    the average rate known beforehand until a slot has been observed."""
    slots = max(1, int(round(lookback_s / observation.slot_s)))
    seen = observation.arrived[:, -slots:]
    if seen.shape[1] == 0:
        return np.asarray(env.mean_rps, dtype=np.float64).copy()
    return how(seen, axis=1) / observation.slot_s


def _pending(env: Environment, observation: Observation) -> list[bool]:
    """Per tenant: whether its retraining in the current window still has work to do."""
    return [w > 0 for w in _work_left(env, observation)]


def _work_left(env: Environment, observation: Observation) -> list[float]:
    """Per tenant: full-GPU seconds of retraining left in the current window (0 when done
    or never retraining)."""
    return [
        max(0.0, t.work_gpu_s - observation.progress_gpu_s[t.name])
        if t.retrains and not observation.done[t.name] else 0.0
        for t in env.scenario.tenants
    ]


class _Events:
    """Tells a window-based scheduler when to decide again: at its first decision, when any
    tenant's retraining window has started since the last call, and when a retraining has
    finished."""

    def __init__(self, env: Environment) -> None:
        slot_s = env.scenario.slot_s
        self._windows = [
            max(1, int(round(t.window_s / slot_s))) for t in env.scenario.tenants if t.window_s is not None
        ]
        self._seen: tuple[tuple[int, ...], dict[str, bool]] | None = None

    def due(self, observation: Observation) -> bool:
        windows = tuple(observation.slot // w for w in self._windows)
        done = dict(observation.done)
        previous, self._seen = self._seen, (windows, done)
        if previous is None or previous[0] != windows:
            return True
        return any(finished and not previous[1].get(name, False) for name, finished in done.items())


# ============================================================================================
# Ekya
# ============================================================================================


def _slice_figures(catalog: _Catalog, job: int, total: int) -> np.ndarray:
    """Best figure of ``s`` compute slices for ``job``, s = 0..total: the best split of the
    slices into MIG instance sizes (unbounded knapsack over the profiles' sizes)."""
    best = np.zeros(total + 1)
    sizes = [(c, catalog.best_figure(job, c)) for c in catalog.sizes()]
    for s in range(1, total + 1):
        best[s] = max([best[s - 1]] + [best[s - c] + f for c, f in sizes if c <= s])
    return best


def _window_accuracy(before: float, after: float, remaining_s: float, done_in_s: np.ndarray) -> np.ndarray:
    """Mean accuracy over the rest of the window when the retraining lands after ``done_in_s``."""
    landed = np.clip(done_in_s, 0.0, remaining_s)
    return (before * landed + after * (remaining_s - landed)) / remaining_s


def ekya_tables(
    env: Environment, observation: Observation, rates_rps: np.ndarray, total: int, catalog: _Catalog | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ekya's estimate of each tenant's mean inference accuracy over the rest of its window.

    Returns ``tables`` of shape (n_tenants, total + 1, total + 1): ``tables[i, a, b]`` for
    ``a`` compute slices of inference and ``b`` of retraining, and ``pending`` (n_tenants,)
    whether tenant ``i`` has a retraining job. The inference accuracy is the accuracy of the
    serving model times the fraction of the stream the inference keeps up with (Ekya picks
    cheaper inference configurations when short of GPU; here requests beyond the capacity
    are lost); the retraining lifts it to ``accuracy_after`` once ``work_gpu_s`` is done,
    after the set-up time, at the speed of its slices.
    """
    catalog = catalog if catalog is not None else _Catalog(env)
    scenario = env.scenario
    work_left = _work_left(env, observation)
    pending = np.array([w > 0 for w in work_left])
    tables = np.zeros((len(scenario.tenants), total + 1, total + 1))
    for i, tenant in enumerate(scenario.tenants):
        capacity = _slice_figures(catalog, _infer_job(i), total)
        rate = float(rates_rps[i])
        kept_up = np.minimum(1.0, capacity / rate) if rate > 0 else np.ones(total + 1)
        if pending[i]:
            speed = _slice_figures(catalog, _retrain_job(i), total)
            done_in = np.where(speed > 0, scenario.planner.setup_s + work_left[i] / np.maximum(speed, _EPS), np.inf)
            remaining = _window_left_s(tenant.window_s, observation)
            accuracy = _window_accuracy(tenant.accuracy_before, tenant.accuracy_after, remaining, done_in)
        else:
            retrained = tenant.retrains and observation.done[tenant.name]
            accuracy = np.full(total + 1, tenant.accuracy_after if retrained else tenant.accuracy_before)
        tables[i] = kept_up[:, None] * accuracy[None, :]
    return tables, pending


def _window_left_s(window_s: float | None, observation: Observation) -> float:
    if window_s is None:  # no window: the retraining never runs out of time
        return float("inf")
    slots = max(1, int(round(window_s / observation.slot_s)))
    return (slots - observation.slot % slots) * observation.slot_s


def _jobs(pending: Sequence[bool] | np.ndarray) -> list[int]:
    """Ekya's jobs: every tenant's inference, and the retraining of those with work left
    (inference jobs first, so that the fair split's remainder goes to them)."""
    n = len(pending)
    return [_infer_job(i) for i in range(n)] + [_retrain_job(i) for i in range(n) if pending[i]]


def fair_shares(n_jobs: int, total: int) -> np.ndarray:
    """Ekya's starting point: the slices split evenly, the remainder to the first jobs."""
    if n_jobs <= 0:
        raise ConfigError("fair_shares needs at least one job", field="n_jobs")
    shares = np.full(n_jobs, total // n_jobs, dtype=np.int64)
    shares[: total % n_jobs] += 1
    return shares


def ekya_objective(tables: np.ndarray, jobs: Sequence[int], shares: Sequence[int]) -> float:
    """Estimated mean accuracy over tenants (each tenant counts once, whatever its load)."""
    slices = np.zeros((tables.shape[0], 2), dtype=np.int64)
    for job, share in zip(jobs, shares):
        slices[job // 2, job % 2] = share
    return float(tables[np.arange(tables.shape[0]), slices[:, 0], slices[:, 1]].mean())


def thief_schedule(tables: np.ndarray, jobs: Sequence[int], total: int, delta: int = 1) -> tuple[np.ndarray, float]:
    """Ekya's thief scheduler (Algorithm 1 of the NSDI'22 paper) over compute slices.

    From the fair split, every job in turn (the thief) takes ``delta`` slices at a time
    from every other job (the victim) until the victim has none; any split that raises the
    estimated mean accuracy becomes the best, and later thieves start from it.

    Returns the slices of each job (in ``jobs`` order) and the objective they reach.
    """
    shares = fair_shares(len(jobs), total)
    tenant = [job // 2 for job in jobs]
    kind = [job % 2 for job in jobs]
    slices = [[0, 0] for _ in range(tables.shape[0])]
    for k, share in enumerate(shares):
        slices[tenant[k]][kind[k]] = int(share)
    values = [float(tables[i, a, b]) for i, (a, b) in enumerate(slices)]
    best = sum(values)
    for thief in range(len(jobs)):
        for victim in range(len(jobs)):
            if thief == victim:
                continue
            trial = [list(row) for row in slices]
            while trial[tenant[victim]][kind[victim]] >= delta:
                trial[tenant[victim]][kind[victim]] -= delta
                trial[tenant[thief]][kind[thief]] += delta
                changed = {tenant[thief], tenant[victim]}
                value = best + sum(float(tables[i, trial[i][0], trial[i][1]]) - values[i] for i in changed)
                if value > best + _EPS:
                    slices, best = [list(row) for row in trial], value
                    values = [float(tables[i, a, b]) for i, (a, b) in enumerate(slices)]
    out = np.array([slices[t][k] for t, k in zip(tenant, kind)], dtype=np.int64)
    return out, best / tables.shape[0]


class _MatchShares(_Rule):
    """Ekya's MIG realisation: instances, largest first, go to the job whose share they
    fill best (the most of its remaining slices, then the one missing most); once every
    share is filled, to the job whose estimated accuracy gains most from them."""

    def __init__(self, targets: np.ndarray, tables: np.ndarray, jobs: Sequence[int]) -> None:
        self.tables = tables
        self.jobs = list(jobs)
        self.remaining = {job: float(t) for job, t in zip(jobs, targets)}
        self.given = {job: 0 for job in jobs}

    def __call__(self, shape: _Shape, current: Mapping[str, int]) -> tuple[tuple[Any, ...], tuple[int, ...]]:
        jobs, remaining, _ = self._assign(shape)
        jobs = _keep_current(shape, jobs, current)
        mismatch = sum(abs(r) for r in remaining.values())
        return (round(mismatch, 9), _changes(shape, jobs, current)), tuple(jobs)

    def commit(self, shape: _Shape, jobs: Sequence[int]) -> None:
        for inst, job in zip(shape.instances, jobs):
            if job != IDLE:
                self.remaining[job] -= inst.compute
                self.given[job] += inst.compute

    def _assign(self, shape: _Shape) -> tuple[list[int], dict[int, float], dict[int, int]]:
        remaining, given = dict(self.remaining), dict(self.given)
        out = []
        for inst in shape.instances:
            usable = [job for job in self.jobs if inst.figures[job] > 0]
            if not usable:
                out.append(IDLE)
                continue
            if any(remaining[job] > 0 for job in usable):
                job = max(usable, key=lambda j: (min(inst.compute, remaining[j]), remaining[j]))
            else:
                job = max(usable, key=lambda j: self._gain(j, given, inst.compute))
            remaining[job] -= inst.compute
            given[job] += inst.compute
            out.append(job)
        return out, remaining, given

    def _gain(self, job: int, given: Mapping[int, int], extra: int) -> float:
        tenant, top = job // 2, self.tables.shape[1] - 1
        a = given.get(_infer_job(tenant), 0)
        b = given.get(_retrain_job(tenant), 0)
        now = self.tables[tenant, min(a, top), min(b, top)]
        a, b = (a + extra, b) if job % 2 == 0 else (a, b + extra)
        return float(self.tables[tenant, min(a, top), min(b, top)] - now)


class EkyaPolicy(Policy):
    """Ekya's thief scheduler, on MIG instances.

    Bhardwaj, Xia, Ananthanarayanan, Jiang, Shu, Karianakis, Hsieh, Bahl, Stoica: "Ekya:
    Continuous Learning of Video Analytics Models on Edge Compute Servers", USENIX NSDI 2022.

    At the start of every retraining window (and when a retraining finishes, as Ekya gives
    a finished job's resources back), the GPUs' compute slices are split between the
    inference job of every tenant and the retraining job of every tenant with work left:
    from the fair split, the thief scheduler moves ``delta_slices`` (Ekya's quantum; default
    one compute slice, 1/7 of an A100) at a time between every pair of jobs and keeps
    any split that raises the estimated mean accuracy over the window (:func:`ekya_tables`).
    The estimate uses each tenant's observed rate (mean over ``lookback_s``), the instance
    figures and the accuracy after retraining (Ekya's micro-profiler estimates these; here
    they are exact, and the inference figure is the SLO capacity where Ekya would know a
    throughput: both generous to Ekya). The objective is accuracy, every tenant counting
    once whatever its load; neither the SLO nor the number of requests weighs in it.

    Adaptation to MIG: Ekya shares a GPU through fractions (MPS). Here the quantum is one
    compute slice, a share of ``s`` slices is valued as the best split of ``s`` into MIG
    instance sizes, and the chosen shares are realised GPU after GPU with the candidate
    layout whose instances, largest first, fill the shares most closely (:class:`_MatchShares`).
    Between events the allocation is kept.
    """

    name = "ekya"

    def __init__(self, interval_s: float = 1.0, delta_slices: int = 1, lookback_s: float = 10.0) -> None:
        self.interval_s = check_interval(interval_s)
        self.delta_slices = _positive_int(delta_slices, "delta_slices")
        self.lookback_s = check_interval(lookback_s, "lookback_s")

    def reset(self, env: Environment) -> None:
        super().reset(env)
        self.catalog = _Catalog(env)
        self.total_slices = sum(g.compute_slices for g in env.geometries)
        self._events = _Events(env)
        self.last_shares: dict[str, int] = {}

    def decide(self, observation: Observation) -> Allocation | None:
        if not self._events.due(observation):
            return None
        rates = _recent_rate(self.env, observation, self.lookback_s, np.mean)
        tables, pending = ekya_tables(self.env, observation, rates, self.total_slices, self.catalog)
        jobs = _jobs(pending)
        shares, _ = thief_schedule(tables, jobs, self.total_slices, self.delta_slices)
        self.last_shares = {_task_name(self.catalog.names, j): int(s) for j, s in zip(jobs, shares)}
        picks = _realise(self.catalog, observation.allocation, _MatchShares(shares, tables, jobs))
        return _allocation(self.catalog, picks)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "delta_slices": self.delta_slices, "lookback_s": self.lookback_s}


# ============================================================================================
# Covering inference demand with the fewest slices (Astraea and PARIS)
# ============================================================================================


class _Cover(_Rule):
    """Inference instances for every tenant's demand, then the rest to other work.

    On one GPU, the assignment of its instances to tenants' inference is searched exactly
    (depth-first, interchangeable instances taken in one order, bounded by what the
    instances left could still cover) for the smallest key: weighted demand left uncovered,
    then compute slices spent on inference, then instances changed. Instances not needed
    are returned as ``IDLE`` for the caller's leftover rule.
    """

    def __init__(self, demand_rps: np.ndarray, weights: np.ndarray, max_nodes: int) -> None:
        self.deficit = np.asarray(demand_rps, dtype=np.float64).copy()
        self.weights = np.asarray(weights, dtype=np.float64)
        self.max_nodes = max_nodes

    def __call__(self, shape: _Shape, current: Mapping[str, int]) -> tuple[tuple[Any, ...], tuple[int, ...]]:
        uncovered, used, found = self.search(shape)
        jobs = _keep_current(shape, list(found), current)
        return (round(uncovered, 9), used, -shape.compute, _changes(shape, jobs, current)), tuple(jobs)

    def commit(self, shape: _Shape, jobs: Sequence[int]) -> None:
        for inst, job in zip(shape.instances, jobs):
            if job != IDLE:
                self.deficit[job // 2] -= inst.figures[job]

    def search(self, shape: _Shape) -> tuple[float, int, tuple[int, ...]]:
        """(weighted demand left uncovered, compute slices used, job per instance)."""
        return _CoverSearch(shape, list(self.deficit), list(self.weights), self.max_nodes).run()


class _CoverSearch:
    """Depth-first search over the tenant (or none) of each instance of one candidate layout.

    Starts from the greedy assignment, tries the neediest tenants first, takes
    interchangeable instances in one order of tenants only, and cuts a branch when even
    every instance left could not beat the best found. Exact unless it visits more than
    ``max_nodes`` nodes (the default scenario needs under a thousand); then the best found.
    """

    def __init__(self, shape: _Shape, deficit: list[float], weights: list[float], max_nodes: int) -> None:
        n = len(deficit)
        self.max_nodes = max_nodes
        self.shape = shape
        self.n = n
        self.deficit = [float(d) for d in deficit]
        self.weights = [float(w) for w in weights]
        self.caps = [[inst.figures[_infer_job(i)] for i in range(n)] for inst in shape.instances]
        # What the instances from k on could still give each tenant.
        self.suffix = [[0.0] * n for _ in range(len(self.caps) + 1)]
        for k in range(len(self.caps) - 1, -1, -1):
            self.suffix[k] = [a + b for a, b in zip(self.suffix[k + 1], self.caps[k])]
        kinds = [inst.kind() for inst in shape.instances]
        self.same = [k > 0 and kinds[k] == kinds[k - 1] for k in range(len(kinds))]
        self.rank = sorted(range(n), key=lambda i: -self.weights[i] * max(0.0, self.deficit[i]))
        self.chosen = [IDLE] * len(self.caps)
        self.order = [n] * len(self.caps)
        self.nodes = 0
        self.best = self.greedy()

    def uncovered(self, deficit: Sequence[float]) -> float:
        return sum(w * d for w, d in zip(self.weights, deficit) if d > _EPS)

    def greedy(self) -> tuple[float, int, tuple[int, ...]]:
        """Each instance, largest first, to the tenant whose weighted demand it covers most."""
        deficit, used, jobs = list(self.deficit), 0, []
        for k, caps in enumerate(self.caps):
            gain = [w * min(c, d) if d > 0 else 0.0 for w, c, d in zip(self.weights, caps, deficit)]
            i = int(np.argmax(gain)) if gain else 0
            if not gain or gain[i] <= 0:
                jobs.append(IDLE)
                continue
            deficit[i] -= caps[i]
            used += self.shape.instances[k].compute
            jobs.append(_infer_job(i))
        return self.uncovered(deficit), used, tuple(jobs)

    def beaten(self, left: float, used: int) -> bool:
        """Whether (left, used) is no better than the best found (lexicographic)."""
        return left > self.best[0] + _EPS or (left >= self.best[0] - _EPS and used >= self.best[1])

    def run(self) -> tuple[float, int, tuple[int, ...]]:
        self.visit(0, list(self.deficit), 0)
        return self.best

    def visit(self, k: int, deficit: list[float], used: int) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            return
        if self.beaten(self.uncovered([d - s for d, s in zip(deficit, self.suffix[k])]), used):
            return
        if k == len(self.caps) or all(d <= _EPS for d in deficit):
            left = self.uncovered(deficit)
            if not self.beaten(left, used):
                self.best = (left, used, tuple(self.chosen[:k]) + (IDLE,) * (len(self.caps) - k))
            return
        # Interchangeable instances take tenants in one order (idle last): no repeats.
        floor = self.order[k - 1] if self.same[k] else 0
        caps = self.caps[k]
        for r in range(floor, self.n):
            i = self.rank[r]
            if deficit[i] > _EPS and caps[i] > 0:
                self.chosen[k], self.order[k] = _infer_job(i), r
                deficit[i] -= caps[i]
                self.visit(k + 1, deficit, used + self.shape.instances[k].compute)
                deficit[i] += caps[i]
        self.chosen[k], self.order[k] = IDLE, self.n
        self.visit(k + 1, deficit, used)


def _fill_leftover(
    catalog: _Catalog, picks: list[_Pick], work_left: Sequence[float], demand_rps: np.ndarray
) -> list[_Pick]:
    """Instances no inference needs: to retraining, as a batch queue runs jobs -- every one
    to the job with the least work left that can use it (shortest remaining work first, the
    order that finishes jobs soonest on average; these schedulers do not weigh accuracy);
    with no retraining due, to the inference of the tenant with the least headroom
    (capacity over demand), so that nothing idles."""
    capacity = _inference_capacity(catalog, picks)
    queue = sorted((w, i) for i, w in enumerate(work_left) if w > 0)
    leftovers = sorted(
        ((g, k) for g, pick in enumerate(picks) for k, job in enumerate(pick.jobs) if job == IDLE),
        key=lambda gk: -picks[gk[0]].shape.instances[gk[1]].compute,
    )
    jobs = [list(pick.jobs) for pick in picks]
    for g, k in leftovers:
        inst = picks[g].shape.instances[k]
        job = _leftover_job(inst, [i for _, i in queue], capacity, demand_rps)
        if job != IDLE:
            jobs[g][k] = job
            if job % 2 == 0:
                capacity[job // 2] += inst.figures[job]
    return [_Pick(pick.shape, tuple(row)) for pick, row in zip(picks, jobs)]


def _leftover_job(inst: _Instance, queue: Sequence[int], capacity: np.ndarray, demand_rps: np.ndarray) -> int:
    for tenant in queue:
        if inst.figures[_retrain_job(tenant)] > 0:
            return _retrain_job(tenant)
    infer = [i for i in range(len(capacity)) if inst.figures[_infer_job(i)] > 0]
    if not infer:
        return IDLE
    headroom = [capacity[i] / demand_rps[i] if demand_rps[i] > 0 else math.inf for i in infer]
    return _infer_job(infer[int(np.argmin(headroom))])


def _inference_capacity(catalog: _Catalog, picks: Sequence[_Pick]) -> np.ndarray:
    capacity = np.zeros(len(catalog.names))
    for pick in picks:
        for inst, job in zip(pick.shape.instances, pick.jobs):
            if job != IDLE and job % 2 == 0:
                capacity[job // 2] += inst.figures[job]
    return capacity


def _picks_of(catalog: _Catalog, allocation: Allocation) -> list[_Pick]:
    picks = []
    for g, layout in enumerate(allocation.layouts):
        shape = catalog.shape(g, layout)
        tasks = allocation.tasks(g)
        picks.append(_Pick(shape, tuple(_job_of(catalog.names, tasks[i.placement]) for i in shape.instances)))
    return picks


def _cover_key(catalog: _Catalog, picks: Sequence[_Pick], demand_rps: np.ndarray) -> tuple[float, int]:
    """Demand left uncovered (relative to each tenant's) and compute slices serving inference."""
    capacity = _inference_capacity(catalog, picks)
    uncovered = float(np.sum(np.maximum(0.0, demand_rps - capacity) / np.maximum(demand_rps, _EPS)))
    slices = sum(
        inst.compute
        for pick in picks for inst, job in zip(pick.shape.instances, pick.jobs)
        if job != IDLE and job % 2 == 0
    )
    return round(uncovered, 9), slices


# ============================================================================================
# Astraea
# ============================================================================================


class AstraeaPolicy(Policy):
    """Astraea's QoS-aware, resource-efficient deployment, on MIG instances.

    Zhang, Chen, Fu, Zheng, Huang, Leng, Guo: "Astraea: Towards QoS-Aware and
    Resource-Efficient Multi-stage GPU Services", ACM ASPLOS 2022 -- the Astraea of the
    MIGRator comparison (a GPU-sharing system for latency-critical inference, spatial
    sharing through MPS), not the fair training scheduler of the same name (TPDS 2022).

    Astraea gives each latency-critical service the least GPU resource that keeps its
    99th-percentile latency within target at the current load (its predictor tells which),
    maximises the load supported when not every service can be met, and frees the rest,
    re-deploying as the load moves. Adapted here: every ``interval_s`` the demand of each
    tenant is its highest observed rate over ``lookback_s`` times ``1 + headroom``; when a
    tenant's inference capacity falls below its demand, when the set of tenants with
    retraining to do changes, or every ``period_s`` (to release resources the load no
    longer needs), the instances are re-planned: inference first, with the fewest compute
    slices that cover every tenant's demand (uncovered demand weighted relative to each
    tenant's, i.e. the largest uniform load served; searched exactly per GPU, GPU after
    GPU), then the instances left over run retraining, shortest remaining work first (Astraea
    knows nothing of accuracy), or more inference when no retraining is due. The SLO capacity of the
    MIG profiles plays the part of Astraea's latency predictor.
    """

    name = "astraea"

    def __init__(
        self, interval_s: float = 1.0, lookback_s: float = 5.0, headroom: float = 0.1, period_s: float = 20.0,
        max_nodes: int = 2_000,
    ) -> None:
        self.interval_s = check_interval(interval_s)
        self.max_nodes = _positive_int(max_nodes, "max_nodes")
        self.lookback_s = check_interval(lookback_s, "lookback_s")
        if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) or not 0 <= headroom < 10:
            raise ConfigError(f"headroom must be a number in [0, 10), got {headroom!r}", field="headroom")
        self.headroom = float(headroom)
        self.period_s = check_interval(period_s, "period_s")

    def reset(self, env: Environment) -> None:
        super().reset(env)
        self.catalog = _Catalog(env)
        self._planned_at: int | None = None
        self._pending: list[bool] | None = None

    def demand(self, observation: Observation) -> np.ndarray:
        """Req/s each tenant's inference must serve within SLO now (highest recent rate)."""
        return _recent_rate(self.env, observation, self.lookback_s, np.max)

    def decide(self, observation: Observation) -> Allocation | None:
        demand = self.demand(observation)
        pending = _pending(self.env, observation)
        current = _picks_of(self.catalog, observation.allocation)
        if not self._due(observation, demand, pending, current):
            return None
        target = demand * (1.0 + self.headroom)
        picks = self.plan(observation, target)
        retraining_changed = self._pending is None or list(pending) != self._pending
        self._planned_at, self._pending = observation.slot, list(pending)
        # Re-deploy only for a strictly better inference deployment (more demand covered,
        # or as much with fewer slices), or when the retraining to run has changed:
        # re-deploying costs every changed instance its set-up time.
        better = _cover_key(self.catalog, picks, target) < _cover_key(self.catalog, current, target)
        if not (better or retraining_changed):
            return None
        return _allocation(self.catalog, picks)

    def plan(self, observation: Observation, demand_rps: np.ndarray) -> list[_Pick]:
        """QoS first: inference covering ``demand_rps``, then leftovers (see class docstring)."""
        weights = 1.0 / np.maximum(demand_rps, _EPS)
        picks = _realise(self.catalog, observation.allocation, _Cover(demand_rps, weights, self.max_nodes))
        return _fill_leftover(self.catalog, picks, _work_left(self.env, observation), demand_rps)

    def _due(
        self, observation: Observation, demand: np.ndarray, pending: Sequence[bool], current: Sequence[_Pick]
    ) -> bool:
        if self._planned_at is None or list(pending) != self._pending:
            return True
        if (observation.slot - self._planned_at) * observation.slot_s >= self.period_s:
            return True
        return bool(np.any(_inference_capacity(self.catalog, current) < demand - _EPS))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "lookback_s": self.lookback_s, "headroom": self.headroom,
            "period_s": self.period_s, "max_nodes": self.max_nodes,
        }


# ============================================================================================
# PARIS and ELSA
# ============================================================================================


class ParisPolicy(Policy):
    """PARIS's heterogeneous static partition with ELSA's routing, for several tenants.

    Kim, Choi, Rhu: "PARIS and ELSA: An Elastic Scheduling Algorithm for Reconfigurable
    Multi-GPU Inference Servers", ACM/IEEE DAC 2022.

    PARIS partitions the GPUs once, before serving, into instances of several sizes: each
    size serves the batch sizes it runs efficiently (up to its throughput "knee"), and the
    number of instances of each size follows the load that the batch-size distribution
    puts on it. ELSA sends each request to the smallest instance that can meet its SLO.
    Adapted here: an instance's batch size is set by the load it serves (the server batches
    what is queued, up to ``goodput.operating_batch``), so sizing instances to the load's
    batch mix is choosing, per tenant, the set of instances whose SLO capacity covers its
    average rate (``env.mean_rps``, over the warm-up before the scored window) with the fewest compute slices -- heterogeneous where
    the average falls between sizes; searched exactly per GPU, GPU after GPU, uncovered load
    counted in requests (PARIS maximises throughput). The layout never changes. ELSA's
    routing is the simulator's pooled queue per tenant (ideal routing among a tenant's
    instances). PARIS serves inference only; the instances the partition leaves over run
    the tenants' retraining, shortest remaining work first, re-assigned (not re-partitioned) when a window
    starts or a retraining finishes, and serve inference of the tenant with the least
    headroom when no retraining is due.
    """

    name = "paris"

    def __init__(self, interval_s: float = 1.0, max_nodes: int = 50_000) -> None:
        self.interval_s = check_interval(interval_s)
        # Chosen once, before the run: the search may be thorough.
        self.max_nodes = _positive_int(max_nodes, "max_nodes")

    def reset(self, env: Environment) -> None:
        super().reset(env)
        self.catalog = _Catalog(env)
        self._events = _Events(env)
        initial = Allocation.of([g.layout for g in env.scenario.gpus], [{} for _ in env.scenario.gpus])
        self.partition = self.choose_partition(initial)

    def choose_partition(self, in_place: Allocation) -> list[_Pick]:
        """The static partition, chosen before the run: per GPU a layout, with the inference
        instances of each tenant (``IDLE`` for the instances left over)."""
        demand = np.asarray(self.env.mean_rps, dtype=np.float64)
        return _realise(self.catalog, in_place, _Cover(demand, np.ones_like(demand), self.max_nodes))

    def partition_allocation(self) -> Allocation:
        """The static partition as an allocation: inference instances with their tenant,
        the instances left over idle."""
        return _allocation(self.catalog, self.partition)

    def decide(self, observation: Observation) -> Allocation | None:
        if not self._events.due(observation):
            return None
        work_left = _work_left(self.env, observation)
        return _allocation(self.catalog, _fill_leftover(self.catalog, self.partition, work_left, self.env.mean_rps))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_nodes": self.max_nodes}
