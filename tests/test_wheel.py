"""The wheel route of issue 19 item 1: tools/build_manylinux_wheel.sh builds a manylinux_2_28
wheel with zig's clang (no Docker), and tools/check_wheel_install.sh installs it where no
compiler can be used and runs `migrator demo` from it.

The build and the install take a few minutes and install from PyPI, so those tests are marked
slow (`pytest -m slow tests/test_wheel.py`). What `auditwheel show` says is cross-checked with
the symbol versions that binutils' `objdump -p` reads from the built `_core` itself; the
reader is held to the installed `_core` in the default run.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import migrator

REPO = Path(__file__).resolve().parents[1]
ARCH = platform.machine()
#: manylinux_2_28: glibc 2.28 (PEP 600), the baseline that pyproject.toml's cibuildwheel images use.
GLIBC_LIMIT = (2, 28)
#: What the extension may link dynamically: glibc's own libraries. A subset of auditwheel's
#: manylinux_2_28 policy list, on purpose: no libstdc++ or libgcc_s (zig links libc++ in).
GLIBC_LIBRARIES = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
                   "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}

needs_objdump = pytest.mark.skipif(shutil.which("objdump") is None, reason="no objdump (binutils)")


def version_references(shared_object: Path) -> tuple[set[str], dict[str, set[str]]]:
    """The libraries and the symbol versions a shared object needs, as `objdump -p` prints them.

    Parameters
    ----------
    shared_object
        An ELF shared object.

    Returns
    -------
    needed, versions
        The DT_NEEDED libraries, and for each library its required versions (``GLIBC_2.14``).
    """
    text = subprocess.run(["objdump", "-p", str(shared_object)], check=True,
                          capture_output=True, text=True).stdout
    needed = set(re.findall(r"^\s*NEEDED\s+(\S+)", text, flags=re.MULTILINE))
    versions: dict[str, set[str]] = {}
    library = None
    for line in text.splitlines():
        required = re.match(r"\s*required from (\S+):", line)
        if required:
            library = required.group(1)
            versions[library] = set()
        elif library and re.match(r"\s+0x[0-9a-f]+ 0x[0-9a-f]+ \d+ \S+$", line):
            versions[library].add(line.split()[-1])
    return needed, versions


def glibc_versions(versions: dict[str, set[str]]) -> list[tuple[int, ...]]:
    """Every ``GLIBC_x.y[.z]`` version in `versions`, as integer tuples."""
    return [tuple(int(part) for part in name.removeprefix("GLIBC_").split("."))
            for names in versions.values() for name in names if name.startswith("GLIBC_")]


@needs_objdump
def test_the_reader_sees_glibc_in_the_installed_core():
    # Whatever compiler built the test environment's _core, it needs libc.so.6 at some
    # GLIBC_ version: an empty read would let the wheel's checks below pass vacuously.
    needed, versions = version_references(Path(migrator._core.__file__))
    assert "libc.so.6" in needed
    assert glibc_versions({"libc.so.6": versions["libc.so.6"]})


def run_tool(script: str, *args: str) -> str:
    """Run tools/`script` with `args` and this interpreter as $PYTHON; its stdout and stderr as
    one text, in the order written."""
    ran = subprocess.run(["bash", str(REPO / "tools" / script), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "PYTHON": sys.executable})
    assert ran.returncode == 0, ran.stdout[-4000:]
    return ran.stdout


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> tuple[Path, str]:
    """The wheel that tools/build_manylinux_wheel.sh builds for this Python, and its output."""
    out = tmp_path_factory.mktemp("wheelhouse")
    output = run_tool("build_manylinux_wheel.sh", str(out), sys.executable)
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, (wheels, output[-4000:])
    return wheels[0], output


@pytest.mark.slow
def test_the_wheel_is_tagged_manylinux_2_28_for_this_python(wheelhouse):
    wheel, _ = wheelhouse
    python_tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert wheel.name == f"migrator-{migrator.__version__}-{python_tag}-{python_tag}-manylinux_2_28_{ARCH}.whl"


def auditwheel_report(output: str, wheel_name: str) -> str:
    """The `auditwheel show` paragraph about `wheel_name`, its line wrapping undone."""
    flat = " ".join(output.split())
    start = flat.rindex(f"{wheel_name} is consistent with")
    end = flat.find(" == ", start)  # the script's next step
    return flat[start:] if end < 0 else flat[start:end]


@pytest.mark.slow
def test_auditwheel_finds_the_repaired_wheel_within_manylinux_2_28(wheelhouse):
    wheel, output = wheelhouse
    report = auditwheel_report(output, wheel.name)
    tag = re.search(r'consistent with the following platform tag: "manylinux_(\d+)_(\d+)_', report)
    assert tag, report
    assert (int(tag.group(1)), int(tag.group(2))) <= GLIBC_LIMIT, report


@pytest.mark.slow
@needs_objdump
def test_the_core_needs_glibc_2_28_at_most_and_no_cxx_runtime(wheelhouse, tmp_path):
    wheel, output = wheelhouse
    with zipfile.ZipFile(wheel) as archive:
        (core,) = [name for name in archive.namelist() if re.match(r"migrator/_core\..*\.so$", name)]
        so = Path(archive.extract(core, tmp_path))
    needed, versions = version_references(so)
    assert needed <= GLIBC_LIBRARIES, needed
    assert max(glibc_versions(versions)) <= GLIBC_LIMIT, versions
    foreign = {name for names in versions.values() for name in names if not name.startswith("GLIBC_")}
    assert not foreign, foreign  # GLIBCXX_/CXXABI_/GCC_: a C++ runtime would be linked
    # auditwheel read the same versions of libc.so.6 (it reads the ELF with pyelftools).
    listed = re.search(r"libc\.so\.6 with versions \{([^}]*)\}", auditwheel_report(output, wheel.name))
    assert listed and set(re.findall(r"'([^']+)'", listed.group(1))) == versions["libc.so.6"]


@pytest.mark.slow
def test_the_wheel_installs_without_a_compiler_and_runs_the_demo(wheelhouse):
    wheel, _ = wheelhouse
    output = run_tool("check_wheel_install.sh", str(wheel))
    imported = re.search(r"== migrator imported from\n(\S+)\n(\S+)\n", output)
    assert imported, output[-4000:]
    for path in imported.groups():
        assert "site-packages" in path and not path.startswith(str(REPO)), path
    # The layouts the zig-built core enumerates are the ones this environment's core does.
    geometry = migrator.Geometry.for_gpu("A100-40GB")
    counted = (f"{len(geometry.layouts())} valid layouts on A100-40GB, "
               f"{len(geometry.layouts(maximal=True))} maximal")
    assert counted in output
    assert re.search(r"^solver: .*Optimal", output, flags=re.MULTILINE), output
    assert "expected Goodput:" in output
