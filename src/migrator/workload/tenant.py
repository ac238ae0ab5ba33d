"""A tenant: one continuous-learning workload sharing the GPUs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["Tenant"]


@dataclass(frozen=True)
class Tenant:
    """One continuous-learning workload.

    Parameters
    ----------
    name : str
        Unique tenant name.
    model : str
        Key of the model's profile table (``migrator.workload.models``), e.g. ``"resnet50"``.
    slo_ms : float
        Latency objective: ``percentile`` per cent of requests within ``slo_ms``.
    percentile : float
        SLO percentile in (50, 100), default 99.
    window_s : float or None
        Every ``window_s`` seconds fresh data arrives: accuracy drops to
        ``accuracy_before`` until a retraining of ``work_gpu_s`` finishes, which lifts
        it to ``accuracy_after``. None: the tenant never retrains.
    work_gpu_s : float
        Retraining work, in seconds of a full GPU.
    accuracy_before, accuracy_after : float
        Accuracy in [0, 1] of the model version serving before / after retraining.
    max_batch : int or None
        Largest inference batch the tenant's server may form (None: the table's largest).
    arrivals : object
        Where the arrival counts come from (a scenario-level spec; see ``Scenario``).
    """

    name: str
    model: str
    slo_ms: float
    percentile: float = 99.0
    window_s: float | None = None
    work_gpu_s: float = 0.0
    accuracy_before: float = 1.0
    accuracy_after: float = 1.0
    max_batch: int | None = None
    arrivals: Any = None

    def __post_init__(self) -> None:
        where = f"tenants.{self.name}" if isinstance(self.name, str) else "tenants"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{where}.name must be a non-empty string", field=f"{where}.name")
        _positive(self.slo_ms, f"{where}.slo_ms")
        if not 50.0 < float(self.percentile) < 100.0:
            raise ConfigError(
                f"{where}.percentile must be in (50, 100), got {self.percentile!r}",
                field=f"{where}.percentile",
            )
        if self.window_s is not None:
            _positive(self.window_s, f"{where}.window_s")
        if float(self.work_gpu_s) < 0:
            raise ConfigError(f"{where}.work_gpu_s must be >= 0", field=f"{where}.work_gpu_s")
        for name in ("accuracy_before", "accuracy_after"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(
                    f"{where}.{name} must be in [0, 1], got {value!r}", field=f"{where}.{name}"
                )
        if float(self.accuracy_after) < float(self.accuracy_before):
            raise ConfigError(
                f"{where}.accuracy_after ({self.accuracy_after}) must not be below "
                f"accuracy_before ({self.accuracy_before}): retraining on fresh data is what "
                "lifts the accuracy",
                field=f"{where}.accuracy_after",
            )
        if self.max_batch is not None and (not isinstance(self.max_batch, int) or self.max_batch < 1):
            raise ConfigError(f"{where}.max_batch must be a positive integer", field=f"{where}.max_batch")

    @property
    def retrains(self) -> bool:
        return self.window_s is not None


def _positive(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{field} must be a positive number, got {value!r}", field=field)
