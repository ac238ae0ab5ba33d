"""The planner's HiGHS options (``planner.MIP_OPTIONS``) exist and reach the solver: HiGHS
answers an unknown option name with an error status, not an exception, so a misspelt
option would silently do nothing."""

from __future__ import annotations

import highspy

from migrator.planning import planner
from migrator.planning.highs import new_highs
from scenarios import sized


def _option(h: highspy.Highs, name: str):
    value = h.getOptionValue(name)
    return value[1] if isinstance(value, tuple) else value  # (status, value) in some versions


def test_every_planner_option_is_one_highs_knows() -> None:
    h = new_highs()
    for name, value in planner.MIP_OPTIONS.items():
        assert h.setOptionValue(name, value) == highspy.HighsStatus.kOk, name
        assert _option(h, name) == value, name


def test_the_program_is_solved_with_the_planner_options(monkeypatch) -> None:
    made = []

    def recording() -> highspy.Highs:
        made.append(new_highs())
        return made[-1]

    monkeypatch.setattr(planner, "new_highs", recording)
    plan = planner.Planner(sized(1, 4, horizon=4)).plan()
    assert plan.stats.status == "Optimal" and made
    for name, value in planner.MIP_OPTIONS.items():
        assert _option(made[-1], name) == value, name
