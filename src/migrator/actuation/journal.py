"""The reconfiguration journal: what the actuator is about to do, written down before it does it.

One JSON object per line, appended, flushed and ``fsync``-ed before the next NVML call, so
that after a crash the file says which transaction was under way, which actions were done,
and which one may have been running when the process died. ``migrator recover`` reads it.

Records (every one has ``v`` (format version, 1), ``txn``, ``event``, ``time`` (Unix
seconds) and ``gpu``):

``begin``
    ``kind`` (``apply`` or ``recover``), ``model``, ``current`` (the layout observed before),
    ``target``, ``fallback`` (the last good layout to roll back to), ``recovers`` (the
    transaction a recovery finishes, or null) and ``actions`` (the planned list).
``start`` / ``done`` / ``failed``
    One action, by ``seq`` (0-based, rollback actions continue the numbering) with its
    ``action`` and ``phase`` (``forward`` or ``rollback``); ``done`` adds the ids NVML gave
    (``gi_id``, ``ci_id``), ``failed`` the ``error`` (``NVML_ERROR_*`` name or exception
    type) and ``message``.
``drain``
    The caller's drain hook ran for ``placement`` serving ``task``.
``rollback``
    Rolling back to ``layout`` after ``error``.
``commit`` / ``abort``
    The transaction ended with the GPU verified at ``layout``: the target (commit) or the
    fallback after a rollback (abort). A transaction with neither is open: the process died
    or the rollback failed, and the GPU may be between two layouts.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._files import exists
from ..errors import JournalError, LayoutSyntaxError
from ..geometry.layout import Layout
from ..workload.checks import shown
from ..workload.settings import MAX_GPUS

__all__ = ["FORMAT_VERSION", "Journal", "Transaction", "read_journal"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_EVENTS = ("begin", "start", "done", "failed", "drain", "rollback", "commit", "abort")
_ENDS = ("commit", "abort")
# The fields that hold a layout's text, read by recovery.
_LAYOUT_FIELDS = {"begin": ("current", "target", "fallback"), "commit": ("layout",), "abort": ("layout",)}
# What each event's record must hold for recovery to act on it (and of which type).
_FIELDS: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "begin": (("kind", str), ("model", str), ("current", str), ("target", str), ("fallback", str),
              ("actions", list)),
    "start": (("seq", int), ("action", dict)),
    "done": (("seq", int),),
    "failed": (("seq", int),),
    "commit": (("layout", str),),
    "abort": (("layout", str),),
}


class Journal:
    """An append-only, fsync-ed JSON-lines file of reconfiguration transactions.

    Parameters
    ----------
    path : str or Path
        Created (with its directory entry synced) when missing, appended to otherwise.

    The file is locked (``flock``) while open: two actuators writing one journal would
    interleave transactions on the same GPUs, so the second one is refused.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        created = not exists(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._file.close()
            raise JournalError(f"journal {self.path} is held by another migrator (one actuator per journal); "
                               "stop it first") from exc
        if created:
            _sync_directory(self.path.parent)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin(
        self, *, gpu: int, model: str, kind: str, current: str, target: str, fallback: str,
        actions: Sequence[Mapping[str, Any]], recovers: str | None = None,
    ) -> str:
        """Open a transaction; returns its id."""
        txn = uuid.uuid4().hex[:16]
        self.write(txn, "begin", gpu, kind=kind, model=model, current=current, target=target,
                   fallback=fallback, recovers=recovers, actions=list(actions))
        return txn

    def write(self, txn: str, event: str, gpu: int, **fields: Any) -> None:
        """Append one record and make it durable before returning."""
        if event not in _EVENTS:
            raise ValueError(f"journal event must be one of {', '.join(_EVENTS)}, got {event!r}")
        record = {"v": FORMAT_VERSION, "txn": txn, "event": event, "time": time.time(), "gpu": gpu, **fields}
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def _sync_directory(directory: Path) -> None:
    # A new file's name is durable only once its directory is synced (POSIX).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the records are still synced
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Transaction:
    """One journal transaction and its records, in file order."""

    txn: str
    gpu: int
    model: str
    kind: str
    current: str
    target: str
    fallback: str
    recovers: str | None
    actions: tuple[Mapping[str, Any], ...]
    records: tuple[Mapping[str, Any], ...]

    @property
    def status(self) -> str:
        """``committed``, ``aborted`` or ``open`` (interrupted, or the rollback failed)."""
        last = self.records[-1]["event"]
        return {"commit": "committed", "abort": "aborted"}.get(last, "open")

    @property
    def layout(self) -> str | None:
        """The verified layout the transaction ended with, None while open."""
        return self.records[-1].get("layout") if self.status != "open" else None

    def events(self, name: str) -> list[Mapping[str, Any]]:
        return [r for r in self.records if r["event"] == name]

    def in_flight(self) -> list[Mapping[str, Any]]:
        """Actions started but neither done nor failed: running when the process died."""
        ended = {r["seq"] for r in self.records if r["event"] in ("done", "failed")}
        return [r for r in self.events("start") if r["seq"] not in ended]

    def problems(self) -> list[str]:
        """What makes the records inconsistent (empty when they are consistent): an action
        ended twice or without a start, one started while another was running, records
        after the end, numbering out of order."""
        out: list[str] = []
        running: int | None = None
        ended: set[int] = set()
        started: set[int] = set()
        for i, r in enumerate(self.records):
            event = r["event"]
            if i and self.records[i - 1]["event"] in _ENDS:
                out.append(f"{event} after the transaction ended")
            if event == "start":
                if running is not None:
                    out.append(f"action {r['seq']} started while action {running} was running")
                if r["seq"] in started or (started and r["seq"] != max(started) + 1):
                    out.append(f"action {r['seq']} started out of order")
                started.add(r["seq"])
                running = r["seq"]
            elif event in ("done", "failed"):
                if r["seq"] != running or r["seq"] in ended:
                    out.append(f"action {r['seq']} {event} without being the running action")
                ended.add(r["seq"])
                running = None
            elif event in _ENDS and running is not None:
                out.append(f"{event} while action {running} was running")
        return out


def read_journal(path: str | Path) -> tuple[Transaction, ...]:
    """The transactions of a journal, in the order they began.

    A last line cut short (the process died while writing it) is ignored with a warning:
    the action it would have recorded is then treated as possibly running. Any other
    unreadable line raises :class:`~migrator.errors.JournalError` naming it.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise JournalError(f"journal {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                log.warning("journal %s: last line %d is cut short (ignored): %s", path, number, exc)
                break
            raise JournalError(f"journal {path}, line {number}: not JSON ({exc})", line=number) from exc
        except (ValueError, RecursionError) as exc:  # NaN or Infinity; brackets nested too deep
            raise JournalError(f"journal {path}, line {number}: not a journal record "
                               f"({exc or 'nested too deeply'})", line=number) from None
        _check_record(record, path, number)
        records.append(record)
    return _transactions(records, path)


def _no_constant(name: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON has not: the journal never writes them."""
    raise ValueError(f"{name} is not JSON")


def _check_record(record: Any, path: Path, number: int) -> None:
    where = f"journal {path}, line {number}"
    if not isinstance(record, dict):
        raise JournalError(f"{where}: expected a JSON object", line=number)
    if record.get("v") != FORMAT_VERSION:
        raise JournalError(f"{where}: format version {record.get('v')!r}, this migrator reads "
                           f"{FORMAT_VERSION}", line=number)
    missing = [k for k in ("txn", "event", "gpu") if k not in record]
    if missing:
        raise JournalError(f"{where}: missing field {missing[0]!r}", line=number)
    if not isinstance(record["txn"], str) or not isinstance(record["event"], str):
        raise JournalError(f"{where}: txn and event must be strings", line=number)
    if record["event"] not in _EVENTS:
        raise JournalError(f"{where}: event {record['event']!r} is not one of {', '.join(_EVENTS)}",
                           line=number)
    gpu = record["gpu"]
    if isinstance(gpu, bool) or not isinstance(gpu, int) or not 0 <= gpu < MAX_GPUS:
        raise JournalError(f"{where}: gpu must be a GPU index in [0, {MAX_GPUS - 1}], got {shown(gpu)}",
                           line=number)
    for name, kind in _FIELDS.get(record["event"], ()):
        if not isinstance(record.get(name), kind):
            raise JournalError(f"{where}: {record['event']} record without a valid {name!r}", line=number)
    for name in _LAYOUT_FIELDS.get(record["event"], ()):
        try:
            Layout.parse(record[name])
        except LayoutSyntaxError as exc:
            raise JournalError(f"{where}: {name} is not a layout: {exc}", line=number) from None


def _transactions(records: list[dict[str, Any]], path: Path) -> tuple[Transaction, ...]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["event"] == "begin":
            grouped[record["txn"]] = []
        elif record["txn"] not in grouped:
            raise JournalError(f"journal {path}: {record['event']} record of transaction "
                               f"{record['txn']} before its begin record")
        grouped[record["txn"]].append(record)
    return tuple(
        Transaction(
            txn=txn, gpu=int(rows[0]["gpu"]), model=rows[0]["model"], kind=rows[0]["kind"],
            current=rows[0]["current"], target=rows[0]["target"], fallback=rows[0]["fallback"],
            recovers=rows[0].get("recovers"), actions=tuple(rows[0]["actions"]), records=tuple(rows),
        )
        for txn, rows in grouped.items()
    )
