"""Benchmark helpers: the tests' reference on the import path, and the speed-up summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# --import-mode=importlib puts no folder on sys.path; the reference lives with the tests.
_HERE = Path(__file__).resolve().parent
for _folder in (str(_HERE), str(_HERE.parent / "tests")):
    if _folder not in sys.path:
        sys.path.insert(0, _folder)


class Timings:
    """Mean seconds per (case, method), to report the fast path (the C++ core or a Numba
    kernel) against its plain-Python reference in the same session.

    ``ratio_vs_reference`` is reference time / fast time: how many times faster it is.
    """

    def __init__(self) -> None:
        self.means: dict[tuple[str, str], float] = {}

    def record(self, case: str, method: str, benchmark: Any) -> None:
        # With --benchmark-disable the function ran once, untimed: nothing to record.
        if not benchmark.enabled or benchmark.stats is None:
            return
        self.means[(case, method)] = benchmark.stats.stats.mean
        ratio = self.ratio(case)
        if ratio is not None:
            benchmark.extra_info["ratio_vs_reference"] = ratio

    def ratio(self, case: str) -> float | None:
        fast, ref = self.means.get((case, "fast")), self.means.get((case, "reference"))
        return None if fast is None or ref is None else ref / fast

    def summary(self) -> list[str]:
        cases = sorted({case for case, _ in self.means})
        return [
            f"{case}: fast {self.means[(case, 'fast')] * 1e3:.3f} ms, reference "
            f"{self.means[(case, 'reference')] * 1e3:.3f} ms, ratio_vs_reference {ratio:.1f}x"
            for case in cases
            if (ratio := self.ratio(case)) is not None
        ]


_TIMINGS = Timings()


@pytest.fixture(scope="session")
def timings() -> Timings:
    return _TIMINGS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = _TIMINGS.summary()
    if lines:
        terminalreporter.section("C++ core / Numba kernels against the Python references")
        for line in lines:
            terminalreporter.write_line(line)
