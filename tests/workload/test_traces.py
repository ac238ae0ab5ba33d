"""Arrival traces: the Trace value, CSV layouts and their errors, seeded generators, samples."""

from __future__ import annotations

import math
import random
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrator.errors import ConfigError
from migrator.workload.traces import (
    SAMPLE_RECIPES,
    Trace,
    load_csv,
    sample,
    samples,
    synthetic,
    write_samples,
)

# -- helpers -----------------------------------------------------------------------------------

RESERVED = {"slot", "second", "t", "time_s", "tenant"}

tenant_names = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N")),
    min_size=1,
    max_size=8,
).filter(lambda name: name.lower() not in RESERVED)


@st.composite
def traces(draw: st.DrawFn, *, busy_ends: bool = False) -> Trace:
    """Small traces with int or float counts; ``busy_ends`` puts a request in the first and
    last slot, which a long-format file needs to show where the trace starts and ends."""
    names = draw(st.lists(tenant_names, min_size=1, max_size=4, unique=True))
    n_slots = draw(st.integers(1, 12))
    integral = draw(st.booleans()) or busy_ends
    cell = (
        st.integers(0, 50)
        if integral
        else st.floats(0, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    )
    counts = np.array(
        draw(st.lists(st.lists(cell, min_size=n_slots, max_size=n_slots), min_size=len(names),
                      max_size=len(names)))
    )
    if busy_ends:
        counts[0, 0] = max(counts[0, 0], 1)
        counts[-1, -1] = max(counts[-1, -1], 1)
    slot_s = draw(st.sampled_from([1.0, 0.1, 0.25, 5.0, 60.0]))
    return Trace(tuple(names), counts, slot_s)


def write(folder: Path, text: str, name: str = "trace.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def timestamps_csv(trace: Trace) -> str:
    """One row per request, spread inside its slot, rows of all tenants interleaved."""
    rows = []
    for name, counts in zip(trace.tenants, trace.counts.tolist()):
        for slot, count in enumerate(counts):
            for j in range(count):
                rows.append(f"{name},{(slot + (j + 0.5) / count) * trace.slot_s!r}")
    random.Random(0).shuffle(rows)
    return "tenant,timestamp_s\n" + "\n".join(rows) + "\n"


def long_counts_csv(trace: Trace) -> str:
    """Non-zero cells only (zeros are implied), in shuffled order."""
    rows = [
        f"{name},{slot},{count}"
        for name, counts in zip(trace.tenants, trace.counts.tolist())
        for slot, count in enumerate(counts)
        if count
    ]
    random.Random(1).shuffle(rows)
    return "tenant,slot,count\n" + "\n".join(rows) + "\n"


# -- the Trace value ---------------------------------------------------------------------------


def test_trace_shape_and_rates() -> None:
    trace = Trace(("a", "b"), [[1, 2, 3], [4, 5, 6]], slot_s=0.5)
    assert trace.n_tenants == 2
    assert trace.n_slots == 3
    assert trace.duration_s == 1.5
    assert trace.counts.dtype == np.int64
    np.testing.assert_array_equal(trace.rates_rps(), [[2, 4, 6], [8, 10, 12]])
    np.testing.assert_array_equal(trace.tenant("b"), [4, 5, 6])
    assert "n_slots=3" in repr(trace)


def test_counts_are_a_read_only_private_copy() -> None:
    source = np.array([[1, 2, 3]])
    trace = Trace(("a",), source)
    source[0, 0] = 99
    assert trace.counts[0, 0] == 1
    with pytest.raises(ValueError, match="read-only"):
        trace.counts[0, 0] = 5
    with pytest.raises(ValueError, match="read-only"):
        trace.tenant("a")[0] = 5


def test_equality_ignores_dtype_and_hash_agrees() -> None:
    ints = Trace(("a",), [[1, 2]])
    floats = Trace(("a",), [[1.0, 2.0]])
    assert ints == floats
    assert hash(ints) == hash(floats)
    assert ints != Trace(("a",), [[1, 3]])
    assert ints != Trace(("b",), [[1, 2]])
    assert ints != Trace(("a",), [[1, 2]], slot_s=2.0)
    assert ints != Trace(("a",), [[1, 2, 0]])
    assert ints != "a trace"


def test_window_select_rebin() -> None:
    trace = Trace(("a", "b", "c"), np.arange(18).reshape(3, 6))
    assert trace.window(2, 5) == Trace(("a", "b", "c"), np.arange(18).reshape(3, 6)[:, 2:5])
    expected = Trace(("c", "a"), [[12, 13, 14, 15, 16, 17], [0, 1, 2, 3, 4, 5]])
    assert trace.select(["c", "a"]) == expected
    assert trace.select("b") == Trace(("b",), [[6, 7, 8, 9, 10, 11]])
    rebinned = trace.rebin(3.0)
    assert rebinned == Trace(("a", "b", "c"), [[3, 12], [21, 30], [39, 48]], slot_s=3.0)
    assert trace.rebin(1.0) == trace
    # Counts are conserved, whatever the factor.
    assert trace.rebin(2.0).counts.sum() == trace.counts.sum()


def test_rebin_of_fractional_slots() -> None:
    trace = Trace(("a",), [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]], slot_s=0.1)
    assert trace.rebin(0.5) == Trace(("a",), [[5, 5]], slot_s=0.5)


@pytest.mark.parametrize(
    ("call", "field", "fragment"),
    [
        (lambda t: t.tenant("z"), "name", "unknown tenant 'z'; tenants in this trace: a, b"),
        (lambda t: t.select(["a", "z"]), "names", "unknown tenant 'z'"),
        (lambda t: t.select(["a", "a"]), "names", "appears twice"),
        (lambda t: t.window(2, 2), "stop_slot", "0 <= start_slot < stop_slot <= n_slots = 4"),
        (lambda t: t.window(-1, 2), "start_slot", "outside the trace"),
        (lambda t: t.window(0, 5), "stop_slot", "outside the trace"),
        (lambda t: t.window(0.5, 2), "start_slot", "must be an integer"),
        (lambda t: t.rebin(1.5), "slot_s", "not an integer multiple"),
        (lambda t: t.rebin(0.5), "slot_s", "not an integer multiple"),
        (lambda t: t.rebin(3.0), "slot_s", "use .window(0, 3) first"),
        (lambda t: t.rebin(-1), "slot_s", "positive"),
    ],
    ids=["tenant", "select-unknown", "select-twice", "window-empty", "window-negative",
         "window-past-end", "window-float", "rebin-fraction", "rebin-shorter",
         "rebin-partial", "rebin-negative"],
)
def test_trace_method_errors(call, field: str, fragment: str) -> None:
    trace = Trace(("a", "b"), np.ones((2, 4), dtype=int))
    with pytest.raises(ConfigError) as info:
        call(trace)
    assert fragment in str(info.value)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("tenants", "counts", "slot_s", "field", "fragment"),
    [
        (("a",), [[1, -1]], 1.0, "counts", "non-negative; row 0, slot 1"),
        (("a",), [[1.0, math.nan]], 1.0, "counts", "finite"),
        (("a",), [1, 2], 1.0, "counts", "shape (n_tenants, n_slots) = (1, n >= 1)"),
        (("a", "b"), [[1, 2]], 1.0, "counts", "got (1, 2)"),
        (("a",), np.zeros((1, 0)), 1.0, "counts", "n >= 1"),
        (("a",), [["x"]], 1.0, "counts", "integers or reals"),
        ((), np.zeros((0, 3)), 1.0, "tenants", "at least one tenant"),
        (("a", "a"), [[1], [2]], 1.0, "tenants", "appears twice"),
        ((" a",), [[1]], 1.0, "tenants", "without surrounding whitespace"),
        ("ab", [[1]], 1.0, "tenants", "single string 'ab'"),
        (("a",), [[1]], 0.0, "slot_s", "positive"),
        (("a",), [[1]], "1", "slot_s", "positive"),
    ],
    ids=["negative", "nan", "one-dimensional", "rows-vs-tenants", "no-slots", "strings",
         "no-tenants", "duplicate-tenant", "padded-name", "str-tenants", "zero-slot",
         "text-slot"],
)
def test_trace_validation(tenants, counts, slot_s, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Trace(tenants, counts, slot_s)
    assert fragment in str(info.value)
    assert info.value.field == field


# -- CSV round trips ---------------------------------------------------------------------------


@given(traces())
def test_wide_csv_round_trips(trace: Trace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wide.csv"
        trace.to_csv(path)
        loaded = load_csv(path, slot_s=trace.slot_s)
    assert loaded == trace
    assert loaded.counts.dtype == trace.counts.dtype


@pytest.mark.parametrize("layout", [timestamps_csv, long_counts_csv], ids=["timestamps", "long-counts"])
@given(trace=traces(busy_ends=True))
def test_long_csv_layouts_round_trip(layout, trace: Trace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), layout(trace))
        loaded = load_csv(path, slot_s=trace.slot_s, tenants=trace.tenants)
    assert loaded == trace


def test_round_trip_of_a_synthetic_trace_in_all_three_layouts(tmp_path: Path) -> None:
    trace = synthetic("diurnal", tenants=("vision", "speech"), duration_s=120, mean_rps=20, seed=3)
    trace.to_csv(tmp_path / "wide.csv")
    write(tmp_path, timestamps_csv(trace), "stamps.csv")
    write(tmp_path, long_counts_csv(trace), "long.csv")
    for name in ("wide.csv", "stamps.csv", "long.csv"):
        assert load_csv(tmp_path / name, tenants=trace.tenants) == trace, name


@pytest.mark.parametrize("column", ["slot", "second", "t", "time_s", "Slot", "TIME_S"])
def test_wide_time_column_names(tmp_path: Path, column: str) -> None:
    path = write(tmp_path, f"{column},a,b\n10,1,2\n11,3,4\n12,5,6\n")
    assert load_csv(path) == Trace(("a", "b"), [[1, 3, 5], [2, 4, 6]])


def test_wide_file_details(tmp_path: Path) -> None:
    # Time column anywhere, BOM, CRLF, blank lines, spaces around cells, float counts.
    text = "\ufeffa, time_s ,b\r\n1.5,0,2\r\n\r\n 3 ,5,4\r\n"
    path = write(tmp_path, text)
    trace = load_csv(path, slot_s=5)
    assert trace == Trace(("a", "b"), [[1.5, 3.0], [2.0, 4.0]], slot_s=5.0)
    assert trace.counts.dtype == np.float64
    assert load_csv(path, slot_s=5, tenants=["b"]) == trace.select(["b"])


def test_timestamps_bin_on_the_slot_grid(tmp_path: Path) -> None:
    # Boundaries computed in floating point (0.3 / 0.1 = 2.999...) still land in their slot.
    path = write(tmp_path, "tenant,timestamp_s\na,0.3\na,0.0\nb,0.29\nb,0.1\n")
    assert load_csv(path, slot_s=0.1) == Trace(("a", "b"), [[1, 0, 0, 1], [0, 1, 1, 0]], 0.1)


def test_timestamps_start_at_the_slot_of_the_first_request(tmp_path: Path) -> None:
    # Unix timestamps: slots are aligned to multiples of slot_s, not to the first request.
    path = write(tmp_path, "timestamp_s,tenant\n1700000007.5,a\n1700000012,b\n1700000019.9,a\n")
    trace = load_csv(path, slot_s=5)
    assert trace == Trace(("a", "b"), [[1, 0, 1], [0, 1, 0]], slot_s=5.0)


def test_long_layouts_give_zeros_to_tenants_without_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "tenant,slot,count,note\nb,4,2,x\na,3,1,y\n")
    assert load_csv(path) == Trace(("b", "a"), [[0, 2], [1, 0]])
    assert load_csv(path, tenants=["idle", "a"]) == Trace(("idle", "a"), [[0, 0], [1, 0]])
    stamps = write(tmp_path, "tenant,timestamp_s\na,0.5\n", "stamps.csv")
    assert load_csv(stamps, tenants=("a", "idle")) == Trace(("a", "idle"), [[1], [0]])


# -- CSV errors --------------------------------------------------------------------------------

BAD_CSV = {
    # id: (file text, load_csv keywords, expected field, fragments of the message)
    "empty": ("", {}, "path", ["is empty", "long timestamps"]),
    "blank-lines-only": ("\n \n\n", {}, "path", ["is empty"]),
    "header-only": ("slot,a\n", {}, "path", ["header but no data rows"]),
    "unknown-header": ("foo,bar\n1,2\n", {}, "header",
                       ["unknown header layout (2 columns", "accepted layouts: wide counts",
                        "tenant, timestamp_s", "tenant, slot, count"]),
    "tenant-without-time": ("tenant,count\na,1\n", {}, "header", ["unknown header layout"]),
    "two-time-columns": ("slot,time_s,a\n0,0,1\n", {}, "header", ["several time columns"]),
    "no-tenant-columns": ("slot\n0\n", {}, "header", ["one count column per tenant"]),
    "unnamed-column": ("slot,,a\n0,1,2\n", {}, "header", ["row 1: column 2 has no name"]),
    "duplicate-tenant": ("slot,a,b,a\n0,1,2,3\n", {}, "a",
                         ["row 1: duplicate column 'a' (columns 2 and 4)"]),
    "non-numeric": ("slot,a,b\n0,1,2\n1,3,x\n", {}, "b",
                    ["row 3, column 'b': 'x' is not a number"]),
    "empty-cell": ("slot,a\n0,\n", {}, "a", ["row 2, column 'a': '' is not a number"]),
    "negative": ("slot,a\n0,1\n1,-2\n", {}, "a", ["row 3, column 'a': -2 is negative"]),
    "nan": ("slot,a\n0,nan\n", {}, "a", ["row 2, column 'a': 'nan' is not a finite number"]),
    "row-numbers-count-blank-lines": ("slot,a\n0,1\n\n1,x\n", {}, "a", ["row 4, column 'a'"]),
    "ragged-row": ("slot,a\n0,1,7\n", {}, "slot", ["row 2: 3 fields but the header has 2"]),
    "slot-gap": ("slot,a\n0,1\n1,1\n3,1\n", {}, "slot",
                 ["row 4, column 'slot'", "not contiguous", "3 follows 1, expected 2"]),
    "slot-repeated": ("slot,a\n0,1\n0,1\n", {}, "slot", ["row 3, column 'slot'", "not contiguous"]),
    "slot-fraction": ("slot,a\n0.5,1\n", {}, "slot",
                      ["row 2, column 'slot': '0.5' is not an integer"]),
    "time-step-is-not-slot_s": ("time_s,a\n0,1\n5,2\n", {}, "time_s",
                                ["row 3, column 'time_s'", "expected 1", "slot_s=1.0"]),
    "missing-tenant-column": ("slot,a\n0,1\n", {"tenants": ["a", "b"]}, "tenants",
                              ["no column for tenant(s) b; tenant columns: a"]),
    "timestamp-non-numeric": ("tenant,timestamp_s\na,0.5\nb,soon\n", {}, "timestamp_s",
                              ["row 3, column 'timestamp_s': 'soon' is not a number"]),
    "timestamp-negative": ("tenant,timestamp_s\na,-1\n", {}, "timestamp_s",
                           ["row 2, column 'timestamp_s': -1 is negative"]),
    "empty-tenant-name": ("tenant,timestamp_s\n ,0.5\n", {}, "tenant",
                          ["row 2, column 'tenant': empty tenant name"]),
    "long-duplicate-cell": ("tenant,slot,count\na,0,1\na,0,2\n", {}, "slot",
                            ["row 3, column 'slot'", "slot 0 already appeared in row 2"]),
    "long-negative-count": ("tenant,slot,count\na,0,-1\n", {}, "count",
                            ["row 2, column 'count': -1 is negative"]),
    "long-bad-slot": ("tenant,slot,count\na,x,1\n", {}, "slot",
                      ["row 2, column 'slot': 'x' is not an integer"]),
    "bad-slot_s": ("slot,a\n0,1\n", {"slot_s": 0}, "slot_s", ["slot_s must be a positive"]),
    "huge-timestamp-span": ("tenant,timestamp_s\na,0\na,1e12\n", {}, "slot_s",
                            ["more than 100000000 cells; use a longer slot_s"]),
}


@pytest.mark.parametrize(("text", "kwargs", "field", "fragments"), BAD_CSV.values(), ids=BAD_CSV)
def test_bad_csv(tmp_path: Path, text: str, kwargs: dict, field: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_csv(path, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert info.value.field == field


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_csv(tmp_path / "missing.csv")
    assert info.value.field == "path"
    with pytest.raises(ConfigError, match="is a directory"):
        load_csv(tmp_path)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"slot,a\n0,\xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_csv(binary)


def test_to_csv_refuses_reserved_tenant_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved") as info:
        Trace(("t",), [[1]]).to_csv(tmp_path / "x.csv")
    assert info.value.field == "tenants"


# -- synthetic traces --------------------------------------------------------------------------

KIND_PARAMS = {
    "poisson": {},
    "diurnal": {"amplitude": 0.8, "period_s": 100},
    "bursty": {"high_multiplier": 5.0},
    "step": {"steps": [(30, 3.0)]},
}


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_same_seed_same_trace_other_seed_other_trace(kind: str) -> None:
    def draw(seed: int) -> Trace:
        return synthetic(kind, tenants=("a", "b"), duration_s=120, seed=seed, **KIND_PARAMS[kind])

    first = draw(5)
    assert draw(5) == first
    assert draw(6) != first
    assert first.counts.dtype == np.int64
    assert first.counts.shape == (2, 120)


def test_poisson_mean_and_variance() -> None:
    # Fixed seed, so the test is deterministic; the tolerances are 5 standard errors anyway,
    # so any seed passes with probability > 0.9999. Per-slot counts are Poisson(lam), lam =
    # mean_rps * slot_s, over N slots: SE(mean) = sqrt(lam / N), and
    # SE(variance) = sqrt((mu4 - sigma^4) / N) = sqrt((lam + 2 lam^2) / N) for a Poisson.
    n_slots = 20_000
    trace = synthetic("poisson", tenants=("a", "b"), duration_s=n_slots / 2, slot_s=0.5,
                      mean_rps=(50.0, 4.0), seed=11)
    assert trace.n_slots == n_slots
    for name, lam in (("a", 25.0), ("b", 2.0)):
        counts = trace.tenant(name)
        se_mean = math.sqrt(lam / n_slots)
        se_var = math.sqrt((lam + 2 * lam**2) / n_slots)
        assert abs(counts.mean() - lam) < 5 * se_mean
        assert abs(counts.var(ddof=1) - lam) < 5 * se_var


def _peak_time(counts: np.ndarray, slot_s: float, period_s: float) -> float:
    """Least-squares fit of mean + a cos(wt) + b sin(wt) at slot centres; time of the peak."""
    omega = 2 * math.pi / period_s
    t = (np.arange(counts.size) + 0.5) * slot_s
    design = np.column_stack([np.ones_like(t), np.cos(omega * t), np.sin(omega * t)])
    _, a, b = np.linalg.lstsq(design, counts, rcond=None)[0]
    return (math.atan2(b, a) / omega) % period_s


def test_diurnal_peaks_land_where_configured() -> None:
    # Noise per slot ~ Poisson(200): the fitted phase has SE ~ sqrt(2 * 200 / N) / (0.5 * 200)
    # rad = 0.6 s here, so 3 s is 5 standard errors.
    period = 600.0
    trace = synthetic("diurnal", tenants=("a", "b", "c", "d"), duration_s=1200,
                      mean_rps=200, period_s=period, seed=1)
    for i, name in enumerate(trace.tenants):
        expected = period * (i + 0.5) / 4  # default: evenly spread peaks
        assert abs(_peak_time(trace.tenant(name), 1.0, period) - expected) < 3.0
    explicit = synthetic("diurnal", tenants=("a", "b"), duration_s=1200, mean_rps=200,
                         period_s=period, peak_s=(100, 420), seed=2)
    assert abs(_peak_time(explicit.tenant("a"), 1.0, period) - 100) < 3.0
    assert abs(_peak_time(explicit.tenant("b"), 1.0, period) - 420) < 3.0


def test_diurnal_mean_and_swing() -> None:
    trace = synthetic("diurnal", duration_s=6000, slot_s=10, mean_rps=100, amplitude=0.5,
                      period_s=600, peak_s=0.0, seed=4)
    rates = trace.rates_rps()[0]
    # Mean over whole periods is mean_rps (SE ~ sqrt(100 / 60000) rps); peak ~ 150 at t = 0.
    assert abs(rates.mean() - 100) < 0.5
    assert rates[:2].mean() > 140 and rates[29:31].mean() < 60


def test_step_changes_happen_at_the_configured_times() -> None:
    # A huge base rate makes Poisson noise ~0.1 % (SE sqrt(1e6) / 1e6): 1 % is 10 SE.
    trace = synthetic("step", duration_s=400, mean_rps=1e6, steps=[(100, 3.0), (250.5, 0.0)],
                      seed=0)
    counts = trace.tenant("t0").astype(float)
    np.testing.assert_allclose(counts[:100], 1e6, rtol=0.01)
    np.testing.assert_allclose(counts[100:250], 3e6, rtol=0.01)
    assert counts[250] == pytest.approx(1.5e6, rel=0.01)  # half the slot at 3x, half at 0
    assert not counts[251:].any()  # multiplier 0: exactly no requests from 251 s on


def test_per_tenant_steps() -> None:
    trace = synthetic("step", tenants=("a", "b", "c"), duration_s=10, mean_rps=1e6,
                      steps={"a": [(0, 2.0)], "b": [(5, 0.0)]}, seed=0)
    np.testing.assert_allclose(trace.tenant("a"), 2e6, rtol=0.01)
    assert trace.tenant("b")[:5].all() and not trace.tenant("b")[5:].any()
    np.testing.assert_allclose(trace.tenant("c"), 1e6, rtol=0.01)


def test_bursty_is_overdispersed_with_the_stationary_mean() -> None:
    # Defaults: multiplier 0.5 for 50 s, 3.5 for 10 s on average -> long-run mean 1.0 x.
    # The time average of the state over T = 1e5 s has SE ~ sqrt(2 tau var / T) with tau = 8.3 s
    # and var = 1.25: 1.4 % of the mean; 10 % is 7 SE.
    trace = synthetic("bursty", duration_s=100_000, mean_rps=20, seed=9)
    counts = trace.tenant("t0")
    assert abs(counts.mean() - 20) < 2.0
    assert counts.var() > 5 * counts.mean()  # Poisson would give variance == mean
    # Two levels: quiet slots near 10 rps and bursts near 70 rps.
    assert np.mean(counts < 20) > 0.6 and np.mean(counts > 50) > 0.1


def test_mean_rps_per_tenant_and_slot_s() -> None:
    trace = synthetic("poisson", tenants=("a", "b"), duration_s=10, slot_s=2.5,
                      mean_rps=[0.0, 1e6])
    assert trace.n_slots == 4 and trace.slot_s == 2.5
    assert not trace.tenant("a").any()
    np.testing.assert_allclose(trace.rates_rps()[1], 1e6, rtol=0.01)


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"kind": "gamma"}, "kind", "allowed: poisson, diurnal, bursty, step"),
        ({"kind": "poisson", "amplitude": 1}, "amplitude", "allowed: none"),
        ({"kind": "diurnal", "period": 60}, "period", "allowed: period_s, amplitude, peak_s"),
        ({"kind": "diurnal", "amplitude": 1.5}, "amplitude", "in [0, 1]"),
        ({"kind": "diurnal", "peak_s": [1, 2]}, "peak_s", "sequence of 1 (one per tenant)"),
        ({"kind": "bursty", "low_sojourn_s": 0}, "low_sojourn_s", "positive"),
        ({"kind": "bursty", "high_multiplier": -1}, "high_multiplier", ">= 0"),
        ({"kind": "step", "steps": [(700, 2.0)]}, "steps", "outside [0, 600.0)"),
        ({"kind": "step", "steps": [(50, 2.0), (10, 1.0)]}, "steps", "times must increase"),
        ({"kind": "step", "steps": [(50, -2.0)]}, "steps", "must be >= 0"),
        ({"kind": "step", "steps": [50]}, "steps", "(time_s, multiplier) pairs"),
        ({"kind": "step", "steps": {"zz": [(1, 2)]}}, "steps", "unknown tenant(s) 'zz'"),
        ({"kind": "poisson", "mean_rps": -1}, "mean_rps", ">= 0"),
        ({"kind": "poisson", "mean_rps": [1, 2]}, "mean_rps", "sequence of 1"),
        ({"kind": "poisson", "duration_s": 10, "slot_s": 3}, "duration_s", "whole number of slots"),
        ({"kind": "poisson", "seed": -1}, "seed", "non-negative integer"),
        ({"kind": "poisson", "seed": 1.5}, "seed", "must be an integer"),
        ({"kind": "poisson", "tenants": ()}, "tenants", "at least one tenant"),
    ],
)
def test_synthetic_errors(kwargs: dict, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        synthetic(**kwargs)
    assert fragment in str(info.value)
    assert info.value.field == field


def test_a_single_tenant_name_is_one_tenant() -> None:
    assert synthetic("poisson", tenants="solo", duration_s=5).tenants == ("solo",)


# -- bundled samples ---------------------------------------------------------------------------


def test_bundled_samples() -> None:
    names = samples()
    assert {"diurnal-4", "bursty-4", "shift-2"} <= set(names)
    assert names == sorted(SAMPLE_RECIPES)
    folder = resources.files("migrator") / "data" / "traces"
    for name in names:
        assert len((folder / f"{name}.csv").read_bytes()) < 100_000
        trace = sample(name)
        assert trace.n_slots == 600 and trace.slot_s == 1.0
        assert trace.tenants == tuple(SAMPLE_RECIPES[name]["tenants"])
    assert sample("diurnal-4") is sample("diurnal-4")  # loaded once


def test_shift_sample_moves_load_half_way() -> None:
    trace = sample("shift-2")
    first, second = trace.window(0, 300).rates_rps(), trace.window(300, 600).rates_rps()
    np.testing.assert_allclose(first.mean(axis=1), [80, 20], rtol=0.05)
    np.testing.assert_allclose(second.mean(axis=1), [20, 80], rtol=0.05)


def test_samples_regenerate_from_their_recipes(tmp_path: Path) -> None:
    # Compared by shape and mean, not bytes: numpy's Generator streams may change between
    # releases (NEP 19), which would change the draws but not what the samples are.
    write_samples(tmp_path)
    for name in samples():
        fresh = load_csv(tmp_path / f"{name}.csv")
        bundled = sample(name)
        assert fresh.tenants == bundled.tenants and fresh.n_slots == bundled.n_slots
        np.testing.assert_allclose(fresh.counts.mean(axis=1), bundled.counts.mean(axis=1),
                                   rtol=0.1)


def test_unknown_sample() -> None:
    with pytest.raises(ConfigError, match="unknown sample trace 'nope'; samples: bursty-4"):
        sample("nope")
