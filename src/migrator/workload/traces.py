"""Arrival traces: request counts per tenant and slot, from CSV files or seeded generators.

A :class:`Trace` is the planner's view of demand: for each tenant, how many inference requests
arrived in each slot of ``slot_s`` seconds. Traces come from three places:

* :func:`load_csv` reads a measured trace in one of three CSV layouts (detected from the header):

  ========================  ===================================================================
  wide counts               a time column (``slot``, ``second``, ``t`` or ``time_s``) and one
                            column of per-slot counts per tenant
  long timestamps           columns ``tenant`` and ``timestamp_s``, one row per request
  long counts               columns ``tenant``, ``slot`` and ``count``
  ========================  ===================================================================

* :func:`synthetic` draws a seeded trace: constant-rate Poisson, diurnal (sinusoidal rate),
  bursty (two-state Markov-modulated Poisson) or step changes of the rate.
* :func:`sample` loads one of the small traces shipped in ``migrator/data/traces``
  (:func:`samples` lists them; :func:`write_samples` regenerates them).

Slots are numbered on the file's own clock, and a loaded trace starts at the first slot the
file mentions: slot ``k`` covers ``[k * slot_s, (k + 1) * slot_s)`` seconds. For request
timestamps this means bins are aligned to multiples of ``slot_s`` (relative timestamps starting
near 0 bin exactly as a wide file would; Unix timestamps give wall-clock-aligned bins), and the
trace runs from the slot holding the earliest request to the slot holding the latest.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import ConfigError
from .checks import number_in, shown
from .settings import MAX_CELLS, MAX_SLOT_REQUESTS

__all__ = [
    "KINDS",
    "SAMPLE_RECIPES",
    "TIME_COLUMNS",
    "Trace",
    "load_csv",
    "sample",
    "samples",
    "synthetic",
    "write_samples",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Names accepted for the time column of a wide CSV. ``slot`` holds slot indices; the others
#: hold the start time of each row's slot in seconds.
TIME_COLUMNS = ("slot", "second", "t", "time_s")
_RESERVED_COLUMNS = (*TIME_COLUMNS, "tenant")
_LAYOUTS = (
    "wide counts: a time column (slot, second, t or time_s) and one count column per tenant",
    "long timestamps: columns tenant, timestamp_s (one row per request)",
    "long counts: columns tenant, slot, count",
)

# Slot boundaries computed in floating point (0.3 / 0.1 = 2.999...) must not push a request
# that sits exactly on a boundary into the previous slot: a quotient this close (in slots)
# to an integer is that integer. Also the relative slack when testing for integer ratios.
_BOUNDARY_RTOL = 1e-9
# Tolerance on a wide file's time column: written times are rounded to ~12 digits.
_TIME_RTOL = 1e-6
# A trace is dense (tenants x slots); refuse timestamp spans that would not fit in memory
# rather than fail inside numpy (10^8 cells = 800 MB of int64). One limit with scenarios'.
_MAX_CELLS = MAX_CELLS
# Bursty traces: state changes drawn per tenant (sojourns far shorter than a slot only
# average out, and each change costs memory while the path is drawn).
_MAX_STATE_CHANGES = 10**6
# Step multipliers: the rate times the step's length is integrated per slot, and a factor near
# the largest float overflows there; a billion times the mean rate is already far past the
# per-slot request limit (MAX_SLOT_REQUESTS) at any rate worth modelling.
_MAX_STEP_MULTIPLIER = 1e9
# Diurnal periods, in seconds: shorter ones average out within any slot, and both ends keep
# the phase (2 pi t / period) finite.
_MIN_PERIOD_S, _MAX_PERIOD_S = 1e-3, 1e12


# -- the value ---------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False, eq=False)
class Trace:
    """Request counts per tenant and slot.

    Parameters
    ----------
    tenants
        Tenant names, unique, one per row of ``counts``.
    counts
        Array of shape ``(n_tenants, n_slots)``: requests that arrived in each slot. Integer
        input is stored as int64, real input as float64; the stored array is a read-only copy.
    slot_s
        Length of one slot in seconds.

    Two traces are equal when their tenants, ``slot_s`` and count values are equal (the
    dtype does not matter: ``[[1, 2]]`` equals ``[[1.0, 2.0]]``).
    """

    tenants: tuple[str, ...]
    counts: np.ndarray
    slot_s: float = 1.0

    def __post_init__(self) -> None:
        tenants = _check_tenant_names(self.tenants, field="tenants")
        counts = _check_counts(self.counts, n_tenants=len(tenants))
        # frozen=True forbids plain assignment; these are the normalised forms of the inputs.
        object.__setattr__(self, "tenants", tenants)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "slot_s", _check_positive(self.slot_s, "slot_s"))

    # -- shape -----------------------------------------------------------------------------

    @property
    def n_tenants(self) -> int:
        """Number of tenants (rows of ``counts``)."""
        return int(self.counts.shape[0])

    @property
    def n_slots(self) -> int:
        """Number of slots (columns of ``counts``)."""
        return int(self.counts.shape[1])

    @property
    def duration_s(self) -> float:
        """Length of the trace in seconds, ``n_slots * slot_s``."""
        return self.n_slots * self.slot_s

    def rates_rps(self) -> np.ndarray:
        """Arrival rate per tenant and slot, ``counts / slot_s``; shape ``(n_tenants, n_slots)``."""
        return self.counts / self.slot_s

    # -- parts -----------------------------------------------------------------------------

    def tenant(self, name: str) -> np.ndarray:
        """The read-only counts of one tenant, shape ``(n_slots,)``."""
        return self.counts[self._index(name, field="name")]

    def window(self, start_slot: int, stop_slot: int) -> Trace:
        """Slots ``start_slot`` (inclusive) to ``stop_slot`` (exclusive), as a new trace.

        Requires ``0 <= start_slot < stop_slot <= n_slots``; negative indices are refused
        rather than counted from the end, because a slot number is a time.
        """
        start = _check_int(start_slot, "start_slot")
        stop = _check_int(stop_slot, "stop_slot")
        if not 0 <= start < stop <= self.n_slots:
            raise ConfigError(
                f"window({start}, {stop}) is outside the trace: need "
                f"0 <= start_slot < stop_slot <= n_slots = {self.n_slots}",
                field="start_slot" if not 0 <= start < self.n_slots else "stop_slot",
            )
        return Trace(self.tenants, self.counts[:, start:stop], self.slot_s)

    def select(self, names: str | Iterable[str]) -> Trace:
        """The trace of some tenants, in the order given (a single name is one tenant)."""
        wanted = (names,) if isinstance(names, str) else tuple(names)
        wanted = _check_tenant_names(wanted, field="names")
        rows = [self._index(name, field="names") for name in wanted]
        return Trace(wanted, self.counts[rows], self.slot_s)

    def rebin(self, slot_s: float) -> Trace:
        """Sum counts into longer slots of ``slot_s`` seconds.

        ``slot_s`` must be an integer multiple of the current slot and ``n_slots`` a multiple
        of that factor: a partial last slot would read as a drop in load. Cut the trace first
        with :meth:`window` when it is not.
        """
        new_slot_s = _check_positive(slot_s, "slot_s")
        factor = _integer_ratio(new_slot_s, self.slot_s)
        if factor is None:
            raise ConfigError(
                f"rebin slot_s={new_slot_s!r} is not an integer multiple of the trace's "
                f"slot_s={self.slot_s!r}; allowed: k * {self.slot_s!r} for k = 1, 2, ...",
                field="slot_s",
            )
        if self.n_slots % factor:
            usable = self.n_slots - self.n_slots % factor
            raise ConfigError(
                f"rebin to slot_s={new_slot_s!r} groups {factor} slots, but the trace has "
                f"{self.n_slots} slots (not a multiple of {factor}); "
                f"use .window(0, {usable}) first",
                field="slot_s",
            )
        grouped = self.counts.reshape(self.n_tenants, self.n_slots // factor, factor)
        return Trace(self.tenants, grouped.sum(axis=2), new_slot_s)

    # -- files -----------------------------------------------------------------------------

    def to_csv(self, path: PathLike) -> None:
        """Write the trace as a wide CSV: a ``time_s`` column (slot start) and one per tenant.

        ``load_csv(path, slot_s=trace.slot_s)`` reads it back equal; the ``time_s`` column
        makes a wrong ``slot_s`` at load time an error rather than a silent rescaling.
        """
        for name in self.tenants:
            if name.lower() in _RESERVED_COLUMNS:
                raise ConfigError(
                    f"tenant {name!r} cannot be a wide CSV column: the names "
                    f"{', '.join(_RESERVED_COLUMNS)} are reserved",
                    field="tenants",
                )
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(["time_s", *self.tenants])
            for slot, column in enumerate(self.counts.T.tolist()):
                writer.writerow([_format_seconds(slot * self.slot_s), *map(_format_count, column)])

    # -- value semantics -------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return (
            self.tenants == other.tenants
            and self.slot_s == other.slot_s
            and self.counts.shape == other.counts.shape
            and bool(np.array_equal(self.counts, other.counts))
        )

    def __hash__(self) -> int:
        # Equality ignores dtype, so hash the float64 values; + 0.0 folds -0.0 into 0.0.
        values = (self.counts.astype(np.float64) + 0.0).tobytes()
        return hash((self.tenants, self.slot_s, self.counts.shape, values))

    def __repr__(self) -> str:
        return (
            f"Trace(tenants={self.tenants!r}, n_slots={self.n_slots}, slot_s={self.slot_s!r}, "
            f"dtype={self.counts.dtype.name})"
        )

    def _index(self, name: str, *, field: str) -> int:
        try:
            return self.tenants.index(name)
        except ValueError:
            raise ConfigError(
                f"unknown tenant {name!r}; tenants in this trace: {', '.join(self.tenants)}",
                field=field,
            ) from None


# -- validation helpers ------------------------------------------------------------------------


def _check_tenant_names(names: Any, *, field: str) -> tuple[str, ...]:
    if isinstance(names, str):
        raise ConfigError(
            f"{field} must be a sequence of tenant names, not the single string {names!r}; "
            f"write ({names!r},)",
            field=field,
        )
    try:
        result = tuple(names)
    except TypeError:
        raise ConfigError(
            f"{field} must be a sequence of tenant names, not {type(names).__name__}",
            field=field,
        ) from None
    if not result:
        raise ConfigError(f"{field} is empty: a trace needs at least one tenant", field=field)
    seen: set[str] = set()
    for name in result:
        if not isinstance(name, str) or not name or name != name.strip():
            raise ConfigError(
                f"{field}: tenant names must be non-empty strings without surrounding "
                f"whitespace, got {name!r}",
                field=field,
            )
        if name in seen:
            raise ConfigError(f"{field}: tenant {name!r} appears twice", field=field)
        seen.add(name)
    return result


def _check_counts(counts: Any, *, n_tenants: int) -> np.ndarray:
    try:
        array = np.asarray(counts)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ConfigError(f"counts is not a rectangular array: {exc}", field="counts") from None
    if array.dtype.kind in "biu":
        dtype: type = np.int64
    elif array.dtype.kind == "f":
        dtype = np.float64
    else:
        raise ConfigError(
            f"counts must be integers or reals, not dtype {array.dtype}", field="counts"
        )
    if array.ndim != 2 or array.shape[0] != n_tenants or array.shape[1] == 0:
        raise ConfigError(
            f"counts must have shape (n_tenants, n_slots) = ({n_tenants}, n >= 1), "
            f"got {array.shape}",
            field="counts",
        )
    # A private copy, so no caller can change the trace behind its back. Checked after the
    # conversion, so a uint64 too large for int64 shows up as the negative value it became.
    stored: np.ndarray = np.array(array, dtype=dtype, copy=True)
    if dtype is np.float64 and not np.all(np.isfinite(stored)):
        raise ConfigError("counts must be finite (no NaN or infinity)", field="counts")
    if np.any(stored < 0):
        tenant, slot = (int(i) for i in np.argwhere(stored < 0)[0])
        raise ConfigError(
            f"counts must be non-negative; row {tenant}, slot {slot} is {stored[tenant, slot]}",
            field="counts",
        )
    stored.flags.writeable = False
    return stored


def _check_positive(value: Any, name: str) -> float:
    return number_in(value, name, low=0.0, low_open=True)


def _check_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}", field=name)
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be an integer, got {value!r}", field=name) from None


def _integer_ratio(longer: float, shorter: float) -> int | None:
    """``longer / shorter`` when it is a positive integer (up to rounding), else None."""
    ratio = longer / shorter
    if not math.isfinite(ratio):  # two finite numbers can still overflow
        return None
    nearest = round(ratio)
    if nearest >= 1 and abs(ratio - nearest) <= _BOUNDARY_RTOL * ratio:
        return int(nearest)
    return None


def _format_seconds(seconds: float) -> str:
    # Whole seconds print as integers; others are rounded to hide binary noise (0.1 * 3).
    if float(seconds).is_integer():
        return str(int(seconds))
    return repr(round(seconds, 9))


def _format_count(value: int | float) -> str:
    # repr of a float round-trips exactly and keeps "1.0" distinct from the integer "1",
    # so a float trace reads back as float.
    return repr(value) if isinstance(value, float) else str(value)


# -- CSV loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """A CSV file split into its header and numbered data rows (line numbers as in the file)."""

    source: str
    header: list[str]
    rows: list[tuple[int, list[str]]]

    def cell(self, line: int, row: list[str], column: int) -> str:
        if len(row) != len(self.header):
            raise ConfigError(
                f"{self.source}, row {line}: {len(row)} fields but the header has "
                f"{len(self.header)} ({', '.join(self.header)})",
                field=self.header[min(column, len(self.header) - 1)],
            )
        return row[column]

    def number(
        self, line: int, row: list[str], column: int, *, integer: bool = False
    ) -> int | float:
        """The cell as a non-negative number (an ``int`` when written as one)."""
        text = self.cell(line, row, column).strip()
        name = self.header[column]
        where = f"{self.source}, row {line}, column {name!r}"
        value: int | float
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                kind = "an integer" if integer else "a number"
                raise ConfigError(f"{where}: {text!r} is not {kind}", field=name) from None
            if not math.isfinite(value):
                raise ConfigError(f"{where}: {text!r} is not a finite number", field=name)
            if integer:
                if not value.is_integer():
                    raise ConfigError(f"{where}: {text!r} is not an integer", field=name)
                value = int(value)
        if value < 0:
            raise ConfigError(f"{where}: {text} is negative; values must be >= 0", field=name)
        return value


def load_csv(
    path: PathLike, *, slot_s: float = 1.0, tenants: Sequence[str] | None = None
) -> Trace:
    """Read a trace from a CSV file; the layout is detected from the header.

    Parameters
    ----------
    path
        The CSV file (UTF-8, header row first; blank lines are ignored).
    slot_s
        Slot length in seconds. Request timestamps are binned into slots of this length; a wide
        file's ``second``/``t``/``time_s`` column must step by exactly this much per row.
    tenants
        Keep these tenants, in this order. Without it, the order is that of the columns (wide)
        or of first appearance (long layouts). In long layouts a listed tenant without rows gets
        zero counts (having no requests is how it looks there); in a wide file it is an error.

    Returns
    -------
    Trace
        Counts are int64 when every value in the file is written as an integer, else float64.
        The trace starts at the first slot the file mentions (see the module docstring).

    Raises
    ------
    ConfigError
        For a missing, unreadable or empty file, an unknown header layout (the message lists
        the accepted ones), a duplicate column, a non-numeric or negative value (naming the row
        -- the line number in the file, header = 1 -- and the column), a wide time column that
        is not contiguous, or a duplicate (tenant, slot) row in a long-counts file.
    """
    step_s = _check_positive(slot_s, "slot_s")
    if isinstance(tenants, str):
        tenants = (tenants,)
    wanted = None if tenants is None else _check_tenant_names(tenants, field="tenants")
    table = _read_table(_read_text(path), source=str(path))
    return _parse_table(table, slot_s=step_s, tenants=wanted)


def _read_text(path: PathLike) -> str:
    try:
        file = Path(path)
    except TypeError:
        raise ConfigError(f"path must be a file path, not {type(path).__name__}", "path") from None
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        with open(file, newline="", encoding="utf-8-sig") as stream:
            return stream.read()
    except FileNotFoundError:
        raise ConfigError(f"trace file {file} does not exist", field="path") from None
    except IsADirectoryError:
        raise ConfigError(f"trace path {file} is a directory, not a CSV file", "path") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"trace file {file} is not UTF-8 text: {exc.reason}", "path") from None
    except ValueError:  # a NUL in the path: no file can have that name
        raise ConfigError(f"trace path {shown(str(file))} holds a NUL character", "path") from None
    except OSError as exc:
        raise ConfigError(f"cannot read trace file {file}: {exc.strerror}", "path") from None


def _read_table(text: str, *, source: str) -> _Table:
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise ConfigError(f"{source}, row {reader.line_num}: bad CSV: {exc}", "path") from None
    if not rows:
        raise ConfigError(
            f"trace file {source} is empty; expected a header, one of: {'; '.join(_LAYOUTS)}",
            field="path",
        )
    (_, header), body = rows[0], rows[1:]
    header = [name.strip() for name in header]
    table = _Table(source=source, header=header, rows=body)
    _check_header(table)
    if not body:
        raise ConfigError(f"trace file {source} has a header but no data rows", field="path")
    return table


def _check_header(table: _Table) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(table.header, start=1):
        if not name:
            raise ConfigError(
                f"{table.source}, row 1: column {position} has no name", field="header"
            )
        if name in seen:
            raise ConfigError(
                f"{table.source}, row 1: duplicate column {name!r} "
                f"(columns {seen[name]} and {position})",
                field=name,
            )
        seen[name] = position


def _parse_table(table: _Table, *, slot_s: float, tenants: tuple[str, ...] | None) -> Trace:
    lowered = [name.lower() for name in table.header]
    if "tenant" in lowered:
        if "timestamp_s" in lowered:
            return _parse_timestamps(table, lowered, slot_s=slot_s, tenants=tenants)
        if "slot" in lowered and "count" in lowered:
            return _parse_long_counts(table, lowered, slot_s=slot_s, tenants=tenants)
    else:
        time_columns = [i for i, name in enumerate(lowered) if name in TIME_COLUMNS]
        if len(time_columns) == 1:
            return _parse_wide(table, time_columns[0], slot_s=slot_s, tenants=tenants)
        if len(time_columns) > 1:
            names = ", ".join(table.header[i] for i in time_columns)
            raise ConfigError(
                f"{table.source}: several time columns ({names}); a wide CSV has exactly one "
                f"of {', '.join(TIME_COLUMNS)}",
                field="header",
            )
    raise ConfigError(
        # The columns are counted, not quoted: the file may not be a trace at all, and an
        # error must not show what another file holds.
        f"{table.source}: unknown header layout ({len(table.header)} columns, none of them a "
        "time column or the long layouts' names); "
        f"accepted layouts: {'; '.join(_LAYOUTS)}",
        field="header",
    )


def _parse_wide(
    table: _Table, time_column: int, *, slot_s: float, tenants: tuple[str, ...] | None
) -> Trace:
    columns = [i for i in range(len(table.header)) if i != time_column]
    if not columns:
        raise ConfigError(
            f"{table.source}: a wide CSV needs one count column per tenant besides "
            f"{table.header[time_column]!r}",
            field="header",
        )
    is_slot = table.header[time_column].lower() == "slot"
    times = []
    values = []
    for line, row in table.rows:
        times.append(table.number(line, row, time_column, integer=is_slot))
        values.append([table.number(line, row, i) for i in columns])
    _check_contiguous(table, time_column, times, step=1.0 if is_slot else slot_s)
    names = tuple(table.header[i] for i in columns)
    trace = Trace(names, _dense(values, table.source).T, slot_s)
    return trace if tenants is None else _select_wide(trace, tenants, table.source)


def _check_contiguous(table: _Table, column: int, times: list[float], *, step: float) -> None:
    # A gap or a repeated time would shift every later slot; the planner reads position as time.
    name = table.header[column]
    for k in range(1, len(times)):
        expected = times[0] + k * step
        if abs(times[k] - expected) > _TIME_RTOL * step:
            line = table.rows[k][0]
            hint = "" if name.lower() == "slot" else f" (slot_s={step!r}; pass the file's slot_s)"
            raise ConfigError(
                f"{table.source}, row {line}, column {name!r}: time column is not contiguous: "
                f"{times[k]!r} follows {times[k - 1]!r}, expected {_format_seconds(expected)} "
                f"-- each row must be the next slot{hint}",
                field=name,
            )


def _select_wide(trace: Trace, tenants: tuple[str, ...], source: str) -> Trace:
    missing = [name for name in tenants if name not in trace.tenants]
    if missing:
        raise ConfigError(
            f"{source}: no column for tenant(s) {', '.join(missing)}; "
            f"tenant columns: {', '.join(trace.tenants)}",
            field="tenants",
        )
    return trace.select(tenants)


def _dense(values: list[list[Any]], source: str) -> np.ndarray:
    # int64 only when every value was written as an integer, so "1.5" keeps float precision.
    integral = all(isinstance(v, int) for row in values for v in row)
    try:
        return np.array(values, dtype=np.int64 if integral else np.float64)
    except OverflowError:
        raise ConfigError(f"{source}: a count does not fit in 64 bits", field="counts") from None


def _tenant_name(table: _Table, line: int, row: list[str], column: int) -> str:
    name = table.cell(line, row, column).strip()
    if not name:
        raise ConfigError(
            f"{table.source}, row {line}, column {table.header[column]!r}: empty tenant name",
            field=table.header[column],
        )
    return name


def _parse_timestamps(
    table: _Table, lowered: list[str], *, slot_s: float, tenants: tuple[str, ...] | None
) -> Trace:
    tenant_column = lowered.index("tenant")
    time_column = lowered.index("timestamp_s")
    arrivals: dict[str, list[float]] = {}
    for line, row in table.rows:
        name = _tenant_name(table, line, row, tenant_column)
        arrivals.setdefault(name, []).append(float(table.number(line, row, time_column)))
    furthest = max(float(np.max(np.abs(times))) for times in arrivals.values()) / slot_s if arrivals else 0.0
    if not furthest < _MAX_SLOT_INDEX:  # before any cast to a slot index (1e300 s would wrap)
        raise ConfigError(
            f"{table.source}: a timestamp_s lies {furthest:.3g} slots of {slot_s} s from 0, more than "
            f"{_MAX_SLOT_INDEX:.3g}", field="timestamp_s",
        )
    slots = {name: _slot_of(np.array(times), slot_s) for name, times in arrivals.items()}
    first = min(int(s.min()) for s in slots.values())
    last = max(int(s.max()) for s in slots.values())
    names = tuple(arrivals) if tenants is None else tenants
    _check_size(len(names), last - first + 1, table.source, slot_s)
    counts = np.zeros((len(names), last - first + 1), dtype=np.int64)
    for row_index, name in enumerate(names):
        if name in slots:
            counts[row_index] = np.bincount(slots[name] - first, minlength=counts.shape[1])
    return Trace(names, counts, slot_s)


#: The furthest slot index a timestamp may have: every integer below it is exact in a float.
_MAX_SLOT_INDEX = float(2**53)


def _slot_of(timestamps_s: np.ndarray, slot_s: float) -> np.ndarray:
    """Slot index ``floor(t / slot_s)`` of each timestamp, robust to rounding on boundaries."""
    quotient = timestamps_s / slot_s
    nearest = np.round(quotient)
    # Only rounding noise counts as "on the boundary": a few ulps of the quotient (large for
    # Unix timestamps in short slots), and never less than the fixed slack for small values.
    slack = np.maximum(_BOUNDARY_RTOL, 8 * np.finfo(np.float64).eps * np.abs(quotient))
    on_boundary = np.abs(quotient - nearest) <= slack
    return np.where(on_boundary, nearest, np.floor(quotient)).astype(np.int64)


def _check_size(n_tenants: int, n_slots: int, source: str, slot_s: float) -> None:
    if n_tenants * n_slots > _MAX_CELLS:
        raise ConfigError(
            f"{source}: the requests span {n_slots} slots of {slot_s} s for {n_tenants} "
            f"tenant(s), more than {_MAX_CELLS} cells; use a longer slot_s",
            field="slot_s",
        )


def _parse_long_counts(
    table: _Table, lowered: list[str], *, slot_s: float, tenants: tuple[str, ...] | None
) -> Trace:
    tenant_column = lowered.index("tenant")
    slot_column = lowered.index("slot")
    count_column = lowered.index("count")
    cells: dict[tuple[str, int], tuple[int, float]] = {}  # (tenant, slot) -> (line, count)
    order: dict[str, None] = {}  # tenants in order of first appearance
    for line, row in table.rows:
        name = _tenant_name(table, line, row, tenant_column)
        slot = int(table.number(line, row, slot_column, integer=True))
        count = table.number(line, row, count_column)
        if (name, slot) in cells:
            raise ConfigError(
                f"{table.source}, row {line}, column {table.header[slot_column]!r}: tenant "
                f"{name!r} slot {slot} already appeared in row {cells[name, slot][0]}",
                field=table.header[slot_column],
            )
        cells[name, slot] = (line, count)
        order.setdefault(name)
    first = min(slot for _, slot in cells)
    last = max(slot for _, slot in cells)
    names = tuple(order) if tenants is None else tenants
    _check_size(len(names), last - first + 1, table.source, slot_s)
    integral = all(isinstance(count, int) for _, count in cells.values())
    counts = np.zeros((len(names), last - first + 1), dtype=np.int64 if integral else np.float64)
    row_of = {name: i for i, name in enumerate(names)}
    for (name, slot), (_, count) in cells.items():
        if name in row_of:
            counts[row_of[name], slot - first] = count
    return Trace(names, counts, slot_s)


# -- synthetic traces --------------------------------------------------------------------------

#: Generator kinds and the extra parameters each accepts (with their defaults).
KINDS: dict[str, dict[str, Any]] = {
    "poisson": {},
    "diurnal": {"period_s": None, "amplitude": 0.5, "peak_s": None},
    "bursty": {
        "low_multiplier": 0.5,
        "high_multiplier": 3.5,
        "low_sojourn_s": 50.0,
        "high_sojourn_s": 10.0,
    },
    "step": {"steps": None},
}


def synthetic(
    kind: str,
    *,
    tenants: Sequence[str] = ("t0",),
    duration_s: float = 600,
    slot_s: float = 1.0,
    seed: int = 0,
    mean_rps: float | Sequence[float] = 50.0,
    **params: Any,
) -> Trace:
    """Draw a seeded synthetic trace: Poisson counts whose rate follows ``kind``.

    Each slot's count is Poisson with mean ``mean_rps * slot_s * m``, where ``m`` is the
    rate multiplier averaged exactly over the slot (so a change in mid-slot counts pro rata).
    The same arguments always give the same trace (``numpy.random.default_rng(seed)``).

    Parameters
    ----------
    kind
        ``"poisson"``: ``m = 1``.

        ``"diurnal"``: ``m(t) = 1 + amplitude * cos(2 pi (t - peak_s) / period_s)``.
        ``period_s`` defaults to ``duration_s``; ``amplitude`` in [0, 1] (default 0.5) keeps
        the rate non-negative; ``peak_s`` (scalar or one per tenant) is when each tenant peaks,
        by default ``period_s * (i + 0.5) / n_tenants`` for tenant ``i`` so tenants peak at
        evenly spread times. The mean over whole periods is ``mean_rps``.

        ``"bursty"``: a two-state Markov-modulated Poisson process, one independent chain per
        tenant, started from its stationary distribution. ``m`` is ``low_multiplier``
        (default 0.5) or ``high_multiplier`` (default 3.5); the states last exponential times
        with means ``low_sojourn_s`` (50) and ``high_sojourn_s`` (10). The defaults give a
        long-run mean of ``mean_rps``; in general it is ``mean_rps * (low_multiplier *
        low_sojourn_s + high_multiplier * high_sojourn_s) / (low_sojourn_s + high_sojourn_s)``.

        ``"step"``: ``steps=[(time_s, multiplier), ...]`` sets ``m`` from each time on
        (``m = 1`` before the first; times increasing, in ``[0, duration_s)``); or a mapping
        ``{tenant: [(time_s, multiplier), ...]}`` for per-tenant steps (tenants left out keep
        ``m = 1``). Default: ``[(duration_s / 2, 2.0)]``.
    tenants
        Tenant names.
    duration_s, slot_s
        Trace length and slot length in seconds; ``duration_s`` must be a whole number of slots.
    seed
        Seed of the random generator.
    mean_rps
        Base rate in requests per second, a scalar or one value per tenant.

    Raises
    ------
    ConfigError
        For an unknown kind or parameter (listing the allowed ones) or a value out of range.
    """
    names = _check_tenant_names(
        (tenants,) if isinstance(tenants, str) else tenants, field="tenants"
    )
    step_s = _check_positive(slot_s, "slot_s")
    n_slots = _whole_slots(_check_positive(duration_s, "duration_s"), step_s)
    _check_size(len(names), n_slots, f"synthetic {kind!r} trace", step_s)
    rng = np.random.default_rng(_check_seed(seed))
    base = _per_tenant(mean_rps, len(names), "mean_rps", low=0.0)
    multiplier = _multiplier(kind, names, n_slots, step_s, rng, params)
    means = base[:, None] * step_s * multiplier
    # numpy refuses Poisson means above about 1e19 (ValueError); bound them well below that.
    if not np.all(means <= MAX_SLOT_REQUESTS):  # also false for NaN
        raise ConfigError(
            f"mean_rps x slot_s x the {kind!r} multiplier asks for up to {np.nanmax(means):g} "
            f"requests in one slot, more than the limit of {MAX_SLOT_REQUESTS:g}",
            field="mean_rps",
        )
    counts = rng.poisson(means)
    return Trace(names, counts.astype(np.int64), step_s)


def _multiplier(
    kind: str,
    tenants: tuple[str, ...],
    n_slots: int,
    slot_s: float,
    rng: np.random.Generator,
    params: dict[str, Any],
) -> np.ndarray:
    """Mean rate multiplier per tenant and slot, shape ``(n_tenants, n_slots)``."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(
            f"unknown trace kind {kind!r}; allowed: {', '.join(KINDS)}", field="kind"
        )
    unknown = sorted(set(params) - set(KINDS[kind]))
    if unknown:
        allowed = ", ".join(KINDS[kind]) or "none"
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} for kind {kind!r}; allowed: {allowed}",
            field=unknown[0],
        )
    options = {**KINDS[kind], **params}
    edges = np.arange(n_slots + 1) * slot_s
    n = len(tenants)
    if kind == "poisson":
        return np.ones((n, n_slots))
    if kind == "diurnal":
        return _diurnal(edges, n, **options)
    if kind == "bursty":
        chain = _bursty_options(options)
        _check_state_changes(float(edges[-1]), chain)
        return np.stack([_markov_modulated(edges, rng, **chain) for _ in range(n)])
    return _steps(edges, tenants, options["steps"])


def _diurnal(
    edges: np.ndarray, n: int, *, period_s: Any, amplitude: Any, peak_s: Any
) -> np.ndarray:
    period = edges[-1] if period_s is None else _check_positive(period_s, "period_s")
    if not _MIN_PERIOD_S <= period <= _MAX_PERIOD_S:
        raise ConfigError(
            f"period_s must be in [{_MIN_PERIOD_S:g}, {_MAX_PERIOD_S:g}] s, got {period:g}", field="period_s"
        )
    depth = _check_fraction(amplitude, "amplitude")
    if peak_s is None:
        peaks = period * (np.arange(n) + 0.5) / n
    else:
        # Within one period: the same cosine, and the phase below stays finite.
        peaks = np.mod(_per_tenant(peak_s, n, "peak_s", low=-math.inf), period)
    omega = 2 * math.pi / period
    # Exact mean of cos over each slot: (sin(w(b - p)) - sin(w(a - p))) / (w (b - a)).
    phase = omega * (edges[None, :] - peaks[:, None])
    mean_cos = np.diff(np.sin(phase), axis=1) / (omega * np.diff(edges))
    return 1.0 + depth * mean_cos


def _bursty_options(options: dict[str, Any]) -> dict[str, float]:
    result = {}
    for name in ("low_multiplier", "high_multiplier"):
        result[name] = _check_non_negative(options[name], name)
    for name in ("low_sojourn_s", "high_sojourn_s"):
        result[name] = _check_positive(options[name], name)
    return result


def _check_state_changes(duration: float, chain: dict[str, float]) -> None:
    cycles = duration / (chain["low_sojourn_s"] + chain["high_sojourn_s"])
    if 2 * cycles > _MAX_STATE_CHANGES:
        raise ConfigError(
            f"low_sojourn_s + high_sojourn_s ({chain['low_sojourn_s']:g} + {chain['high_sojourn_s']:g} s) "
            f"would switch state about {2 * cycles:.3g} times in {duration:g} s, more than the limit "
            f"of {_MAX_STATE_CHANGES}; use longer sojourns",
            field="low_sojourn_s",
        )


def _markov_modulated(
    edges: np.ndarray,
    rng: np.random.Generator,
    *,
    low_multiplier: float,
    high_multiplier: float,
    low_sojourn_s: float,
    high_sojourn_s: float,
) -> np.ndarray:
    """Slot means of a two-state continuous-time Markov chain's multiplier, one path."""
    duration = float(edges[-1])
    p_high = high_sojourn_s / (low_sojourn_s + high_sojourn_s)
    starts_high = bool(rng.random() < p_high)
    means = (high_sojourn_s, low_sojourn_s) if starts_high else (low_sojourn_s, high_sojourn_s)
    values = (high_multiplier, low_multiplier) if starts_high else (low_multiplier, high_multiplier)
    # Draw alternating sojourns in chunks (vectorised) until they cover the whole trace.
    pairs = int(duration / (low_sojourn_s + high_sojourn_s)) + 8
    lengths = np.empty(0)
    while lengths.sum() <= duration:
        first, second = rng.exponential(means[0], pairs), rng.exponential(means[1], pairs)
        chunk = np.column_stack([first, second])
        lengths = np.concatenate([lengths, chunk.ravel()])
    times = np.concatenate([[0.0], np.cumsum(lengths)])
    levels = np.resize(np.array(values), len(lengths))
    return _slot_means(times, levels, edges)


def _slot_means(times: np.ndarray, levels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean over each slot ``[edges[k], edges[k+1])`` of the step function that equals
    ``levels[i]`` on ``[times[i], times[i+1])``; ``times`` must cover the edges."""
    # The integral of a step function is piecewise linear, so interpolating it is exact.
    integral = np.concatenate([[0.0], np.cumsum(levels * np.diff(times))])
    return np.diff(np.interp(edges, times, integral)) / np.diff(edges)


def _steps(edges: np.ndarray, tenants: tuple[str, ...], steps: Any) -> np.ndarray:
    duration = float(edges[-1])
    if steps is None:
        steps = [(duration / 2, 2.0)]
    if isinstance(steps, Mapping):
        unknown = [name for name in steps if name not in tenants]
        if unknown:
            raise ConfigError(
                f"steps names unknown tenant(s) {', '.join(map(repr, unknown))}; "
                f"tenants: {', '.join(tenants)}",
                field="steps",
            )
        per_tenant = [steps.get(name, []) for name in tenants]
    else:
        per_tenant = [steps] * len(tenants)
    rows = []
    for name, tenant_steps in zip(tenants, per_tenant):
        times, levels = _step_function(tenant_steps, duration, name)
        rows.append(_slot_means(times, levels, edges))
    return np.stack(rows)


def _step_function(steps: Any, duration: float, tenant: str) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints and levels of one tenant's step multiplier (1 before the first step)."""
    example = "expected a list of (time_s, multiplier) pairs, e.g. [(300, 2.0)]"
    try:
        pairs = [(float(t), float(m)) for t, m in steps]
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"steps for tenant {tenant!r}: {example}", field="steps") from None
    times, levels = [0.0], [1.0]
    for time_s, multiplier in pairs:
        if not 0 <= time_s < duration:
            raise ConfigError(
                f"steps for tenant {tenant!r}: time_s {time_s} is outside [0, {duration})",
                field="steps",
            )
        if not 0 <= multiplier <= _MAX_STEP_MULTIPLIER:  # also false for NaN
            raise ConfigError(
                f"steps for tenant {tenant!r}: multiplier {multiplier} must be >= 0 and at most "
                f"{_MAX_STEP_MULTIPLIER:g}",
                field="steps",
            )
        if time_s < times[-1] or (time_s == times[-1] and len(times) > 1):
            raise ConfigError(
                f"steps for tenant {tenant!r}: times must increase, {time_s} follows {times[-1]}",
                field="steps",
            )
        if time_s == times[-1]:  # a step at 0 replaces the initial level
            levels[-1] = multiplier
        else:
            times.append(time_s)
            levels.append(multiplier)
    times.append(duration)
    return np.array(times), np.array(levels)


def _whole_slots(duration_s: float, slot_s: float) -> int:
    n_slots = _integer_ratio(duration_s, slot_s)
    if n_slots is None:
        raise ConfigError(
            f"duration_s={duration_s!r} is not a whole number of slots of slot_s={slot_s!r}",
            field="duration_s",
        )
    return n_slots


def _check_seed(seed: Any) -> int:
    value = _check_int(seed, "seed")
    if value < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}", field="seed")
    return value


def _check_non_negative(value: Any, name: str) -> float:
    return number_in(value, name, low=0.0)


def _check_fraction(value: Any, name: str) -> float:
    return number_in(value, name, low=0.0, high=1.0)


def _per_tenant(value: Any, n: int, name: str, *, low: float) -> np.ndarray:
    """A scalar or one value per tenant, as a float array of shape ``(n,)``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float64
        raise ConfigError(
            f"{name} must be a number or one number per tenant, got {shown(value)}", field=name
        ) from None
    if array.ndim == 0:
        array = np.full(n, float(array))
    if array.shape != (n,):
        raise ConfigError(
            f"{name} must be a number or a sequence of {n} (one per tenant), "
            f"got shape {array.shape}",
            field=name,
        )
    if not np.all(np.isfinite(array)) or np.any(array < low):
        bound = "" if low == -math.inf else f" and >= {low}"
        raise ConfigError(f"{name} values must be finite{bound}, got {value!r}", field=name)
    return array


# -- bundled samples ---------------------------------------------------------------------------

_FOUR = ("t0", "t1", "t2", "t3")

#: How each bundled sample is drawn: the arguments of :func:`synthetic` (600 one-second slots).
SAMPLE_RECIPES: dict[str, dict[str, Any]] = {
    "poisson-4": {"kind": "poisson", "tenants": _FOUR, "mean_rps": (20, 40, 60, 80), "seed": 1},
    "diurnal-4": {
        "kind": "diurnal",
        "tenants": _FOUR,
        "mean_rps": (40, 60, 30, 80),
        "amplitude": 0.6,
        "seed": 2,
    },
    "bursty-4": {"kind": "bursty", "tenants": _FOUR, "mean_rps": (20, 40, 60, 80), "seed": 3},
    # Half way, load moves from t0 to t1 (80 -> 20 rps and 20 -> 80 rps): the total stays put,
    # so only a planner that re-partitions the GPU keeps both tenants within SLO.
    "shift-2": {
        "kind": "step",
        "tenants": ("t0", "t1"),
        "mean_rps": (80, 20),
        "steps": {"t0": [(300, 0.25)], "t1": [(300, 4.0)]},
        "seed": 4,
    },
}


def write_samples(folder: PathLike) -> list[Path]:
    """(Re)generate the bundled sample traces as ``<name>.csv`` in ``folder``.

    The files are drawn from :data:`SAMPLE_RECIPES` with fixed seeds, so this is reproducible:
    From the repository root::

        python -c "from migrator import traces; traces.write_samples('src/migrator/data/traces')"
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, recipe in SAMPLE_RECIPES.items():
        path = target / f"{name}.csv"
        synthetic(**recipe, duration_s=600, slot_s=1.0).to_csv(path)
        written.append(path)
    return written


def _sample_folder() -> Any:
    return resources.files("migrator") / "data" / "traces"


def samples() -> list[str]:
    """Names of the bundled sample traces, sorted (e.g. ``"diurnal-4"``)."""
    names = (entry.name for entry in _sample_folder().iterdir())
    return sorted(name[: -len(".csv")] for name in names if name.endswith(".csv"))


def sample(name: str) -> Trace:
    """Load a bundled sample trace by name (see :func:`samples`); one-second slots."""
    known = samples()
    if name not in known:
        raise ConfigError(f"unknown sample trace {name!r}; samples: {', '.join(known)}", "name")
    return _load_sample(name)


@functools.lru_cache(maxsize=None)
def _load_sample(name: str) -> Trace:
    # Traces are immutable, so every caller can share one loaded copy.
    entry = _sample_folder() / f"{name}.csv"
    table = _read_table(entry.read_text(encoding="utf-8"), source=f"sample {name}")
    return _parse_table(table, slot_s=1.0, tenants=None)
