#!/usr/bin/env bash
# Builds tests/c/host.c with the system C compiler against include/subsession.h,
# embedding Python (python3-config --embed), and runs it against the cargo-built
# library: two sessions, two versions of a module generated into a temp folder.
# Exit status: non-zero on any failed check. Environment:
#   CC             C compiler (default cc)
#   PYTHON_CONFIG  python-config of the Python the library was built for
#                  (default python3-config)
#   SUBSESSION_CDYLIB  test this library instead of building target/debug's
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
PYTHON_CONFIG=${PYTHON_CONFIG:-python3-config}

if [ -n "${SUBSESSION_CDYLIB:-}" ]; then
    lib=$(realpath "$SUBSESSION_CDYLIB")
else
    cargo build --lib --quiet
    lib=$PWD/target/debug/libsubsession.so
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/subsession-c.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The package, importable from $work/pyroot: symlinks to the sources, and
# _core.abi3.so -> the library under test, so Python imports the file the host
# dlopen()s (one loaded copy; a second copy would work too, see README.md, "C ABI").
mkdir -p "$work/pyroot/subsession"
for f in maya/scripts/subsession/*; do
    case "$(basename "$f")" in _core*|__pycache__) continue ;; esac
    ln -s "$PWD/$f" "$work/pyroot/subsession/"
done
ln -s "$lib" "$work/pyroot/subsession/_core.abi3.so"

# Two versions of one module.
for v in 1 2; do
    mkdir -p "$work/modules/v$v"
    cat > "$work/modules/v$v/greeting.py" <<PY
VERSION = "$v.0"


def version():
    return VERSION


def boom():
    raise ValueError("boom from " + VERSION)


class Greeter:
    @staticmethod
    def hello():
        return "hello from " + VERSION
PY
done

# The header must also parse as C++ (cpp_compat), where a C++ compiler exists.
if command -v c++ >/dev/null; then
    echo '#include "subsession.h"' | c++ -fsyntax-only -Wall -Wextra -Werror -Iinclude -x c++ -
fi

# shellcheck disable=SC2046  # the flags are meant to split
"$CC" -std=gnu11 -Wall -Wextra -Werror -Iinclude $("$PYTHON_CONFIG" --includes) \
    tests/c/host.c -o "$work/host" \
    $("$PYTHON_CONFIG" --ldflags --embed) -ldl -lpthread
"$work/host" "$lib" "$work/pyroot" "$work/modules"
