#!/usr/bin/env bash
# Builds tests/c/storm.c (the adversarial C host) and runs it against the library:
# 8 threads of bad input for STORM_SECONDS (default 20), STORM_RUNS times (default 1),
# then, where valgrind exists, a short run under memcheck that fails on any invalid
# access. Exit status: non-zero on any failed check, crash or stall. Environment:
#   CC, PYTHON_CONFIG, SUBSESSION_CDYLIB   as for tests/c/run.sh
#   STORM_SECONDS, STORM_RUNS, STORM_VALGRIND_SECONDS (default 4; 0 skips valgrind)
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
PYTHON_CONFIG=${PYTHON_CONFIG:-python3-config}
SECONDS_PER_RUN=${STORM_SECONDS:-20}
RUNS=${STORM_RUNS:-1}
VALGRIND_SECONDS=${STORM_VALGRIND_SECONDS:-4}

if [ -n "${SUBSESSION_CDYLIB:-}" ]; then
    lib=$(realpath "$SUBSESSION_CDYLIB")
else
    cargo build --lib --quiet
    lib=$PWD/target/debug/libsubsession.so
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/subsession-storm.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pyroot/subsession"
for f in maya/scripts/subsession/*; do
    case "$(basename "$f")" in _core*|__pycache__|platforms) continue ;; esac
    ln -s "$PWD/$f" "$work/pyroot/subsession/"
done
ln -s "$lib" "$work/pyroot/subsession/_core.abi3.so"

# shellcheck disable=SC2046  # the flags are meant to split
"$CC" -std=gnu11 -O1 -g -Wall -Wextra -Werror -Iinclude $("$PYTHON_CONFIG" --includes) \
    tests/c/storm.c -o "$work/storm" \
    $("$PYTHON_CONFIG" --ldflags --embed) -ldl -lpthread

status=0
for run in $(seq 1 "$RUNS"); do
    echo "storm run $run/$RUNS ($SECONDS_PER_RUN s)"
    # The host's own timeout is the watchdog inside; this one only bounds CI.
    rc=0
    timeout $((SECONDS_PER_RUN + 120)) "$work/storm" "$lib" "$work/pyroot" "$SECONDS_PER_RUN" \
        > "$work/out.txt" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        status=1
        [ "$rc" -gt 128 ] && echo "FAIL - the host died with signal $((rc - 128))"
    fi
    grep -E '^(ok|FAIL)|passed|panic|undocumented' "$work/out.txt" | tail -n 12 || true
    [ "$status" = 0 ] || { echo "storm run $run failed; last output:"; tail -n 30 "$work/out.txt"; break; }
done

if [ "$status" = 0 ] && [ "$VALGRIND_SECONDS" != 0 ] && command -v valgrind >/dev/null; then
    echo "storm under valgrind memcheck ($VALGRIND_SECONDS s)"
    # PYTHONMALLOC=malloc: CPython's own allocator reads freed memory by design.
    # --undef-value-errors=no: a plain `python -c "import threading"` already reports
    # uninitialised values inside CPython's finaliser here; invalid reads, writes and
    # frees (what a crash is made of) are what this run looks for.
    if ! PYTHONMALLOC=malloc timeout 900 valgrind --quiet --error-exitcode=99 \
        --undef-value-errors=no --errors-for-leak-kinds=none \
        --suppressions="$PWD/tests/c/valgrind.supp" \
        "$work/storm" "$lib" "$work/pyroot" "$VALGRIND_SECONDS" 600 1 > "$work/vg.txt" 2>&1; then
        status=1
        tail -n 60 "$work/vg.txt"
    else
        grep -E 'passed' "$work/vg.txt" | tail -n 1 || true
    fi
fi
exit $status
