"""Documented MIG facts per GPU, written out independently of the YAML tables.

Written as mig-parted writes its tests: a table keyed by GPU model. Each row is
profile: (compute slices, memory slices, max count, allowed starts). Sources:
- [UG] NVIDIA Multi-Instance GPU User Guide (v580), "Supported MIG Profiles", the
  per-GPU "GPU Instance Profiles" tables (instances available, fraction of memory and
  SMs) and the `nvidia-smi mig -lgipp` placement listings of its "Getting Started".
- [H100-NVML] read-only NVML + `nvidia-smi mig -lgipp` on a real H100 80GB HBM3,
  driver 580.159.04 (tests/data/*h100_80gb_hbm3*).
- [H200-NVML] the same read on a real NVIDIA H200, driver 580.159.04.
- [RTX-610] `nvidia-smi mig -lgip/-lgipp` on an RTX PRO 6000 Blackwell Server Edition,
  driver 610.43.02, as published; [UG] Table "RTX PRO 6000 Blackwell" for the profile set.
"""

from __future__ import annotations

import pytest

import migrator

SEVEN = (0, 1, 2, 3, 4, 5, 6)
EVEN = (0, 2, 4, 6)

# The 8-memory-slice, 7-compute-slice family (A100 80GB, H100, H200, B200) shares one
# shape; only the memory in the names changes. [UG] tables; [H100-NVML]; [H200-NVML].
def _hopper_shape(small: str, double: str, half: str, full: str) -> dict[str, tuple]:
    return {
        f"1g.{small}": (1, 1, 7, SEVEN),
        f"1g.{small}+me": (1, 1, 1, SEVEN),
        f"1g.{double}": (1, 2, 4, EVEN),
        f"2g.{double}": (2, 2, 3, (0, 2, 4)),
        f"3g.{half}": (3, 4, 2, (0, 4)),
        f"4g.{half}": (4, 4, 1, (0,)),
        f"7g.{full}": (7, 8, 1, (0,)),
    }


FACTS: dict[str, dict[str, tuple]] = {
    # [UG] "A30 MIG Profiles": 4 memory slices, 4 compute slices.
    "A30-24GB": {
        "1g.6gb": (1, 1, 4, (0, 1, 2, 3)),
        "1g.6gb+me": (1, 1, 1, (0, 1, 2, 3)),
        "2g.12gb": (2, 2, 2, (0, 2)),
        "2g.12gb+me": (2, 2, 1, (0, 2)),
        "4g.24gb": (4, 4, 1, (0,)),
    },
    # [UG] "A100 MIG Profiles", A100-SXM4-40GB; 1g.10gb is 1/7 SMs with 2/8 memory.
    "A100-40GB": {
        "1g.5gb": (1, 1, 7, SEVEN),
        "1g.5gb+me": (1, 1, 1, SEVEN),
        "1g.10gb": (1, 2, 4, EVEN),
        "2g.10gb": (2, 2, 3, (0, 2, 4)),
        "3g.20gb": (3, 4, 2, (0, 4)),
        "4g.20gb": (4, 4, 1, (0,)),
        "7g.40gb": (7, 8, 1, (0,)),
    },
    "A100-80GB": _hopper_shape("10gb", "20gb", "40gb", "80gb"),  # [UG] A100-80GB
    "H100-80GB": _hopper_shape("10gb", "20gb", "40gb", "80gb"),  # [H100-NVML], [UG]
    "H100-94GB": _hopper_shape("12gb", "24gb", "47gb", "94gb"),  # [UG] H100 NVL
    "H200-141GB": _hopper_shape("18gb", "35gb", "71gb", "141gb"),  # [H200-NVML], [UG]
    "B200": _hopper_shape("23gb", "45gb", "90gb", "180gb"),  # [UG] B200 profile set
    # [RTX-610]: 12 placement units, 4 compute slices; a 1g instance spans 3 units.
    "RTX-PRO-6000-BLACKWELL": {
        "1g.24gb": (1, 3, 4, (0, 3, 6, 9)),
        "1g.24gb+gfx": (1, 3, 4, (0, 3, 6, 9)),
        "1g.24gb-me": (1, 3, 4, (0, 3, 6, 9)),
        "1g.24gb+me": (1, 3, 1, (0, 3, 6, 9)),
        "1g.24gb+me.all": (1, 3, 1, (0, 3, 6, 9)),
        "2g.48gb": (2, 6, 2, (0, 6)),
        "2g.48gb+gfx": (2, 6, 2, (0, 6)),
        "2g.48gb-me": (2, 6, 2, (0, 6)),
        "2g.48gb+me.all": (2, 6, 1, (0, 6)),
        "4g.96gb": (4, 12, 1, (0,)),
        "4g.96gb+gfx": (4, 12, 1, (0,)),
    },
}

SLICES = {  # (memory slices, compute slices) of the whole GPU
    "A30-24GB": (4, 4),
    "RTX-PRO-6000-BLACKWELL": (12, 4),
}


def test_every_built_in_gpu_has_documented_facts():
    assert set(FACTS) == set(migrator.known_gpus())


@pytest.mark.parametrize("gpu", sorted(FACTS))
def test_profile_set_is_the_documented_one(gpu):
    assert {p.name for p in migrator.Geometry.for_gpu(gpu).profiles} == set(FACTS[gpu])


@pytest.mark.parametrize(
    ("gpu", "profile"), [(g, p) for g in sorted(FACTS) for p in sorted(FACTS[g])], ids=lambda v: v
)
def test_profile_shape_count_and_placements(gpu, profile):
    p = migrator.Geometry.for_gpu(gpu).profile(profile)
    compute, memory, max_count, starts = FACTS[gpu][profile]
    assert (p.compute_slices, p.memory_slices, p.max_count) == (compute, memory, max_count)
    assert p.starts == starts
    assert all(size == memory for _, size in p.placements)


@pytest.mark.parametrize("gpu", sorted(FACTS))
def test_gpu_slices(gpu):
    g = migrator.Geometry.for_gpu(gpu)
    assert (g.memory_slices, g.compute_slices) == SLICES.get(gpu, (8, 7))


def test_one_profile_name_means_different_shapes_on_different_gpus():
    # [UG]: 1g.10gb is 2 memory slices on A100 40GB, 1 on A100 80GB / H100.
    assert migrator.Geometry.for_gpu("A100-40GB").profile("1g.10gb").memory_slices == 2
    assert migrator.Geometry.for_gpu("H100-80GB").profile("1g.10gb").memory_slices == 1


@pytest.mark.parametrize("gpu", sorted(FACTS))
def test_max_count_instances_fit_together(gpu):
    # NVML's instanceCount is reachable: that many instances fit at once on an empty GPU.
    g = migrator.Geometry.for_gpu(gpu)
    for p in g.profiles:
        layouts = [s for s in g.layouts() if s and all(t.split("@")[0] == p.name for t in s.split(","))]
        assert max(len(s.split(",")) for s in layouts) == p.max_count, p.name


def test_only_one_media_extension_instance_on_h100():
    # [H100-NVML]: the single OFA goes to whichever instance holds +me.
    g = migrator.Geometry.for_gpu("H100-80GB")
    assert not g.is_valid("1g.10gb+me@0,1g.10gb+me@1")
    assert g.is_valid("1g.10gb+me@0,1g.10gb@1,1g.10gb@2,1g.10gb@3,1g.10gb@4,1g.10gb@5,1g.10gb@6")


def test_me_all_takes_every_media_engine_on_rtx_pro_6000():
    # [RTX-610]: +me.all holds all 4 decoders, so no other decoder-holding instance fits,
    # while -me instances (no media engines) still do.
    g = migrator.Geometry.for_gpu("RTX-PRO-6000-BLACKWELL")
    assert g.is_valid("1g.24gb+me.all@0,1g.24gb-me@3,1g.24gb-me@6,1g.24gb-me@9")
    with pytest.raises(migrator.errors.InvalidLayout) as info:
        g.validate("1g.24gb+me.all@0,1g.24gb@3")
    assert info.value.rule == "engines"


@pytest.mark.parametrize("gpu", ["A100-80GB", "H100-80GB"])
def test_profile_name_variants_from_older_drivers_resolve(gpu):
    # 3g.39gb / 7g.79gb: names older drivers gave the 80 GB parts' profiles (see the tables).
    g = migrator.Geometry.for_gpu(gpu)
    assert g.canonical("MIG 3g.39gb@4") == "3g.40gb@4"
    if gpu == "A100-80GB":
        assert g.canonical("7g.79gb@0") == "7g.80gb@0"
