"""What an import records to tell an edit from a touch (docs/contract.md §5).

An import in a session reads what a plain import reads and nothing more: code from a
valid ``.pyc`` is fingerprinted by that ``.pyc`` (its header names the source stamp),
the source is only read again when its stamp moves, and a touch is still no change.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PkgFactory
from subsession import _core

RUNS = "_subsession_fingerprint_runs"


def body(tag: str, rest: str) -> str:
    return f"import sys as _s\n_s.__dict__.setdefault({RUNS!r}, []).append({tag!r})\n{rest}"


def runs(tag: str) -> int:
    return sum(1 for t in getattr(sys, RUNS, []) if t == tag)


def set_mtime(path: Path, seconds: int) -> None:
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


def precompiled(pkgs: PkgFactory, source: str, *, other_process: bool = True) -> tuple[str, Path]:
    """A package ``<name>`` with module ``m`` whose ``.pyc`` is already written (by
    another interpreter, as a host import or an install step would have)."""
    name = pkgs.unique("fp")
    root = pkgs.make(name, files={"__init__.py": "", "m.py": source})
    path = root / name / "m.py"
    set_mtime(path, 1_600_000_000)
    if other_process:
        subprocess.run(
            [sys.executable, "-c", f"import py_compile; py_compile.compile({str(path)!r})"],
            check=True,
        )
    else:
        py_compile.compile(str(path))
    return name, path


def read_bytes_of_process() -> int:
    with open("/proc/self/io", encoding="ascii") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="Linux /proc counts reads")
def test_an_import_from_a_valid_pyc_does_not_read_the_source(
    pkgs: PkgFactory, new_session: Any
) -> None:
    # 4 MB of comments: the .pyc is tiny, so reading the source shows in the count.
    name, path = precompiled(pkgs, "# padding\n" * 400_000 + "X = 1\n")
    s = new_session(paths=[path.parent.parent])
    s.import_module(name)
    before = read_bytes_of_process()
    module = s.import_module(f"{name}.m")
    read = read_bytes_of_process() - before
    assert module.X == 1
    assert read < 1_000_000, f"the import read {read} bytes: the 4 MB source was read"
    assert s.stale() == []


@pytest.mark.parametrize("other_process", [True, False])
def test_a_touch_of_a_module_run_from_its_pyc_is_not_a_change(
    pkgs: PkgFactory, new_session: Any, other_process: bool
) -> None:
    # A constant set of strings: its order in the .pyc depends on the hash seed of the
    # process that wrote it, so the comparison must be of code, not of marshal bytes.
    tag = pkgs.unique("tag")
    source = body(
        tag,
        "KINDS = {'mesh', 'joint', 'camera', 'light'}\n"
        "def f(x):\n    return x in {'a', 'b', 'c'}\n",
    )
    name, path = precompiled(pkgs, source, other_process=other_process)
    s = new_session(paths=[path.parent.parent])
    module = s.import_module(f"{name}.m")
    assert runs(tag) == 1
    set_mtime(path, 1_600_000_100)  # an editor's save of the same bytes
    assert s.stale() == []
    assert s.reload_stale() == []
    path.write_text(source)  # a checkout rewriting the same bytes
    set_mtime(path, 1_600_000_200)
    assert s.stale() == []
    assert runs(tag) == 1
    # Same size, new code: a change.
    path.write_text(source.replace("'camera'", "'cemara'"))
    set_mtime(path, 1_600_000_300)
    assert s.stale() == [f"{name}.m"]
    assert s.reload_stale() == [f"{name}.m"]
    assert "cemara" in module.KINDS and runs(tag) == 2


def test_a_same_size_edit_of_a_module_run_from_its_pyc_is_a_change(
    pkgs: PkgFactory, new_session: Any
) -> None:
    name, path = precompiled(pkgs, "VALUE = 1\n")
    s = new_session(paths=[path.parent.parent])
    module = s.import_module(f"{name}.m")
    path.write_text("VALUE = 2\n")
    set_mtime(path, 1_600_000_100)
    assert s.stale() == [f"{name}.m"]
    # Back to what ran: no change after all.
    path.write_text("VALUE = 1\n")
    set_mtime(path, 1_600_000_200)
    assert s.stale() == []
    path.write_text("VALUE = 3\n")
    set_mtime(path, 1_600_000_300)
    assert s.stale() == [f"{name}.m"]
    assert s.reload_stale() == [f"{name}.m"] and module.VALUE == 3


def test_without_its_pyc_a_touch_counts_as_a_change(pkgs: PkgFactory, new_session: Any) -> None:
    """No record of what ran is left: a needless reload, never a missed one."""
    name, path = precompiled(pkgs, "VALUE = 1\n")
    s = new_session(paths=[path.parent.parent])
    s.import_module(f"{name}.m")
    os.remove(importlib.util.cache_from_source(str(path)))
    set_mtime(path, 1_600_000_100)
    assert s.stale() == [f"{name}.m"]


def test_a_host_import_rewriting_the_pyc_after_an_edit_still_shows_the_edit(
    pkgs: PkgFactory, new_session: Any
) -> None:
    name, path = precompiled(pkgs, "VALUE = 1\n")
    s = new_session(paths=[path.parent.parent])
    s.import_module(f"{name}.m")
    path.write_text("VALUE = 2\n")
    set_mtime(path, 1_600_000_100)
    py_compile.compile(str(path))  # the .pyc now names the new stamp
    assert s.stale() == [f"{name}.m"]


def test_the_watcher_tells_a_touch_from_an_edit_of_a_module_run_from_its_pyc(
    pkgs: PkgFactory, new_session: Any
) -> None:
    name, path = precompiled(pkgs, "KINDS = {'a', 'b', 'c'}\n")
    s = new_session(paths=[path.parent.parent])
    s.import_module(f"{name}.m")
    watch = _core.Watch(s._core)
    assert watch.poll() == []
    set_mtime(path, 1_600_000_100)
    assert watch.poll() == []
    path.write_text("KINDS = {'a', 'b', 'd'}\n")
    set_mtime(path, 1_600_000_200)
    assert watch.poll() == [f"{name}.m"]
    assert watch.poll() == []  # seen: not reported again until the next save
    path.write_text("KINDS = {'a', 'b', 'e'}\n")
    set_mtime(path, 1_600_000_300)
    assert watch.poll() == [f"{name}.m"]
