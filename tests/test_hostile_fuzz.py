"""Fuzzing the entry points (issue 18): only ``migrator.errors.*`` escape.

One hypothesis test per entry point that reads outside input: trace CSV files
(``workload.traces.load_csv``), model tables (YAML and CSV, ``workload.models``), mig-parted
configs (``actuation.migparted``), a user's geometry table (``Geometry.from_dict`` and
``from_yaml``), layout text (``Layout.parse``, ``Geometry.validate`` and ``transition``, what
``--check`` and ``transition`` call), and the command line itself
(argument strings fuzzed into every command, each work-sizing option either junk or small).
Scenario mappings and journals are fuzzed beside their tests (tests/workload/test_hostile_input.py,
tests/actuation/test_journal_fuzz.py).

Each runs a few hundred examples by default and 10,000 under ``-m slow`` (the issue's figure).
An input may be accepted (then it must give an answer) or refused with migrator's error; any
other exception fails the test, and so does an example still running after ``HANG_S``.
"""

from __future__ import annotations

import math
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hostile import TINY_MODEL, places, spoiled, time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.actuation.migparted import export_plan, import_config, load_config
from migrator.cli import main
from migrator.errors import MigratorError
from migrator.geometry import catalog
from migrator.geometry.geometry import Geometry, known_gpus
from migrator.geometry.layout import Layout
from migrator.workload.models import load_models, parse_models
from migrator.workload.traces import load_csv

HANG_S = 60
DEFAULT_EXAMPLES, LONG_EXAMPLES = 250, 10_000
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SHORT = settings(max_examples=DEFAULT_EXAMPLES, **_SETTINGS)
LONG = settings(max_examples=LONG_EXAMPLES, **_SETTINGS)


def only_migrator_errors(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``call``: its answer, or None when it refused with one of migrator's errors."""
    with time_limit(HANG_S):
        try:
            return call(*args, **kwargs)
        except MigratorError:
            return None


# -- shared junk -------------------------------------------------------------------------------

NUMBER_TEXTS = st.one_of(
    st.sampled_from(["0", "1", "2", "2.5", "-1", "-0", "nan", "NaN", "inf", "-inf", "1e400", "1e15", "1e300",
                     "9" * 5000, "9" * 30, "9" * 100, "9" * 101, "0x10", "1_000", "1e-300", "", " ", "x", "\u0664", "\uff11", "1,5"]),
    st.integers(-5, 700).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
JUNK_TEXT = st.text(max_size=8)
CELL = st.one_of(NUMBER_TEXTS, JUNK_TEXT)


_SCALARS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 10**30, 10**400, 1e308, 5e-324, "", "all", True, None]),
    st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True), JUNK_TEXT, st.booleans(),
)
_KEYS = st.one_of(JUNK_TEXT, st.integers())
#: Scalars, and containers of them two levels deep (written out: hypothesis's st.recursive
#: warns that this extend "doesn't use its argument" on some runs).
JUNK = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(_KEYS, _SCALARS, max_size=3),
    st.lists(st.one_of(st.lists(_SCALARS, max_size=2), st.dictionaries(_KEYS, _SCALARS, max_size=2)), max_size=2),
    st.dictionaries(_KEYS, st.one_of(st.lists(_SCALARS, max_size=2), st.dictionaries(_KEYS, _SCALARS, max_size=2)),
                    max_size=2),
)


def mutations(document: Any) -> st.SearchStrategy[Any]:
    """``document`` with one to three places (leaves or containers) replaced by junk."""
    changes = st.lists(st.tuples(st.sampled_from(places(document)), JUNK), min_size=1, max_size=3)
    return changes.map(lambda c: spoiled(document, c))


# -- trace CSV files ---------------------------------------------------------------------------

HEADERS = st.one_of(
    st.sampled_from([["slot", "a"], ["slot", "a", "b"], ["second", "a"], ["t", "a"], ["time_s", "a", "b"],
                     ["tenant", "timestamp_s"], ["tenant", "slot", "count"], ["slot", "a", "a"], ["slot"],
                     ["a", "b"], ["tenant", "slot"], ["\ufeffslot", "a"]]),
    st.lists(st.one_of(st.sampled_from(["slot", "tenant", "count", "timestamp_s", "a"]), JUNK_TEXT), max_size=4),
)


@st.composite
def trace_files(draw: Any) -> bytes:
    header = draw(HEADERS)
    width = max(1, len(header))
    rows = draw(st.lists(st.lists(st.one_of(CELL, st.sampled_from(["a", "b"])), min_size=width - 1,
                                  max_size=width + 1), max_size=6))
    separator = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    text = separator.join(",".join(row) for row in [header, *rows]) + draw(st.sampled_from(["", "\n"]))
    data = text.encode("utf-8", "surrogatepass")
    cut = draw(st.sampled_from(["none", "quote", "latin-1", "nul", "cut"]))
    if cut == "quote":
        data += b'"\n'
    elif cut == "latin-1":
        data += b"\xe9\n"
    elif cut == "nul":
        data = data.replace(b",", b",\x00", 1)
    elif cut == "cut" and data:
        data = data[: draw(st.integers(0, len(data)))]
    return data


SLOTS = st.one_of(st.sampled_from([1.0, 0.5, 2.0, 0.1, 60.0]), st.sampled_from([0, -1, math.nan, math.inf, "1", None]))


def _load_trace(tmp_path: Path, data: bytes, slot_s: Any, tenants: Any) -> None:
    path = tmp_path / "trace.csv"
    path.write_bytes(data)
    trace = only_migrator_errors(load_csv, path, slot_s=slot_s, tenants=tenants)
    if trace is not None:  # accepted: a trace within the limits, finite and non-negative
        assert trace.counts.shape == (trace.n_tenants, trace.n_slots)
        assert (trace.counts >= 0).all()


TENANTS = st.one_of(st.none(), st.sampled_from([["a"], ["b", "a"], ["zz"], "a", [], ["a", "a"], [1]]))


@SHORT
@given(data=trace_files(), slot_s=SLOTS, tenants=TENANTS)
def test_fuzzed_trace_files_raise_only_migrator_errors(tmp_path, data, slot_s, tenants):
    _load_trace(tmp_path, data, slot_s, tenants)


@pytest.mark.slow
@LONG
@given(data=trace_files(), slot_s=SLOTS, tenants=TENANTS)
def test_ten_thousand_fuzzed_trace_files(tmp_path, data, slot_s, tenants):
    _load_trace(tmp_path, data, slot_s, tenants)


# -- model tables --------------------------------------------------------------------------------

MODEL_TABLE = {"version": 1, "models": [TINY_MODEL]}
parse_models(MODEL_TABLE)  # the unmutated table is valid: mutations start from a good one

_CSV_COLUMNS = ["model", "gpu", "profile", "batch_size", "inference_ms", "retrain_speed", "task", "params_m"]


@st.composite
def model_csvs(draw: Any) -> str:
    columns = draw(st.one_of(st.just(_CSV_COLUMNS[:6]), st.just(_CSV_COLUMNS), st.permutations(_CSV_COLUMNS[:6]),
                             st.lists(st.sampled_from(_CSV_COLUMNS), max_size=7)))
    cells = {"model": st.sampled_from(["tiny", "Tiny", "", "a b"]),
             "gpu": st.sampled_from(["A100-40GB", "H100-80GB", "Z100", ""]),
             "profile": st.sampled_from(["7g.40gb", "3g.20gb", "1g.5gb", "1g.5gb+me", "9g.90gb", ""]),
             "batch_size": NUMBER_TEXTS}
    rows = draw(st.lists(st.fixed_dictionaries({c: cells.get(c, CELL) for c in columns}), max_size=5))
    return "\n".join([",".join(columns), *(",".join(r[c] for c in columns) for r in rows)]) + "\n"


def _load_models(tmp_path: Path, document: Any) -> None:
    if isinstance(document, str):
        path = tmp_path / "m.csv"
        path.write_text(document, encoding="utf-8", errors="surrogatepass")
        only_migrator_errors(load_models, path)
    else:
        only_migrator_errors(parse_models, document)
        path = tmp_path / "m.yaml"
        try:
            path.write_text(yaml.safe_dump(document), encoding="utf-8", errors="surrogatepass")
        except yaml.YAMLError:
            return  # not every junk value dumps (a float key is fine, a surrogate is not)
        only_migrator_errors(load_models, path)


MODEL_DOCUMENTS = st.one_of(mutations(MODEL_TABLE), model_csvs())


@SHORT
@given(document=MODEL_DOCUMENTS)
def test_fuzzed_model_tables_raise_only_migrator_errors(tmp_path, document):
    _load_models(tmp_path, document)


@pytest.mark.slow
@LONG
@given(document=MODEL_DOCUMENTS)
def test_ten_thousand_fuzzed_model_tables(tmp_path, document):
    _load_models(tmp_path, document)


# -- mig-parted configs ------------------------------------------------------------------------

MIG_CONFIG = {"version": "v1", "mig-configs": {
    "x": [{"devices": [0], "mig-enabled": True, "mig-devices": {"3g.20gb": 2}},
          {"devices": [1], "mig-enabled": True, "mig-devices": {"1g.5gb": 2, "2g.10gb": 1, "3c.3g.20gb": 1}}],
    "off": [{"devices": "all", "mig-enabled": False}],
}}
A100 = Geometry.for_gpu("A100-40GB")
assert [t.layout for t in import_config(MIG_CONFIG, "x", [A100, A100])] == [
    "3g.20gb@0,3g.20gb@4", "1g.5gb@0,1g.5gb@1,2g.10gb@2,3g.20gb@4"]  # the unmutated config is valid
CONFIG_NAMES = st.one_of(st.sampled_from(["x", "off", "y", ""]), JUNK_TEXT)
CURRENT = st.sampled_from([None, ["", ""], ["7g.40gb@0", "3g.20gb@0,3g.20gb@4"], ["bogus", ""], ["7g.40gb@0"]])


def _import(tmp_path: Path, document: Any, name: Any, current: Any) -> None:
    loaded = only_migrator_errors(load_config, document)
    targets = only_migrator_errors(import_config, document, name, [A100, A100], current=current)
    if targets is not None:  # accepted: each target is a valid layout with the asked counts
        assert loaded is not None
        for t in targets:
            assert not t.mig_enabled or A100.is_valid(t.layout)
    path = tmp_path / "c.yaml"
    try:
        path.write_text(yaml.safe_dump(document), encoding="utf-8", errors="surrogatepass")
    except yaml.YAMLError:
        return
    only_migrator_errors(import_config, path, name, [A100, A100], current=current)


PLAN = {"gpus": [{"slots": [{"layout": "7g.40gb@0"}, {"layout": ""}]}, {"slots": [{"layout": "3g.20gb@0"}]}]}
MIG_PARTED_INPUTS = dict(document=mutations(MIG_CONFIG), name=CONFIG_NAMES, current=CURRENT, plan=mutations(PLAN),
                         slots=st.lists(st.integers(-2, 3), max_size=2))


def _mig_parted(tmp_path: Path, document: Any, name: Any, current: Any, plan: Any, slots: Any) -> None:
    _import(tmp_path, document, name, current)
    only_migrator_errors(export_plan, plan, slots=slots)


@SHORT
@given(**MIG_PARTED_INPUTS)
def test_fuzzed_mig_parted_files_raise_only_migrator_errors(tmp_path, **inputs):
    _mig_parted(tmp_path, **inputs)


@pytest.mark.slow
@LONG
@given(**MIG_PARTED_INPUTS)
def test_ten_thousand_fuzzed_mig_parted_files(tmp_path, **inputs):
    _mig_parted(tmp_path, **inputs)


# -- geometry tables (a user's GPU, ``Geometry.from_dict`` / ``from_yaml``) ---------------------

GEOMETRY_TABLE = catalog.load_table("A100-40GB")


def _geometry(tmp_path: Path, table: Any) -> None:
    geometry = only_migrator_errors(Geometry.from_dict, table)
    if geometry is not None:  # accepted: it answers what a geometry is asked
        only_migrator_errors(geometry.layouts)
        only_migrator_errors(geometry.validate, "7g.40gb@0")
    path = tmp_path / "g.yaml"
    try:
        path.write_text(yaml.safe_dump(table), encoding="utf-8")
    except yaml.YAMLError:
        return
    only_migrator_errors(Geometry.from_yaml, path)


@SHORT
@given(table=mutations(GEOMETRY_TABLE))
def test_fuzzed_geometry_tables_raise_only_migrator_errors(tmp_path, table):
    _geometry(tmp_path, table)


@pytest.mark.slow
@LONG
@given(table=mutations(GEOMETRY_TABLE))
def test_ten_thousand_fuzzed_geometry_tables(tmp_path, table):
    _geometry(tmp_path, table)


# -- layout text -------------------------------------------------------------------------------

GEOMETRIES = [Geometry.for_gpu(name) for name in known_gpus()]
_PROFILES = sorted({p.name for g in GEOMETRIES for p in g.profiles} | {"MIG 3g.40gb", "3G.40GB", "1g.5gb+me"})
TOKENS = st.one_of(
    st.tuples(st.one_of(st.sampled_from(_PROFILES), JUNK_TEXT), st.sampled_from(["@", " @ ", "@@", "", "#"]),
              st.one_of(NUMBER_TEXTS, st.integers(0, 8).map(str))).map("".join),
    JUNK_TEXT,
)
LAYOUT_TEXTS = st.one_of(st.lists(TOKENS, max_size=9).map(",".join), st.text(max_size=30))


def _layouts(index: int, first: str, second: str) -> None:
    geometry = GEOMETRIES[index % len(GEOMETRIES)]
    parsed = only_migrator_errors(Layout.parse, first)
    valid = only_migrator_errors(geometry.validate, first)
    if valid is not None:  # accepted: canonical, and it parses back to itself
        assert parsed is not None and geometry.validate(str(valid)) == valid
    only_migrator_errors(geometry.is_valid, first)
    only_migrator_errors(geometry.transition, first, second)


@SHORT
@given(index=st.integers(0, 20), first=LAYOUT_TEXTS, second=LAYOUT_TEXTS)
def test_fuzzed_layout_text_raises_only_migrator_errors(index, first, second):
    _layouts(index, first, second)


@pytest.mark.slow
@LONG
@given(index=st.integers(0, 20), first=LAYOUT_TEXTS, second=LAYOUT_TEXTS)
def test_ten_thousand_fuzzed_layout_texts(index, first, second):
    _layouts(index, first, second)


# -- the command line ----------------------------------------------------------------------------

DEFAULT_TEXT = (resources.files("migrator") / "data" / "scenarios" / "default.yaml").read_text(encoding="utf-8")
#: Files each command line may name, made in its own empty folder (relative names only: a
#: fuzzed output path never lands outside it).
FILES = {
    "s.yaml": DEFAULT_TEXT,
    "c.yaml": yaml.safe_dump(MIG_CONFIG),
    "j.jsonl": "",
    "a.csv": "slot,resnet50,vit,bert,distilbert\n0,1,2,3,4\n",
    "plan.json": '{"gpus": [{"slots": [{"layout": "7g.40gb@0"}]}]}',
}
# No "/" in free text: a fuzzed path stays in the folder (a journal makes its parent folders).
# No NUL: a command line cannot hold one (argv is C strings); in files it is fuzzed above.
ARG = st.one_of(st.sampled_from(["nan", "inf", "-1", "0", "1e9", "9" * 5000, "", " ", "x", "-", "--", "\x01",
                                 "1,2", "0x10", "\uff11", "/proc/x", ".", "..", "s.yaml", "c.yaml", "j.jsonl",
                                 "a.csv", "plan.json", "out"]),
                st.text(alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Nd", "Cs")),
                        max_size=8))
LAYOUT_ARG = st.one_of(ARG, LAYOUT_TEXTS.map(lambda t: t.replace("/", "").replace("\x00", "")))


def either(*safe: str) -> st.SearchStrategy[str]:
    """A value that is junk one time in four, else one of the ``safe`` ones (for a work-sizing
    option: small), so that most command lines get past their first check."""
    return st.integers(0, 3).flatmap(lambda k: ARG if k == 0 else st.sampled_from(safe))


LAYOUTS_A100 = A100.layouts()
LAYOUT_VALUE = st.integers(0, 2).flatmap(lambda k: [ARG, LAYOUT_ARG, st.sampled_from(LAYOUTS_A100)][k])


#: Per command: options that bound its work (always given: junk or small), and other options
#: (given or not, junk or plausible). Flags are None. "cluster" and "agent" never get an
#: address that reaches Ray: a local cluster takes seconds to start, and nothing but loopback
#: may be contacted.
ADDRESSES = st.sampled_from(["127.0.0.1:1", "no-port", ":", "127.0.0.1:99999", "[::1]:1", "127.0.0.1:x", ""])
COMMANDS: dict[str, tuple[list[str], dict[str, Any], dict[str, Any]]] = {
    "plan": (["plan"], {"--horizon": either("2", "3"), "--time-limit": either("0.1")},
             {"SCENARIO": either("s.yaml"), "--json": None}),
    "run": (["run"], {"--steps": either("1"), "--horizon": either("2"), "--time-limit": either("0.1")},
            {"SCENARIO": either("s.yaml"), "--devices": either("0,1", "1,0"), "--arrivals": either("a.csv"),
             "--journal": either("j2.jsonl"), "--metrics-file": either("m.prom"), "--metrics-port": either("0"),
             "--dry-run": None, "--force": None, "--clock": either("simulated"), "--log-level": either("error"),
             "--backend": either("emulator", "nvml"), "--emulator-state": either("st.json"), "--json": None}),
    "simulate": (["simulate"], {"--duration": either("1", "2"), "--seeds": either("1"),
                                "--policies": either("paris", "ekya,paris")},
                 {"SCENARIO": either("s.yaml"), "--out": either("out"), "--json": None}),
    "status": (["status"], {}, {"SCENARIO": either("s.yaml"), "--backend": either("emulator", "nvml"),
                                "--emulator-state": either("st.json"), "--json": None}),
    "recover": (["recover"], {"JOURNAL": either("j.jsonl")},
                {"--to": either("target", "fallback"), "--force": None, "--backend": either("emulator"),
                 "--emulator-state": either("st.json"), "--json": None}),
    "export": (["mig-parted", "export"], {"--horizon": either("2"), "--time-limit": either("0.1")},
               {"SCENARIO": either("s.yaml"), "--plan": either("plan.json"), "--slot": either("0", "1"),
                "--prefix": either("p"), "-o": either("o.yaml")}),
    "import": (["mig-parted", "import"], {"CONFIG_FILE": either("c.yaml"), "NAME": either("x", "off")},
               {"--gpu": either("A100-40GB"), "--count": either("2"), "--backend": either("emulator"),
                "--emulator-state": either("st.json"), "--apply": None, "--journal": either("j2.jsonl"),
                "--json": None}),
    "geometry": (["geometry"], {}, {"GPU": either(*known_gpus()), "--check": LAYOUT_VALUE, "--layouts": None,
                                    "--maximal": None, "--json": None, "--nvml": either("0")}),
    "transition": (["transition"], {"GPU": either("A100-40GB"), "CURRENT": LAYOUT_VALUE, "TARGET": LAYOUT_VALUE},
                   {"--json": None}),
    "gpus": (["gpus"], {}, {"--json": None, "EXTRA": ARG}),
    "demo": (["demo"], {"EXTRA": ARG}, {}),
    "cluster": (["cluster"], {"--address": ADDRESSES, "--steps": either("1")},
                {"SCENARIO": either("s.yaml"), "--nodes": either("1", "2"), "--gpus-per-node": either("2"),
                 "--deadline": either("0.5"), "--num-cpus": either("1"), "--horizon": either("2"),
                 "--time-limit": either("0.1"), "--log-level": either("error"), "--json": None}),
    "agent": (["agent"], {"--address": ADDRESSES, "--journal": either("aj.jsonl"), "--node": either("n1")},
              {"--backend": either("emulator"), "--emulator-state": either("st.json"), "--gpu": either("A100-40GB"),
               "--num-cpus": either("1"), "--force": None, "--log-level": either("error")}),
}


@st.composite
def command_lines(draw: Any) -> list[str]:
    prefix, sizing, others = COMMANDS[draw(st.sampled_from(sorted(COMMANDS)))]
    chosen = {name: draw(value) for name, value in sizing.items()}
    for name in draw(st.lists(st.sampled_from(sorted(others)), unique=True, max_size=4)) if others else []:
        chosen[name] = None if others[name] is None else draw(others[name])
    args: list[str] = []
    positionals: list[str] = []
    for name, value in chosen.items():
        if name.startswith("-"):
            args += [name] if value is None else [name, value]
        else:
            positionals.append(value)
    if positionals and draw(st.booleans()):
        args.append("--")  # so that a positional such as "-x" is read as one
    return [*prefix, *args, *positionals]


def _command(tmp_path: Path, args: list[str]) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    before = os.getcwd()
    os.chdir(folder)  # the command's relative paths land in its own folder
    try:
        with time_limit(HANG_S):
            result = CliRunner().invoke(main, args)
    finally:
        os.chdir(before)
    # a traceback is any exception but click's exit; exit 0 is an answer the inputs allowed
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"migrator {args!r}: {type(result.exception).__name__}: {result.exception}")
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert "Traceback" not in result.output


@SHORT
@given(args=command_lines())
def test_fuzzed_command_lines_end_in_migrator_errors(tmp_path, args):
    _command(tmp_path, args)


@pytest.mark.slow
@LONG
@given(args=command_lines())
def test_ten_thousand_fuzzed_command_lines(tmp_path, args):
    _command(tmp_path, args)
