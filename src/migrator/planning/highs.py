"""HiGHS instances, runs held to their time limit, and runs checked against their objective.

The one place the planning stage makes a ``highspy.Highs``: the planner's program, the
split's parts and the split's bound (``split_bound``) all take theirs from here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import highspy
import numpy as np

__all__ = ["TIME_LIMIT_STATUS", "HighsRun", "checked_run", "new_highs", "relative_gap", "run_within"]

log = logging.getLogger(__name__)

_FEASIBLE = 2  # HiGHS kSolutionStatusFeasible
#: Objectives are Goodput, counted in requests: a vector worth a thousandth of a request more
#: or less than HiGHS reports is no mismatch. (Relative tolerance alone re-solved parts whose
#: objective was 0 and whose vector came back worth 1.5e-5, columns at HiGHS's feasibility
#: tolerance from 0: three parts of a suite decision, each solved twice.)
_ABSOLUTE_TOLERANCE = 1e-3
#: The status of a run its time limit stopped (HiGHS's own words, also for run_within's timer).
TIME_LIMIT_STATUS = "Time limit reached"

_BANNER_LOCK = threading.Lock()
_banner_shown = False


def new_highs() -> highspy.Highs:
    """A silent Highs instance. HiGHS prints its banner on stdout when the process makes its
    first instance, before any option can be set; a library must not print (and `--json`
    output must stay parseable), so the file descriptor is pointed at /dev/null meanwhile.
    Only the first instance needs that, and the lock keeps threads (the split's parts, solved
    side by side) from interleaving the redirection, which could leave stdout on /dev/null."""
    global _banner_shown
    with _BANNER_LOCK:
        if _banner_shown:
            h = highspy.Highs()
        else:
            sys.stdout.flush()
            saved = os.dup(1)
            try:
                with open(os.devnull, "wb") as null:
                    os.dup2(null.fileno(), 1)
                    h = highspy.Highs()
            finally:
                os.dup2(saved, 1)
                os.close(saved)
            _banner_shown = True
    h.setOptionValue("output_flag", False)
    return h


def run_within(h: highspy.Highs, time_limit_s: float | None) -> None:
    """``h.run()``, stopped at ``time_limit_s`` whatever HiGHS is doing then.

    HiGHS checks its own ``time_limit`` in the simplex and the branch-and-bound, not
    throughout presolve or while it completes a warm start: a 2-GPU program over a
    10000-slot horizon spent 2.4-4.5 s there under a 1 s limit. A timer cancels the solve
    (``cancelSolve``, which HiGHS honours at its next interrupt check, within about a second
    at that size); the run then ends as HiGHS's time limit would, with the best plan found."""
    if time_limit_s is None:
        h.run()
        return
    h.setOptionValue("time_limit", max(float(time_limit_s), 0.0))
    h.HandleUserInterrupt = True
    timer = threading.Timer(max(float(time_limit_s), 0.0), h.cancelSolve)
    timer.daemon = True
    timer.start()
    try:
        h.run()
    finally:
        timer.cancel()


def relative_gap(objective: float, bound: float) -> float:
    """HiGHS's relative gap, |bound - objective| / |bound|, for a plan it did not find."""
    if not np.isfinite(bound) or bound == 0:
        return float("inf") if objective != bound else 0.0
    return abs(bound - objective) / abs(bound)


@dataclass(frozen=True)
class HighsRun:
    """One HiGHS run: its status, bound and solution vector, with the vector's own value
    (``c . x``) beside the objective HiGHS reports for it."""

    status: str
    feasible: bool
    bound: float
    mip_gap: float
    objective: float
    values: np.ndarray
    value: float

    @property
    def consistent(self) -> bool:
        return abs(self.value - self.objective) <= max(1e-6 * abs(self.objective), _ABSOLUTE_TOLERANCE)

    @classmethod
    def of(cls, h: highspy.Highs, cost: np.ndarray) -> HighsRun:
        """What ``h`` holds after ``run()``; ``cost`` its column costs."""
        info = h.getInfo()
        feasible = info.primal_solution_status == _FEASIBLE
        values = np.asarray(h.getSolution().col_value) if feasible else np.zeros(0)
        return cls(
            status=_status_words(h), feasible=feasible, bound=float(info.mip_dual_bound),
            mip_gap=float(info.mip_gap), objective=float(info.objective_function_value), values=values,
            value=float(np.dot(cost, values)) if feasible else float("nan"),
        )


def _status_words(h: highspy.Highs) -> str:
    """HiGHS's model status in the words of what stopped the run."""
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInterrupt:  # run_within's timer: the time limit
        return TIME_LIMIT_STATUS
    if status == highspy.HighsModelStatus.kSolutionLimit:  # HiGHS's name for mip_max_nodes too
        return "Node limit reached"
    return h.modelStatusToString(status)


def checked_run(run: Callable[[float | None, bool], HighsRun], time_limit_s: float | None,
                mip_gap: float = 0.0) -> HighsRun:
    """``run(time_limit_s, presolve=True)``, checked: HiGHS 1.16 can report the optimum's
    objective with another vector (the warm start's) when presolve solves the program
    (docs/model.md, "Checking the solver"); the vector is valid but worth less than reported.
    Then ``run`` again without presolve in the time left and keep the vector worth more; the
    value reported is always the vector's own, the bound the tighter one.

    Where HiGHS's own bound proves the vector within ``mip_gap`` (the gap asked for), it is
    kept without a second run: HiGHS 1.16 also reports objectives one reconfiguration penalty
    above the vector it returns (a second run found the same vector's value on every one of
    the suite's cases examined), and the bound, valid whatever the objective says, is what
    certifies the vector."""
    started = time.perf_counter()
    first = run(time_limit_s, True)
    if not first.feasible or first.consistent:
        return first
    proven = relative_gap(first.value, first.bound)
    if first.value <= first.bound and proven <= mip_gap:
        log.info("HiGHS reported objective %.6g for a solution worth %.6g, within %.3g of its bound %.6g: kept",
                 first.objective, first.value, proven, first.bound)
        return dataclasses.replace(first, objective=first.value, mip_gap=proven,
                                   status=first.status + "; HiGHS's objective did not match its solution, which "
                                                         "its bound proves within the gap: kept at its own value")
    # Info, not a warning: the repair below is HiGHS's to need and ours to make; the plan's
    # status records it, and a replay met it on a few decisions a minute (docs/model.md).
    log.info("HiGHS returned a solution worth %.6g for objective %.6g (%s); solving again without presolve",
             first.value, first.objective, first.status)
    left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - started)
    second = run(left, False) if left is None or left > 0.01 else None
    best = second if second is not None and second.feasible and second.value >= first.value else first
    note = "; HiGHS's solution did not match its objective, " + (
        "solved again without presolve" if best is second else "its solution kept at its own value")
    bound = min(first.bound, second.bound) if second is not None and second.feasible else first.bound
    return dataclasses.replace(best, status=best.status + note, bound=bound, objective=best.value,
                               mip_gap=relative_gap(best.value, bound))
