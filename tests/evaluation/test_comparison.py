"""Comparisons over seeds, their files (results.json / results.csv / PNG plots) and
`migrator simulate`."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scenarios import small

from migrator.cli import main
from migrator.evaluation.comparison import METRICS, compare, parse_policies
from migrator.errors import ConfigError

RESULT_KEYS = {"goodput", "slo_attainment", "mean_accuracy", "reconfigurations", "decision_ms_p50", "decision_ms_p99"}


@pytest.fixture(scope="module")
def comparison():
    return compare(small(duration_s=10), "static,migrator", seeds=[1, 2], decision_latency_s=0.5)


def test_means_and_spreads_are_over_the_seeds(comparison):
    assert comparison.seeds == (1, 2)
    for name, runs in comparison.runs.items():
        assert [r.seed for r in runs] == [1, 2]
        goodputs = np.array([r.goodput for r in runs])
        assert comparison.table()[name]["goodput"] == pytest.approx(goodputs.mean())
        assert comparison.spread()[name]["goodput"] == pytest.approx(goodputs.std())
    # Different seeds draw different arrivals, so the spread is not zero.
    assert comparison.spread()["static"]["goodput"] > 0


def test_every_policy_replays_the_same_arrivals_per_seed(comparison):
    a, b = comparison.runs["static"], comparison.runs["migrator"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.score.arrived, y.score.arrived)


def test_improvement_is_the_mean_of_per_seed_ratios(comparison):
    ratios = [m.goodput / s.goodput - 1 for m, s in zip(comparison.runs["migrator"], comparison.runs["static"])]
    assert comparison.improvement("static") == pytest.approx(np.mean(ratios))


def test_results_json_has_the_documented_keys(comparison, tmp_path):
    json_path, csv_path = comparison.write(tmp_path / "out")
    document = json.loads(json_path.read_text())
    assert set(document["policies"]) == {"static", "migrator"}
    for name, entry in document["policies"].items():
        assert RESULT_KEYS <= set(entry)
        assert entry["goodput"] == pytest.approx(comparison.table()[name]["goodput"])
        assert len(entry["per_seed"]) == 2
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["policy"] for r in rows] == ["static", "migrator"]
    assert float(rows[0]["goodput"]) == pytest.approx(comparison.table()["static"]["goodput"])
    assert set(METRICS) <= set(rows[0])


@pytest.mark.parametrize(
    "text, words",
    [("", "at least one"), ("migrator,fifo", "unknown policy 'fifo'"), ("static,static", "not repeat")],
)
def test_bad_policy_lists_are_named(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_policies(text)


def test_plots_are_png_files(comparison, tmp_path):
    pytest.importorskip("matplotlib")
    from migrator.evaluation.plots import plot_comparison

    paths = plot_comparison(comparison, tmp_path)
    assert sorted(p.name for p in paths) == ["goodput.png", "layouts_migrator.png", "layouts_static.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small(duration_s=8).to_dict()))
    return path


def test_simulate_writes_results_and_prints_json(scenario_file, tmp_path):
    out = tmp_path / "results"
    result = CliRunner().invoke(
        main, ["simulate", str(scenario_file), "--policies", "static,oracle", "--seeds", "2", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    written = json.loads((out / "results.json").read_text())
    assert printed["policies"].keys() == written["policies"].keys() == {"static", "oracle"}
    assert printed["seeds"] == [3, 4]  # the scenario's seed, then the next
    assert (out / "results.csv").exists()


def test_simulate_prints_a_table_and_the_gains(scenario_file):
    result = CliRunner().invoke(main, ["simulate", str(scenario_file), "--policies", "migrator,static"])
    assert result.exit_code == 0, result.output
    assert "SLO attainment" in result.output and "decision p99" in result.output
    assert "migrator vs static:" in result.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["--policies", "migrator,fifo"], "known policies: migrator, oracle, static"),
        (["--duration", "100"], "at most the scenario's duration_s (8)"),
        (["--seeds", "0"], "--seeds"),
    ],
)
def test_simulate_bad_options_exit_2_naming_them(scenario_file, args, words):
    result = CliRunner().invoke(main, ["simulate", str(scenario_file), *args])
    assert result.exit_code == 2
    assert words in result.output
    assert "Traceback" not in result.output
