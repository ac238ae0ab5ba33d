"""migrator: decide and apply NVIDIA MIG layouts for GPUs shared by several tenants."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    from . import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "migrator's compiled core (migrator._core) is missing: did you forget to build? "
        "Install with `pip install .` (or see the README for the editable install)."
    ) from exc

from . import errors
from .geometry import Engines, Geometry, Profile, Transition, known_gpus
from .layout import Layout, Placement
from .scenario import GpuSpec, Scenario
from .settings import PlannerConfig
from .tenant import Tenant

# Submodules that pull in numba load on first use, so `migrator --help` stays quick.
_LAZY_MODULES = ("forecast", "goodput", "models", "traces")


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


try:
    __version__ = version("migrator")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Engines",
    "Geometry",
    "GpuSpec",
    "Layout",
    "Placement",
    "PlannerConfig",
    "Profile",
    "Scenario",
    "Tenant",
    "Transition",
    "__version__",
    "errors",
    "forecast",
    "goodput",
    "known_gpus",
    "models",
    "traces",
]
