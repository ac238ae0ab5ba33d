"""Typed errors raised by migrator's library code.

Every error a caller can act on derives from :class:`MigratorError`, so a scheduler that
embeds migrator can catch one type. Errors that are about a bad value also derive from
``ValueError`` (or ``LookupError`` for names), as Python code expects.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GeometryError",
    "InvalidLayout",
    "LayoutSyntaxError",
    "MigratorError",
    "NVMLUnavailable",
    "UnknownGPU",
]


class MigratorError(Exception):
    """Base class of every error migrator raises on purpose."""


class GeometryError(MigratorError, ValueError):
    """A geometry table (built-in, user-supplied or read from NVML) is inconsistent."""


class ConfigError(MigratorError, ValueError):
    """A scenario, model table or trace is invalid; the message names the field and,
    where there is a fixed set, the allowed values. ``field`` is the dotted path."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class UnknownGPU(MigratorError, LookupError):
    """No built-in geometry matches a GPU name."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(
            f"unknown GPU {name!r}; known GPUs: {', '.join(known)}. "
            "A GPU missing from this list still works when read from the device: "
            "Geometry.from_nvml(handle) or `migrator geometry --nvml INDEX`."
        )

    def __str__(self) -> str:  # LookupError would quote the whole message
        return str(self.args[0])


class InvalidLayout(MigratorError, ValueError):
    """A layout that the GPU would not accept; ``rule`` names the first rule it breaks.

    Rules: ``syntax``, ``unknown_profile``, ``placement``, ``duplicate``,
    ``memory_overlap``, ``max_count``, ``compute_total``, ``engines``.
    """

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


class LayoutSyntaxError(InvalidLayout):
    """Layout text that cannot be parsed; ``token`` is the offending piece."""

    def __init__(self, message: str, token: str) -> None:
        super().__init__(message, rule="syntax")
        self.token = token


class NVMLUnavailable(MigratorError, RuntimeError):
    """NVML (nvidia-ml-py or the driver) cannot be used, or answered with an error."""
