"""Decision latency of the cluster controller (issue 8): 8, 32, 64 and 128 emulated A100s,
16 per node (each node its own agent), two tenants per GPU as in the 8-GPU planner case.

For each size the same decision is made twice: the parts solved in parallel as Ray tasks,
and one after another in this process. ``extra_info`` records the per-part solve times, where
the rest of the time went (observe, build, split, merge), the Ray round trip of the parts
without solving them (``dispatch_s``), and what one core per part would take:
``one_core_per_part_s`` = observe + build + split + dispatch + slowest part + merge.

The 8-GPU case runs by default (CI's `--benchmark-disable` smoke run); the larger ones are
marked slow: `pytest benchmarks/test_bench_cluster.py -m "slow or not slow" --benchmark-only`.
"""

from __future__ import annotations

import time

import pytest

from scenarios import sized

ray = pytest.importorskip("ray")
cluster = pytest.importorskip("migrator.cluster.cluster")

GPUS_PER_NODE = 16
SIZES = [8, pytest.param(32, marks=pytest.mark.slow), pytest.param(64, marks=pytest.mark.slow),
         pytest.param(128, marks=pytest.mark.slow)]
MAX_NODES = 8
# Generous: the comparison needs every part solved in both modes (the controller's own
# deadline is the planner's time limit, 1 s by default).
DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def ray_up():
    resources = {cluster.node_resource(f"node{k}"): 1.0 for k in range(MAX_NODES)}
    ray.init(num_cpus=2, resources=resources, namespace=cluster.NAMESPACE, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    try:
        cluster.warm_up()
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"{n}gpus")
def cluster_of(request, ray_up):
    n_gpus = request.param
    scenario = sized(n_gpus, 2 * n_gpus)
    with cluster.LocalCluster(scenario, gpus_per_node=min(GPUS_PER_NODE, n_gpus)) as local:
        yield n_gpus, local


@ray.remote(num_cpus=1)
def _echo(problem):
    return problem.tenants


def _dispatch_s(subs) -> float:
    """Ray's round trip for the parts: each sent to a task that returns at once."""
    started = time.perf_counter()
    ray.get([_echo.remote(sub) for sub in subs])
    return time.perf_counter() - started


@pytest.mark.benchmark(group="cluster-decision")
@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "one-by-one"])
def test_cluster_decision(benchmark, cluster_of, parallel: bool) -> None:
    n_gpus, local = cluster_of
    controller = cluster.ClusterController(local.scenario, local.agents, deadline_s=DEADLINE_S, parallel=parallel)
    rounds = 3 if n_gpus <= 32 else 1
    plan, outcomes, _ = benchmark.pedantic(controller.decide, rounds=rounds, iterations=1, warmup_rounds=0)
    # A fast wrong answer must fail: every part solved, every layout valid.
    assert [o.status for o in outcomes] == ["solved"] * n_gpus
    for g, spec in enumerate(local.scenario.gpus):
        spec.geometry.validate(plan.first(g).layout)
    assert plan.total_goodput > 0
    times = controller.timings
    parts_s = sorted(o.solve_s for o in outcomes)
    problem = controller.planner.problem()
    _, subs = cluster.split_problem(problem)
    dispatch = _dispatch_s(subs)
    central = times["observe"] + times["build"] + times["split"] + times["merge"]
    benchmark.extra_info.update(
        gpus=n_gpus, nodes=len(local.nodes), parallel=parallel,
        part_solve_s=[round(s, 4) for s in parts_s], part_solve_max_s=parts_s[-1],
        part_solve_sum_s=sum(parts_s), timings_s={k: round(v, 4) for k, v in times.items()},
        dispatch_s=dispatch, one_core_per_part_s=central + dispatch + parts_s[-1],
    )
