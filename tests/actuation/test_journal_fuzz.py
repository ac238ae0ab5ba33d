"""A journal damaged in any way is read, and recovered from, or refused with one of
migrator's errors, never another exception (issue 18): real journals from the emulator, with
one record's field replaced, dropped or retyped, or a line cut, reordered or replaced by junk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.actuation.emulator import NvmlEmulator
from migrator.actuation.journal import Journal, read_journal
from migrator.actuation.nvml import NvmlBackend
from migrator.actuation.reconfig import apply, recover
from migrator.errors import MigratorError


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dict]:
    path = tmp_path_factory.mktemp("journal") / "j.jsonl"
    backend = NvmlBackend(NvmlEmulator(["A100-40GB"], layouts=["3g.20gb@0,3g.20gb@4"])).open()
    with Journal(path) as journal:
        for layout in ("7g.40gb@0", "2g.10gb@0,2g.10gb@2,3g.20gb@4", ""):
            apply(backend, 0, layout, journal=journal)
    return [json.loads(line) for line in path.read_text().splitlines()]


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                 st.text(max_size=8), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                          st.integers(), max_size=2))


@st.composite
def damaged(draw, records):
    lines = [json.dumps(r) for r in records]
    k = draw(st.integers(0, len(records) - 1))
    kind = draw(st.sampled_from(["replace", "drop", "junk-line", "cut", "swap", "duplicate"]))
    record = dict(records[k])
    if kind == "replace":
        record[draw(st.sampled_from(sorted(record)))] = draw(JUNK)
        lines[k] = json.dumps(record)
    elif kind == "drop":
        record.pop(draw(st.sampled_from(sorted(record))))
        lines[k] = json.dumps(record)
    elif kind == "junk-line":
        lines[k] = draw(st.text(max_size=30)).replace("\n", " ")
    elif kind == "cut":
        lines[k] = lines[k][: draw(st.integers(0, len(lines[k])))]
    elif kind == "swap":
        j = draw(st.integers(0, len(records) - 1))
        lines[k], lines[j] = lines[j], lines[k]
    else:
        lines.insert(k, lines[k])
    return "\n".join(lines) + "\n"


def _read(tmp_path: Path, text: str) -> None:
    """Read the journal, then recover from it onto an emulated GPU: only migrator's own
    errors may come out (a refused recovery is one)."""
    path = tmp_path / "damaged.jsonl"
    path.write_text(text, encoding="utf-8")
    try:
        read_journal(path)
        backend = NvmlBackend(NvmlEmulator(["A100-40GB"], layouts=["3g.20gb@0,3g.20gb@4"])).open()
        recover(path, backend)
    except MigratorError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_journal_raises_only_journal_errors(tmp_path, records, data):
    _read(tmp_path, data.draw(damaged(records)))


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_ten_thousand_damaged_journals_raise_only_journal_errors(tmp_path, records, data):
    _read(tmp_path, data.draw(damaged(records)))
