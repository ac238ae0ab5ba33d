"""Fixtures of the evaluation tests: measured decision costs go to a file of the test
session, never to the user's cache."""

from __future__ import annotations

import os

import pytest

from migrator.evaluation.latency import ENV


@pytest.fixture(autouse=True, scope="session")
def _decision_costs_of_the_session(tmp_path_factory):
    before = os.environ.get(ENV)
    os.environ[ENV] = str(tmp_path_factory.mktemp("latency") / "decision-costs.json")
    yield
    if before is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = before
