"""docs/contract.md §4.3: the isolation matrix, one or more tests per cell, on generated packages.

Most tests use two sessions ``a`` (version 1.0) and ``b`` (version 2.0) of one package,
alive at once with calls interleaved, and a third, global version 0.1 on ``sys.path``,
so that every wrong resolution shows up as a wrong version rather than passing by luck.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.metadata
import inspect
import logging
import os
import pickle
import subprocess
import sys
import sysconfig
import textwrap
import threading
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import subsession
from conftest import (
    SESSION_PREFIX,
    PkgFactory,
    default_init,
    import_stmt,
    is_session_module,
    leaked_real_names,
    module_file,
    runs_of,
)

# -- the generated package ------------------------------------------------------------------

LAZY = """\
import sys


def via_import():
    import {name}.sub
    return {name}.sub


def via_import_as():
    import {name}.sub as m
    return m


def via_import_top():
    import {helper}
    return {helper}


def via_from_relative():
    from . import sub
    return sub


def via_from_absolute():
    from {name} import sub
    return sub


def via_import_module():
    import importlib
    return importlib.import_module("{name}.sub")


def via_import_module_relative():
    import importlib
    return importlib.import_module(".sub", __package__)


def via_dunder_import():
    return __import__("{name}.sub", fromlist=["VERSION"])


def via_resources_files():
    import importlib.resources
    return importlib.resources.files("{name}").joinpath("data.txt").read_text()


def via_pkgutil_get_data():
    import pkgutil
    return pkgutil.get_data("{name}", "data.txt").decode()
"""

MODELS = """\
from __future__ import annotations

import dataclasses
import enum
from typing import ClassVar

VERSION = {version!r}


class Color(enum.Enum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass
class Point:
    x: int
    color: Color
    kind: ClassVar[str] = "point"


class Plain:
    def __init__(self, value):
        self.value = value

    def method(self):
        return VERSION


def make_later():
    @dataclasses.dataclass
    class Later:
        point: Point
        color: Color
        count: ClassVar[int] = 0

    return Later
"""

META = """\
import importlib.metadata
from importlib.metadata import version as imported_version

DIST = {dist!r}
AT_IMPORT = importlib.metadata.version(DIST)


def version_attr():
    return importlib.metadata.version(DIST)


def version_imported():
    return imported_version(DIST)


def version_of_package():
    return importlib.metadata.version(__package__)


def version_in_function_import():
    from importlib import metadata
    return metadata.version(DIST)
"""

INIT_EXTRA = """\

def own_version():
    import importlib.metadata
    return importlib.metadata.version(__name__)


OWN_VERSION_AT_IMPORT = own_version()
"""


@dataclass
class Rich:
    """A package ``name`` in three versions: 0.1 global (on sys.path), 1.0 in ``a``,
    2.0 in ``b``; plus a top-level module ``helper`` beside it in each version."""

    name: str
    helper: str
    roots: dict[str, Path]
    a: Any
    b: Any

    def expected(self, s: Any) -> str:
        return "1.0" if s is self.a else "2.0"


def write_rich(pkgs: PkgFactory, name: str, helper: str, version: str) -> Path:
    files = {
        "__init__.py": default_init(version) + INIT_EXTRA,
        "sub.py": f"VERSION = {version!r}\n",
        "data.txt": f"data {version}",
        "lazy.py": LAZY.format(name=name, helper=helper),
        "models.py": MODELS.format(version=version),
        "meta.py": META.format(dist=name),
    }
    root = pkgs.make(name, version, files, dist=name)
    pkgs.make(helper, version, {"__init__.py": f"VERSION = {version!r}\n"}, root=root, module=True)
    return root


@pytest.fixture
def rich(
    pkgs: PkgFactory, new_session: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> Rich:
    name = pkgs.unique("rich")
    helper = pkgs.unique("helper")
    roots = {v: write_rich(pkgs, name, helper, v) for v in ("0.1", "1.0", "2.0")}
    monkeypatch.syspath_prepend(str(roots["0.1"]))
    a = new_session(paths=[roots["1.0"]])
    b = new_session(paths=[roots["2.0"]])
    return Rich(name, helper, roots, a, b)


def assert_no_leak() -> None:
    leaks = leaked_real_names()
    assert not leaks, f"session modules under real names after exit: {leaks}"


def in_thread(fn: Callable[[], Any]) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert not t.is_alive(), "worker thread hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- 1. import inside / after the block -----------------------------------------------------


def test_1_import_inside_gives_session_copy(rich: Rich) -> None:
    with rich.a:
        ma = import_stmt(rich.name)
        assert ma.VERSION == "1.0"
        assert module_file(ma).startswith(str(rich.roots["1.0"]))
    with rich.b:
        mb = import_stmt(rich.name)
        assert mb.VERSION == "2.0"
    assert ma is not mb
    assert ma is rich.a.modules[rich.name]
    assert mb is rich.b.modules[rich.name]


def test_1_import_after_exit_gives_global(rich: Rich) -> None:
    with rich.a:
        ma = import_stmt(rich.name)
    g = import_stmt(rich.name)
    assert g.VERSION == "0.1"
    assert g is not ma
    assert not is_session_module(g)
    with rich.a:
        assert import_stmt(rich.name) is ma
    assert import_stmt(rich.name) is g
    assert sys.modules[rich.name] is g
    assert_no_leak()


def test_1_global_imported_before_is_hidden_inside_and_back_after(rich: Rich) -> None:
    g = import_stmt(rich.name)
    assert g.VERSION == "0.1"
    with rich.a:
        ma = import_stmt(rich.name)
        assert ma.VERSION == "1.0"
        assert importlib.import_module(rich.name) is ma
        assert __import__(rich.name) is ma
    assert sys.modules[rich.name] is g
    assert import_stmt(rich.name) is g


def test_1_import_after_exit_without_global_raises(pkgs: PkgFactory, new_session: Any) -> None:
    name = pkgs.unique("only_session")
    s = new_session(paths=[pkgs.make(name, "1.0")])
    with s:
        m = import_stmt(name)
    assert m.VERSION == "1.0"
    assert name not in sys.modules
    with pytest.raises(ImportError):
        import_stmt(name)
    with pytest.raises(ImportError):
        importlib.import_module(name)
    assert_no_leak()


def test_1_submodules_and_from_imports_stay_in_session(rich: Rich) -> None:
    with rich.a:
        (sub,) = import_stmt(rich.name, ("sub",))
        models = import_stmt(f"{rich.name}.models")
        assert sub.VERSION == "1.0"
        assert models.VERSION == "1.0"
    assert set(rich.a.modules) >= {rich.name, f"{rich.name}.sub", f"{rich.name}.models"}
    assert f"{rich.name}.sub" not in sys.modules
    assert import_stmt(f"{rich.name}.sub").VERSION == "0.1"
    assert_no_leak()


def test_1_session_module_has_permanent_qualified_key(rich: Rich) -> None:
    with rich.a:
        ma = import_stmt(f"{rich.name}.sub")
    qualified = f"{rich.a.prefix}.{rich.name}.sub"
    assert sys.modules[qualified] is ma
    assert all(k.startswith(rich.a.prefix + ".") for k, v in sys.modules.items() if v is ma)


def test_1_stdlib_is_shared(new_session: Any) -> None:
    import json

    candidates = ["colorsys", "tabnanny", "sndhdr", "mailcap", "nntplib", "pipes", "xdrlib"]
    fresh = next((c for c in candidates if c not in sys.modules), None)
    s = new_session()
    with s:
        assert import_stmt("json") is json
        if fresh is not None:
            inside = importlib.import_module(fresh)
    if fresh is not None:
        assert sys.modules[fresh] is inside
        assert not is_session_module(inside)
    assert "json" not in s.modules


def test_1_keep_global_exact_and_patterns(
    pkgs: PkgFactory, new_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    exact, star, glob = pkgs.unique("kgexact"), pkgs.unique("kgstar"), pkgs.unique("studio")
    isolated = pkgs.unique("kgiso")
    files = {"sub.py": "X = 1\n"}
    groot = pkgs.make(exact, "0.1", files)
    for n in (star, glob, isolated):
        pkgs.make(n, "0.1", files, root=groot)
    sroot = pkgs.make(isolated, "1.0", files)  # kept names exist only globally
    monkeypatch.syspath_prepend(str(groot))
    glob_pattern = glob.rsplit("_", 2)[0] + "_*"  # "studio_*"
    s = new_session(paths=[sroot], keep_global=[exact, f"{star}.*", glob_pattern])
    with s:
        got = {n: import_stmt(f"{n}.sub") for n in (exact, star, glob, isolated)}
        tops = {n: sys.modules[n] for n in (exact, star, glob, isolated)}
    for n in (exact, star, glob):
        assert tops[n].VERSION == "0.1", n
        assert sys.modules[n] is tops[n]
        assert sys.modules[f"{n}.sub"] is got[n]
    assert tops[isolated].VERSION == "1.0"
    assert isolated not in sys.modules


def test_1_host_modules_are_shared(
    pkgs: PkgFactory, new_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host (here a fake ``ufe``, on the default host list) is loaded before any tool;
    a session importing it gets that object even with its own copy on its paths."""
    if "ufe" in sys.modules:
        pytest.fail("a real 'ufe' is loaded; this test generates a fake host package 'ufe'")
    pkgs.names.add("ufe")
    groot = pkgs.make("ufe", "0.1", {"sub.py": "X = 0\n"})
    sroot = pkgs.make("ufe", "1.0", {"sub.py": "X = 1\n"})
    monkeypatch.syspath_prepend(str(groot))
    host = import_stmt("ufe")
    s = new_session(paths=[sroot])
    with s:
        inside = import_stmt("ufe")
        sub = import_stmt("ufe.sub")  # first imported inside: still the host's
    assert inside is host
    assert sub.X == 0 and not is_session_module(sub)
    assert sys.modules["ufe.sub"] is sub
    assert "ufe" not in s.modules


# -- 2. same Session re-entered / new Session --------------------------------------------------


def test_2_reentry_returns_same_modules_executed_once(pkgs: PkgFactory, new_session: Any) -> None:
    name = pkgs.unique("reenter")
    root = pkgs.make(name, "1.0", {"sub.py": "X = object()\n"})
    s = new_session(paths=[root])
    with s:
        m1 = import_stmt(f"{name}.sub")
    with s:
        m2 = import_stmt(f"{name}.sub")
        with s:
            m3 = importlib.import_module(f"{name}.sub")
    assert m1 is m2 is m3
    assert runs_of(str(root)) == 1
    assert s.import_module(f"{name}.sub") is m1


def test_2_new_session_gets_fresh_modules(pkgs: PkgFactory, new_session: Any) -> None:
    name = pkgs.unique("fresh")
    root = pkgs.make(name, "1.0")
    s1 = new_session(paths=[root])
    s2 = new_session(paths=[root])
    with s1:
        m1 = import_stmt(name)
    with s2:
        m2 = import_stmt(name)
    assert m1 is not m2
    assert m1.TOKEN is not m2.TOKEN
    assert runs_of(str(root)) == 2
    with s1:
        assert import_stmt(name) is m1


# -- 3. lazy imports after exit ----------------------------------------------------------------

LAZY_MODULE_METHODS = [
    "via_import",
    "via_import_as",
    "via_from_relative",
    "via_from_absolute",
    "via_import_module",
    "via_import_module_relative",
    "via_dunder_import",
]
LAZY_DATA_METHODS = ["via_resources_files", "via_pkgutil_get_data"]


def _call_where(where: str, fn: Callable[[], Any], other: Any) -> Any:
    if where == "after_exit":
        return fn()
    if where == "thread":
        return in_thread(fn)
    if where == "other_block":
        with other:
            return fn()
    if where == "decorated_other":
        return other(fn)()
    raise AssertionError(where)


WHERE = ["after_exit", "thread", "other_block"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("method", LAZY_MODULE_METHODS)
def test_3_lazy_submodule_import(rich: Rich, method: str, where: str) -> None:
    with rich.a:
        lazy_a = import_stmt(f"{rich.name}.lazy")
    with rich.b:
        lazy_b = import_stmt(f"{rich.name}.lazy")
    sub = f"{rich.name}.sub"
    assert sub not in rich.a.modules and sub not in rich.b.modules, "sub must still be lazy"
    got_a = _call_where(where, getattr(lazy_a, method), rich.b)
    got_b = _call_where(where, getattr(lazy_b, method), rich.a)
    assert got_a.VERSION == "1.0", f"{method} from a's code after exit got {got_a!r}"
    assert got_b.VERSION == "2.0", f"{method} from b's code after exit got {got_b!r}"
    assert got_a is rich.a.modules[sub]
    assert got_b is rich.b.modules[sub]
    assert sub not in sys.modules
    assert_no_leak()
    assert import_stmt(sub).VERSION == "0.1"


@pytest.mark.parametrize("where", WHERE)
def test_3_lazy_top_level_import(rich: Rich, where: str) -> None:
    with rich.a:
        lazy_a = import_stmt(f"{rich.name}.lazy")
    with rich.b:
        lazy_b = import_stmt(f"{rich.name}.lazy")
    got_a = _call_where(where, lazy_a.via_import_top, rich.b)
    got_b = _call_where(where, lazy_b.via_import_top, rich.a)
    assert (got_a.VERSION, got_b.VERSION) == ("1.0", "2.0")
    assert got_a is rich.a.modules[rich.helper]
    assert rich.helper not in sys.modules
    assert import_stmt(rich.helper).VERSION == "0.1"
    assert_no_leak()


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("method", LAZY_DATA_METHODS)
def test_3_stdlib_helpers_resolve_real_names_in_session(
    rich: Rich, method: str, where: str
) -> None:
    with rich.a:
        lazy_a = import_stmt(f"{rich.name}.lazy")
    with rich.b:
        lazy_b = import_stmt(f"{rich.name}.lazy")
    assert _call_where(where, getattr(lazy_a, method), rich.b) == "data 1.0"
    assert _call_where(where, getattr(lazy_b, method), rich.a) == "data 2.0"
    assert_no_leak()


def test_3_lazy_import_from_timer_callback(rich: Rich) -> None:
    with rich.a:
        lazy_a = import_stmt(f"{rich.name}.lazy")
    box: list[Any] = []
    timer = threading.Timer(0.01, lambda: box.append(lazy_a.via_import()))
    timer.start()
    timer.join(10)
    assert box and box[0].VERSION == "1.0"
    assert box[0] is rich.a.modules[f"{rich.name}.sub"]


def test_3_exec_defined_function_imports_in_session_after_call(rich: Rich) -> None:
    ns = rich.a.exec(f"def later():\n    import {rich.name}.sub\n    return {rich.name}.sub\n")
    got = ns["later"]()
    assert got.VERSION == "1.0"
    assert got is rich.a.modules[f"{rich.name}.sub"]
    assert_no_leak()


def test_3_run_returns_session_results(rich: Rich) -> None:
    mod = rich.a.run(importlib.import_module, f"{rich.name}.sub")
    assert mod.VERSION == "1.0"
    assert rich.b.import_module(f"{rich.name}.sub").VERSION == "2.0"


# -- 4. pickle, dataclasses, typing, inspect, enum ---------------------------------------------


def _models(rich: Rich, s: Any) -> Any:
    with s:
        return import_stmt(f"{rich.name}.models")


def _maybe_in(s: Any, when: str) -> Any:
    import contextlib

    return s if when == "inside" else contextlib.nullcontext()


WHEN = ["inside", "after"]


@pytest.mark.parametrize("when", WHEN)
def test_4_pickle_round_trip(rich: Rich, when: str) -> None:
    for s in (rich.a, rich.b):
        models = _models(rich, s)
        with _maybe_in(s, when):
            obj = models.Plain(41)
            back = pickle.loads(pickle.dumps(obj))
            assert type(back) is models.Plain
            assert back.value == 41 and back.method() == rich.expected(s)
            point = models.Point(1, models.Color.GREEN)
            pback = pickle.loads(pickle.dumps(point))
            assert type(pback) is models.Point
            assert pback == point
            assert pickle.loads(pickle.dumps(models.Point)) is models.Point
            assert pickle.loads(pickle.dumps(models.make_later)) is models.make_later


@pytest.mark.parametrize("when", WHEN)
def test_4_dataclass_string_annotations(rich: Rich, when: str) -> None:
    for s in (rich.a, rich.b):
        models = _models(rich, s)
        with _maybe_in(s, when):
            assert [f.name for f in dataclasses.fields(models.Point)] == ["x", "color"]
            later = models.make_later()  # a dataclass created now (after exit: lazily)
            assert [f.name for f in dataclasses.fields(later)] == ["point", "color"]
            inst = later(models.Point(2, models.Color.RED), models.Color.GREEN)
            assert inst.point.x == 2


@pytest.mark.parametrize("when", WHEN)
def test_4_typing_get_type_hints(rich: Rich, when: str) -> None:
    a_models = _models(rich, rich.a)
    b_models = _models(rich, rich.b)
    for s, models in ((rich.a, a_models), (rich.b, b_models)):
        with _maybe_in(s, when):
            hints = typing.get_type_hints(models.Point)
            assert hints["x"] is int
            assert hints["color"] is models.Color
            assert hints["kind"] == typing.ClassVar[str]
            later_hints = typing.get_type_hints(models.make_later())
            assert later_hints["point"] is models.Point
    assert a_models.Color is not b_models.Color


@pytest.mark.parametrize("when", WHEN)
def test_4_inspect_getmodule(rich: Rich, when: str) -> None:
    for s in (rich.a, rich.b):
        models = _models(rich, s)
        with _maybe_in(s, when):
            assert inspect.getmodule(models.Point) is models
            assert inspect.getmodule(models.Plain.method) is models
            assert inspect.getmodule(models.make_later) is models
            assert inspect.getmodule(models.Plain(1)) is models
            assert inspect.getsource(models.Plain.method).strip().startswith("def method")


@pytest.mark.parametrize("when", WHEN)
def test_4_enum_identity(rich: Rich, when: str) -> None:
    a_models = _models(rich, rich.a)
    b_models = _models(rich, rich.b)
    for s, models in ((rich.a, a_models), (rich.b, b_models)):
        with _maybe_in(s, when):
            red = models.Color.RED
            assert models.Color(1) is red
            assert models.Color["RED"] is red
            assert pickle.loads(pickle.dumps(red)) is red
            assert copy.deepcopy(red) is red
            assert pickle.loads(pickle.dumps([red, models.Color.GREEN]))[1] is models.Color.GREEN
    assert a_models.Color.RED is not b_models.Color.RED


# -- 5. importlib.metadata -----------------------------------------------------------------------


def test_5_metadata_version_inside_block(rich: Rich) -> None:
    with rich.a:
        assert importlib.metadata.version(rich.name) == "1.0"
    with rich.b:
        assert importlib.metadata.version(rich.name) == "2.0"
        with rich.a:
            assert importlib.metadata.version(rich.name) == "1.0"
        assert importlib.metadata.version(rich.name) == "2.0"
    assert importlib.metadata.version(rich.name) == "0.1"


@pytest.mark.parametrize("where", ["inside", "after_exit", "thread", "other_block"])
@pytest.mark.parametrize(
    "fn", ["version_attr", "version_imported", "version_of_package", "version_in_function_import"]
)
def test_5_metadata_from_session_code(rich: Rich, fn: str, where: str) -> None:
    metas = {}
    for s in (rich.a, rich.b):
        with s:
            metas[s] = import_stmt(f"{rich.name}.meta")
            assert metas[s].AT_IMPORT == rich.expected(s)
    for s, other in ((rich.a, rich.b), (rich.b, rich.a)):
        call = getattr(metas[s], fn)
        if where == "inside":
            with s:
                got = call()
        else:
            got = _call_where(where, call, other)
        assert got == rich.expected(s), f"{fn} from {s!r} code ({where}) gave {got}"


def test_5_metadata_version_dunder_name(rich: Rich) -> None:
    for s in (rich.a, rich.b):
        with s:
            pkg = import_stmt(rich.name)
        assert pkg.OWN_VERSION_AT_IMPORT == rich.expected(s)
        assert pkg.own_version() == rich.expected(s)
        assert in_thread(pkg.own_version) == rich.expected(s)


def test_5_metadata_dist_only_in_session(pkgs: PkgFactory, new_session: Any) -> None:
    name = pkgs.unique("distonly")
    s = new_session(paths=[pkgs.make(name, "3.1.4", dist=name)])
    with s:
        assert importlib.metadata.version(name) == "3.1.4"
        assert importlib.metadata.distribution(name).metadata["Name"] == name
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version(name)


# -- 6. environment and paths ----------------------------------------------------------------


def _key(tag: str) -> str:
    import uuid

    return f"SUBSESSION_T_{tag}_{uuid.uuid4().hex[:8]}".upper()


def _child_env() -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    import json

    return dict(json.loads(out))


def _stdlib_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return [os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")]


def _is_stdlib_entry(p: str) -> bool:
    rp = os.path.realpath(p or os.getcwd())
    if "site-packages" in rp or "dist-packages" in rp:
        return False
    if rp.endswith(".zip") and os.path.basename(rp).startswith("python"):
        return True
    return any(rp == d or rp.startswith(d + os.sep) for d in _stdlib_dirs())


@pytest.mark.usefixtures("env_guard")
def test_6_inherit_env_false_is_exactly_env(
    new_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    glob, mine = _key("glob"), _key("mine")
    monkeypatch.setenv(glob, "global")
    before = dict(os.environ)
    s = new_session(env={mine: "session"}, inherit_env=False)
    with s:
        assert dict(os.environ) == {mine: "session"}
        assert os.getenv(glob) is None
        assert os.getenv(mine) == "session"
        child = _child_env()
        assert child.get(mine) == "session"
        assert glob not in child
        assert set(child) - {mine} <= {"LC_CTYPE"}, sorted(child)
    assert dict(os.environ) == before
    assert type(os.environ) is os._Environ


@pytest.mark.usefixtures("env_guard")
def test_6_inherit_env_overrides_and_unsets(
    new_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep, override, unset, added = _key("keep"), _key("over"), _key("unset"), _key("add")
    monkeypatch.setenv(keep, "k")
    monkeypatch.setenv(override, "global")
    monkeypatch.setenv(unset, "there")
    before = dict(os.environ)
    s = new_session(env={override: "session", unset: None, added: "new"})
    with s:
        expected = dict(before)
        expected.update({override: "session", added: "new"})
        del expected[unset]
        assert dict(os.environ) == expected
        assert os.getenv(keep) == "k"
        child = _child_env()
        assert (child.get(keep), child.get(override), child.get(added)) == ("k", "session", "new")
        assert unset not in child
    assert dict(os.environ) == before
    child = _child_env()
    assert (child.get(override), child.get(unset)) == ("global", "there")
    assert added not in child


@pytest.mark.usefixtures("env_guard")
def test_6_env_restored_exactly_with_added_and_deleted_keys(
    new_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing, changed, session_key = _key("exist"), _key("chg"), _key("sess")
    monkeypatch.setenv(existing, "e")
    monkeypatch.setenv(changed, "c")
    environ = os.environ
    before = dict(os.environ)
    s = new_session(env={session_key: "s"})
    with s:
        os.environ["SUBSESSION_T_ADDED_INSIDE"] = "1"
        del os.environ[existing]
        os.environ[changed] = "changed"
        os.environ.pop(session_key)
        assert os.environ is environ
    assert os.environ is environ and type(os.environ) is os._Environ
    assert dict(os.environ) == before
    assert os.getenv(existing) == "e" and os.getenv(changed) == "c"
    child = _child_env()
    assert child.get(existing) == "e" and child.get(changed) == "c"
    assert "SUBSESSION_T_ADDED_INSIDE" not in child and session_key not in child


@pytest.mark.usefixtures("env_guard")
def test_6_environ_stays_real_mapping(new_session: Any) -> None:
    environ = os.environ
    s = new_session(env={_key("x"): "1"}, inherit_env=False)
    with s:
        assert os.environ is environ
        assert type(os.environ) is os._Environ
        assert os.environ.copy() == dict(os.environ)
    assert os.environ is environ


@pytest.mark.usefixtures("env_guard")
def test_6_env_changes_inside_belong_to_session(
    new_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, added, deleted_global = _key("mine"), _key("added"), _key("delg")
    monkeypatch.setenv(deleted_global, "g")
    before = dict(os.environ)
    s = new_session(env={mine: "initial"})
    with s:
        os.environ[mine] = "changed"
        os.environ[added] = "inside"
        del os.environ[deleted_global]
    assert dict(os.environ) == before
    with s:
        assert os.environ.get(mine) == "changed"
        assert os.environ.get(added) == "inside"
        assert deleted_global not in os.environ
        assert _child_env().get(added) == "inside"
    assert dict(os.environ) == before


@pytest.mark.usefixtures("env_guard")
def test_6_inherit_env_sees_later_global_changes(
    new_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    glob = _key("later")
    monkeypatch.setenv(glob, "one")
    s = new_session(env={_key("x"): "1"})
    with s:
        assert os.environ[glob] == "one"
    os.environ[glob] = "two"
    with s:
        assert os.environ[glob] == "two"


def test_6_inherit_paths_false(rich: Rich, new_session: Any) -> None:
    before = list(sys.path)
    s = new_session(paths=[rich.roots["1.0"]], inherit_paths=False)
    with s:
        inside = list(sys.path)
        assert inside[0] == str(rich.roots["1.0"])
        rest = inside[1:]
        assert rest, "the standard library must stay importable"
        for p in rest:
            assert _is_stdlib_entry(p), f"non-stdlib entry {p!r} inside inherit_paths=False"
        assert str(rich.roots["0.1"]) not in inside
        expected_std = [p for p in before if _is_stdlib_entry(p) and p not in inside[:1]]
        assert [p for p in rest if p in expected_std] == expected_std
        assert import_stmt(rich.name).VERSION == "1.0"
        assert import_stmt("json") is sys.modules["json"]
        with pytest.raises(ImportError):
            import_stmt("pytest_nonexistent_" + rich.helper)
    assert sys.path == before


def test_6_inherit_paths_false_hides_global_only_packages(
    pkgs: PkgFactory, new_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gname = pkgs.unique("globonly")
    monkeypatch.syspath_prepend(str(pkgs.make(gname, "0.1")))
    s = new_session(paths=[pkgs.make(pkgs.unique("x"), "1.0")], inherit_paths=False)
    with s:
        with pytest.raises(ImportError):
            import_stmt(gname)
    assert import_stmt(gname).VERSION == "0.1"


def test_6_inherit_paths_true_puts_session_paths_first(rich: Rich) -> None:
    before = list(sys.path)
    with rich.a:
        inside = list(sys.path)
        assert inside[0] == str(rich.roots["1.0"])
        assert [p for p in inside if p != str(rich.roots["1.0"])] == before
    assert sys.path == before


def test_6_reentry_never_duplicates_sys_path(rich: Rich, new_session: Any) -> None:
    before = list(sys.path)
    p1 = str(rich.roots["1.0"])
    shared = new_session(paths=[rich.roots["1.0"]])
    for _ in range(3):
        with rich.a:
            assert sys.path.count(p1) == 1
            with rich.a:
                assert sys.path.count(p1) == 1
            assert sys.path.count(p1) == 1
            with shared:
                assert sys.path.count(p1) == 1
                with rich.a:
                    assert sys.path.count(p1) == 1
            assert sys.path.count(p1) == 1
        assert sys.path == before
    s2 = new_session(paths=[rich.roots["1.0"], rich.roots["1.0"]])
    with s2:
        assert sys.path.count(p1) == 1
    assert sys.path == before


def test_6_sys_path_changes_inside_belong_to_session(rich: Rich, tmp_path: Path) -> None:
    extra = str(tmp_path / "extra_entry")
    before = list(sys.path)
    with rich.a:
        sys.path.append(extra)
    assert sys.path == before
    with rich.a:
        assert sys.path.count(extra) == 1
    with rich.a:
        assert sys.path.count(extra) == 1
    assert sys.path == before


# -- 7. exceptions and nesting -------------------------------------------------------------------


class Boom(Exception):
    pass


def test_7_exception_inside_block_propagates_and_session_stays_usable(rich: Rich) -> None:
    before_path = list(sys.path)
    with pytest.raises(Boom):
        with rich.a:
            m = import_stmt(rich.name)
            raise Boom()
    assert sys.path == before_path
    assert subsession.current() is None
    assert_no_leak()
    with rich.a:
        assert import_stmt(rich.name) is m


def test_7_failing_import_leaves_no_half_module(pkgs: PkgFactory, new_session: Any) -> None:
    name = pkgs.unique("bad")
    root = pkgs.make(
        name,
        "1.0",
        {
            "__init__.py": default_init("1.0") + "raise RuntimeError('import-time failure')\n",
        },
    )
    s = new_session(paths=[root])
    for attempt in (1, 2):
        with pytest.raises(RuntimeError, match="import-time failure"):
            with s:
                import_stmt(name)
        assert runs_of(str(root)) == attempt, "a failed import must run again, not be cached"
        assert name not in sys.modules
        assert name not in s.modules
        assert f"{s.prefix}.{name}" not in sys.modules
    assert subsession.current() is None


def test_7_exception_in_nested_session(rich: Rich) -> None:
    with rich.a:
        ma = import_stmt(rich.name)
        with pytest.raises(Boom):
            with rich.b:
                assert import_stmt(rich.name).VERSION == "2.0"
                raise Boom()
        assert subsession.current() is rich.a
        assert import_stmt(rich.name) is ma
        assert sys.modules[rich.name] is ma
    assert subsession.current() is None
    assert_no_leak()


def test_7_aba_nesting_keeps_each_sessions_modules(rich: Rich) -> None:
    sub = f"{rich.name}.sub"
    with rich.a:
        a1 = import_stmt(rich.name)
        with rich.b:
            b1 = import_stmt(rich.name)
            assert sys.modules[rich.name] is b1
            with rich.a:
                assert import_stmt(rich.name) is a1
                assert sys.modules[rich.name] is a1
                a_sub = import_stmt(sub)  # first imported in the inner a block
                assert a_sub.VERSION == "1.0"
            assert sys.modules[rich.name] is b1
            assert import_stmt(sub).VERSION == "2.0"
        assert sys.modules[rich.name] is a1
        assert import_stmt(sub) is a_sub, "outer a must see what inner a imported"
    assert runs_of(str(rich.roots["1.0"])) == 1
    assert runs_of(str(rich.roots["2.0"])) == 1
    assert_no_leak()


# -- 8. threads (the stress version is test_threads.py) ----------------------------------------


def test_8_other_thread_gets_global_modules_during_block(rich: Rich) -> None:
    g = import_stmt(rich.name)  # the global is loaded
    with rich.a:
        inside = import_stmt(rich.name)
        results = in_thread(
            lambda: (
                import_stmt(rich.name),
                __import__(rich.name),
                importlib.import_module(rich.name),
                importlib.import_module(f"{rich.name}.sub"),
                import_stmt(rich.helper),
                subsession.current(),
            )
        )
        assert import_stmt(rich.name) is inside
    for got in results[:3]:
        assert got is g
    assert results[3].VERSION == "0.1"
    assert results[4].VERSION == "0.1"
    assert results[5] is None
    assert inside.VERSION == "1.0"


def test_8_block_never_gets_modules_another_thread_loads(rich: Rich) -> None:
    entered = threading.Event()
    loaded = threading.Event()
    box: dict[str, Any] = {}

    def worker() -> None:
        entered.wait(10)
        box["g"] = import_stmt(f"{rich.name}.sub")  # loads the global package now
        loaded.set()

    t = threading.Thread(target=worker)
    t.start()
    with rich.a:
        entered.set()
        assert loaded.wait(10)
        inside = import_stmt(f"{rich.name}.sub")
        top = import_stmt(rich.name)
    t.join(10)
    assert box["g"].VERSION == "0.1"
    assert inside.VERSION == "1.0" and top.VERSION == "1.0"
    assert sys.modules[rich.name].VERSION == "0.1"


def test_8_current_is_per_thread(rich: Rich) -> None:
    with rich.a:
        assert subsession.current() is rich.a
        assert in_thread(subsession.current) is None

        def nested() -> Any:
            with rich.b:
                return subsession.current(), import_stmt(rich.name).VERSION

        assert in_thread(nested) == (rich.b, "2.0")
        assert subsession.current() is rich.a


# -- 9. names ------------------------------------------------------------------------------------


def test_9_prefix_is_readable_and_derived_from_name(pkgs: PkgFactory, new_session: Any) -> None:
    sname = pkgs.unique("toolA")
    pkg = pkgs.unique("named")
    s = new_session(sname, paths=[pkgs.make(pkg, "1.0", {"sub.py": "X = 1\n"})])
    assert s.prefix.startswith(SESSION_PREFIX)
    assert sname in s.prefix
    assert "." not in s.prefix
    with s:
        m = import_stmt(f"{pkg}.sub")
    assert m.__name__ == f"{s.prefix}.{pkg}.sub"
    assert sys.modules[m.__name__] is m
    assert m.__spec__.name == m.__name__
    assert s.modules[f"{pkg}.sub"] is m
    assert all(not k.startswith(SESSION_PREFIX) for k in s.modules)


def test_9_prefix_for_names_with_dash_and_dot(new_session: Any) -> None:
    import uuid

    tag = uuid.uuid4().hex[:6]
    s = new_session(f"tool-{tag}.v2")
    assert s.prefix.startswith(SESSION_PREFIX)
    assert "." not in s.prefix and "-" not in s.prefix
    assert tag in s.prefix
    assert s.prefix.isidentifier()


def test_9_anonymous_sessions_have_distinct_prefixes(new_session: Any) -> None:
    s1, s2 = new_session(), new_session()
    assert s1.prefix != s2.prefix
    assert s1.prefix.startswith(SESSION_PREFIX) and s2.prefix.startswith(SESSION_PREFIX)
    assert s1.name is None


def test_9_registry_get_sessions_current(new_session: Any) -> None:
    import uuid

    name = f"reg_{uuid.uuid4().hex[:8]}"
    s = new_session(name)
    assert subsession.get(name) is s
    assert s in subsession.sessions()
    assert Session_reuse(name) is s
    with pytest.raises(Exception, match=name):
        subsession.Session(name)
    assert subsession.current() is None
    with s:
        assert subsession.current() is s
    s.close()
    assert s not in subsession.sessions()
    with pytest.raises(Exception):  # noqa: B017 - the engine's own error type
        subsession.get(name)


def Session_reuse(name: str) -> Any:  # noqa: N802 - reads like the call it makes
    return subsession.Session(name, reuse=True)


def test_9_logger_under_prefix_catches_session_logs(
    pkgs: PkgFactory, new_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pkg = pkgs.unique("logs")
    src = textwrap.dedent(
        """\
        import logging
        log = logging.getLogger(__name__)
        def hello():
            log.warning("hello from the session")
        """
    )
    s = new_session(pkgs.unique("logger"), paths=[pkgs.make(pkg, "1.0", {"__init__.py": src})])
    with s:
        m = import_stmt(pkg)
    with caplog.at_level(logging.WARNING, logger=s.prefix):
        m.hello()
    records = [r for r in caplog.records if r.getMessage() == "hello from the session"]
    assert records and records[0].name == f"{s.prefix}.{pkg}"


def test_9_closed_session_cannot_be_activated(new_session: Any) -> None:
    s = new_session()
    s.close()
    with pytest.raises(Exception, match="(?i)closed"):
        with s:
            pass
    assert subsession.current() is None
