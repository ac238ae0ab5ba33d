"""The arrivals of one replay: a scored window, and an earlier warm-up the policies learn from.

A policy that sizes anything on an average (PARIS's partition, ``static``'s layout, the first
forecast of ``migrator``, Ekya's and Astraea's rate before they have observed a slot) takes it
from the **warm-up**, a stretch of traffic before the scored window that no grader scores,
never from the arrivals being scored. Only the oracle reads the scored arrivals (it is the
upper bound).

Where the warm-up comes from depends on the tenant's arrivals:

* **recorded** (``sample:``, ``csv:``): the slots just before the scored window in the same
  trace. The seed picks where the window starts (:func:`window_start`), so that several
  seeds replay different stretches of one recording; every recorded tenant of a scenario
  uses the same start, keeping their traces aligned in time;
* **synthetic**: an earlier period of the same process drawn with its own seed (the seed
  plus :data:`WARMUP_SEED_OFFSET`, out of the range of scored seeds), and the warm-up is
  that draw's last slots. The scored window is exactly ``Scenario.arrivals(seed)``.

By default the warm-up is one whole earlier period (the scenario's ``duration_s``) for
synthetic arrivals; on a recording, half the slots the scored window leaves spare (at most
the window's length), the other half left for the seeds to move the window over.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..workload.scenario import Scenario

__all__ = ["WARMUP_SEED_OFFSET", "ArrivalWindows", "arrival_windows", "window_start"]

#: Added to a synthetic tenant's seed to draw its warm-up: beyond every seed a scenario takes
#: (at most 2**32 - 1, plus the tenant index), so a warm-up never repeats a scored draw.
WARMUP_SEED_OFFSET = 2**40


@dataclass(frozen=True)
class ArrivalWindows:
    """Per-slot arrival counts of a replay, shape (n_tenants, slots) each.

    ``scored`` is what the graders score and the policies observe slot by slot; ``warmup``
    is what the policies may know beforehand. ``start_slot`` is where ``scored`` starts in
    the recorded traces (None with no recorded tenant)."""

    scored: np.ndarray = field(repr=False)
    warmup: np.ndarray = field(repr=False)
    slot_s: float
    start_slot: int | None = None

    @property
    def warmup_slots(self) -> int:
        return int(self.warmup.shape[1])

    @property
    def warmup_s(self) -> float:
        return self.warmup_slots * self.slot_s

    def mean_rps(self) -> np.ndarray:
        """Each tenant's average arrival rate over the warm-up, shape (n_tenants,)."""
        if self.warmup_slots == 0:
            return np.zeros(self.warmup.shape[0])
        return self.warmup.mean(axis=1) / self.slot_s


def window_start(seed: int, warmup_slots: int, choices: int) -> int:
    """The slot a recorded trace's scored window starts at for ``seed``.

    One of ``choices`` starts after the warm-up, ``warmup_slots + (seed * stride) % choices``,
    with ``stride`` the integer nearest ``0.618 * choices`` that shares no factor with it: any
    ``choices`` consecutive seeds get different windows, spread over the trace (seed 0 starts
    right after the warm-up).
    """
    if choices < 1:
        raise ConfigError(f"choices must be at least 1, got {choices!r}", field="choices")
    stride = _coprime_stride(choices)
    return warmup_slots + (int(seed) * stride) % choices


def _coprime_stride(choices: int) -> int:
    start = max(1, round(choices * (math.sqrt(5) - 1) / 2))
    for step in range(choices):
        for candidate in (start + step, start - step):
            if 1 <= candidate and math.gcd(candidate, choices) == 1:
                return candidate
    return 1


def arrival_windows(scenario: Scenario, seed: int, n_slots: int, warmup_s: float | None = None) -> ArrivalWindows:
    """The scored window (``n_slots`` slots) and the warm-up before it, for ``seed``.

    Parameters
    ----------
    warmup_s : float, optional
        Seconds of warm-up, in (0, the scenario's ``duration_s``]; default as the module
        docstring says. A recorded trace must hold the warm-up and the scored window.
    """
    recorded = {i: c for i in range(len(scenario.tenants)) if (c := scenario.recorded_counts(i)) is not None}
    warmup_slots = _warmup_slots(scenario, n_slots, warmup_s, recorded)
    shortest = min((len(c) for c in recorded.values()), default=n_slots + warmup_slots)
    start = window_start(seed, warmup_slots, shortest - n_slots - warmup_slots + 1)
    # Synthetic rows: the seed's draw, scored; an earlier draw's last slots, the warm-up.
    scored = scenario.arrivals(seed).counts[:, :n_slots].astype(np.float64)
    warmup = _synthetic_warmup(scenario, seed, warmup_slots) if len(recorded) < len(scenario.tenants) else None
    if warmup is None:
        warmup = np.zeros((len(scenario.tenants), warmup_slots))
    for i, counts in recorded.items():
        scored[i] = counts[start : start + n_slots]
        warmup[i] = counts[start - warmup_slots : start]
    return ArrivalWindows(scored=scored, warmup=warmup, slot_s=scenario.slot_s, start_slot=start if recorded else None)


def _warmup_slots(scenario: Scenario, n_slots: int, warmup_s: float | None, recorded: dict[int, np.ndarray]) -> int:
    room = min((len(c) for c in recorded.values()), default=None)
    if warmup_s is None:
        if room is None:
            return scenario.n_slots
        slack = room - n_slots
        if slack < 1:
            first = min(recorded)
            raise ConfigError(
                f"tenants[{first}].arrivals: the recorded trace has {room} slots, all of them scored "
                f"({n_slots} slots of {scenario.slot_s:g} s); the warm-up the policies size on needs "
                "earlier slots: replay a shorter duration",
                field=f"tenants[{first}].arrivals",
            )
        return max(1, min(n_slots, slack // 2))
    ok = isinstance(warmup_s, (int, float)) and not isinstance(warmup_s, bool) and math.isfinite(warmup_s)
    if not ok or not 0 < warmup_s <= scenario.duration_s:
        raise ConfigError(
            f"warmup_s must be a number of seconds in (0, {scenario.duration_s:g}] (the scenario's "
            f"duration_s), got {warmup_s!r}",
            field="warmup_s",
        )
    slots = max(1, int(round(warmup_s / scenario.slot_s)))
    if room is not None and room < slots + n_slots:
        first = min(recorded, key=lambda i: len(recorded[i]))
        raise ConfigError(
            f"tenants[{first}].arrivals: the recorded trace has {room} slots, fewer than the warm-up "
            f"({slots}) and the scored window ({n_slots}) need; shorten warmup_s or the duration",
            field=f"tenants[{first}].arrivals",
        )
    return slots


def _synthetic_warmup(scenario: Scenario, seed: int, warmup_slots: int) -> np.ndarray:
    """The last ``warmup_slots`` of an earlier draw of every tenant's arrivals (recorded
    tenants' rows are drawn from their trace's start and not used)."""
    tenants = []
    for i, tenant in enumerate(scenario.tenants):
        spec = dict(tenant.arrivals)
        if "synthetic" in spec:
            spec["seed"] = int(spec.get("seed", seed + i)) + WARMUP_SEED_OFFSET
        tenants.append(dataclasses.replace(tenant, arrivals=spec))
    earlier = dataclasses.replace(scenario, tenants=tuple(tenants))
    counts = earlier.arrivals(seed).counts.astype(np.float64)
    return counts[:, counts.shape[1] - warmup_slots :]
