"""Plain Python/numpy twins of the Numba kernels in ``_kernels.py``.

Written independently (other root finders, other data structures) so that the tests can
hold each kernel against its twin, and the benchmarks can report the Numba speed-up
against them. Slow by design; not used on any hot path.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


def md1_decay(lam: float, d: float) -> float:
    """Newton's method on g(x) = rho (e^x - 1) - x from the right of the root."""
    rho = lam * d
    x = max(4.0 * (1.0 - rho) / rho, 1e-6)
    while rho * math.expm1(x) - x <= 0.0:
        x *= 2.0
    for _ in range(200):
        step = (rho * math.expm1(x) - x) / (rho * math.exp(x) - 1.0)
        x -= step
        if abs(step) <= 1e-15 * x:
            break
    return x / d


def md1_wait_quantile(lam: float, d: float, eps: float) -> float:
    rho = lam * d
    if lam <= 0.0 or rho <= eps:
        return 0.0
    if rho >= 1.0:
        return math.inf
    span = 10 * d
    if md1_wait_cdf_exact(lam, d, span) >= 1.0 - eps:
        # The CDF steps at multiples of d only in slope: regula falsi would do, bisection is simpler.
        lo, hi = 0.0, span
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if md1_wait_cdf_exact(lam, d, mid) >= 1.0 - eps else (mid, hi)
        return hi
    theta = md1_decay(lam, d)
    c = (1.0 - rho) / (rho * math.exp(theta * d) - 1.0)
    return max(span, math.log(c / eps) / theta)


def md1_wait_cdf_exact(lam: float, d: float, t: float) -> float:
    """Crommelin's exact M/D/1 waiting-time distribution,
    P(W <= t) = (1 - rho) sum_{k=0}^{floor(t/d)} (lam (k d - t))^k / k! e^{-lam (k d - t)}.
    The series alternates, so it is only accurate for small t / d."""
    rho = lam * d
    total = 0.0
    for k in range(int(math.floor(t / d)) + 1):
        u = lam * (k * d - t)
        total += u**k / math.factorial(k) * math.exp(-u)
    return (1.0 - rho) * total


def _poisson_cdf(mean: float, j: int) -> float:
    """P(Poisson(mean) <= j)."""
    if mean == 0.0:
        return 1.0
    return math.fsum(math.exp(i * math.log(mean) - mean - math.lgamma(i + 1)) for i in range(j + 1))


def formation_tail(lam: float, b: int, x: float) -> float:
    if b <= 1:
        return 0.0
    return sum(_poisson_cdf(lam * x, j - 1) for j in range(1, b)) / b


def formation_quantile(lam: float, b: int, eps: float) -> float:
    if b <= 1 or formation_tail(lam, b, 0.0) <= eps:
        return 0.0
    lo, hi = 0.0, b / lam
    while formation_tail(lam, b, hi) > eps:
        lo, hi = hi, 2.0 * hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if formation_tail(lam, b, mid) > eps else (lo, mid)
    return hi


def ebd1_wait_quantile(lam: float, b: int, d: float, eps: float) -> float:
    if lam * d >= b:
        return math.inf
    # Newton on h(theta) = theta d - b log(1 + theta / lam), from the right of the root.
    theta = lam
    while theta * d - b * math.log1p(theta / lam) <= 0.0:
        theta *= 2.0
    for _ in range(200):
        step = (theta * d - b * math.log1p(theta / lam)) / (d - b / (lam + theta))
        theta -= step
        if abs(step) <= 1e-15 * theta:
            break
    return math.log(1.0 / eps) / theta


def batch_latency_bound(lam: float, b: int, d: float, percentile: float) -> float:
    eps = 1.0 - percentile
    if lam * d / b >= 1.0:
        return math.inf
    if b == 1:
        return md1_wait_quantile(lam, d, eps) + d
    shares = [eps * k / 10 for k in range(1, 10)]
    return d + min(formation_quantile(lam, b, s) + ebd1_wait_quantile(lam, b, d, eps - s) for s in shares)


def slo_capacity(batch_sizes: np.ndarray, service_s: np.ndarray, slo_s: float, percentile: float) -> float:
    """Same definition as the kernel: the highest feasible rate, scanning the grid upwards."""

    def ok(lam: float) -> bool:
        return min(batch_latency_bound(lam, int(b), float(d), percentile) for b, d in zip(batch_sizes, service_s)) <= slo_s

    peak = float(np.max(np.asarray(batch_sizes) / np.asarray(service_s)))
    if not ok(peak * 1e-9):
        return 0.0
    low = peak * 1e-6
    grid = [peak * 1e-9] + [low * ((1.0 - 1e-9) / 1e-6) ** (i / 512) for i in range(1, 513)]
    feasible = [i for i, lam in enumerate(grid) if ok(lam)]
    top = feasible[-1]
    if top == len(grid) - 1:
        return grid[top]
    lo, hi = grid[top], grid[top + 1]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def score(arrivals, capacity, retrain, acc_before, acc_after, work, window_slots, t0, queue, progress, done):
    """Twin of ``score_kernel``: a deque of (age, requests) per tenant."""
    n, horizon = np.shape(arrivals)
    depth = np.shape(queue)[1]
    out = {k: np.zeros((n, horizon)) for k in ("within", "late", "dropped", "accuracy")}
    completed = np.zeros((n, horizon), dtype=bool)
    for i in range(n):
        waiting = deque((age + 1, float(queue[i][age])) for age in range(depth))  # youngest first
        for t in range(horizon):
            if window_slots[i] and (t0 + t) % window_slots[i] == 0:
                progress[i], done[i] = 0.0, False
            out["accuracy"][i, t] = acc_after[i] if done[i] else acc_before[i]
            new = float(arrivals[i][t])
            served = min(new, float(capacity[i][t]))
            spare = float(capacity[i][t]) - served
            out["within"][i, t] = served
            aged = deque()
            for age, count in reversed(waiting):  # oldest first
                take = min(spare, count)
                spare -= take
                out["late"][i, t] += take
                aged.appendleft((age, count - take))
            waiting = deque()
            for age, count in aged:
                if age + 1 > depth:
                    out["dropped"][i, t] += count
                else:
                    waiting.append((age + 1, count))
            if depth:
                waiting.appendleft((1, new - served))
            else:
                out["dropped"][i, t] += new - served
            if window_slots[i] and not done[i]:
                progress[i] += retrain[i][t]
                if progress[i] >= work[i]:
                    done[i] = True
                    completed[i, t] = True
        for age, count in waiting:
            queue[i][age - 1] = count
    return out["within"], out["late"], out["dropped"], out["accuracy"], completed
