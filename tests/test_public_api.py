"""What users import keeps working across the move to stage folders: the names of ``migrator``
itself, and the old flat module paths (with a warning naming the new one)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import pytest

import migrator
from migrator._moved import MOVED, new_name


@pytest.fixture
def forget_old_path():
    """Importing an old path leaves a view in sys.modules and on the package: take both away
    again, so that other tests see the package as it was."""
    before = set(sys.modules), set(vars(migrator))
    yield
    for name in set(sys.modules) - before[0]:
        if name.partition(".")[2] in MOVED:
            del sys.modules[name]
    for name in set(vars(migrator)) - before[1]:
        if name in MOVED:
            delattr(migrator, name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_flat_path_imports_its_new_module_with_a_warning(old, forget_old_path):
    if f"migrator.{old}" in sys.modules:
        pytest.skip("already imported through its old path by an earlier test")
    with pytest.warns(DeprecationWarning, match=new_name(old).replace(".", r"\.")):
        view = importlib.import_module(f"migrator.{old}")
    real = importlib.import_module(new_name(old))
    assert view is not real
    assert real.__spec__.name == new_name(old)  # the real module's identity is untouched
    names = list(getattr(real, "__all__", ())) or [n for n in vars(real) if not n.startswith("__")][:5]
    assert names and all(getattr(view, n) is getattr(real, n) for n in names)


def test_an_unknown_name_of_an_old_path_is_an_attribute_error(forget_old_path):
    with pytest.warns(DeprecationWarning):
        view = importlib.import_module("migrator.goodput")
    with pytest.raises(AttributeError):
        view.no_such_thing  # noqa: B018


def test_old_and_new_paths_name_the_same_modules():
    for old, stage in MOVED.items():
        spec = importlib.util.find_spec(new_name(old))
        assert spec is not None and spec.origin.endswith(os.path.join(stage, f"{old}.py"))


@pytest.mark.parametrize("name", migrator.__all__)
def test_every_public_name_resolves(name):
    assert getattr(migrator, name) is not None


def test_public_names_are_the_stage_modules_own():
    from migrator.planning import planner
    from migrator.workload import goodput

    assert migrator.Planner is planner.Planner and migrator.Plan is planner.Plan
    assert migrator.planner is planner and migrator.goodput is goodput
    assert migrator.geometry.Geometry is migrator.Geometry  # the stage package re-exports its module


def test_the_cluster_package_keeps_the_ray_layers_names():
    pytest.importorskip("ray")
    from migrator.cluster import ClusterController, cluster

    assert ClusterController is cluster.ClusterController
    with pytest.raises(AttributeError):
        migrator.cluster.no_such_thing  # noqa: B018
