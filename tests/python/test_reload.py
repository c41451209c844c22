"""docs/contract.md §5 (issue 5, items 3 and 7): stale detection and dependency-ordered reload,
through the real file system path.

Every edit is written to disk and given its own modification time with ``os.utime``
(two seconds apart, so Python's own pyc validation, which compares whole seconds, sees
each version too). Nothing is mocked: ``stale()`` compares what the engine recorded at
import time with what the file system says now.
"""

from __future__ import annotations

import itertools
import logging
import os
import py_compile
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import subsession
from conftest import SESSION_PREFIX, GlobalState, PkgFactory, assert_state_equal

RELOAD_RUNS = "_subsession_reload_test_runs"
# Fake modification times: far from "now", two seconds apart, strictly increasing.
_BASE_NS = 1_600_000_000 * 1_000_000_000
_tick = itertools.count(1)


def next_mtime_ns() -> int:
    return _BASE_NS + next(_tick) * 2_000_000_000


def counting(tag: str, body: str = "") -> str:
    """Module source that records each execution in ``sys.<RELOAD_RUNS>`` under ``tag``."""
    head = f"import sys as _s\n_s.__dict__.setdefault({RELOAD_RUNS!r}, []).append({tag!r})\n"
    return head + textwrap.dedent(body)


def runs(tag: str) -> int:
    return sum(1 for t in getattr(sys, RELOAD_RUNS, []) if t == tag)


class Tree:
    """A package folder whose files are edited with distinct, explicit mtimes."""

    def __init__(self, root: Path, package: str) -> None:
        self.root = root
        self.package = package

    def path(self, rel: str) -> Path:
        return self.root / self.package / rel

    def write(self, rel: str, source: str, *, mtime_ns: int | None = None) -> Path:
        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        ns = next_mtime_ns() if mtime_ns is None else mtime_ns
        os.utime(path, ns=(ns, ns))
        return path

    def touch(self, rel: str) -> None:
        ns = next_mtime_ns()
        os.utime(self.path(rel), ns=(ns, ns))


@pytest.fixture
def tree(pkgs: PkgFactory) -> Iterator[Tree]:
    name = pkgs.unique("rl")
    root = pkgs.make(name, files={"__init__.py": ""})
    t = Tree(root, name)
    os.utime(t.path("__init__.py"), ns=(next_mtime_ns(),) * 2)
    yield t


def session_on(new_session: Callable[..., Any], tree: Tree, **kw: Any) -> Any:
    return new_session(paths=[tree.root], **kw)


def imp(s: Any, tree: Tree, *names: str) -> list[Any]:
    return [s.import_module(f"{tree.package}.{n}") for n in names]


# -- stale() -------------------------------------------------------------------------------


def test_nothing_is_stale_right_after_import(tree: Tree, new_session: Any) -> None:
    tree.write("a.py", "A = 1\n")
    tree.write("b.py", "from . import a\n")
    s = session_on(new_session, tree)
    imp(s, tree, "b")
    assert sorted(s.modules) == [tree.package, f"{tree.package}.a", f"{tree.package}.b"]
    assert s.stale() == []


def test_edit_with_new_size_and_mtime_is_stale(tree: Tree, new_session: Any) -> None:
    tree.write("a.py", "A = 1\n")
    tree.write("b.py", "B = 1\n")
    s = session_on(new_session, tree)
    imp(s, tree, "a", "b")
    tree.write("a.py", "A = 1000\n")
    assert s.stale() == [f"{tree.package}.a"]
    # Still stale until reloaded: stale() itself changes nothing.
    assert s.stale() == [f"{tree.package}.a"]


def test_same_size_edit_with_new_mtime_is_stale_and_reloads(tree: Tree, new_session: Any) -> None:
    tree.write("a.py", "A = 1\n")
    s = session_on(new_session, tree)
    (a,) = imp(s, tree, "a")
    before = tree.path("a.py").stat()
    tree.write("a.py", "A = 2\n")
    after = tree.path("a.py").stat()
    assert after.st_size == before.st_size and after.st_mtime_ns != before.st_mtime_ns
    assert s.stale() == [f"{tree.package}.a"]
    assert s.reload_stale() == [f"{tree.package}.a"]
    assert a.A == 2
    assert s.stale() == []


def test_size_change_with_the_same_mtime_is_stale(tree: Tree, new_session: Any) -> None:
    tree.write("a.py", "A = 1\n")
    s = session_on(new_session, tree)
    (a,) = imp(s, tree, "a")
    old = tree.path("a.py").stat().st_mtime_ns
    tree.write("a.py", "A = 12345\n", mtime_ns=old)
    assert tree.path("a.py").stat().st_mtime_ns == old
    assert s.stale() == [f"{tree.package}.a"]
    assert s.reload_stale() == [f"{tree.package}.a"]
    assert a.A == 12345


def test_a_touch_that_changes_nothing_is_not_stale(tree: Tree, new_session: Any) -> None:
    """docs/contract.md §5: content, not only mtime: a touch or identical rewrite never reloads."""
    tag = f"{tree.package}.touch"
    tree.write("a.py", counting(tag, "A = 1\n"))
    s = session_on(new_session, tree)
    (a,) = imp(s, tree, "a")
    assert runs(tag) == 1
    tree.touch("a.py")
    assert s.stale() == []
    tree.write("a.py", counting(tag, "A = 1\n"))  # same bytes, new mtime (a checkout)
    assert s.stale() == []
    assert s.reload_stale() == []
    assert runs(tag) == 1
    tree.write("a.py", counting(tag, "A = 2\n"))  # same size, new bytes: a change
    assert s.stale() == [f"{tree.package}.a"]
    assert s.reload_stale() == [f"{tree.package}.a"]
    assert a.A == 2


def test_sourceless_pyc_module_is_stale_when_the_pyc_changes(
    pkgs: PkgFactory, tmp_path: Path, new_session: Any
) -> None:
    name = pkgs.unique("pyconly")
    root = tmp_path / "pyc-root"
    src_dir = tmp_path / "pyc-src"
    root.mkdir()
    src_dir.mkdir()
    src = src_dir / f"{name}.py"
    pyc = root / f"{name}.pyc"

    def compile_version(value: int) -> None:
        src.write_text(f"V = {value}\n", encoding="utf-8")
        py_compile.compile(str(src), cfile=str(pyc), doraise=True)
        ns = next_mtime_ns()
        os.utime(pyc, ns=(ns, ns))

    compile_version(1)
    s = new_session(paths=[root])
    mod = s.import_module(name)
    assert mod.__file__ == str(pyc) and mod.V == 1
    assert s.stale() == []
    compile_version(22)
    assert s.stale() == [name]
    assert s.reload_stale() == [name]
    assert mod.V == 22
    assert s.stale() == []


def test_stale_is_per_session(tree: Tree, new_session: Any) -> None:
    tree.write("a.py", "A = 1\n")
    s1 = session_on(new_session, tree)
    s2 = session_on(new_session, tree)
    (a1,) = imp(s1, tree, "a")
    (a2,) = imp(s2, tree, "a")
    assert a1 is not a2
    tree.write("a.py", "A = 2222\n")
    assert s1.stale() == s2.stale() == [f"{tree.package}.a"]
    assert s1.reload_stale() == [f"{tree.package}.a"]
    assert (a1.A, a2.A) == (2222, 1)
    assert s1.stale() == []
    assert s2.stale() == [f"{tree.package}.a"]


def test_stale_check_leaves_global_state_alone(tree: Tree, new_session: Any) -> None:
    tree.write("a.py", "A = 1\n")
    s = session_on(new_session, tree)
    imp(s, tree, "a")
    tree.write("a.py", "A = 2 \n")
    s.stale()  # warm-up
    before = GlobalState.take()
    assert s.stale() == [f"{tree.package}.a"]
    assert_state_equal(before)


# -- reload_stale(): dependents, order, names ----------------------------------------------


def make_app(tree: Tree) -> None:
    """core <- util <- ui <- app (each imports the previous one); other stands alone;
    the package __init__ imports nothing."""
    p = tree.package
    tree.write("core.py", counting(f"{p}.core", "def f():\n    return 'core1'\n"))
    tree.write("util.py", counting(f"{p}.util", f"from {p}.core import f\n"))
    tree.write(
        "ui.py",
        counting(f"{p}.ui", "from . import util\n\ndef show():\n    return util.f()\n"),
    )
    tree.write("app.py", counting(f"{p}.app", f"import {p}.ui as ui\n"))
    tree.write("other.py", counting(f"{p}.other", "X = 1\n"))


def test_reload_stale_reloads_dependents_dependencies_first(tree: Tree, new_session: Any) -> None:
    make_app(tree)
    p = tree.package
    s = session_on(new_session, tree)
    app, other = imp(s, tree, "app", "other")
    ui = s.modules[f"{p}.ui"]
    counts = {n: runs(f"{p}.{n}") for n in ("core", "util", "ui", "app", "other")}
    assert counts == {"core": 1, "util": 1, "ui": 1, "app": 1, "other": 1}

    tree.write("core.py", counting(f"{p}.core", "def f():\n    return 'core2'\n"))
    assert s.stale() == [f"{p}.core"]
    order = s.reload_stale()

    # Real names, no session prefix; exactly the changed module and its importers.
    assert all(not n.startswith(SESSION_PREFIX) for n in order)
    assert sorted(order) == sorted([f"{p}.core", f"{p}.util", f"{p}.ui", f"{p}.app"])
    assert len(order) == len(set(order))
    pos = {n: i for i, n in enumerate(order)}
    assert pos[f"{p}.core"] < pos[f"{p}.util"] < pos[f"{p}.ui"] < pos[f"{p}.app"]
    # Each ran once more; the untouched module did not run again.
    assert {n: runs(f"{p}.{n}") for n in ("core", "util", "ui", "app", "other")} == {
        "core": 2,
        "util": 2,
        "ui": 2,
        "app": 2,
        "other": 1,
    }
    # Dependents re-bound the new objects (util's `from core import f` is the new f).
    assert ui.show() == "core2"
    assert s.modules[f"{p}.app"] is app and app.ui is ui
    assert s.stale() == []
    assert other.X == 1


def test_reload_stale_diamond_and_package_init(
    tree: Tree, new_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Relative imports (`from . import x`, `from .x import y`) in an acyclic package:
    the package's __init__ re-exports a name, so it must come after what it imports,
    and no import cycle is reported because there is none."""
    p = tree.package
    tree.write("__init__.py", "from .top import T\n")
    tree.write("base.py", "V = 1\n")
    tree.write("left.py", "from .base import V\nL = V\n")
    tree.write("right.py", "from . import base\nR = base.V\n")
    tree.write("top.py", "from . import left, right\nT = left.L + right.R\n")
    s = session_on(new_session, tree)
    pkg = s.import_module(p)
    assert pkg.T == 2
    tree.write("base.py", "V = 50\n")
    with caplog.at_level(logging.WARNING, logger="subsession"):
        subsession._core.reset_log_cache()
        order = s.reload_stale()
    assert set(order) == {f"{p}.base", f"{p}.left", f"{p}.right", f"{p}.top", p}
    pos = {n: i for i, n in enumerate(order)}
    assert pos[f"{p}.base"] < pos[f"{p}.left"] < pos[f"{p}.top"]
    assert pos[f"{p}.base"] < pos[f"{p}.right"] < pos[f"{p}.top"]
    assert pkg.top.T == 100
    assert pos[f"{p}.top"] < pos[p], f"the package re-exports top.T: {order}"
    assert pkg.T == 100
    assert not [r.getMessage() for r in caplog.records if "cycle" in r.getMessage()]


def test_reload_stale_with_nothing_changed_reloads_nothing(tree: Tree, new_session: Any) -> None:
    p = tree.package
    tree.write("core.py", counting(f"{p}.core"))
    s = session_on(new_session, tree)
    imp(s, tree, "core")
    assert s.reload_stale() == []
    assert s.reload_stale(deep=True) == []
    assert runs(f"{p}.core") == 1


def test_import_cycle_is_reloaded_once_each_and_reported(
    tree: Tree, new_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    p = tree.package
    tree.write("ca.py", counting(f"{p}.ca", f"import {p}.cb\nA = 1\n"))
    tree.write("cb.py", counting(f"{p}.cb", f"import {p}.ca\nB = 1\n"))
    tree.write("user.py", counting(f"{p}.user", f"from {p} import ca\nU = ca.A\n"))
    s = session_on(new_session, tree)
    (user,) = imp(s, tree, "user")
    tree.write("ca.py", counting(f"{p}.ca", f"import {p}.cb\nA = 7\n"))
    with caplog.at_level(logging.WARNING, logger="subsession"):
        subsession._core.reset_log_cache()
        order = s.reload_stale()
    assert sorted(order) == sorted([f"{p}.ca", f"{p}.cb", f"{p}.user"])
    assert order[-1] == f"{p}.user"  # the cycle's importer comes after the cycle
    assert (runs(f"{p}.ca"), runs(f"{p}.cb"), runs(f"{p}.user")) == (2, 2, 2)
    assert user.U == 7
    cycle_logs = [r.getMessage() for r in caplog.records if "cycle" in r.getMessage()]
    assert cycle_logs, "an import cycle must be reported through logging"
    assert f"{p}.ca" in cycle_logs[0] and f"{p}.cb" in cycle_logs[0]
    assert SESSION_PREFIX not in cycle_logs[0]


def test_reload_all_returns_every_module_dependencies_first(tree: Tree, new_session: Any) -> None:
    make_app(tree)
    p = tree.package
    s = session_on(new_session, tree)
    imp(s, tree, "app", "other")
    order = s.reload_all()
    assert sorted(order) == sorted(s.modules)
    pos = {n: i for i, n in enumerate(order)}
    assert pos[f"{p}.core"] < pos[f"{p}.util"] < pos[f"{p}.ui"] < pos[f"{p}.app"]
    assert runs(f"{p}.other") == 2


# -- reload(m) ---------------------------------------------------------------------------------


def test_reload_one_module_in_place_inside_the_session(
    tree: Tree, new_session: Any, env_guard: None
) -> None:
    p = tree.package
    key = f"SUBSESSION_RELOAD_{p}".upper()
    os.environ.pop(key, None)
    tree.write("helper.py", "H = 'helper1'\n")
    tree.write(
        "mod.py",
        counting(f"{p}.mod", f"import os\nENV = os.environ.get({key!r})\nV = 1\n"),
    )
    s = session_on(new_session, tree, env={key: "inside"})
    mod, helper = imp(s, tree, "mod", "helper")
    assert mod.ENV == "inside"
    # The new version imports a module from the session's path and reads its env.
    tree.write(
        "mod.py",
        counting(
            f"{p}.mod",
            f"import os\nfrom {p} import helper\nENV = os.environ.get({key!r})\n"
            "V = 2\nH = helper.H\n",
        ),
    )
    tree.write("helper.py", "H = 'helper2'\n")
    assert s.reload(mod) is mod
    assert runs(f"{p}.mod") == 2
    assert (mod.V, mod.ENV, mod.H) == (2, "inside", "helper1")  # helper not reloaded
    assert key not in os.environ
    # By real name too; the other stale module is untouched until asked for.
    assert s.reload(f"{p}.helper") is helper and helper.H == "helper2"
    assert s.stale() == []


def test_reload_refuses_foreign_and_unknown_modules(tree: Tree, new_session: Any) -> None:
    tree.write("a.py", "A = 1\n")
    s = session_on(new_session, tree)
    other = session_on(new_session, tree)
    (foreign,) = imp(other, tree, "a")
    with pytest.raises(subsession.SessionError, match="does not belong"):
        s.reload(foreign)
    with pytest.raises(subsession.SessionError, match="not imported"):
        s.reload(f"{tree.package}.a")
    with pytest.raises(subsession.SessionError):
        s.reload(textwrap)  # a global module
    with pytest.raises(TypeError):
        s.reload(42)


# -- failed reloads ---------------------------------------------------------------------------


def location(message: str) -> tuple[str, int]:
    m = re.search(r'File "([^"]+)", line (\d+)', message)
    assert m, f"no 'File \"...\", line N' in: {message}"
    return m.group(1), int(m.group(2))


def check_usable(s: subsession.Session, tree: Tree) -> None:
    """The session still imports, runs and reloads other modules."""
    name = f"fresh_{next(_tick)}"
    tree.write(f"{name}.py", "OK = 'fresh'\n")
    mod = s.import_module(f"{tree.package}.{name}")
    assert mod.OK == "fresh"
    with s:
        assert subsession.current() is s
    assert subsession.current() is None
    assert s.reload(mod) is mod


@pytest.mark.parametrize("deep", [False, True])
def test_syntax_error_keeps_old_module_then_fix_reloads(
    tree: Tree, new_session: Any, deep: bool
) -> None:
    p = tree.package
    tree.write("tool.py", "def run():\n    return 'v1'\n\nVALUE = 1\n")
    s = session_on(new_session, tree)
    (tool,) = imp(s, tree, "tool")
    run = tool.run
    broken = tree.write("tool.py", "def run():\n    return 'v2'\n\nVALUE = = 2\n")
    with pytest.raises(subsession.ReloadError) as info:
        s.reload_stale(deep=deep)
    file, line = location(str(info.value))
    assert (Path(file), line) == (broken, 4)
    assert "SyntaxError" in str(info.value)
    assert isinstance(info.value, subsession.SessionError)
    # Old module intact, same object, same function objects running the old code.
    assert s.modules[f"{p}.tool"] is tool
    assert (tool.run(), run(), tool.VALUE) == ("v1", "v1", 1)
    assert tool.run is run
    assert s.stale() == [f"{p}.tool"]
    check_usable(s, tree)
    # The same through reload(m).
    with pytest.raises(subsession.ReloadError, match=r"line 4"):
        s.reload(tool, deep=deep)
    assert tool.run() == "v1"
    # Fixed on disk: the next reload succeeds.
    tree.write("tool.py", "def run():\n    return 'v3'\n\nVALUE = 3\n")
    assert s.reload_stale(deep=deep) == [f"{p}.tool"]
    assert (tool.run(), tool.VALUE) == ("v3", 3)
    assert (run() == "v3") is deep  # a deep reload updates the old function in place
    assert s.stale() == []


@pytest.mark.parametrize("deep", [False, True])
def test_exception_at_import_keeps_old_globals(tree: Tree, new_session: Any, deep: bool) -> None:
    p = tree.package
    tree.write("tool.py", "def run():\n    return 'v1'\n\nVALUE = 1\n")
    s = session_on(new_session, tree)
    (tool,) = imp(s, tree, "tool")
    broken = tree.write(
        "tool.py",
        "def run():\n    return 'v2'\n\nVALUE = 2\nADDED = 1\n\n"
        "def fail():\n    raise LookupError('missing asset')\n\nfail()\n",
    )
    with pytest.raises(subsession.ReloadError) as info:
        s.reload(f"{p}.tool", deep=deep)
    message = str(info.value)
    file, line = location(message)
    assert (Path(file), line) == (broken, 8)  # the innermost frame, as tracebacks end
    assert "LookupError" in message and "missing asset" in message
    # No half-executed globals left behind.
    assert (tool.run(), tool.VALUE) == ("v1", 1)
    assert not hasattr(tool, "ADDED") and not hasattr(tool, "fail")
    check_usable(s, tree)
    tree.write("tool.py", "def run():\n    return 'v3'\n")
    assert s.reload_stale(deep=deep) == [f"{p}.tool"]
    assert tool.run() == "v3"


def test_reload_error_names_the_users_line_not_the_standard_library(
    tree: Tree, new_session: Any
) -> None:
    """issue 20 (3): the deepest frame in the session's own files, not json/decoder.py;
    the original exception is the cause; the session's frames follow the first line."""
    import json

    p = tree.package
    tree.write("helpers.py", "import json\n\ndef load(text):\n    return json.loads(text)\n")
    tree.write("where.py", f"from {p} import helpers\n\nCONFIG = {{}}\n")
    s = session_on(new_session, tree)
    imp(s, tree, "helpers", "where")
    where = tree.write("where.py", f"from {p} import helpers\n\nCONFIG = helpers.load('{{bad')\n")
    with pytest.raises(subsession.ReloadError) as info:
        s.reload_stale(deep=True)
    message = str(info.value)
    first, *rest = message.splitlines()
    file, line = location(first)
    assert (Path(file), line) == (tree.root / p / "helpers.py", 4)
    assert "JSONDecodeError" in first and "decoder.py" not in first
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    # Short traceback: the session's frames, outermost first, then where it was raised.
    assert rest[0] == f'  File "{where}", line 3, in <module>'
    assert rest[1] == "    CONFIG = helpers.load('{bad')"
    assert rest[2].endswith(", line 4, in load") and rest[3] == "    return json.loads(text)"
    assert "decoder.py" in rest[-1] and rest[-1].startswith("  (raised in ")


def test_reload_error_names_the_line_using_a_removed_enum_member(
    tree: Tree, new_session: Any
) -> None:
    """issue 20 (3): a member removed while still used elsewhere names the user's line
    (enum.py raises the AttributeError on Python < 3.12)."""
    p = tree.package
    tree.write("colors.py", "import enum\n\nclass Color(enum.Enum):\n    RED = 1\n    GREEN = 2\n")
    tree.write("use.py", f"from {p}.colors import Color\n\nDEFAULT = Color.GREEN\n")
    s = session_on(new_session, tree)
    imp(s, tree, "colors", "use")
    tree.write("colors.py", "import enum\n\nclass Color(enum.Enum):\n    RED = 1\n")
    with pytest.raises(subsession.ReloadError) as info:
        s.reload_stale(deep=True)
    file, line = location(str(info.value).splitlines()[0])
    assert (Path(file), line) == (tree.root / p / "use.py", 3)
    assert isinstance(info.value.__cause__, AttributeError)


@pytest.mark.parametrize("deep", [False, True])
def test_failure_later_in_the_batch_rolls_back_the_whole_batch(
    tree: Tree, new_session: Any, deep: bool
) -> None:
    """core reloads fine, then its importer ui fails: neither is left half-reloaded,
    both are still stale, and once ui is fixed both get the new code."""
    p = tree.package
    tree.write(
        "core.py",
        "def f():\n    return 'core1'\n\nclass K:\n    def m(self):\n        return 'k1'\n",
    )
    tree.write("ui.py", f"from {p} import core\n\ndef show():\n    return ('ui1', core.f())\n")
    s = session_on(new_session, tree)
    core, ui = imp(s, tree, "core", "ui")
    f, k = core.f, core.K()
    tree.write(
        "core.py",
        "def f():\n    return 'core2'\n\nclass K:\n    def m(self):\n        return 'k2'\n",
    )
    tree.write("ui.py", f"from {p} import core\nraise RuntimeError('ui broken')\n")
    with pytest.raises(subsession.ReloadError, match="ui broken"):
        s.reload_stale(deep=deep)
    # "previous version kept" for every module of the batch, also objects held outside.
    assert (core.f(), f(), k.m(), ui.show()) == ("core1", "core1", "k1", ("ui1", "core1"))
    assert s.stale() == [f"{p}.core", f"{p}.ui"]
    tree.write("ui.py", f"from {p} import core\n\ndef show():\n    return ('ui2', core.f())\n")
    assert s.reload_stale(deep=deep) == [f"{p}.core", f"{p}.ui"]
    assert ui.show() == ("ui2", "core2")
    assert s.stale() == []


def test_syntax_error_introduced_and_fixed_repeatedly(tree: Tree, new_session: Any) -> None:
    """The edit loop of a tool author: good, broken, fixed, broken, fixed..."""
    p = tree.package
    tree.write("loop.py", "N = 0\n")
    tree.write("dep.py", f"from {p}.loop import N\nM = N * 10\n")
    s = session_on(new_session, tree)
    loop, dep = imp(s, tree, "loop", "dep")
    for n in range(1, 6):
        tree.write("loop.py", f"N = {n}\nif True\n    pass\n")
        with pytest.raises(subsession.ReloadError, match=r"line 2"):
            s.reload_stale()
        assert (loop.N, dep.M) == (n - 1, (n - 1) * 10)
        tree.write("loop.py", f"N = {n}\n")
        assert s.reload_stale() == [f"{p}.loop", f"{p}.dep"]
        assert (loop.N, dep.M) == (n, n * 10)


def test_function_level_imports_run_many_times_still_order_the_reload(
    tree: Tree, new_session: Any
) -> None:
    """An import statement in a function runs at every call; the engine logs statements
    and turns them into edges when a reload asks (and, past a bound, at an import), so
    20,000 calls neither grow the log without bound nor lose the dependency."""
    p = tree.package
    tree.write("__init__.py", "")
    tree.write("leaf.py", counting(f"{p}.leaf", "VALUE = 1\n"))
    tree.write(
        "user.py",
        counting(
            f"{p}.user",
            f"def value():\n    from {p} import leaf\n    import {p}.leaf as again\n"
            "    return leaf.VALUE + again.VALUE\n",
        ),
    )
    tree.write("bystander.py", counting(f"{p}.bystander", "X = 1\n"))
    s = session_on(new_session, tree)
    (user, _) = imp(s, tree, "user", "bystander")
    for _ in range(20_000):
        assert user.value() == 2
    tree.write("leaf.py", counting(f"{p}.leaf", "VALUE = 5\n"))
    order = s.reload_stale()
    assert order == [f"{p}.leaf", f"{p}.user"]
    assert user.value() == 10
    assert runs(f"{p}.bystander") == 1
