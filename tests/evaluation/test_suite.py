"""The scenario suite (issue 17, item 5): its scenarios load and cover what the issue asks,
its real traces parse and carry their source and licence, the derivation tool does what the
SOURCE files say, and ``migrator simulate --suite`` runs end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import evaluation as cli_evaluation
from migrator.cli import main
from migrator.errors import ConfigError
from migrator.evaluation import suite
from migrator.workload.traces import load_csv

TRACES = Path(str(resources.files("migrator") / "data" / "traces"))
TOOL = Path(__file__).resolve().parents[2] / "tools" / "derive_suite_traces.py"
SCENARIOS = suite.load_suite()


def _trace_folders() -> list[Path]:
    return sorted(p for p in TRACES.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _tool():
    spec = importlib.util.spec_from_file_location("derive_suite_traces", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- scenarios ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario_loads_and_replays_a_real_trace(scenario):
    assert scenario.name.startswith("suite-")
    assert 4 <= len(scenario.gpus) <= 32
    arrivals = scenario.arrivals(scenario.seed)
    assert arrivals.counts.shape == (len(scenario.tenants), scenario.n_slots)
    assert (arrivals.counts >= 0).all() and arrivals.counts.sum() > 0
    for tenant in scenario.tenants:
        source = tenant.arrivals["csv"]
        assert (Path(scenario.base_dir) / source).resolve().parent.parent == TRACES.resolve()


def test_suite_covers_the_issue():
    models = {g.geometry.name for s in SCENARIOS for g in s.gpus}
    assert {"A100-40GB", "A100-80GB", "H100-80GB"} <= models
    assert any(len({g.geometry.name for g in s.gpus}) > 1 for s in SCENARIOS)  # mixed fleets
    sizes = [len(s.gpus) for s in SCENARIOS]
    assert min(sizes) == 4 and max(sizes) == 32
    slos = [t.slo_ms for s in SCENARIOS for t in s.tenants]
    assert min(slos) <= 50 and max(slos) >= 300
    windows = {t.window_s for s in SCENARIOS for t in s.tenants}
    assert min(windows) <= 120 and max(windows) >= 600
    used = {Path(t.arrivals["csv"]).parent.name for s in SCENARIOS for t in s.tenants}
    assert used == {p.name for p in _trace_folders()} and len(used) >= 2


def test_suite_scenarios_leave_planner_settings_to_the_library():
    # The suite measures the library defaults; the built-in scenario's `planner:` is compared
    # against them in docs/scenarios.md.
    for path in suite.suite_paths():
        assert "planner:" not in path.read_text(encoding="utf-8")


def test_unknown_suite_scenario_is_named():
    with pytest.raises(ConfigError, match="unknown suite scenario 'nope'; the suite has: suite-"):
        suite.load_suite(["nope"])


# -- traces ------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", _trace_folders(), ids=lambda p: p.name)
def test_trace_parses_and_has_its_source_and_licence(folder):
    counts = folder / "counts.csv"
    assert counts.stat().st_size < 1_000_000
    trace = load_csv(counts)
    assert trace.n_tenants >= 2 and trace.n_slots >= 1000
    assert (trace.counts >= 0).all() and (trace.counts.sum(axis=1) > 0).all()
    source = (folder / "SOURCE.md").read_text(encoding="utf-8")
    for heading in ("## Source", "## Licence", "## Regenerate"):
        assert heading in source
    assert re.search(r"https://\S+", source)
    assert "tools/derive_suite_traces.py" in source
    for column in trace.tenants:
        assert f"`{column}`" in source or f"| {column} |" in source
    assert "LLM" not in source.replace("Not used: the Azure LLM inference traces", "")


def test_azure_rows_are_picked_by_function_hash(tmp_path):
    tool = _tool()
    header = ["HashOwner", "HashApp", "HashFunction", "Trigger", *map(str, range(1, 1441))]
    rows = [["o", "a", "ffff" * 16, "http", *([9] * 1440)]]
    for k, prefix in enumerate(tool.AZURE_FUNCTIONS):
        rows.append(["o", "a", prefix + "0" * 52, "http", *range(k, k + 1440)])
    source = tmp_path / "d01.csv"
    with source.open("w", newline="") as stream:
        csv.writer(stream).writerows([header, *rows])
    picked = tool.azure_rows([source])
    assert list(picked) == list(tool.AZURE_FUNCTIONS.values())
    assert [values[0] for values in picked.values()] == list(range(len(tool.AZURE_FUNCTIONS)))
    assert all(len(values) == 1440 for values in picked.values())


def test_missing_days_are_interpolated_between_neighbours():
    tool = _tool()
    day = tool.dt.date
    filled = tool.fill_days({day(2008, 1, 1): 10.0, day(2008, 1, 4): 40.0, day(2008, 1, 5): 7.0},
                            day(2008, 1, 1), day(2008, 1, 5))
    assert filled == [10, 20, 30, 40, 7]


def test_shipped_azure_trace_matches_its_source_table():
    # The SOURCE file's table of means and maxima is an independent record of the file.
    trace = load_csv(TRACES / "azure-functions-2019" / "counts.csv")
    assert trace.n_slots == 1440
    assert round(trace.tenant("http_a").mean()) == 626 and trace.tenant("http_a").max() == 1149
    assert trace.tenant("event_a").max() == 15001
    assert int((trace.tenant("event_c") == 0).sum()) == 1274


# -- the command -------------------------------------------------------------------------------


def test_cli_suite_duration_matches_the_library():
    assert cli_evaluation.SUITE_DURATION_S == suite.SUITE_DURATION_S


def test_suite_refuses_a_scenario_or_a_warmup():
    result = CliRunner().invoke(main, ["simulate", "--suite", "x.yaml"])
    assert result.exit_code == 2 and "give no SCENARIO" in result.output
    result = CliRunner().invoke(main, ["simulate", "--suite", "--warmup", "5"])
    assert result.exit_code == 2 and "--warmup" in result.output


def _run_suite(tmp_path, *options):
    out = tmp_path / "suite"
    result = CliRunner().invoke(main, ["simulate", "--suite", *options, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result, out


def test_suite_runs_end_to_end_on_a_tiny_duration(tmp_path):
    # --latency wall: no decision costs to measure first (the slow test below runs the default).
    result, out = _run_suite(tmp_path, "--duration", "2", "--policies", "migrator,static", "--latency", "wall")
    names = [s.name for s in SCENARIOS]
    document = json.loads((out / "results.json").read_text())
    assert document["suite"] == names and document["duration_s"] == 2
    assert document["grader"] == "request" and document["latency"] == "wall"
    summary = (out / "summary.md").read_text()
    for name in names:
        assert f"| {name} |" in summary
        per_scenario = json.loads((out / name / "results.json").read_text())
        assert (out / name / "results.md").exists()
        assert set(per_scenario["policies"]) == {"migrator", "static"}
        # The summary's gain, recomputed from the scenario's own per-seed Goodput.
        ours = per_scenario["policies"]["migrator"]["per_seed"][0]["goodput"]
        theirs = per_scenario["policies"]["static"]["per_seed"][0]["goodput"]
        gain = document["summary"][name]["migrator_gain"]["static"]["gain"]
        if theirs > 0:
            assert gain == pytest.approx(ours / theirs - 1.0)
        else:
            assert gain is None
        assert document["summary"][name]["policies"]["static"]["worst_tenant"] in per_scenario["policies"]["static"]["tenants"]
    assert "migrator vs static" in result.output
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "suite.png").exists() and (out / names[0] / "goodput.png").exists()


def test_suite_holds_every_scenario_to_the_node_limit_it_is_given(tmp_path):
    # --node-limit reaches each suite scenario's planner (0: the warm start as presolve
    # leaves it, the quickest), and no decision then stops at a time limit.
    _, out = _run_suite(tmp_path, "--duration", "2", "--policies", "migrator", "--latency", "wall",
                        "--node-limit", "0")
    for scenario in SCENARIOS:
        entry = json.loads((out / scenario.name / "results.json").read_text())["policies"]["migrator"]
        assert entry["settings"]["planner"]["node_limit"] == 0
        assert entry["per_seed"][0]["decisions_at_time_limit"] == 0


@pytest.mark.slow
def test_suite_runs_at_its_default_duration_with_every_policy(tmp_path):
    _, out = _run_suite(tmp_path)
    document = json.loads((out / "results.json").read_text())
    assert document["duration_s"] == suite.SUITE_DURATION_S
    for name, entry in document["summary"].items():
        assert set(entry["migrator_gain"]) == {"ekya", "astraea", "paris", "static", "oracle"}
        assert (out / name / "results.csv").exists()


def test_suite_plot_bars_are_goodput_over_paris(tmp_path):
    pytest.importorskip("matplotlib")
    from migrator.evaluation.plots import _ratio, plot_suite

    summary = {"suite-x": {"policies": {"migrator": {"goodput": 90.0}, "paris": {"goodput": 100.0}}},
               "suite-y": {"policies": {"migrator": {"goodput": 5.0}, "paris": {"goodput": 0.0}}}}
    assert _ratio(summary["suite-x"]["policies"], "migrator", "paris") == pytest.approx(0.9)
    assert _ratio(summary["suite-y"]["policies"], "migrator", "paris") != _ratio(summary["suite-y"]["policies"],
                                                                                 "migrator", "paris")  # NaN
    (path,) = plot_suite(summary, tmp_path)
    assert path.name == "suite.png" and path.read_bytes().startswith(b"\x89PNG")
