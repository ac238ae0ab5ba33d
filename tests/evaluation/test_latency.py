"""Reproducible runs (issue 17, item 3): decisions are charged a modelled cost, measured once
per machine and kept, so a seed replays to the same gradings; ``latency="wall"`` charges the
wall clock as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scenarios import small
from scripted import Scripted, one_gpu
from slow_machine import slow_down

from migrator.cli import main
from migrator.cli.evaluation import LATENCY_MODES as CLI_LATENCY_MODES
from migrator.errors import ConfigError
from migrator.evaluation import latency
from migrator.evaluation.comparison import compare
from migrator.evaluation.policy import make_policy
from migrator.evaluation.simulate import simulate

POLICIES = "migrator,paris,ekya,astraea"


def gradings(document: dict) -> dict:
    """What a results.json grades, per policy: every grading and the headline figures."""
    return {
        name: {"gradings": p["gradings"], "goodput": p["goodput"], "slo_attainment": p["slo_attainment"],
               "per_seed": [{k: v for k, v in r.items() if not k.startswith("decision_ms")} for r in p["per_seed"]]}
        for name, p in document["policies"].items()
    }


def test_the_same_seed_grades_identically_twice_in_a_row_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv(latency.ENV, str(tmp_path / "costs.json"))
    scenario = small(duration_s=10)
    first = json.loads(compare(scenario, POLICIES, seeds=[5]).to_json())
    second = json.loads(compare(scenario, POLICIES, seeds=[5]).to_json())
    assert gradings(first) == gradings(second)
    for name, entry in first["policies"].items():
        assert entry["latency"]["mode"] == "model" and entry["latency"]["decision_s"] > 0
        assert entry["latency"]["machine"] == latency.machine() and entry["latency"]["software"] == latency.software()
        assert entry["latency"] == second["policies"][name]["latency"]
    assert first["latency"] == "model"


def test_a_cost_is_measured_once_and_then_read(tmp_path, monkeypatch):
    path = tmp_path / "costs.json"
    monkeypatch.setenv(latency.ENV, str(path))
    scenario = small(duration_s=4)
    cost = simulate(scenario, make_policy("astraea")).latency["decision_s"]
    stored = json.loads(path.read_text())
    assert [v["decision_s"] for v in stored.values()] == [cost]
    assert [(v["machine"], v["software"]) for v in stored.values()] == [(latency.machine(), latency.software())]

    def refuse(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(latency, "measure", refuse)
    run = simulate(scenario, make_policy("astraea"), seed=9)
    assert run.latency["decision_s"] == cost
    # Every decision is charged the cost, whatever it took.
    assert all(d.charged_s == cost for d in run.decisions)
    # Other settings are another policy: measured on their own.
    with pytest.raises(AssertionError, match="measured again"):
        simulate(scenario, make_policy("astraea", lookback_s=3.0))
    # Another release of the solver (or of migrator) decides at another speed: measured again.
    real = latency._package_version
    monkeypatch.setattr(latency, "_package_version", lambda name: "99.0" if name == "highspy" else real(name))
    with pytest.raises(AssertionError, match="measured again"):
        simulate(scenario, make_policy("astraea"), seed=9)


def test_a_damaged_cost_file_is_measured_again(tmp_path, monkeypatch):
    path = tmp_path / "costs.json"
    monkeypatch.setenv(latency.ENV, str(path))
    path.write_text("{not json")
    run = simulate(small(duration_s=3), make_policy("paris"))
    assert run.latency["decision_s"] >= 0
    assert json.loads(path.read_text())  # rewritten


def test_wall_mode_charges_each_decision_its_own_time():
    run = simulate(small(duration_s=6), make_policy("migrator"), latency="wall")
    assert run.latency == {"mode": "wall", "decision_s": None}
    assert all(d.charged_s == d.latency_s for d in run.decisions)
    assert len({d.charged_s for d in run.decisions}) > 1


def test_fixed_and_own_figures_win_over_the_mode():
    assert simulate(small(duration_s=3), make_policy("paris"), decision_latency_s=0.25).latency == {
        "mode": "fixed", "decision_s": 0.25}
    assert simulate(small(duration_s=3), make_policy("static")).latency == {"mode": "policy", "decision_s": 0.0}


def test_a_measurement_is_the_median_of_decisions_that_decide():
    # Ekya decides only at events; each sample is still a decision that changes something.
    from migrator.evaluation.policy import Environment

    scenario = small(duration_s=4)
    counts = scenario.arrivals().counts.astype(np.float64)
    env = Environment(scenario, mean_rps=counts.mean(axis=1), seed=0, trace=counts, warmup=counts)
    policy = make_policy("ekya")
    calls = []
    original = policy.decide

    def decide(observation):
        out = original(observation)
        calls.append(out is not None)
        return out

    policy.decide = decide
    cost = latency.measure(policy, env, samples=3)
    assert cost > 0
    assert calls.count(True) == 3  # three timed decisions, each one that decided


def test_the_cost_file_follows_the_environment(tmp_path):
    assert latency.cost_file({latency.ENV: str(tmp_path / "x.json")}) == tmp_path / "x.json"
    assert latency.cost_file({"XDG_CACHE_HOME": "/c"}).as_posix() == "/c/migrator/decision-costs.json"
    assert latency.cost_file({"HOME": "/h"}).as_posix() == "/h/.cache/migrator/decision-costs.json"


@pytest.mark.parametrize("bad", ["cpu", "", None, 1])
def test_an_unknown_mode_is_an_error_naming_the_modes(bad):
    with pytest.raises(ConfigError, match="latency must be one of model, wall"):
        simulate(small(duration_s=2), make_policy("paris"), latency=bad)


def test_the_command_takes_latency_and_documents_it(tmp_path):
    assert CLI_LATENCY_MODES == latency.LATENCY_MODES
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small(duration_s=4).to_dict()))
    helped = CliRunner().invoke(main, ["simulate", "--help"])
    assert "--latency [model|wall]" in helped.output and "measured once per machine" in helped.output
    bad = CliRunner().invoke(main, ["simulate", str(path), "--latency", "cpu"])
    assert bad.exit_code == 2 and "--latency" in bad.output
    out = CliRunner().invoke(main, ["simulate", str(path), "--policies", "paris", "--latency", "wall", "--json"])
    assert out.exit_code == 0, out.output
    document = json.loads(out.output)
    assert document["latency"] == "wall" and document["policies"]["paris"]["latency"]["mode"] == "wall"


def test_the_policy_replayed_has_decided_nothing_before_the_run(tmp_path, monkeypatch):
    # A scripted policy counts its decisions and never forgets them: measuring its cost on
    # it would shift its script. The cost is measured on a copy.
    monkeypatch.setenv(latency.ENV, str(tmp_path / "costs.json"))
    scenario = small(duration_s=4)
    policy = Scripted([one_gpu("7g.40gb@0", {"7g.40gb@0": "a:infer"})])
    run = simulate(scenario, policy)
    assert run.latency["mode"] == "model"
    assert policy.seen[0].slot == 0 and len(policy.seen) == 4
    assert run.layouts[0][-1] == "7g.40gb@0"


def _tight(**planner: object):  # type: ignore[no-untyped-def]
    """The small scenario with a decision time limit that a slow machine overruns."""
    return small(duration_s=8).with_planner(time_limit_s=0.2, **planner)


def _tight_file(folder):  # type: ignore[no-untyped-def]
    """:func:`_tight` written as a scenario file in ``folder``; its path."""
    path = folder / "tight.yaml"
    path.write_text(yaml.safe_dump(_tight().to_dict()))
    return path


def test_under_a_node_limit_a_slow_machine_replays_a_seed_as_a_fast_one_does(tmp_path, monkeypatch):
    monkeypatch.setenv(latency.ENV, str(tmp_path / "costs.json"))
    scenario = _tight(node_limit=50)
    fast = json.loads(compare(scenario, "migrator", seeds=[5]).to_json())
    slow_down(monkeypatch, 0.25)
    slow = json.loads(compare(scenario, "migrator", seeds=[5]).to_json())
    assert gradings(slow) == gradings(fast)
    assert [r["decisions_at_time_limit"] for r in slow["policies"]["migrator"]["per_seed"]] == [0.0]


def test_decisions_a_time_limit_cut_short_are_counted_and_the_command_says_the_run_may_not_repeat(
        tmp_path, monkeypatch):
    monkeypatch.setenv(latency.ENV, str(tmp_path / "costs.json"))
    path = _tight_file(tmp_path)
    slow_down(monkeypatch, 0.25)
    result = simulate(_tight(), make_policy("migrator"), seed=5)
    assert 0 < result.time_limited_decisions <= len(result.decisions)
    assert result.summary()["decisions_at_time_limit"] == result.time_limited_decisions
    out = CliRunner().invoke(main, ["--files-anywhere", "simulate", str(path), "--policies", "migrator,static",
                                    "--seeds", "1"])
    assert out.exit_code == 0, out.output
    assert "of migrator's" in out.output and "may not repeat exactly" in out.output
    assert "planner.node_limit" in out.output


def test_the_command_holds_every_planner_to_the_node_limit_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv(latency.ENV, str(tmp_path / "costs.json"))
    path = _tight_file(tmp_path)
    slow_down(monkeypatch, 0.25)
    out = CliRunner().invoke(main, ["--files-anywhere", "simulate", str(path), "--policies", "migrator,static",
                                    "--seeds", "1", "--node-limit", "50", "--json"])
    assert out.exit_code == 0, out.output
    document = json.loads(out.output)
    for name in ("migrator", "static"):
        entry = document["policies"][name]
        assert entry["settings"]["planner"]["node_limit"] == 50
        assert [r["decisions_at_time_limit"] for r in entry["per_seed"]] == [0.0]
    refused = CliRunner().invoke(main, ["--files-anywhere", "simulate", str(path), "--node-limit", str(10**10)])
    assert refused.exit_code == 2 and "planner.node_limit" in refused.output
