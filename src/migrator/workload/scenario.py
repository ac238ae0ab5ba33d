"""Scenarios: the GPUs, the tenants and the planner settings of one deployment, from YAML.

A scenario file looks like ``data/scenarios/default.yaml``::

    name: default
    slot_s: 1.0            # planning slot
    duration_s: 600        # how long a replay runs
    seed: 0
    models: my-models.yaml # optional: a measured model table instead of the built-in one
    gpus:
      - {model: A100-40GB, count: 2, layout: "3g.20gb@0,3g.20gb@4"}
      - {model: H100-80GB, devices: [2, 3]}  # optional: their NVML device indices
      - {discover: nvml}   # every MIG-capable GPU of this machine, read through NVML
    tenants:
      - name: vision
        model: resnet50
        slo_ms: 100
        arrivals: {synthetic: diurnal, mean_rps: 900}
        window_s: 200
        work_gpu_s: 40
        accuracy_before: 0.70
        accuracy_after: 0.80
    planner: {horizon: 30, setup_s: 2.0}

Loading checks every field; an error names the field (``tenants[1].slo_ms``) and, where
there is a fixed set, the allowed values. Unknown keys are errors, never ignored. Numbers
must be finite, and sizes stay within limits far beyond any deployment (``MAX_GPUS`` GPUs,
``MAX_TENANTS`` tenants, ``MAX_SLOTS`` slots, ``MAX_CELLS`` tenants x slots; the values are
in ``migrator.workload.settings``), checked before anything of that size is allocated.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from .._files import is_file
from ..errors import (
    ConfigError,
    GeometryError,
    InvalidLayout,
    MigratorError,
    UnknownGPU,
)
from ..geometry.geometry import Geometry
from . import traces
from .checks import file_path, integer_in, number_in, read_yaml, shown, text
from .settings import (
    MAX_CELLS,
    MAX_GPUS,
    MAX_SLOT_REQUESTS,
    MAX_SLOT_S,
    MAX_SLOTS,
    MAX_TENANTS,
    MIN_SLOT_S,
    PlannerConfig,
)
from .tenant import Tenant

__all__ = ["GpuSpec", "Scenario"]

_TOP_KEYS = ("name", "slot_s", "duration_s", "seed", "models", "gpus", "tenants", "planner")
_GPU_KEYS = ("model", "count", "layout", "devices")
_DISCOVER_KEYS = ("discover", "indices")
_TENANT_KEYS = tuple(f for f in Tenant.__dataclass_fields__)
_ARRIVAL_SOURCES = ("synthetic", "sample", "csv")
#: Largest seed: numpy's 32-bit seed range, which every tool that takes a seed accepts.
MAX_SEED = 2**32 - 1
_ARRIVAL_KEYS = {
    "synthetic": ("synthetic", "mean_rps", "seed"),  # plus the kind's own parameters
    "sample": ("sample", "column", "scale"),
    "csv": ("csv", "column", "scale"),
}


@dataclass(frozen=True)
class GpuSpec:
    """One GPU of the scenario: its geometry, the layout it starts from and, where the
    scenario says (``devices``, or found by ``discover: nvml``), its NVML device index."""

    geometry: Geometry
    layout: str = ""
    device: int | None = None

    @property
    def model(self) -> str:
        return self.geometry.name


@dataclass(frozen=True)
class Scenario:
    """GPUs, tenants and planner settings; see the module docstring for the YAML form."""

    name: str
    gpus: tuple[GpuSpec, ...]
    tenants: tuple[Tenant, ...]
    slot_s: float = 1.0
    duration_s: float = 600.0
    seed: int = 0
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    models_path: Path | None = None
    base_dir: Path | None = None

    def __post_init__(self) -> None:
        # Checked here rather than only in from_dict: a Scenario built in code, or changed
        # with dataclasses.replace, sizes the same arrays, and these bounds are what keep
        # them from taking minutes or gigabytes (the limits are in workload.settings).
        text(self.name, "name")
        number_in(self.slot_s, "slot_s", low=MIN_SLOT_S, high=MAX_SLOT_S)
        number_in(self.duration_s, "duration_s", low=0.0, low_open=True)
        integer_in(self.seed, "seed", low=0, high=MAX_SEED)
        _check_sizes(self)

    # -- loading --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, nvml: Any = None, files_anywhere: bool = False) -> Scenario:
        """Load and validate a scenario file (relative paths in it are relative to it).

        ``nvml`` is the nvidia-ml-py-like module used for ``discover: nvml`` entries
        (``pynvml`` by default). The files it names (``csv:`` traces, ``models:``) must lie
        in its folder or below, so that a scenario from elsewhere cannot read the machine's
        other files; ``files_anywhere=True`` allows any path, absolute ones included.
        """
        path = Path(path)
        table = read_yaml(path, "scenario")
        folder = path.resolve().parent
        if not files_anywhere:
            _files_inside(table, folder)
        return cls.from_dict(table, base_dir=folder, nvml=nvml)

    @classmethod
    def default(cls) -> Scenario:
        """The built-in scenario: tenants with different models sharing A100s, like the
        evaluation of the MIGRator paper (see the file's comments)."""
        return _default()

    @classmethod
    def from_dict(
        cls, table: Any, *, base_dir: str | Path | None = None, nvml: Any = None
    ) -> Scenario:
        """Build from the parsed YAML mapping; every field is checked."""
        _mapping(table, "scenario")
        _known_keys(table, _TOP_KEYS, "")
        base = Path(base_dir) if base_dir is not None else None
        models_path = _models_path(table.get("models"), base)
        scenario = cls(
            name=text(table.get("name", "scenario"), "name"),
            gpus=_gpus(table.get("gpus"), nvml),
            tenants=_tenants(table.get("tenants")),
            slot_s=number_in(table.get("slot_s", 1.0), "slot_s", low=MIN_SLOT_S, high=MAX_SLOT_S),
            duration_s=number_in(table.get("duration_s", 600.0), "duration_s", low=0.0, low_open=True),
            seed=integer_in(table.get("seed", 0), "seed", low=0, high=MAX_SEED),
            planner=PlannerConfig.from_dict(table.get("planner", {}) or {}),
            models_path=models_path,
            base_dir=base,
        )
        scenario._check_models()
        scenario._check_arrivals()
        return scenario

    def _check_models(self) -> None:
        tables = self.model_tables()
        gpu_models = sorted({g.model for g in self.gpus})
        for i, tenant in enumerate(self.tenants):
            where = f"tenants[{i}].model"
            if tenant.model not in tables:
                raise ConfigError(
                    f"{where}: unknown model {tenant.model!r}; models: {', '.join(sorted(tables))}",
                    field=where,
                )
            covered = set(tables[tenant.model].gpus())
            missing = [g for g in gpu_models if g not in covered]
            if missing:
                raise ConfigError(
                    f"{where}: model {tenant.model!r} has no figures for {', '.join(missing)}; "
                    f"it has figures for {', '.join(sorted(covered))} (supply a model table "
                    "with `models:` to add GPUs)",
                    field=where,
                )

    def _check_arrivals(self) -> None:
        for i, tenant in enumerate(self.tenants):
            self._tenant_counts(i, tenant, self.seed)

    # -- derived values -------------------------------------------------------------------

    @property
    def n_slots(self) -> int:
        return int(round(self.duration_s / self.slot_s))

    def geometries(self) -> list[Geometry]:
        return [g.geometry for g in self.gpus]

    def devices(self) -> tuple[int, ...]:
        """Each GPU's NVML device index: its ``device`` (the ``devices`` of its entry, or the
        index ``discover: nvml`` found), else its position in the scenario."""
        return tuple(i if g.device is None else g.device for i, g in enumerate(self.gpus))

    def model_tables(self) -> Mapping[str, Any]:
        from .models import builtin_models, load_models

        if self.models_path is None:
            return builtin_models()
        return _user_models(self.models_path, load_models)

    def arrivals(self, seed: int | None = None) -> traces.Trace:
        """Per-slot arrival counts of every tenant over ``duration_s`` (tenant order).

        ``seed`` shifts the seeds of synthetic arrivals (several seeds of one scenario).
        """
        base = self.seed if seed is None else seed
        rows = [self._tenant_counts(i, t, base) for i, t in enumerate(self.tenants)]
        names = tuple(t.name for t in self.tenants)
        return traces.Trace(names, np.vstack(rows) if rows else np.zeros((0, self.n_slots)), self.slot_s)

    def recorded_counts(self, index: int) -> np.ndarray | None:
        """Every slot of tenant ``index``'s recorded trace (``sample:`` or ``csv:``), not cut
        to ``duration_s``, shape (n_slots_of_the_trace,); None for synthetic arrivals.

        The simulator picks its scored window and the warm-up before it from the whole trace.
        """
        tenant = self.tenants[index]
        if "synthetic" in dict(tenant.arrivals):
            return None
        return self._tenant_counts(index, tenant, self.seed, whole=True)

    def _tenant_counts(self, index: int, tenant: Tenant, seed: int, whole: bool = False) -> np.ndarray:
        where = f"tenants[{index}].arrivals"
        spec = dict(tenant.arrivals)
        source = next(k for k in _ARRIVAL_SOURCES if k in spec)
        try:
            if source == "synthetic":
                counts = self._synthetic(tenant, spec, seed + index)
            else:
                counts = self._recorded(source, spec)
        except ConfigError as exc:
            # The trace functions name their own parameters (mean_rps); the file's reader
            # wants the whole path to it.
            field = f"{where}.{exc.field}".rstrip(".")
            raise ConfigError(f"{field}: {exc}", field=field) from exc
        _check_counts(counts, where)
        if counts.shape[0] < self.n_slots:
            raise ConfigError(
                f"{where}: the trace has {counts.shape[0]} slots of {self.slot_s} s, fewer than "
                f"duration_s {self.duration_s} needs ({self.n_slots})",
                field=where,
            )
        return counts if whole else counts[: self.n_slots]

    def _synthetic(self, tenant: Tenant, spec: dict[str, Any], seed: int) -> np.ndarray:
        kind = spec.pop("synthetic")
        seed = spec.pop("seed", seed)
        trace = traces.synthetic(
            kind, tenants=(tenant.name,), duration_s=self.duration_s, slot_s=self.slot_s,
            seed=seed, **spec,
        )
        return trace.counts[0].astype(np.float64)

    def _recorded(self, source: str, spec: dict[str, Any]) -> np.ndarray:
        # Fields named within the arrivals: the caller adds ``where`` to them.
        scale = number_in(spec.get("scale", 1.0), "scale", low=0.0)
        if source == "sample":
            try:
                trace = traces.sample(text(spec["sample"], "sample"))
            except ConfigError as exc:  # traces.sample names its parameter, `name`
                raise ConfigError(str(exc), field="sample") from exc
        else:
            path = Path(file_path(spec["csv"], "csv"))
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            trace = traces.load_csv(path)
        if trace.slot_s != self.slot_s:
            trace = trace.rebin(self.slot_s)
        column = spec.get("column", trace.tenants[0] if len(trace.tenants) == 1 else None)
        if column not in trace.tenants:
            raise ConfigError(
                f"column must name one of the trace's tenants: {', '.join(trace.tenants)}",
                field="column",
            )
        return trace.tenant(column).astype(np.float64) * scale

    def to_dict(self) -> dict[str, Any]:
        """The scenario as a YAML-ready mapping (discovered GPUs appear by model)."""
        return {
            "name": self.name,
            "slot_s": self.slot_s,
            "duration_s": self.duration_s,
            "seed": self.seed,
            **({"models": str(self.models_path)} if self.models_path else {}),
            "gpus": [_gpu_dict(g) for g in self.gpus],
            "tenants": [_tenant_dict(t) for t in self.tenants],
            "planner": self.planner.to_dict(),
        }

    def with_planner(self, **changes: Any) -> Scenario:
        """A copy with some planner settings changed."""
        return replace(self, planner=replace(self.planner, **changes))


def _gpu_dict(gpu: GpuSpec) -> dict[str, Any]:
    return {"model": gpu.model, "layout": gpu.layout, **({"devices": [gpu.device]} if gpu.device is not None else {})}


@functools.lru_cache(maxsize=1)
def _default() -> Scenario:
    entry = resources.files("migrator") / "data" / "scenarios" / "default.yaml"
    return Scenario.from_dict(yaml.safe_load(entry.read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=16)
def _user_models(path: Path, load: Any) -> Mapping[str, Any]:
    return load(path)


def _tenant_dict(t: Tenant) -> dict[str, Any]:
    out = {f: getattr(t, f) for f in _TENANT_KEYS}
    return {k: v for k, v in out.items() if v is not None}


# -- field checks ---------------------------------------------------------------------------


def _mapping(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}", field=where)


def _known_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{path} is not a known field; allowed: {', '.join(allowed)}", field=path)


def _check_sizes(scenario: Scenario) -> None:
    """The scenario's sizes against the limits, before anything of their size is allocated."""
    n_gpus, n_tenants = len(scenario.gpus), len(scenario.tenants)
    slots = scenario.duration_s / scenario.slot_s
    if n_gpus > MAX_GPUS:
        raise ConfigError(f"gpus: {n_gpus} GPUs, more than the limit of {MAX_GPUS}", field="gpus")
    if n_tenants > MAX_TENANTS:
        raise ConfigError(f"tenants: {n_tenants} tenants, more than the limit of {MAX_TENANTS}", field="tenants")
    # Compared as floats before rounding: the ratio of two finite numbers may be infinite.
    if not 0.5 <= slots < MAX_SLOTS + 0.5:
        raise ConfigError(
            f"duration_s {scenario.duration_s:g} is {slots:g} slots of slot_s {scenario.slot_s:g} s; "
            f"a scenario has 1 to {MAX_SLOTS} slots",
            field="duration_s",
        )
    cells = n_tenants * round(slots)
    if cells > MAX_CELLS:
        raise ConfigError(
            f"duration_s: {n_tenants} tenants x {round(slots)} slots is {cells} arrival counts, more "
            f"than the limit of {MAX_CELLS}; use a longer slot_s or a shorter duration_s",
            field="duration_s",
        )


def _check_counts(counts: np.ndarray, where: str) -> None:
    """Arrival counts the planner can weigh: finite, and at most MAX_SLOT_REQUESTS a slot
    (a scaled trace may hold anything)."""
    if counts.size and not np.all(counts <= MAX_SLOT_REQUESTS):  # also false for NaN
        raise ConfigError(
            f"{where}: up to {np.nanmax(counts):g} requests in one slot, more than the limit of "
            f"{MAX_SLOT_REQUESTS:g}",
            field=where,
        )


def _files_inside(table: Any, folder: Path) -> None:
    """Refuse a file reference (``models:``, a tenant's ``arrivals.csv``) that resolves
    outside ``folder``: absolute, climbing out with ``..``, or through a link."""
    references = []
    if isinstance(table, Mapping):
        references.append(("models", table.get("models")))
        for i, tenant in enumerate(table.get("tenants") or []):
            arrivals = tenant.get("arrivals") if isinstance(tenant, Mapping) else None
            if isinstance(arrivals, Mapping):
                references.append((f"tenants[{i}].arrivals.csv", arrivals.get("csv")))
    for where, value in references:
        if not isinstance(value, str):
            continue  # absent, or refused with its own message by the field checks
        resolved = (folder / file_path(value, where)).resolve()
        if not resolved.is_relative_to(folder):
            raise ConfigError(
                f"{where}: {value!r} is outside the scenario's folder {folder}; keep the files beside "
                "the scenario, or load it with files_anywhere=True (`migrator --files-anywhere ...`)",
                field=where,
            )


def _models_path(value: Any, base: Path | None) -> Path | None:
    if value is None:
        return None
    path = Path(file_path(value, "models"))
    if not path.is_absolute() and base is not None:
        path = base / path
    if not is_file(path):
        raise ConfigError(f"models: no model table at {shown(str(path))}", field="models")
    return path


def _gpus(value: Any, nvml: Any) -> tuple[GpuSpec, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError("gpus must be a non-empty list of {model, count, layout} or {discover: nvml}", field="gpus")
    specs: list[GpuSpec] = []
    for i, entry in enumerate(value):
        where = f"gpus[{i}]"
        _mapping(entry, where)
        if "discover" in entry:
            specs.extend(_discovered(entry, where, nvml))
        else:
            specs.extend(_listed(entry, where))
        if len(specs) > MAX_GPUS:  # after each entry: many entries must not add up unseen
            raise ConfigError(f"gpus: {len(specs)} GPUs by {where}, more than the limit of {MAX_GPUS}",
                              field="gpus")
    _check_devices(specs)
    return tuple(specs)


def _check_devices(specs: Sequence[GpuSpec]) -> None:
    """Device indices, where given, for every GPU and each once: a controller maps the
    scenario's GPUs onto devices by them."""
    given = [s.device for s in specs if s.device is not None]
    if given and len(given) != len(specs):
        raise ConfigError("gpus: give devices for every GPU entry or for none "
                          f"({len(given)} of {len(specs)} GPUs have one)", field="gpus")
    repeated = sorted(d for d, times in Counter(given).items() if times > 1)
    if repeated:
        raise ConfigError(f"gpus: device {repeated[0]} is named twice", field="gpus")


def _listed(entry: Mapping[str, Any], where: str) -> list[GpuSpec]:
    _known_keys(entry, _GPU_KEYS, where)
    if "model" not in entry:
        raise ConfigError(f"{where}.model is required (or use discover: nvml)", field=f"{where}.model")
    try:
        geometry = Geometry.for_gpu(text(entry["model"], f"{where}.model"))
    except UnknownGPU as exc:
        raise ConfigError(f"{where}.model: {exc}", field=f"{where}.model") from exc
    count = entry.get("count", max(1, len(entry["devices"])) if isinstance(entry.get("devices"), list) else 1)
    count = integer_in(count, f"{where}.count", low=1, high=MAX_GPUS)
    layout = entry.get("layout", "")
    if not isinstance(layout, str):
        raise ConfigError(f"{where}.layout must be a layout string such as \"3g.20gb@0\"", field=f"{where}.layout")
    try:
        layout = geometry.canonical(layout)
    except InvalidLayout as exc:
        raise ConfigError(f"{where}.layout: {exc}", field=f"{where}.layout") from exc
    devices = _device_indices(entry, where, count)
    return [GpuSpec(geometry, layout, device) for device in devices]


def _device_indices(entry: Mapping[str, Any], where: str, count: int) -> list[int | None]:
    if "devices" not in entry:
        return [None] * count
    devices = entry["devices"]
    ok = isinstance(devices, list) and bool(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    if not ok:
        raise ConfigError(f"{where}.devices must be a list of NVML device indices (integers >= 0), got {shown(devices)}",
                          field=f"{where}.devices")
    if len(devices) != count:
        raise ConfigError(f"{where}.devices names {len(devices)} devices but count is {count}",
                          field=f"{where}.devices")
    return list(devices)


def _discovered(entry: Mapping[str, Any], where: str, nvml: Any) -> list[GpuSpec]:
    _known_keys(entry, _DISCOVER_KEYS, where)
    if entry["discover"] != "nvml":
        raise ConfigError(f"{where}.discover must be 'nvml', got {shown(entry['discover'])}", field=f"{where}.discover")
    indices = _indices(entry.get("indices"), f"{where}.indices")
    from ..geometry._nvml_read import default_nvml

    try:
        nvml = nvml if nvml is not None else default_nvml()
        nvml.nvmlInit()
    except MigratorError as exc:
        raise ConfigError(f"{where}: cannot discover GPUs: {exc}", field=f"{where}.discover") from exc
    except Exception as exc:  # the driver's own error type: no driver, no GPU
        raise ConfigError(f"{where}: cannot discover GPUs: NVML: {exc}", field=f"{where}.discover") from exc
    try:
        if indices is None:
            indices = list(range(min(nvml.nvmlDeviceGetCount(), MAX_GPUS + 1)))
        specs = []
        for index in indices:
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                specs.append(GpuSpec(Geometry.from_nvml(handle, nvml), device=int(index)))
            except (MigratorError, GeometryError) as exc:
                raise ConfigError(f"{where}: GPU {index}: {exc}", field=f"{where}.indices") from exc
            except Exception as exc:  # the driver's own error type: no such device
                raise ConfigError(f"{where}: GPU {index}: NVML: {exc}", field=f"{where}.indices") from exc
        return specs
    finally:
        nvml.nvmlShutdown()


def _indices(value: Any, where: str) -> list[int] | None:
    """``indices`` of a ``discover: nvml`` entry, checked before NVML is asked anything."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_GPUS:
        raise ConfigError(f"{where} must be a list of 1 to {MAX_GPUS} NVML device indices, got {shown(value)}",
                          field=where)
    return [integer_in(index, where, low=0) for index in value]


def _tenants(value: Any) -> tuple[Tenant, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError("tenants must be a non-empty list", field="tenants")
    if len(value) > MAX_TENANTS:
        raise ConfigError(f"tenants: {len(value)} tenants, more than the limit of {MAX_TENANTS}", field="tenants")
    tenants = []
    seen: set[str] = set()
    for i, entry in enumerate(value):
        where = f"tenants[{i}]"
        _mapping(entry, where)
        _known_keys(entry, _TENANT_KEYS, where)
        for key in ("name", "model", "slo_ms", "arrivals"):
            if key not in entry:
                raise ConfigError(f"{where}.{key} is required", field=f"{where}.{key}")
        text(entry["name"], f"{where}.name")  # before it is hashed: a list has no hash
        if entry["name"] in seen:
            raise ConfigError(f"{where}.name {entry['name']!r} is used twice", field=f"{where}.name")
        seen.add(entry["name"])
        _arrival_spec(entry["arrivals"], f"{where}.arrivals")
        try:
            tenants.append(Tenant(**entry))
        except ConfigError as exc:
            # Tenant names its fields by tenant name; a file's reader wants the list index.
            own = f"tenants.{entry['name']}"
            field = exc.field.replace(own, where) if exc.field else where
            raise ConfigError(str(exc).replace(own, where), field=field) from exc
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}", field=where) from exc
    return tuple(tenants)


def _arrival_spec(spec: Any, where: str) -> None:
    _mapping(spec, where)
    sources = [k for k in _ARRIVAL_SOURCES if k in spec]
    if len(sources) != 1:
        raise ConfigError(
            f"{where} must name exactly one source: {', '.join(_ARRIVAL_SOURCES)}",
            field=where,
        )
    source = sources[0]
    if source == "synthetic":
        kind = spec["synthetic"]
        if not isinstance(kind, str) or kind not in traces.KINDS:
            raise ConfigError(
                f"{where}.synthetic must be one of {', '.join(traces.KINDS)}, got {shown(kind)}",
                field=f"{where}.synthetic",
            )
        _known_keys(spec, (*_ARRIVAL_KEYS["synthetic"], *traces.KINDS[kind]), where)
    else:
        _known_keys(spec, _ARRIVAL_KEYS[source], where)
