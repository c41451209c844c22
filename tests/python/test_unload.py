"""docs/contract.md §6 (issue 5, items 5 and 7): ``close()`` unloads and reports leaks.

A clean close forgets every module (``sys.modules``, the registry) and they are
collected; a module kept alive by something outside the session is reported with what
holds it, in words a TD can act on; ``force=True`` clears the survivors' globals; a
closed session cannot be activated again. The soak test runs 1,000 create -> import a
50-module package -> close cycles and bounds the RSS growth.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import types
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import subsession
from conftest import SESSION_PREFIX, PkgFactory, unique_name

TOOL_FILES = {
    "__init__.py": "from . import core, ui\n",
    "core.py": """\
        import collections, functools

        REGISTRY = collections.OrderedDict()

        def f():
            return "f"

        def make_counter():
            n = [0]
            def bump():
                n[0] += 1
                return n[0]
            return bump

        counter = make_counter()

        class Node:
            instances = []
            def __init__(self):
                Node.instances.append(self)
                self.me = self
            def method(self):
                return "method"

        @functools.lru_cache(maxsize=None)
        def cached(x):
            return x * 2

        ROOT = Node()
        cached(2)
        """,
    "ui.py": """\
        from . import core
        from .core import Node, f

        class Window:
            def __init__(self):
                self.node = Node()
                self.slot = self.node.method
                self.callbacks = [f, core.counter]

        WINDOW = Window()
        """,
}


@pytest.fixture
def tool(pkgs: PkgFactory) -> tuple[str, Path]:
    name = pkgs.unique("unl")
    return name, pkgs.make(name, files=TOOL_FILES)


@pytest.fixture
def holder() -> Iterator[Any]:
    """A global (non-session) module that can hold on to session objects."""
    name = unique_name("holder")
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    yield mod
    sys.modules.pop(name, None)


def load(new_session: Callable[..., Any], tool: tuple[str, Path], **kw: Any) -> subsession.Session:
    name, root = tool
    s: subsession.Session = new_session(paths=[root], **kw)
    s.import_module(name)
    return s


def weak_modules(s: Any) -> dict[str, weakref.ref[types.ModuleType]]:
    return {n: weakref.ref(m) for n, m in s.modules.items()}


def holders(report: Any, name: str) -> list[str]:
    assert name in report.leaks, f"{name} not reported: {report}"
    return list(report.leaks[name])


# -- clean close --------------------------------------------------------------------------------


def test_close_forgets_modules_registry_and_collects_them(
    tool: tuple[str, Path], new_session: Callable[..., Any]
) -> None:
    name, _ = tool
    session_name = unique_name("unload")
    s = load(new_session, tool, name=session_name)
    assert subsession.get(session_name) is s
    prefix = s.prefix
    refs = weak_modules(s)
    assert sorted(refs) == sorted([name, f"{name}.core", f"{name}.ui"])
    assert any(k.startswith(prefix + ".") for k in sys.modules)

    report = s.close()

    assert s.closed
    assert not report and report.leaks == {}
    assert sorted(report.unloaded) == sorted(refs)
    assert not any(n.startswith(SESSION_PREFIX) for n in report.unloaded)
    assert "none alive" in str(report)
    assert not [k for k in sys.modules if k == prefix or k.startswith(prefix + ".")]
    assert s not in subsession.sessions()
    with pytest.raises(subsession.NoSuchSessionError):
        subsession.get(session_name)
    assert dict(s.modules) == {}
    dead = {n: r() is None for n, r in refs.items()}
    assert all(dead.values()), f"modules still alive after a clean close: {dead}"
    # The name is free again.
    again = new_session(session_name)
    assert subsession.get(session_name) is again


def test_close_twice_is_a_no_op(tool: tuple[str, Path], new_session: Callable[..., Any]) -> None:
    s = load(new_session, tool)
    assert not s.close()
    second = s.close()
    assert not second and second.unloaded == [] and second.leaks == {}


def test_closed_session_object_itself_is_collected(
    tool: tuple[str, Path], new_session: Callable[..., Any]
) -> None:
    """Nothing of a closed session stays in memory once the user drops it."""
    name, root = tool
    s = subsession.Session(paths=[root])
    with s:
        __import__(name)
    s.close()
    ref = weakref.ref(s)
    del s
    gc.collect()
    assert ref() is None, "the closed Session (and its core) is still alive"


def test_closed_session_refuses_activation(
    tool: tuple[str, Path], new_session: Callable[..., Any]
) -> None:
    name, _ = tool
    s = load(new_session, tool)

    @s
    def decorated() -> int:
        return 1

    s.close()
    with pytest.raises(subsession.ClosedSessionError, match="closed") as info:
        with s:
            pytest.fail("a closed session was activated")
    assert "create a new Session" in str(info.value) or "new" in str(info.value)
    with pytest.raises(subsession.ClosedSessionError):
        decorated()
    with pytest.raises(subsession.ClosedSessionError):
        s.import_module(name)
    with pytest.raises(subsession.ClosedSessionError):
        s.run(lambda: None)
    with pytest.raises(subsession.ClosedSessionError):
        s.exec("x = 1")
    assert subsession.current() is None


def test_closed_session_refuses_reload(
    tool: tuple[str, Path], new_session: Callable[..., Any]
) -> None:
    name, _ = tool
    s = load(new_session, tool)
    s.close()
    with pytest.raises(subsession.ClosedSessionError):
        s.reload(name)
    with pytest.raises(subsession.ClosedSessionError):
        s.reload_all()


def test_close_of_an_active_session_is_refused(
    tool: tuple[str, Path], new_session: Callable[..., Any]
) -> None:
    name, root = tool
    s = load(new_session, tool)
    inner = new_session(paths=[root])
    refs = weak_modules(s)
    with s:
        with pytest.raises(subsession.SessionError, match="active"):
            s.close()
        with inner:
            # Still active (outer block), even while another session is innermost.
            with pytest.raises(subsession.SessionError, match="active"):
                s.close()
        assert subsession.current() is s
    assert not s.closed
    assert s.modules[name] is refs[name]()
    assert not s.close()
    assert all(r() is None for r in refs.values())


# -- leaks and their holders ---------------------------------------------------------------------


def test_module_held_by_a_global_module_is_reported_with_its_holder(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    name, _ = tool
    s = load(new_session, tool)
    refs = weak_modules(s)
    holder.tool_ui = s.modules[f"{name}.ui"]
    report = s.close()
    assert report, "a leaked module must make the report truthy"
    # ui is held; core lives on through ui (ui's globals hold core's f and Node); the
    # package itself is free.
    assert set(report.leaks) == {f"{name}.ui", f"{name}.core"}, str(report)
    assert refs[name]() is None
    assert refs[f"{name}.ui"]() is holder.tool_ui
    texts = holders(report, f"{name}.ui")
    assert any(f"held in module {holder.__name__} as 'tool_ui'" in t for t in texts), texts
    assert f"{name}.ui" in str(report)
    # What keeps core alive is session module ui: the report must lead there.
    core_texts = holders(report, f"{name}.core")
    assert any(f"session module {name}.ui" in t for t in core_texts), core_texts


def test_function_held_by_an_object_is_reported(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    name, _ = tool
    s = load(new_session, tool)

    class Panel:
        pass

    panel = Panel()
    panel.on_click = s.modules[f"{name}.core"].f  # type: ignore[attr-defined]
    holder.panel = panel
    report = s.close()
    texts = holders(report, f"{name}.core")
    assert any(
        "function (f)" in t and "Panel" in t and f"{holder.__name__} as 'panel'" in t for t in texts
    ), texts


def test_bound_method_held_as_a_slot_is_reported(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    name, _ = tool
    s = load(new_session, tool)
    holder.slot = s.modules[f"{name}.core"].Node().method
    report = s.close()
    texts = holders(report, f"{name}.core")
    assert any("bound method" in t and f"{holder.__name__} as 'slot'" in t for t in texts), texts


def make_timer_callback(fn: Callable[[], Any]) -> Callable[[], Any]:
    def on_timer() -> Any:
        return fn()

    return on_timer


def test_function_held_in_a_closure_is_reported(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    name, _ = tool
    s = load(new_session, tool)
    holder.on_timer = make_timer_callback(s.modules[f"{name}.core"].f)
    report = s.close()
    texts = holders(report, f"{name}.core")
    assert any("closure" in t for t in texts), texts
    assert any(holder.__name__ in t for t in texts), texts


def test_function_held_in_a_list_is_reported(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    name, _ = tool
    s = load(new_session, tool)
    holder.callbacks = [s.modules[f"{name}.core"].f]
    report = s.close()
    texts = holders(report, f"{name}.core")
    assert any("list" in t and f"{holder.__name__} as 'callbacks'" in t for t in texts), texts


def test_root_package_held_elsewhere_is_followed_to_its_holder(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    """A cache of every module it ever saw in ``sys.modules`` (hypothesis 6.141 keeps
    one) holds the session's root package, which holds the tool's package: the report
    names the cache, not the root package."""
    name, _ = tool
    s = load(new_session, tool)
    holder.seen = {sys.modules[s.prefix]}
    report = s.close()
    texts = holders(report, name)
    assert any(
        "root package" in t and "in a set" in t and f"{holder.__name__} as 'seen'" in t
        for t in texts
    ), texts


def test_survivor_held_by_a_frozen_object_is_still_reported(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    """``gc.freeze()`` hides objects from ``gc.get_referrers``: a survivor whose holder
    (and even whose globals) the collector cannot list must still be reported."""
    name, _ = tool
    s = load(new_session, tool)
    ref = weakref.ref(s.modules[name])
    holder.frozen = [s.modules[name]]
    gc.freeze()
    try:
        report = s.close()
    finally:
        gc.unfreeze()
    assert ref() is not None
    assert name in report.leaks, str(report)
    assert any("cannot list" in t for t in holders(report, name)), str(report)


PROCESS_WIDE_FILES = {
    "__init__.py": """\
        import importlib.abc
        import logging
        import sys
        import typing

        class Item:
            def m(self) -> int:
                return 1

        ITEMS = typing.List[Item]          # typing's cache keeps Item

        @typing.overload
        def pick(x: int) -> int: ...
        @typing.overload
        def pick(x: str) -> str: ...
        def pick(x):                       # typing's overload registry keeps the stubs
            return x

        class Finder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                return None

        sys.meta_path.append(Finder())     # as six's importer does

        class Handler(logging.Handler):
            def emit(self, record):
                pass

        logging.getLogger(__name__ + ".ui").addHandler(Handler())
        """,
}


def test_close_releases_what_the_standard_library_keeps_process_wide(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    name = pkgs.unique("pwide")
    root = pkgs.make(name, files=PROCESS_WIDE_FILES)
    s = new_session(paths=[root])
    ref = weakref.ref(s.import_module(name))
    prefix = s.prefix
    assert any(type(f).__name__ == "Finder" for f in sys.meta_path)
    report = s.close()
    assert not report, str(report)
    assert ref() is None
    assert not any(type(f).__name__ == "Finder" for f in sys.meta_path)
    import logging

    assert not [k for k in logging.root.manager.loggerDict if k.startswith(prefix + ".")]


def test_surviving_extension_module_is_named_as_such(
    tmp_path: Path, new_session: Callable[..., Any]
) -> None:
    """A session's own copy of a compiled package (psutil, a test dependency, copied to
    a fresh folder so it loads again): CPython keeps single-phase extension modules
    for the life of the process, and the report says so instead of a circular chain."""
    import shutil

    import psutil

    shutil.copytree(Path(psutil.__file__).parent, tmp_path / "psutil")
    s = new_session(paths=[tmp_path])
    mod = s.import_module("psutil")
    assert mod is not psutil and str(mod.__file__).startswith(str(tmp_path))
    extensions = [
        n for n, m in s.modules.items() if str(getattr(m, "__file__", "")).endswith((".so", ".pyd"))
    ]
    assert extensions, sorted(s.modules)
    del mod
    report = s.close()
    for name in extensions:
        assert holders(report, name)[0].startswith("a C extension module"), str(report)
    assert all(len(t) <= 301 for texts in report.leaks.values() for t in texts)
    assert all(len(texts) <= 4 for texts in report.leaks.values())


def test_extension_survivors_are_one_grouped_line_and_real_leaks_stay_named(
    tmp_path: Path, pkgs: PkgFactory, new_session: Callable[..., Any], holder: Any
) -> None:
    """What compiled extension modules keep is found once and reported as ONE line;
    a real Python leak in the same session is still named with its holder."""
    import shutil

    import psutil

    shutil.copytree(Path(psutil.__file__).parent, tmp_path / "psutil")
    name = pkgs.unique("beside")
    root = pkgs.make(name, files={"__init__.py": "def f():\n    return 1\n"})
    s = new_session(paths=[tmp_path, root])
    s.import_module("psutil")
    holder.cb = s.import_module(name).f
    report = s.close()
    grouped = report.held_by_extensions
    extensions = [n for n in grouped if n.startswith("psutil._ps")]
    assert extensions, str(report)
    assert name not in grouped
    assert holders(report, name) == [f"a function (f) held in module {holder.__name__} as 'cb'"]
    lines = str(report).splitlines()
    group_lines = [ln for ln in lines if "never unloads" in ln]
    assert len(group_lines) == 1, lines
    assert group_lines[0].lstrip().startswith(f"{len(grouped)} module"), group_lines
    assert not any(ln.lstrip().startswith(f"{n}:") for n in grouped for ln in lines), lines
    assert any(ln.lstrip().startswith(f"{name}:") for ln in lines), lines


def test_report_names_only_real_holders(
    pkgs: PkgFactory, new_session: Callable[..., Any], holder: Any
) -> None:
    """A module with a class, kept alive by one callback: the report points at that
    callback, not at the class's own internal references (its __mro__, descriptors)."""
    name = pkgs.unique("onlyreal")
    root = pkgs.make(
        name,
        files={
            "__init__.py": "def f():\n    return 1\n\nclass K:\n    def m(self):\n"
            "        return 2\n"
        },
    )
    s = new_session(paths=[root])
    holder.cb = s.import_module(name).f
    report = s.close()
    texts = holders(report, name)
    assert texts == [f"a function (f) held in module {holder.__name__} as 'cb'"], texts


def test_force_clears_the_globals_of_survivors(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    name, _ = tool
    s = load(new_session, tool)
    core = s.modules[f"{name}.core"]
    node_class = core.Node
    holder.core = core
    report = s.close(force=True)
    assert set(report.leaks) == {f"{name}.core"}, str(report)
    assert f"{name}.core" in report.unloaded
    assert "REGISTRY" not in vars(core) and "Node" not in vars(core)
    with pytest.raises(NameError):
        node_class()  # __init__ reads the global Node: the globals are gone


def test_without_force_survivors_keep_working(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    name, _ = tool
    s = load(new_session, tool)
    holder.counter = s.modules[f"{name}.core"].make_counter
    report = s.close()
    assert f"{name}.core" in report.leaks
    assert holder.counter()() == 1


# -- soak: 1,000 cycles ---------------------------------------------------------------------------

CYCLES = 1000
PACKAGE_MODULES = 50
RSS_LIMIT = 5 * 1024 * 1024
TIME_LIMIT_S = 60.0


def rss_bytes() -> int:
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def make_big_package(root: Path, name: str) -> None:
    """A package of 50 modules: __init__ plus 49 submodules importing each other."""
    pkg = root / name
    pkg.mkdir(parents=True)
    subs = PACKAGE_MODULES - 1
    (pkg / "__init__.py").write_text(
        "".join(f"from . import m{i}\n" for i in range(subs)), encoding="utf-8"
    )
    for i in range(subs):
        prev = f"from . import m{i - 1}\n" if i else ""
        (pkg / f"m{i}.py").write_text(
            f"import os, collections\n{prev}V = {i}\n"
            f"class C{i}:\n    def f(self):\n        return V\n"
            f"def g():\n    return C{i}().f()\n"
            "CACHE = collections.OrderedDict(a=[1, 2, 3])\n",
            encoding="utf-8",
        )


def test_thousand_create_import_close_cycles(pkgs: PkgFactory, tmp_path: Path) -> None:
    name = pkgs.unique("soak")
    root = tmp_path / "soak"
    make_big_package(root, name)

    def cycle() -> None:
        s = subsession.Session(paths=[root])
        with s:
            pkg = __import__(name)
            assert pkg.m48.g() == 48
        refs = [weakref.ref(m) for m in s.modules.values()]
        assert len(refs) == PACKAGE_MODULES
        del pkg
        report = s.close()
        assert not report, str(report)
        alive = sum(1 for r in refs if r() is not None)
        assert alive == 0, f"{alive} modules of a closed session still alive"

    for _ in range(20):  # warm-up: the import system's caches, pyc files, allocator arenas
        cycle()
    gc.collect()
    # Every close runs a full GC pass, whose cost is the size of the whole heap: in the
    # full suite (hundreds of earlier tests' objects) that alone would triple the time.
    # Freezing what exists now keeps the measure about the cycles themselves; objects
    # the cycles create are collected as usual.
    gc.freeze()
    try:
        start_rss = rss_bytes()
        start = time.perf_counter()
        for _ in range(CYCLES):
            cycle()
        elapsed = time.perf_counter() - start
        gc.collect()
        grown = rss_bytes() - start_rss
    finally:
        gc.unfreeze()
    print(f"\n{CYCLES} cycles in {elapsed:.1f} s, RSS grew {grown / 1e6:.2f} MB")
    assert elapsed <= TIME_LIMIT_S, f"{CYCLES} cycles took {elapsed:.1f} s"
    assert grown <= RSS_LIMIT, f"RSS grew {grown / 1e6:.2f} MB over {CYCLES} cycles"
    assert not [k for k in sys.modules if k.partition(".")[0] == name]


def close_after_looping(s: Any) -> tuple[Any, int]:
    """What a tool's own 'close' helper does: look at every module, then close. The
    loop variable keeps the last module alive while this function runs."""
    for module in s.modules.values():
        assert module is not None
    return s.close(), close_after_looping.__code__.co_firstlineno + 5


def test_module_held_by_a_local_of_a_running_function_names_that_function(
    tool: tuple[str, Path], new_session: Callable[..., Any]
) -> None:
    """Issue 20 item 2: a running frame's local variables are invisible to the
    collector on CPython 3.11+; the report names the variable and where it runs, never
    C code."""
    s = load(new_session, tool)
    last = list(s.modules)[-1]
    report, line = close_after_looping(s)
    texts = holders(report, last)
    where = f"local variable 'module' of close_after_looping ({__file__}:{line})"
    assert texts == [f"the module object held by {where}, still running"], texts
    assert "C code" not in str(report), str(report)


def test_a_running_function_of_a_closed_module_is_named(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    """A tool whose own button closes its session: the module's code is on the stack
    while close() runs, and the report says so."""
    name = pkgs.unique("selfclose")
    root = pkgs.make(name, files={"__init__.py": "def shut(s):\n    return s.close()\n"})
    s = new_session(paths=[root])
    shut = s.import_module(name).shut
    report = shut(s)
    del shut
    texts = holders(report, name)
    assert any(
        f"its code is still running: shut ({root / name / '__init__.py'}:2)" in t for t in texts
    ), texts


def test_report_counts_read_as_english(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    name, _ = tool
    s = load(new_session, tool)
    holder.only = s.modules[f"{name}.core"].f
    text = str(s.close())
    assert text.splitlines()[0].endswith(": 1 module still alive:"), text


def fail_holding(module: Any) -> None:
    kept = module
    raise RuntimeError(f"failed with {kept.__name__}")


def test_a_traceback_keeping_a_finished_calls_local_is_followed_to_its_holder(
    tool: tuple[str, Path], new_session: Callable[..., Any], holder: Any
) -> None:
    """An error shown in a Script Editor stays in ``sys.last_traceback`` with its frames'
    locals: the report follows the frame to the global keeping the traceback."""
    name, _ = tool
    s = load(new_session, tool)
    try:
        fail_holding(s.modules[f"{name}.core"])
    except RuntimeError as error:
        holder.last_traceback = error.__traceback__
    report = s.close()
    texts = holders(report, f"{name}.core")
    assert any(
        "in a local variable of fail_holding" in t
        and f"held in module {holder.__name__} as 'last_traceback'" in t
        for t in texts
    ), texts


def test_a_warning_filter_for_a_session_class_does_not_keep_the_session(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    """sympy installs a filter for its own deprecation warning class: the process-wide
    filters list kept the module alive after every close (and cost a holder search)."""
    name = pkgs.unique("warns")
    root = pkgs.make(
        name,
        files={
            "__init__.py": """\
                import warnings

                class ToolDeprecationWarning(DeprecationWarning):
                    def __str__(self):  # a function of the module: keeps its globals
                        return "tool: " + super().__str__()

                warnings.simplefilter("once", ToolDeprecationWarning)

                def old():
                    warnings.warn("old() is old", ToolDeprecationWarning, stacklevel=2)
                """
        },
    )
    s = new_session(paths=[root])
    module = s.import_module(name)
    ref = weakref.ref(module)
    import warnings

    filters_before = len(warnings.filters)
    del module
    report = s.close()
    assert not report, str(report)
    assert ref() is None
    assert len(warnings.filters) == filters_before - 1
