"""The shipped type stub must describe the compiled module (scikit_build_example's drifted)."""

from __future__ import annotations

import ast
from importlib import resources

from migrator import _core


def _stub_names() -> dict[str, set[str]]:
    text = (resources.files("migrator") / "_core.pyi").read_text(encoding="utf-8")
    names: dict[str, set[str]] = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = {
                item.name if isinstance(item, ast.FunctionDef) else item.targets[0].id
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.Assign))
            }
            names[node.name] = {n for n in names[node.name] if not n.startswith("_")}
    return names


def _public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def _stub_functions() -> set[str]:
    text = (resources.files("migrator") / "_core.pyi").read_text(encoding="utf-8")
    return {node.name for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}


def test_stub_names_equal_module_names():
    assert set(_stub_names()) | _stub_functions() == _public(_core)


def test_stub_members_equal_class_members():
    for cls, members in _stub_names().items():
        actual = _public(getattr(_core, cls))
        if cls == "Rule":  # pybind11 enums add name/value helpers of their own
            actual = {n for n in actual if n in members or not hasattr(int, n)} - {"name", "value"}
        assert members == actual, cls
