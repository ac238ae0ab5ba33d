"""`migrator run / status / recover / mig-parted`, driven through click's runner.

The emulator's state file (--emulator-state) makes one emulated machine outlive a command,
so these tests chain commands as an operator would.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import migrator
from migrator.cli import main
from migrator.actuation.emulator import EmulatedCrash, NvmlEmulator
from migrator.actuation.journal import Journal, read_journal
from migrator.actuation.nvml import NvmlBackend
from migrator.actuation.reconfig import apply

FAST = ["--horizon", "3", "--time-limit", "0.3", "--log-level", "error"]
A100 = migrator.Geometry.for_gpu("A100-40GB")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def emulated(path: Path, layouts: list[str]) -> NvmlEmulator:
    emulator = NvmlEmulator(["A100-40GB"] * len(layouts), layouts=layouts)
    emulator.save(path)
    return emulator


def test_run_json_summary_matches_the_emulated_gpus(tmp_path):
    state, journal = tmp_path / "emu.json", tmp_path / "journal.jsonl"
    code, out = run("run", "--steps", "2", "--json", "--emulator-state", str(state), "--journal", str(journal), *FAST)
    assert code == 0, out
    summary = json.loads(out)
    assert {"decisions", "reconfigurations", "failures", "decision_ms_p50", "gpus"} <= set(summary)
    assert summary["decisions"] == 2 and summary["failures"] == 0
    saved = NvmlEmulator.load(state)
    for g, gpu in enumerate(summary["gpus"]):
        assert (gpu["name"], gpu["model"]) == (f"gpu{g}", "A100-40GB")
        assert gpu["layout"] == saved.layout(g) and A100.is_valid(gpu["layout"])
    transactions = read_journal(journal) if journal.exists() else ()
    assert len(transactions) == summary["reconfigurations"]  # one journaled transaction per change
    assert all(t.status == "committed" and not t.problems() for t in transactions)


def test_run_with_the_emulator_ignores_the_scenarios_device_indices(tmp_path):
    # Devices 4 and 5 on the real machine; the emulator emulates just these two GPUs.
    table = migrator.Scenario.default().to_dict()
    table["gpus"] = [{"model": "A100-40GB", "devices": [4, 5], "layout": "3g.20gb@0,3g.20gb@4"}]
    path = tmp_path / "placed.yaml"
    path.write_text(yaml.safe_dump(table))
    code, out = run("run", str(path), "--steps", "1", "--json", *FAST)
    assert code == 0, out
    assert [g["device"] for g in json.loads(out)["gpus"]] == [0, 1]


def test_run_text_prints_each_decision_and_dry_run_changes_nothing(tmp_path):
    state = tmp_path / "emu.json"
    emulated(state, ["", ""])
    before = state.read_text()
    code, out = run("run", "--steps", "1", "--dry-run", "--emulator-state", str(state), *FAST)
    assert code == 0, out
    assert "slot 0:" in out and "dry run" in out and "1. create GPU instance" in out
    assert state.read_text() == before


def test_run_reads_arrivals_from_a_csv_and_writes_metrics(tmp_path):
    arrivals, metrics = tmp_path / "arrivals.csv", tmp_path / "metrics.prom"
    arrivals.write_text("slot,resnet50,vit,bert,distilbert\n0,800,100,900,2500\n1,820,90,880,2400\n")
    code, out = run("run", "--steps", "2", "--json", "--arrivals", str(arrivals), "--clock", "simulated",
                    "--metrics-file", str(metrics), *FAST)
    assert code == 0, out
    text = metrics.read_text()
    assert "# TYPE migrator_decisions_total counter" in text and "migrator_decisions_total 2" in text


def test_status_shows_layouts_ids_and_processes(tmp_path):
    state = tmp_path / "emu.json"
    emulator = emulated(state, ["3g.20gb@0,3g.20gb@4"])
    emulator.set_processes(0, emulator.gi_id(0, "3g.20gb@4"), [4321])
    emulator.save(state)
    code, out = run("status", "--emulator-state", str(state), "--json")
    assert code == 0, out
    (gpu,) = json.loads(out)["gpus"]
    assert (gpu["model"], gpu["layout"], gpu["mig_enabled"]) == ("A100-40GB", "3g.20gb@0,3g.20gb@4", True)
    assert [i["pids"] for i in gpu["instances"]] == [[], [4321]]
    code, out = run("status", "--emulator-state", str(state))
    assert code == 0 and "3g.20gb@4" in out and "4321" in out


@pytest.mark.parametrize("command", [["status"], ["run", "--steps", "1"]], ids=["status", "run"])
def test_nvml_backend_without_nvidia_ml_py_is_a_one_line_error(monkeypatch, command):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    code, out = run(*command, "--backend", "nvml")
    assert code == 1
    assert out.startswith("Error: nvidia-ml-py is not installed") and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_nvml_backend_without_a_driver_is_a_one_line_error(monkeypatch):
    class NVMLError(Exception):
        def __str__(self) -> str:
            return "NVML Shared Library Not Found"

    def no_library() -> None:
        raise NVMLError()

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(NVMLError=NVMLError, nvmlInit=no_library))
    code, out = run("status", "--backend", "nvml")
    assert code == 1
    assert out.strip() == "Error: NVML could not start: NVML Shared Library Not Found"


def test_recover_finishes_a_crashed_reconfiguration(tmp_path):
    state, journal = tmp_path / "emu.json", tmp_path / "journal.jsonl"
    current, target = "3g.20gb@0,2g.10gb@4", "4g.20gb@0,1g.5gb@4,1g.5gb@5,1g.5gb@6"
    emulator = NvmlEmulator(["A100-40GB"], layouts=[current])
    emulator.crash(4)
    with pytest.raises(EmulatedCrash), Journal(journal) as sink:
        apply(NvmlBackend(emulator).open(), 0, target, journal=sink)
    emulator.save(state)
    code, out = run("recover", str(journal), "--emulator-state", str(state), "--json")
    assert code == 0, out
    assert json.loads(out) == [{"gpu": 0, "txn": read_journal(journal)[-1].txn, "outcome": "target",
                                "layout": target, "error": None}]
    assert NvmlEmulator.load(state).layout(0) == target
    code, out = run("recover", str(journal), "--emulator-state", str(state))
    assert code == 0 and out.strip() == f"gpu0: clean: {target}"


def test_mig_parted_export_then_import_and_apply(tmp_path):
    plan_path, config = tmp_path / "plan.json", tmp_path / "mig-parted.yaml"
    code, out = run("plan", "--json", "--horizon", "2", "--time-limit", "0.3")
    assert code == 0
    plan_path.write_text(out)
    plan = json.loads(out)
    code, out = run("mig-parted", "export", "--plan", str(plan_path), "-o", str(config))
    assert code == 0, out
    document = yaml.safe_load(config.read_text())
    assert document["version"] == "v1" and list(document["mig-configs"]) == ["migrator-slot-0"]
    code, out = run("mig-parted", "import", str(config), "migrator-slot-0", "--gpu", "A100-40GB", "--count", "2",
                    "--json")
    assert code == 0, out
    targets = json.loads(out)
    for g, target in enumerate(targets):
        wanted = plan["gpus"][g]["slots"][0]["layout"]
        assert sorted(p.split("@")[0] for p in target["layout"].split(",") if p) == sorted(
            p.split("@")[0] for p in wanted.split(",") if p)
    state = tmp_path / "emu.json"
    emulated(state, ["", ""])
    code, out = run("mig-parted", "import", str(config), "migrator-slot-0", "--backend", "emulator",
                    "--emulator-state", str(state), "--apply")
    assert code == 0, out
    saved = NvmlEmulator.load(state)
    assert [saved.layout(g) for g in range(2)] == [t["layout"] for t in targets]


def test_mig_parted_export_names_nvml_devices(tmp_path):
    """GPU i of a plan is written as its NVML device: the scenario's `devices`, or --devices."""
    scenario = tmp_path / "s.yaml"
    table = migrator.Scenario.default().to_dict()
    table["gpus"] = [{"model": "A100-40GB", "devices": [4, 2]}]
    scenario.write_text(yaml.safe_dump(table))
    code, out = run("plan", str(scenario), "--json", "--horizon", "2", "--time-limit", "0.3")
    assert code == 0, out
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(out)
    layouts = [g["slots"][0]["layout"] for g in json.loads(out)["gpus"]]

    def devices_of(*args: str) -> dict[int, dict[str, int]]:
        code, text = run("mig-parted", "export", "--plan", str(plan_path), *args)
        assert code == 0, text
        entries = yaml.safe_load(text)["mig-configs"]["migrator-slot-0"]
        return {d: e["mig-devices"] for e in entries for d in e["devices"]}

    def counts(layout: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in filter(None, layout.split(",")):
            out[p.split("@")[0]] = out.get(p.split("@")[0], 0) + 1
        return out

    assert devices_of(str(scenario)) == {4: counts(layouts[0]), 2: counts(layouts[1])}
    assert devices_of("--devices", "7,0") == {7: counts(layouts[0]), 0: counts(layouts[1])}
    assert set(devices_of()) == {0, 1}  # a plan alone: positions
    code, out = run("mig-parted", "export", "--plan", str(plan_path), "--devices", "3,3")
    assert code == 2 and "--devices" in out


def test_mig_parted_import_errors_are_usage_errors(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("version: v1\nmig-configs:\n  c:\n    - devices: [0]\n      mig-enabled: true\n"
                      "      mig-devices: {\"3g.20gb\": 3}\n")
    code, out = run("mig-parted", "import", str(config), "c", "--gpu", "A100-40GB")
    assert code == 2 and "no valid arrangement" in out and "Traceback" not in out
    code, out = run("mig-parted", "import", str(config), "c")
    assert code == 2 and "--gpu" in out
