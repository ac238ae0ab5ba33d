"""What a decision costs in simulated time: a modelled figure by default, or the wall clock.

A decision takes effect the time it took after it was asked for, so a slow policy acts on
old news. Charging each decision its wall-clock time (``"wall"``, the simulator's first
behaviour) makes a replay depend on the machine's load at that moment: the same seed gives
other results on the next run, and a loaded machine penalises the planner more than the
baselines. So by default (``"model"``) every decision of a policy is charged one fixed
figure, the **decision cost**:

* measured once per machine, per release of migrator and of HiGHS (``highspy``), per
  policy (with its settings) and per scenario size, as the
  median wall-clock time of :data:`SAMPLES` decisions taken on the warm-up's arrivals before
  the first replay;
* kept in a small JSON file (:func:`cost_file`: ``$MIGRATOR_DECISION_COSTS``, else
  ``$XDG_CACHE_HOME/migrator/decision-costs.json`` or ``~/.cache/migrator/...``), so that
  later replays on the same machine charge the same figure and repeat exactly; delete the
  file to measure again;
* written into ``results.json`` (``latency``) beside the machine and the releases it was
  measured with.

Why not CPU time: it still varies from run to run (caches, frequency scaling, the solver's
threads), so two runs of one seed would not agree, and a multi-threaded solver's CPU time
is not the delay a controller sees. A fixed figure measured once keeps what matters (a
planner that takes 40 ms acts 40 ms late, one that takes a second acts a second late) and
makes replays repeatable. Policies that decide offline or are bounds (``static``,
``oracle``) keep their own figure (``charged_latency_s``, 0).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._files import write_atomically
from ..errors import ConfigError
from ..workload._numba_cache import user_cache_dir
from ..workload.scenario import Scenario
from .policy import Allocation, Environment, Observation, Policy

__all__ = ["LATENCY_MODES", "SAMPLES", "check_latency", "cost_file", "decision_cost", "machine", "measure", "software"]

log = logging.getLogger(__name__)

#: ``"model"``: a fixed decision cost per policy, measured once per machine; ``"wall"``: the
#: wall-clock time of each decision.
LATENCY_MODES = ("model", "wall")
#: Decisions timed to measure a policy's decision cost (the median is kept).
SAMPLES = 5
ENV = "MIGRATOR_DECISION_COSTS"


def check_latency(value: Any, field_name: str = "latency") -> str:
    """A latency mode: one of :data:`LATENCY_MODES`."""
    if not isinstance(value, str) or value not in LATENCY_MODES:
        raise ConfigError(f"{field_name} must be one of {', '.join(LATENCY_MODES)}, got {value!r}", field=field_name)
    return value


def cost_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where measured decision costs are kept (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get(ENV):
        return Path(env[ENV])
    return user_cache_dir(env) / "decision-costs.json"


def machine() -> str:
    """The machine a cost was measured on: host name, architecture, processor and CPUs."""
    return f"{platform.node()} {platform.machine()} {platform.processor() or '?'} {os.cpu_count()} CPUs"


def software() -> str:
    """The code a cost was measured with: migrator's version and the solver's (a new release
    of either decides at another speed, so its costs are measured again)."""
    return f"migrator {_package_version('migrator')}, highspy {_package_version('highspy')}"


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def decision_cost(policy: Policy, env: Environment, path: Path | None = None) -> float:
    """The policy's decision cost on this machine for ``env``'s scenario, in seconds: read
    from the cost file, or measured now (:func:`measure`) and written there.

    A copy of the policy is measured, so that the policy itself has decided nothing when
    the replay starts (a policy whose ``reset`` forgets less than it should stays right)."""
    path = cost_file() if path is None else path
    probe = copy.deepcopy(policy)
    probe.reset(env)  # some settings are known only then (the planner's, from the scenario)
    key = _key(probe, env.scenario)
    costs = _read(path)
    if key in costs:
        return float(costs[key]["decision_s"])
    cost = measure(probe, env)
    costs[key] = {"decision_s": cost, "policy": policy.name, "scenario": env.scenario.name, "machine": machine(),
                  "software": software()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(costs, indent=1, sort_keys=True) + "\n")
    except OSError as exc:  # a read-only home: the figure holds for this process only
        log.warning("decision cost of %s not kept (%s): later runs will measure again", policy.name, exc)
    return cost


def measure(policy: Policy, env: Environment, samples: int = SAMPLES) -> float:
    """Median wall-clock seconds of ``samples`` decisions of ``policy``, each on an
    observation ``interval_s`` after the last (the warm-up's arrivals so far, the scenario's
    layouts in place, no retraining done); decisions are not applied. A decision that keeps
    the allocation (None) is timed again on a freshly reset policy, whose first decision
    always decides."""
    policy.reset(env)
    scenario = env.scenario
    names = [t.name for t in scenario.tenants]
    in_place = Allocation.of([g.layout for g in scenario.gpus], [{} for _ in scenario.gpus])
    every = policy.interval_s / scenario.slot_s
    step = max(1, int(round(every))) if math.isfinite(every) else 1
    seen = env.warmup if env.warmup is not None and env.warmup.shape[1] > 0 else np.zeros((len(names), 1))
    took = []
    for k in range(samples):
        slot = k * step
        arrived = np.tile(seen, (1, slot // seen.shape[1] + 1))[:, :slot]
        observation = Observation(
            slot=slot, slot_s=scenario.slot_s, arrived=arrived, allocation=in_place,
            progress_gpu_s={n: 0.0 for n in names}, done={n: False for n in names},
        )
        started = time.perf_counter()
        decided = policy.decide(observation)
        if decided is None:
            # Nothing to change (an event-driven policy between events): time the decision
            # that changes something, the one whose delay the replay charges.
            policy.reset(env)
            started = time.perf_counter()
            policy.decide(observation)
        took.append(time.perf_counter() - started)
    return float(np.median(took))


def _key(policy: Policy, scenario: Scenario) -> str:
    """What the cost depends on: the machine, the software, the policy and its settings, and
    the scenario's size and planner settings (not its name, seed or arrivals)."""
    table = scenario.to_dict()
    shape = {
        "gpus": table["gpus"], "planner": table["planner"], "slot_s": table["slot_s"],
        "tenants": [{k: v for k, v in t.items() if k != "arrivals"} for t in table["tenants"]],
    }
    text = json.dumps({"machine": machine(), "software": software(), "policy": policy.describe(), "scenario": shape},
                      sort_keys=True, default=str)
    return f"{policy.name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _read(path: Path) -> dict[str, Any]:
    """The cost file's entries; nothing when it is missing or not ours (it is rewritten)."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items() if isinstance(v, dict) and _finite(v.get("decision_s"))}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
