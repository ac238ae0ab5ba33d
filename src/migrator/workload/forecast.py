"""Online forecasters of per-slot arrival counts, vectorised over tenants.

The control loop calls ``update`` once per slot with the counts just observed (one value per
tenant) and ``forecast(horizon)`` before re-planning. Every forecaster keeps a fixed-size state
(arrays of shape ``(n,)``, plus ``(n, season_length)`` for Holt-Winters), so an update costs
O(1) per tenant however long the controller runs.

* :class:`LastValue` -- tomorrow is like today.
* :class:`EWMA` -- exponentially weighted level, flat forecast.
* :class:`HoltWinters` -- additive level, trend and season.

:func:`make` builds one by name (for configuration files); :func:`evaluate` scores one on a
series with MAPE and RMSE.

Forecasts are clipped at zero, since counts cannot be negative; the internal state is not
clipped, so a trend that dips below zero recovers exactly. ``forecast`` before the first
``update`` raises :class:`~migrator.errors.ConfigError`: a silent zero forecast would look like
"no load" to the planner.
"""

from __future__ import annotations

import inspect
import math
import operator
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "EWMA",
    "FORECASTERS",
    "ForecastError",
    "Forecaster",
    "HoltWinters",
    "LastValue",
    "evaluate",
    "make",
]


# -- the interface -----------------------------------------------------------------------------


class Forecaster(ABC):
    """An online forecaster of ``n`` series (one per tenant), ``n`` fixed by the first update.

    Subclasses implement the state hooks ``_start``, ``_step``, ``_predict`` and ``_clear``;
    this class validates inputs, fixes ``n`` and clips forecasts at zero.
    """

    def __init__(self) -> None:
        self._n: int | None = None

    @property
    def n(self) -> int | None:
        """Number of series, or None before the first update."""
        return self._n

    def update(self, observed: float | np.ndarray) -> None:
        """Add one slot's observations.

        Parameters
        ----------
        observed
            A scalar (one series) or an array of shape ``(n,)``: finite, non-negative counts.
        """
        values = self._check_observed(observed)
        if self._n is None:
            self._n = values.shape[0]
            self._start(values)
        else:
            self._step(values)

    def forecast(self, horizon: int) -> np.ndarray:
        """Forecast the next ``horizon`` slots; shape ``(n, horizon)``, non-negative.

        Column ``h - 1`` is the forecast for ``h`` slots after the last update.

        Raises
        ------
        ConfigError
            Before the first update, or when ``horizon`` is not a positive integer.
        """
        steps = _check_horizon(horizon)
        if self._n is None:
            raise ConfigError(
                f"{type(self).__name__}.forecast() before any update(): call "
                "update(observed) with at least one slot's counts first",
                field="observed",
            )
        return np.maximum(self._predict(steps), 0.0)

    def reset(self) -> None:
        """Forget every observation (and ``n``), as if newly built."""
        self._n = None
        self._clear()

    def _check_observed(self, observed: Any) -> np.ndarray:
        try:
            values = np.asarray(observed, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(
                f"observed must be a number or a 1-D array of numbers, got {observed!r}",
                field="observed",
            ) from None
        if values.ndim == 0:
            values = values.reshape(1)
        expected = "(n,)" if self._n is None else f"({self._n},) as in the first update"
        if values.ndim != 1 or values.shape[0] == 0:
            raise ConfigError(
                f"observed must be a scalar or a 1-D array of shape {expected}, "
                f"got shape {values.shape}",
                field="observed",
            )
        if self._n is not None and values.shape[0] != self._n:
            raise ConfigError(
                f"observed has {values.shape[0]} values but this forecaster tracks {self._n} "
                "series (fixed by the first update; call reset() to change it)",
                field="observed",
            )
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ConfigError(
                f"observed must be finite, non-negative counts, got {values.tolist()}",
                field="observed",
            )
        return values

    # -- hooks ------------------------------------------------------------------------------

    @abstractmethod
    def _start(self, values: np.ndarray) -> None:
        """Initialise the state from the first observation, shape ``(n,)``."""

    @abstractmethod
    def _step(self, values: np.ndarray) -> None:
        """Fold one more observation, shape ``(n,)``, into the state in O(n)."""

    @abstractmethod
    def _predict(self, horizon: int) -> np.ndarray:
        """Unclipped forecast of shape ``(n, horizon)``."""

    @abstractmethod
    def _clear(self) -> None:
        """Drop the state."""


def _check_horizon(horizon: Any) -> int:
    try:
        steps = operator.index(horizon)
    except TypeError:
        steps = None
    if steps is None or isinstance(horizon, bool) or steps < 1:
        raise ConfigError(f"horizon must be an integer >= 1, got {horizon!r}", field="horizon")
    return steps


def _check_weight(value: Any, name: str, *, allow_zero: bool) -> float:
    """A smoothing weight in (0, 1], or [0, 1] when ``allow_zero``."""
    interval = "[0, 1]" if allow_zero else "(0, 1]"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number in {interval}, got {value!r}", field=name)
    try:
        weight = float(value)
    except OverflowError:  # an integer beyond the largest float (and too long to print)
        raise ConfigError(f"{name} must be in {interval}, got a larger integer", field=name) from None
    low_ok = weight >= 0 if allow_zero else weight > 0
    if not (math.isfinite(weight) and low_ok and weight <= 1):
        raise ConfigError(f"{name} must be in {interval}, got {value!r}", field=name)
    return weight


def _flat(level: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(level[:, None], horizon, axis=1)


# -- forecasters -------------------------------------------------------------------------------


class LastValue(Forecaster):
    """Forecast every future slot as the last observed value (the naive forecast)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: np.ndarray | None = None

    def _start(self, values: np.ndarray) -> None:
        self._last = values.copy()

    def _step(self, values: np.ndarray) -> None:
        assert self._last is not None
        self._last[:] = values

    def _predict(self, horizon: int) -> np.ndarray:
        assert self._last is not None
        return _flat(self._last, horizon)

    def _clear(self) -> None:
        self._last = None

    def __repr__(self) -> str:
        return "LastValue()"


class EWMA(Forecaster):
    """Exponentially weighted moving average: ``level += alpha * (x - level)``, flat forecast.

    The level starts at the first observation (no bias towards zero).

    Parameters
    ----------
    alpha
        Weight of the newest observation, in (0, 1]; ``alpha = 1`` is :class:`LastValue`.
    """

    def __init__(self, alpha: float = 0.3) -> None:
        super().__init__()
        self.alpha = _check_weight(alpha, "alpha", allow_zero=False)
        self._level: np.ndarray | None = None

    def _start(self, values: np.ndarray) -> None:
        self._level = values.copy()

    def _step(self, values: np.ndarray) -> None:
        assert self._level is not None
        self._level += self.alpha * (values - self._level)

    def _predict(self, horizon: int) -> np.ndarray:
        assert self._level is not None
        return _flat(self._level, horizon)

    def _clear(self) -> None:
        self._level = None

    def __repr__(self) -> str:
        return f"EWMA(alpha={self.alpha!r})"


class HoltWinters(Forecaster):
    """Additive Holt-Winters: level, trend and a season of ``season_length`` slots.

    With ``m = season_length``, after observation ``x`` whose season slot held ``s``::

        level' = alpha * (x - s) + (1 - alpha) * (level + trend)
        trend' = beta * (level' - level) + (1 - beta) * trend
        s'     = gamma * (x - level') + (1 - gamma) * s
        forecast(h) = level' + h * trend' + (season slot of that future time)

    Initialisation (online, from the first two seasons, ``2 m`` observations held in a
    fixed ``(n, 2 m)`` buffer that is dropped afterwards): the trend is the difference of the
    two season means divided by ``m``; the season is the average over both seasons of the
    observations minus that straight line; the level is the line's value at the last
    observation. A series that is exactly linear plus a periodic pattern is therefore
    forecast exactly from then on. During warm-up (fewer than ``2 m`` observations) the
    forecast is flat at the mean of the observations so far.

    Parameters
    ----------
    alpha
        Level weight, in (0, 1].
    beta
        Trend weight, in [0, 1] (0 keeps the initial trend).
    gamma
        Season weight, in [0, 1] (0 keeps the initial season).
    season_length
        Slots per season, an integer >= 1 (e.g. 60 for an hourly cycle of one-minute slots).
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.05,
        gamma: float = 0.1,
        season_length: int = 60,
    ) -> None:
        super().__init__()
        self.alpha = _check_weight(alpha, "alpha", allow_zero=False)
        self.beta = _check_weight(beta, "beta", allow_zero=True)
        self.gamma = _check_weight(gamma, "gamma", allow_zero=True)
        self.season_length = _check_season_length(season_length)
        self._clear()

    @property
    def warmed_up(self) -> bool:
        """Whether the first two seasons have been seen and the model is initialised."""
        return self._level is not None

    def _clear(self) -> None:
        self._warmup: np.ndarray | None = None  # (n, 2 m) first observations
        self._seen = 0
        self._level: np.ndarray | None = None
        self._trend: np.ndarray | None = None
        self._season: np.ndarray | None = None  # (n, m), indexed by slot mod m
        self._phase = 0  # season index of the next observation

    def _start(self, values: np.ndarray) -> None:
        self._warmup = np.empty((values.shape[0], 2 * self.season_length))
        self._step(values)

    def _step(self, values: np.ndarray) -> None:
        if self._warmup is not None:
            self._warmup[:, self._seen] = values
            self._seen += 1
            if self._seen == self._warmup.shape[1]:
                self._initialise(self._warmup)
            return
        self._smooth(values)

    def _initialise(self, first: np.ndarray) -> None:
        m = self.season_length
        mean_1 = first[:, :m].mean(axis=1)
        mean_2 = first[:, m:].mean(axis=1)
        trend = (mean_2 - mean_1) / m
        # The straight line through both season means, evaluated at every observed slot;
        # mean_1 sits at the centre of the first season, slot (m - 1) / 2.
        slots = np.arange(2 * m)
        line = mean_1[:, None] + trend[:, None] * (slots - (m - 1) / 2)
        detrended = first - line
        self._season = (detrended[:, :m] + detrended[:, m:]) / 2
        self._level = line[:, -1].copy()
        self._trend = trend
        self._phase = 0  # 2 m observations seen: the next one is season slot 0 again
        self._warmup = None  # the buffer is not needed again: the state stays O(n m)

    def _smooth(self, values: np.ndarray) -> None:
        assert self._level is not None and self._trend is not None and self._season is not None
        seasonal = self._season[:, self._phase]
        level = self.alpha * (values - seasonal) + (1 - self.alpha) * (self._level + self._trend)
        self._trend = self.beta * (level - self._level) + (1 - self.beta) * self._trend
        self._season[:, self._phase] = self.gamma * (values - level) + (1 - self.gamma) * seasonal
        self._level = level
        self._phase = (self._phase + 1) % self.season_length

    def _predict(self, horizon: int) -> np.ndarray:
        if self._level is None:
            assert self._warmup is not None
            return _flat(self._warmup[:, : self._seen].mean(axis=1), horizon)
        assert self._trend is not None and self._season is not None
        steps = np.arange(1, horizon + 1)
        seasonal = self._season[:, (self._phase + steps - 1) % self.season_length]
        return self._level[:, None] + self._trend[:, None] * steps + seasonal

    def __repr__(self) -> str:
        return (
            f"HoltWinters(alpha={self.alpha!r}, beta={self.beta!r}, gamma={self.gamma!r}, "
            f"season_length={self.season_length!r})"
        )


#: Longest season, in slots: a day of one-second slots. Holt-Winters keeps ``2 season_length``
#: observations per series while it warms up, allocated at the first update, so the length
#: is bounded where it is given rather than when the memory runs out.
MAX_SEASON_LENGTH = 86_400


def _check_season_length(value: Any) -> int:
    try:
        length = operator.index(value)
    except TypeError:
        length = None
    if length is None or isinstance(value, bool) or not 1 <= length <= MAX_SEASON_LENGTH:
        # repr refuses integers of 4300+ digits: such a length is shown by its size.
        big = length is not None and length.bit_length() > 64
        got = f"an integer of {length.bit_length()} bits" if big and length is not None else repr(value)
        raise ConfigError(
            f"season_length must be an integer >= 1 and <= {MAX_SEASON_LENGTH} (slots per season), "
            f"got {got}",
            field="season_length",
        )
    return length


# -- factory -----------------------------------------------------------------------------------

#: Forecaster names accepted by :func:`make`.
FORECASTERS: dict[str, type[Forecaster]] = {
    "last": LastValue,
    "ewma": EWMA,
    "holt-winters": HoltWinters,
}


def make(name: str, **params: Any) -> Forecaster:
    """Build a forecaster by name: ``"last"``, ``"ewma"`` or ``"holt-winters"``.

    ``params`` are the class's keyword arguments (e.g. ``make("ewma", alpha=0.5)``).

    Raises
    ------
    ConfigError
        For an unknown name or parameter (listing the allowed ones) or a bad value.
    """
    if not isinstance(name, str) or name not in FORECASTERS:
        raise ConfigError(
            f"unknown forecaster {name!r}; allowed: {', '.join(FORECASTERS)}", field="name"
        )
    cls = FORECASTERS[name]
    allowed = [p for p in inspect.signature(cls).parameters]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} for forecaster {name!r}; "
            f"allowed: {', '.join(allowed) or 'none'}",
            field=unknown[0],
        )
    return cls(**params)


# -- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastError:
    """Accuracy of a forecaster on a series.

    Attributes
    ----------
    mape
        Mean absolute percentage error as a fraction (0.1 = 10 %), over the forecasts whose
        actual value is non-zero (a zero actual has no percentage error); NaN when every
        actual value is zero.
    rmse
        Root mean squared error over all scored forecasts, in counts per slot.
    """

    mape: float
    rmse: float


def evaluate(forecaster: Forecaster, series: Any, horizon: int = 1) -> ForecastError:
    """Score ``forecaster`` walking forward through ``series``.

    The forecaster is reset, then for each slot ``t >= 1`` it forecasts ``horizon`` slots
    ahead from the observations before ``t``, and the last step of that forecast is compared
    with ``series[..., t + horizon - 1]``; then slot ``t`` is observed. Slot 0 is not
    scored (nothing has been observed yet). The forecaster ends updated with the whole series.

    Parameters
    ----------
    forecaster
        Any :class:`Forecaster`; it is reset first.
    series
        Counts of shape ``(n_slots,)`` or ``(n, n_slots)``, finite and non-negative.
    horizon
        How many slots ahead each scored forecast looks.

    Raises
    ------
    ConfigError
        When the series has fewer than ``horizon + 1`` slots (nothing to score).
    """
    if not isinstance(forecaster, Forecaster):
        raise ConfigError(
            f"forecaster must be a Forecaster (see make()), not {type(forecaster).__name__}",
            field="forecaster",
        )
    steps = _check_horizon(horizon)
    values = _check_series(series)
    n_slots = values.shape[1]
    if n_slots < steps + 1:
        raise ConfigError(
            f"series has {n_slots} slots; evaluating horizon {steps} needs at least {steps + 1}",
            field="series",
        )
    predicted, actual = [], []
    forecaster.reset()
    for t in range(n_slots):
        if 1 <= t and t + steps - 1 < n_slots:
            predicted.append(forecaster.forecast(steps)[:, -1])
            actual.append(values[:, t + steps - 1])
        forecaster.update(values[:, t])
    return _score(np.stack(predicted), np.stack(actual))


def _check_series(series: Any) -> np.ndarray:
    try:
        values = np.asarray(series, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("series must be an array of numbers", field="series") from None
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2 or values.shape[0] == 0:
        raise ConfigError(
            f"series must have shape (n_slots,) or (n, n_slots), got {values.shape}",
            field="series",
        )
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ConfigError("series must hold finite, non-negative counts", field="series")
    return values


def _score(predicted: np.ndarray, actual: np.ndarray) -> ForecastError:
    errors = predicted - actual
    rmse = float(np.sqrt(np.mean(errors**2)))
    nonzero = actual != 0
    # Checked explicitly: np.mean of an empty selection would warn and return NaN anyway.
    if np.any(nonzero):
        mape = float(np.mean(np.abs(errors[nonzero]) / actual[nonzero]))
    else:
        mape = math.nan
    return ForecastError(mape=mape, rmse=rmse)
