"""Hostile input at every entry point (issue 18): the issue's list of bad inputs, rebuilt from
each example it names and the systematic variants around them, as one table of cases run
through the ``migrator`` command itself.

Each case is a bad input to a real entry point (a scenario file's field, a trace CSV, a model
table, a mig-parted config, a journal, an emulator state file, or an option of any command)
and the outcome it must have: the exit code and words of migrator's own message (the field
or option, and the allowed values where there is a fixed set). What no case may do:

* end in a Python traceback (any exception but click's own exit),
* hang (each case runs under an alarm of ``HANG_S`` seconds; every plan is time-limited),
* exit 0 with a wrong answer (the few cases that must succeed say what the answer is).

The cases run in-process through click's CliRunner; nothing but loopback is contacted.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hostile import BUILTIN, TINY_MODEL, changed, many_tenants, time_limit

from migrator.cli import main
from migrator.errors import ConfigError
from migrator.workload.scenario import Scenario

NAN, INF = math.nan, math.inf

#: A case still running after this long has hung (the slowest good case takes a few seconds;
#: the issue's hangs ran for minutes).
HANG_S = 120

DEFAULT_TEXT = (resources.files("migrator") / "data" / "scenarios" / "default.yaml").read_text(encoding="utf-8")


# -- the cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """``args`` of the ``migrator`` command, with ``{tmp}`` standing for the case's folder,
    which holds ``files`` (name -> text or bytes) first. The run must exit with ``code`` and
    its output must contain every phrase of ``says``."""

    id: str
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)


def dropped(path: str) -> dict[str, Any]:
    """The built-in scenario's mapping without the dotted ``path``."""
    table = copy.deepcopy(BUILTIN)
    *parents, last = path.split(".")
    node: Any = table
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node[step]
    del node[int(last) if isinstance(node, list) else last]
    return table


def scenario_text(table: Any) -> str:
    return yaml.safe_dump(table, sort_keys=False)


# Scenario fields (the issue's examples first): (id, dotted path, bad value, the field the
# error names). Run through Scenario.from_dict (the field exactly) and through `migrator plan`.
FIELDS: list[tuple[str, str, Any, str]] = [
    # NaN passed every "value < low" check; infinity made the objective NaN
    ("penalty-nan", "planner.reconfig_penalty", NAN, "planner.reconfig_penalty"),
    ("penalty-inf", "planner.reconfig_penalty", INF, "planner.reconfig_penalty"),
    ("penalty-negative", "planner.reconfig_penalty", -1, "planner.reconfig_penalty"),
    ("time-limit-nan", "planner.time_limit_s", NAN, "planner.time_limit_s"),
    ("time-limit-inf", "planner.time_limit_s", INF, "planner.time_limit_s"),
    ("time-limit-zero", "planner.time_limit_s", 0, "planner.time_limit_s"),
    ("time-limit-text", "planner.time_limit_s", "soon", "planner.time_limit_s"),
    ("mip-gap-nan", "planner.mip_gap", NAN, "planner.mip_gap"),
    ("mip-gap-negative", "planner.mip_gap", -0.1, "planner.mip_gap"),
    ("setup-nan", "planner.setup_s", NAN, "planner.setup_s"),
    ("setup-negative", "planner.setup_s", -1, "planner.setup_s"),
    ("setup-huge", "planner.setup_s", 1e9, "planner.setup_s"),
    ("terminal-weight-inf", "planner.terminal_weight", INF, "planner.terminal_weight"),
    ("horizon-huge", "planner.horizon", 100_000, "planner.horizon"),
    ("horizon-zero", "planner.horizon", 0, "planner.horizon"),
    ("horizon-float", "planner.horizon", 2.5, "planner.horizon"),
    ("horizon-text", "planner.horizon", "30", "planner.horizon"),
    ("workers-huge", "planner.workers", 10**30, "planner.workers"),
    ("workers-negative", "planner.workers", -1, "planner.workers"),
    ("decompose-negative", "planner.decompose_above", -1, "planner.decompose_above"),
    ("retrain-instances-negative", "planner.retrain_instances", -1, "planner.retrain_instances"),
    ("flag-text", "planner.retrain_over_window", "no", "planner.retrain_over_window"),
    ("planner-int-key", "planner", {1: 2}, "planner.1"),
    ("planner-unknown-key", "planner.speed", "max", "planner.speed"),
    ("planner-list", "planner", [1, 2], "planner"),
    # what `run` refused, `plan` accepted
    ("alpha-5", "planner.forecaster.alpha", 5, "planner.forecaster.alpha"),
    ("alpha-nan", "planner.forecaster.alpha", NAN, "planner.forecaster.alpha"),
    ("alpha-huge-int", "planner.forecaster.alpha", 10**400, "planner.forecaster.alpha"),
    ("forecaster-unknown-parameter", "planner.forecaster.beta", 0.1, "planner.forecaster.beta"),
    ("forecaster-unknown-name", "planner.forecaster.name", "arima", "planner.forecaster"),
    ("forecaster-text", "planner.forecaster", "ewma please", "planner.forecaster"),
    ("season-huge", "planner.forecaster", {"name": "holt-winters", "season_length": 10**9},
     "planner.forecaster.season_length"),
    ("forecaster-int-key", "planner.forecaster", {"name": "ewma", 3: 1}, "planner.forecaster"),
    # tenants
    ("slo-inf", "tenants.0.slo_ms", INF, "tenants[0].slo_ms"),
    ("slo-zero", "tenants.0.slo_ms", 0, "tenants[0].slo_ms"),
    ("slo-negative", "tenants.0.slo_ms", -100, "tenants[0].slo_ms"),
    ("work-nan", "tenants.0.work_gpu_s", NAN, "tenants[0].work_gpu_s"),
    ("work-text", "tenants.0.work_gpu_s", "lots", "tenants[0].work_gpu_s"),
    ("work-negative", "tenants.0.work_gpu_s", -5, "tenants[0].work_gpu_s"),
    ("window-inf", "tenants.0.window_s", INF, "tenants[0].window_s"),
    ("window-zero", "tenants.0.window_s", 0, "tenants[0].window_s"),
    ("accuracy-text", "tenants.0.accuracy_before", "high", "tenants[0].accuracy_before"),
    ("accuracy-above-one", "tenants.0.accuracy_after", 1.5, "tenants[0].accuracy_after"),
    ("accuracy-nan", "tenants.0.accuracy_after", NAN, "tenants[0].accuracy_after"),
    ("percentile-text", "tenants.0.percentile", "p99", "tenants[0].percentile"),
    ("percentile-nan", "tenants.0.percentile", NAN, "tenants[0].percentile"),
    ("max-batch-float", "tenants.0.max_batch", 2.5, "tenants[0].max_batch"),
    ("max-batch-zero", "tenants.0.max_batch", 0, "tenants[0].max_batch"),
    ("name-list", "tenants.0.name", ["a"], "tenants[0].name"),
    ("name-duplicate", "tenants.1.name", "resnet50", "tenants[1].name"),
    ("model-list", "tenants.0.model", ["resnet50"], "tenants[0].model"),
    ("model-unknown", "tenants.0.model", "gpt9", "tenants[0].model"),
    ("tenant-unknown-key", "tenants.0.priority", "high", "tenants[0].priority"),
    ("tenant-text", "tenants.0", "resnet50", "tenants[0]"),
    ("tenants-empty", "tenants", [], "tenants"),
    ("tenants-mapping", "tenants", {"a": 1}, "tenants"),
    ("min-attainment-above-one", "tenants.0.min_slo_attainment", 1.5, "tenants[0].min_slo_attainment"),
    # sizes: refused before anything of that size is allocated
    ("duration-huge", "duration_s", 10**12, "duration_s"),
    ("duration-over-slots", "duration_s", 1e308, "duration_s"),
    ("duration-nan", "duration_s", NAN, "duration_s"),
    ("duration-zero", "duration_s", 0, "duration_s"),
    ("duration-text", "duration_s", "10 min", "duration_s"),
    ("slot-tiny", "slot_s", 1e-6, "slot_s"),
    ("slot-nan", "slot_s", NAN, "slot_s"),
    ("slot-zero", "slot_s", 0, "slot_s"),
    ("slot-inf", "slot_s", INF, "slot_s"),
    ("count-huge", "gpus.0.count", 100_000, "gpus[0].count"),
    ("count-zero", "gpus.0.count", 0, "gpus[0].count"),
    ("count-text", "gpus.0.count", "two", "gpus[0].count"),
    ("gpus-add-up", "gpus", [{"model": "A100-40GB", "count": 2048}] * 2, "gpus"),
    ("gpus-empty", "gpus", [], "gpus"),
    ("gpu-model-unknown", "gpus.0.model", "Z100", "gpus[0].model"),
    ("gpu-layout-syntax", "gpus.0.layout", "3g.20gb at 0", "gpus[0].layout"),
    ("gpu-layout-overlap", "gpus.0.layout", "7g.40gb@0,1g.5gb@0", "gpus[0].layout"),
    ("gpu-layout-long-start", "gpus.0.layout", "1g.5gb@" + "9" * 5000, "gpus[0].layout"),
    ("gpu-layout-number", "gpus.0.layout", 7, "gpus[0].layout"),
    ("tenants-many", "tenants", many_tenants(5000), "tenants"),
    ("seed-huge", "seed", 10**30, "seed"),
    ("seed-negative", "seed", -1, "seed"),
    ("seed-text", "seed", "lucky", "seed"),
    ("name-list-top", "name", ["x"], "name"),
    ("top-unknown-key", "colour", "blue", "colour"),
    # arrivals: numpy's own errors (ValueError, OverflowError) must not be what the user sees
    ("mean-rps-huge", "tenants.0.arrivals.mean_rps", 1e300, "tenants[0].arrivals.mean_rps"),
    ("mean-rps-negative", "tenants.0.arrivals.mean_rps", -1, "tenants[0].arrivals.mean_rps"),
    ("mean-rps-nan", "tenants.0.arrivals.mean_rps", NAN, "tenants[0].arrivals.mean_rps"),
    ("amplitude-two", "tenants.0.arrivals.amplitude", 2, "tenants[0].arrivals.amplitude"),
    ("period-tiny", "tenants.0.arrivals.period_s", 1e-300, "tenants[0].arrivals.period_s"),
    ("sojourns-tiny", "tenants.1.arrivals", {"synthetic": "bursty", "low_sojourn_s": 1e-9, "high_sojourn_s": 1e-9},
     "tenants[1].arrivals.low_sojourn_s"),
    ("step-time-huge", "tenants.2.arrivals.steps", [[10**400, 2.0]], "tenants[2].arrivals.steps"),
    ("steps-text", "tenants.2.arrivals.steps", "up", "tenants[2].arrivals.steps"),
    ("step-multiplier-huge", "tenants.2.arrivals.steps", [[300, 1e308]], "tenants[2].arrivals.steps"),
    ("scale-inf", "tenants.0.arrivals", {"sample": "shift-2", "column": "t1", "scale": INF},
     "tenants[0].arrivals.scale"),
    ("scale-huge", "tenants.0.arrivals", {"sample": "shift-2", "column": "t1", "scale": 1e300}, "tenants[0].arrivals"),
    ("kind-list", "tenants.0.arrivals.synthetic", ["diurnal"], "tenants[0].arrivals.synthetic"),
    ("kind-unknown", "tenants.0.arrivals.synthetic", "sine", "tenants[0].arrivals.synthetic"),
    ("sample-unknown", "tenants.0.arrivals", {"sample": "no-such-trace"}, "tenants[0].arrivals.sample"),
    ("sample-column-unknown", "tenants.0.arrivals", {"sample": "shift-2", "column": "t9"},
     "tenants[0].arrivals.column"),
    ("arrivals-two-sources", "tenants.0.arrivals", {"synthetic": "poisson", "sample": "shift-2"},
     "tenants[0].arrivals"),
    ("arrivals-text", "tenants.0.arrivals", "poisson", "tenants[0].arrivals"),
    ("csv-number", "tenants.0.arrivals", {"csv": 5}, "tenants[0].arrivals.csv"),
    ("csv-nul", "tenants.0.arrivals", {"csv": "tr\x00ace.csv"}, "tenants[0].arrivals.csv"),
    ("models-nul", "models", "m\x00.yaml", "models"),
    ("models-number", "models", 5, "models"),
    ("models-missing-file", "models", "no-such-models.yaml", "models"),
    ("models-name-too-long", "models", "9" * 5000, "models"),  # lookup raises ENAMETOOLONG
]

# Whole scenario files that are not a scenario mapping: (id, text or bytes, words of the error).
_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)
SCENARIO_FILES: list[tuple[str, str | bytes, str]] = [
    ("not-yaml", "name: [unclosed\n", "not valid YAML"),
    ("empty-file", "", "SCENARIO"),
    ("a-list", "- 1\n- 2\n", "SCENARIO"),
    ("a-number", "42\n", "SCENARIO"),
    ("latin-1", DEFAULT_TEXT.replace("name: default", "name: d\xe9faut").encode("latin-1"), "not UTF-8"),
    ("long-integer", DEFAULT_TEXT.replace("seed: 0", "seed: " + "9" * 5000), "not valid YAML"),
    ("python-tag", "!!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ("alias-bomb", _BOMB + DEFAULT_TEXT.replace("name: default", "name: *i"), "name"),
    ("deep-nesting", "name: " + "[" * 5000 + "]" * 5000 + "\n", "SCENARIO"),
    ("nul-byte", DEFAULT_TEXT.replace("name: default", "name: de\x00fault"), "SCENARIO"),
]


def _field_cases() -> Iterator[Case]:
    for case_id, path, value, where in FIELDS:
        yield Case(f"scenario-{case_id}", ("plan", "{tmp}/s.yaml", "--time-limit", "1"), 2, (where,),
                   {"s.yaml": scenario_text(changed(path, value))})
    for case_id, content, words in SCENARIO_FILES:
        yield Case(f"scenario-file-{case_id}", ("plan", "{tmp}/s.yaml", "--time-limit", "1"), 2, (words,),
                   {"s.yaml": content})
    yield Case("scenario-no-tenants-key", ("plan", "{tmp}/s.yaml"), 2, ("tenants",),
               {"s.yaml": scenario_text(dropped("tenants"))})
    yield Case("scenario-no-gpus-key", ("plan", "{tmp}/s.yaml"), 2, ("gpus",),
               {"s.yaml": scenario_text(dropped("gpus"))})
    yield Case("scenario-tenant-no-model", ("plan", "{tmp}/s.yaml"), 2, ("tenants[0].model",),
               {"s.yaml": scenario_text(dropped("tenants.0.model"))})
    yield Case("scenario-missing", ("plan", "{tmp}/none.yaml"), 2, ("SCENARIO",))
    yield Case("scenario-a-folder", ("plan", "{tmp}"), 2, ("SCENARIO",))


# -- trace CSV files, as a scenario names them (`arrivals: {csv: trace.csv}`) ------------------


def with_trace(csv_name: str = "trace.csv", column: str | None = None) -> str:
    arrivals: dict[str, Any] = {"csv": csv_name}
    if column is not None:
        arrivals["column"] = column
    return scenario_text(changed("tenants.0.arrivals", arrivals))


GOOD_ROWS = "".join(f"{t},{t % 7}\n" for t in range(600))
TRACES: list[tuple[str, str | bytes, str]] = [
    ("empty", "", "empty"),
    ("header-only", "slot,a\n", "no data rows"),
    ("unknown-header", "when,a\n0,1\n", "unknown header layout"),
    ("duplicate-column", "slot,a,a\n0,1,1\n", "a"),
    ("count-text", "slot,a\n0,1\n1,many\n", "'many'"),
    ("count-negative", "slot,a\n0,1\n1,-3\n", "negative"),
    ("count-nan", "slot,a\n0,1\n1,nan\n", "finite"),
    ("count-inf", "slot,a\n0,1\n1,inf\n", "finite"),
    ("count-overflows-float", "slot,a\n0,1\n1,1e400\n", "finite"),
    ("count-5000-digits", "slot,a\n0,1\n1," + "9" * 5000 + "\n", "a"),
    ("count-too-many-requests", "slot,a\n0,1e300\n", "limit"),
    ("time-gap", "slot,a\n0,1\n5,1\n", "slot"),
    ("time-backwards", "slot,a\n1,1\n0,1\n", "slot"),
    ("time-text", "slot,a\nzero,1\n", "'zero'"),
    ("time-huge", "slot,a\n1e300,1\n", "slot"),
    ("second-step-not-slot", "second,a\n0,1\n0.5,1\n", "second"),
    ("short-row", "slot,a,b\n0,1\n", "row 2"),
    ("latin-1", b"slot,caf\xe9\n0,1\n", "not UTF-8"),
    ("nul-byte", "slot,a\n0,1\x00\n", "tenants[0].arrivals"),
    ("unclosed-quote", 'slot,a\n0,"1\n', "tenants[0].arrivals"),
    ("huge-field", "slot,a\n0," + "1" * 200_000 + "\n", "tenants[0].arrivals"),
    ("long-timestamps-span", "tenant,timestamp_s\na,0\na,1e15\n", "100000000 cells"),
    ("long-timestamps-negative", "tenant,timestamp_s\na,-5\n", "negative"),
    ("long-timestamps-nan", "tenant,timestamp_s\na,nan\n", "finite"),
    ("long-counts-duplicate", "tenant,slot,count\na,0,1\na,0,2\n", "already appeared"),
    ("long-counts-slot-huge", "tenant,slot,count\na,0,1\na,1000000000000,2\n", "100000000 cells"),
    ("long-counts-fractional-slot", "tenant,slot,count\na,0.5,1\n", "integer"),
    ("several-tenants-no-column", "slot,a,b\n0,1,2\n", "column"),
]


def _trace_cases() -> Iterator[Case]:
    for case_id, content, words in TRACES:
        yield Case(f"trace-{case_id}", ("plan", "{tmp}/s.yaml", "--time-limit", "1"), 2,
                   ("tenants[0].arrivals", words), {"s.yaml": with_trace(), "trace.csv": content})
    yield Case("trace-column-unknown", ("plan", "{tmp}/s.yaml"), 2, ("tenants[0].arrivals.column", "a"),
               {"s.yaml": with_trace(column="zz"), "trace.csv": "slot,a\n" + GOOD_ROWS})
    yield Case("trace-missing", ("plan", "{tmp}/s.yaml"), 2, ("tenants[0].arrivals", "does not exist"),
               {"s.yaml": with_trace("typo.csv")})
    yield Case("trace-a-folder", ("plan", "{tmp}/s.yaml"), 2, ("tenants[0].arrivals", "directory"),
               {"s.yaml": with_trace("sub"), "sub/keep.txt": ""})
    for case_id, reference in (("absolute", "/etc/passwd"), ("climbs-out", "../outside.csv"),
                               ("climbs-out-deeper", "sub/../../outside.csv")):
        yield Case(f"trace-{case_id}", ("plan", "{tmp}/s.yaml"), 2, ("outside the scenario's folder",),
                   {"s.yaml": with_trace(reference)})
    # allowed anywhere, /etc/passwd is read and refused without a word of it quoted
    yield Case("trace-passwd-quotes-nothing", ("--files-anywhere", "plan", "{tmp}/s.yaml"), 2,
               ("unknown header layout",), {"s.yaml": with_trace("/etc/passwd")})


# `migrator run --arrivals FILE`: the live arrivals, read as the file grows
ARRIVALS: list[tuple[str, str | bytes, str]] = [
    ("no-time-column", "resnet50,vit,bert,distilbert\n1,1,1,1\n", "first column"),
    ("tenant-missing", "slot,resnet50,vit,bert\n0,1,1,1\n", "'distilbert'"),
    ("time-backwards", "slot,resnet50,vit,bert,distilbert\n1,1,1,1,1\n0,1,1,1,1\n", "arrivals"),
    ("count-text", "slot,resnet50,vit,bert,distilbert\n0,1,x,1,1\n", "arrivals"),
    ("count-negative", "slot,resnet50,vit,bert,distilbert\n0,1,-1,1,1\n", "arrivals"),
    ("count-nan", "slot,resnet50,vit,bert,distilbert\n0,1,nan,1,1\n", "arrivals"),
    ("short-row", "slot,resnet50,vit,bert,distilbert\n0,1\n", "arrivals"),
    ("latin-1", b"slot,resnet50,vit,bert,distilbert\n0,1,1,1,1\xe9\n", "arrivals"),
]


def _arrivals_cases() -> Iterator[Case]:
    for case_id, content, words in ARRIVALS:
        yield Case(f"arrivals-{case_id}", ("run", "--arrivals", "{tmp}/a.csv", "--steps", "2", "--time-limit", "1"),
                   1, (words,), {"a.csv": content})
    yield Case("arrivals-typo", ("run", "--arrivals", "{tmp}/typo.csv", "--steps", "1"), 2,
               ("--arrivals", "no such file"))
    # Found by the CLI fuzz test: a name too long even to look up (ENAMETOOLONG).
    yield Case("arrivals-name-too-long", ("run", "--arrivals", "9" * 3000, "--steps", "1"), 2,
               ("--arrivals", "File name too long"))
    yield Case("journal-name-too-long", ("run", "--journal", "9" * 3000, "--steps", "1"), 2,
               ("--journal", "File name too long"))


# -- model tables, as a scenario names them (`models: m.yaml` or `m.csv`) ----------------------

def model_table(path: str = "", value: Any = None) -> str:
    """A one-model table (YAML) with the ``/``-separated path inside its model set to
    ``value`` (profile names have dots)."""
    model = copy.deepcopy(TINY_MODEL)
    if path:
        *parents, last = path.split("/")
        node: Any = model
        for step in parents:
            node = node[int(step)] if isinstance(node, list) else node[step]
        node[last] = value
    return yaml.safe_dump({"version": 1, "models": [model]})


def with_models(name: str) -> str:
    table = copy.deepcopy(BUILTIN)
    table["models"] = name
    table["tenants"] = [{**t, "model": "tiny"} for t in table["tenants"]]
    return scenario_text(table)


MODELS: list[tuple[str, str | bytes, str]] = [
    ("not-a-mapping", "- 1\n", "model table"),
    ("version-2", yaml.safe_dump({"version": 2, "models": [TINY_MODEL]}), "version"),
    ("models-empty", yaml.safe_dump({"version": 1, "models": []}), "models"),
    ("not-yaml", "version: [1\n", "not valid YAML"),
    ("latin-1", model_table().replace("classification", "classificaci\xf3n").encode("latin-1"), "models"),
    ("long-integer", model_table().replace("version: 1", "version: " + "1" * 5000), "models"),
    ("deep-nesting", "version: " + "[" * 5000 + "]" * 5000 + "\n", "models"),
    ("name-upper", model_table("name", "Tiny"), "models[0].name"),
    ("unknown-key", model_table("colour", "red"), "models[0].colour"),
    ("domain-audio", model_table("domain", "audio"), "vision, language"),
    ("precision-fp64", model_table("precision", "fp64"), "fp32"),
    ("params-nan", model_table("params_m", NAN), "models[0].params_m"),
    ("params-text", model_table("params_m", "big"), "models[0].params_m"),
    ("params-huge-int", model_table("params_m", 10**400), "models[0].params_m"),
    ("batch-sizes-down", model_table("batch_sizes", [8, 1]), "models[0].batch_sizes"),
    ("batch-sizes-zero", model_table("batch_sizes", [0, 1]), "models[0].batch_sizes"),
    ("batch-sizes-text", model_table("batch_sizes", "1,8"), "models[0].batch_sizes"),
    ("gpu-unknown", model_table("gpus", {"Z100": {}}), "models[0].gpus.Z100"),
    ("gpus-empty", model_table("gpus", {}), "models[0].gpus"),
    ("profile-unknown", model_table("gpus/A100-40GB/5g.50gb", {"source": "me", "fits": False}), "5g.50gb"),
    ("inference-nan", model_table("gpus/A100-40GB/1g.5gb", {"inference_ms": [NAN, 1.0], "retrain_speed": 0.1,
                                                            "source": "me"}), "inference_ms"),
    ("inference-short", model_table("gpus/A100-40GB/1g.5gb", {"inference_ms": [6.0], "retrain_speed": 0.1,
                                                              "source": "me"}), "inference_ms"),
    ("inference-text", model_table("gpus/A100-40GB/1g.5gb", {"inference_ms": "fast", "retrain_speed": 0.1,
                                                             "source": "me"}), "inference_ms"),
    ("inference-negative", model_table("gpus/A100-40GB/1g.5gb", {"inference_ms": [-6.0, 1.0], "retrain_speed": 0.1,
                                                                 "source": "me"}), "inference_ms"),
    ("retrain-speed-2", model_table("gpus/A100-40GB/1g.5gb", {"inference_ms": [6.0, 30.0], "retrain_speed": 2,
                                                              "source": "me"}), "retrain_speed"),
    ("retrain-speed-inf", model_table("gpus/A100-40GB/1g.5gb", {"inference_ms": [6.0, 30.0], "retrain_speed": INF,
                                                                "source": "me"}), "retrain_speed"),
    ("fits-text", model_table("gpus/A100-40GB/1g.5gb", {"fits": "no", "source": "me"}), "fits"),
    ("source-unknown", model_table("gpus/A100-40GB/1g.5gb", {"inference_ms": [6.0, 30.0], "retrain_speed": 0.1,
                                                             "source": "them"}), "source"),
    ("small-profile-faster", model_table("gpus/A100-40GB/1g.5gb", {"inference_ms": [1.0, 2.0], "retrain_speed": 0.1,
                                                                   "source": "me"}), "faster"),
]

_CSV_HEAD = "model,gpu,profile,batch_size,inference_ms,retrain_speed\n"
MODEL_CSVS: list[tuple[str, str | bytes, str]] = [
    ("missing-column", "model,gpu,profile\ntiny,A100-40GB,7g.40gb\n", "columns"),
    ("batch-text", _CSV_HEAD + "tiny,A100-40GB,7g.40gb,eight,2,1\n", "batch_size"),
    ("batch-5000-digits", _CSV_HEAD + "tiny,A100-40GB,7g.40gb," + "9" * 5000 + ",2,1\n", "batch_size"),
    ("duplicate-row", _CSV_HEAD + "tiny,A100-40GB,7g.40gb,1,2,1\ntiny,A100-40GB,7g.40gb,1,2,1\n", "duplicate"),
    ("figure-text", _CSV_HEAD + "tiny,A100-40GB,7g.40gb,1,fast,1\n", "inference_ms"),
    ("figure-nan", _CSV_HEAD + "tiny,A100-40GB,7g.40gb,1,nan,1\n", "inference_ms"),
    ("no-rows", _CSV_HEAD, "no rows"),
    ("latin-1", (_CSV_HEAD + "tiny,A100-40GB,7g.40gb,1,2,1\xe9\n").encode("latin-1"), "models"),
    ("nul-byte", _CSV_HEAD + "tiny,A100-40GB,7g.40gb,1,2\x00,1\n", "models"),
]


def _model_cases() -> Iterator[Case]:
    for case_id, content, words in MODELS:
        yield Case(f"models-{case_id}", ("plan", "{tmp}/s.yaml", "--time-limit", "1"), 2, (words,),
                   {"s.yaml": with_models("m.yaml"), "m.yaml": content})
    for case_id, content, words in MODEL_CSVS:
        yield Case(f"models-csv-{case_id}", ("plan", "{tmp}/s.yaml", "--time-limit", "1"), 2, (words,),
                   {"s.yaml": with_models("m.csv"), "m.csv": content})
    yield Case("models-outside", ("plan", "{tmp}/s.yaml"), 2, ("outside the scenario's folder",),
               {"s.yaml": with_models("../m.yaml")})
    yield Case("models-tenant-not-in-table", ("plan", "{tmp}/s.yaml"), 2, ("unknown model", "tiny"),
               {"s.yaml": changed_models_scenario(), "m.yaml": model_table()})


def changed_models_scenario() -> str:
    table = copy.deepcopy(BUILTIN)
    table["models"] = "m.yaml"
    return scenario_text(table)  # the tenants' models (resnet50, ...) are not in the user table


# -- command-line options of every command ----------------------------------------------------

# (id, args, exit code, words): click's usage errors exit 2 and name the option.
OPTIONS: list[tuple[str, tuple[str, ...], int, tuple[str, ...]]] = []
for _cmd in (("plan",), ("run", "--steps", "1"), ("cluster",), ("mig-parted", "export")):
    for _bad in ("nan", "inf", "-inf", "0", "-1", "soon", "1e9"):
        OPTIONS.append((f"{_cmd[0]}-time-limit-{_bad}", (*_cmd, "--time-limit", _bad), 2, ("--time-limit",)))
    for _bad in ("0", "-1", "100000", "2.5", "x"):
        OPTIONS.append((f"{_cmd[0]}-horizon-{_bad}", (*_cmd, "--horizon", _bad), 2, ("--horizon",)))
for _bad in ("nan", "inf", "0", "-5", "ten"):
    OPTIONS.append((f"simulate-duration-{_bad}", ("simulate", "--duration", _bad), 2, ("--duration",)))
    OPTIONS.append((f"cluster-deadline-{_bad}", ("cluster", "--deadline", _bad), 2, ("--deadline",)))
OPTIONS += [
    ("simulate-duration-past-scenario", ("simulate", "--duration", "1e6"), 2, ("--duration", "600")),
    ("simulate-seeds-huge", ("simulate", "--seeds", "1000000000"), 2, ("--seeds",)),
    ("simulate-seeds-zero", ("simulate", "--seeds", "0"), 2, ("--seeds",)),
    ("simulate-seeds-text", ("simulate", "--seeds", "two"), 2, ("--seeds",)),
    ("simulate-policy-unknown", ("simulate", "--policies", "migrator,magic"), 2, ("--policies", "magic", "ekya")),
    ("simulate-policies-empty", ("simulate", "--policies", ""), 2, ("--policies",)),
    ("simulate-policies-commas", ("simulate", "--policies", ",,"), 2, ("--policies",)),
    ("simulate-out-proc", ("simulate", "--out", "/proc/x", "--duration", "2"), 2, ("--out",)),
    ("simulate-out-a-file", ("simulate", "--out", "{tmp}/f", "--duration", "2"), 2, ("--out",)),
    ("run-steps-zero", ("run", "--steps", "0"), 2, ("--steps",)),
    ("run-steps-negative", ("run", "--steps", "-1"), 2, ("--steps",)),
    ("run-steps-text", ("run", "--steps", "many"), 2, ("--steps",)),
    ("run-devices-text", ("run", "--steps", "1", "--devices", "a,b"), 2, ("--devices",)),
    ("run-devices-empty-part", ("run", "--steps", "1", "--devices", "0,,1"), 2, ("--devices",)),
    ("run-devices-negative", ("run", "--steps", "1", "--devices", "-1,0"), 2, ("--devices",)),
    ("run-devices-too-few", ("run", "--steps", "1", "--devices", "0"), 2, ("--devices",)),
    ("run-devices-twice", ("run", "--steps", "1", "--devices", "0,0"), 2, ("--devices",)),
    ("run-metrics-port-huge", ("run", "--steps", "1", "--metrics-port", "70000"), 2, ("--metrics-port",)),
    ("run-metrics-port-negative", ("run", "--steps", "1", "--metrics-port", "-1"), 2, ("--metrics-port",)),
    ("run-metrics-file-no-folder", ("run", "--metrics-file", "{tmp}/missing/m.prom", "--steps", "1"), 2,
     ("--metrics-file",)),
    ("run-metrics-file-a-folder", ("run", "--metrics-file", "{tmp}", "--steps", "1"), 2, ("--metrics-file",)),
    ("run-clock-unknown", ("run", "--clock", "sundial"), 2, ("--clock", "simulated")),
    ("run-backend-unknown", ("run", "--backend", "cuda"), 2, ("--backend", "emulator")),
    ("run-log-level-unknown", ("run", "--log-level", "loud"), 2, ("--log-level", "debug")),
    ("run-journal-no-folder", ("run", "--steps", "1", "--journal", "{tmp}/f/j.jsonl"), 2, ("--journal",)),
    ("run-journal-a-folder", ("run", "--steps", "1", "--journal", "{tmp}"), 2, ("--journal",)),
    ("run-state-proc", ("run", "--steps", "1", "--emulator-state", "/proc/st.json"), 1, ("emulator state",)),
    ("run-scenario-missing", ("run", "{tmp}/none.yaml", "--steps", "1"), 2, ("SCENARIO",)),
    ("status-state-proc", ("status", "--emulator-state", "/proc/st.json"), 1, ("cannot load the emulator state",)),
    ("status-backend-unknown", ("status", "--backend", "cuda"), 2, ("--backend",)),
    ("recover-journal-missing", ("recover", "{tmp}/none.jsonl"), 2, ("JOURNAL",)),
    ("recover-journal-a-folder", ("recover", "{tmp}"), 2, ("JOURNAL",)),
    ("recover-to-unknown", ("recover", "{tmp}/j.jsonl", "--to", "sideways"), 2, ("--to", "target", "fallback")),
    ("cluster-nodes-huge", ("cluster", "--nodes", "100000"), 2, ("--nodes",)),
    ("cluster-nodes-zero", ("cluster", "--nodes", "0"), 2, ("--nodes",)),
    ("cluster-gpus-per-node-huge", ("cluster", "--gpus-per-node", "100000"), 2, ("--gpus-per-node",)),
    ("cluster-gpus-per-node-zero", ("cluster", "--gpus-per-node", "0"), 2, ("--gpus-per-node",)),
    ("cluster-num-cpus-huge", ("cluster", "--num-cpus", "100000000"), 2, ("--num-cpus",)),
    ("cluster-num-cpus-zero", ("cluster", "--num-cpus", "0"), 2, ("--num-cpus",)),
    ("cluster-steps-zero", ("cluster", "--steps", "0"), 2, ("--steps",)),
    ("cluster-log-level-unknown", ("cluster", "--log-level", "loud"), 2, ("--log-level",)),
    ("cluster-scenario-bad", ("cluster", "{tmp}/s.yaml"), 2, ("planner.reconfig_penalty",)),
    # loopback only: no traffic leaves the machine (Ray retried `--address nohost:1` for minutes)
    ("cluster-address-nothing-there", ("cluster", "--address", "127.0.0.1:1"), 1, ("no Ray head answers",)),
    ("cluster-address-no-port", ("cluster", "--address", "no-port"), 1, ("HOST:PORT",)),
    ("agent-address-nothing-there", ("agent", "--address", "127.0.0.1:1", "--node", "n", "--backend", "emulator",
                                     "--emulator-state", "{tmp}/a.json", "--journal", "{tmp}/a.jsonl"), 1,
     ("no Ray head answers",)),
    ("agent-address-no-port", ("agent", "--address", "no-port", "--node", "n", "--backend", "emulator",
                               "--emulator-state", "{tmp}/a.json", "--journal", "{tmp}/a.jsonl"), 1, ("HOST:PORT",)),
    ("agent-emulator-without-state", ("agent", "--address", "127.0.0.1:1", "--node", "n", "--backend", "emulator",
                                      "--journal", "{tmp}/a.jsonl"), 1, ("emulator_state",)),
    ("agent-no-address", ("agent", "--node", "n"), 2, ("--address",)),
    ("agent-no-node", ("agent", "--address", "127.0.0.1:1"), 2, ("--node",)),
    ("agent-num-cpus-huge", ("agent", "--address", "x:1", "--node", "n", "--num-cpus", "100000000"), 2,
     ("--num-cpus",)),
    ("agent-num-cpus-negative", ("agent", "--address", "x:1", "--node", "n", "--num-cpus", "-1"), 2, ("--num-cpus",)),
    ("agent-backend-unknown", ("agent", "--address", "x:1", "--node", "n", "--backend", "cuda"), 2, ("--backend",)),
    ("mig-parted-export-slot-huge", ("mig-parted", "export", "--slot", "100000"), 2, ("--slot",)),
    ("mig-parted-export-slot-negative", ("mig-parted", "export", "--slot", "-1"), 2, ("--slot",)),
    ("mig-parted-export-slot-text", ("mig-parted", "export", "--slot", "first"), 2, ("--slot",)),
    ("mig-parted-export-slot-past-horizon", ("mig-parted", "export", "--slot", "5000", "--time-limit", "1"), 2,
     ("--slot",)),
    ("mig-parted-export-output-proc", ("mig-parted", "export", "-o", "/proc/x"), 2, ("--output",)),
    ("mig-parted-export-output-folder", ("mig-parted", "export", "-o", "{tmp}"), 2, ("--output",)),
    # a name the folder cannot hold: refused before planning, not when the result is written
    ("mig-parted-export-output-name-5000", ("mig-parted", "export", "-o", "{tmp}/" + "o" * 5000), 2,
     ("--output", "too long")),
    # 256 bytes: a name no Linux folder takes (any shorter one is written, _files.write_atomically).
    ("mig-parted-export-output-name-256", ("mig-parted", "export", "-o", "{tmp}/" + "o" * 256), 2,
     ("--output", "too long")),
    ("run-metrics-file-name-256", ("run", "--steps", "1", "--metrics-file", "{tmp}/" + "m" * 256), 2,
     ("--metrics-file", "too long")),
    ("mig-parted-export-plan-missing", ("mig-parted", "export", "--plan", "{tmp}/none.json"), 2, ("--plan",)),
    ("mig-parted-export-plan-not-json", ("mig-parted", "export", "--plan", "{tmp}/f"), 2, ("--plan",)),
    ("mig-parted-export-plan-a-list", ("mig-parted", "export", "--plan", "{tmp}/list.json"), 2, ("--plan",)),
    ("mig-parted-export-plan-empty-object", ("mig-parted", "export", "--plan", "{tmp}/empty.json"), 2, ("--plan",)),
    ("mig-parted-export-plan-gpus-text", ("mig-parted", "export", "--plan", "{tmp}/gpus-text.json"), 2, ("--plan",)),
    ("mig-parted-export-plan-deep", ("mig-parted", "export", "--plan", "{tmp}/deep.json"), 2, ("--plan",)),
    ("mig-parted-import-count-huge", ("mig-parted", "import", "{tmp}/c.yaml", "x", "--gpu", "A100-40GB", "--count",
                                      "100000"), 2, ("--count",)),
    ("mig-parted-import-count-zero", ("mig-parted", "import", "{tmp}/c.yaml", "x", "--gpu", "A100-40GB", "--count",
                                      "0"), 2, ("--count",)),
    ("mig-parted-import-gpu-unknown", ("mig-parted", "import", "{tmp}/c.yaml", "all-1g", "--gpu", "Z100"), 2,
     ("Z100", "A100-40GB")),
    ("mig-parted-import-no-gpu", ("mig-parted", "import", "{tmp}/c.yaml", "all-1g"), 2, ("--gpu",)),
    ("mig-parted-import-apply-without-backend", ("mig-parted", "import", "{tmp}/c.yaml", "all-1g", "--gpu",
                                                 "A100-40GB", "--apply"), 2, ("--apply",)),
    ("mig-parted-import-file-missing", ("mig-parted", "import", "{tmp}/none.yaml", "x", "--gpu", "A100-40GB"), 2,
     ("CONFIG_FILE",)),
    ("geometry-gpu-unknown", ("geometry", "Z100"), 2, ("Z100", "A100-40GB")),
    ("geometry-maximal-alone", ("geometry", "--maximal"), 2, ("--maximal",)),
    ("geometry-nvml-text", ("geometry", "--nvml", "first"), 2, ("--nvml",)),
    ("transition-gpu-unknown", ("transition", "Z100", "", "7g.80gb@0"), 2, ("Z100",)),
    ("transition-missing-target", ("transition", "A100-40GB", ""), 2, ("TARGET",)),
    ("gpus-unknown-option", ("gpus", "--all"), 2, ("--all",)),
    ("demo-extra-argument", ("demo", "more"), 2, ("more",)),
    ("unknown-command", ("replan",), 2, ("replan",)),
]

_OPTION_FILES: dict[str, str | bytes] = {
    "f": "not json {",
    "list.json": "[1, 2]",
    "empty.json": "{}",
    "gpus-text.json": json.dumps({"gpus": "all", "goodput": {}, "stats": {}}),
    "deep.json": "[" * 100_000 + "]" * 100_000,
    "j.jsonl": "",
    "c.yaml": yaml.safe_dump({"version": "v1", "mig-configs": {"all-1g": [
        {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.5gb": 7}}]}}),
    "s.yaml": DEFAULT_TEXT.replace("reconfig_penalty: 200.0", "reconfig_penalty: .nan"),
}


def _option_cases() -> Iterator[Case]:
    for case_id, args, code, words in OPTIONS:
        yield Case(f"option-{case_id}", args, code, words, dict(_OPTION_FILES))


# -- layouts: `geometry --check` and `transition` ----------------------------------------------

# (id, layout, exit code, words): a layout that cannot be read is a usage error (2); one
# that reads but breaks a rule of the GPU is the answer "invalid" (1) naming the rule.
LAYOUTS: list[tuple[str, str, int, tuple[str, ...]]] = [
    ("start-50-digits", "1g.5gb@" + "9" * 50, 1, ("placement", "allowed starts")),
    ("start-5000-digits", "1g.5gb@" + "9" * 5000, 2, ("--check", "5000 digits")),
    ("start-negative", "1g.5gb@-1", 2, ("--check", "non-negative integer")),
    ("start-text", "1g.5gb@one", 2, ("--check", "non-negative integer")),
    ("no-start", "1g.5gb", 2, ("--check", "PROFILE@START")),
    ("no-profile", "@0", 2, ("--check", "PROFILE@START")),
    ("only-commas", ",,,", 2, ("--check",)),
    ("semicolons", "1g.5gb@0;1g.5gb@1", 2, ("--check",)),
    ("unknown-profile", "5g.50gb@0", 1, ("unknown_profile", "1g.5gb")),
    ("bad-start", "7g.40gb@1", 1, ("placement", "allowed starts")),
    ("duplicate", "3g.20gb@0,3g.20gb@0", 1, ("duplicate",)),
    ("overlap", "7g.40gb@0,1g.5gb@0", 1, ("memory_overlap",)),
    ("too-many", ",".join(f"1g.5gb@{i}" for i in range(7)) + ",1g.5gb@0", 1, ("rule",)),
    ("compute-total", "4g.20gb@0,3g.20gb@4,1g.5gb@6", 1, ("rule",)),
    ("long-text", "1g.5gb@0," * 20_000 + "1g.5gb@1", 1, ("rule",)),
    ("unicode-digits", "1g.5gb@\u0664", 2, ("--check",)),
    ("control-characters", "1g.5gb@0\x00", 2, ("--check",)),
]


def _layout_cases() -> Iterator[Case]:
    for case_id, layout, code, words in LAYOUTS:
        yield Case(f"check-{case_id}", ("geometry", "A100-40GB", "--check", layout), code, words)
    yield Case("check-json-invalid", ("geometry", "A100-40GB", "--check", "7g.40gb@1", "--json"), 1,
               ('"valid": false', '"rule": "placement"'))
    yield Case("check-empty-is-valid", ("geometry", "A100-40GB", "--check", ""), 0, ("valid on A100-40GB: (empty)",))
    for case_id, current, target in (("current-syntax", "7g@0", "7g.40gb@0"), ("target-syntax", "", "7g.40gb"),
                                     ("target-invalid", "", "7g.40gb@0,1g.5gb@0"),
                                     ("target-long-start", "", "7g.40gb@" + "9" * 5000)):
        yield Case(f"transition-{case_id}", ("transition", "A100-40GB", current, target), 2, ("CURRENT/TARGET",))


# -- mig-parted config files: `migrator mig-parted import FILE NAME --gpu A100-40GB` -----------


def migparted(entries: Any, name: str = "x", version: Any = "v1") -> str:
    return yaml.safe_dump({"version": version, "mig-configs": {name: entries}})


def entry(**changes: Any) -> dict[str, Any]:
    return {"devices": "all", "mig-enabled": True, "mig-devices": {"3g.20gb": 2}, **changes}


MIGPARTED: list[tuple[str, str | bytes, int, tuple[str, ...]]] = [
    ("not-yaml", "version: [v1\n", 2, ("not valid YAML",)),
    ("a-list", "- 1\n", 2, ("mapping",)),
    ("version-v2", migparted([entry()], version="v2"), 2, ("version", "'v1'")),
    ("no-configs", yaml.safe_dump({"version": "v1"}), 2, ("mig-configs",)),
    ("unknown-top-field", yaml.safe_dump({"version": "v1", "mig-configs": {"x": [entry()]}, "extra": 1}), 2,
     ("extra", "allowed")),
    ("unknown-config", migparted([entry()], name="other"), 2, ("'x'", "other")),
    ("entries-empty", migparted([]), 2, ("mig-configs.x",)),
    ("entry-text", migparted(["all"]), 2, ("mig-configs.x[0]",)),
    ("entry-unknown-field", migparted([entry(colour="red")]), 2, ("colour", "allowed")),
    ("devices-some", migparted([entry(devices="some")]), 2, ("devices", "'all'")),
    ("devices-negative", migparted([entry(devices=[-1])]), 2, ("devices",)),
    ("devices-past-gpus", migparted([entry(devices=[3])]), 2, ("GPU 3 does not exist",)),
    ("devices-huge", migparted([entry(devices=[10**30])]), 2, ("does not exist",)),
    ("devices-twice", migparted([entry(devices=[0]), entry(devices=[0])]), 2, ("already configured",)),
    ("mig-enabled-text", migparted([entry(**{"mig-enabled": "yes"})]), 2, ("mig-enabled",)),
    ("mig-devices-missing", migparted([{"devices": "all", "mig-enabled": True}]), 2, ("mig-devices", "required")),
    ("mig-devices-list", migparted([entry(**{"mig-devices": ["3g.20gb"]})]), 2, ("mig-devices",)),
    ("profile-bogus", migparted([entry(**{"mig-devices": {"three": 2}})]), 2, ("'three'",)),
    ("profile-unknown", migparted([entry(**{"mig-devices": {"5g.50gb": 1}})]), 2, ("5g.50gb", "1g.5gb")),
    ("count-negative", migparted([entry(**{"mig-devices": {"3g.20gb": -1}})]), 2, ("count",)),
    ("count-text", migparted([entry(**{"mig-devices": {"3g.20gb": "2"}})]), 2, ("count",)),
    ("count-huge", migparted([entry(**{"mig-devices": {"1g.5gb": 10**30}})]), 2, ("no valid arrangement",)),
    ("counts-impossible", migparted([entry(**{"mig-devices": {"1g.5gb": 8}})]), 2, ("no valid arrangement",)),
    ("compute-profile", migparted([entry(**{"mig-devices": {"1c.3g.20gb": 2}})]), 2, ("compute-instance",)),
    ("device-filter", migparted([entry(**{"device-filter": "0x20B010DE"})]), 2, ("device-filter",)),
    ("latin-1", migparted([entry()]).replace("x:", "\xe9:").encode("latin-1"), 2, ("CONFIG_FILE",)),
    ("long-integer", migparted([entry()]).replace("2\n", "9" * 5000 + "\n"), 2,
     ("CONFIG_FILE",)),
    ("deep-nesting", "version: " + "[" * 5000 + "]" * 5000 + "\n", 2, ("CONFIG_FILE",)),
    ("python-tag", "!!python/object/apply:os.system ['true']\n", 2, ("not valid YAML",)),
]


def _migparted_cases() -> Iterator[Case]:
    for case_id, content, code, words in MIGPARTED:
        yield Case(f"mig-parted-{case_id}", ("mig-parted", "import", "{tmp}/c.yaml", "x", "--gpu", "A100-40GB"),
                   code, words, {"c.yaml": content})
    yield Case("mig-parted-mig-disabled-is-said", ("mig-parted", "import", "{tmp}/c.yaml", "x", "--gpu", "A100-40GB"),
               0, ("MIG disabled",), {"c.yaml": migparted([{"devices": "all", "mig-enabled": False}])})


# -- journals, as `migrator recover` reads them, and emulator state files ---------------------

_BEGIN = {"v": 1, "txn": "t1", "event": "begin", "time": 1.0, "gpu": 0, "kind": "apply", "model": "A100-40GB",
          "current": "", "target": "7g.40gb@0", "fallback": "", "recovers": None, "actions": []}


def _without(key: str) -> str:
    return json.dumps({k: v for k, v in _BEGIN.items() if k != key})


JOURNALS: dict[str, str | bytes] = {
    "not-json": "{not json\n{}\n",
    "a-list": "[1, 2]\n",
    "no-version": _without("v"),
    "version-2": json.dumps({**_BEGIN, "v": 2}),
    "no-txn": _without("txn"),
    "txn-list": json.dumps({**_BEGIN, "txn": [1]}),
    "no-event": _without("event"),
    "no-gpu": _without("gpu"),
    "gpu-text": json.dumps({**_BEGIN, "gpu": "zero"}),
    "gpu-negative": json.dumps({**_BEGIN, "gpu": -1}),
    "gpu-huge": json.dumps({**_BEGIN, "gpu": 10**30}),
    "unknown-event": json.dumps({**_BEGIN, "event": "explode"}),
    "begin-without-model": _without("model"),
    "begin-model-unknown": json.dumps({**_BEGIN, "model": "Z100"}),
    "begin-without-target": _without("target"),
    "begin-target-number": json.dumps({**_BEGIN, "target": 7}),
    "begin-actions-text": json.dumps({**_BEGIN, "actions": "all"}),
    "start-without-seq": json.dumps(_BEGIN) + "\n" + json.dumps({"v": 1, "txn": "t1", "event": "start", "gpu": 0}),
    "commit-without-layout": json.dumps(_BEGIN) + "\n" + json.dumps({"v": 1, "txn": "t1", "event": "commit", "gpu": 0}),
    "record-before-begin": json.dumps({"v": 1, "txn": "t9", "event": "done", "gpu": 0, "seq": 0}),
    "latin-1": (json.dumps(_BEGIN) + "\n").replace("apply", "appl\xe9").encode("latin-1"),
    "nan-time": json.dumps({**_BEGIN, "time": NAN}),
    "deep-nesting": "[" * 100_000 + "]" * 100_000,
}


def _journal_cases() -> Iterator[Case]:
    for case_id, text in JOURNALS.items():
        yield Case(f"journal-{case_id}", ("recover", "{tmp}/j.jsonl", "--emulator-state", "{tmp}/s.json"), 1,
                   ("journal",), {"j.jsonl": text})
    # a layout that reads but does not fit the GPU: refused when recovery tries it
    yield Case("journal-begin-target-invalid", ("recover", "{tmp}/j.jsonl", "--emulator-state", "{tmp}/s.json"), 1,
               ("use the same memory slices",), {"j.jsonl": json.dumps({**_BEGIN, "target": "7g.40gb@0,1g.5gb@0"})})
    yield Case("journal-empty-says-so", ("recover", "{tmp}/j.jsonl", "--emulator-state", "{tmp}/s.json"), 0,
               ("nothing to recover",), {"j.jsonl": ""})


STATES: dict[str, str | bytes] = {
    "not-json": "{",
    "a-list": "[1]",
    "empty-object": "{}",
    "gpus-text": json.dumps({"gpus": "all"}),
    "latin-1": b'{"gpus": "\xe9"}',
    "deep-nesting": "[" * 100_000 + "]" * 100_000,
}


def _state_cases() -> Iterator[Case]:
    for case_id, text in STATES.items():
        yield Case(f"emulator-state-{case_id}", ("status", "--emulator-state", "{tmp}/s.json"), 1,
                   ("emulator state",), {"s.json": text})


CASES: list[Case] = [*_field_cases(), *_trace_cases(), *_arrivals_cases(), *_model_cases(), *_option_cases(),
                     *_layout_cases(), *_migparted_cases(), *_journal_cases(), *_state_cases()]


# -- running a case ----------------------------------------------------------------------------


def run_case(case: Case, folder: Path) -> Any:
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    args = [a.replace("{tmp}", str(folder)) for a in case.args]
    with time_limit(HANG_S):
        return CliRunner().invoke(main, args)


#: Cases that still fail where the fix belongs to a file outside this work's reach, each with
#: the fix it needs (strict: the case fails the suite once it passes).
OPEN: dict[str, str] = {}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(reason=OPEN[c.id], strict=True))
                                  if c.id in OPEN else c for c in CASES], ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path) -> None:
    result = run_case(case, tmp_path)
    # a traceback: any exception other than click's exit (CliRunner keeps it in .exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}")
    assert "Traceback" not in result.output
    assert result.exit_code == case.code, result.output
    for words in case.says:
        assert words in result.output, result.output
    assert len(result.output) < 20_000  # an error message, not the input echoed back


def test_the_list_holds_the_issue_count() -> None:
    # The issue measured 171 bad inputs; the list rebuilt here holds at least as many, each
    # with its own id.
    assert len(CASES) >= 171
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("path", "value", "where"), [c[1:] for c in FIELDS], ids=[c[0] for c in FIELDS])
def test_the_scenario_error_names_the_field_exactly(path: str, value: Any, where: str) -> None:
    """The same fields through the library: ``ConfigError.field`` is the dotted path."""
    with pytest.raises(ConfigError) as info:
        Scenario.from_dict(changed(path, value))
    assert info.value.field == where
    assert where in str(info.value)
