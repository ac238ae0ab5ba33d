"""Per-tenant floors (``Tenant.min_slo_attainment``, docs/model.md row 17; issue 16, item 5):
the C++ program, the reference builder and the configuration master reach what brute force
over every layout and assignment sequence reaches with the floors' cost in the value; a floor
the GPUs can meet is met; the plan reports each tenant's expected attainment."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from brute_force import Case, brute_force
from migrator.errors import ConfigError
from migrator.planning import _ilp_reference as reference
from migrator.planning import master
from migrator.planning.planner import Planner, expected_score, solve_problem
from migrator.workload.tenant import Tenant
from scenarios import sized

_spec = importlib.util.spec_from_file_location("exact_cases", Path(__file__).with_name("test_planner_exact.py"))
_exact = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_exact)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


# One 7g instance: a slot serves one tenant. B earns less a request, so Goodput alone gives A
# every slot; B's floor asks for half of its requests.
A = Tenant("a", "resnet50", 100.0, accuracy_before=0.9)
B = Tenant("b", "resnet50", 100.0, accuracy_before=0.6)
STARVING = Case("starving", (A, B), np.array([[400.0, 400, 400, 400], [400, 400, 400, 400]]),
                placements=(("7g.40gb@0",),))


def _with_floor(case: Case, shares: dict[str, float]) -> Case:
    tenants = tuple(dataclasses.replace(t, min_slo_attainment=shares.get(t.name)) for t in case.tenants)
    return dataclasses.replace(case, name=f"{case.name}-floors", tenants=tenants)


def _served_share(case: Case, tasks, tenant: int) -> float:
    result = expected_score(case.problem(), tasks)
    return float(result.within[tenant].sum() / result.arrived[tenant].sum())


def test_without_a_floor_goodput_starves_the_cheaper_tenant():
    best, _ = brute_force(STARVING)
    solution = solve_problem(STARVING.problem(), time_limit_s=30, mip_gap=0.0)
    assert _close(solution.objective, best)
    assert _served_share(STARVING, solution.tasks, 1) < 0.01


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_a_floor_the_gpus_can_meet_is_met_at_the_brute_force_optimum(share):
    case = _with_floor(STARVING, {"b": share})
    best, _ = brute_force(case)
    problem = case.problem()
    solution = solve_problem(problem, time_limit_s=30, mip_gap=0.0)
    assert _close(solution.objective, best)
    assert _close(reference.solve(problem).objective, best)
    assert _served_share(case, solution.tasks, 1) >= share - 1e-9
    assert _close(Planner._worth(problem, solution.tasks), solution.objective)


def test_a_floor_beyond_the_gpus_costs_its_shortfall_and_no_more():
    case = _with_floor(STARVING, {"a": 1.0, "b": 1.0})  # one instance cannot serve both fully
    best, _ = brute_force(case)
    solution = solve_problem(case.problem(), time_limit_s=30, mip_gap=0.0)
    assert _close(solution.objective, best)


def _random_floors(case: Case, seed: int) -> Case:
    rng = np.random.default_rng(seed)
    return _with_floor(case, {t.name: float(rng.choice([0.3, 0.6, 0.9])) for t in case.tenants if rng.random() < 0.7})


FLOORED = [_random_floors(case, seed) for seed, case in enumerate(_exact.RANDOM_TINY)]


@pytest.mark.parametrize("case", FLOORED, ids=str)
def test_every_builder_reaches_the_brute_force_optimum_with_floors(case):
    best, _ = brute_force(case)
    problem = case.problem()
    cpp = solve_problem(problem, time_limit_s=30, mip_gap=0.0)
    assert _close(cpp.objective, best), (cpp.objective, best)
    assert _close(reference.solve(problem).objective, best)
    result = master.solve_master(problem, time_limit_s=30.0, mip_gap=0.0).solution
    assert result.objective <= best + 1e-6 * max(1.0, abs(best)) <= result.bound + 2e-6 * max(1.0, abs(best))
    assert _close(Planner._worth(problem, result.tasks), result.objective)


def test_the_plan_reports_attainment_and_meets_a_floor_where_it_can():
    scenario = sized(2, 4, horizon=8)
    plain = Planner(scenario).plan()
    lowest = min(plain.attainment, key=plain.attainment.get)
    assert set(plain.attainment) == {t.name for t in scenario.tenants}
    assert json.loads(plain.to_json())["goodput"]["slo_attainment"] == pytest.approx(plain.attainment)
    wanted = min(1.0, plain.attainment[lowest] + 0.2)
    table = scenario.to_dict()
    for tenant in table["tenants"]:
        if tenant["name"] == lowest:
            tenant["min_slo_attainment"] = wanted
    floored = Planner(type(scenario).from_dict(table)).plan()
    assert floored.attainment[lowest] >= wanted - 1e-6


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "high", True])
def test_a_floor_outside_0_1_is_an_error_naming_the_field(bad):
    with pytest.raises(ConfigError) as error:
        Tenant("t", "resnet50", 100.0, min_slo_attainment=bad)
    assert error.value.field.endswith("min_slo_attainment")
