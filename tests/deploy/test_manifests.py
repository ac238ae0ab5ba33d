"""deploy/ holds what a cluster runs: every manifest is read as Kubernetes would read it
(``yaml.safe_load_all``) and held to the invariants that keep the parts agreeing with each
other and with the code: the DaemonSet's hostPID and probes, one metrics port from the
container to the Service to the ServiceMonitor, commands and options the CLI really has
(asked of ``migrator <command> --help``), the image's entrypoint, least-privilege RBAC for the
mig-manager backend and the ConfigMap it writes.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from migrator.actuation import migmanager
from migrator.actuation.migparted import load_config
from migrator.cli import main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted(p for p in DEPLOY.iterdir() if p.suffix in (".yaml", ".yml"))
METRICS_PORT = 9410


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in MANIFESTS:
        with path.open() as f:
            out += [(path.name, d) for d in yaml.safe_load_all(f) if d is not None]
    return out


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in documents() if d["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} in deploy/"
    return found[0]


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    kinds = ("DaemonSet", "Deployment", "StatefulSet", "Job")
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for _, d in documents() if d["kind"] in kinds]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def help_text(*command: str) -> str:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def listed_options(command: str) -> set[str]:
    """The long options ``migrator COMMAND --help`` lists."""
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text(command)))


def commands() -> set[str]:
    text = help_text()
    return set(re.findall(r"^  ([a-z][a-z-]*)\s", text.split("Commands:")[1], flags=re.M))


def option_values(args: list[str]) -> list[tuple[str, str | None]]:
    """(option, value) pairs of an argument list: a value is the next argument that is no option."""
    out = []
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
            out.append((arg, value))
    return out


def migrator_containers() -> list[tuple[str, list[str], list[str]]]:
    """(container, command, args) of every container that runs `migrator`."""
    out = []
    for _, spec in pod_specs():
        for c in spec["containers"]:
            if c.get("command", [None])[0] == "migrator":
                out.append((c["name"], c["command"], [str(a) for a in c.get("args", [])]))
    return out


# -- every file -----------------------------------------------------------------------------------


def test_there_are_manifests_and_each_reads_as_kubernetes_objects() -> None:
    assert {"agent-daemonset.yaml", "metrics.yaml", "mig-manager.yaml", "mig-manager-rbac.yaml",
            "mig-manager-daemonset.yaml"} <= {p.name for p in MANIFESTS}
    for name, d in documents():
        assert {"apiVersion", "kind", "metadata"} <= set(d), name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", d["metadata"]["name"]), (name, d["metadata"])


# -- the DaemonSet --------------------------------------------------------------------------------


def test_every_pod_shares_the_host_pid_namespace_for_the_busy_check() -> None:
    specs = pod_specs()
    assert specs
    for name, spec in specs:
        assert spec.get("hostPID") is True, name
    for path in MANIFESTS:
        text = path.read_text()
        if "hostPID: true" in text:
            why = comment_above(text, "hostPID: true")
            assert "PID namespace" in why and "process" in why, path.name  # says why


def comment_above(text: str, line: str) -> str:
    """The comment lines right above the first ``line`` of a manifest, joined."""
    rows = text[:text.index(line)].rstrip(" ").splitlines()  # the indentation of ``line`` dropped
    comment: list[str] = []
    for row in reversed(rows):
        if not row.strip().startswith("#"):
            break
        comment.insert(0, row.strip().lstrip("#").strip())
    return " ".join(comment)


def test_every_container_has_probes_on_a_port_it_declares() -> None:
    for name, spec in pod_specs():
        for c in spec["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in c, (name, c["name"], probe)
                port = c[probe]["httpGet"]["port"]
                assert port in ports or port in ports.values(), (name, probe, port)


def test_the_direct_agent_runs_only_where_mig_manager_does_not() -> None:
    spec = one("DaemonSet", "migrator-agent")["spec"]["template"]["spec"]
    assert spec["nodeSelector"]["nvidia.com/gpu.deploy.mig-manager"] == "false"
    assert spec["runtimeClassName"] == "nvidia"


# -- one metrics port -----------------------------------------------------------------------------


def test_the_metrics_port_is_the_same_from_the_cli_to_the_service_monitor() -> None:
    daemonset = one("DaemonSet", "migrator-agent")
    pod = daemonset["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == METRICS_PORT
    assert dict(option_values(container["args"]))["--metrics-port"] == str(METRICS_PORT)

    service = one("Service", "migrator-agent-metrics")
    assert service["metadata"]["namespace"] == daemonset["metadata"]["namespace"]
    assert matches(service["spec"]["selector"], pod["metadata"]["labels"])
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert service_ports["metrics"]["targetPort"] in ("metrics", METRICS_PORT)
    assert service_ports["metrics"]["port"] == METRICS_PORT

    monitor = one("ServiceMonitor", "migrator-agent")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    probes = [container[p]["httpGet"] for p in ("livenessProbe", "readinessProbe")]
    assert all(p["port"] == "metrics" and p["path"] == e["path"] for p in probes for e in monitor["spec"]["endpoints"])


# -- the CLI the manifests and the image call ---------------------------------------------------


def test_containers_run_real_commands_with_options_the_cli_lists() -> None:
    containers = migrator_containers()
    assert containers
    known = commands()
    for name, command, args in containers:
        assert command[1] in known, (name, command)
        unknown = {o for o, _ in option_values(args)} - listed_options(command[1])
        assert not unknown, f"{name}: `migrator {command[1]}` has no option {sorted(unknown)}"


def test_choice_values_in_the_manifests_are_among_the_cli_choices() -> None:
    for name, command, args in migrator_containers():
        text = help_text(command[1])
        for option, value in option_values(args):
            choices = re.search(re.escape(option) + r" \[([a-z|-]+)\]", text)
            if choices and value is not None:
                assert value in choices.group(1).split("|"), (name, option, value)


def dockerfile() -> tuple[str, list[list[str]]]:
    """The Dockerfile's text and its stages' instructions (continuation lines joined)."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instructions = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    stages: list[list[str]] = []
    for ins in instructions:
        if ins.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return text, stages


def exec_form(stage: list[str], keyword: str) -> list[str]:
    found = [ins for ins in stage if ins.split()[0].upper() == keyword]
    assert found, f"no {keyword} in the final stage"
    return json.loads(found[-1][len(keyword):].strip())  # exec form: a JSON array


def test_the_image_entrypoint_runs_a_real_command() -> None:
    _, stages = dockerfile()
    final = stages[-1]
    entrypoint, cmd = exec_form(final, "ENTRYPOINT"), exec_form(final, "CMD")
    assert entrypoint == ["migrator"]
    assert cmd[0] in commands()
    assert set(o for o in cmd if o.startswith("--")) <= listed_options(cmd[0])
    # The DaemonSet's command is the same program as the image's entrypoint.
    assert all(command[0] == entrypoint[0] for _, command, _ in migrator_containers())


def test_the_image_is_multi_stage_non_root_and_installs_the_nvml_bindings() -> None:
    _, stages = dockerfile()
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert any("pip wheel" in ins for ins in build)
    assert not any(re.search(r"\b(g\+\+|gcc|build-essential|cmake)\b", ins) for ins in final)  # no compiler at run time
    install = " ".join(ins for ins in final if "pip install" in ins)
    extras = re.search(r"migrator\[([a-z0-9,]+)\]", install)
    assert extras and {"nvml", "cluster", "k8s"} <= set(extras.group(1).split(","))
    with (DEPLOY.parent / "pyproject.toml").open("rb") as f:
        import tomllib

        optional = tomllib.load(f)["project"]["optional-dependencies"]
    assert any(d.startswith("nvidia-ml-py") for d in optional["nvml"])
    users = [ins.split()[1] for ins in final if ins.split()[0].upper() == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    # Only the direct NVML agent turns root again, and says so.
    agent = one("DaemonSet", "migrator-agent")["spec"]["template"]["spec"]["containers"][0]
    assert agent["securityContext"]["runAsUser"] == 0 and agent["securityContext"]["privileged"] is True


def test_the_image_keeps_numba_s_cache_outside_site_packages_on_a_mounted_tmp() -> None:
    text, _ = dockerfile()
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", text)
    assert cache and "site-packages" not in cache.group(1)
    mounts = {m["mountPath"] for m in one("DaemonSet", "migrator-agent")["spec"]["template"]["spec"]["containers"][0][
        "volumeMounts"]}
    assert any(cache.group(1).startswith(m.rstrip("/") + "/") for m in mounts)


# -- the mig-manager backend's RBAC and ConfigMap ------------------------------------------------


def rules_of(kind: str, name: str) -> list[dict[str, Any]]:
    return one(kind, name)["rules"]


def test_rbac_is_get_and_patch_on_one_config_map_and_on_nodes() -> None:
    (configmaps,) = rules_of("Role", "migrator-mig-manager")
    assert configmaps == {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [migmanager.CONFIG_MAP],
                          "verbs": ["get", "patch"]}
    (nodes,) = rules_of("ClusterRole", "migrator-mig-manager")
    assert nodes == {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}
    for _, d in documents():
        for rule in d.get("rules", []):
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], d["metadata"]["name"]


def test_the_bindings_give_the_roles_to_the_backend_s_service_account() -> None:
    account = one("ServiceAccount", "migrator-mig-manager")
    role = one("Role", "migrator-mig-manager")
    config_map = one("ConfigMap", migmanager.CONFIG_MAP)
    assert role["metadata"]["namespace"] == config_map["metadata"]["namespace"] == "gpu-operator"
    for kind, binding_kind in (("Role", "RoleBinding"), ("ClusterRole", "ClusterRoleBinding")):
        binding = one(binding_kind, "migrator-mig-manager")
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                                      "name": "migrator-mig-manager"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                        "namespace": account["metadata"]["namespace"]}]
        if kind == "Role":
            assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]


def test_the_config_map_is_a_mig_parted_document_with_the_operator_s_default_config() -> None:
    config_map = one("ConfigMap", migmanager.CONFIG_MAP)
    document = load_config(yaml.safe_load(config_map["data"][migmanager.CONFIG_KEY]))
    # The operator labels an unlabelled MIG-capable node all-disabled (its config.default).
    assert "all-disabled" in document["mig-configs"]
    # The backend merges into it without losing a configuration.
    merged = yaml.safe_load(migmanager.merge_config(config_map["data"][migmanager.CONFIG_KEY], "node-a",
                                                    "migrator-x", migmanager.node_config({0: "7g.80gb@0"})))
    assert set(merged["mig-configs"]) == set(document["mig-configs"]) | {"migrator-x"}


def test_the_readme_s_commands_use_real_options() -> None:
    readme = (DEPLOY / "README.md").read_text()
    checked = 0
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line.split("#")[0]) if line.strip() else []
            if len(words) >= 2 and words[0] == "migrator":
                unknown = {w for w in words if w.startswith("--")} - listed_options(words[1])
                assert words[1] in commands() and not unknown, (line, unknown)
                checked += 1
    assert checked >= 2


# -- migrator in mig-manager mode -----------------------------------------------------------------


def mig_manager_pod() -> dict[str, Any]:
    return one("DaemonSet", "migrator-mig-manager")["spec"]["template"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_mig_manager_mode_runs_the_backend_with_its_own_account_and_names() -> None:
    daemonset = one("DaemonSet", "migrator-mig-manager")
    spec = mig_manager_pod()["spec"]
    (container,) = spec["containers"]
    account = one("ServiceAccount", spec["serviceAccountName"])
    assert spec["serviceAccountName"] == "migrator-mig-manager" and spec.get("automountServiceAccountToken", True)
    assert account["metadata"]["namespace"] == daemonset["metadata"]["namespace"]
    assert container["command"] == ["migrator", "run"]
    options = dict(option_values(container["args"]))
    assert options["--backend"] == "mig-manager" and "--node" not in options  # from NODE_NAME
    assert env_of(container)["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    # The ConfigMap and namespace are the ones mig-manager.yaml creates and the Role covers.
    config_map = one("ConfigMap", migmanager.CONFIG_MAP)
    assert options["--config-map"] == migmanager.CONFIG_MAP
    assert options["--namespace"] == config_map["metadata"]["namespace"] == one("Role", "migrator-mig-manager")[
        "metadata"]["namespace"]


def test_the_mig_manager_mode_reads_every_instance_without_root() -> None:
    (container,) = mig_manager_pod()["spec"]["containers"]
    assert env_of(container)["NVIDIA_MIG_MONITOR_DEVICES"] == "all"
    assert "NVIDIA_MIG_CONFIG_DEVICES" not in env_of(container)  # changing MIG is mig-manager's
    text = (DEPLOY / "mig-manager-daemonset.yaml").read_text()
    assert "CAP_SYS_ADMIN" in comment_above(text, "- {name: NVIDIA_MIG_MONITOR_DEVICES")  # says why
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0 and security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False


def test_the_two_modes_never_share_a_node() -> None:
    agent = one("DaemonSet", "migrator-agent")["spec"]["template"]["spec"]["nodeSelector"]
    mode = mig_manager_pod()["spec"]["nodeSelector"]
    key = "nvidia.com/gpu.deploy.mig-manager"
    assert (agent[key], mode[key]) == ("false", "true")


def test_the_mig_manager_mode_s_scenario_loads_and_its_slot_outlasts_a_change() -> None:
    from migrator.actuation.emulator import NvmlEmulator
    from migrator.workload.scenario import Scenario

    (container,) = mig_manager_pod()["spec"]["containers"]
    options = dict(option_values(container["args"]))
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["scenario"]
    path = Path(container["args"][0])
    assert path.parent == Path(mount)
    config_map = one("ConfigMap", "migrator-scenario")
    volume = {v["name"]: v for v in mig_manager_pod()["spec"]["volumes"]}["scenario"]
    assert volume["configMap"]["name"] == "migrator-scenario"
    table = yaml.safe_load(config_map["data"][path.name])
    scenario = Scenario.from_dict(table, nvml=NvmlEmulator(["A100-80GB"] * 2, layouts=["", ""]))
    assert len(scenario.gpus) == 2  # discover: nvml found the node's GPUs
    assert scenario.slot_s > float(options["--mig-manager-timeout"])


def test_the_mig_manager_mode_s_metrics_are_scraped() -> None:
    pod = mig_manager_pod()
    (container,) = pod["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == METRICS_PORT
    assert dict(option_values(container["args"]))["--metrics-port"] == str(METRICS_PORT)
    service = one("Service", "migrator-mig-manager-metrics")
    assert matches(service["spec"]["selector"], pod["metadata"]["labels"])
    monitor = one("ServiceMonitor", "migrator-mig-manager")
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])

