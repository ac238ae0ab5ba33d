"""Stage 1, geometry: what a GPU model allows, as data checked by the C++ core.

``catalog`` (built-in GPU tables), ``geometry`` (profiles, placements, layout validity),
``layout`` (layouts as values) and ``_nvml_read`` (the same tables read from NVML).
Imports nothing of migrator above it; every later stage builds on it.
"""

from __future__ import annotations

# ``migrator.geometry`` was the geometry module itself before the stage folders: its names
# stay importable from here.
from .geometry import Engines, Geometry, Profile, Transition, known_gpus

__all__ = ["Engines", "Geometry", "Profile", "Transition", "known_gpus"]
