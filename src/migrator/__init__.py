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

try:
    __version__ = version("migrator")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Engines",
    "Geometry",
    "Layout",
    "Placement",
    "Profile",
    "Transition",
    "__version__",
    "errors",
    "known_gpus",
]
