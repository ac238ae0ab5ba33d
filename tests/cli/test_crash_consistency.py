"""`migrator run --emulator-state` killed with SIGKILL at random moments, then `migrator
recover` (issue 18): the emulated GPUs' state file is rewritten after every NVML call that
changes it, so recover finds the layout the GPUs really hold, and brings every GPU to the
old or the new layout with every journal transaction closed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from migrator.actuation.journal import read_journal
from scenarios import small


def _scenario(tmp_path: Path) -> Path:
    # Loads swap every few slots, so the planner reconfigures often.
    table = small(duration_s=400, shift_at=3).to_dict()
    table["planner"].update(time_limit_s=0.2, reconfig_penalty=0.0, setup_s=0.0)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(table), encoding="utf-8")
    return path


def _migrator(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _kill_and_recover(tmp_path: Path, scenario: Path, delay_s: float) -> None:
    state, journal = tmp_path / "state.json", tmp_path / "journal.jsonl"
    for leftover in (state, journal):
        leftover.unlink(missing_ok=True)
    # The emulated machine exists before the run, as the GPUs do: its state file is the
    # truth that the run's changes must reach.
    created = _migrator("status", str(scenario), "--backend", "emulator", "--emulator-state", str(state), cwd=tmp_path)
    assert created.returncode == 0 and state.exists(), created.stderr
    run = subprocess.Popen(
        [sys.executable, "-m", "migrator", "run", str(scenario), "--backend", "emulator", "--emulator-state",
         str(state), "--journal", str(journal), "--steps", "400"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(delay_s)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    if not journal.exists():
        return  # killed before its first decision: nothing to recover
    recovered = _migrator("recover", str(journal), "--backend", "emulator", "--emulator-state", str(state),
                          "--json", cwd=tmp_path)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    reported = {r["gpu"]: r["layout"] for r in json.loads(recovered.stdout)}
    status = _migrator("status", "--backend", "emulator", "--emulator-state", str(state), "--json", cwd=tmp_path)
    held = {g["index"]: g["layout"] for g in json.loads(status.stdout)["gpus"]}
    assert {g: held[g] for g in reported} == reported  # recover says what the GPUs hold
    transactions = read_journal(journal)
    recovered_by = {t.recovers: t for t in transactions if t.recovers}
    for txn in transactions:
        # One the kill interrupted stays open; a recovery transaction closes it.
        closing = recovered_by.get(txn.txn, txn) if txn.status == "open" else txn
        assert closing.status in ("committed", "aborted"), (txn.status, txn.txn)
        assert closing.layout in (txn.target, txn.fallback)  # the old layout or the new one


@pytest.mark.parametrize("seed", range(3))
def test_a_killed_run_recovers_to_the_old_or_new_layout(tmp_path, seed):
    rng = random.Random(seed)
    _kill_and_recover(tmp_path, _scenario(tmp_path), rng.uniform(2.0, 5.0))


@pytest.mark.slow
def test_fifty_killed_runs_recover(tmp_path):
    rng = random.Random(50)
    scenario = _scenario(tmp_path)
    for _ in range(50):
        _kill_and_recover(tmp_path, scenario, rng.uniform(1.5, 6.0))
