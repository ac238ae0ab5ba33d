"""Built-in geometry tables (``data/gpus/*.yaml``) and GPU-name resolution.

Users and NVML name the same GPU many ways: ``A100-40GB``, ``NVIDIA A100-SXM4-40GB``,
``a100 pcie 40gb``. Names are compared after :func:`normalize_name`, against each table's
key, its ``aliases`` and its NVML ``device_names``.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

import yaml

from ..errors import GeometryError, UnknownGPU

__all__ = ["known_gpus", "load_table", "normalize_name", "resolve_gpu"]

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalize_name(name: str) -> str:
    """Case, spacing and a leading ``NVIDIA`` do not distinguish GPUs."""
    text = name.strip().lower()
    if text.startswith("nvidia"):
        text = text[len("nvidia") :]
    return _SEPARATORS.sub("", text)


@functools.lru_cache(maxsize=None)
def _tables() -> dict[str, dict[str, Any]]:
    folder = resources.files("migrator") / "data" / "gpus"
    tables: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        try:
            table = yaml.safe_load(entry.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise GeometryError(f"built-in table {entry.name} is not valid YAML: {exc}") from exc
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            raise GeometryError(f"built-in table {entry.name} has no 'name' field")
        tables[table["name"]] = table
    return tables


@functools.lru_cache(maxsize=None)
def _index() -> dict[str, str]:
    index: dict[str, str] = {}
    for key, table in _tables().items():
        names = [key, *table.get("aliases", []), *table.get("device_names", [])]
        for name in names:
            index.setdefault(normalize_name(name), key)
    return index


def known_gpus() -> list[str]:
    """Keys of the built-in geometry tables, sorted (e.g. ``"A100-40GB"``)."""
    return sorted(_tables())


def resolve_gpu(name: str) -> str:
    """The built-in table key for a short name, alias or NVML device name.

    Raises
    ------
    UnknownGPU
        Listing the known GPUs, when nothing matches.
    """
    if not isinstance(name, str):
        raise TypeError(f"GPU name must be str, not {type(name).__name__}")
    key = _index().get(normalize_name(name))
    if key is None:
        raise UnknownGPU(name, known_gpus())
    return key


def load_table(name: str) -> dict[str, Any]:
    """The raw table (a fresh copy) of a built-in GPU, by any of its names."""
    import copy

    return copy.deepcopy(_tables()[resolve_gpu(name)])
