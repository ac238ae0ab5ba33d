#!/usr/bin/env bash
# Install a built migrator wheel where no compiler can be used, and run `migrator demo` from it.
#
# This is what a user of the released wheel gets: a fresh venv, pip allowed binary
# distributions only (--only-binary=:all:, so neither migrator nor any dependency can fall
# back to building from source), and no C or C++ compiler (CC=/bin/false, CXX=/bin/false
# and a PATH whose gcc, g++, cc, c++, clang and clang++ all fail). The demo runs in a
# temporary folder, away from the repository, and the script prints where `migrator` was
# imported from, which must be the venv's site-packages.
#
# Usage:
#   tools/check_wheel_install.sh WHEEL [--tests]
#     WHEEL    a wheel built by tools/build_manylinux_wheel.sh
#     --tests  also install the test extra and run the README's test command (`pytest`, the
#              default selection: slow tests stay out) on the repository's tests/ against the
#              installed wheel; --import-mode=importlib (pyproject.toml) and the src/ layout
#              keep the source tree off sys.path
# The interpreter is $PYTHON if set, else the python3.X on PATH that the wheel's cp3X tag
# names (with pyenv: PYTHON=~/.pyenv/versions/3.13.0/bin/python3.13). The venv is removed at
# the end. Exit status: non-zero if the install, the demo or the tests fail.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO

log() { printf '== %s\n' "$*" >&2; }

# python3.X for a wheel named ...-cp3X-cp3X-<plat>.whl
wheel_python() {
    local name tag
    name="$(basename "$1")"
    tag="$(printf '%s\n' "$name" | sed -n 's/.*-cp3\([0-9]*\)-cp3[0-9]*-.*/\1/p')"
    [ -n "$tag" ] || { echo "not a CPython wheel: $name" >&2; return 1; }
    echo "python3.$tag"
}

# A folder of compilers that all fail, to put first on PATH.
write_failing_compilers() {
    local dir="$1" name
    mkdir -p "$dir"
    for name in cc c++ gcc g++ clang clang++ "$(uname -m)-linux-gnu-gcc" "$(uname -m)-linux-gnu-g++"; do
        printf '#!/bin/sh\necho "%s: no compiler in this check" >&2\nexit 1\n' "$name" >"$dir/$name"
        chmod +x "$dir/$name"
    done
}

main() {
    [ $# -ge 1 ] || { sed -n '2,20p' "$0" >&2; return 2; }
    local wheel run_tests=""
    wheel="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
    [ "${2:-}" = "--tests" ] && run_tests=1

    local work python venv
    work="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" EXIT
    python="${PYTHON:-$(wheel_python "$wheel")}"
    venv="$work/venv"

    write_failing_compilers "$work/no-compiler"
    export PATH="$work/no-compiler:$PATH" CC=/bin/false CXX=/bin/false
    if cc --version >/dev/null 2>&1 || c++ --version >/dev/null 2>&1; then
        echo "a compiler is still usable" >&2
        return 1
    fi

    log "clean venv ($("$python" -V 2>&1)), no compiler, binary distributions only"
    "$python" -m venv "$venv"
    local target="$wheel"
    [ -n "$run_tests" ] && target="${wheel}[test]"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --only-binary=:all: "$target"

    cd "$work"
    log "migrator imported from"
    "$venv/bin/python" -c 'import migrator, migrator._core as c; print(migrator.__file__); print(c.__file__)'
    log "migrator demo"
    "$venv/bin/migrator" demo

    if [ -n "$run_tests" ]; then
        cd "$REPO"
        log "pytest (the README's test command) against the installed wheel, from $REPO"
        "$venv/bin/python" -c 'import migrator; print(migrator.__file__)'
        "$venv/bin/pytest" -p no:cacheprovider -q
    fi
}

main "$@"
