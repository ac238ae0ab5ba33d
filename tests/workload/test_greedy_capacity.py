"""The greedy batching server behind ``slo_capacity``: its queue law and late fraction
against a plain twin (dense least squares; the arrival-time integral cut piece by piece),
the M/D/1 closed form (cap 1), and request-level simulation, which is independent of both."""

from __future__ import annotations

import math

import numpy as np
import pytest

from migrator.workload import _kernels, _reference
from migrator.workload.goodput import CAPACITY_MARGIN, serving_batch_cap, slo_capacity_from_service

# A batched service profile shaped like a mid-size CNN (ms per batch), as in test_goodput.py.
SIZES = np.array([1, 2, 4, 8, 16, 32])
SERVICE_MS = np.array([2.0, 2.4, 3.1, 4.8, 8.0, 14.5])


def _poisson_pmf(mean: float, j: int) -> float:
    return math.exp(j * math.log(mean) - mean - math.lgamma(j + 1)) if mean > 0 else float(j == 0)


def twin_queue_law(lam: float, svc: np.ndarray, n_states: int) -> np.ndarray:
    """Stationary law of the waiting count at batch completions: the same chain written as
    a dense matrix, solved by least squares with the normalisation as an extra equation."""
    cap = len(svc) - 1
    top = n_states - 1
    p = np.zeros((n_states, n_states))
    for x in range(n_states):
        k = 1 if x == 0 else min(x, cap)
        left = 0 if x == 0 else x - k
        mean = lam * svc[k]
        for a in range(top - left):
            p[x, left + a] = _poisson_pmf(mean, a)
        p[x, top] = 1.0 - p[x, :top].sum()
    a = np.vstack([p.T - np.eye(n_states), np.ones(n_states)])
    b = np.zeros(n_states + 1)
    b[-1] = 1.0
    return np.linalg.lstsq(a, b, rcond=None)[0]


def _poisson_cdf(mean: float, j: int) -> float:
    return math.fsum(_poisson_pmf(mean, i) for i in range(j + 1))


def _fits(svc: np.ndarray, budget: float) -> int:
    """Largest batch whose service time is within budget (0 if none), by a linear scan."""
    return max((k for k in range(1, len(svc)) if svc[k] <= budget), default=0)


def twin_batch_miss(left: int, length: float, lam: float, svc: np.ndarray, slo: float, limit: int) -> float:
    """Late fraction among the arrivals of one batch: for each count j of earlier arrivals
    in the batch, cut [0, length] where the largest batch that still fits changes, and
    integrate the Erlang density of the arrival time exactly on each piece (Poisson
    distribution functions); on a piece where a batch of f fits, the request at place p
    is late if f + 1 - p others join it first, Poisson with mean lam (slo - s(f)) (the
    longest wait before its batch starts on that piece: the model's safe side)."""
    cap = len(svc) - 1
    total = 0.0
    j = 0
    while True:
        n = left + j
        ahead, place = divmod(n, cap)
        place += 1
        fixed = length + ahead * svc[cap]  # start(u) = fixed - u
        cuts = sorted({0.0, length, *(min(max(svc[k] - (slo - fixed), 0.0), length) for k in range(1, cap + 1))})
        for a, b in zip(cuts, cuts[1:]):
            if b <= a:
                continue
            weight = (_poisson_cdf(lam * a, j) - _poisson_cdf(lam * b, j)) / lam
            fits = _fits(svc, slo - (fixed - 0.5 * (a + b)))
            if n >= limit or fits < place:
                late = 1.0
            elif fits >= cap:
                late = 0.0
            else:
                late = 1.0 - _poisson_cdf(lam * (slo - svc[fits]), fits - place)
            total += weight * late
        if 1.0 - _poisson_cdf(lam * length, j) < 1e-14:
            return total / length
        j += 1


def twin_miss_fraction(lam: float, svc: np.ndarray, slo: float, limit: int) -> float:
    """Late fraction by PASTA: the time-average over idle spells and batches."""
    cap = len(svc) - 1
    n_states = limit + 3 * cap + 1
    pi = twin_queue_law(lam, svc, n_states)
    late = busy_time = 0.0
    for x, weight in enumerate(pi):
        k = 1 if x == 0 else min(x, cap)
        left = 0 if x == 0 else x - k
        length = svc[k]
        if x == 0:
            busy_time += weight / lam
            late += weight / lam * (svc[1] > slo)
        busy_time += weight * length
        late += weight * length * (1.0 if x == n_states - 1 else twin_batch_miss(left, length, lam, svc, slo, limit))
    return late / busy_time


def _svc(cap: int) -> np.ndarray:
    return _kernels.batch_times(SIZES, SERVICE_MS / 1000, cap)


@pytest.mark.parametrize(("cap", "load"), [(1, 0.5), (4, 0.9), (8, 0.97), (32, 0.99)])
def test_queue_law_equals_its_dense_twin(cap, load):
    svc = _svc(cap)
    lam = load * cap / svc[cap]
    n_states = 6 * cap + 20
    law = _kernels.greedy_queue_law(lam, svc, n_states, _kernels.poisson_reach(lam * svc[cap]))
    np.testing.assert_allclose(law, twin_queue_law(lam, svc, n_states), atol=1e-9)


@pytest.mark.parametrize(("cap", "slo_ms", "load"), [(2, 5.0, 0.7), (4, 8.0, 0.85), (8, 12.0, 0.9), (8, 20.0, 0.97)])
def test_late_fraction_equals_its_twin(cap, slo_ms, load):
    svc = _svc(cap)
    lam = load * cap / svc[cap]
    slo = slo_ms / 1000
    limit = _kernels.greedy_limit(svc, slo)
    twin = twin_miss_fraction(lam, svc, slo, limit)
    assert twin > 1e-4
    assert _kernels.greedy_miss_fraction(lam, svc, slo) == pytest.approx(twin, rel=1e-6)


def _md1_capacity(d: float, slo: float, tail: float) -> float:
    """Rate at which Crommelin's exact M/D/1 wait keeps P(W + d > slo) = tail."""
    lo, hi = 0.0, 1.0 / d
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        late = 1.0 - _reference.md1_wait_cdf_exact(mid, d, slo - d)
        lo, hi = (mid, hi) if late <= tail else (lo, mid)
    return lo


@pytest.mark.parametrize("slo_factor", [1.5, 2.0, 3.7, 6.0])
def test_cap_one_is_the_md1_queue(slo_factor):
    d = SERVICE_MS[0] / 1000
    slo = slo_factor * d
    capacity = _kernels.greedy_capacity_kernel(SIZES, SERVICE_MS / 1000, 1, slo, 0.01)
    assert capacity == pytest.approx(_md1_capacity(d, slo, 0.01), rel=5e-3)


def poisson_arrivals(rate: float, n: int, seed: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))


@pytest.mark.parametrize("slo_ms", [5.0, 10.0, 20.0, 50.0])
def test_late_fraction_matches_request_simulation(slo_ms):
    # At the exact capacity for a 2 % tail, 4e6 simulated requests of the greedy server
    # with the serving cap: near saturation batches and busy periods correlate requests,
    # so the simulated late fraction carries about 10 % relative error (measured over seeds).
    cap = serving_batch_cap(SIZES, SERVICE_MS, slo_ms)
    rate = _kernels.greedy_capacity_kernel(SIZES, SERVICE_MS / 1000, cap, slo_ms / 1000, 0.02)
    latency = _kernels.simulate_dynamic_batches(poisson_arrivals(rate, 4_000_000, 3), SIZES, SERVICE_MS / 1000, cap)
    simulated = float(np.mean(latency > slo_ms / 1000))
    assert simulated == pytest.approx(_kernels.greedy_miss_fraction(rate, _svc(cap), slo_ms / 1000), rel=0.25)


def test_capacity_keeps_the_planning_margin():
    cap = serving_batch_cap(SIZES, SERVICE_MS, 20.0)
    exact = _kernels.greedy_capacity_kernel(SIZES, SERVICE_MS / 1000, cap, 0.02, 0.01)
    assert slo_capacity_from_service(SIZES, SERVICE_MS, 20.0) == pytest.approx(CAPACITY_MARGIN * exact, rel=1e-12)
    assert 0.95 <= CAPACITY_MARGIN < 1.0


def test_depth_limit_only_costs_capacity():
    # Counting arrivals that find more than _LEVELS full batches waiting as late is the
    # safe side: the limited model's late fraction is never below the full-depth one's.
    svc = _svc(8)
    slo = 0.06  # 12 batches of 8 fit: the limit applies
    full_depth = 8 * (int(slo / svc[8]) + 1)
    assert _kernels.greedy_limit(svc, slo) < full_depth
    for load in (0.97, 0.99, 0.995):
        lam = load * 8 / svc[8]
        exact = twin_miss_fraction(lam, svc, slo, full_depth)
        assert _kernels.greedy_miss_fraction(lam, svc, slo) >= exact


@pytest.mark.parametrize("max_batch", [None, 1, 3, 8, 1000])
def test_serving_cap_follows_the_operator_rule(max_batch):
    cap = serving_batch_cap(SIZES, SERVICE_MS, 10.0, max_batch)
    if max_batch is None:
        assert cap == 8  # s(8) = 4.8 ms <= 10 / 2 < s(16)
    else:
        assert cap == min(max_batch, 32)
