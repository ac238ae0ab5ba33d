"""Typed errors raised by migrator's library code.

Every error a caller can act on derives from :class:`MigratorError`, so a scheduler that
embeds migrator can catch one type. Errors that are about a bad value also derive from
``ValueError`` (or ``LookupError`` for names), as Python code expects.
"""

from __future__ import annotations

__all__ = [
    "AgentAuthError",
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


class AgentAuthError(ConfigError):
    """A call to change a node's GPUs (a Ray agent's ``apply``, ...) without the cluster's
    agent token, or on a node that was given none."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="token")


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


# -- the actuator (nvml.py, reconfig.py, journal.py) ----------------------------------------------

from typing import Any  # noqa: E402 - appended section

__all__ += [
    "ExternalChange",
    "InstanceBusy",
    "JournalError",
    "MigModeDisabled",
    "NVMLCallError",
    "ReconfigError",
    "ReconfigFailed",
    "RollbackFailed",
]


class NVMLCallError(MigratorError, RuntimeError):
    """An NVML call answered with an error.

    ``call`` is the nvidia-ml-py function (``nvmlGpuInstanceDestroy``), ``error`` the
    ``NVML_ERROR_*`` name and ``code`` its value, so a caller can tell "in use" from "no
    permission" without parsing the message.
    """

    def __init__(self, message: str, *, call: str, code: int, error: str) -> None:
        super().__init__(message)
        self.call = call
        self.code = code
        self.error = error


class ReconfigError(MigratorError, RuntimeError):
    """A reconfiguration of one GPU did not happen as planned.

    ``gpu`` is the device index, ``action`` the action that failed (``"create GPU instance
    3g.40gb@4"``) or the check that stopped it, ``nvml_error`` the ``NVML_ERROR_*`` name
    when NVML refused, else None. ``layout`` is the layout the GPU is in afterwards.
    """

    def __init__(
        self, message: str, *, gpu: int, action: str = "", nvml_error: str | None = None,
        layout: str | None = None,
    ) -> None:
        super().__init__(message)
        self.gpu = gpu
        self.action = action
        self.nvml_error = nvml_error
        self.layout = layout


class ReconfigFailed(ReconfigError):
    """An action or the final check failed and the GPU was rolled back to its last good
    layout (``layout``); nothing is left half-done."""


class RollbackFailed(ReconfigError):
    """An action failed and so did the rollback: the GPU is between two layouts. The
    journal still holds the open transaction; ``migrator recover JOURNAL`` finishes it.
    ``rollback_error`` is the second failure."""

    def __init__(self, message: str, *, rollback_error: BaseException, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.rollback_error = rollback_error


class InstanceBusy(ReconfigError):
    """An instance that would be destroyed has running processes (``pids``) and ``force``
    was not given. ``placement`` names the instance."""

    def __init__(self, message: str, *, placement: str, pids: tuple[int, ...], **fields: Any) -> None:
        super().__init__(message, **fields)
        self.placement = placement
        self.pids = pids


class ExternalChange(ReconfigError):
    """The GPU's layout is not the one the plan was made from (``expected``): someone else
    changed it (``observed``) between planning and applying. Nothing was changed."""

    def __init__(self, message: str, *, expected: str, observed: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.expected = expected
        self.observed = observed


class MigModeDisabled(ReconfigError):
    """MIG mode is off on the GPU; migrator never switches it (that needs a GPU reset)."""


class JournalError(MigratorError, ValueError):
    """A reconfiguration journal cannot be read or does not fit the GPU; ``line`` is the
    1-based line number at fault (0 when the whole file is)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


# -- the mig-manager backend (actuation/migmanager.py) --------------------------------------------

from typing import Mapping  # noqa: E402 - appended section

__all__ += [
    "KubernetesForbidden",
    "MigManagerError",
    "MigManagerFailed",
    "MigManagerTimeout",
]


class MigManagerError(MigratorError, RuntimeError):
    """The GPU Operator's mig-manager did not bring the node to the asked configuration, or
    the Kubernetes API refused a call. ``node`` is the node, ``config`` the configuration
    name set in the ``nvidia.com/mig.config`` label (empty before it was set), ``state`` the
    last ``nvidia.com/mig.config.state`` seen (None when none was)."""

    def __init__(self, message: str, *, node: str, config: str = "", state: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.config = config
        self.state = state


class MigManagerFailed(MigManagerError):
    """mig-manager wrote ``failed``: it could not apply the configuration (its pod's log says
    why). What the GPUs hold afterwards is in ``layouts`` (device index -> layout)."""

    def __init__(self, message: str, *, layouts: Mapping[int, str], **fields: Any) -> None:
        super().__init__(message, **fields)
        self.layouts = dict(layouts)


class MigManagerTimeout(MigManagerError):
    """No ``success`` or ``failed`` within ``timeout_s`` (``state`` is what was seen last:
    None when mig-manager never answered, as when it does not run on the node)."""

    def __init__(self, message: str, *, timeout_s: float, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.timeout_s = timeout_s


class KubernetesForbidden(MigManagerError):
    """The API server answered 403: the service account lacks ``verb`` on ``resource``
    (``name``, in ``namespace`` where namespaced). deploy/mig-manager-rbac.yaml grants it."""

    def __init__(self, message: str, *, verb: str, resource: str, name: str, namespace: str | None,
                 **fields: Any) -> None:
        super().__init__(message, **fields)
        self.verb = verb
        self.resource = resource
        self.name = name
        self.namespace = namespace
