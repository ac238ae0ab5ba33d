"""Stage 6, cluster: many nodes on Ray. ``agent`` (the node agent) and ``cluster`` (the
controller that splits decisions across nodes). Only ``cluster`` imports Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("agent", "cluster")


def __getattr__(name: str) -> Any:
    # ``migrator.cluster`` was the Ray layer's module before the stage folders: its public names
    # stay reachable from here, loaded on first use so that Ray is imported only when needed.
    if name.startswith("_") or name in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    ray_layer = importlib.import_module(f"{__name__}.cluster")
    if name not in ray_layer.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(ray_layer, name)
