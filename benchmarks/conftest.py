"""Benchmark helpers: the tests' reference on the import path, and the speed-up summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# --import-mode=importlib puts no folder on sys.path; the reference lives with the tests.
_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


class Timings:
    """Mean seconds per (case, method), to report C++ against the reference.

    ``ratio_vs_reference`` is reference time / C++ time: how many times faster the core is.
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
        cpp, ref = self.means.get((case, "cpp")), self.means.get((case, "reference"))
        return None if cpp is None or ref is None else ref / cpp

    def summary(self) -> list[str]:
        cases = sorted({case for case, _ in self.means})
        return [
            f"{case}: C++ {self.means[(case, 'cpp')] * 1e3:.3f} ms, reference "
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
        terminalreporter.section("C++ core against the Python reference")
        for line in lines:
            terminalreporter.write_line(line)
