"""Numba kernels shared by the Goodput estimator (goodput.py) and the simulator.

Arrays and scalars in, arrays out; no Python objects. Each kernel has a plain
Python/numpy twin, in ``_reference.py`` or, for the greedy batching server that sets
``slo_capacity`` (its section below), in tests/workload/test_greedy_capacity.py, and the
tests hold one against the other.

The former fixed-batch model of one MIG instance, kept for its closed-form checks and
``goodput.operating_batch`` (see docs/goodput.md, section 1):
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


# -- the greedy batching server (the model slo_capacity uses) ------------------------------
#
# The server the request-level grader runs: whenever it is free and requests wait, it takes
# all of them up to its cap B as one batch, and a batch of k runs for s(k), the profiled
# service times interpolated (``service_time``); a request that finds it idle starts a batch
# of one at once. Its queue seen at batch completions is a Markov chain: from x waiting it
# serves k = min(x, B) (k = 1 after an idle spell when x = 0) and Poisson(lam s(k)) arrive
# meanwhile. A request arriving u into a batch of k that left w waiting finds
# n = w + Poisson(lam u) ahead and the server busy for s(k) - u more; FIFO puts it in
# batch ceil((n + 1) / B) from then, every batch before its own full, so its latency is
# known given (n, u) up to the size of its own batch, whose late-comers are Poisson too.
# PASTA turns the chain's stationary law into the fraction of requests that miss the SLO.

_POISSON_MASS = 1e-13  # Poisson mass left out of the sums: below the tails that matter (>= 1e-4)


@_jit
def batch_times(batch_sizes: np.ndarray, service_s: np.ndarray, cap: int) -> np.ndarray:
    """s(k) for k = 0..cap (s(0) = 0): the profile interpolated, made non-decreasing (a
    profile where a larger batch is quicker is read as the slower figure, the safe side)."""
    out = np.zeros(cap + 1)
    for k in range(1, cap + 1):
        out[k] = max(out[k - 1], service_time(batch_sizes, service_s, k))
    return out


@_jit
def largest_batch_within(svc: np.ndarray, budget: float) -> int:
    """Largest k with svc[k] <= budget (0 when not even one request fits)."""
    lo = 0
    hi = svc.shape[0] - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if svc[mid] <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


@_jit
def poisson_above(mean: float, q: int) -> float:
    """P(Poisson(mean) > q), terms summed in log space (no underflow for large means)."""
    if q < 0:
        return 1.0
    if mean <= 0.0:
        return 0.0
    cdf = 0.0
    log_mean = math.log(mean)
    for j in range(q + 1):
        cdf += math.exp(j * log_mean - mean - math.lgamma(j + 1.0))
    return max(0.0, 1.0 - cdf)


@_jit
def greedy_miss(n: int, busy: float, lam: float, svc: np.ndarray, slo_s: float, limit: int) -> float:
    """Probability that a request misses the SLO when it arrives to find ``n`` requests
    waiting and the server busy for ``busy`` more seconds (greedy batches, cap len(svc) - 1);
    1 from ``limit`` waiting on (see ``greedy_limit``)."""
    cap = svc.shape[0] - 1
    if n >= limit:
        return 1.0
    ahead = n // cap  # full batches that leave before the request's own
    start = busy + ahead * svc[cap]
    position = n + 1 - ahead * cap  # its place in its own batch, 1..cap
    fits = largest_batch_within(svc, slo_s - start)
    if fits >= cap:
        return 0.0
    if fits < position:
        return 1.0
    # Its batch misses only if more than fits - position others join it before it starts.
    return poisson_above(lam * start, fits - position)


@_jit
def poisson_reach(mean: float) -> int:
    """A count that Poisson(mean) exceeds with probability below 1e-13."""
    return int(mean + 8.0 * math.sqrt(mean) + 16.0)


@_jit
def _poisson_pmf(mean: float, out: np.ndarray) -> None:
    """P(Poisson(mean) = a) for a < len(out) - 1, and the rest of the mass in the last entry."""
    last = out.shape[0] - 1
    term = math.exp(-mean)
    total = 0.0
    for a in range(last):
        out[a] = term
        total += term
        term *= mean / (a + 1)
    out[last] = max(0.0, 1.0 - total)


@_jit
def _served(x: int, cap: int) -> tuple:
    """Batch size started from x waiting at a completion, and how many it leaves waiting."""
    if x == 0:
        return 1, 0
    k = min(x, cap)
    return k, x - k


@_jit
def greedy_queue_law(lam: float, svc: np.ndarray, n_states: int, reach: int) -> np.ndarray:
    """Stationary law of the number waiting at batch completions, states 0..n_states - 1
    (the last one holds all larger queues); at most ``reach`` arrivals per batch, the
    rest of the Poisson mass lumped into ``reach``.

    Grassmann-Taksar-Heyman state reduction: states are censored out from the top down,
    with no subtraction anywhere, so it stays accurate when the law piles up far from 0
    (near saturation). The chain moves down by at most cap and up by at most reach, and
    the reduction keeps that band, so it costs n_states x reach x cap.
    """
    cap = svc.shape[0] - 1
    top = n_states - 1
    band = np.zeros((n_states, cap + reach + 1))  # band[i, j - i + cap] = P(i, j)
    pmf = np.empty(reach + 1)
    for x in range(n_states):
        k, left = _served(x, cap)
        _poisson_pmf(lam * svc[k], pmf)
        for a in range(reach + 1):
            y = min(left + a, top)
            band[x, y - x + cap] += pmf[a]
    down = np.zeros(n_states)  # probability of leaving n downwards once the states above are censored
    for n in range(top, 0, -1):
        total = 0.0
        for j in range(max(0, n - cap), n):
            total += band[n, j - n + cap]
        down[n] = total
        # Only the states below cap (which serve small batches) reach further up than
        # i - cap + reach; elimination keeps each row's reach.
        for i in range(0 if n <= reach else n + cap - reach, n):
            share = band[i, n - i + cap] / total
            if share == 0.0:
                continue
            for j in range(max(0, n - cap), n):
                band[i, j - i + cap] += share * band[n, j - n + cap]
    pi = np.empty(n_states)
    pi[0] = 1.0
    for n in range(1, n_states):
        inflow = 0.0
        for i in range(0 if n <= reach else n + cap - reach, n):
            inflow += pi[i] * band[i, n - i + cap]
        pi[n] = inflow / down[n]
    return pi / pi.sum()


@_jit
def own_batch_tails(lam: float, svc: np.ndarray, slo_s: float) -> np.ndarray:
    """tails[m, p] = P(Poisson(lam (slo - s(m - 1))) >= m - p) for 1 <= p < m <= cap.

    A request at place p of its batch whose batch starts ``start`` after it arrived meets
    the SLO with a batch of m - 1 but not of m when slo - s(m) < start <= slo - s(m - 1);
    it misses there if m - p or more others join first, Poisson(lam start) of them. The
    table takes the largest such start, slo - s(m - 1): an upper bound on the miss
    probability over that stretch (safe side), and one table per rate serves every state.
    """
    cap = svc.shape[0] - 1
    tails = np.zeros((cap + 1, cap + 1))
    for m in range(2, cap + 1):
        mean = lam * max(0.0, slo_s - svc[m - 1])
        term = math.exp(-mean) if mean < 700.0 else 0.0
        below = 0.0  # P(Poisson(mean) < q)
        for q in range(0, m):
            if q > 0:
                tails[m, m - q] = max(0.0, 1.0 - below)
            if term == 0.0 and mean >= 700.0:
                term = math.exp(q * math.log(mean) - mean - math.lgamma(q + 1.0))
            below += term
            term *= mean / (q + 1)
    return tails


@_jit
def _poisson_point(mean: float, j: int) -> tuple:
    """(P(Poisson(mean) = j), P(Poisson(mean) <= j)) by the recurrence from 0 (log space
    where e^-mean underflows)."""
    if mean <= 0.0:
        return (1.0 if j == 0 else 0.0), 1.0
    if mean >= 700.0:
        term = math.exp(j * math.log(mean) - mean - math.lgamma(j + 1.0))
        total = 0.0
        log_mean = math.log(mean)
        for i in range(j + 1):
            total += math.exp(i * log_mean - mean - math.lgamma(i + 1.0))
        return term, min(total, 1.0)
    term = math.exp(-mean)
    total = term
    for i in range(1, j + 1):
        term *= mean / i
        total += term
    return term, min(total, 1.0)


@_jit
def _excess_mean(mean: float, j: int) -> float:
    """E[(N - j)^+] for N ~ Poisson(mean): mean - j + sum_{i <= j} (j - i) P(N = i)."""
    total = mean - j
    term = math.exp(-mean) if mean < 700.0 else 0.0
    for i in range(j + 1):
        if term == 0.0 and mean >= 700.0:
            term = math.exp(i * math.log(mean) - mean - math.lgamma(i + 1.0))
        total += (j - i) * term
        term *= mean / (i + 1)
    return max(total, 0.0)


@_jit
def _batch_miss(left: int, length: float, lam: float, svc: np.ndarray, slo_s: float, limit: int,
                tails: np.ndarray) -> float:
    """Fraction of the requests arriving during a batch of ``length`` s that left ``left``
    waiting which miss the SLO.

    The request that arrives after j others of this batch sees n = left + j waiting; its
    arrival time u has density lam e^{-lam u} (lam u)^j / j! on [0, length]. Given j, it
    misses for sure while u < u_p (its batch of p starts too late), and between u_{m-1} and
    u_m with the probability ``tails[m, p]`` that enough others join its batch, where u_m
    is the offset from which a batch of m still fits; integrals of the density over
    intervals are differences of Poisson distribution functions, exact.
    """
    if greedy_miss(left, 0.0, lam, svc, slo_s, limit) >= 1.0:
        return 1.0  # the best case of the batch (fewest ahead, server just free) misses
    if greedy_miss(left + poisson_reach(lam * length), length, lam, svc, slo_s, limit) <= 0.0:
        return 0.0  # the worst case (all arrivals ahead, server just started) meets it
    cap = svc.shape[0] - 1
    # cdf[m] = P(Poisson(lam x_m) <= j) at the breakpoints x_m = clip(u_m, 0, length), kept
    # for the breakpoints inside (0, length) only, lo..hi; below lo it is 1, above hi it is
    # the batch end's, end_cdf. Updated by the Poisson recurrence as j grows.
    xs = np.empty(cap + 1)
    cdf = np.empty(cap + 1)
    term = np.empty(cap + 1)
    mean_end = lam * length
    end_term, end_cdf = _poisson_point(mean_end, 0)
    total = 0.0
    ahead = -1
    lo = hi = 0
    for j in range(poisson_reach(mean_end) + 1):
        if j > 0:
            end_term *= mean_end / j
            end_cdf += end_term
        n = left + j
        if n >= limit:
            total += _excess_mean(mean_end, j)  # see below
            break
        if n // cap != ahead:
            ahead = n // cap
            shift = slo_s - length - ahead * svc[cap]  # u_m = s(m) - shift
            lo = cap + 1
            hi = 0
            for m in range(1, cap + 1):
                xs[m] = min(max(svc[m] - shift, 0.0), length)
                if 0.0 < xs[m] < length:
                    lo = min(lo, m)
                    hi = max(hi, m)
            for m in range(lo, hi + 1):
                term[m], cdf[m] = _poisson_point(lam * xs[m], j)
        elif j > 0:
            for m in range(lo, hi + 1):
                term[m] *= lam * xs[m] / j
                cdf[m] += term[m]
        position = n + 1 - ahead * cap
        if xs[position] >= length:
            # Late for sure even at the batch's end, and so is every later arrival (more
            # ahead): sum_{j' >= j} P(N(lam length) > j') = E[(N - j)^+].
            total += _excess_mean(mean_end, j)
            break
        # Before u_p: late for sure, the density's integral over [0, x_p] is 1 - F(x_p).
        previous = 1.0 if xs[position] <= 0.0 else (cdf[position] if xs[position] < length else end_cdf)
        acc = 1.0 - previous
        for m in range(position + 1, cap + 1):
            if xs[m] <= 0.0:
                continue
            current = cdf[m] if xs[m] < length else end_cdf
            acc += tails[m, position] * (previous - current)
            previous = current
            if xs[m] >= length:
                break
        total += acc
        if 1.0 - end_cdf <= _POISSON_MASS and j > mean_end:
            break
    return total / mean_end


# Full batches ahead that the queue law follows exactly; a request that finds more waiting
# is counted as missing. Beyond a few batches the capacity is within a fraction of a per
# cent of the throughput cap / s(cap) anyway (heavy traffic: 1 - load scales as one over
# the queue that fits the SLO), and the work grows with this depth (cap^3 per level).
_LEVELS = 6


@_jit
def greedy_limit(svc: np.ndarray, slo_s: float) -> int:
    """Requests waiting from which an arrival is counted as missing: past cap x
    (floor(slo / s(cap)) + 1) every arrival misses; at most cap x _LEVELS (the safe side)."""
    cap = svc.shape[0] - 1
    return cap * min(int(slo_s / svc[cap]) + 1, _LEVELS)


@_jit
def greedy_miss_fraction(lam: float, svc: np.ndarray, slo_s: float) -> float:
    """Fraction of Poisson(lam) requests that a greedy server (cap len(svc) - 1, batch
    times svc) finishes later than ``slo_s``; 1 where the load exceeds its throughput."""
    cap = svc.shape[0] - 1
    if lam * svc[cap] >= cap:
        return 1.0
    limit = greedy_limit(svc, slo_s)
    n_states = limit + 3 * cap + 1  # room above the limit for the queue law's truncation
    pi = greedy_queue_law(lam, svc, n_states, poisson_reach(lam * svc[cap]))
    tails = own_batch_tails(lam, svc, slo_s)
    missed = 0.0
    time = 0.0
    for x in range(n_states):
        k, left = _served(x, cap)
        length = svc[k]
        if x == 0:
            # An idle spell (mean 1 / lam) ends with an arrival that is served alone at once.
            time += pi[0] / lam
            if svc[1] > slo_s:
                missed += pi[0] / lam
        time += pi[x] * length
        if x == n_states - 1:
            missed += pi[x] * length  # the lumped overflow: counted as missing
        else:
            missed += pi[x] * length * _batch_miss(left, length, lam, svc, slo_s, limit, tails)
    return missed / time


@_jit
def _log_excess(lam: float, svc: np.ndarray, slo_s: float, tail: float) -> float:
    """log(miss fraction / tail): the capacity is its root (floored far below it)."""
    return math.log(max(greedy_miss_fraction(lam, svc, slo_s), 1e-300) / tail)


@_jit
def greedy_capacity_kernel(
    batch_sizes: np.ndarray, service_s: np.ndarray, cap: int, slo_s: float, tail: float
) -> float:
    """Highest Poisson rate (req/s) at which a greedy server with batch cap ``cap`` misses
    ``slo_s`` for at most a fraction ``tail`` of requests; 0 when a lone request misses.

    The miss fraction grows with the rate (more wait, larger batches). The root lies
    between 0 and the throughput cap / s(cap), and capacities crowd towards that end when
    the SLO is loose, so it is first bracketed by bisection on the logit of the load
    (until both ends are within e^30 of the tail), then found by the Illinois method on
    the logarithm of the miss fraction, which is smooth in the rate, to a relative 1e-3;
    the feasible end is returned.
    """
    svc = batch_times(batch_sizes, service_s, cap)
    if svc[1] > slo_s:
        return 0.0
    top = cap / svc[cap]
    v_lo, v_hi = -12.0, 12.0  # logit of the load lam / top
    f_lo = -np.inf
    f_hi = np.inf
    while not (abs(f_lo) < 30.0 and abs(f_hi) < 30.0) and v_hi - v_lo > 1e-3:
        v = 0.5 * (v_lo + v_hi)
        f = _log_excess(top / (1.0 + math.exp(-v)), svc, slo_s, tail)
        if f <= 0.0:
            v_lo, f_lo = v, f
        else:
            v_hi, f_hi = v, f
    lo = top / (1.0 + math.exp(-v_lo)) if f_lo > -np.inf else 0.0
    hi = top / (1.0 + math.exp(-v_hi)) if f_hi < np.inf else top
    side = 0
    while hi - lo > 1e-3 * hi:
        if abs(f_lo) < 30.0 and abs(f_hi) < 30.0:
            mid = hi - f_hi * (hi - lo) / (f_hi - f_lo)
            mid = min(max(mid, lo + 1e-3 * (hi - lo)), hi - 1e-3 * (hi - lo))
        else:
            mid = 0.5 * (lo + hi)
        f_mid = _log_excess(mid, svc, slo_s, tail)
        if f_mid <= 0.0:
            lo, f_lo = mid, f_mid
            if side < 0:
                f_hi *= 0.5
            side = -1
        else:
            hi, f_hi = mid, f_mid
            if side > 0:
                f_lo *= 0.5
            side = 1
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
