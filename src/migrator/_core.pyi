"""Type stubs of migrator's private C++ core (kept equal to dir(_core) by a test)."""

from enum import Enum

import numpy as np
import numpy.typing as npt

class Placement:
    def __init__(self, start: int, size: int) -> None: ...
    @property
    def start(self) -> int: ...
    @property
    def size(self) -> int: ...

class Profile:
    def __init__(
        self,
        name: str,
        compute_slices: int,
        memory_slices: int,
        memory_mib: int,
        max_count: int,
        placements: list[tuple[int, int]],
        engines: tuple[int, int, int, int],
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def compute_slices(self) -> int: ...
    @property
    def memory_slices(self) -> int: ...
    @property
    def memory_mib(self) -> int: ...
    @property
    def max_count(self) -> int: ...
    @property
    def engines(self) -> list[int]: ...

class Rule(Enum):
    ok = 0
    duplicate = 1
    memory_overlap = 2
    max_count = 3
    compute_total = 4
    engines = 5

class Violation:
    @property
    def rule(self) -> Rule: ...
    @property
    def first(self) -> int: ...
    @property
    def second(self) -> int: ...
    @property
    def value(self) -> int: ...
    @property
    def limit(self) -> int: ...

class Transition:
    @property
    def kept(self) -> list[int]: ...
    @property
    def destroyed(self) -> list[int]: ...
    @property
    def created_before_destroy(self) -> list[int]: ...
    @property
    def created_after_destroy(self) -> list[int]: ...
    @property
    def make_before_break(self) -> bool: ...

class Geometry:
    def __init__(
        self,
        name: str,
        memory_slices: int,
        compute_slices: int,
        profiles: list[Profile],
        engine_totals: tuple[int, int, int, int],
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def memory_slices(self) -> int: ...
    @property
    def compute_slices(self) -> int: ...
    @property
    def engine_totals(self) -> list[int]: ...
    @property
    def profiles(self) -> list[Profile]: ...
    def slots(self) -> list[tuple[int, int, int]]: ...
    def slot_index(self, profile: int, start: int) -> int: ...
    def check(self, layout: list[int]) -> Violation: ...
    def is_valid(self, layout: list[int]) -> bool: ...
    def addable(self, layout: list[int]) -> list[int]: ...
    def enumerate(self, maximal: bool = False) -> list[list[int]]: ...
    def layouts(self, maximal: bool = False) -> list[str]: ...
    def transition(self, from_layout: list[int], to_layout: list[int]) -> Transition: ...
    def format(self, layout: list[int]) -> str: ...


class GpuInput:
    def __init__(
        self,
        memory_mask: npt.ArrayLike,
        compute: npt.ArrayLike,
        profile: npt.ArrayLike,
        engines: npt.ArrayLike,
        max_count: npt.ArrayLike,
        compute_slices: int,
        engine_totals: npt.ArrayLike,
        capacity: npt.ArrayLike,
        speed: npt.ArrayLike,
        current: npt.ArrayLike,
    ) -> None: ...

class ModelArrays:
    @property
    def col_cost(self) -> npt.NDArray[np.float64]: ...
    @property
    def col_lower(self) -> npt.NDArray[np.float64]: ...
    @property
    def col_upper(self) -> npt.NDArray[np.float64]: ...
    @property
    def integrality(self) -> npt.NDArray[np.int32]: ...
    @property
    def a_start(self) -> npt.NDArray[np.int32]: ...
    @property
    def a_index(self) -> npt.NDArray[np.int32]: ...
    @property
    def a_value(self) -> npt.NDArray[np.float64]: ...
    @property
    def row_lower(self) -> npt.NDArray[np.float64]: ...
    @property
    def row_upper(self) -> npt.NDArray[np.float64]: ...
    @property
    def z_column(self) -> npt.NDArray[np.int32]: ...
    @property
    def z_offset(self) -> npt.NDArray[np.int32]: ...
    @property
    def retrains(self) -> npt.NDArray[np.int32]: ...
    @property
    def period_bounds(self) -> npt.NDArray[np.float64]: ...
    @property
    def twin_pairs(self) -> npt.NDArray[np.int32]: ...
    @property
    def n_integers(self) -> int: ...

def build_plan_model(
    n_tenants: int,
    slot_s: float,
    periods: npt.ArrayLike,
    setup_s: float,
    penalty: float,
    arrivals: npt.ArrayLike,
    acc_before: npt.ArrayLike,
    acc_after: npt.ArrayLike,
    work_left: npt.ArrayLike,
    work_full: npt.ArrayLike,
    done0: npt.ArrayLike,
    window: npt.ArrayLike,
    offset: npt.ArrayLike,
    terminal_gain: npt.ArrayLike,
    gpus: list[GpuInput],
    strengthen: bool = True,
    break_symmetry: bool = True,
    retrain_instances: int = 0,
    floor: npt.ArrayLike = ...,
    floor_weight: float = 0.0,
    served_elsewhere: npt.ArrayLike = ...,
) -> ModelArrays: ...

def maximal_layouts(gpu: GpuInput) -> list[list[int]]: ...
def best_pattern(
    gpu: GpuInput,
    n_tenants: int,
    accuracy: npt.ArrayLike,
    arrivals: npt.ArrayLike,
    slot_s: float,
    penalty: float = 0.0,
) -> tuple[float, npt.NDArray[np.int32]]: ...
def best_timeline(
    layouts: list[list[int]],
    periods: int,
    placements: int,
    tasks: int,
    value: npt.ArrayLike,
    current: npt.ArrayLike,
    penalty: float,
) -> tuple[float, npt.NDArray[np.int32]]: ...
