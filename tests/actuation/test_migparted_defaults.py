"""NVIDIA's own mig-parted configurations (tests/data/mig_parted_config_default.yaml, the
configurations of mig-parted's config-default.yaml) imported on every GPU migrator knows.

Which configurations are meant for which GPU is NVIDIA's word: the comment before each group
in their file (the table below, in migrator's GPU names). Each such pair must give a valid
layout with the configuration's counts, or a ConfigError that names why; the one pair
refused is ``all-1g.24gb.me`` on H100 NVL, whose profile the MIG user guide lists for the
RTX PRO 6000 Blackwell only (data/gpus/H100-94GB.yaml says more).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import migrator
from migrator.actuation.emulator import NvmlEmulator
from migrator.actuation.migparted import (
    device_ids_for,
    format_device_id,
    gpu_for_device_id,
    import_config,
    load_config,
)
from migrator.actuation.nvml import NvmlBackend
from migrator.cli import main
from migrator.errors import ConfigError

FIXTURE = Path(__file__).parents[1] / "data" / "mig_parted_config_default.yaml"
DOCUMENT = load_config(FIXTURE)
GPUS = migrator.known_gpus()

A100_40, A100_80, A30, B200 = "A100-40GB", "A100-80GB", "A30-24GB", "B200"
H100_80, H100_NVL, H200, RTX = "H100-80GB", "H100-94GB", "H200-141GB", "RTX-PRO-6000-BLACKWELL"


def _group(configs: str, *gpus: str) -> dict[str, tuple[str, ...]]:
    return {name: gpus for name in configs.split()}


# NVIDIA's comments, restricted to the GPUs migrator has tables for (GB200, GB300, B300, GH200,
# H100-96GB, H20 and PG506 have none). The GH200 group's 45/90/180 GB sizes are B200 profiles.
MEANT_FOR = {
    **_group("all-disabled all-enabled", *GPUS),
    **_group("all-1g.5gb all-1g.5gb.me all-2g.10gb all-3g.20gb all-4g.20gb all-7g.40gb", A100_40),
    **_group("all-1g.24gb.gfx all-1g.24gb.me.all all-1g.24gb-me all-2g.48gb all-2g.48gb.gfx all-2g.48gb.me.all "
             "all-2g.48gb-me all-4g.96gb all-4g.96gb.gfx", RTX),
    **_group("all-1g.10gb", H100_80, A100_80, A100_40),
    **_group("all-1g.10gb.me all-1g.20gb all-2g.20gb all-3g.40gb all-4g.40gb all-7g.80gb", H100_80, A100_80),
    **_group("all-1g.6gb all-1g.6gb.me all-2g.12gb all-2g.12gb.me all-4g.24gb", A30),
    **_group("all-1g.12gb all-1g.12gb.me all-1g.24gb all-2g.24gb all-1g.24gb.me "
             "all-3g.47gb all-4g.47gb all-7g.94gb", H100_NVL),
    **_group("all-balanced", B200, H200, H100_NVL, H100_80, A100_80, A100_40, A30, RTX),
    **_group("all-1g.18gb all-1g.18gb.me all-1g.35gb all-2g.35gb all-3g.71gb all-4g.71gb all-7g.141gb", H200),
    **_group("all-1g.23gb all-1g.23gb.me all-1g.45gb all-2g.45gb all-3g.90gb all-4g.90gb all-7g.180gb", B200),
}
PAIRS = [(config, gpu) for config, gpus in MEANT_FOR.items() for gpu in gpus]
REFUSED = {("all-1g.24gb.me", H100_NVL): "1g.24gb+me is a profile of RTX-PRO-6000-BLACKWELL"}


def _counts(layout: str) -> dict[str, int]:
    return dict(Counter(p.split("@")[0] for p in layout.split(",") if p))


def _asked(config: str, gpu: str) -> dict[str, int] | None:
    """The counts the configuration's entry for this GPU asks (None: MIG off), read from the
    document directly: the entry without a filter, or the one whose filter names the GPU."""
    geometry = migrator.Geometry.for_gpu(gpu)
    ids = {format_device_id(i) for i in device_ids_for(gpu)}
    for entry in DOCUMENT["mig-configs"][config]:
        wanted = entry.get("device-filter")
        wanted = {wanted} if isinstance(wanted, str) else set(wanted or ())
        if not wanted or wanted & ids:
            if not entry["mig-enabled"]:
                return None
            return {geometry.profile(k).name: v for k, v in entry["mig-devices"].items() if v}
    raise AssertionError(f"no entry of {config} is for {gpu}")


def test_the_fixture_names_every_configuration_the_table_does():
    assert set(MEANT_FOR) <= set(DOCUMENT["mig-configs"])
    assert len(PAIRS) == 81  # the count of pairs meant for GPUs migrator knows


@pytest.mark.parametrize("config, gpu", PAIRS, ids=[f"{c}-{g}" for c, g in PAIRS])
def test_every_pair_meant_for_a_known_gpu_imports_or_names_its_reason(config, gpu):
    geometry = migrator.Geometry.for_gpu(gpu)
    device_id = device_ids_for(gpu)[0]
    if (config, gpu) in REFUSED:
        with pytest.raises(ConfigError, match=re.escape(REFUSED[(config, gpu)])) as info:
            import_config(DOCUMENT, config, [geometry], device_ids=[device_id])
        assert info.value.field == f"mig-configs.{config}[0].mig-devices"
        return
    (target,) = import_config(DOCUMENT, config, [geometry], device_ids=[device_id])
    asked = _asked(config, gpu)
    assert target.mig_enabled is (asked is not None)
    if asked is not None:
        assert geometry.is_valid(target.layout)
        assert _counts(target.layout) == asked == dict(target.counts)


@pytest.mark.parametrize("gpu", GPUS)
def test_every_configuration_on_every_gpu_is_a_layout_nothing_or_a_config_error(gpu):
    """Configurations meant for other GPUs: a filter leaves the GPU alone (no target), or the
    import is a ConfigError naming the entry; never another exception, never an invalid layout."""
    geometry = migrator.Geometry.for_gpu(gpu)
    for config in DOCUMENT["mig-configs"]:
        try:
            targets = import_config(DOCUMENT, config, [geometry], device_ids=device_ids_for(gpu)[:1])
        except ConfigError as exc:
            assert exc.field.startswith(f"mig-configs.{config}[")
            continue
        assert all(geometry.is_valid(t.layout) for t in targets)


def test_every_product_of_a_table_gets_the_same_targets():
    """An A800-40GB is an A100-40GB to migrator; NVIDIA's filters agree for every id but one:
    all-1g.35gb names the H200 SXM (0x233510DE) and not the H200 NVL (0x233B10DE), which it
    leaves alone (as mig-parted would)."""
    nvl = import_config(DOCUMENT, "all-1g.35gb", [migrator.Geometry.for_gpu(H200)], device_ids=["0x233B10DE"])
    assert nvl == []
    for gpu in GPUS:
        geometry = migrator.Geometry.for_gpu(gpu)
        for config in ("all-balanced", "all-1g.10gb", "all-1g.35gb"):
            seen = set()
            for device_id in device_ids_for(gpu):
                if (config, device_id) == ("all-1g.35gb", 0x233B10DE):
                    continue
                try:
                    seen.add(tuple(t.layout for t in import_config(DOCUMENT, config, [geometry],
                                                                    device_ids=[device_id])))
                except ConfigError as exc:
                    seen.add(str(exc))
            assert len(seen) == 1, (gpu, config, seen)


def test_without_device_ids_a_filtered_entry_is_a_named_error():
    with pytest.raises(ConfigError, match="--device-id") as info:
        import_config(DOCUMENT, "all-balanced", [migrator.Geometry.for_gpu(A100_40)])
    assert info.value.field == "mig-configs.all-balanced[0].device-filter"


def test_a_device_id_of_another_gpu_is_refused_by_name():
    with pytest.raises(ConfigError, match="0x233010DE is a H100-80GB") as info:
        import_config(DOCUMENT, "all-balanced", [migrator.Geometry.for_gpu(A100_40)], device_ids=["0x233010de"])
    assert info.value.field == "device_ids[0]"


def test_an_id_migrator_has_no_table_for_matches_only_filters_naming_it():
    nvl = [migrator.Geometry.for_gpu(H100_NVL)]
    assert import_config(DOCUMENT, "all-balanced", nvl, device_ids=["0x999910DE"]) == []
    # A GH200's id: the H100-96GB entry applies, and its 3g.48gb is no H100 NVL profile.
    with pytest.raises(ConfigError, match=r"3g.48gb: unknown profile .*\(no built-in GPU has it\)") as info:
        import_config(DOCUMENT, "all-balanced", nvl, device_ids=["0x234210DE"])
    assert info.value.field == "mig-configs.all-balanced[11].mig-devices"


def test_pci_table_round_trips_and_covers_every_built_in_gpu():
    for gpu in GPUS:
        ids = device_ids_for(gpu)
        assert ids, gpu
        assert {gpu_for_device_id(i) for i in ids} == {gpu}
        assert gpu_for_device_id(format_device_id(ids[0]).lower()) == gpu
    assert gpu_for_device_id(0x294110DE) is None  # GB200: no table


# -- the command line ----------------------------------------------------------------------------


def _cli(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("config, device_id, counts", [
    ("all-balanced", "0x20B010DE", {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}),
    ("all-1g.10gb", "0x20B010DE", {"1g.10gb": 4}),
    ("all-1g.35gb", "0x233510DE", {"1g.35gb": 4}),
    ("all-balanced", "0x2BB510DE", {"1g.24gb": 2, "2g.48gb": 1}),
])
def test_cli_import_with_a_device_id(config, device_id, counts):
    result = _cli("mig-parted", "import", str(FIXTURE), config, "--device-id", device_id, "--count", "2", "--json")
    assert result.exit_code == 0, result.output
    targets = json.loads(result.output)
    assert [t["index"] for t in targets] == [0, 1]
    assert all(_counts(t["layout"]) == counts for t in targets)


def test_cli_device_ids_one_per_gpu_may_differ():
    result = _cli("mig-parted", "import", str(FIXTURE), "all-balanced", "--device-id", "0x20B710DE",
                  "--device-id", "0x233010DE", "--json")
    assert result.exit_code == 0, result.output
    assert [t["counts"] for t in json.loads(result.output)] == [
        {"1g.6gb": 2, "2g.12gb": 1}, {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}]


@pytest.mark.parametrize("args, words", [
    (["--device-id", "0x294110DE"], "no built-in GPU has device id 0x294110DE"),
    (["--device-id", "20B0"], "PCI device id such as 0x20B010DE"),
    (["--device-id", "0x20B010DE", "--device-id", "0x20B010DE", "--count", "3"], "2 device ids for 3 GPUs"),
    (["--gpu", "A30-24GB", "--device-id", "0x20B010DE"], "is a A100-40GB"),
])
def test_cli_device_id_errors_are_one_line(args, words):
    result = _cli("mig-parted", "import", str(FIXTURE), "all-balanced", *args)
    assert result.exit_code == 2 and words in result.output, result.output


def test_cli_reads_device_ids_through_nvml(tmp_path):
    """--backend: the ids come from nvmlDeviceGetPciInfo (here the emulator's answer)."""
    state = tmp_path / "gpus.json"
    NvmlEmulator([A30, H200]).save(state)
    result = _cli("mig-parted", "import", str(FIXTURE), "all-balanced", "--backend", "emulator",
                  "--emulator-state", str(state), "--json")
    assert result.exit_code == 0, result.output
    assert [t["counts"] for t in json.loads(result.output)] == [
        {"1g.6gb": 2, "2g.12gb": 1}, {"1g.18gb": 2, "2g.35gb": 1, "3g.71gb": 1}]


def test_emulator_answers_pci_info_like_nvidia_ml_py():
    emulator = NvmlEmulator([H100_NVL, A100_80])
    backend = NvmlBackend(emulator).open()
    assert [format_device_id(backend.pci_device_id(i)) for i in range(2)] == ["0x232110DE", "0x20B210DE"]
    info = emulator.nvmlDeviceGetPciInfo(emulator.nvmlDeviceGetHandleByIndex(1))
    assert (info.bus, info.busId) == (2, b"00000000:02:00.0")


def test_the_fixture_is_yaml_mig_parted_reads():
    assert yaml.safe_load(FIXTURE.read_text())["version"] == "v1"


def test_emulator_pci_info_has_nvidia_ml_pys_fields():
    pynvml = pytest.importorskip("pynvml")
    from migrator.actuation.emulator import nvmlPciInfo_t

    assert [f[0] for f in nvmlPciInfo_t._fields_] == [f[0] for f in pynvml.nvmlPciInfo_t._fields_]
    assert [ctypes_size(f[1]) for f in nvmlPciInfo_t._fields_] == [ctypes_size(f[1]) for f in pynvml.nvmlPciInfo_t._fields_]


def ctypes_size(kind: object) -> int:
    import ctypes

    return ctypes.sizeof(kind)  # type: ignore[arg-type]
