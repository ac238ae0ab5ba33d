"""Online forecasters against plain-Python references, their exact cases, errors and scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrator.errors import ConfigError
from migrator.workload.forecast import (
    EWMA,
    FORECASTERS,
    ForecastError,
    Forecaster,
    HoltWinters,
    LastValue,
    evaluate,
    make,
)

# -- plain-Python references: one series, a list, one loop; forecasts after each update --------


def reference_last(series: list[float], horizon: int) -> list[list[float]]:
    return [[x] * horizon for x in series]


def reference_ewma(series: list[float], horizon: int, alpha: float) -> list[list[float]]:
    out = []
    level = None
    for x in series:
        level = x if level is None else level + alpha * (x - level)
        out.append([level] * horizon)
    return out


def reference_holt_winters(
    series: list[float], horizon: int, alpha: float, beta: float, gamma: float, m: int
) -> list[list[float]]:
    out = []
    first: list[float] = []
    level = trend = 0.0
    season: list[float] = []
    phase = 0
    ready = False
    for x in series:
        if not ready:
            first.append(x)
            if len(first) == 2 * m:
                mean_1 = sum(first[:m]) / m
                mean_2 = sum(first[m:]) / m
                trend = (mean_2 - mean_1) / m
                line = [mean_1 + trend * (i - (m - 1) / 2) for i in range(2 * m)]
                season = [
                    ((first[j] - line[j]) + (first[m + j] - line[m + j])) / 2 for j in range(m)
                ]
                level = line[-1]
                phase = 0
                ready = True
        else:
            s = season[phase]
            new_level = alpha * (x - s) + (1 - alpha) * (level + trend)
            trend = beta * (new_level - level) + (1 - beta) * trend
            season[phase] = gamma * (x - new_level) + (1 - gamma) * s
            level = new_level
            phase = (phase + 1) % m
        if ready:
            steps = range(1, horizon + 1)
            out.append([level + h * trend + season[(phase + h - 1) % m] for h in steps])
        else:
            out.append([sum(first) / len(first)] * horizon)
    return [[max(0.0, v) for v in row] for row in out]


def check_against_reference(forecaster: Forecaster, rows: list[list[float]], horizon: int,
                            reference) -> None:
    """Feed all series at once (vectorised) and compare each with its own reference run."""
    n_slots = len(rows[0])
    expected = [reference(row, horizon) for row in rows]
    scale = 1.0 + max(max(row) for row in rows)
    for t in range(n_slots):
        forecaster.update(np.array([row[t] for row in rows]))
        got = forecaster.forecast(horizon)
        assert got.shape == (len(rows), horizon)
        want = np.array([series[t] for series in expected])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * scale)


@st.composite
def panels(draw: st.DrawFn, max_slots: int = 40) -> list[list[float]]:
    """1-3 series of equal length with non-negative values (counts or reals)."""
    n = draw(st.integers(1, 3))
    length = draw(st.integers(1, max_slots))
    value = st.one_of(
        st.integers(0, 500).map(float),
        st.floats(0, 1000, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    )
    return [draw(st.lists(value, min_size=length, max_size=length)) for _ in range(n)]


horizons = st.integers(1, 6)
weights = st.floats(0.01, 1.0)


# -- against the references --------------------------------------------------------------------


@given(panels(), horizons)
def test_last_value_matches_reference(rows: list[list[float]], horizon: int) -> None:
    check_against_reference(LastValue(), rows, horizon, reference_last)


@given(panels(), horizons, weights)
def test_ewma_matches_reference(rows: list[list[float]], horizon: int, alpha: float) -> None:
    check_against_reference(
        EWMA(alpha), rows, horizon, lambda s, h: reference_ewma(s, h, alpha)
    )


@given(panels(), horizons, weights, st.floats(0, 1), st.floats(0, 1), st.integers(1, 5))
def test_holt_winters_matches_reference(
    rows: list[list[float]], horizon: int, alpha: float, beta: float, gamma: float, m: int
) -> None:
    check_against_reference(
        HoltWinters(alpha, beta, gamma, m),
        rows,
        horizon,
        lambda s, h: reference_holt_winters(s, h, alpha, beta, gamma, m),
    )


# -- exact cases -------------------------------------------------------------------------------


def test_holt_winters_recovers_trend_plus_season_exactly() -> None:
    m = 12
    t = np.arange(10 * m)
    pattern = np.array([[5, -3, 8, 0, -6, 2, 4, -1, -9, 3, 1, -4],
                        [0, 0, 1, 2, 3, 2, 1, 0, -1, -2, -3, -3]], dtype=float)
    pattern -= pattern.mean(axis=1, keepdims=True)  # a season sums to zero
    truth = np.array([[100.0], [40.0]]) + np.array([[0.75], [-0.125]]) * t + pattern[:, t % m]
    forecaster = HoltWinters(season_length=m)  # default weights: the data, not tuning, is exact
    for k in range(2 * m + 7):
        forecaster.update(truth[:, k])
    assert forecaster.warmed_up
    horizon = 3 * m
    future = truth[:, 2 * m + 7 : 2 * m + 7 + horizon]
    np.testing.assert_allclose(forecaster.forecast(horizon), future, rtol=1e-12, atol=1e-9)
    for k in range(2 * m + 7, 6 * m):  # and it stays exact as it keeps smoothing
        forecaster.update(truth[:, k])
    np.testing.assert_allclose(forecaster.forecast(m), truth[:, 6 * m : 7 * m], atol=1e-9)


def test_holt_winters_warm_up_forecasts_the_running_mean() -> None:
    forecaster = HoltWinters(season_length=3)
    for k, x in enumerate([4.0, 8.0, 0.0, 6.0, 2.0]):
        forecaster.update(x)
        assert not forecaster.warmed_up
    np.testing.assert_array_equal(forecaster.forecast(2), [[4.0, 4.0]])
    forecaster.update(4.0)
    assert forecaster.warmed_up


def test_ewma_on_a_constant_converges_to_it() -> None:
    forecaster = EWMA(alpha=0.2)
    forecaster.update(0.0)  # start far away
    gaps = []
    for _ in range(200):
        forecaster.update(7.0)
        gaps.append(abs(forecaster.forecast(1)[0, 0] - 7.0))
    assert all(b <= a for a, b in zip(gaps, gaps[1:]))  # monotone (0 once it lands on 7.0)
    assert gaps[-1] < 1e-12 * 7  # 7 * 0.8 ** 200 ~ 3e-19
    started_on_it = EWMA(alpha=0.2)
    for _ in range(5):
        started_on_it.update(7.0)
    np.testing.assert_array_equal(started_on_it.forecast(3), [[7.0, 7.0, 7.0]])


def test_forecasts_are_clipped_at_zero_but_the_state_is_not() -> None:
    m = 2
    forecaster = HoltWinters(season_length=m)
    falling = [20.0, 18.0, 16.0, 14.0, 12.0]
    for x in falling:
        forecaster.update(x)
    ahead = forecaster.forecast(12)
    assert ahead.min() == 0.0
    np.testing.assert_allclose(ahead[0, :5], [10.0, 8.0, 6.0, 4.0, 2.0], atol=1e-12)


def test_scalar_updates_make_one_series() -> None:
    forecaster = LastValue()
    forecaster.update(3)
    assert forecaster.n == 1
    forecaster.update(np.array([5]))
    np.testing.assert_array_equal(forecaster.forecast(4), [[5, 5, 5, 5]])


def test_reset_forgets_everything() -> None:
    for forecaster in (LastValue(), EWMA(), HoltWinters(season_length=2)):
        forecaster.update([1.0, 2.0])
        forecaster.reset()
        assert forecaster.n is None
        with pytest.raises(ConfigError):
            forecaster.forecast(1)
        forecaster.update([1.0, 2.0, 3.0])  # a new n is fine after reset
        assert forecaster.forecast(1).shape == (3, 1)


# -- O(1) state --------------------------------------------------------------------------------


def state_size(forecaster: Forecaster) -> int:
    """Bytes of array state plus the length of any container attribute."""
    total = 0
    for value in vars(forecaster).values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif isinstance(value, (list, tuple, dict, set)):
            total += len(value)
    return total


@pytest.mark.parametrize(
    "forecaster",
    [LastValue(), EWMA(0.5), HoltWinters(season_length=60)],
    ids=["last", "ewma", "holt-winters"],
)
def test_state_does_not_grow_with_updates(forecaster: Forecaster) -> None:
    rng = np.random.default_rng(0)
    series = rng.poisson(30, size=(10_000, 4)).astype(float)
    for x in series[:10]:
        forecaster.update(x)
    after_10 = state_size(forecaster)
    for x in series[10:]:
        forecaster.update(x)
    after_10_000 = state_size(forecaster)
    assert 0 < after_10_000 <= after_10
    # Nothing beyond (n,) vectors and, for Holt-Winters, one (n, season) table.
    assert after_10_000 <= 8 * 4 * (60 + 2)


# -- evaluate ----------------------------------------------------------------------------------


def test_perfect_forecaster_scores_zero() -> None:
    assert evaluate(LastValue(), np.full(50, 12.0)) == ForecastError(mape=0.0, rmse=0.0)
    assert evaluate(EWMA(), np.full((3, 20), 4.0), horizon=5) == ForecastError(0.0, 0.0)


@pytest.mark.parametrize(
    ("series", "horizon", "mape", "rmse"),
    [
        # Forecasts of LastValue: t=1: 1 vs 2, t=2: 2 vs 4 -> errors 1, 2.
        ([1, 2, 4], 1, (1 / 2 + 2 / 4) / 2, math.sqrt((1 + 4) / 2)),
        # Zero actual at t=1 is left out of MAPE only: errors 2 (vs 0), 3 (vs 3).
        ([2, 0, 3], 1, 3 / 3, math.sqrt((4 + 9) / 2)),
        # Two ahead: from t=1 forecast 1 for slot 2 (4), from t=2 forecast 2 for slot 3 (8).
        ([1, 2, 4, 8], 2, (3 / 4 + 6 / 8) / 2, math.sqrt((9 + 36) / 2)),
        # Two series are pooled: errors 1, 2 and 0, 5 (actuals 2, 4, 5, 10).
        ([[1, 2, 4], [5, 5, 10]], 1, (1 / 2 + 2 / 4 + 0 / 5 + 5 / 10) / 4,
         math.sqrt((1 + 4 + 0 + 25) / 4)),
    ],
    ids=["simple", "zero-actual", "horizon-2", "two-series"],
)
def test_evaluate_by_hand(series, horizon: int, mape: float, rmse: float) -> None:
    score = evaluate(LastValue(), series, horizon=horizon)
    assert score.mape == pytest.approx(mape, rel=1e-12)
    assert score.rmse == pytest.approx(rmse, rel=1e-12)


def test_evaluate_mape_is_nan_when_every_actual_is_zero() -> None:
    score = evaluate(LastValue(), [3, 0, 0])
    assert math.isnan(score.mape)
    assert score.rmse == pytest.approx(math.sqrt((9 + 0) / 2))


def test_evaluate_resets_first_and_ends_updated() -> None:
    forecaster = LastValue()
    forecaster.update([100.0, 100.0])  # a different n: evaluate must reset
    evaluate(forecaster, [1, 2, 3])
    np.testing.assert_array_equal(forecaster.forecast(1), [[3.0]])


def test_holt_winters_beats_last_value_on_a_seasonal_series() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(2000)
    series = rng.poisson(100 + 60 * np.sin(2 * np.pi * t / 50)).astype(float)
    seasonal = evaluate(HoltWinters(season_length=50), series, horizon=10)
    naive = evaluate(LastValue(), series, horizon=10)
    assert seasonal.rmse < 0.6 * naive.rmse


# -- factory and errors ------------------------------------------------------------------------


def test_make() -> None:
    assert set(FORECASTERS) == {"last", "ewma", "holt-winters"}
    assert isinstance(make("last"), LastValue)
    assert make("ewma", alpha=0.5).alpha == 0.5
    hw = make("holt-winters", season_length=24, gamma=0.2)
    assert isinstance(hw, HoltWinters) and (hw.season_length, hw.gamma) == (24, 0.2)
    assert repr(hw) == "HoltWinters(alpha=0.3, beta=0.05, gamma=0.2, season_length=24)"


@pytest.mark.parametrize(
    ("build", "field", "fragment"),
    [
        (lambda: make("arima"), "name", "allowed: last, ewma, holt-winters"),
        (lambda: make("ewma", beta=0.1), "beta", "allowed: alpha"),
        (lambda: make("last", alpha=0.1), "alpha", "allowed: none"),
        (lambda: EWMA(0), "alpha", "alpha must be in (0, 1]"),
        (lambda: EWMA(1.5), "alpha", "(0, 1]"),
        (lambda: EWMA(math.nan), "alpha", "(0, 1]"),
        (lambda: EWMA("0.3"), "alpha", "must be a number"),
        (lambda: EWMA(True), "alpha", "must be a number"),
        (lambda: HoltWinters(beta=-0.1), "beta", "beta must be in [0, 1]"),
        (lambda: HoltWinters(gamma=2), "gamma", "gamma must be in [0, 1]"),
        (lambda: HoltWinters(season_length=0), "season_length", "integer >= 1"),
        (lambda: HoltWinters(season_length=2.5), "season_length", "integer >= 1"),
    ],
    ids=["unknown-name", "unknown-param", "no-params", "alpha-zero", "alpha-big", "alpha-nan",
         "alpha-text", "alpha-bool", "beta", "gamma", "season-zero", "season-float"],
)
def test_parameter_errors(build, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert fragment in str(info.value)
    assert info.value.field == field


def _updated(*values) -> Forecaster:
    forecaster = EWMA()
    for value in values:
        forecaster.update(value)
    return forecaster


@pytest.mark.parametrize(
    ("call", "field", "fragment"),
    [
        (lambda: EWMA().forecast(1), "observed", "forecast() before any update()"),
        (lambda: _updated(1.0).forecast(0), "horizon", "horizon must be an integer >= 1"),
        (lambda: _updated(1.0).forecast(1.5), "horizon", "integer >= 1"),
        (lambda: _updated(1.0).forecast(True), "horizon", "integer >= 1"),
        (lambda: _updated([1.0, 2.0], [1.0]), "observed", "1 values but this forecaster tracks 2"),
        (lambda: _updated([[1.0]]), "observed", "1-D array of shape (n,)"),
        (lambda: _updated([]), "observed", "got shape (0,)"),
        (lambda: _updated(math.nan), "observed", "finite, non-negative"),
        (lambda: _updated(-1.0), "observed", "finite, non-negative"),
        (lambda: _updated("many"), "observed", "must be a number"),
        (lambda: evaluate(LastValue(), [1.0]), "series", "needs at least 2"),
        (lambda: evaluate(LastValue(), [1, 2, 3], horizon=3), "series", "needs at least 4"),
        (lambda: evaluate(LastValue(), [1, -2, 3]), "series", "non-negative"),
        (lambda: evaluate(LastValue(), np.ones((2, 2, 2))), "series", "(n_slots,) or (n, n_slots)"),
        (lambda: evaluate("last", [1, 2]), "forecaster", "must be a Forecaster"),
    ],
    ids=["before-update", "horizon-zero", "horizon-float", "horizon-bool", "n-changes",
         "two-dimensional", "empty", "nan", "negative", "text", "short-series",
         "short-for-horizon", "negative-series", "3d-series", "not-a-forecaster"],
)
def test_usage_errors(call, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    assert fragment in str(info.value)
    assert info.value.field == field
