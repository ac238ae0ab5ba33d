"""Where the Numba kernels are cached (issue 19, item 1): outside the installed package.

Each case runs a fresh interpreter (Numba reads its cache folder once, when a kernel is
decorated) with its own HOME / XDG_CACHE_HOME / NUMBA_CACHE_DIR under tmp_path, compiles one
kernel, and reports where Numba's cache for it lives; the cache files must be there, and
nowhere else under tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrator.workload._numba_cache import cache_dir

SCRIPT = """
import json
from migrator.workload import _kernels
_kernels.md1_decay(0.5, 1.0)
cache = _kernels.md1_decay._cache
print(json.dumps({"path": getattr(cache, "_cache_path", None), "kind": type(cache).__name__}))
"""


def run(tmp_path: Path, **env: str) -> tuple[dict, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    environ["HOME"] = str(tmp_path / "home")
    environ.update(env)
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=environ, capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def cache_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")}


@pytest.mark.parametrize(
    "env, folder",
    [
        ({"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/migrator/numba"),
        ({}, "{tmp}/home/.cache/migrator/numba"),  # no XDG_CACHE_HOME: ~/.cache
        ({"XDG_CACHE_HOME": "{tmp}/xdg", "NUMBA_CACHE_DIR": "{tmp}/mine"}, "{tmp}/mine"),  # honoured
    ],
    ids=["xdg", "home", "NUMBA_CACHE_DIR"],
)
def test_kernels_are_cached_in_the_user_cache_not_the_package(tmp_path, env, folder):
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    folder = Path(folder.format(tmp=tmp_path))
    report, _ = run(tmp_path, **env)
    assert report["kind"] == "FunctionCache"
    assert Path(report["path"]).resolve().is_relative_to(folder.resolve())
    written = cache_files(tmp_path)
    assert written and all(p.resolve().is_relative_to(folder.resolve()) for p in written), written
    assert {p.suffix for p in written} == {".nbi", ".nbc"}


def test_an_unwritable_cache_folder_means_no_caching_not_an_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go", encoding="utf-8")
    report, stderr = run(tmp_path, XDG_CACHE_HOME=str(blocker))
    assert report["kind"] == "NullCache" and report["path"] is None
    assert "cannot be written" in stderr and "NUMBA_CACHE_DIR" in stderr
    assert cache_files(tmp_path) == set()


def test_cache_dir_follows_the_environment():
    assert cache_dir({"NUMBA_CACHE_DIR": "/x", "XDG_CACHE_HOME": "/y"}) == Path("/x")
    assert cache_dir({"NUMBA_CACHE_DIR": "", "XDG_CACHE_HOME": "/y"}) == Path("/y/migrator/numba")
    assert cache_dir({"HOME": "/h"}) == Path("/h/.cache/migrator/numba")
