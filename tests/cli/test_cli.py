"""The `migrator` command, driven through click's runner (no subprocess)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import migrator
from migrator.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_gpus_lists_every_known_gpu_as_json():
    code, out = run("gpus", "--json")
    assert code == 0
    assert [row["name"] for row in json.loads(out)] == migrator.known_gpus()


def test_gpus_table_mentions_nvml_discovery():
    code, out = run("gpus")
    assert code == 0
    assert "H100-80GB" in out and "--nvml" in out


def test_geometry_table_shows_profiles_and_starts():
    code, out = run("geometry", "NVIDIA H100 80GB HBM3")
    assert code == 0
    assert "3g.40gb" in out and "0,4" in out


def test_geometry_json_round_trips_to_the_same_geometry():
    code, out = run("geometry", "H100-80GB", "--json")
    assert code == 0
    assert migrator.Geometry.from_dict(json.loads(out)) == migrator.Geometry.for_gpu("H100-80GB")


@pytest.mark.parametrize("maximal", [False, True], ids=["all", "maximal"])
def test_layouts_are_listed_with_their_count(maximal):
    args = ["geometry", "A30-24GB", "--layouts"] + (["--maximal"] if maximal else [])
    code, out = run(*args)
    expected = migrator.Geometry.for_gpu("A30-24GB").layouts(maximal=maximal)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[-1].startswith(f"{len(expected)} ")
    assert len(lines) - 1 == len(expected)


def test_layouts_json_matches_the_api():
    code, out = run("geometry", "A30-24GB", "--layouts", "--maximal", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["count"] == len(doc["layouts"])
    assert doc["layouts"] == migrator.Geometry.for_gpu("A30-24GB").layouts(maximal=True)


def test_maximal_without_layouts_is_a_usage_error():
    code, out = run("geometry", "A30-24GB", "--maximal")
    assert code == 2
    assert "--layouts" in out


def test_check_valid_layout_exits_0_with_canonical_form():
    code, out = run("geometry", "H100-80GB", "--check", "3g.40gb@4, MIG 4g.40gb@0")
    assert code == 0
    assert "valid" in out and "4g.40gb@0,3g.40gb@4" in out


def test_check_invalid_layout_exits_1_naming_the_rule():
    code, out = run("geometry", "H100-80GB", "--check", "3g.40gb@0,2g.20gb@2")
    assert code == 1
    assert "memory_overlap" in out and "2g.20gb@2" in out


def test_check_json_reports_rule():
    code, out = run("geometry", "H100-80GB", "--check", "1g.10gb+me@0,1g.10gb+me@1", "--json")
    assert code == 1
    assert json.loads(out)["rule"] == "max_count"


def test_malformed_layout_names_the_bad_token():
    code, out = run("geometry", "H100-80GB", "--check", "3g.40gb@0,3g.40gb@four")
    assert code == 2
    assert "3g.40gb@four" in out


def test_unknown_gpu_lists_known_ones_and_mentions_nvml():
    code, out = run("geometry", "Z9000")
    assert code == 2
    assert "Z9000" in out and "A100-40GB" in out and "nvml" in out.lower()


def test_transition_json_reports_make_before_break():
    code, out = run("transition", "H100-80GB", "3g.40gb@0", "3g.40gb@0,3g.40gb@4", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["kept"] == ["3g.40gb@0"] and doc["created_before_destroy"] == ["3g.40gb@4"]
    assert doc["make_before_break"] is True


def test_transition_that_needs_freed_slices():
    code, out = run("transition", "H100-80GB", "3g.40gb@0,3g.40gb@4", "4g.40gb@0,3g.40gb@4", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["destroyed"] == ["3g.40gb@0"] and doc["created_after_destroy"] == ["4g.40gb@0"]
    assert doc["make_before_break"] is False


def test_transition_rejects_invalid_layout():
    code, out = run("transition", "H100-80GB", "3g.40gb@0,4g.40gb@0", "3g.40gb@0")
    assert code == 2
    assert "memory slices" in out


def test_nvml_option_without_nvidia_ml_py_or_driver_fails_cleanly():
    code, out = run("geometry", "--nvml", "0")
    assert code == 1
    assert "Error:" in out and "Traceback" not in out


def test_demo_plans_the_default_scenario():
    code, out = run("demo")
    assert code == 0
    assert "expected Goodput" in out and "gpu1 (A100-40GB)" in out and "solver:" in out


def test_help_explains_layout_syntax():
    code, out = run("--help")
    assert code == 0
    assert "PROFILE@START" in out


def test_plan_json_has_the_stable_keys(tmp_path):
    code, out = run("plan", "--json", "--horizon", "3", "--time-limit", "5")
    doc = json.loads(out)
    assert code == 0
    assert set(doc) == {"gpus", "goodput", "stats"}
    gpu = doc["gpus"][0]
    assert {"name", "model", "slots"} <= set(gpu) and len(gpu["slots"]) == 3
    assert {"layout", "assignment"} == set(gpu["slots"][0])
    assert migrator.Geometry.for_gpu(gpu["model"]).is_valid(gpu["slots"][0]["layout"])
    assert {"build_s", "solve_s", "status", "objective", "bound", "mip_gap"} <= set(doc["stats"])


def test_plan_names_a_bad_scenario_field(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("gpus: [{model: A100-40GB}]\ntenants: [{name: a, model: resnet50, slo_ms: -1, arrivals: {sample: shift-2}}]\n")
    code, out = run("plan", str(path))
    assert code == 2
    assert "tenants[0].slo_ms" in out and "Traceback" not in out
