"""A tenant: one continuous-learning workload sharing the GPUs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .checks import integer_in, number_in, text
from .settings import MAX_SECONDS

__all__ = ["Tenant"]

#: Largest inference batch a tenant may ask for (a C int; model tables stop far below).
MAX_BATCH = 2**31 - 1


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
    min_slo_attainment : float or None
        A floor: the share of its arrivals the planner serves within SLO whenever the GPUs
        can, before Goodput is weighed (docs/model.md, row 17). Pure Goodput starves the
        tenant that earns least per slice; None (default): no floor.
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
    min_slo_attainment: float | None = None

    def __post_init__(self) -> None:
        where = f"tenants.{self.name}" if isinstance(self.name, str) else "tenants"
        text(self.name, f"{where}.name")
        text(self.model, f"{where}.model")
        number_in(self.slo_ms, f"{where}.slo_ms", low=0.0, low_open=True)
        number_in(self.percentile, f"{where}.percentile", low=50.0, high=100.0, low_open=True, high_open=True)
        if self.window_s is not None:
            number_in(self.window_s, f"{where}.window_s", low=0.0, low_open=True, high=MAX_SECONDS)
        number_in(self.work_gpu_s, f"{where}.work_gpu_s", low=0.0, high=MAX_SECONDS)
        before = number_in(self.accuracy_before, f"{where}.accuracy_before", low=0.0, high=1.0)
        after = number_in(self.accuracy_after, f"{where}.accuracy_after", low=0.0, high=1.0)
        if after < before:
            raise ConfigError(
                f"{where}.accuracy_after ({self.accuracy_after}) must not be below "
                f"accuracy_before ({self.accuracy_before}): retraining on fresh data is what "
                "lifts the accuracy",
                field=f"{where}.accuracy_after",
            )
        if self.max_batch is not None:
            integer_in(self.max_batch, f"{where}.max_batch", low=1, high=MAX_BATCH)
        if self.min_slo_attainment is not None:
            number_in(self.min_slo_attainment, f"{where}.min_slo_attainment", low=0.0, high=1.0)

    @property
    def retrains(self) -> bool:
        return self.window_s is not None
