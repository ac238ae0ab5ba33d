"""Shared by the command modules: output, scenario loading, the backend option."""

from __future__ import annotations

import json
import math
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..errors import MigratorError, UnknownGPU
from ..geometry.geometry import Geometry
from ..workload.settings import MAX_GPUS, MAX_HORIZON, MAX_TIME_LIMIT_S, MAX_WORKERS

_DEFAULT_GPU = "A100-40GB"


class FiniteFloat(click.FloatRange):
    """click's FloatRange that also refuses nan and inf. The range check compares, and NaN
    passes every comparison: ``--time-limit nan`` would reach the solver."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


#: Option types shared by the commands, bounded as the planner settings are.
SECONDS = FiniteFloat(min=0, min_open=True)
TIME_LIMIT = FiniteFloat(min=0, min_open=True, max=MAX_TIME_LIMIT_S)
HORIZON = click.IntRange(min=1, max=MAX_HORIZON)
#: A plan's slot index (below the largest horizon).
SLOT = click.IntRange(min=0, max=MAX_HORIZON - 1)
#: GPUs or nodes of a command (a scenario's limit).
GPU_COUNT = click.IntRange(min=1, max=MAX_GPUS)
#: CPUs lent to planning (as many as the planner's workers may be).
CPUS = click.IntRange(min=1, max=MAX_WORKERS)
#: Replays per policy: each is a whole simulation, so a thousand is already hours.
SEEDS = click.IntRange(min=1, max=1000)


def new_console() -> Console:
    # Wide enough for the profile table when piped; a terminal's own width wins.
    return Console(width=None if Console().is_terminal else 120, highlight=False)


def echo_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


def geometry_for(gpu: str | None, nvml_index: int | None) -> Geometry:
    if nvml_index is not None:
        return _geometry_from_nvml(nvml_index)
    try:
        return Geometry.for_gpu(gpu or _DEFAULT_GPU)
    except UnknownGPU as exc:
        raise click.BadParameter(str(exc), param_hint="GPU") from exc


def _geometry_from_nvml(index: int) -> Geometry:
    from ..geometry._nvml_read import default_nvml

    try:
        nvml = default_nvml()
        nvml.nvmlInit()
    except MigratorError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # the driver's own error (no GPU, no driver)
        raise click.ClickException(f"NVML could not start: {exc}") from exc
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        return Geometry.from_nvml(handle, nvml)
    except MigratorError as exc:
        raise click.ClickException(str(exc)) from exc
    except nvml.NVMLError as exc:
        raise click.ClickException(f"NVML device {index}: {exc}") from exc
    finally:
        nvml.nvmlShutdown()


def profile_table(g: Geometry) -> Table:
    table = Table(title=f"{g.name}: {g.memory_slices} memory slices, {g.compute_slices} compute slices")
    for column in ("profile", "id", "compute", "memory slices", "memory MiB", "max", "starts", "dec/enc/jpg/ofa"):
        table.add_column(column, justify="left" if column in ("profile", "starts") else "right")
    for p in sorted(g.profiles, key=lambda p: (p.compute_slices, p.memory_slices, p.name)):
        table.add_row(
            p.name,
            "" if p.id is None else str(p.id),
            str(p.compute_slices),
            str(p.memory_slices),
            str(p.memory_mib),
            str(p.max_count),
            ",".join(map(str, p.starts)),
            "/".join(map(str, p.engines.as_tuple())),
        )
    return table


def load_scenario(path: str | None) -> Any:
    from ..workload.scenario import Scenario

    context = click.get_current_context(silent=True)
    anywhere = bool(context is not None and context.find_root().params.get("files_anywhere"))
    try:
        return Scenario.default() if path is None else Scenario.load(path, files_anywhere=anywhere)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="SCENARIO") from exc


def planner_settings(s: Any, horizon: int | None, time_limit_s: float | None) -> Any:
    """The scenario's planner settings with the command line's overrides."""
    from dataclasses import replace

    changes = {k: v for k, v in (("horizon", horizon), ("time_limit_s", time_limit_s)) if v is not None}
    return replace(s.planner, **changes)


BACKENDS = ("emulator", "nvml")
#: `migrator run` also applies plans through the GPU Operator's mig-manager.
RUN_BACKENDS = (*BACKENDS, "mig-manager")
_BACKEND_HELP = ("emulator: in-memory GPUs built from the scenario; nvml: this machine's GPUs "
                 "(needs migrator[nvml] and a driver).")
_MIG_MANAGER_ELSEWHERE = (
    "the mig-manager backend only applies plans (`migrator run --backend mig-manager`); here use --backend nvml, "
    "which reads the same GPUs (mig-manager keeps its own crash state: it re-applies the configuration the "
    "node's nvidia.com/mig.config label names, so a journal has nothing for `migrator recover` to finish)")


class BackendChoice(click.Choice):  # type: ignore[type-arg]  # generic only from click 8.2; we take 8.1
    """click's Choice that says why a backend another command takes is not taken here."""

    def __init__(self, choices: Any, refused: Any) -> None:
        super().__init__(choices)
        self.refused = dict(refused)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in self.refused:
            self.fail(f"{value!r}: {self.refused[value]}", param, ctx)
        return super().convert(value, param, ctx)


def _emulator_state_option(f: Any) -> Any:
    return click.option("--emulator-state", "emulator_state", type=click.Path(dir_okay=False),
                        help="With the emulator: load the emulated GPUs from this JSON file (when it exists) "
                             "and save them back, so that commands share one emulated machine.")(f)


def backend_option(f: Any) -> Any:
    """``--backend`` (emulator or nvml) and ``--emulator-state``, for commands that read or
    repair GPUs through NVML."""
    f = _emulator_state_option(f)
    return click.option("--backend", type=BackendChoice(BACKENDS, {"mig-manager": _MIG_MANAGER_ELSEWHERE}),
                        default="emulator", show_default=True, help=_BACKEND_HELP)(f)


def run_backend_options(f: Any) -> Any:
    """``--backend`` with mig-manager too, ``--emulator-state``, and the mig-manager
    backend's own options (``migrator run``)."""
    mig_manager = [
        click.option("--node", envvar="NODE_NAME",
                     help="With --backend mig-manager (required): the Kubernetes node these GPUs are on "
                          "(default: $NODE_NAME, the downward API's spec.nodeName)."),
        click.option("--namespace", default="gpu-operator", show_default=True,
                     help="With --backend mig-manager: the namespace of the ConfigMap mig-manager reads "
                          "(the GPU Operator's)."),
        click.option("--config-map", "config_map",
                     help="With --backend mig-manager: the ConfigMap that the ClusterPolicy's "
                          "migManager.config.name names (default: migrator-mig-parted-config, the one "
                          "deploy/mig-manager.yaml creates)."),
        click.option("--settle", "settle_s", type=FiniteFloat(min=0, max=3600), metavar="SECONDS",
                     help="With --backend mig-manager: seconds between writing a new configuration into the "
                          "ConfigMap and setting the node's label, for the kubelet to update mig-manager's "
                          "copy (its sync period; default 90)."),
        click.option("--mig-manager-timeout", "mig_manager_timeout_s", metavar="SECONDS",
                     type=FiniteFloat(min=0, min_open=True, max=86400),
                     help="With --backend mig-manager: seconds to wait for nvidia.com/mig.config.state to say "
                          "success or failed (default 900)."),
    ]
    for option in reversed(mig_manager):
        f = option(f)
    f = _emulator_state_option(f)
    return click.option(
        "--backend", type=click.Choice(RUN_BACKENDS), default="emulator", show_default=True,
        help=_BACKEND_HELP[:-1] + "; mig-manager: write each step's layouts as a mig-parted configuration and let "
             "the GPU Operator's mig-manager apply them on --node (all the node's GPUs in one change, minutes "
             "each, placements the driver's). Choose it on a GPU Operator cluster where mig-manager must stay "
             "in charge and layouts change rarely; the direct NVML backend otherwise (deploy/README.md, "
             "\"Which to choose\").")(f)


def mig_manager_settings(backend: str, node: str | None, namespace: str, config_map: str | None,
                         settle_s: float | None, timeout_s: float | None) -> dict[str, Any] | None:
    """The MigManagerBackend keyword arguments the options give (None for other backends);
    a missing ``--node`` is a usage error naming it."""
    if backend != "mig-manager":
        return None
    if not node:
        raise click.BadParameter("--backend mig-manager needs the Kubernetes node whose GPUs it manages: give "
                                 "--node NAME or set NODE_NAME", param_hint="--node")
    given = {"namespace": namespace, "config_map": config_map, "settle_s": settle_s, "timeout_s": timeout_s}
    return {"node": node, **{k: v for k, v in given.items() if v is not None}}


class Backend:
    """An open NvmlBackend over the emulator or the real NVML, or a MigManagerBackend over
    the real NVML (``mig_manager``: its keyword arguments). With a state file the
    emulated GPUs live in it, rewritten atomically after every NVML call that changes them,
    so that a process killed at any moment leaves the state the GPUs had then (what
    ``migrator recover`` must find). NVML or Kubernetes that cannot start is a one-line
    error, never a traceback."""

    def __init__(self, kind: str, scenario: Any, state_path: str | None,
                 mig_manager: dict[str, Any] | None = None) -> None:
        self.kind, self.scenario, self.state_path = kind, scenario, state_path
        self.mig_manager = mig_manager
        self.backend: Any = None

    def __enter__(self) -> Any:
        from pathlib import Path

        from ..actuation.emulator import NvmlEmulator, PersistedEmulator
        from ..actuation.nvml import NvmlBackend

        try:
            if self.kind == "mig-manager":
                from ..actuation.migmanager import MigManagerBackend

                self.backend = MigManagerBackend(reader=NvmlBackend(), **(self.mig_manager or {}))
            elif self.kind == "nvml":
                self.backend = NvmlBackend()
            elif self.state_path is None:
                self.backend = NvmlBackend(NvmlEmulator.from_scenario(self.scenario or load_scenario(None)))
            else:
                path = Path(self.state_path)
                scenario = None if path.exists() else self.scenario or load_scenario(None)
                gpus = [g.geometry for g in scenario.gpus] if scenario else ()
                layouts = [g.layout for g in scenario.gpus] if scenario else ()
                self.backend = NvmlBackend(PersistedEmulator(path, gpus, layouts))
            return self.backend.open()
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if self.kind != "emulator":
                raise click.ClickException(f"cannot open the {self.kind} backend: {exc}") from exc
            raise click.ClickException(f"cannot load the emulator state {self.state_path}: {exc}") from exc
        except RecursionError:  # json's decoder recurses per bracket
            raise click.ClickException(f"cannot load the emulator state {self.state_path}: "
                                       "nested too deeply") from None

    def __exit__(self, *exc: object) -> None:
        self.backend.close()


def device_list(text: str | None, n_gpus: int) -> list[int] | None:
    """``--devices``: one distinct device index per scenario GPU (which exist is the
    backend's to say)."""
    if text is None:
        return None
    parts = text.split(",")
    if not all(part.strip().isascii() and part.strip().isdigit() and len(part.strip()) <= 9 for part in parts):
        raise click.BadParameter(f"expected comma-separated device indices such as 0,1, got {text[:80]!r}",
                                 param_hint="--devices")
    devices = [int(part) for part in parts]
    if len(devices) != n_gpus or len(set(devices)) != n_gpus:
        raise click.BadParameter(f"give {n_gpus} distinct device indices, one per GPU of the scenario, "
                                 f"got {text[:80]!r}", param_hint="--devices")
    return devices


def metrics_options(f: Any) -> Any:
    """``--metrics-port`` and ``--metrics-host``: metrics are served only when a port is given."""
    f = click.option("--metrics-host", default="127.0.0.1", show_default=True,
                     help="Address for --metrics-port (0.0.0.0: every interface, as in a pod).")(f)
    return click.option("--metrics-port", type=click.IntRange(min=0, max=65535),
                        help="Serve Prometheus metrics on http://HOST:PORT/metrics (0: any free port; "
                             "default: no metrics served).")(f)


def start_metrics(metrics: Any, port: int | None, host: str) -> Any:
    """Serve ``metrics`` when a port is given (None otherwise); a port that cannot be
    bound is a one-line error."""
    if port is None:
        return None
    from ..actuation.metrics import serve_metrics

    try:
        server = serve_metrics(metrics, port, host)
    except OSError as exc:
        raise click.BadParameter(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                                 param_hint="--metrics-port/--metrics-host") from exc
    import logging

    logging.getLogger("migrator").info("metrics on http://%s:%d/metrics", host, server.server_address[1])
    return server


def stop_metrics(server: Any) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()  # shutdown() stops serving but leaves the socket open


def writable_file(path: str | None, option: str) -> str | None:
    """``path`` where a file can be written (its folder takes a new file; it is not a
    folder itself), else a usage error naming ``option``: checked before the work whose
    result it would hold, not after."""
    if path is not None:
        from pathlib import Path

        target = Path(path)
        folder = target.parent if str(target.parent) else Path(".")
        try:
            if target.is_dir():
                raise click.BadParameter(f"{path} is a folder, not a file", param_hint=option)
        except OSError as exc:  # a name too long even to ask about, a loop of links, ...
            raise click.BadParameter(f"cannot write at {path[:80]}: {exc.strerror or exc}", param_hint=option) from exc
        _probe(folder, path, option)
    return path


def writable_folder(path: str | None, option: str) -> str | None:
    """``path`` made a folder (if it is not one) that takes new files, else a usage error."""
    if path is not None:
        from pathlib import Path

        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.BadParameter(f"cannot make the folder {path[:80]}: {exc.strerror or exc}",
                                     param_hint=option) from exc
        _probe(Path(path), path, option)
    return path


def _probe(folder: Any, path: str, option: str) -> None:
    # Asking os.access is not enough: root passes it everywhere, /proc included.
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise click.BadParameter(f"cannot write at {path[:80]}: {exc.strerror or exc}", param_hint=option) from exc


class StderrLog:
    """The decision log on stderr while a command runs (stdout stays for --json), put back
    as it was afterwards."""

    def __init__(self, level: str) -> None:
        import logging

        self.logger = logging.getLogger("migrator")
        self.handler = logging.StreamHandler()
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.level = level.upper()

    def __enter__(self) -> None:
        self.saved = self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(self.level)

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.saved)


def open_journal(path: str | None) -> Any:
    if path is None:
        return None
    from ..actuation.journal import Journal

    try:
        return Journal(path)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="--journal") from exc
