"""The flat module paths of migrator 0.1 (``migrator.planner``, ``migrator.goodput``, ...).

The modules now live in stage folders (docs/architecture.md). Importing an old path still
works, with a DeprecationWarning naming the new one, so that schedulers embedding migrator
keep running while they move their imports.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any, Sequence

# Old module -> its stage; ``geometry`` and ``cluster`` are stage packages themselves and
# re-export their old module's names.
MOVED = {
    "catalog": "geometry",
    "layout": "geometry",
    "_nvml_read": "geometry",
    "tenant": "workload",
    "models": "workload",
    "traces": "workload",
    "forecast": "workload",
    "scenario": "workload",
    "settings": "workload",
    "goodput": "workload",
    "_kernels": "workload",
    "_reference": "workload",
    "planner": "planning",
    "planner_problem": "planning",
    "greedy": "planning",
    "decompose": "planning",
    "split_bound": "planning",
    "retraining": "planning",
    "_ilp_reference": "planning",
    "policy": "evaluation",
    "planning_policies": "evaluation",
    "baselines": "evaluation",
    "simulate": "evaluation",
    "comparison": "evaluation",
    "plots": "evaluation",
    "reconfig": "actuation",
    "journal": "actuation",
    "nvml": "actuation",
    "emulator": "actuation",
    "migparted": "actuation",
    "controller": "actuation",
    "agent": "cluster",
}


def new_name(old: str) -> str:
    """``"planner"`` -> ``"migrator.planning.planner"``."""
    return f"migrator.{MOVED[old]}.{old}"


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads ``migrator.<old>`` as a view of its new module.

    A view (a module forwarding attribute reads) rather than the new module itself: the import
    system stamps ``__spec__`` on whatever module a loader returns, and the real module's
    spec must keep naming its real file.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, old = fullname.partition(".")
        if package != "migrator" or old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        target = new_name(module.__name__.partition(".")[2])
        warnings.warn(
            f"{module.__name__} moved to {target}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        real = importlib.import_module(target)

        def forward(name: str) -> Any:
            return getattr(real, name)

        module.__getattr__ = forward  # type: ignore[method-assign]
        module.__all__ = list(getattr(real, "__all__", ()))  # type: ignore[attr-defined]
        module.__doc__ = real.__doc__


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
