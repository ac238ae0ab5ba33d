"""migrator: decide and apply NVIDIA MIG layouts for GPUs shared by several tenants."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    from . import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "migrator's compiled core (migrator._core) is missing: did you forget to build? "
        "Install with `pip install .` (or see the README for the editable install)."
    ) from exc

from . import _moved, errors
from .geometry.geometry import Engines, Geometry, Profile, Transition, known_gpus
from .geometry.layout import Layout, Placement
from .workload.scenario import GpuSpec, Scenario
from .workload.settings import PlannerConfig
from .workload.tenant import Tenant

# What pulls in numba or HiGHS loads on first use, so `migrator --help` stays quick
# (`import migrator` takes about 0.2-0.4 s; the planner's modules add about 0.3 s more, measured
# with `python -X importtime`). Type checkers see the same names through the imports below,
# which never run: `migrator.Planner` is the class to mypy, not `Any`.
if TYPE_CHECKING:
    from . import actuation as actuation  # the stage packages, not in __all__: exported explicitly
    from . import cluster as cluster
    from . import evaluation as evaluation
    from . import planning as planning
    from .planning import planner
    from .planning.planner import Plan, Planner
    from .workload import forecast, goodput, models, traces

_LAZY_MODULES = {
    "forecast": "workload.forecast",
    "goodput": "workload.goodput",
    "models": "workload.models",
    "planner": "planning.planner",
    "traces": "workload.traces",
    "planning": "planning",
    "evaluation": "evaluation",
    "actuation": "actuation",
    "cluster": "cluster",
}
_LAZY_NAMES = {"Planner": "planning.planner", "Plan": "planning.planner"}

_moved.install()


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{_LAZY_MODULES[name]}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
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
    "Plan",
    "Planner",
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
    "planner",
    "traces",
]
