"""What a GPU model allows: MIG profiles, placements, and which layouts are valid.

The Python face of the C++ geometry core (``migrator._core.Geometry``). A geometry comes
from a built-in table (:meth:`Geometry.for_gpu`), a user's table (:meth:`Geometry.from_yaml`,
:meth:`Geometry.from_dict`) or the device itself (:meth:`Geometry.from_nvml`); all three
give the same object, and the C++ side never hard-codes a GPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .. import _core
from ..errors import GeometryError, InvalidLayout
from . import catalog
from ._nvml_read import read_nvml_table
from .layout import Layout, LayoutLike, Placement, as_layout

__all__ = ["Engines", "Geometry", "Profile", "Transition", "known_gpus"]

known_gpus = catalog.known_gpus


@dataclass(frozen=True)
class Engines:
    """Media engines of a GPU instance (or of the whole GPU), as NVML counts them."""

    decoders: int = 0
    encoders: int = 0
    jpegs: int = 0
    ofas: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.decoders, self.encoders, self.jpegs, self.ofas)

    @classmethod
    def most(cls, many: Iterable[Engines]) -> Engines:
        """Element-wise maximum: the full-GPU profile holds every engine of the GPU."""
        rows = [e.as_tuple() for e in many] or [(0, 0, 0, 0)]
        return cls(*(max(column) for column in zip(*rows)))


@dataclass(frozen=True)
class Profile:
    """A GPU-instance profile of one GPU model (``1g.10gb`` means different shapes on
    different GPUs, so a profile only makes sense inside its :class:`Geometry`).

    ``placements`` are ``(start, size)`` pairs in memory slices, as NVML reports them.
    """

    name: str
    compute_slices: int
    memory_slices: int
    memory_mib: int
    max_count: int
    placements: tuple[tuple[int, int], ...]
    engines: Engines = field(default_factory=Engines)
    id: int | None = None
    aliases: tuple[str, ...] = ()

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(start for start, _ in self.placements)

    def shape(self) -> tuple[Any, ...]:
        """What NVML would tell apart (names of aliases and ids excluded)."""
        return (
            self.name,
            self.compute_slices,
            self.memory_slices,
            self.memory_mib,
            self.max_count,
            tuple(sorted(self.placements)),
            self.engines,
        )


@dataclass(frozen=True)
class Transition:
    """The change from one layout to another on the same GPU.

    ``created_before_destroy`` fit on slices free before anything is destroyed;
    ``created_after_destroy`` need the slices of destroyed instances. When the latter is
    empty the change can be made before anything is broken (make-before-break).
    """

    kept: tuple[Placement, ...]
    destroyed: tuple[Placement, ...]
    created_before_destroy: tuple[Placement, ...]
    created_after_destroy: tuple[Placement, ...]

    @property
    def created(self) -> tuple[Placement, ...]:
        return tuple(
            sorted(
                self.created_before_destroy + self.created_after_destroy,
                key=Placement.sort_key,
            )
        )

    @property
    def make_before_break(self) -> bool:
        return not self.created_after_destroy


def _profile_key(name: str) -> str:
    text = name.strip().lower()
    if text.startswith("mig "):
        text = text[4:].lstrip()
    return text


class Geometry:
    """The MIG geometry of one GPU model.

    Parameters
    ----------
    name : str
        Key of the GPU model, e.g. ``"H100-80GB"``.
    memory_slices, compute_slices : int
        Slices of the whole GPU (8 and 7 on A100/H100/H200).
    profiles : iterable of Profile
        Every GPU-instance profile of this GPU.
    engines : Engines, optional
        Media engines of the whole GPU; by default the element-wise maximum over the
        profiles (the full-GPU profile holds them all).
    """

    def __init__(
        self,
        name: str,
        memory_slices: int,
        compute_slices: int,
        profiles: Iterable[Profile],
        engines: Engines | None = None,
        *,
        memory_mib: int | None = None,
        description: str = "",
        device_names: Iterable[str] = (),
        aliases: Iterable[str] = (),
        source: str = "",
    ) -> None:
        self.name = name
        self.memory_slices = memory_slices
        self.compute_slices = compute_slices
        self.profiles: tuple[Profile, ...] = tuple(profiles)
        self.engines = engines if engines is not None else Engines.most(p.engines for p in self.profiles)
        self.memory_mib = memory_mib
        self.description = description
        self.device_names = tuple(device_names)
        self.aliases = tuple(aliases)
        self.source = source
        try:
            self._core = _core.Geometry(
                name=name,
                memory_slices=memory_slices,
                compute_slices=compute_slices,
                profiles=[_to_core(p) for p in self.profiles],
                engine_totals=self.engines.as_tuple(),
            )
        except (ValueError, TypeError) as exc:
            raise GeometryError(f"geometry {name}: {exc}") from exc
        self._by_name = self._name_index()
        self._slots = {
            (self.profiles[p].name, start): i for i, (p, start, _) in enumerate(self._core.slots())
        }

    def _name_index(self) -> dict[str, int]:
        index: dict[str, int] = {}
        for i, profile in enumerate(self.profiles):
            for alias in (profile.name, *profile.aliases):
                key = _profile_key(alias)
                if index.get(key, i) != i:
                    raise GeometryError(f"geometry {self.name}: profile name {alias!r} is ambiguous")
                index[key] = i
        return index

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def for_gpu(cls, name: str) -> Geometry:
        """The built-in geometry of a GPU, by short key (``"A100-40GB"``), alias or NVML
        device name (``"NVIDIA A100-SXM4-40GB"``).

        Raises
        ------
        migrator.errors.UnknownGPU
            Listing the known GPUs.
        """
        return _builtin(catalog.resolve_gpu(name))

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], *, origin: str = "table") -> Geometry:
        """Build from a table in the built-in YAML schema (see ``data/gpus/*.yaml``).

        Unknown keys and wrong types raise :class:`GeometryError` naming the field.
        """
        return _from_table(cls, table, origin)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Geometry:
        """Load a user-supplied table in the built-in YAML schema."""
        path = Path(path)
        try:
            table = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, ValueError) as exc:  # ValueError: not UTF-8, a 4300-digit integer
            raise GeometryError(f"cannot read geometry table {path}: {exc}") from exc
        except RecursionError:  # PyYAML's composer recurses per nesting level
            raise GeometryError(f"cannot read geometry table {path}: nested too deeply") from None
        return cls.from_dict(table, origin=str(path))

    @classmethod
    def from_nvml(cls, handle: Any, nvml: Any = None) -> Geometry:
        """Read the geometry of a device from NVML (read-only queries only).

        Parameters
        ----------
        handle
            An NVML device handle (``pynvml.nvmlDeviceGetHandleByIndex(i)``).
        nvml : module, optional
            The object with nvidia-ml-py's call surface; ``pynvml`` by default (install
            ``migrator[nvml]``), or the project's emulator in tests.

        Uses ``nvmlDeviceGetGpuInstanceProfileInfo`` for every profile index the library
        knows and ``nvmlDeviceGetGpuInstancePossiblePlacements``; profiles the device does
        not support are skipped. When the device name matches a built-in table, the
        result carries that table's key as its name.
        """
        table = read_nvml_table(handle, nvml)
        try:
            key = catalog.resolve_gpu(table["name"])
        except LookupError:
            key = None
        if key is not None:
            builtin = _builtin(key)
            table.update(name=key, aliases=list(builtin.aliases), description=builtin.description)
        return cls.from_dict(table, origin=f"NVML device {table['device_names'][0]!r}")

    # -- layouts --------------------------------------------------------------------------

    def profile(self, name: str) -> Profile:
        """A profile by its name, NVML name (``"MIG 3g.40gb"``) or known variant."""
        index = self._by_name.get(_profile_key(name))
        if index is None:
            raise InvalidLayout(
                f"unknown profile {name!r} on {self.name}; profiles: "
                f"{', '.join(p.name for p in self.profiles)}",
                rule="unknown_profile",
            )
        return self.profiles[index]

    def normalize(self, layout: LayoutLike) -> Layout:
        """The layout with canonical profile names, in canonical order.

        Checks only that every placement exists on this GPU, not that they fit together.
        """
        layout = as_layout(layout)
        profiles = [self.profile(p.profile) for p in layout]  # unknown names first
        placements = []
        for placement, profile in zip(layout, profiles):
            if placement.start not in profile.starts:
                raise InvalidLayout(
                    f"{placement}: {profile.name} cannot start at memory slice "
                    f"{placement.start} on {self.name}; allowed starts: "
                    f"{', '.join(map(str, profile.starts))}",
                    rule="placement",
                )
            placements.append(Placement(profile.name, placement.start))
        return Layout.of(placements)

    def _slot_list(self, layout: Layout) -> list[int]:
        return [self._slots[(p.profile, p.start)] for p in layout]

    def _placement(self, slot: int) -> Placement:
        profile, start, _ = self._core.slots()[slot]
        return Placement(self.profiles[profile].name, start)

    def validate(self, layout: LayoutLike) -> Layout:
        """Return the canonical layout, or raise explaining the first rule it breaks.

        Rules, in the order checked: syntax, unknown profile, allowed placement,
        duplicate instance, memory slices used twice, profile maximum count, compute
        slices of the GPU, media engines of the GPU.

        Raises
        ------
        migrator.errors.InvalidLayout
            With ``rule`` set to the rule's name.
        """
        canonical = self.normalize(layout)
        placements = canonical.placements
        violation = self._core.check(self._slot_list(canonical))
        if violation.rule != _core.Rule.ok:
            raise InvalidLayout(self._explain(violation, placements), rule=violation.rule.name)
        return canonical

    def _explain(self, v: Any, placements: tuple[Placement, ...]) -> str:
        rule = v.rule
        if rule == _core.Rule.duplicate:
            return f"{placements[v.first]} appears twice"
        if rule == _core.Rule.memory_overlap:
            a, b = placements[v.first], placements[v.second]
            return (
                f"{a} (memory slices {self._span(a)}) and {b} (memory slices "
                f"{self._span(b)}) use the same memory slices"
            )
        if rule == _core.Rule.max_count:
            profile = self.profiles[v.first]
            return (
                f"{v.value} instances of {profile.name}, but {self.name} allows at most "
                f"{v.limit}"
            )
        if rule == _core.Rule.compute_total:
            return f"{v.value} compute slices in use, but {self.name} has {v.limit}"
        engine = ("decoders", "encoders", "jpegs", "ofas")[v.first]
        return (
            f"{v.value} media {engine} in use, but {self.name} has {v.limit} "
            "(media-extension profiles such as +me take them)"
        )

    def _span(self, placement: Placement) -> str:
        size = self.profile(placement.profile).memory_slices
        last = placement.start + size - 1
        return str(placement.start) if size == 1 else f"{placement.start}-{last}"

    def is_valid(self, layout: LayoutLike) -> bool:
        """Whether NVML would accept every instance of the layout at once."""
        try:
            self.validate(layout)
        except InvalidLayout:
            return False
        return True

    def canonical(self, layout: LayoutLike) -> str:
        """The canonical text of a valid layout."""
        return str(self.validate(layout))

    def layouts(self, maximal: bool = False) -> list[str]:
        """Every valid layout in canonical text (the empty layout ``""`` included), or with
        ``maximal=True`` only those to which no instance can be added."""
        return self._core.layouts(maximal=bool(maximal))

    def placements(self) -> list[Placement]:
        """Every possible instance position on this GPU, in canonical order."""
        return [self._placement(i) for i in range(len(self._slots))]

    def addable(self, layout: LayoutLike) -> list[Placement]:
        """Placements that can be added to a valid layout, in canonical order."""
        slots = self._slot_list(self.validate(layout))
        return [self._placement(s) for s in self._core.addable(slots)]

    def transition(self, current: LayoutLike, target: LayoutLike) -> Transition:
        """Instances kept, destroyed and created from one valid layout to another, and
        which created ones fit before anything is destroyed."""
        a = self._slot_list(self.validate(current))
        b = self._slot_list(self.validate(target))
        t = self._core.transition(a, b)

        def placements(slots: list[int]) -> tuple[Placement, ...]:
            return tuple(self._placement(s) for s in slots)

        return Transition(
            kept=placements(t.kept),
            destroyed=placements(t.destroyed),
            created_before_destroy=placements(t.created_before_destroy),
            created_after_destroy=placements(t.created_after_destroy),
        )

    # -- value semantics ------------------------------------------------------------------

    def signature(self) -> tuple[Any, ...]:
        """What makes two geometries the same GPU as far as MIG goes (names excluded)."""
        return (
            self.memory_slices,
            self.compute_slices,
            self.engines,
            tuple(sorted(p.shape() for p in self.profiles)),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Geometry):
            return NotImplemented
        return self.signature() == other.signature()

    def __hash__(self) -> int:
        return hash(self.signature())

    def __repr__(self) -> str:
        return (
            f"Geometry({self.name!r}, memory_slices={self.memory_slices}, "
            f"compute_slices={self.compute_slices}, profiles=[{', '.join(p.name for p in self.profiles)}])"
        )

    def to_dict(self) -> dict[str, Any]:
        """The table in the built-in YAML schema (round-trips through :meth:`from_dict`)."""
        return {
            "name": self.name,
            "description": self.description,
            "device_names": list(self.device_names),
            "aliases": list(self.aliases),
            "memory_slices": self.memory_slices,
            "compute_slices": self.compute_slices,
            "memory_mib": self.memory_mib,
            "engines": _engines_dict(self.engines),
            "source": self.source,
            "profiles": [_profile_dict(p) for p in self.profiles],
        }


def _engines_dict(engines: Engines) -> dict[str, int]:
    return dict(zip(("decoders", "encoders", "jpegs", "ofas"), engines.as_tuple()))


def _profile_dict(p: Profile) -> dict[str, Any]:
    return {
        "name": p.name,
        "id": p.id,
        "aliases": list(p.aliases),
        "compute_slices": p.compute_slices,
        "memory_slices": p.memory_slices,
        "memory_mib": p.memory_mib,
        "max_count": p.max_count,
        "placements": [list(pl) for pl in p.placements],
        "engines": _engines_dict(p.engines),
    }


def _to_core(p: Profile) -> Any:
    return _core.Profile(
        name=p.name,
        compute_slices=p.compute_slices,
        memory_slices=p.memory_slices,
        memory_mib=p.memory_mib,
        max_count=p.max_count,
        placements=list(p.placements),
        engines=p.engines.as_tuple(),
    )


@functools.lru_cache(maxsize=None)
def _builtin(key: str) -> Geometry:
    return Geometry.from_dict(catalog.load_table(key), origin=f"built-in table {key}")


# -- table schema ---------------------------------------------------------------------------

_GPU_FIELDS = {
    "name": (str, True),
    "description": (str, False),
    "device_names": (list, False),
    "aliases": (list, False),
    "memory_slices": (int, True),
    "compute_slices": (int, True),
    "memory_mib": ((int, type(None)), False),
    "engines": (dict, False),
    "source": (str, False),
    "profiles": (list, True),
}
_PROFILE_FIELDS = {
    "name": (str, True),
    "id": ((int, type(None)), False),
    "aliases": (list, False),
    "compute_slices": (int, True),
    "memory_slices": (int, True),
    "memory_mib": (int, True),
    "max_count": (int, True),
    "placements": (list, True),
    "engines": (dict, False),
    "source": (str, False),
}
_ENGINE_FIELDS = {name: (int, False) for name in ("decoders", "encoders", "jpegs", "ofas")}


def _check_fields(table: Any, schema: Mapping[str, tuple[Any, bool]], where: str) -> None:
    if not isinstance(table, Mapping):
        raise GeometryError(f"{where}: expected a mapping, got {type(table).__name__}")
    unknown = sorted(set(table) - set(schema), key=str)  # keys may be numbers too
    if unknown:
        raise GeometryError(
            f"{where}: unknown field {unknown[0]!r}; allowed fields: {', '.join(schema)}"
        )
    for key, (kind, required) in schema.items():
        if key not in table:
            if required:
                raise GeometryError(f"{where}: missing required field {key!r}")
            continue
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(
                "null" if k is type(None) else k.__name__ for k in kind
            )
            raise GeometryError(f"{where}: field {key!r} must be {names}, got {value!r}")


def _strings(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = table.get(key, ())
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise GeometryError(f"{where}: field {key!r} must be a list of non-empty strings, got {values!r}")
    return tuple(values)


def _engines_from(table: Any, where: str) -> Engines:
    _check_fields(table, _ENGINE_FIELDS, f"{where}.engines")
    return Engines(**table)


def _placements_from(value: list[Any], where: str) -> tuple[tuple[int, int], ...]:
    out = []
    for item in value:
        ok = (
            isinstance(item, (list, tuple))
            and len(item) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in item)
        )
        if not ok:
            raise GeometryError(f"{where}.placements: each entry must be [start, size], got {item!r}")
        out.append((item[0], item[1]))
    return tuple(out)


def _profile_from(table: Any, where: str) -> Profile:
    _check_fields(table, _PROFILE_FIELDS, where)
    where = f"{where} ({table['name']})"
    return Profile(
        name=table["name"],
        compute_slices=table["compute_slices"],
        memory_slices=table["memory_slices"],
        memory_mib=table["memory_mib"],
        max_count=table["max_count"],
        placements=_placements_from(table["placements"], where),
        engines=_engines_from(table.get("engines", {}), where),
        id=table.get("id"),
        aliases=_strings(table, "aliases", where),
    )


def _from_table(cls: type[Geometry], table: Mapping[str, Any], origin: str) -> Geometry:
    _check_fields(table, _GPU_FIELDS, origin)
    profiles = [
        _profile_from(row, f"{origin}: profiles[{i}]") for i, row in enumerate(table["profiles"])
    ]
    engines = table.get("engines")
    if table.get("memory_mib") is not None and table["memory_mib"] <= 0:
        raise GeometryError(f"{origin}: field 'memory_mib' must be positive, got {table['memory_mib']!r}")
    return cls(
        name=table["name"],
        memory_slices=table["memory_slices"],
        compute_slices=table["compute_slices"],
        profiles=profiles,
        engines=None if engines is None else _engines_from(engines, origin),
        memory_mib=table.get("memory_mib"),
        description=table.get("description", ""),
        device_names=_strings(table, "device_names", origin),
        aliases=_strings(table, "aliases", origin),
        source=table.get("source", ""),
    )
