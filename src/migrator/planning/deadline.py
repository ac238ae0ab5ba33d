"""A decision's deadline: what is left of ``time_limit_s`` for each stage of a decision.

:meth:`Planner.plan <migrator.planning.planner.Planner.plan>` must return within its time
limit whatever the size (issue 16, item 3). Every stage after the problem's build (the
starting plans, the solver, the split's parts and bound) asks the deadline how long it may
take; the time that finishing the plan needs (the retraining pass, re-scoring, decoding) is
held back as a **reserve**, measured on the last decision, so that the stages before it do
not spend it. A stage the deadline does not reach is skipped, and the plan says so.
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["MAX_LAG_SHARE", "SKIPPED_NOTE", "Deadline", "FinishReserve"]

#: How the status of a plan whose deadline skipped stages goes on (:meth:`Deadline.note`).
SKIPPED_NOTE = "; time limit: "
#: The most of the limit held back for the solver's lag. HiGHS's own lag is tens of
#: milliseconds (about 0.1 s in a cold 128-GPU decision); a longer overrun is the machine
#: stalling, which holding time back does not prevent. Uncapped, one 1.5 s stall had the
#: next 50 decisions hold back the whole limit and keep the starting plan (docs/model.md).
MAX_LAG_SHARE = 0.25


class Deadline:
    """``limit_s`` seconds from now (``clock``'s), of which ``reserve_s`` is kept for finishing
    and ``lag_s`` for the solver's lag behind its time limit.

    Parameters
    ----------
    limit_s : float
        The decision's time limit (``PlannerConfig.time_limit_s``).
    reserve_s : float
        Seconds held back for the stages after the solve; :meth:`left` never hands them out.
    clock : callable, optional
        Seconds as a float, ``time.perf_counter`` by default (tests pass a fake one).
    lag_s : float
        Seconds a solve given all that :meth:`left` hands out is expected to run past it
        (:meth:`lag`): HiGHS stops some tens of milliseconds after its time limit. Held
        back too, so that the lag does not eat the reserve: it alone skipped the retraining
        pass on every other decision of a replay, the plan flipping between retraining and
        serving each time (docs/model.md, "A decision's deadline", "The solver's lag").
        At most ``MAX_LAG_SHARE`` of the limit.
    """

    def __init__(self, limit_s: float, reserve_s: float = 0.0, clock: Callable[[], float] = time.perf_counter,
                 lag_s: float = 0.0) -> None:
        self.clock = clock
        self.started = clock()
        self.limit_s = float(limit_s)
        self.lag_s = min(max(float(lag_s), 0.0), MAX_LAG_SHARE * self.limit_s)
        self.hold(reserve_s)
        self.skipped: list[str] = []  # the stages it did not reach, in order
        self.solved_at: float | None = None  # when the solve stage ended (what follows is finishing)

    def hold(self, reserve_s: float) -> None:
        """Keep ``reserve_s`` for finishing from now on (once it can be estimated)."""
        self.reserve_s = min(max(float(reserve_s), 0.0), self.limit_s)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def _handed_out_until(self) -> float:
        """The clock reading up to which :meth:`left` hands time out."""
        return self.started + self.limit_s - self.reserve_s - self.lag_s

    def left(self) -> float:
        """Seconds the stages before finishing may still take (0 when none)."""
        return max(0.0, self._handed_out_until() - self.clock())

    def reaches(self, stage: str, needs_s: float = 0.0) -> bool:
        """Whether ``stage`` may start (more than ``needs_s`` left); if not, it is recorded
        as skipped so that the plan's status can say what the time limit cut."""
        if self.left() > needs_s:
            return True
        self.skipped.append(stage)
        return False

    def solved(self) -> None:
        """The solve stage is over: what follows (merging, scoring, finishing) is what the
        reserve is for."""
        self.solved_at = self.clock()

    def lag(self) -> float:
        """Seconds the solve stage ran past the last moment :meth:`left` handed out (0 where
        it ended before): what the next decisions hold back as ``lag_s``. 0 where nothing was
        handed out: no solve ran to lag, and counting the time it took to get to the solve
        stage as a lag would have each such decision hold back more for the next."""
        if self._handed_out_until() <= self.started:
            return 0.0
        solved = self.solved_at if self.solved_at is not None else self.clock()
        return max(0.0, solved - self._handed_out_until())

    def finishing_late(self) -> bool:
        """Whether finishing must stop now to return within the limit: a quarter of the
        reserve (decoding the plan) is all that is left of it."""
        late = self.limit_s - self.elapsed() <= 0.25 * self.reserve_s
        if late:
            self.skipped.append("retraining pass on some tenants")
        return late

    def note(self) -> str:
        """The status note for the stages skipped ("" where none was)."""
        if not self.skipped:
            return ""
        return f"{SKIPPED_NOTE}{', '.join(dict.fromkeys(self.skipped))} skipped, the best plan found kept"


class FinishReserve:
    """How long finishing a plan takes, learnt from the decisions so far.

    Before any decision has finished, finishing is estimated as ``per_score`` times the time
    one Goodput estimate of a plan took in this decision; afterwards, the slowest of the last
    few finishes but one (the slowest where only one is known), with a margin: one finish the
    machine stalled in is not what finishing takes, and counted it would leave the next
    decisions no time to plan. The retraining pass stops itself where finishing runs late
    (:meth:`Deadline.finishing_late`). (At 512 GPUs / 1024 tenants finishing took about six
    scores' time and the greedy start's retraining step, which runs after its deadline, three
    more.)

    It learns the solver's lag (:meth:`Deadline.lag`) the same way, as the largest of the last
    ``remembered_lags``: the lag shows only on decisions whose solve reaches its limit, which
    may be many decisions apart.
    """

    per_score = 10.0
    margin = 1.5
    remembered = 5
    remembered_lags = 50

    def __init__(self) -> None:
        self._finishes: list[float] = []
        self._lags: list[float] = []

    def estimate(self, score_s: float | None) -> float:
        if self._finishes:
            slowest = sorted(self._finishes, reverse=True)
            return self.margin * slowest[min(1, len(slowest) - 1)]
        return self.per_score * score_s if score_s is not None else 0.0

    def lag(self) -> float:
        """The solver's lag to hold back (``Deadline``'s ``lag_s``): the largest remembered,
        with the margin (it varies: 16-41 ms over one replay of the built-in scenario)."""
        return self.margin * max(self._lags, default=0.0)

    def record(self, seconds: float, lag_s: float = 0.0) -> None:
        self._finishes = [*self._finishes, float(seconds)][-self.remembered :]
        self._lags = [*self._lags, float(lag_s)][-self.remembered_lags :]
