"""`migrator run --backend mig-manager` end to end, through the CLI, against the fake
Kubernetes API server and its simulated mig-manager (tests/fake_kubernetes.py).

The command builds everything itself as in a pod: the Kubernetes client from a kubeconfig
(``KUBECONFIG`` names one that points at the fake server) and the GPU reader from
``NvmlBackend()``, whose NVML module is the emulator the simulated mig-manager changes. So the
layouts the GPUs end in were written by migrator into the ConfigMap, read back by the
importer and applied by the fake mig-manager, never by migrator itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from fake_kubernetes import A100, NAMESPACE, NODE, FakeCluster, counts, write_kubeconfig

from migrator.actuation.emulator import NvmlEmulator
from migrator.actuation.journal import read_journal
from migrator.actuation.migmanager import CONFIG_KEY, CONFIG_LABEL, STATE_LABEL
from migrator.actuation.migparted import import_config
from migrator.cli import main
from migrator.geometry.geometry import Geometry

pytest.importorskip("kubernetes")

FAST = ["--horizon", "3", "--time-limit", "0.3", "--log-level", "error"]
MIG_MANAGER = ["--backend", "mig-manager", "--node", NODE, "--namespace", NAMESPACE, "--settle", "0",
               "--mig-manager-timeout", "30"]


@pytest.fixture
def node_emulator() -> NvmlEmulator:
    """The built-in scenario's two A100s, MIG on and empty: the first plan must create
    instances, so every run below changes the GPUs."""
    return NvmlEmulator([A100, A100], layouts=["", ""])


@pytest.fixture
def in_pod(fake_cluster: FakeCluster, node_emulator: NvmlEmulator, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    """The command's Kubernetes client reaches the fake server, its NVML is the emulator."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod: the kubeconfig is used
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", fake_cluster.port)))
    monkeypatch.setattr("migrator.actuation.nvml.default_nvml", lambda: node_emulator)
    return fake_cluster


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["run", *args])


def labelled(cluster: FakeCluster) -> list[str]:
    """The configuration names migrator set in the node's label, in order."""
    return [body["metadata"]["labels"][CONFIG_LABEL] for method, path, body in cluster.writes() if "/nodes/" in path]


def test_run_applies_every_step_through_mig_manager(in_pod: FakeCluster, node_emulator: NvmlEmulator,
                                                    tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    result = run("--steps", "3", "--json", "--journal", str(journal), *MIG_MANAGER, *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["decisions"] == 3 and summary["failures"] == 0 and summary["reconfigurations"] >= 1

    # The GPUs hold what the summary says, and that is the configuration the label names,
    # read back from the ConfigMap by the importer (its counts: mig-parted keeps no placements).
    labels = in_pod.node["metadata"]["labels"]
    assert labels[STATE_LABEL] == "success" and labels[CONFIG_LABEL] == labelled(in_pod)[-1]
    document = yaml.safe_load(in_pod.config_map["data"][CONFIG_KEY])
    wanted = {t.index: dict(t.counts) for t in import_config(document, labels[CONFIG_LABEL],
                                                              [Geometry.for_gpu(A100)] * 2)}
    for g, gpu in enumerate(summary["gpus"]):
        assert gpu["device"] == g and gpu["layout"] == node_emulator.layout(g)
        assert counts(node_emulator.layout(g)) == wanted.get(g, {})

    # One committed transaction per GPU change, each ending where its plan asked (by counts),
    # the last one of each GPU at the layout it holds now.
    transactions = read_journal(journal)
    assert len(transactions) == summary["reconfigurations"]
    assert all(t.status == "committed" and not t.problems() for t in transactions)
    for t in transactions:
        assert counts(t.layout or "") == counts(t.target)
        assert t.records[-1]["via"] == "mig-manager"
    last = {t.gpu: t for t in transactions}
    assert {g: t.layout for g, t in last.items()} == {g: node_emulator.layout(g) for g in last}


def test_a_failed_state_is_a_named_failure_of_the_step(in_pod: FakeCluster, node_emulator: NvmlEmulator,
                                                       tmp_path: Path) -> None:
    in_pod.behaviour = "failed"
    journal = tmp_path / "journal.jsonl"
    result = run("--steps", "2", "--journal", str(journal), *MIG_MANAGER, *FAST)
    assert result.exit_code == 0, result.output
    assert result.exception is None and "Traceback" not in result.output
    failed = [line for line in result.stdout.splitlines() if line.strip().startswith("failed:")]
    assert len(failed) == 2, result.stdout
    assert all(f"node {NODE}: mig-manager could not apply migrator-" in line and f"{STATE_LABEL}=failed" in line
               for line in failed)
    assert "2 failures" in result.stdout
    assert node_emulator.layout(0) == node_emulator.layout(1) == ""
    # Each step set the label anew (and mig-manager answered each): a new name every time.
    first, second = labelled(in_pod)
    assert first != second
    transactions = read_journal(journal)
    assert transactions and all(t.status == "aborted" and not t.problems() for t in transactions)
    assert all("mig-manager could not apply" in t.records[-1]["error"] for t in transactions)


def test_dry_run_writes_nothing_to_the_cluster(in_pod: FakeCluster, node_emulator: NvmlEmulator) -> None:
    result = run("--steps", "1", "--dry-run", *MIG_MANAGER, *FAST)
    assert result.exit_code == 0, result.output
    assert in_pod.writes() == [] and node_emulator.layout(0) == ""
    assert "create GPU instance" in result.stdout  # mig-parted's steps, as a dry run describes them


def test_the_node_is_required_and_named_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    result = run("--backend", "mig-manager", "--steps", "1")
    assert result.exit_code == 2 and "--node" in result.output and "NODE_NAME" in result.output


@pytest.mark.parametrize("command", [["status"], ["recover", __file__]])
def test_status_and_recover_say_mig_manager_is_for_run(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--backend", "mig-manager"])
    assert result.exit_code == 2
    assert "only applies plans" in result.output and "--backend nvml" in result.output


def test_the_config_map_default_in_the_help_is_the_backend_s() -> None:
    from migrator.actuation.migmanager import CONFIG_MAP

    result = CliRunner().invoke(main, ["run", "--help"])
    assert CONFIG_MAP in " ".join(result.output.split())


def test_no_kubernetes_credentials_is_a_one_line_error(node_emulator: NvmlEmulator, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setattr("migrator.actuation.nvml.default_nvml", lambda: node_emulator)
    result = run("--steps", "1", *MIG_MANAGER, *FAST)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: no Kubernetes credentials")
