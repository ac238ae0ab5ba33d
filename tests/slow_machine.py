"""A slow machine, for tests of what a decision does when its stages take longer: the starting
plans (``greedy_tasks``) and every Goodput estimate of a plan take ``seconds`` more."""

from __future__ import annotations

import time

import pytest

from migrator.planning import planner


def slow_down(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    greedy, worth = planner.greedy_tasks, planner.Planner._worth

    def slow_greedy(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(seconds)
        return greedy(*args, **kwargs)

    def slow_worth(problem, tasks):  # type: ignore[no-untyped-def]
        time.sleep(seconds)
        return worth(problem, tasks)

    monkeypatch.setattr(planner, "greedy_tasks", slow_greedy)
    monkeypatch.setattr(planner.Planner, "_worth", staticmethod(slow_worth))
