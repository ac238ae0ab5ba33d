"""Numba kernels shared by the Goodput estimator (goodput.py) and the simulator.

Arrays and scalars in, arrays out; no Python objects. Each kernel has a plain
Python/numpy twin in ``_reference.py`` and the tests hold one against the other.

Queueing model of one MIG instance serving one model (see docs/goodput.md):
requests arrive as a Poisson stream of rate ``lam``; the server runs batches of ``b``
requests, each taking the profiled service time ``d`` seconds. A request's latency is
the time its batch takes to fill (formation), the wait of the batch for the server,
and the service. Every b-th arrival releases a batch, so batches arrive with
Erlang(b, lam) gaps into a single deterministic server (E_b/D/1). Its waiting-time tail
is bounded by Kingman's exponential bound exp(-theta t); for b = 1 (M/D/1) the exact
distribution (Crommelin) is used, with its Cramér-Lundberg asymptote C exp(-theta t)
far in the tail.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._numba_cache import numba_cache

# cache=True unless the cache folder (outside the installed package) cannot be written.
_jit = njit(cache=numba_cache(), nogil=True, error_model="numpy")

_BISECT_STEPS = 200


@_jit
def md1_decay(lam: float, d: float) -> float:
    """Decay rate theta of the M/D/1 waiting-time tail: lam (e^{theta d} - 1) = theta.

    Solved in x = theta d, where rho (e^x - 1) = x has one positive root for rho < 1.
    """
    rho = lam * d
    lo = 0.0
    hi = 2.0 * (1.0 - rho) / rho + 1e-9
    while rho * (math.exp(hi) - 1.0) - hi <= 0.0:
        hi *= 2.0
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if rho * (math.exp(mid) - 1.0) - mid <= 0.0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi) / d


# Crommelin's exact series alternates in sign; up to this many service times it keeps
# float64 accuracy (terms stay below e^_EXACT_SPAN), beyond it the exponential tail is
# accurate to better than 1e-6 in probability.
_EXACT_SPAN = 10


@_jit
def md1_wait_cdf(lam: float, d: float, t: float) -> float:
    """Exact M/D/1 P(W <= t) for t <= _EXACT_SPAN d (Crommelin, 1932):
    (1 - rho) sum_{k=0}^{floor(t/d)} (lam (k d - t))^k / k! e^{-lam (k d - t)}."""
    rho = lam * d
    total = 0.0
    factorial = 1.0
    for k in range(int(math.floor(t / d)) + 1):
        if k > 0:
            factorial *= k
        u = lam * (k * d - t)
        total += u**k / factorial * math.exp(-u)
    return (1.0 - rho) * total


@_jit
def md1_wait_quantile(lam: float, d: float, eps: float) -> float:
    """Waiting time w with P(W > w) = eps in M/D/1 (arrival rate lam, service d).

    Exact (Crommelin's distribution, bisection) when w is within _EXACT_SPAN service
    times; beyond, the exponential tail P(W > t) = C e^{-theta t} with
    C = (1 - rho) / (rho e^{theta d} - 1). Infinite when rho >= 1.
    """
    if lam <= 0.0:
        return 0.0
    rho = lam * d
    if rho >= 1.0:
        return np.inf
    if rho <= eps:
        return 0.0
    span = _EXACT_SPAN * d
    if md1_wait_cdf(lam, d, span) >= 1.0 - eps:
        lo = 0.0
        hi = span
        for _ in range(_BISECT_STEPS):
            mid = 0.5 * (lo + hi)
            if md1_wait_cdf(lam, d, mid) >= 1.0 - eps:
                hi = mid
            else:
                lo = mid
            if hi - lo <= 1e-12 * d:
                break
        return hi
    theta = md1_decay(lam, d)
    c = (1.0 - rho) / (rho * math.exp(theta * d) - 1.0)
    return max(span, math.log(c / eps) / theta)


@_jit
def mm1_wait_quantile(lam: float, mu: float, eps: float) -> float:
    """Exact M/M/1 waiting-time quantile: P(W > t) = rho e^{-(mu - lam) t}."""
    if lam <= 0.0:
        return 0.0
    rho = lam / mu
    if rho >= 1.0:
        return np.inf
    if rho <= eps:
        return 0.0
    return math.log(rho / eps) / (mu - lam)


@_jit
def formation_tail(lam: float, b: int, x: float) -> float:
    """P(F > x) for the time a request waits for its batch of b to fill.

    The k-th request of a batch waits for b - k more Poisson arrivals; a request is
    equally likely to be any k, so F mixes Erlang(j, lam) for j = 0..b-1, and
    P(Erlang(j) > x) = P(Poisson(lam x) < j), a sum of positive terms.
    """
    if b <= 1:
        return 0.0
    mean = lam * x
    term = math.exp(-mean)  # P(Poisson = 0)
    cdf = 0.0
    total = 0.0
    for j in range(1, b):
        cdf += term  # P(Poisson <= j - 1)
        total += cdf
        term *= mean / j
    return total / b


@_jit
def formation_quantile(lam: float, b: int, eps: float) -> float:
    """Smallest x with P(F > x) <= eps."""
    if b <= 1 or formation_tail(lam, b, 0.0) <= eps:
        return 0.0
    hi = b / lam
    while formation_tail(lam, b, hi) > eps:
        hi *= 2.0
    lo = 0.0
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if formation_tail(lam, b, mid) > eps:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return hi


@_jit
def ebd1_decay(lam: float, b: int, d: float) -> float:
    """Kingman's exponent for E_b/D/1: the theta > 0 with E[e^{theta (d - A)}] = 1,
    A ~ Erlang(b, lam), i.e. theta d = b log(1 + theta / lam)."""
    lo = 0.0
    hi = lam
    while b * math.log1p(hi / lam) - hi * d > 0.0:
        hi *= 2.0
    # g(theta) = b log(1 + theta/lam) - theta d is > 0 just above 0 when b > lam d.
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if b * math.log1p(mid / lam) - mid * d > 0.0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


@_jit
def ebd1_wait_quantile(lam: float, b: int, d: float, eps: float) -> float:
    """Upper bound on the eps-tail waiting time of batches in E_b/D/1 (Kingman)."""
    if lam * d >= b:
        return np.inf
    return math.log(1.0 / eps) / ebd1_decay(lam, b, d)


_SPLITS = 9


@_jit
def batch_latency_bound(lam: float, b: int, d: float, percentile: float) -> float:
    """Latency (s) that at least a fraction `percentile` of requests meet with batches of b.

    The tail 1 - p is shared between formation and queueing (union bound), trying a
    few splits and keeping the best; with b = 1 there is no formation wait.
    """
    eps = 1.0 - percentile
    if lam * d / b >= 1.0:
        return np.inf
    if b == 1:
        return md1_wait_quantile(lam, d, eps) + d
    best = np.inf
    for k in range(1, _SPLITS + 1):
        share = eps * k / (_SPLITS + 1)
        wait = formation_quantile(lam, b, share) + ebd1_wait_quantile(lam, b, d, eps - share)
        best = min(best, wait)
    return best + d


@_jit
def _best_latency(lam: float, batch_sizes: np.ndarray, service_s: np.ndarray, percentile: float) -> float:
    best = np.inf
    for k in range(batch_sizes.shape[0]):
        best = min(best, batch_latency_bound(lam, batch_sizes[k], service_s[k], percentile))
    return best


@_jit
def best_batch(lam: float, batch_sizes: np.ndarray, service_s: np.ndarray, percentile: float) -> int:
    """The batch size with the lowest latency bound at rate lam."""
    best = np.inf
    choice = batch_sizes[0]
    for k in range(batch_sizes.shape[0]):
        latency = batch_latency_bound(lam, batch_sizes[k], service_s[k], percentile)
        if latency < best:
            best = latency
            choice = batch_sizes[k]
    return choice


@_jit
def slo_capacity_kernel(
    batch_sizes: np.ndarray, service_s: np.ndarray, slo_s: float, percentile: float
) -> float:
    """Highest arrival rate (req/s) at which some batch size meets the SLO percentile.

    batch_sizes: int64 (k,), service_s: float64 (k,) time of one batch of each size.
    A fixed-size policy can fail at a moderate rate and succeed at a higher one (batches
    fill faster); a server that batches whatever is queued adapts its batch size to the
    load and its latency only grows with the rate, so the highest feasible rate is its
    capacity (checked by request-level simulation in the tests). The scan runs down a
    geometric grid from the largest throughput and bisects the last step.
    """
    peak = 0.0
    for k in range(batch_sizes.shape[0]):
        peak = max(peak, batch_sizes[k] / service_s[k])
    floor = peak * 1e-9
    if peak <= 0.0 or _best_latency(floor, batch_sizes, service_s, percentile) > slo_s:
        return 0.0
    n = 512
    low = peak * 1e-6
    ratio = (1.0 - 1e-9) / 1e-6
    lo = floor
    hi = low * ratio ** (1 / n)
    for i in range(n, 0, -1):
        lam = low * ratio ** (i / n)
        if _best_latency(lam, batch_sizes, service_s, percentile) <= slo_s:
            if i == n:
                return lam
            lo = lam
            hi = low * ratio ** ((i + 1) / n)
            break
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _best_latency(mid, batch_sizes, service_s, percentile) <= slo_s:
            lo = mid
        else:
            hi = mid
    return lo


@_jit
def simulate_fixed_batches(arrivals_s: np.ndarray, b: int, d: float) -> np.ndarray:
    """Request-level replay of the model: consecutive groups of b arrivals form a batch,
    served first come first served in d seconds. Returns each request's latency (s)."""
    n = arrivals_s.shape[0] - arrivals_s.shape[0] % b
    latency = np.empty(n)
    free_at = 0.0
    for first in range(0, n, b):
        ready = arrivals_s[first + b - 1]
        done = max(ready, free_at) + d
        free_at = done
        for i in range(first, first + b):
            latency[i] = done - arrivals_s[i]
    return latency


@_jit
def service_time(batch_sizes: np.ndarray, service_s: np.ndarray, k: int) -> float:
    """Time of a batch of k, interpolated linearly between profiled batch sizes."""
    if k <= batch_sizes[0]:
        return service_s[0]
    for j in range(1, batch_sizes.shape[0]):
        if k <= batch_sizes[j]:
            w = (k - batch_sizes[j - 1]) / (batch_sizes[j] - batch_sizes[j - 1])
            return service_s[j - 1] + w * (service_s[j] - service_s[j - 1])
    return service_s[batch_sizes.shape[0] - 1]


@_jit
def simulate_dynamic_batches(
    arrivals_s: np.ndarray, batch_sizes: np.ndarray, service_s: np.ndarray, max_batch: int
) -> np.ndarray:
    """Request-level replay of a greedy batching server: whenever it is free it takes
    every queued request up to max_batch, and a batch of k runs for the service time
    interpolated at k. Returns each request's latency (s)."""
    n = arrivals_s.shape[0]
    latency = np.empty(n)
    free_at = 0.0
    i = 0
    while i < n:
        start = max(free_at, arrivals_s[i])
        j = i
        while j < n and j - i < max_batch and arrivals_s[j] <= start:
            j += 1
        done = start + service_time(batch_sizes, service_s, j - i)
        for r in range(i, j):
            latency[r] = done - arrivals_s[r]
        free_at = done
        i = j
    return latency


@_jit
def score_kernel(
    arrivals: np.ndarray,
    capacity: np.ndarray,
    retrain: np.ndarray,
    acc_before: np.ndarray,
    acc_after: np.ndarray,
    work: np.ndarray,
    window_slots: np.ndarray,
    t0: int,
    queue: np.ndarray,
    progress: np.ndarray,
    done: np.ndarray,
):
    """Goodput accounting per tenant and slot, queues carried between slots.

    arrivals, capacity, retrain: float64 (n, T) requests arrived, requests servable within
    SLO, and retraining work done (full-GPU seconds) per slot. acc_before, acc_after,
    work: float64 (n,); window_slots: int64 (n,), 0 = never retrains. t0: absolute index
    of the first slot (windows start at multiples of window_slots). queue: float64 (n, K)
    requests carried over with age 1..K slots, progress: float64 (n,), done: bool (n,) —
    the state in, updated in place to the state out.

    A slot serves its new arrivals first (they can still meet the SLO), then spare
    capacity serves carried requests oldest first (late); requests older than K slots
    are dropped. Retraining restarts at each window start and lifts the accuracy from
    the slot after it completes.

    Returns within, late, dropped, accuracy (each float64 (n, T)) and completed
    (bool (n, T), True in the slot where a retraining finished).
    """
    n, horizon = arrivals.shape
    depth = queue.shape[1]
    within = np.zeros((n, horizon))
    late = np.zeros((n, horizon))
    dropped = np.zeros((n, horizon))
    accuracy = np.zeros((n, horizon))
    completed = np.zeros((n, horizon), dtype=np.bool_)
    for i in range(n):
        for t in range(horizon):
            slot = t0 + t
            if window_slots[i] > 0 and slot % window_slots[i] == 0:
                progress[i] = 0.0
                done[i] = False
            accuracy[i, t] = acc_after[i] if done[i] else acc_before[i]
            served = min(arrivals[i, t], capacity[i, t])
            within[i, t] = served
            spare = capacity[i, t] - served
            for age in range(depth - 1, -1, -1):
                take = min(spare, queue[i, age])
                late[i, t] += take
                queue[i, age] -= take
                spare -= take
            backlog = arrivals[i, t] - served
            if depth == 0:
                dropped[i, t] += backlog
            else:
                dropped[i, t] += queue[i, depth - 1]
                for age in range(depth - 1, 0, -1):
                    queue[i, age] = queue[i, age - 1]
                queue[i, 0] = backlog
            if window_slots[i] > 0 and not done[i]:
                progress[i] += retrain[i, t]
                if progress[i] >= work[i]:
                    done[i] = True
                    completed[i, t] = True
    return within, late, dropped, accuracy, completed
