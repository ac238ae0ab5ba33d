"""Cluster scale on Ray (migrator.cluster, migrator.cluster.agent): a local Ray cluster with emulated
nodes, each its own agent; the controller reaches the planned layouts on every node, an
agent killed mid-reconfiguration recovers from its journal, a slow part does not hold up
the others. Plus what needs no Ray: migrator without it, the DaemonSet's command."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from migrator.cli import main
from migrator.cluster.agent import agent_token
from migrator.planning.planner_problem import PlannerState
from scenarios import sized

ROOT = Path(__file__).resolve().parents[2]
N_NODES, GPUS_PER_NODE = 2, 2
#: The controllers' deadline where a test is about what the parts decide, not when: far
#: beyond what they take on a loaded machine. It costs nothing when they are quick, since
#: the controller waits only until every part has answered.
DEADLINE_S = 120.0


# -- without Ray ---------------------------------------------------------------------------------


def test_migrator_imports_and_runs_without_ray() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import migrator, migrator.cli\n"
        "from click.testing import CliRunner\n"
        "help = CliRunner().invoke(migrator.cli.main, ['--help'])\n"
        "assert help.exit_code == 0 and 'cluster' in help.output, help.output\n"
        "result = CliRunner().invoke(migrator.cli.main, ['cluster'])\n"
        "assert result.exit_code == 1, result.output\n"
        "print(result.output, end='')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Error: this command needs Ray: pip install 'migrator[cluster]'"
    assert "Traceback" not in done.stdout


def _daemonset() -> dict:
    documents = [d for d in yaml.safe_load_all((ROOT / "deploy" / "agent-daemonset.yaml").read_text(encoding="utf-8")) if d]
    (daemonset,) = [d for d in documents if d["kind"] == "DaemonSet"]
    return daemonset


def test_daemonset_runs_the_agent_command_on_gpu_nodes() -> None:
    pod = _daemonset()["spec"]["template"]["spec"]
    assert pod["nodeSelector"]  # GPU nodes only
    (container,) = pod["containers"]
    assert container["securityContext"]["privileged"] is True  # MIG changes need it
    command = container["command"] + container.get("args", [])
    assert command[:2] == ["migrator", "agent"]
    journal = command[command.index("--journal") + 1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    host_paths = {v["name"] for v in pod["volumes"] if "hostPath" in v}
    assert any(journal.startswith(mounts[name]) for name in host_paths), "the journal must outlive the pod"
    # The arguments are the CLI's: parsing them must succeed (nothing runs).
    agent = main.get_command(None, "agent")
    env = {e["name"] for e in container["env"]}
    assert "NODE_NAME" in env  # --node's default
    context = agent.make_context("agent", command[2:] + ["--node", "gpu-node-1"])
    assert context.params["backend"] == "nvml"


# -- on a local Ray cluster ----------------------------------------------------------------------

ray = pytest.importorskip("ray")
cluster_module = pytest.importorskip("migrator.cluster.cluster")


@pytest.fixture(scope="module")
def local_cluster():
    scenario = sized(N_NODES * GPUS_PER_NODE, 4, horizon=15)
    with cluster_module.LocalCluster(scenario, gpus_per_node=GPUS_PER_NODE, num_cpus=2) as cluster:
        cluster_module.warm_up()
        yield cluster
    assert not ray.is_initialized()


def _report(agent, timeout_s: float = 300.0):
    """The agent's report, waiting out a restart (Ray answers calls to a restarting actor at
    once with ActorUnavailableError; a restart is slow on a loaded machine)."""
    unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())
    began = time.monotonic()
    while True:
        try:
            return ray.get(agent.report.remote(), timeout=timeout_s)
        except unavailable:
            if time.monotonic() - began > timeout_s:
                raise
            time.sleep(0.2)


def _layouts(cluster) -> list[str]:
    reports = [_report(cluster.agents[n]) for n in cluster.nodes]
    return [str(s.layout) for r in reports for s in r.states]


def _set_layout(cluster, gpu: int, layout: str) -> None:
    """Put one emulated GPU at ``layout`` through its agent (as an outside change would)."""
    from migrator.cluster.agent import GpuTarget

    node, device = divmod(gpu, GPUS_PER_NODE)
    (result,) = ray.get(cluster.agents[cluster.nodes[node]].apply.remote({device: GpuTarget(layout)}, agent_token())).values()
    assert not isinstance(result, str), result


def test_agents_sit_on_their_nodes(local_cluster) -> None:
    reports = ray.get([local_cluster.agents[n].report.remote() for n in local_cluster.nodes])
    assert [r.node for r in reports] == list(local_cluster.nodes)
    assert [len(r.states) for r in reports] == [GPUS_PER_NODE] * N_NODES
    # The local shares of the arrivals add up to the scenario's trace (first slot).
    first = sum(r.arrivals[0][t.name] for r in reports for t in local_cluster.scenario.tenants[:1])
    assert first == pytest.approx(float(local_cluster.scenario.arrivals().counts[0, 0]))


def test_controller_reaches_the_planned_layouts_on_every_node(local_cluster) -> None:
    _set_layout(local_cluster, 0, "")  # something the plan is sure to change
    controller = cluster_module.ClusterController(local_cluster.scenario, local_cluster.agents, deadline_s=DEADLINE_S)
    for _ in range(2):
        decision = controller.step()
        assert decision.failures == ()
        assert [p.status for p in decision.parts] == ["solved"] * N_NODES * GPUS_PER_NODE
        assert list(decision.planned) == _layouts(local_cluster) == list(decision.layouts)
    summary = controller.summary()
    assert summary["decisions"] == 2 and summary["failures"] == 0 and summary["reconfigurations"] >= 1
    assert summary["gpus"][0]["layout"] != ""
    assert {g["node"] for g in summary["gpus"]} == set(local_cluster.nodes)
    assert all(p["solve_ms"] > 0 for p in summary["parts"])


def test_cluster_metrics_are_served_labelled_by_gpu_and_uuid(local_cluster) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from migrator.actuation.metrics import serve_metrics

    controller = cluster_module.ClusterController(local_cluster.scenario, local_cluster.agents, deadline_s=DEADLINE_S)
    controller.step()
    server = serve_metrics(controller.metrics, 0)
    try:
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    finally:
        server.shutdown()
        server.server_close()
    assert families["migrator_decisions"].samples[0].value == 1
    reports = [_report(local_cluster.agents[n]) for n in local_cluster.nodes]
    uuids = [s.uuid for r in reports for s in r.states]
    labels = sorted((int(s.labels["gpu"]), s.labels["gpu_uuid"]) for s in families["migrator_gpu_instances"].samples)
    assert labels == list(enumerate(uuids)) and all(uuids)
    tenants = {s.labels["tenant"] for s in families["migrator_planned_slo_attainment"].samples}
    assert tenants == {t.name for t in local_cluster.scenario.tenants}
    assert families["migrator_planned_goodput"].samples[0].value > 0


def test_a_cluster_plan_reports_its_gap_to_the_whole_problem(local_cluster) -> None:
    from migrator.planning.split_bound import split_bound

    controller = cluster_module.ClusterController(local_cluster.scenario, local_cluster.agents, deadline_s=DEADLINE_S)
    plan, _, _ = controller.decide()
    # The bound ran as a Ray task beside the parts: the same value as computed here.
    assert plan.stats.bound == pytest.approx(split_bound(plan.problem), rel=1e-9)
    assert plan.stats.objective <= plan.stats.bound
    assert 0 <= plan.stats.mip_gap < 1
    assert "bound" in controller.timings


def test_a_cluster_plan_gets_the_retraining_pass_its_settings_ask_for(local_cluster) -> None:
    from migrator.planning.planner import RawSolution
    from migrator.planning.retraining import retrain_over_window

    assert local_cluster.scenario.planner.retrain_over_window
    controller = cluster_module.ClusterController(local_cluster.scenario, local_cluster.agents, deadline_s=DEADLINE_S)
    seen = []
    solved = controller.planner.finish

    def spy(problem, raw: RawSolution, keep=()):
        seen.append((problem, raw.tasks, set(keep) | set(raw.kept_gpus)))
        return solved(problem, raw, keep)

    controller.planner.finish = spy
    plan, _, _ = controller.decide()
    (problem, merged, keep), = seen
    assert keep == set()  # every part solved
    expected = retrain_over_window(problem, merged)
    assert all((a == b).all() for a, b in zip(plan.tasks, expected))
    # The pass did something here: some first-period instance retrains.
    assert any(((t[0] > 0) & (t[0] % 2 == 0)).any() for t in plan.tasks)


def test_a_late_bound_is_reported_as_none_and_delays_nothing(local_cluster, monkeypatch) -> None:
    problem = cluster_module.ClusterController(local_cluster.scenario, local_cluster.agents).planner.problem()
    bound = cluster_module.WholeBound(problem, 0.0, parallel=True)
    # With no time left, result() must not wait for the solve (one takes seconds here): it
    # never asks Ray for the task's value, which is the only call that blocks until a task ends.
    fetched = []
    monkeypatch.setattr(cluster_module.ray, "get", lambda *args, **kwargs: fetched.append(args))
    assert bound.result() == float("inf")
    assert fetched == []


def test_an_agent_killed_mid_reconfiguration_recovers_from_its_journal(local_cluster) -> None:
    from migrator.actuation.journal import read_journal

    node = local_cluster.nodes[1]
    _set_layout(local_cluster, GPUS_PER_NODE, "")  # node1's first GPU: the plan will create instances
    controller = cluster_module.ClusterController(local_cluster.scenario, local_cluster.agents, deadline_s=DEADLINE_S)
    before = _layouts(local_cluster)
    ray.get(local_cluster.agents[node].inject_crash.remote(1, agent_token()))  # dies right after its first NVML change
    decision = controller.step()
    assert any(node in f for f in decision.failures)
    after = _layouts(local_cluster)  # waits for the restarted agent, which recovered first
    for g in range(GPUS_PER_NODE, 2 * GPUS_PER_NODE):
        assert after[g] in (before[g], decision.planned[g])
    assert after[GPUS_PER_NODE] == decision.planned[GPUS_PER_NODE] != ""  # recovery goes to the target
    journal = read_journal(local_cluster.workdir / f"{node}.journal.jsonl")
    assert all(not t.problems() for t in journal)
    last = {t.gpu: t for t in journal}
    assert all(t.status == "committed" for t in last.values())
    (interrupted,) = [t for t in journal if t.status == "open"]
    assert last[0].kind == "recover" and last[0].recovers == interrupted.txn
    # The next step sees the restart and the recovery and works normally.
    decision = controller.step()
    assert decision.failures == ()
    summary = controller.summary()
    assert summary["restarted"] == [node]
    assert [(r["node"], r["outcome"]) for r in summary["recoveries"]] == [(node, "target")]


def _deadline_after_all_but_one(real_wait_each):
    """A stand-in for ``cluster._wait_each`` whose deadline passes exactly when every part but
    one has answered, however long they take: which parts are late depends on the test's
    set-up, not on how loaded the machine is. The bound (asked alone) gets the real deadline."""

    def wait_each(refs, deadline):
        if len(refs) == 1:
            return real_wait_each(refs, deadline)
        ready, _ = ray.wait(list(refs), num_returns=len(refs) - 1, timeout=None)
        return {ref: deadline for ref in ready}

    return wait_each


def test_a_slow_part_keeps_its_layout_and_does_not_block_the_others(local_cluster, monkeypatch) -> None:
    slow = 1
    _set_layout(local_cluster, slow, "")  # a solved plan would create instances here
    monkeypatch.setattr(cluster_module, "_wait_each", _deadline_after_all_but_one(cluster_module._wait_each))
    # A deadline no part reaches by itself: each part also stops solving at it, and a part
    # that did under load came back without a plan (status late) even though it answered.
    controller = cluster_module.ClusterController(local_cluster.scenario, local_cluster.agents, deadline_s=DEADLINE_S)
    controller.inject_delay(slow, 600.0)  # answers long after the others (and the deadline): the one left out
    decision = controller.step()  # returns: the slow part was not waited for
    statuses = {p.gpu: p.status for p in decision.parts}
    assert statuses.pop(slow) == "late"
    assert set(statuses.values()) == {"solved"}
    assert decision.layouts[slow] == "" == _layouts(local_cluster)[slow]
    assert all(decision.layouts[g] == decision.planned[g] for g in statuses)  # the answered parts are applied
    assert controller.summary()["late_parts"] == 1


def test_waiting_for_parts_ends_at_the_deadline(local_cluster) -> None:
    from hostile import time_limit

    def sleep(seconds: float) -> None:  # defined here so Ray ships it by value to the worker
        import time

        time.sleep(seconds)

    sleeper = ray.remote(num_cpus=0)(sleep).remote(600.0)
    with time_limit(120):  # a hang guard, not a speed check: the sleeper answers after 600 s
        assert cluster_module._wait_each([sleeper], time.perf_counter() + 0.5) == {}
    assert ray.wait([sleeper], timeout=0)[0] == []  # still sleeping, not failed at once
    ray.cancel(sleeper)


def test_a_part_answered_without_a_plan_is_reported_and_keeps_its_gpu(caplog) -> None:
    from migrator.planning.planner import Planner

    scenario = sized(2, 4)
    names = [t.name for t in scenario.tenants]
    state = PlannerState(layouts=("3g.20gb@0,3g.20gb@4",) * 2,
                         assignments=({"3g.20gb@0": f"{names[0]}:infer", "3g.20gb@4": f"{names[1]}:infer"},
                                      {"3g.20gb@0": f"{names[2]}:infer", "3g.20gb@4": f"{names[3]}:infer"}))
    problem = Planner(scenario).problem(state=state)
    parts, subs = cluster_module.split_problem(problem)
    with caplog.at_level(logging.WARNING, logger="migrator"):
        outcomes = [cluster_module._local_outcome(g, parts[g], sub, limit, 1e-3, 0.0)
                    for g, (sub, limit) in enumerate(zip(subs, (5.0, 1e-9)))]
    assert [o.status for o in outcomes] == ["solved", "no plan"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("part gpu1: no plan in time") and "current layout is kept" in warned[0]
    merged = cluster_module.merge_outcomes(problem, parts, subs, outcomes)
    assert merged.kept_gpus == (1,)
    np.testing.assert_array_equal(merged.tasks[1], np.tile(problem.gpus[1].current, (len(problem.periods), 1)))


def test_an_agent_changes_nothing_without_the_clusters_token(local_cluster) -> None:
    from migrator.cluster.agent import GpuTarget

    agent = local_cluster.agents[local_cluster.nodes[0]]
    before = _layouts(local_cluster)
    for token in (None, "guess", agent_token() + "x"):
        with pytest.raises(ray.exceptions.RayTaskError, match="agent token"):
            ray.get(agent.apply.remote({0: GpuTarget("")}, token))
        with pytest.raises(ray.exceptions.RayTaskError, match="agent token"):
            ray.get(agent.inject_crash.remote(1, token))
    assert _layouts(local_cluster) == before
    ray.get(agent.report.remote())  # reading needs no token


def test_a_node_given_no_token_refuses_every_change(tmp_path, monkeypatch) -> None:
    from migrator.cluster.agent import TOKEN_ENV, AgentSpec, GpuTarget, NodeAgent
    from migrator.errors import AgentAuthError

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    agent = NodeAgent(AgentSpec(node="n", backend="emulator", emulator_state=str(tmp_path / "s.json"),
                                gpus=("A100-40GB",), layouts=("3g.20gb@0",)))
    with pytest.raises(AgentAuthError, match="not set on this node"):
        agent.apply({0: GpuTarget("")}, "anything")
    assert str(agent.report().states[0].layout) == "3g.20gb@0"
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    agent = NodeAgent(AgentSpec(node="n", backend="emulator", emulator_state=str(tmp_path / "s.json")))
    (result,) = agent.apply({0: GpuTarget("")}, "s3cret").values()
    assert str(agent.report().states[0].layout) == ""
