"""The published baselines (Ekya, Astraea, PARIS) as policies: every decision is a layout the
GPU accepts, Ekya's thief scheduler only climbs its own objective and moves shares where the
accuracy is, PARIS's partition serves the average load whenever a partition can (brute force
over the maximal layouts of one GPU), and Astraea serves inference before retraining."""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import migrator
from migrator.evaluation.baselines import (
    AstraeaPolicy,
    EkyaPolicy,
    ParisPolicy,
    ekya_objective,
    ekya_tables,
    fair_shares,
    thief_schedule,
)
from migrator.geometry.layout import Layout
from migrator.evaluation.policy import Allocation, Environment, Observation, make_policy
from migrator.evaluation.simulate import simulate

POLICIES = (EkyaPolicy, AstraeaPolicy, ParisPolicy)
MODELS = ("resnet50", "vit_b16", "bert_base", "distilbert", "minilm_l12", "mpnet_base")
GPUS = ("A100-40GB", "A100-80GB", "H100-80GB")


# -- building scenarios, environments and observations ------------------------------------------


def tenant(name: str, model: str = "resnet50", rate: float = 100.0, **fields: Any) -> dict[str, Any]:
    base = {
        "name": name, "model": model, "slo_ms": 100,
        "arrivals": {"synthetic": "poisson", "mean_rps": rate},
        "window_s": 60, "work_gpu_s": 10, "accuracy_before": 0.6, "accuracy_after": 0.8,
    }
    return {**base, **fields}


def scenario(
    tenants: Sequence[dict[str, Any]], gpu: str = "A100-40GB", count: int = 1, duration_s: float = 60
) -> migrator.Scenario:
    return migrator.Scenario.from_dict({
        "name": "t", "duration_s": duration_s,
        "gpus": [{"model": gpu, "count": count, "layout": ""}], "tenants": list(tenants),
    })


def environment(s: migrator.Scenario, mean_rps: Sequence[float] | None = None) -> Environment:
    trace = s.arrivals().counts.astype(np.float64)
    mean = trace.mean(axis=1) / s.slot_s if mean_rps is None else np.asarray(mean_rps, dtype=np.float64)
    return Environment(s, mean_rps=mean, seed=0, trace=trace)


def observation(
    s: migrator.Scenario, slot: int = 0, arrived: np.ndarray | None = None,
    progress: Sequence[float] | None = None, done: Sequence[bool] | None = None,
    allocation: Allocation | None = None,
) -> Observation:
    names = [t.name for t in s.tenants]
    n = len(names)
    return Observation(
        slot=slot, slot_s=s.slot_s,
        arrived=np.zeros((n, slot)) if arrived is None else arrived,
        allocation=allocation or Allocation.of([g.layout for g in s.gpus], [{} for _ in s.gpus]),
        progress_gpu_s=dict(zip(names, progress or [0.0] * n)),
        done=dict(zip(names, done or [False] * n)),
    )


def decide(policy_class: type, env: Environment, obs: Observation, **options: Any) -> Allocation:
    policy = policy_class(**options)
    policy.reset(env)
    decision = policy.decide(obs)
    assert decision is not None  # a first decision always says what it wants
    return decision


def inference_capacity(env: Environment, allocation: Allocation) -> np.ndarray:
    """Req/s within SLO each tenant's inference instances serve."""
    names = list(env.tenant_names)
    capacity = np.zeros(len(names))
    for g in range(len(allocation.layouts)):
        for placement, task in allocation.tasks(g).items():
            name, _, kind = task.rpartition(":")
            if kind == "infer":
                i = names.index(name)
                capacity[i] += env.capacity_rps(i, g, profile_of(placement))
    return capacity


def profile_of(placement: str) -> str:
    return Layout.parse(placement).placements[0].profile


def compute_of(env: Environment, allocation: Allocation, kind: str) -> int:
    """Compute slices of the instances running tasks of ``kind``."""
    total = 0
    for g, geometry in enumerate(env.geometries):
        for placement, task in allocation.tasks(g).items():
            if task.endswith(f":{kind}"):
                total += geometry.profile(profile_of(placement)).compute_slices
    return total


def assert_valid(env: Environment, allocation: Allocation) -> None:
    """A layout NVML would accept on every GPU, in canonical text, with a task the
    instance can run (the model fits it) or idle."""
    assert len(allocation.layouts) == len(env.geometries)
    names = list(env.tenant_names)
    for g, geometry in enumerate(env.geometries):
        layout = allocation.layouts[g]
        assert geometry.canonical(layout) == layout
        placements = {str(p) for p in Layout.parse(layout)}
        assert set(allocation.assignments[g]) <= placements
        for placement, task in allocation.tasks(g).items():
            if task == "idle":
                continue
            name, _, kind = task.rpartition(":")
            profile = profile_of(placement)
            i = names.index(name)
            figure = env.capacity_rps(i, g, profile) if kind == "infer" else env.retrain_speed(i, g, profile)
            assert kind in ("infer", "retrain") and figure > 0, (placement, task)


# -- every decision is a valid layout ---------------------------------------------------------


@st.composite
def tenants_strategy(draw: st.DrawFn, max_tenants: int = 4) -> list[dict[str, Any]]:
    n = draw(st.integers(1, max_tenants))
    out = []
    for i in range(n):
        retrains = draw(st.booleans())
        before = draw(st.floats(0.3, 0.9))
        fields: dict[str, Any] = {
            "slo_ms": draw(st.sampled_from([25, 50, 100, 200])),
            "accuracy_before": before,
            "accuracy_after": min(1.0, before + draw(st.floats(0.0, 0.3))),
            "work_gpu_s": draw(st.floats(0.0, 40.0)),
            "window_s": draw(st.sampled_from([20, 30, 60])) if retrains else None,
        }
        rate = draw(st.floats(1.0, 3000.0))
        out.append(tenant(f"t{i}", draw(st.sampled_from(MODELS)), rate, **fields))
    return out


@st.composite
def situations(draw: st.DrawFn) -> tuple[Environment, Observation]:
    """A random scenario and a random moment of it: arrivals so far, retraining progress,
    and an allocation in place (the scenario's, or a random maximal layout with random tasks)."""
    s = scenario(draw(tenants_strategy()), gpu=draw(st.sampled_from(GPUS)), count=draw(st.integers(1, 2)))
    env = environment(s)
    n, slot = len(s.tenants), draw(st.integers(0, s.n_slots - 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrived = rng.poisson(env.mean_rps[:, None] * rng.uniform(0.2, 3.0, (n, 1)), (n, slot)).astype(np.float64)
    progress = [draw(st.floats(0.0, max(t.work_gpu_s, 0.0))) for t in s.tenants]
    done = [draw(st.booleans()) for _ in s.tenants]
    allocation = None
    if draw(st.booleans()):
        layouts, assignments = [], []
        tasks = ["idle"] + [f"{t.name}:{k}" for t in s.tenants for k in ("infer", "retrain")]
        for geometry in env.geometries:
            layout = draw(st.sampled_from(geometry.layouts(maximal=True)))
            layouts.append(layout)
            assignments.append({str(p): draw(st.sampled_from(tasks)) for p in Layout.parse(layout)})
        allocation = Allocation.of(layouts, assignments)
    return env, observation(s, slot, arrived, progress, done, allocation)


@settings(max_examples=25)
@given(situations(), st.sampled_from(POLICIES))
def test_every_decision_is_a_valid_layout(situation: tuple[Environment, Observation], policy_class: type) -> None:
    env, obs = situation
    assert_valid(env, decide(policy_class, env, obs))


@pytest.mark.parametrize("name", ["ekya", "astraea", "paris"])
def test_a_replay_runs_and_every_layout_it_used_is_valid(name: str) -> None:
    s = scenario(
        [tenant("a", "resnet50", 900, window_s=20, work_gpu_s=8),
         tenant("b", "bert_base", 1500, window_s=30, work_gpu_s=6)],
        count=2, duration_s=60,
    )
    result = simulate(s, make_policy(name), decision_latency_s=0.0)
    for geometry, layouts in zip(s.geometries(), result.layouts):
        assert all(geometry.is_valid(layout) for layout in layouts)
    assert result.goodput > 0 and result.slo_attainment > 0.5


# -- Ekya: the thief scheduler ------------------------------------------------------------------


@st.composite
def thief_problems(draw: st.DrawFn) -> tuple[np.ndarray, list[int], int]:
    n = draw(st.integers(1, 4))
    total = draw(st.integers(1, 14))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    tables = rng.uniform(0.0, 1.0, (n, total + 1, total + 1))
    if draw(st.booleans()):  # Ekya's tables grow with either share; the thief must not rely on it
        tables = np.maximum.accumulate(np.maximum.accumulate(tables, axis=1), axis=2)
    pending = [draw(st.booleans()) for _ in range(n)]
    jobs = [2 * i for i in range(n)] + [2 * i + 1 for i in range(n) if pending[i]]
    return tables, jobs, total


@settings(max_examples=60)
@given(thief_problems(), st.integers(1, 3))
def test_thief_never_lowers_its_objective(problem: tuple[np.ndarray, list[int], int], delta: int) -> None:
    tables, jobs, total = problem
    shares, value = thief_schedule(tables, jobs, total, delta)
    assert shares.sum() == total and (shares >= 0).all()
    assert value == pytest.approx(ekya_objective(tables, jobs, shares))
    assert value >= ekya_objective(tables, jobs, fair_shares(len(jobs), total)) - 1e-12


def test_thief_finds_the_split_a_single_job_wants() -> None:
    """Only tenant 0's retraining is worth anything: the thief gives it every slice."""
    tables = np.zeros((2, 8, 8))
    tables[0] = np.arange(8)[None, :] / 7.0  # accuracy grows with retraining slices only
    shares, value = thief_schedule(tables, [0, 2, 1], total=7)
    assert shares.tolist() == [0, 0, 7] and value == pytest.approx(0.5)


def ekya_shares(s: migrator.Scenario, rates: Sequence[float]) -> dict[str, int]:
    env = environment(s)
    policy = EkyaPolicy()
    policy.reset(env)
    obs = observation(s, slot=3, arrived=np.tile(np.asarray(rates, dtype=np.float64)[:, None], (1, 3)))
    policy.decide(obs)
    return policy.last_shares


def retraining_tenant(rate: float, before: float, after: float) -> migrator.Scenario:
    return scenario([tenant("a", rate=rate, window_s=200, work_gpu_s=60, accuracy_before=before, accuracy_after=after)])


def only_seven_slices_keep_up() -> float:
    """A resnet50 load (100 ms SLO, A100-40GB) that only all 7 slices (a 7g instance) serve:
    half-way between the most six slices serve (two 3g instances) and what a 7g serves,
    from the capacity model itself, so that the tests follow it when it is recalibrated."""
    from migrator.workload.goodput import slo_capacity

    six = 2 * slo_capacity("resnet50", "3g.20gb", 100.0, gpu="A100-40GB")
    seven = slo_capacity("resnet50", "7g.40gb", 100.0, gpu="A100-40GB")
    assert seven > six
    return (six + seven) / 2


def test_ekya_moves_shares_to_retraining_when_the_gain_is_large() -> None:
    """Light load, retraining lifting accuracy from 0.3 to 0.95: retraining gets more than
    the fair split (7 slices, 2 jobs: 4 and 3). At a load that wants more than 4 slices of
    inference, a large gain still takes slices for retraining, and no gain takes none
    (the thief moves shares only for a strict gain)."""
    light = ekya_shares(retraining_tenant(50, 0.3, 0.95), [50])
    assert light["a:retrain"] > 3 and light["a:infer"] >= 1
    busy = only_seven_slices_keep_up()
    large = ekya_shares(retraining_tenant(busy, 0.3, 0.95), [busy])
    none = ekya_shares(retraining_tenant(busy, 0.8, 0.8), [busy])
    assert none == {"a:infer": 7, "a:retrain": 0}
    assert large["a:retrain"] > none["a:retrain"]


def test_ekya_starves_retraining_when_inference_needs_the_gpu() -> None:
    """At a load only the whole GPU keeps up with, a small gain is not worth losing requests."""
    rate = only_seven_slices_keep_up()
    shares = ekya_shares(retraining_tenant(rate, 0.80, 0.82), [rate])
    assert shares["a:retrain"] == 0


def test_ekya_tables_value_the_split_as_the_simulator_would() -> None:
    """The estimate for (a, b) slices: accuracy averaged over the rest of the window, times
    the share of the stream the inference keeps up with."""
    s = scenario([tenant("a", rate=100, window_s=100, work_gpu_s=10, accuracy_before=0.5, accuracy_after=1.0)])
    env = environment(s)
    tables, pending = ekya_tables(env, observation(s), np.array([100.0]), total=7)
    assert pending.tolist() == [True]
    speed = {c: env.retrain_speed(0, 0, p) for c, p in ((1, "1g.5gb"), (2, "2g.10gb"), (3, "3g.20gb"))}
    best_3 = max(speed[3], speed[2] + speed[1], 3 * speed[1])  # 3 slices as MIG instances
    landed = s.planner.setup_s + 10 / best_3
    expected = (0.5 * landed + 1.0 * (100 - landed)) / 100
    assert tables[0, 0, 7] == 0.0  # no inference: nothing served
    assert tables[0, 7, 0] == pytest.approx(0.5)  # never retrained: accuracy_before throughout
    assert tables[0, 7, 3] == pytest.approx(expected)
    assert (np.diff(tables[0], axis=0) >= -1e-12).all() and (np.diff(tables[0], axis=1) >= -1e-12).all()


def test_ekya_realises_its_shares_on_mig_instances() -> None:
    """One tenant, nothing to retrain: every compute slice of both GPUs serves its inference."""
    s = scenario([tenant("a", rate=5000, window_s=None)], count=2)
    env = environment(s)
    allocation = decide(EkyaPolicy, env, observation(s, slot=1, arrived=np.array([[5000.0]])))
    assert compute_of(env, allocation, "infer") == 14


# -- PARIS: the static partition against brute force ----------------------------------------------


def brute_force_cover(env: Environment, demand: Sequence[float]) -> int | None:
    """Fewest compute slices of inference instances, over every maximal layout of GPU 0 and
    every assignment of its instances to tenants, whose capacity covers ``demand``; None
    when no layout can."""
    geometry = env.geometries[0]
    n = len(demand)
    best = None
    shapes = {tuple(sorted(p.profile for p in Layout.parse(text))) for text in geometry.layouts(maximal=True)}
    for profiles in sorted(shapes):
        caps = np.array([[env.capacity_rps(i, 0, p) for i in range(n)] for p in profiles])  # (k, n)
        compute = np.array([geometry.profile(p).compute_slices for p in profiles])
        choice = np.array(list(itertools.product(range(n + 1), repeat=len(profiles))))  # n: unused
        served = np.stack([(caps[:, i] * (choice == i)).sum(axis=1) for i in range(n)], axis=1)
        covers = (served >= np.asarray(demand) - 1e-9).all(axis=1)
        if covers.any():
            used = ((choice < n) * compute).sum(axis=1)[covers].min()
            best = int(used) if best is None else min(best, int(used))
    return best


@settings(max_examples=12)
@given(
    st.lists(
        st.tuples(st.sampled_from(MODELS), st.sampled_from([50, 100, 200]), st.floats(5.0, 4000.0)),
        min_size=1, max_size=3,
    ),
    st.sampled_from(["A100-40GB", "H100-80GB"]),
)
def test_paris_partition_serves_the_average_load_when_a_partition_can(
    specs: list[tuple[str, int, float]], gpu: str
) -> None:
    s = scenario([tenant(f"t{i}", m, r, slo_ms=slo) for i, (m, slo, r) in enumerate(specs)], gpu=gpu)
    mean = [r for _, _, r in specs]
    env = environment(s, mean_rps=mean)
    policy = ParisPolicy()
    policy.reset(env)
    partition = policy.partition_allocation()
    assert_valid(env, partition)
    fewest = brute_force_cover(env, mean)
    if fewest is not None:
        assert (inference_capacity(env, partition) >= np.asarray(mean) - 1e-6).all()
        assert compute_of(env, partition, "infer") == fewest  # and with no slice more than needed
    # The decision at a window start gives what is left to retraining, keeping the partition.
    allocation = policy.decide(observation(s))
    assert allocation is not None and allocation.layouts == partition.layouts
    assert (inference_capacity(env, allocation) >= inference_capacity(env, partition) - 1e-6).all()


def test_paris_never_repartitions() -> None:
    s = scenario(
        [tenant("a", "resnet50", 900, window_s=20, work_gpu_s=8),
         tenant("b", "distilbert", 2500, window_s=30, work_gpu_s=6)],
        count=2, duration_s=90,
    )
    result = simulate(s, make_policy("paris"), decision_latency_s=0.0)
    assert result.reconfigurations <= len(s.gpus)  # from the initial layout to the partition, once
    assert all(len(set(layouts)) == 1 for layouts in result.layouts)
    assert result.score.completion_slots("a")  # left-over instances did run the retraining


# -- Astraea: QoS first --------------------------------------------------------------------------


@settings(max_examples=25)
@given(situations())
def test_astraea_gives_retraining_only_what_no_underserved_inference_could_use(
    situation: tuple[Environment, Observation],
) -> None:
    env, obs = situation
    policy = AstraeaPolicy()
    policy.reset(env)
    target = policy.demand(obs) * (1 + policy.headroom)
    allocation = policy.decide(obs)
    assert allocation is not None
    capacity = inference_capacity(env, allocation)
    for g in range(len(allocation.layouts)):
        for placement, task in allocation.tasks(g).items():
            if task.endswith(":retrain"):
                profile = profile_of(placement)
                could_use = [i for i in range(len(capacity)) if env.capacity_rps(i, g, profile) > 0]
                assert all(capacity[i] >= target[i] - 1e-6 for i in could_use), (placement, task)


def test_astraea_covers_demand_with_the_fewest_slices_and_retrains_on_the_rest() -> None:
    specs = [("resnet50", 700.0), ("bert_base", 900.0)]
    s = scenario([tenant(f"t{i}", m, r, window_s=60, work_gpu_s=30) for i, (m, r) in enumerate(specs)])
    env = environment(s)
    rates = np.array([[r] for _, r in specs])
    policy = AstraeaPolicy(headroom=0.0)
    policy.reset(env)
    allocation = policy.decide(observation(s, slot=1, arrived=rates))
    assert allocation is not None
    assert (inference_capacity(env, allocation) >= rates[:, 0] - 1e-6).all()
    assert compute_of(env, allocation, "infer") == brute_force_cover(env, rates[:, 0])
    assert compute_of(env, allocation, "retrain") > 0


def test_astraea_follows_the_load() -> None:
    """When a tenant's load outgrows its instances, the next decision re-deploys for it;
    while the load stays, nothing moves."""
    s = scenario([tenant("a", "resnet50", 300, window_s=None), tenant("b", "bert_base", 300, window_s=None)])
    env = environment(s)
    policy = AstraeaPolicy()
    policy.reset(env)
    low = np.full((2, 5), 300.0)
    first = policy.decide(observation(s, slot=5, arrived=low))
    assert first is not None
    assert policy.decide(observation(s, slot=6, arrived=np.hstack([low, low[:, :1]]), allocation=first)) is None
    high = np.hstack([low, np.array([[300.0], [2000.0]])])
    second = policy.decide(observation(s, slot=6, arrived=high, allocation=first))
    assert second is not None
    assert inference_capacity(env, second)[1] >= 2000.0 > inference_capacity(env, first)[1]


# -- on the default scenario ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ekya", "astraea", "paris"])
def test_default_scenario_runs_end_to_end(name: str) -> None:
    # Their decision latency is measured in benchmarks/test_bench_simulate.py.
    result = simulate(migrator.Scenario.default(), make_policy(name))
    assert result.goodput > 0 and result.decisions
