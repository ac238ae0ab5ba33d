"""The planner-backed policies: forecasts with headroom, the oracle's look-ahead, static."""

from __future__ import annotations

import numpy as np
import pytest
from scenarios import small

from migrator.errors import ConfigError
from migrator.evaluation.policy import Allocation, Environment, Observation, make_policy


def _environment(scenario) -> Environment:
    trace = scenario.arrivals().counts.astype(float)
    return Environment(scenario, mean_rps=trace.mean(axis=1), seed=scenario.seed, trace=trace)


def _observation(scenario, arrived: np.ndarray) -> Observation:
    names = [t.name for t in scenario.tenants]
    return Observation(
        slot=arrived.shape[1], slot_s=1.0, arrived=arrived,
        allocation=Allocation.of([g.layout for g in scenario.gpus], [{} for _ in scenario.gpus]),
        progress_gpu_s={n: 0.0 for n in names}, done={n: False for n in names},
    )


def _forecast(headroom: float, arrived: np.ndarray) -> np.ndarray:
    scenario = small()
    policy = make_policy("migrator", headroom_sigmas=headroom)
    policy.reset(_environment(scenario))
    return policy.forecast(_observation(scenario, arrived))


def test_headroom_adds_the_spread_of_recent_forecast_errors():
    rng = np.random.default_rng(0)
    noisy = rng.normal([[900.0], [300.0]], [[100.0], [5.0]], size=(2, 30)).clip(0)
    plain, padded = _forecast(0.0, noisy), _forecast(2.0, noisy)
    extra = (padded - plain)[:, 0]
    assert np.all(padded >= plain)
    # The noisier tenant gets the larger margin, of the order of two of its deviations.
    assert extra[0] > 10 * extra[1] and 100 < extra[0] < 400


def test_headroom_vanishes_on_a_steady_load():
    # Steady at the average the forecaster is primed with: no error, no margin.
    mean = _environment(small()).mean_rps
    steady = np.repeat(mean[:, None], 30, axis=1)
    np.testing.assert_allclose(_forecast(3.0, steady), _forecast(0.0, steady), atol=1e-6)


def test_negative_headroom_is_refused():
    with pytest.raises(ConfigError, match="headroom_sigmas"):
        make_policy("migrator", headroom_sigmas=-1)


def test_the_oracle_forecasts_the_realised_arrivals():
    scenario = small(duration_s=16)
    oracle = make_policy("oracle", whole_run_slots=0)
    env = _environment(scenario)
    oracle.reset(env)
    ahead = oracle.forecast(_observation(scenario, env.trace[:, :5]))
    np.testing.assert_array_equal(ahead[:, :4], env.trace[:, 5:9])
    # Past the run's end nothing arrives.
    late = oracle.forecast(_observation(scenario, env.trace[:, :14]))
    assert late.shape[1] == oracle.config.horizon and not late[:, 2:].any()


def test_static_plans_at_most_the_settings_horizon_limit():
    """Its one period spans the longest retraining window; a window longer than the planner
    settings allow is cut to MAX_HORIZON rather than refused (it is one period all the same)."""
    from migrator.workload.settings import MAX_HORIZON

    table = small(duration_s=2 * MAX_HORIZON).to_dict()
    for tenant in table["tenants"]:
        if tenant.get("window_s"):
            tenant["window_s"] = 1.5 * MAX_HORIZON
    scenario = type(small()).from_dict(table)
    policy = make_policy("static")
    policy.reset(_environment(scenario))
    assert policy.config.horizon == MAX_HORIZON
