"""The Goodput estimator: queueing closed forms, capacity against request-level
simulation, Numba kernels against their plain twins, and the accounting of score()."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import migrator
from migrator.workload import _kernels, _reference
from migrator.errors import ConfigError
from migrator.workload.goodput import (
    Instance,
    allocation_rates,
    score,
    serving_batch_cap,
    slo_capacity,
    slo_capacity_from_service,
)
from migrator.geometry.layout import Placement
from migrator.workload.models import builtin_models

# A batched service profile shaped like a mid-size CNN (ms per batch).
SIZES = np.array([1, 2, 4, 8, 16, 32])
SERVICE_MS = np.array([2.0, 2.4, 3.1, 4.8, 8.0, 14.5])


def poisson_arrivals(rate: float, n: int, seed: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))


# -- queueing closed forms ----------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.011, 0.05, 0.3, 0.6, 0.85, 0.95])
def test_md1_quantile_matches_crommelin_exact_distribution(rho):
    # Where the series is usable (t up to ~12 service times) the quantile must be exact,
    # whether the kernel used the series or the exponential tail.
    d = 0.01
    lam = rho / d
    for eps in (0.05, 0.01, 0.001):
        w = _kernels.md1_wait_quantile(lam, d, eps)
        if w == 0.0:  # no wait at all for more than 1 - eps of requests: P(W = 0) = 1 - rho
            assert 1 - rho >= 1 - eps
        elif w / d < 12:
            assert _reference.md1_wait_cdf_exact(lam, d, w) == pytest.approx(1 - eps, abs=1e-6)


def test_md1_quantile_is_continuous_and_increasing_in_load():
    # Across rho = eps (no wait -> some wait) and w = 10 d (series -> exponential tail).
    d = 0.001
    rates = np.linspace(1.0, 850.0, 2000)
    quantiles = np.array([_kernels.md1_wait_quantile(lam, d, 0.01) for lam in rates])
    assert np.all(np.diff(quantiles) >= 0)
    assert np.max(np.diff(quantiles)) < 0.1 * d


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.9])
def test_md1_quantile_matches_request_simulation(rho):
    d = 0.002
    arrivals = poisson_arrivals(rho / d, 2_000_000, seed=7)
    waits = _kernels.simulate_fixed_batches(arrivals, 1, d) - d
    simulated = np.quantile(waits, 0.99)
    # 2e6 samples put the empirical p99 within about 1-2 % (its standard error).
    assert _kernels.md1_wait_quantile(rho / d, d, 0.01) == pytest.approx(simulated, rel=0.04)


def test_mm1_quantile_is_the_closed_form_and_matches_lindley():
    lam, mu = 70.0, 100.0
    rng = np.random.default_rng(3)
    gaps = rng.exponential(1 / lam, 1_000_000)
    service = rng.exponential(1 / mu, 1_000_000)
    wait = np.zeros_like(gaps)
    for i in range(1, wait.size):  # Lindley: W_i = max(0, W_{i-1} + S_{i-1} - A_i)
        wait[i] = max(0.0, wait[i - 1] + service[i - 1] - gaps[i])
    quantile = _kernels.mm1_wait_quantile(lam, mu, 0.01)
    assert quantile == pytest.approx(math.log(0.7 / 0.01) / 30.0)
    assert quantile == pytest.approx(np.quantile(wait, 0.99), rel=0.04)


def test_kingman_bound_holds_for_fixed_batches():
    d = SERVICE_MS[3] / 1000  # batches of 8
    for lam in (600.0, 1200.0, 1500.0):
        latency = _kernels.simulate_fixed_batches(poisson_arrivals(lam, 800_000, seed=11), 8, d)
        assert np.quantile(latency, 0.99) <= _kernels.batch_latency_bound(lam, 8, d, 0.99)


# -- SLO capacity --------------------------------------------------------------------------


def greedy_p99_ms(rate: float, max_batch: int, n: int, seed: int = 5) -> float:
    arrivals = poisson_arrivals(rate, n, seed)
    latency = _kernels.simulate_dynamic_batches(arrivals, SIZES, SERVICE_MS / 1000, max_batch)
    return float(np.quantile(latency, 0.99) * 1000)


@pytest.mark.parametrize("slo_ms", [5.0, 10.0, 20.0, 50.0, 100.0])
def test_capacity_is_safe_for_a_greedy_server_at_the_serving_cap(slo_ms):
    # The model is the greedy server itself, solved exactly, less the planning margin, so
    # the simulated p99 at capacity may reach the SLO itself: allow its sampling error (2e6
    # requests at high load put the empirical p99 within about 2 %).
    cap = slo_capacity_from_service(SIZES, SERVICE_MS, slo_ms)
    batch = serving_batch_cap(SIZES, SERVICE_MS, slo_ms)
    assert cap > 0
    assert greedy_p99_ms(cap, batch, 2_000_000) <= slo_ms * 1.02


def _simulated_capacity(slo_ms: float) -> float:
    """Bisection on the rate of the best greedy server (any max batch), common random numbers."""
    unit = np.cumsum(np.random.default_rng(9).exponential(1.0, 300_000))

    def ok(rate: float) -> bool:
        return any(
            np.quantile(_kernels.simulate_dynamic_batches(unit / rate, SIZES, SERVICE_MS / 1000, b), 0.99)
            * 1000 <= slo_ms
            for b in SIZES
        )

    lo, hi = 1.0, SIZES[-1] / SERVICE_MS[-1] * 1000
    for _ in range(25):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


@pytest.mark.parametrize("slo_ms", [50.0, 100.0])
def test_capacity_is_close_to_simulation_when_the_slo_allows_batching(slo_ms):
    # With room for full batches the bound is tight; see docs/goodput.md for tight SLOs.
    ratio = slo_capacity_from_service(SIZES, SERVICE_MS, slo_ms) / _simulated_capacity(slo_ms)
    assert 0.8 <= ratio <= 1.02  # the simulated capacity itself is a 300k-request estimate


@pytest.mark.slow
@pytest.mark.parametrize("gpu", ["A100-40GB", "H100-80GB"])
def test_capacity_is_safe_for_every_built_in_model_and_profile(gpu):
    for name, model in builtin_models().items():
        sizes = np.asarray(model.batch_sizes)
        for profile in _profiles_by_size(gpu):
            service = model.inference_ms(gpu, profile)
            for slo in (20.0, 50.0, 100.0, 200.0):
                cap = slo_capacity(name, profile, slo, gpu=gpu)
                if cap == 0.0:
                    continue
                batch = serving_batch_cap(sizes, service, slo)
                latency = _kernels.simulate_dynamic_batches(
                    poisson_arrivals(cap, 2_000_000, 1), sizes, service / 1000, batch
                )
                assert np.quantile(latency, 0.99) * 1000 <= slo * 1.02, (name, profile, slo)


def test_capacity_is_zero_when_one_request_misses_the_slo():
    assert slo_capacity_from_service(SIZES, SERVICE_MS, 1.5) == 0.0


def test_capacity_grows_with_the_slo():
    caps = [slo_capacity_from_service(SIZES, SERVICE_MS, slo) for slo in (3, 5, 10, 20, 50, 100)]
    assert caps == sorted(caps)


def assert_capacity_equals_twin(base: float, growth: list[float], slo_factor: float) -> None:
    sizes = np.array([1, 2, 4, 8])
    service = base * np.cumprod([1.0, *growth]) / 1000
    slo = service[0] * slo_factor
    expected = _reference.slo_capacity(sizes, service, slo, 0.99)
    assert _kernels.slo_capacity_kernel(sizes, service, slo, 0.99) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("base", "growth", "slo_factor"),
    [(0.5, [1.0, 1.0, 1.0], 1.2), (2.0, [1.2, 1.3, 1.5], 3.0)],
)
def test_capacity_kernel_equals_its_plain_twin(base, growth, slo_factor):
    assert_capacity_equals_twin(base, growth, slo_factor)


@pytest.mark.slow
@given(
    base=st.floats(0.5, 20.0),
    growth=st.lists(st.floats(1.0, 2.0), min_size=3, max_size=3),
    slo_factor=st.floats(1.2, 30.0),
)
@settings(max_examples=30)
def test_capacity_kernel_equals_its_plain_twin_on_random_profiles(base, growth, slo_factor):
    assert_capacity_equals_twin(base, growth, slo_factor)


def _profiles_by_size(gpu: str) -> list[str]:
    g = migrator.Geometry.for_gpu(gpu)
    base = [p for p in g.profiles if "+" not in p.name and "-" not in p.name]
    return [p.name for p in sorted(base, key=lambda p: (p.compute_slices, p.memory_slices))]


@pytest.mark.parametrize("gpu", ["A100-40GB", "A100-80GB", "H100-80GB"])
def test_a_larger_profile_never_has_lower_capacity(gpu):
    for name in builtin_models():
        caps = [slo_capacity(name, p, 100.0, gpu=gpu) for p in _profiles_by_size(gpu)]
        assert caps == sorted(caps), name


def test_capacity_accepts_nvml_and_variant_profile_names():
    plain = slo_capacity("resnet50", "1g.5gb", 100.0, gpu="A100-40GB")
    assert plain > 0
    assert slo_capacity("resnet50", "MIG 1g.5gb+me", 100.0, gpu="NVIDIA A100-SXM4-40GB") == plain


def test_max_batch_limits_capacity():
    free = slo_capacity("resnet50", "7g.40gb", 200.0, gpu="A100-40GB")
    assert slo_capacity("resnet50", "7g.40gb", 200.0, gpu="A100-40GB", max_batch=1) < free


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"slo_ms": -1.0}, "slo_ms"),
        ({"percentile": 100.0}, "percentile"),
        ({"service_ms": [1.0, -2.0, 3.0]}, "service_ms"),
        ({"batch_sizes": [1, 1, 2]}, "batch_sizes"),
    ],
)
def test_bad_capacity_inputs_name_the_field(kwargs, field):
    args = {"batch_sizes": [1, 2, 4], "service_ms": [1.0, 1.5, 2.5], "slo_ms": 10.0} | kwargs
    with pytest.raises(ConfigError, match=field):
        slo_capacity_from_service(**args)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ConfigError, match="resnet50"):
        slo_capacity("no-such-net", "1g.5gb", 100.0)


# -- scoring -------------------------------------------------------------------------------


def tenant(name="a", **kw) -> migrator.Tenant:
    return migrator.Tenant(name=name, model="resnet50", slo_ms=100.0, **kw)


def test_served_within_slo_is_the_smaller_of_arrivals_and_capacity():
    arrivals = np.array([[10.0, 30.0, 5.0]])
    result = score(arrivals, np.array([[20.0, 20.0, 20.0]]), np.zeros((1, 3)), [tenant(accuracy_before=0.5)])
    assert result.within.tolist() == [[10.0, 20.0, 5.0]]
    # 10 wait one slot and are served late with the spare capacity of slot 2.
    assert result.late.tolist() == [[0.0, 0.0, 10.0]]
    assert result.goodput == pytest.approx(0.5 * 35.0)
    assert result.slo_attainment == pytest.approx(35.0 / 45.0)


def test_requests_waiting_too_long_are_dropped():
    arrivals = np.array([[30.0, 30.0, 0.0, 0.0]])
    result = score(arrivals, np.full((1, 4), 10.0), np.zeros((1, 4)), [tenant()], max_wait_slots=1)
    # 20 wait after slot 0 and are dropped in slot 1; of the 20 left after slot 1, slot 2
    # serves 10 late with its spare capacity and drops the other 10.
    assert result.dropped.tolist() == [[0.0, 20.0, 10.0, 0.0]]
    assert result.late.tolist() == [[0.0, 0.0, 10.0, 0.0]]


def test_retraining_lifts_accuracy_from_the_slot_after_it_finishes():
    t = tenant(window_s=5.0, work_gpu_s=2.0, accuracy_before=0.6, accuracy_after=0.9)
    retrain = np.array([[0.5, 0.5, 0.5, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5]])
    result = score(np.ones((1, 10)), np.ones((1, 10)), retrain, [t])
    # Work 2.0 at 0.5 per slot finishes in slot 3; the next window starts at slot 5.
    assert result.completion_slots("a") == [3, 8]
    assert result.accuracy.tolist() == [[0.6, 0.6, 0.6, 0.6, 0.9, 0.6, 0.6, 0.6, 0.6, 0.9]]


def test_a_tenant_without_windows_keeps_its_accuracy():
    result = score(np.ones((1, 4)), np.ones((1, 4)), np.ones((1, 4)), [tenant(accuracy_before=0.7)])
    assert result.accuracy.tolist() == [[0.7] * 4] and not result.completed.any()


@given(
    data=st.data(),
    n=st.integers(1, 3),
    slots=st.integers(1, 25),
    depth=st.integers(0, 3),
)
@settings(max_examples=40)
def test_score_conserves_requests_and_equals_its_twin(data, n, slots, depth):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    arrivals = rng.poisson(20, (n, slots)).astype(float)
    capacity = rng.uniform(0, 30, (n, slots))
    retrain = rng.uniform(0, 1, (n, slots))
    tenants = [
        tenant(f"t{i}", window_s=float(rng.integers(2, 8)), work_gpu_s=float(rng.uniform(0, 5)),
               accuracy_before=0.5, accuracy_after=0.8)
        for i in range(n)
    ]
    result = score(arrivals, capacity, retrain, tenants, max_wait_slots=depth)
    total = result.within + result.late + result.dropped
    np.testing.assert_allclose(total.sum(axis=1), arrivals.sum(axis=1))
    assert np.all(result.within <= np.minimum(arrivals, capacity) + 1e-12)

    before, after, work, window = (np.array([0.5] * n), np.array([0.8] * n),
                                   np.array([t.work_gpu_s for t in tenants]),
                                   np.array([int(t.window_s) for t in tenants], dtype=np.int64))
    twin = _reference.score(arrivals, capacity, retrain, before, after, work, window, 0,
                            np.zeros((n, depth)), np.zeros(n), np.zeros(n, dtype=bool))
    np.testing.assert_allclose(result.within, twin[0])
    np.testing.assert_allclose(result.late, twin[1])
    np.testing.assert_allclose(result.accuracy, twin[3])
    np.testing.assert_array_equal(result.completed, twin[4])


def test_score_rejects_mismatched_shapes():
    with pytest.raises(ConfigError, match="capacity_rps"):
        score(np.ones((1, 3)), np.ones((1, 4)), np.ones((1, 3)), [tenant()])
    with pytest.raises(ConfigError, match="arrivals"):
        score(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)), [tenant()])


# -- allocations ---------------------------------------------------------------------------


def inst(profile: str, start: int, task=("a", "infer"), gpu: int = 0) -> Instance:
    return Instance(gpu=gpu, placement=Placement(profile, start), task=task)


def test_set_up_time_is_taken_off_new_and_reassigned_instances():
    cap1 = slo_capacity("resnet50", "3g.20gb", 100.0, gpu="A100-40GB")
    slots = [
        [inst("3g.20gb", 0)],  # created: half the slot setting up
        [inst("3g.20gb", 0)],  # kept
        [inst("3g.20gb", 0, task=("a", "retrain"))],  # re-assigned: half the slot again
        [inst("3g.20gb", 0, task=("a", "retrain"))],
    ]
    capacity, retrain = allocation_rates(slots, [tenant()], ["A100-40GB"], slot_s=1.0, setup_s=0.5)
    speed = builtin_models()["resnet50"].retrain_speed("A100-40GB", "3g.20gb")
    np.testing.assert_allclose(capacity, [[0.5 * cap1, cap1, 0.0, 0.0]])
    np.testing.assert_allclose(retrain, [[0.0, 0.0, 0.5 * speed, speed]])


def test_long_set_up_spans_slots_and_initial_instances_are_ready():
    slots = [[inst("1g.5gb", 0), inst("1g.5gb", 1)]] * 3
    initial = [inst("1g.5gb", 1)]
    capacity, _ = allocation_rates(slots, [tenant()], ["A100-40GB"], setup_s=2.5, initial=initial)
    one = slo_capacity("resnet50", "1g.5gb", 100.0, gpu="A100-40GB")
    np.testing.assert_allclose(capacity, [[one, one, 1.5 * one]])


def test_allocation_rejects_unknown_tenants():
    with pytest.raises(ConfigError, match="task"):
        allocation_rates([[inst("1g.5gb", 0, task=("zed", "infer"))]], [tenant()], ["A100-40GB"])
