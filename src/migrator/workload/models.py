"""Model profiles: per DNN, GPU model and MIG profile, the service time of one inference batch
and the retraining speed relative to the full GPU.

The built-in table is ``data/models.yaml`` (provenance and derivation rule: ``docs/models.md``).
A user table is YAML in the same schema, or CSV with the columns
``model,gpu,profile,batch_size,inference_ms,retrain_speed`` (one row per batch size; see
:func:`load_models`).

GPU names resolve through :func:`migrator.geometry.catalog.resolve_gpu` (``"NVIDIA A100-SXM4-40GB"``),
profile names through the GPU's geometry (``"MIG 1g.5gb"``); media-engine variants
(``+me``, ``-me``, ``+gfx``, ``+me.all``) share their base profile's figures.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError, InvalidLayout, UnknownGPU
from ..geometry import catalog
from .checks import number_in, read_text, read_yaml

__all__ = ["Entry", "ModelProfile", "builtin_models", "load_models", "parse_models"]

DOMAINS = ("vision", "language")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4")
MAX_RETRAIN_SPEED = 1.5
DERIVED = "derived"
UNSPECIFIED = "unspecified"  # CSV tables without the optional metadata columns
_BASE_PROFILE = re.compile(r"^(\d+g\.\d+gb)(.*)$")
_MODEL_KEYS = {"name", "task", "domain", "params_m", "precision", "batch_sizes", "sources", "gpus"}
_REQUIRED_MODEL_KEYS = _MODEL_KEYS - {"sources"}
_ENTRY_KEYS = {"inference_ms", "retrain_speed", "fits", "source"}
_SOURCE_KEYS = {"id", "cite"}
_CSV_COLUMNS = ("model", "gpu", "profile", "batch_size", "inference_ms", "retrain_speed")
_CSV_OPTIONAL = ("task", "domain", "params_m", "precision")
_CSV_SOURCE = "user-csv"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class Entry:
    """Figures of one model on one (GPU, base profile).

    ``inference_ms`` has shape ``(n_batch_sizes,)`` (None when the model does not fit);
    ``retrain_speed`` is the training throughput relative to the GPU's full profile.
    """

    inference_ms: np.ndarray | None
    retrain_speed: float | None
    fits: bool
    source: str


@dataclass(frozen=True)
class ModelProfile:
    """One DNN's profile table. ``entries`` maps ``(gpu_key, base_profile)`` to :class:`Entry`."""

    name: str
    task: str
    domain: str
    params_m: float
    precision: str
    batch_sizes: tuple[int, ...]
    entries: Mapping[tuple[str, str], Entry] = field(repr=False)

    # -- lookups ------------------------------------------------------------------------

    def gpus(self) -> list[str]:
        """GPU keys the table covers, sorted."""
        return sorted({gpu for gpu, _ in self.entries})

    def profiles(self, gpu: str) -> list[str]:
        """Base profile names covered on ``gpu`` (any name of the GPU), sorted."""
        key = self._gpu_key(gpu)
        return sorted(p for g, p in self.entries if g == key)

    def entry(self, gpu: str, profile: str) -> Entry:
        """The :class:`Entry` of a GPU (any alias) and profile (any NVML name or variant)."""
        key = self._gpu_key(gpu)
        base = _base_profile(key, profile)
        found = self.entries.get((key, base))
        if found is None:
            raise ConfigError(
                f"model {self.name!r} has no figures for profile {profile!r} on {key}; "
                f"profiles: {', '.join(self.profiles(key))}",
                field="profile",
            )
        return found

    def inference_ms(self, gpu: str, profile: str) -> np.ndarray:
        """Service time (ms) of one batch per batch size, shape ``(len(batch_sizes),)``."""
        entry = self.entry(gpu, profile)
        if entry.inference_ms is None:
            raise ConfigError(
                f"model {self.name!r} does not fit profile {profile!r} on {self._gpu_key(gpu)}",
                field="profile",
            )
        return entry.inference_ms.copy()

    def retrain_speed(self, gpu: str, profile: str) -> float:
        """Training throughput relative to the GPU's full-GPU profile."""
        entry = self.entry(gpu, profile)
        if entry.retrain_speed is None:
            raise ConfigError(
                f"model {self.name!r} does not fit profile {profile!r} on {self._gpu_key(gpu)}",
                field="profile",
            )
        return entry.retrain_speed

    def fits(self, gpu: str, profile: str) -> bool:
        """Whether the model runs (serves and retrains) on that profile."""
        return self.entry(gpu, profile).fits

    def _gpu_key(self, gpu: str) -> str:
        try:
            key = catalog.resolve_gpu(gpu)
        except UnknownGPU as exc:
            raise ConfigError(
                f"unknown GPU {gpu!r}; model {self.name!r} covers: {', '.join(self.gpus())}",
                field="gpu",
            ) from exc
        if key not in self.gpus():
            raise ConfigError(
                f"model {self.name!r} has no figures for GPU {key}; it covers: "
                f"{', '.join(self.gpus())}",
                field="gpu",
            )
        return key


def _base_profile(gpu_key: str, profile: str) -> str:
    """Canonical base name: geometry resolution, then the media-variant suffix dropped."""
    from ..geometry.geometry import Geometry

    if not isinstance(profile, str):
        raise ConfigError(f"profile name must be a string, not {profile!r}", field="profile")
    geometry = Geometry.for_gpu(gpu_key)
    try:
        name = geometry.profile(profile).name
    except InvalidLayout as exc:
        raise ConfigError(
            f"unknown profile {profile!r} on {gpu_key}; profiles: "
            f"{', '.join(p.name for p in geometry.profiles)}",
            field="profile",
        ) from exc
    match = _BASE_PROFILE.match(name)
    return match.group(1) if match else name


# -- loading ------------------------------------------------------------------------------


def load_models(path: str | Path | None = None) -> dict[str, ModelProfile]:
    """Model profiles by name.

    Parameters
    ----------
    path : str or Path, optional
        None: the built-in table. ``*.csv``: columns ``model,gpu,profile,batch_size,
        inference_ms,retrain_speed``, one row per (model, gpu, profile, batch size); a model's
        batch sizes are the union of its rows, every (gpu, profile) must give all of them and
        one ``retrain_speed``; ``inference_ms`` and ``retrain_speed`` empty means "does not fit".
        Other files: YAML in the built-in schema.

    Raises
    ------
    migrator.errors.ConfigError
        Naming the dotted field (``models[2].gpus.A100-40GB.3g.20gb.inference_ms``).
    """
    if path is None:
        return dict(builtin_models())
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            return _parse_csv(read_text(path, "model table"), origin=str(path))
        return parse_models(read_yaml(path, "model table"))
    except ConfigError as exc:
        # The table's checks name the field apart from the message; a user reading the
        # message alone (the CLI's) needs the file and the field in it.
        if exc.field in ("", "path") or exc.field in str(exc):
            raise
        raise ConfigError(f"model table {path}: {exc.field}: {exc}", field=exc.field) from exc


@functools.lru_cache(maxsize=1)
def _builtin() -> Mapping[str, ModelProfile]:
    text = (resources.files("migrator") / "data" / "models.yaml").read_text(encoding="utf-8")
    return MappingProxyType(parse_models(yaml.safe_load(text)))


def builtin_models() -> Mapping[str, ModelProfile]:
    """The built-in table (read once, read-only mapping)."""
    return _builtin()


def parse_models(data: Any) -> dict[str, ModelProfile]:
    """Validate a table already parsed from YAML (the built-in schema)."""
    return _parse_table(data, csv_defaults=False)


def _parse_table(data: Any, csv_defaults: bool) -> dict[str, ModelProfile]:
    if not isinstance(data, dict):
        raise ConfigError("model table must be a mapping with 'version' and 'models'", field="")
    _no_unknown(data, {"version", "models"}, "")
    if data.get("version") != 1:
        raise ConfigError(f"version must be 1, not {data.get('version')!r}", field="version")
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise ConfigError("models must be a non-empty list", field="models")
    out: dict[str, ModelProfile] = {}
    for i, raw in enumerate(models):
        model = _parse_model(raw, f"models[{i}]", csv_defaults)
        if model.name in out:
            raise ConfigError(f"model {model.name!r} appears twice", field=f"models[{i}].name")
        out[model.name] = model
    return out


def _no_unknown(mapping: dict, allowed: set[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}",
                field=f"{where}.{key}" if where else str(key),
            )


def _parse_model(raw: Any, where: str, csv_defaults: bool = False) -> ModelProfile:
    if not isinstance(raw, dict):
        raise ConfigError("each model must be a mapping", field=where)
    _no_unknown(raw, _MODEL_KEYS, where)
    for key in sorted(_REQUIRED_MODEL_KEYS):
        if key not in raw:
            raise ConfigError(f"missing key {key!r}", field=f"{where}.{key}")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"name must be a lowercase key ([a-z0-9_.-]), not {name!r}", field=f"{where}.name"
        )
    task = raw["task"]
    if not isinstance(task, str) or not task.strip():
        raise ConfigError("task must be a non-empty string", field=f"{where}.task")
    domain = raw["domain"]
    if domain not in DOMAINS and not (csv_defaults and domain == UNSPECIFIED):
        raise ConfigError(
            f"domain {domain!r} is not one of: {', '.join(DOMAINS)}", field=f"{where}.domain"
        )
    if csv_defaults and isinstance(raw["params_m"], float) and math.isnan(raw["params_m"]):
        params_m = math.nan
    else:
        params_m = number_in(raw["params_m"], f"{where}.params_m")
    if params_m <= 0:
        raise ConfigError("params_m must be positive", field=f"{where}.params_m")
    precision = raw["precision"]
    if precision not in PRECISIONS and not (csv_defaults and precision == UNSPECIFIED):
        raise ConfigError(
            f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}",
            field=f"{where}.precision",
        )
    batch_sizes = _parse_batch_sizes(raw["batch_sizes"], f"{where}.batch_sizes")
    source_ids = _parse_sources(raw.get("sources", []), f"{where}.sources")
    gpus = raw["gpus"]
    if not isinstance(gpus, dict) or not gpus:
        raise ConfigError("gpus must be a non-empty mapping GPU -> profiles", field=f"{where}.gpus")
    entries: dict[tuple[str, str], Entry] = {}
    for gpu_name, profiles in gpus.items():
        gwhere = f"{where}.gpus.{gpu_name}"
        try:
            gpu_key = catalog.resolve_gpu(str(gpu_name))
        except UnknownGPU as exc:
            raise ConfigError(
                f"unknown GPU {gpu_name!r}; known GPUs: {', '.join(catalog.known_gpus())}",
                field=gwhere,
            ) from exc
        if not isinstance(profiles, dict) or not profiles:
            raise ConfigError("must be a non-empty mapping profile -> figures", field=gwhere)
        for profile_name, fig in profiles.items():
            pwhere = f"{gwhere}.{profile_name}"
            try:
                base = _base_profile(gpu_key, str(profile_name))
            except ConfigError as exc:
                raise ConfigError(str(exc), field=pwhere) from exc
            if (gpu_key, base) in entries:
                raise ConfigError(
                    f"profile {base} on {gpu_key} is given twice (variants share the base "
                    "profile's figures)",
                    field=pwhere,
                )
            entries[(gpu_key, base)] = _parse_entry(fig, len(batch_sizes), source_ids, pwhere)
    model = ModelProfile(
        name=name,
        task=task,
        domain=domain,
        params_m=params_m,
        precision=precision,
        batch_sizes=batch_sizes,
        entries=MappingProxyType(entries),
    )
    _check_across_profiles(model, where)
    return model


def _parse_batch_sizes(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError("batch_sizes must be a non-empty list of integers", field=where)
    sizes = []
    for b in value:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError(f"batch sizes must be positive integers, not {b!r}", field=where)
        sizes.append(b)
    if any(b >= a for a, b in zip(sizes[1:], sizes)):
        raise ConfigError("batch_sizes must be strictly increasing", field=where)
    return tuple(sizes)


def _parse_sources(value: Any, where: str) -> set[str]:
    if not isinstance(value, list):
        raise ConfigError("sources must be a list of {id, cite}", field=where)
    ids: set[str] = set()
    for i, src in enumerate(value):
        swhere = f"{where}[{i}]"
        if not isinstance(src, dict):
            raise ConfigError("each source must be a mapping {id, cite}", field=swhere)
        _no_unknown(src, _SOURCE_KEYS, swhere)
        sid, cite = src.get("id"), src.get("cite")
        if not isinstance(sid, str) or not sid or sid == DERIVED:
            raise ConfigError(f"id must be a non-empty string other than 'derived', not {sid!r}",
                              field=f"{swhere}.id")
        if not isinstance(cite, str) or not cite.strip():
            raise ConfigError("cite must be a non-empty string", field=f"{swhere}.cite")
        ids.add(sid)
    return ids


def _check_source(value: Any, ids: set[str], where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("source must be a non-empty string", field=where)
    allowed = sorted(ids | {DERIVED})
    parts = [p.strip() for p in value.split(";")]
    if len(parts) == 1 and ":" not in parts[0]:
        refs = parts
    else:
        refs = []
        for part in parts:
            label, _, ref = part.partition(":")
            if label.strip() not in ("inference", "retrain") or not ref.strip():
                raise ConfigError(
                    f"source {value!r}: write '<id>' or 'inference: <id>; retrain: <id>'",
                    field=where,
                )
            refs.append(ref.strip())
    for ref in refs:
        if ref not in ids and ref != DERIVED:
            raise ConfigError(
                f"source {ref!r} is not a listed source id; allowed: {', '.join(allowed)}",
                field=where,
            )
    return value


def _parse_entry(fig: Any, n_batch: int, ids: set[str], where: str) -> Entry:
    if not isinstance(fig, dict):
        raise ConfigError("must be a mapping {inference_ms, retrain_speed, source}", field=where)
    _no_unknown(fig, _ENTRY_KEYS, where)
    if "source" not in fig:
        raise ConfigError("missing key 'source'", field=f"{where}.source")
    source = _check_source(fig["source"], ids, f"{where}.source")
    fits = fig.get("fits", True)
    if not isinstance(fits, bool):
        raise ConfigError(f"fits must be true or false, not {fits!r}", field=f"{where}.fits")
    if not fits:
        for key in ("inference_ms", "retrain_speed"):
            if key in fig:
                raise ConfigError(f"{key} must be absent when fits is false", field=f"{where}.{key}")
        return Entry(None, None, False, source)
    for key in ("inference_ms", "retrain_speed"):
        if key not in fig:
            raise ConfigError(f"missing key {key!r} (or fits: false)", field=f"{where}.{key}")
    times = _check_times(fig["inference_ms"], n_batch, f"{where}.inference_ms")
    speed = number_in(fig["retrain_speed"], f"{where}.retrain_speed")
    if not 0 < speed <= MAX_RETRAIN_SPEED:
        raise ConfigError(
            f"retrain_speed must be in (0, {MAX_RETRAIN_SPEED}], not {speed}",
            field=f"{where}.retrain_speed",
        )
    return Entry(times, speed, True, source)


def _check_times(value: Any, n_batch: int, where: str) -> np.ndarray:
    if not isinstance(value, list):
        raise ConfigError("inference_ms must be a list, one value per batch size", field=where)
    if len(value) != n_batch:
        raise ConfigError(
            f"inference_ms has {len(value)} values; batch_sizes has {n_batch}", field=where
        )
    times = np.array([number_in(v, where) for v in value], dtype=np.float64)
    if np.any(times <= 0):
        raise ConfigError("inference_ms values must be positive", field=where)
    if np.any(np.diff(times) < 0):
        raise ConfigError("inference_ms must be non-decreasing in batch size", field=where)
    times.setflags(write=False)
    return times


def _check_across_profiles(model: ModelProfile, where: str) -> None:
    """Per GPU: a profile with fewer compute slices is never faster, nor retrains faster."""
    from ..geometry.geometry import Geometry

    for gpu in model.gpus():
        geometry = Geometry.for_gpu(gpu)
        rows = []
        for (g, name), entry in model.entries.items():
            if g == gpu and entry.fits:
                rows.append((geometry.profile(name).compute_slices, name, entry))
        rows.sort(key=lambda r: r[0])
        for small, big in zip(rows, rows[1:]):
            (k1, n1, e1), (k2, n2, e2) = small, big
            if k1 == k2:
                continue
            assert e1.inference_ms is not None and e2.inference_ms is not None
            if np.any(e1.inference_ms < e2.inference_ms * (1 - 1e-9)):
                raise ConfigError(
                    f"{n1} ({k1} compute slices) is faster than {n2} ({k2}) at some batch size",
                    field=f"{where}.gpus.{gpu}.{n1}.inference_ms",
                )
            assert e1.retrain_speed is not None and e2.retrain_speed is not None
            if e1.retrain_speed > e2.retrain_speed:
                raise ConfigError(
                    f"{n1} ({k1} compute slices) retrains faster than {n2} ({k2})",
                    field=f"{where}.gpus.{gpu}.{n1}.retrain_speed",
                )


def _parse_csv(text: str, origin: str) -> dict[str, ModelProfile]:
    reader = csv.DictReader(text.splitlines())
    columns = tuple(c.strip() for c in (reader.fieldnames or ()))
    if not set(_CSV_COLUMNS) <= set(columns) <= set(_CSV_COLUMNS + _CSV_OPTIONAL):
        raise ConfigError(
            f"{origin}: columns must be {','.join(_CSV_COLUMNS)} (optional: "
            f"{','.join(_CSV_OPTIONAL)}), not {','.join(columns)}",
            field="columns",
        )
    meta: dict[str, dict[str, str]] = {}
    grouped: dict[str, dict[tuple[str, str], dict[int, tuple[str, str]]]] = {}
    for line, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        where = f"row {line}"
        try:
            batch = int(row["batch_size"])
        except ValueError as exc:
            raise ConfigError(f"{origin} {where}: batch_size must be an integer",
                              field=f"{where}.batch_size") from exc
        for key in _CSV_OPTIONAL:
            if row.get(key):
                meta.setdefault(row["model"], {}).setdefault(key, row[key])
        cell = grouped.setdefault(row["model"], {}).setdefault((row["gpu"], row["profile"]), {})
        if batch in cell:
            raise ConfigError(f"{origin} {where}: duplicate row", field=f"{where}.batch_size")
        cell[batch] = (row["inference_ms"], row["retrain_speed"])
    models = []
    for name, cells in grouped.items():
        sizes = sorted({b for cell in cells.values() for b in cell})
        gpus: dict[str, dict[str, Any]] = {}
        for (gpu, profile), cell in cells.items():
            where = f"model {name} {gpu} {profile}"
            if sorted(cell) != sizes:
                raise ConfigError(
                    f"{origin}: {where} lacks batch sizes {sorted(set(sizes) - set(cell))}",
                    field="batch_size",
                )
            values = [cell[b] for b in sizes]
            speeds = {v[1] for v in values}
            if len(speeds) != 1:
                raise ConfigError(f"{origin}: {where} has several retrain_speed values",
                                  field="retrain_speed")
            speed = speeds.pop()
            if all(v[0] == "" for v in values) and speed == "":
                fig: dict[str, Any] = {"fits": False, "source": _CSV_SOURCE}
            else:
                try:
                    fig = {
                        "inference_ms": [float(v[0]) for v in values],
                        "retrain_speed": float(speed),
                        "source": _CSV_SOURCE,
                    }
                except ValueError as exc:
                    raise ConfigError(f"{origin}: {where}: inference_ms and retrain_speed must be numbers "
                                      "(both empty: does not fit)", field="inference_ms") from exc
            gpus.setdefault(gpu, {})[profile] = fig
        info = meta.get(name, {})
        try:
            params_m = float(info.get("params_m", "nan"))
        except ValueError as exc:
            raise ConfigError(f"{origin}: model {name}: params_m must be a number",
                              field="params_m") from exc
        models.append({
            "name": name,
            "task": info.get("task", "user table"),
            "domain": info.get("domain", UNSPECIFIED),
            "params_m": params_m,
            "precision": info.get("precision", UNSPECIFIED),
            "batch_sizes": sizes,
            "gpus": gpus,
            "sources": [{"id": _CSV_SOURCE, "cite": f"user table {origin}"}],
        })
    if not models:
        raise ConfigError(f"{origin}: no rows", field="models")
    return _parse_table({"version": 1, "models": models}, csv_defaults=True)
