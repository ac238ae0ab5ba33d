"""Applying layouts through the NVIDIA GPU Operator's mig-manager instead of NVML.

On a GPU Operator cluster the mig-manager DaemonSet owns each node's MIG layout: it watches
the node label ``nvidia.com/mig.config``, applies the mig-parted configuration of that name
from its ConfigMap (key ``config.yaml``), and reports in ``nvidia.com/mig.config.state``
(``pending``, ``rebooting``, then ``success`` or ``failed``). :class:`MigManagerBackend`
drives it, so that the two never fight over a node (deploy/README.md):

1. the node's target layouts become one mig-parted configuration
   (:func:`migrator.actuation.migparted.export_layouts`, the code behind
   ``migrator mig-parted export``), named after its content and the node
   (``migrator-<node hash>-<content hash>``), so a new layout is always a new label value;
2. it is merged into the ConfigMap's ``config.yaml`` (other configurations kept; this node's
   older ``migrator-`` ones dropped, except the one the label names now), with the
   ConfigMap's ``resourceVersion`` as a precondition so agents on other nodes that write
   the same ConfigMap do not lose each other's work;
3. one patch sets ``nvidia.com/mig.config`` and removes ``nvidia.com/mig.config.state``: a
   mig-manager that finds the configuration already applied writes ``success`` without
   ``pending`` first, so an old ``success`` must not be read as the answer;
4. it polls the node until the state says ``success`` or ``failed``, or the time runs out
   (:class:`MigManagerFailed`, :class:`MigManagerTimeout`; a 403 from the API server is
   :class:`KubernetesForbidden`, naming the RBAC rule that is missing; the error classes
   live in :mod:`migrator.errors` and are importable from here too);
5. it reads the GPUs again (NVML, read-only) and checks that each holds the asked counts.

With a journal, each GPU that changes gets a transaction: ``begin`` before anything is
written (mig-parted's clear-and-create actions, which mig-manager runs, not migrator), then
``commit`` at the layout the GPU holds after ``success``, or ``abort`` at the layout it holds
after ``failed`` (or a ``success`` that left other counts), or after a refusal before the
label was set (both with ``"via": "mig-manager"``). Anything else after the label was set (a
timeout, the label changed by someone else) leaves it open: the GPU may still be changing.

What the GPUs hold is read through a read-only :class:`~migrator.actuation.nvml.NvmlBackend`
(the ``reader``); nothing here creates or destroys an instance itself. mig-parted keeps
counts, not placements, and recreates every instance of a GPU whose counts change
(NVIDIA/mig-parted ``pkg/mig/config/config.go``: ``SetMigConfig`` clears the GPU first), so
this backend is not make-before-break: instances with running processes on a GPU that
changes are refused (:class:`~migrator.errors.InstanceBusy`) unless ``force``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import yaml

from ..errors import (
    ConfigError,
    ExternalChange,
    InstanceBusy,
    KubernetesForbidden,
    MigManagerError,
    MigManagerFailed,
    MigManagerTimeout,
    MigratorError,
)
from ..geometry.layout import Layout, LayoutLike
from .journal import Journal
from .migparted import VERSION, dump, export_layouts
from .nvml import GpuState, NvmlBackend
from .reconfig import Action, ApplyResult, Reconfiguration

__all__ = [
    "CONFIG_KEY",
    "CONFIG_LABEL",
    "CONFIG_MAP",
    "DEFAULT_CONFIG_MAP",
    "STATES",
    "STATE_LABEL",
    "KubernetesForbidden",
    "MigManagerBackend",
    "MigManagerError",
    "MigManagerFailed",
    "MigManagerResult",
    "MigManagerTimeout",
    "config_name",
    "merge_config",
    "node_config",
]

log = logging.getLogger(__name__)

# The GPU Operator's names (NVIDIA/gpu-operator controllers/state_manager.go, object_controls.go;
# NVIDIA/mig-parted pkg/mig/reconfigure/reconfigure.go); sources in deploy/README.md.
CONFIG_LABEL = "nvidia.com/mig.config"
STATE_LABEL = "nvidia.com/mig.config.state"
#: The values mig-manager writes in the state label, in the order it writes them.
STATES = ("pending", "rebooting", "success", "failed")
#: The operator's own ConfigMap. Not for migrator to write: the operator rewrites it from its
#: assets on every reconcile (controllers/object_controls.go), unless a custom one is named.
DEFAULT_CONFIG_MAP = "default-mig-parted-config"
#: The custom ConfigMap deploy/mig-manager.yaml creates; the ClusterPolicy's
#: ``migManager.config.name`` must name it (mig-manager then reads it on every node).
CONFIG_MAP = "migrator-mig-parted-config"
#: The key mig-manager reads in the ConfigMap (a custom ConfigMap must use it too).
CONFIG_KEY = "config.yaml"
PREFIX = "migrator-"
_CONFLICT_RETRIES = 5


# -- the configuration --------------------------------------------------------------------------


def _counts(layout: Layout) -> dict[str, int]:
    return dict(sorted(Counter(p.profile for p in layout).items()))


def node_config(targets: Mapping[int, LayoutLike]) -> list[dict[str, Any]]:
    """One mig-parted configuration (its entries) giving each NVML device index in
    ``targets`` its layout's counts; devices not in ``targets`` are named by no entry, so
    mig-parted leaves them alone."""
    if not targets:
        raise ConfigError("targets must name at least one device", field="targets")
    width = max(targets) + 1
    entries = export_layouts([targets.get(d, "") for d in range(width)])
    named = []
    for entry in entries:
        devices = [d for d in entry["devices"] if d in targets]
        if devices:
            named.append({**entry, "devices": devices})
    return named


def config_name(node: str, entries: Sequence[Mapping[str, Any]], retry: bool = False) -> str:
    """``migrator-<node hash>-<content hash>``: a valid label value (at most 63 characters)
    whatever the node's name, and a new value whenever the configuration changes (mig-manager
    acts on a change of the label, not of the ConfigMap). ``retry`` gives the same content a
    second name, for when the label already names the first one (after ``failed``, or after
    the GPUs were changed behind mig-manager's back): setting a label to its own value is no
    change, and mig-manager would not act."""
    content = json.dumps(list(entries), sort_keys=True) + ("\nretry" if retry else "")
    return f"{_node_prefix(node)}{_digest(content)[:12]}"


def _node_prefix(node: str) -> str:
    return f"{PREFIX}{_digest(node)[:8]}-"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def merge_config(text: str | None, node: str, name: str, entries: Sequence[Mapping[str, Any]],
                 keep: Sequence[str] = ()) -> str:
    """The ConfigMap's ``config.yaml`` with configuration ``name`` set to ``entries``.

    Other configurations stay (the ConfigMap may serve every node of the cluster); this
    node's older ``migrator-`` configurations are dropped, except those in ``keep`` (the one
    the node's label names now: a restarted mig-manager applies it again).
    """
    document = _parse_config(text)
    configs = document.setdefault("mig-configs", {})
    mine = _node_prefix(node)
    for old in [c for c in configs if isinstance(c, str) and c.startswith(mine) and c not in keep]:
        del configs[old]
    configs[name] = [dict(e) for e in entries]
    return dump(document)


def _parse_config(text: str | None) -> dict[str, Any]:
    if not text or not text.strip():
        return {"version": VERSION, "mig-configs": {}}
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError(f"the ConfigMap's {CONFIG_KEY} is not valid YAML: {exc}", field=CONFIG_KEY) from exc
    if not isinstance(document, dict) or not isinstance(document.get("mig-configs", {}), dict):
        raise ConfigError(f"the ConfigMap's {CONFIG_KEY} must be a mig-parted document (version: {VERSION}, "
                          "mig-configs: {...})", field=CONFIG_KEY)
    if document.get("version", VERSION) != VERSION:
        raise ConfigError(f"the ConfigMap's {CONFIG_KEY} has version {document['version']!r}; migrator writes "
                          f"{VERSION!r}", field=f"{CONFIG_KEY}.version")
    document.setdefault("version", VERSION)
    return document


# -- the backend --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigManagerResult:
    """What one :meth:`MigManagerBackend.apply_layouts` did on the node.

    ``config`` is the configuration name (the label value), ``previous`` the label's value
    before; ``states`` every state label value seen while waiting, in order; ``changed`` the
    devices whose counts changed (mig-parted recreated all their instances); ``per_gpu``
    device -> :class:`~migrator.actuation.reconfig.ApplyResult` for every device of the
    targets (its ``reconfiguration`` is what mig-parted does: destroy every instance, create
    the target's; a GPU with MIG off is unchanged); ``applied`` is False when no label was
    set (dry run, or nothing to change).
    """

    node: str
    config: str
    previous: str | None
    states: tuple[str, ...]
    changed: tuple[int, ...]
    per_gpu: Mapping[int, ApplyResult]
    applied: bool
    duration_s: float


@dataclass
class _Wait:
    """The clock of one wait (injectable: tests run a timeout without waiting)."""

    timeout_s: float
    poll_s: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    seen: list[str] = field(default_factory=list)


class MigManagerBackend:
    """The GPUs of one Kubernetes node, changed through the GPU Operator's mig-manager.

    Parameters
    ----------
    node : str
        The Kubernetes node (``spec.nodeName``; the agent's ``NODE_NAME``).
    reader : NvmlBackend, optional
        Reads what the GPUs hold (never changes it); ``NvmlBackend()`` by default. Tests
        pass one over the emulator.
    namespace : str
        Where the ConfigMap lives: the GPU Operator's namespace (``gpu-operator``).
    config_map : str
        The ConfigMap mig-manager reads: the one the ClusterPolicy's
        ``migManager.config.name`` names (:data:`CONFIG_MAP`, which deploy/mig-manager.yaml
        creates). Not :data:`DEFAULT_CONFIG_MAP`: the operator rewrites that one.
    api : kubernetes.client.CoreV1Api, optional
        By default one built from the pod's service account (in a cluster), else from
        ``~/.kube/config``.
    timeout_s : float
        How long to wait for ``success`` or ``failed``: mig-manager stops the node's GPU
        clients (device plugin, DCGM exporter, ...) before it changes anything, so minutes.
    poll_s : float
        Seconds between two reads of the node's labels.
    settle_s : float
        Seconds between writing a new configuration into the ConfigMap and setting the
        label: mig-manager reads the ConfigMap through a volume, which the kubelet updates
        on its sync period (a minute by default), and a label naming a configuration its
        file does not have yet fails.
    """

    def __init__(
        self,
        node: str,
        *,
        reader: NvmlBackend | None = None,
        namespace: str = "gpu-operator",
        config_map: str = CONFIG_MAP,
        api: Any = None,
        timeout_s: float = 900.0,
        poll_s: float = 2.0,
        settle_s: float = 90.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for value, what in ((node, "node"), (namespace, "namespace"), (config_map, "config_map")):
            if not isinstance(value, str) or not value or len(value) > 253:
                raise ConfigError(f"{what} must be a Kubernetes object name (1-253 characters), got {value!r}",
                                  field=what)
        for seconds, what in ((timeout_s, "timeout_s"), (poll_s, "poll_s"), (settle_s, "settle_s")):
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds < 1e6:
                raise ConfigError(f"{what} must be a number of seconds in [0, 1e6), got {seconds!r}", field=what)
        self.node, self.namespace, self.config_map = node, namespace, config_map
        self.reader = reader if reader is not None else NvmlBackend()
        self.timeout_s, self.poll_s, self.settle_s = float(timeout_s), float(poll_s), float(settle_s)
        self._clock, self._sleep = clock, sleep
        self._api = api
        self._own_api = api is None

    # -- session ----------------------------------------------------------------------------

    def open(self) -> MigManagerBackend:
        """Open the reader and the Kubernetes client."""
        if self._api is None:
            self._api = _default_api()
        self.reader.open()
        return self

    def close(self) -> None:
        self.reader.close()
        if self._own_api and self._api is not None:
            self._api.api_client.close()
            self._api = None

    def __enter__(self) -> MigManagerBackend:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading (the reader's) -------------------------------------------------------------

    def device_count(self) -> int:
        return self.reader.device_count()

    def geometry(self, gpu: int) -> Any:
        return self.reader.geometry(gpu)

    def state(self, gpu: int) -> GpuState:
        return self.reader.state(gpu)

    def states(self) -> list[GpuState]:
        return self.reader.states()

    def check_target(self, gpu: int, target: LayoutLike) -> Layout:
        """Refuses: per-GPU NVML actions (:func:`migrator.actuation.reconfig.apply`) are not
        this backend's; a whole node's layouts go through :meth:`apply_layouts`."""
        raise ConfigError(f"gpu{gpu}: the mig-manager backend changes a node's GPUs together, through "
                          "MigManagerBackend.apply_layouts, not one NVML action at a time", field="backend")

    # -- changing ---------------------------------------------------------------------------

    def apply_layouts(
        self,
        targets: Mapping[int, LayoutLike],
        *,
        expected: Mapping[int, LayoutLike] | None = None,
        force: bool = False,
        dry_run: bool = False,
        journal: Journal | None = None,
    ) -> MigManagerResult:
        """Bring each device in ``targets`` (NVML index -> layout) to its layout's counts.

        Parameters
        ----------
        targets : mapping
            The node's GPUs that migrator manages and the layout each should hold; the
            placements are the driver's to choose (mig-parted keeps counts only).
        expected : mapping, optional
            The layouts the plan was made from; a GPU that holds another is an
            :class:`~migrator.errors.ExternalChange` and nothing is changed.
        force : bool
            Let mig-parted destroy instances that have running processes.
        dry_run : bool
            Check and describe only: nothing is written.
        journal : Journal, optional
            Where each changing GPU's transaction is written (module docstring).

        Raises
        ------
        ExternalChange, InstanceBusy, InvalidLayout, MigModeDisabled
            Before anything is written.
        MigManagerFailed, MigManagerTimeout, KubernetesForbidden, MigManagerError
            From the mig-manager or the API server.
        """
        started = self._clock()
        goals, before = self._check(targets, expected, force)
        changed = tuple(d for d in sorted(goals) if _counts(goals[d]) != _counts(before[d].layout)
                        or before[d].incomplete)
        if dry_run or not changed:
            per_gpu = {d: self._result(before[d], goals.get(d, Layout()), before[d], d in changed, dry_run, started)
                       for d in before}
            return MigManagerResult(self.node, "", None, (), changed, per_gpu, False, self._clock() - started)
        left_out = {d: before.pop(d) for d in list(before) if d not in goals}  # MIG off: not named
        entries = node_config(goals)
        previous = self._labels().get(CONFIG_LABEL)
        name = config_name(self.node, entries)
        if name == previous:
            name = config_name(self.node, entries, retry=True)
        plans = {d: _clear_and_create(before[d], goals[d], self.reader.geometry(d).name) for d in changed}
        txns = _begin(journal, plans, before)
        read: dict[int, GpuState] | None = None  # the GPUs, once read after mig-manager's answer
        labelled = False
        try:
            if self._write_config(name, entries, keep=[previous] if previous else []):
                log.info("%s: wrote configuration %s into %s/%s; waiting %.0f s for the kubelet to update "
                         "mig-manager's copy", self.node, name, self.namespace, self.config_map, self.settle_s)
                self._sleep(self.settle_s)
            self._patch_node({CONFIG_LABEL: name, STATE_LABEL: None})
            labelled = True
            log.info("%s: %s=%s (was %s); waiting for %s", self.node, CONFIG_LABEL, name, previous, STATE_LABEL)
            wait = _Wait(self.timeout_s, self.poll_s, self._clock, self._sleep)
            outcome = self._wait(name, wait)
            read = after = {d: self.reader.state(d) for d in goals}
            if outcome == "failed":
                raise MigManagerFailed(
                    f"node {self.node}: mig-manager could not apply {name} ({STATE_LABEL}=failed); the GPUs hold "
                    + "; ".join(f"gpu{d}: {after[d].layout or '(empty)'}" for d in sorted(after))
                    + " (the nvidia-mig-manager pod's log on the node says why)",
                    node=self.node, config=name, state="failed",
                    layouts={d: str(s.layout) for d, s in after.items()})
            self._check_counts(goals, after, name)
        except MigratorError as exc:
            # Closed where what the GPUs hold is known: read after mig-manager answered, or
            # untouched because it was never asked. After a timeout it may still be at work.
            known = read if read is not None else (before if not labelled else None)
            if known is not None:
                _end(journal, txns, "abort", {d: str(known[d].layout) for d in txns}, str(exc))
            raise
        _end(journal, txns, "commit", {d: str(after[d].layout) for d in txns})
        per_gpu = {d: self._result(before[d], goals[d], after[d], d in changed, False, started) for d in goals}
        per_gpu.update({d: self._result(s, Layout(), s, False, False, started) for d, s in left_out.items()})
        return MigManagerResult(self.node, name, previous, tuple(wait.seen), changed, per_gpu, True,
                                self._clock() - started)

    def _check(self, targets: Mapping[int, LayoutLike], expected: Mapping[int, LayoutLike] | None,
               force: bool) -> tuple[dict[int, Layout], dict[int, GpuState]]:
        """Each target validated (MIG mode on where it has instances: mig-parted would
        switch it, and migrator never does), the GPUs unchanged since the plan, and no
        instance with processes on a GPU that changes unless ``force``."""
        if not isinstance(targets, Mapping) or not targets:
            raise ConfigError("targets must map at least one device index to a layout", field="targets")
        count = self.reader.device_count()
        goals: dict[int, Layout] = {}
        before: dict[int, GpuState] = {}
        for device, target in targets.items():
            if isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < count:
                raise ConfigError(f"targets: device {device!r} does not exist; the node has devices 0-{count - 1}",
                                  field="targets")
            goal = self.reader.check_target(device, target)
            before[device] = self.reader.state(device)
            # An empty target on a GPU with MIG off is left out: naming it (mig-enabled: true)
            # would switch MIG on.
            if before[device].mig_enabled:
                goals[device] = goal
        if expected is not None:
            for device in before:
                if device in expected:
                    _check_unchanged(before[device], self.reader.geometry(device).validate(expected[device]))
        if not force:
            for device in goals:
                if _counts(goals[device]) != _counts(before[device].layout):
                    _check_idle(before[device])
        return goals, before

    def _check_counts(self, goals: Mapping[int, Layout], after: Mapping[int, GpuState], name: str) -> None:
        wrong = [d for d in sorted(goals) if _counts(goals[d]) != _counts(after[d].layout)]
        if wrong:
            raise MigManagerError(
                f"node {self.node}: mig-manager reported success for {name}, but "
                + "; ".join(f"gpu{d} holds {after[d].layout or '(empty)'} instead of {_text(goals[d])}"
                            for d in wrong),
                node=self.node, config=name, state="success")

    def _result(self, before: GpuState, goal: Layout, after: GpuState, changed: bool, dry_run: bool,
                started: float) -> ApplyResult:
        recon = _clear_and_create(before, goal, self.reader.geometry(before.index).name) if changed else \
            Reconfiguration(before.index, self.reader.geometry(before.index).name, str(before.layout),
                            str(before.layout), tuple(before.layout), (), (), ())
        return ApplyResult(gpu=before.index, before=str(before.layout), after=str(after.layout),
                           reconfiguration=recon, executed=0 if dry_run else len(recon.actions), dry_run=dry_run,
                           ids=after.ids(), duration_s=self._clock() - started)

    # -- Kubernetes -------------------------------------------------------------------------

    def _labels(self) -> dict[str, str]:
        node = self._call("get", "nodes", self.node, None, lambda: self._api.read_node(self.node))
        return dict(node.metadata.labels or {})

    def _write_config(self, name: str, entries: Sequence[Mapping[str, Any]], keep: Sequence[str]) -> bool:
        """Merge configuration ``name`` into the ConfigMap; True when it was not there yet.
        A write that lost a race with another node's agent (409) is read and merged again."""
        for _ in range(_CONFLICT_RETRIES):
            current = self._call("get", "configmaps", self.config_map, self.namespace,
                                 lambda: self._api.read_namespaced_config_map(self.config_map, self.namespace))
            text = (current.data or {}).get(CONFIG_KEY)
            new = name not in _parse_config(text).get("mig-configs", {})
            merged = merge_config(text, self.node, name, entries, keep)
            if merged == text:
                return False
            body = {"metadata": {"resourceVersion": current.metadata.resource_version}, "data": {CONFIG_KEY: merged}}
            try:
                self._patch_config(body)
            except _Conflict:
                log.info("%s: ConfigMap %s changed while it was written; merging again", self.node, self.config_map)
                continue
            return new
        raise MigManagerError(f"node {self.node}: ConfigMap {self.namespace}/{self.config_map} changed under every "
                              f"one of {_CONFLICT_RETRIES} writes", node=self.node, config=name)

    def _patch_config(self, body: Mapping[str, Any]) -> None:
        self._call("patch", "configmaps", self.config_map, self.namespace,
                   lambda: self._api.patch_namespaced_config_map(self.config_map, self.namespace, body))

    def _patch_node(self, labels: Mapping[str, str | None]) -> None:
        body = {"metadata": {"labels": dict(labels)}}
        self._call("patch", "nodes", self.node, None, lambda: self._api.patch_node(self.node, body))

    def _wait(self, name: str, wait: _Wait) -> str:
        """``success`` or ``failed`` from the state label, or MigManagerTimeout."""
        deadline = wait.clock() + wait.timeout_s
        while True:
            labels = self._labels()
            if labels.get(CONFIG_LABEL) != name:
                raise MigManagerError(
                    f"node {self.node}: {CONFIG_LABEL} was changed to {labels.get(CONFIG_LABEL)!r} while migrator "
                    f"waited for {name}: someone else manages this node's MIG configuration",
                    node=self.node, config=name, state=labels.get(STATE_LABEL))
            state = labels.get(STATE_LABEL)
            if state is not None and (not wait.seen or wait.seen[-1] != state):
                wait.seen.append(state)
                log.info("%s: %s=%s", self.node, STATE_LABEL, state)
            if state in ("success", "failed"):
                return state
            if wait.clock() >= deadline:
                raise MigManagerTimeout(
                    f"node {self.node}: no {STATE_LABEL} success or failed within {wait.timeout_s:g} s of setting "
                    f"{CONFIG_LABEL}={name} (last state: {state or 'none: is nvidia-mig-manager running on the node?'})",
                    node=self.node, config=name, state=state, timeout_s=wait.timeout_s)
            wait.sleep(wait.poll_s)

    def _call(self, verb: str, resource: str, name: str, namespace: str | None, call: Callable[[], Any]) -> Any:
        """One API call; its ApiException becomes a named migrator error."""
        from kubernetes.client.exceptions import ApiException

        try:
            return call()
        except ApiException as exc:
            where = f"{namespace}/{name}" if namespace else name
            if exc.status == 403:
                scope = f"a Role in namespace {namespace}" if namespace else "a ClusterRole"
                raise KubernetesForbidden(
                    f"node {self.node}: the API server refused to {verb} {resource} {where} (403 Forbidden): the "
                    f"service account needs {scope} allowing verbs [get, patch] on {resource} "
                    "(deploy/mig-manager-rbac.yaml)",
                    node=self.node, verb=verb, resource=resource, name=name, namespace=namespace) from exc
            if exc.status == 409:
                raise _Conflict() from exc
            if exc.status == 404:
                hint = ("; create it and name it in the ClusterPolicy's migManager.config.name "
                        "(deploy/mig-manager.yaml)") if resource == "configmaps" else ""
                raise MigManagerError(f"node {self.node}: {resource} {where} not found{hint}",
                                      node=self.node) from exc
            raise MigManagerError(f"node {self.node}: {verb} {resource} {where}: the API server answered "
                                  f"{exc.status} {exc.reason}", node=self.node) from exc


class _Conflict(Exception):
    """409: the object changed since it was read (its resourceVersion moved on)."""


def _default_api() -> Any:
    """A client of its own (not the module-wide default configuration): the pod's service
    account in a cluster, else the kubeconfig ``KUBECONFIG`` names when called (the client
    reads it when imported), else ``~/.kube/config``."""
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise MigratorError("the mig-manager backend needs the Kubernetes client: pip install 'migrator[k8s]'") from exc
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None,  # type: ignore[no-untyped-call]
                                    client_configuration=configuration)
        except (config.ConfigException, OSError) as exc:
            raise MigratorError(f"no Kubernetes credentials: not in a pod, and no usable kubeconfig ({exc})") from exc
    return client.CoreV1Api(client.ApiClient(configuration))


def _begin(journal: Journal | None, plans: Mapping[int, Reconfiguration],
           before: Mapping[int, GpuState]) -> dict[int, str]:
    """One open transaction per GPU that changes (device -> transaction id), before anything
    is written; none without a journal."""
    if journal is None:
        return {}
    return {d: journal.begin(gpu=d, model=recon.model, kind="apply", current=str(before[d].layout),
                             target=recon.target, fallback=str(before[d].layout),
                             actions=[a.to_dict() for a in recon.actions])
            for d, recon in plans.items()}


def _end(journal: Journal | None, txns: Mapping[int, str], event: str, layouts: Mapping[int, str],
         error: str | None = None) -> None:
    """Close each transaction at the layout its GPU was read at (``commit`` or ``abort``)."""
    if journal is None:
        return
    extra = {"error": error} if error is not None else {}
    for device, txn in txns.items():
        journal.write(txn, event, device, layout=layouts[device], via="mig-manager", **extra)


def _check_unchanged(state: GpuState, expected: Layout) -> None:
    if state.layout != expected:
        raise ExternalChange(
            f"gpu{state.index}: the layout changed since the plan was made: expected {expected or '(empty)'}, "
            f"found {state.layout or '(empty)'}; nothing was changed",
            expected=str(expected), observed=str(state.layout), gpu=state.index, action="check layout",
            layout=str(state.layout))


def _check_idle(state: GpuState) -> None:
    for instance in state.instances:
        if instance.pids:
            raise InstanceBusy(
                f"gpu{state.index}: {instance.placement} has running processes {list(instance.pids)}; mig-parted "
                "recreates every instance of a GPU whose counts change: drain it, or pass force",
                placement=str(instance.placement), pids=tuple(instance.pids), gpu=state.index,
                action="check processes", layout=str(state.layout))


def _clear_and_create(before: GpuState, goal: Layout, model: str) -> Reconfiguration:
    """mig-parted's steps on a GPU whose counts change: every instance destroyed, then the
    target's created (at placements the driver chooses)."""
    actions: list[Action] = []
    for gi in before.instances:
        actions += [Action("destroy_ci", gi.placement, gi.id, ci.id, "break") for ci in gi.compute_instances]
        actions.append(Action("destroy_gi", gi.placement, gi.id, phase="break"))
    actions += [Action(kind, p, phase="after") for p in goal for kind in ("create_gi", "create_ci")]
    return Reconfiguration(gpu=before.index, model=model, current=str(before.layout), target=str(goal), kept=(),
                           destroyed=tuple(before.layout), created=tuple(goal), actions=tuple(actions))


def _text(layout: Layout) -> str:
    counts = _counts(layout)
    return ", ".join(f"{n} x {p}" for p, n in counts.items()) or "no instances"
