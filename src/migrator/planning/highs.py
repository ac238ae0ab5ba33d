"""HiGHS instances and the threads that solve separate programs side by side.

The one place the planning stage makes a ``highspy.Highs``: the planner's program, the
split's parts and the split's bound (``split_bound``) all take theirs from here.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import highspy

__all__ = ["new_highs", "side_by_side"]

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


def side_by_side(jobs: Sequence[Callable[[], Any]], lanes: int) -> list[Any]:
    """The results of ``jobs`` in order, run by ``lanes`` threads (one after another when 1).
    HiGHS releases the GIL while it solves, so separate programs solve in parallel."""
    if lanes <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="migrator-part") as pool:
        return list(pool.map(lambda job: job(), jobs))
