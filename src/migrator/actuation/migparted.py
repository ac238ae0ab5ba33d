"""Interoperation with NVIDIA's mig-parted (``nvidia-mig-parted``) configuration files.

A mig-parted config (schema ``v1``, NVIDIA/mig-parted ``api/spec/v1``) names MIG
configurations; each is a list of entries ``{devices: all | [indices], mig-enabled: bool,
mig-devices: {profile: count}}`` (optionally ``device-filter``: PCI device ids)::

    version: v1
    mig-configs:
      migrator-slot-0:
        - devices: [0]
          mig-enabled: true
          mig-devices: {"3g.20gb": 1, "2g.10gb": 1, "1g.5gb": 2}

mig-parted keeps **counts per profile, not placements**: it creates the instances without
a placement and lets the driver choose. So exporting a migrator plan keeps what each GPU
holds but not where, and importing a config needs placements: :func:`import_config` lets
the geometry core choose them, the valid arrangement that keeps most of the GPU's current
instances (when given), else the first in the core's enumeration order.

Entries with a ``device-filter`` apply only to GPUs whose PCI device id (``0x20B010DE``: the
device id, then NVIDIA's vendor id 0x10DE, as ``nvmlDeviceGetPciInfo`` reports it) is listed.
The ids of the GPUs migrator has tables for are in ``data/gpus/pci-device-ids.txt``
(:func:`gpu_for_device_id`, :func:`device_ids_for`).

Exported configurations name NVML device indices: each GPU's ``device`` (a scenario's
``devices`` entries, :meth:`migrator.Scenario.devices`), not its position in the plan.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, cast

import yaml

from ..errors import ConfigError, InvalidLayout
from ..geometry.catalog import known_gpus, resolve_gpu
from ..geometry.geometry import Geometry
from ..geometry.layout import Layout, LayoutLike, as_layout
from ..workload.checks import read_yaml

__all__ = [
    "DeviceTarget",
    "device_ids_for",
    "dump",
    "export_layouts",
    "export_plan",
    "format_device_id",
    "gpu_for_device_id",
    "import_config",
    "load_config",
    "parse_device_id",
]

VERSION = "v1"
_ENTRY_KEYS = ("device-filter", "devices", "mig-enabled", "mig-devices")
# mig-parted's profile keys: "3g.40gb", "1g.10gb+me", or "1c.3g.40gb" (a compute-instance profile).
_PROFILE_KEY = re.compile(r"^(?:(?P<c>\d+)c\.)?(?P<gi>(?P<g>\d+)g\.\d+gb(?:[+-][A-Za-z0-9.]+)*)$")
_HEADER = (
    "# Written by migrator. mig-parted keeps instance counts per profile, not placements:\n"
    "# `migrator mig-parted import` lets migrator's geometry core place them again.\n"
)


# -- export -------------------------------------------------------------------------------------


def _counts(layout: Layout) -> dict[str, int]:
    return dict(sorted(Counter(p.profile for p in layout).items()))


def export_layouts(layouts: Sequence[LayoutLike], devices: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """One mig-parted configuration (its list of entries) for one layout per GPU.

    ``devices`` are the GPUs' NVML device indices, what mig-parted's ``devices`` names
    (default: their positions). GPUs with the same profile counts share an entry. Device
    lists are always explicit, so the configuration never touches GPUs the layouts do not name.

    Raises
    ------
    ConfigError
        ``devices`` not one index >= 0 per layout, or two GPUs on one device.
    """
    indices = _device_indices(devices, len(layouts))
    groups: dict[tuple[tuple[str, int], ...], list[int]] = {}
    for device, layout in zip(indices, layouts):
        key = tuple(_counts(as_layout(layout)).items())
        groups.setdefault(key, []).append(device)
    return [
        {"devices": sorted(devices), "mig-enabled": True, "mig-devices": dict(key)}
        for key, devices in groups.items()
    ]


def _device_indices(devices: Sequence[int] | None, n_gpus: int) -> list[int]:
    if devices is None:
        return list(range(n_gpus))
    indices = list(devices)
    if len(indices) != n_gpus or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in indices):
        raise ConfigError(f"devices must be {n_gpus} NVML device indices (integers >= 0), one per GPU, got "
                          f"{indices[:20]!r}", field="devices")
    seen: dict[int, int] = {}
    for gpu, device in enumerate(indices):
        if device in seen:
            raise ConfigError(f"devices: GPUs {seen[device]} and {gpu} both map to NVML device {device}; each "
                              "GPU needs its own device", field="devices")
        seen[device] = gpu
    return indices


def export_plan(plan: Any, *, slots: Iterable[int] = (0,), prefix: str = "migrator",
                devices: Sequence[int] | None = None) -> dict[str, Any]:
    """A mig-parted document with one configuration ``<prefix>-slot-<t>`` per slot ``t``.

    ``plan`` is a :class:`migrator.Plan` or its JSON document (``migrator plan --json``);
    ``devices`` the NVML device index of each of its GPUs (default: their positions; for a
    scenario's plan, :meth:`migrator.Scenario.devices`).
    """
    gpus = _plan_gpus(plan)
    indices = _device_indices(devices, len(gpus))
    horizon = min((len(g["slots"]) for g in gpus), default=0)
    configs = {}
    for t in slots:
        if not 0 <= t < horizon:
            raise ConfigError(f"slot {t} is outside the plan's {horizon} slots", field="slots")
        configs[f"{prefix}-slot-{t}"] = export_layouts([g["slots"][t]["layout"] for g in gpus], indices)
    return {"version": VERSION, "mig-configs": configs}


def _plan_gpus(plan: Any) -> list[Mapping[str, Any]]:
    """The plan's ``gpus`` (each with its ``slots``, each with a ``layout`` string), checked:
    a plan document comes from a file the user names."""
    if isinstance(plan, Mapping):
        gpus = plan.get("gpus")
    elif hasattr(plan, "to_dict"):
        gpus = plan.to_dict()["gpus"]
    else:
        raise ConfigError(f"plan must be a migrator Plan or its JSON document (an object with 'gpus'), not "
                          f"{type(plan).__name__}", field="plan")
    ok = isinstance(gpus, list) and all(
        isinstance(g, Mapping) and isinstance(g.get("slots"), list)
        and all(isinstance(slot, Mapping) and isinstance(slot.get("layout"), str) for slot in g["slots"])
        for g in gpus)
    if not ok:
        raise ConfigError("plan.gpus must be a list of GPUs, each with slots [{layout: \"...\"}, ...] "
                          "(as `migrator plan --json` writes)", field="plan.gpus")
    return cast("list[Mapping[str, Any]]", gpus)


def dump(document: Mapping[str, Any]) -> str:
    """The document as mig-parted YAML, with a comment saying placements are not kept."""
    return _HEADER + yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=None)


# -- PCI device ids -----------------------------------------------------------------------------

_DEVICE_ID = re.compile(r"^0[xX][0-9A-Fa-f]{1,8}$")


def parse_device_id(value: str | int, where: str = "device id") -> int:
    """A PCI device id as mig-parted writes it (``"0x20B010DE"``) or NVML gives it (the integer).

    Raises :class:`~migrator.errors.ConfigError` naming ``where`` for anything else.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
        return value
    if isinstance(value, str) and _DEVICE_ID.match(value.strip()):
        return int(value.strip(), 16)
    raise ConfigError(f"{where} must be a PCI device id such as 0x20B010DE (device id, then vendor id 0x10DE), "
                      f"got {str(value)[:40]!r}", field=where)


def format_device_id(device_id: int) -> str:
    """``0x20B010DE``: how mig-parted's ``device-filter`` spells an id."""
    return f"0x{device_id:08X}"


@functools.lru_cache(maxsize=1)
def _pci_table() -> dict[int, str]:
    """PCI device id -> built-in table key (``data/gpus/pci-device-ids.txt``, with its sources)."""
    text = (resources.files("migrator") / "data" / "gpus" / "pci-device-ids.txt").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            table[int(fields[0], 16)] = fields[1]
    return table


def gpu_for_device_id(device_id: str | int) -> str | None:
    """The built-in table of the GPU with this PCI device id (``"A100-40GB"`` for
    ``0x20B010DE``), or None for an id migrator has no table for."""
    return _pci_table().get(parse_device_id(device_id))


def device_ids_for(gpu: str) -> tuple[int, ...]:
    """The PCI device ids of every product of a built-in GPU table (any of its names), in the
    data file's order; empty for a GPU migrator has no table for."""
    try:
        key = resolve_gpu(gpu)
    except LookupError:
        return ()
    return tuple(device_id for device_id, table in _pci_table().items() if table == key)


# -- import -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceTarget:
    """What a mig-parted configuration asks of one GPU: MIG mode, and a layout that has the
    asked instance counts (placements chosen by the geometry core)."""

    index: int
    mig_enabled: bool
    layout: str
    counts: Mapping[str, int]


def load_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read and check a mig-parted document (a file path, or the parsed mapping).

    Raises :class:`~migrator.errors.ConfigError` naming the field (``mig-configs.<name>[i].devices``).
    """
    if isinstance(source, Mapping):
        document: Any = dict(source)
    else:
        document = read_yaml(source, "mig-parted config")
    if not isinstance(document, Mapping):
        raise ConfigError("mig-parted config must be a mapping with version and mig-configs", field="")
    unknown = sorted(set(document) - {"version", "mig-configs"}, key=str)  # keys may be numbers
    if unknown:
        raise ConfigError(f"unexpected field {unknown[0]!r}; allowed: version, mig-configs", field=str(unknown[0]))
    if document.get("version") != VERSION:
        raise ConfigError(f"version must be {VERSION!r}, got {document.get('version')!r}", field="version")
    configs = document.get("mig-configs")
    if not isinstance(configs, Mapping) or not configs:
        raise ConfigError("mig-configs must be a non-empty mapping of configuration names", field="mig-configs")
    for name, entries in configs.items():
        where = f"mig-configs.{name}"
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{where} must be a non-empty list of entries", field=where)
        for i, entry in enumerate(entries):
            _check_entry(entry, f"{where}[{i}]")
    return dict(document)


def _check_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping", field=where)
    unknown = sorted(set(entry) - set(_ENTRY_KEYS), key=str)
    if unknown:
        raise ConfigError(f"{where}: unexpected field {unknown[0]!r}; allowed: {', '.join(_ENTRY_KEYS)}",
                          field=f"{where}.{unknown[0]}")
    for key in ("devices", "mig-enabled"):
        if key not in entry:
            raise ConfigError(f"{where}: missing required field {key!r}", field=f"{where}.{key}")
    devices = entry["devices"]
    ok = devices == "all" or (isinstance(devices, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices))
    if not ok:
        raise ConfigError(f"{where}.devices must be 'all' or a list of device indices, got {devices!r}",
                          field=f"{where}.devices")
    if not isinstance(entry["mig-enabled"], bool):
        raise ConfigError(f"{where}.mig-enabled must be true or false", field=f"{where}.mig-enabled")
    if "device-filter" in entry:
        _filter_ids(entry["device-filter"], f"{where}.device-filter")
    _check_mig_devices(entry, where)


def _filter_ids(value: Any, where: str) -> set[int]:
    """A ``device-filter``: one PCI device id or a list of them (mig-parted takes both)."""
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list) or not ids:
        raise ConfigError(f"{where} must be a PCI device id or a non-empty list of them (0x20B010DE)", field=where)
    return {parse_device_id(i, where) for i in ids}


def _check_mig_devices(entry: Mapping[str, Any], where: str) -> None:
    field = f"{where}.mig-devices"
    devices = entry.get("mig-devices")
    if entry["mig-enabled"] and devices is None:
        raise ConfigError(f"{field} is required when mig-enabled is true", field=field)
    if not entry["mig-enabled"] and devices:
        raise ConfigError(f"{field} must be empty when mig-enabled is false", field=field)
    if not isinstance(devices or {}, Mapping):
        raise ConfigError(f"{field} must map profile names to counts", field=field)
    for name, count in (devices or {}).items():
        if not isinstance(name, str) or not _PROFILE_KEY.match(name):
            raise ConfigError(f"{field}: {name!r} is not a MIG profile name like 3g.40gb or 1g.10gb+me",
                              field=field)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"{field}.{name}: count must be an integer >= 0, got {count!r}", field=field)


def import_config(
    document: str | Path | Mapping[str, Any],
    config: str,
    geometries: Sequence[Geometry],
    *,
    current: Sequence[LayoutLike] | None = None,
    device_ids: Sequence[str | int] | None = None,
) -> list[DeviceTarget]:
    """The target of each GPU that configuration ``config`` names.

    Parameters
    ----------
    document
        A mig-parted document (file path or parsed mapping).
    config : str
        The name under ``mig-configs``.
    geometries : sequence of Geometry
        One per GPU index of the machine (``devices: all`` means all of these).
    current : sequence of layouts, optional
        The GPUs' layouts now: among valid arrangements, the one keeping most of them wins.
    device_ids : sequence of str or int, optional
        Each GPU's PCI device id (``"0x20B010DE"``, or NVML's integer), read only by entries
        with a ``device-filter`` (which are an error without them: a model does not say
        which of its products a GPU is). A built-in geometry's id must be one of its own
        table's (:func:`device_ids_for`).

    Returns
    -------
    list of DeviceTarget
        One per GPU an entry names, by index; GPUs no entry names are left out (mig-parted
        leaves them alone too).

    Raises
    ------
    ConfigError
        Unknown configuration, an index past the GPUs, a GPU named by two entries, an
        unknown profile (naming the built-in GPUs that have it), counts no arrangement on
        the GPU can hold, or a device id of another GPU than the geometry's.
    """
    document = load_config(document)
    if current is not None and len(current) != len(geometries):
        raise ConfigError(f"current has {len(current)} layouts for {len(geometries)} GPUs; give one per GPU",
                          field="current")
    products = _products(geometries, device_ids)
    configs = document["mig-configs"]
    if config not in configs:
        raise ConfigError(f"unknown configuration {config!r}; mig-configs has: {', '.join(map(str, configs))}",
                          field="mig-configs")
    chosen: dict[int, tuple[int, Mapping[str, Any]]] = {}
    for i, entry in enumerate(configs[config]):
        where = f"mig-configs.{config}[{i}]"
        for index in _matching_devices(entry, products, where):
            if index in chosen:
                raise ConfigError(f"{where}: GPU {index} is already configured by entry {chosen[index][0]}",
                                  field=f"{where}.devices")
            chosen[index] = (i, entry)
    out = []
    for index in sorted(chosen):
        i, entry = chosen[index]
        where = f"mig-configs.{config}[{i}].mig-devices"
        keep = as_layout(current[index]) if current is not None else Layout()
        out.append(_target(index, entry, geometries[index], keep, where))
    return out


def _products(geometries: Sequence[Geometry], device_ids: Sequence[str | int] | None) -> list[int | None]:
    """Each GPU's PCI device id (None where not given), checked against its geometry."""
    if device_ids is None:
        return [None] * len(geometries)
    if len(device_ids) != len(geometries):
        raise ConfigError(f"device_ids has {len(device_ids)} ids for {len(geometries)} GPUs; give one per GPU",
                          field="device_ids")
    out: list[int | None] = []
    for index, (geometry, given) in enumerate(zip(geometries, device_ids)):
        device_id = parse_device_id(given, f"device_ids[{index}]")
        table = _pci_table().get(device_id)
        # Only a built-in geometry can contradict the id: one read from NVML for a product
        # without a table is named by the driver.
        if table is not None and geometry.name in known_gpus() and table != geometry.name:
            raise ConfigError(f"GPU {index}: device id {format_device_id(device_id)} is a {table}, but the GPU's "
                              f"geometry is {geometry.name}", field=f"device_ids[{index}]")
        out.append(device_id)
    return out


def _matching_devices(entry: Mapping[str, Any], products: Sequence[int | None], where: str) -> list[int]:
    n_gpus = len(products)
    devices = list(range(n_gpus)) if entry["devices"] == "all" else list(entry["devices"])
    outside = [d for d in devices if d >= n_gpus]
    if outside:
        raise ConfigError(f"{where}.devices: GPU {outside[0]} does not exist (GPUs 0-{n_gpus - 1})",
                          field=f"{where}.devices")
    if "device-filter" not in entry:
        return devices
    unknown = [d for d in devices if products[d] is None]
    if unknown:
        raise ConfigError(f"{where}.device-filter: this entry applies only to some PCI device ids, and GPU "
                          f"{unknown[0]}'s is not known; pass the GPUs' device ids (--device-id, or read them "
                          "with --backend nvml)", field=f"{where}.device-filter")
    wanted = _filter_ids(entry["device-filter"], f"{where}.device-filter")
    return [d for d in devices if products[d] in wanted]


def _target(index: int, entry: Mapping[str, Any], geometry: Geometry, current: Layout, where: str) -> DeviceTarget:
    if not entry["mig-enabled"]:
        return DeviceTarget(index, False, "", {})
    counts: Counter[str] = Counter()
    for name, count in (entry.get("mig-devices") or {}).items():
        counts[_profile_name(geometry, name, where)] += count
    wanted = {k: v for k, v in counts.items() if v}
    return DeviceTarget(index, True, _arrange(geometry, wanted, current, where), dict(sorted(wanted.items())))


def _profile_name(geometry: Geometry, key: str, where: str) -> str:
    match = _PROFILE_KEY.match(key)
    assert match is not None  # load_config checked the keys
    if match["c"] is not None and match["c"] != match["g"]:
        raise ConfigError(
            f"{where}.{key}: compute-instance profiles smaller than their GPU instance are not supported "
            "(migrator creates one compute instance spanning each GPU instance)", field=where)
    try:
        return geometry.profile(match["gi"]).name
    except InvalidLayout as exc:
        raise ConfigError(f"{where}.{key}: {exc}{_owners(match['gi'])}", field=where) from exc


def _owners(profile: str) -> str:
    """Which built-in GPUs have the profile: a config written for another GPU says so."""
    owners = [gpu for gpu in known_gpus() if _has_profile(Geometry.for_gpu(gpu), profile)]
    return f" ({profile} is a profile of {', '.join(owners)})" if owners else " (no built-in GPU has it)"


def _has_profile(geometry: Geometry, profile: str) -> bool:
    try:
        geometry.profile(profile)
    except InvalidLayout:
        return False
    return True


def _arrange(geometry: Geometry, wanted: Mapping[str, int], current: Layout, where: str) -> str:
    """The valid layout with these counts that keeps most of ``current``; ties go to the
    first in the geometry core's enumeration order."""
    candidates = _arrangements(geometry).get(tuple(sorted(wanted.items())), [])
    if not candidates:
        asked = ", ".join(f"{n} x {p}" for p, n in sorted(wanted.items()))
        raise ConfigError(f"{where}: no valid arrangement of {asked} on {geometry.name}", field=where)
    keep = set(current)
    best = max(candidates, key=lambda c: len(keep & c[1]))  # max keeps the first of equals
    return best[0]


@functools.lru_cache(maxsize=32)
def _arrangements(geometry: Geometry) -> dict[tuple[tuple[str, int], ...], list[tuple[str, frozenset[Any]]]]:
    """Every valid layout of the geometry, grouped by its profile counts, in enumeration order."""
    out: dict[tuple[tuple[str, int], ...], list[tuple[str, frozenset[Any]]]] = {}
    for text in geometry.layouts():
        layout = Layout.parse(text)
        out.setdefault(tuple(_counts(layout).items()), []).append((text, frozenset(layout)))
    return out
