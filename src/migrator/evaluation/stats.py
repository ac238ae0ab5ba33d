"""Confidence intervals over seeds: Student-t, two-sided, 95 %.

The seeds of a comparison are independent replays, few of them (1 to 10 typically), of
figures whose spread is unknown: the interval for their mean is Student's,
``mean ± t(0.975, n - 1) * s / sqrt(n)`` with ``s`` the sample standard deviation
(``ddof=1``). One seed has no interval (None).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["CI_LEVEL", "CI_WORDS", "mean_ci", "t_quantile_975"]

CI_LEVEL = 0.95
#: How reports name the interval.
CI_WORDS = "95 % CI (Student t)"

# t(0.975, df) for df = 1..30 (the standard table, to 9 decimals; a test holds it to scipy's).
_T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
    2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
    2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
    2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
    2.045229642, 2.042272456,
)
_Z975 = 1.959963984540054  # the normal distribution's 0.975 quantile


def t_quantile_975(df: int) -> float:
    """Student's t 0.975 quantile with ``df`` degrees of freedom (``df >= 1``): the table up
    to 30, then the Cornish-Fisher expansion in 1/df to the fourth order (error below 1e-6
    from df = 31 on)."""
    if isinstance(df, bool) or not isinstance(df, (int, np.integer)) or df < 1:
        raise ConfigError(f"df must be an integer >= 1, got {df!r}", field="df")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def mean_ci(values: Sequence[float] | np.ndarray) -> tuple[float, float | None]:
    """``(mean, half-width)`` of the 95 % Student-t interval of the mean of ``values``; the
    half-width is None for fewer than two values."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ConfigError("mean_ci needs at least one value", field="values")
    mean = float(array.mean())
    if array.size < 2:
        return mean, None
    spread = float(array.std(ddof=1))
    return mean, t_quantile_975(int(array.size - 1)) * spread / math.sqrt(array.size)
