"""Scoring one hour of per-second arrivals for 16 tenants on 8 GPUs: the Numba kernel
against its plain-Python twin, with the ratio reported (``ratio_vs_reference``).

Each benchmark asserts that its result equals the other method's, so a fast wrong answer
fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from migrator.workload import _kernels, _reference

TENANTS, SLOTS, DEPTH = 16, 3600, 2
GROUP = pytest.mark.benchmark(group="score-1h-16-tenants-8-gpus")


@pytest.fixture(scope="module")
def inputs() -> tuple:
    # 8 GPUs' worth of instances split over 16 tenants: capacity near demand, so queues,
    # late and dropped requests all occur; retraining every 200 s.
    rng = np.random.default_rng(0)
    arrivals = rng.poisson(rng.uniform(100, 1000, (TENANTS, 1)), (TENANTS, SLOTS)).astype(float)
    capacity = arrivals.mean(axis=1, keepdims=True) * rng.uniform(0.7, 1.3, (TENANTS, SLOTS))
    retrain = rng.uniform(0.0, 0.5, (TENANTS, SLOTS))
    before = np.full(TENANTS, 0.7)
    after = np.full(TENANTS, 0.8)
    work = rng.uniform(20, 80, TENANTS)
    window = np.full(TENANTS, 200, dtype=np.int64)
    return arrivals, capacity, retrain, before, after, work, window


def run(kernel, inputs):
    state = (np.zeros((TENANTS, DEPTH)), np.zeros(TENANTS), np.zeros(TENANTS, dtype=np.bool_))
    return kernel(*inputs, 0, *state)


def assert_same(a, b) -> None:
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y)


@GROUP
def test_score_reference(benchmark, timings, inputs) -> None:
    result = benchmark.pedantic(run, args=(_reference.score, inputs), rounds=3, iterations=1)
    assert_same(result, run(_kernels.score_kernel, inputs))
    timings.record("score 1 h x 16 tenants", "reference", benchmark)


@GROUP
def test_score_numba(benchmark, timings, inputs) -> None:
    run(_kernels.score_kernel, inputs)  # compile (or load the cache) before timing
    result = benchmark(run, _kernels.score_kernel, inputs)
    within, late, dropped = result[0], result[1], result[2]
    assert within.sum() + late.sum() + dropped.sum() <= inputs[0].sum() + 1e-6
    assert_same(result, run(_reference.score, inputs))
    timings.record("score 1 h x 16 tenants", "fast", benchmark)
