"""The greedy starting plan: valid layouts, maximal sets that really are maximal, and a plan
worth at least keeping the current layout."""

from __future__ import annotations

import itertools

import pytest

import migrator
from migrator import planner
from migrator.greedy import greedy_tasks, maximal_sets
from scenarios import sized


@pytest.fixture(scope="module")
def problem():
    return planner.Planner(sized(2, 4, horizon=8)).problem()


def test_maximal_sets_are_valid_and_maximal(problem):
    gpu = problem.gpus[0]
    geometry = migrator.Geometry.for_gpu(gpu.model)
    sets = maximal_sets(gpu)
    assert sets and len({tuple(s) for s in sets}) == len(sets)
    for chosen in sets:
        layout = [str(gpu.placements[q]) for q in chosen]
        geometry.validate(",".join(layout))
        for q in range(len(gpu.placements)):
            if q not in chosen:
                assert not geometry.is_valid(",".join(layout + [str(gpu.placements[q])]))


def test_every_maximal_set_is_found(problem):
    # Brute force over all subsets of the planning placements.
    gpu = problem.gpus[0]
    geometry = migrator.Geometry.for_gpu(gpu.model)
    names = [str(p) for p in gpu.placements]
    valid = [
        set(c) for r in range(len(names) + 1) for c in itertools.combinations(range(len(names)), r)
        if geometry.is_valid(",".join(names[q] for q in c))
    ]
    maximal = {frozenset(v) for v in valid if not any(v < w for w in valid)}
    assert {frozenset(s) for s in maximal_sets(gpu)} == maximal


def test_greedy_plan_is_valid_and_beats_idling(problem):
    tasks = greedy_tasks(problem)
    for gpu, plan in zip(problem.gpus, tasks):
        geometry = migrator.Geometry.for_gpu(gpu.model)
        for row in plan:
            geometry.validate(",".join(str(gpu.placements[q]) for q in range(len(row)) if row[q] >= 0))
    assert planner.expected_score(problem, tasks).goodput > planner.expected_score(problem, planner.keep_current(problem)).goodput
