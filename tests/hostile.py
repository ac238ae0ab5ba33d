"""Shared by the hostile-input tests (tests/test_hostile_input.py, tests/test_hostile_fuzz.py,
tests/workload/test_hostile_input.py): a bound on how long one input may run, so that a hang
fails its case instead of the suite, and the good inputs they spoil."""

from __future__ import annotations

import copy
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import yaml


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so that no ``except Exception`` of the code
    under test swallows it."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread when the block runs longer than ``seconds``."""

    def ring(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- inputs to spoil: the built-in scenario's mapping, a small model table ----------------------

BUILTIN: dict[str, Any] = yaml.safe_load(
    (resources.files("migrator") / "data" / "scenarios" / "default.yaml").read_text(encoding="utf-8")
)

#: One model on one GPU, valid as it stands: a fitting profile per size, one that does not fit,
#: and a source of each kind (a listed id, "derived").
TINY_MODEL: dict[str, Any] = {
    "name": "tiny", "task": "classification", "domain": "vision", "params_m": 5.0, "precision": "fp16",
    "batch_sizes": [1, 8], "sources": [{"id": "me", "cite": "measured here"}],
    "gpus": {"A100-40GB": {
        "7g.40gb": {"inference_ms": [2.0, 8.0], "retrain_speed": 1.0, "source": "me"},
        "4g.20gb": {"inference_ms": [2.5, 10.0], "retrain_speed": 0.6, "source": "me"},
        "3g.20gb": {"inference_ms": [3.0, 12.0], "retrain_speed": 0.5, "source": "me"},
        "1g.5gb": {"inference_ms": [6.0, 30.0], "retrain_speed": 0.15, "source": "inference: me; retrain: derived"},
        "2g.10gb": {"fits": False, "source": "me"},
    }},
}


def changed(path: str, value: Any, table: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``table`` (the built-in scenario's mapping) with the dotted ``path`` set to
    ``value``; list items by index (``tenants.0.slo_ms``)."""
    table = copy.deepcopy(BUILTIN if table is None else table)
    *parents, last = path.split(".")
    node: Any = table
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node[step]
    node[int(last) if isinstance(node, list) else last] = value
    return table


def many_tenants(n: int) -> list[dict[str, Any]]:
    """``n`` copies of the built-in scenario's first tenant, named t0, t1, ..."""
    return [{**BUILTIN["tenants"][0], "name": f"t{i}"} for i in range(n)]


def places(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a nested mapping or list, as a key path: leaves and the containers above."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += places(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += places(value, (*prefix, index))
    return found


def put(node: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set ``path`` to ``value`` where the path still exists: an earlier change may have
    replaced a container on it."""
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, (dict, list)):
        try:
            node[path[-1]] = value
        except (IndexError, TypeError):
            pass


def spoiled(document: Any, changes: list[tuple[tuple[Any, ...], Any]]) -> Any:
    """A copy of ``document`` with each (path, value) of ``changes`` put in."""
    copied = copy.deepcopy(document)
    for path, value in changes:
        put(copied, path, value)
    return copied
