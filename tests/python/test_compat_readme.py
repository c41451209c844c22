"""docs/contract.md §3.1: every example of the original py-sub-session README, and the behaviour its
unit tests check, written from scratch against ``subsession``.

The original fixture ``dummy_pkg`` calls a ``unittest.mock.Mock`` named
``runs_on_import`` when it is executed; every session must execute it exactly once.
Package names are unique per test, so imports are spelled with :func:`import_stmt`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import subsession
from conftest import PkgFactory, import_stmt, is_session_module, leaked_real_names
from subsession import Session

DUMMY = """\
from unittest import mock


@mock.Mock()
def runs_on_import():
    pass


runs_on_import()
"""


@pytest.fixture
def dummy(pkgs: PkgFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """``dummy_pkg`` on the global ``sys.path``, like the original test-suite sets up."""
    name = pkgs.unique("dummy_pkg")
    monkeypatch.syspath_prepend(str(pkgs.make(name, "1.0", {"__init__.py": DUMMY})))
    return name


@pytest.fixture
def local_path(pkgs: PkgFactory) -> tuple[Path, str]:
    """A folder holding a module importable only through a session's ``paths``."""
    name = pkgs.unique("non_findable_pkg")
    return pkgs.make(name, "1.0", {"__init__.py": "FOUND = True\n"}), name


@pytest.fixture
def tracked(new_session: Callable[..., Any]) -> Callable[..., Any]:
    """``Session(...)`` exactly as the README spells it, closed at teardown."""
    return new_session


def env_key() -> str:
    import uuid

    return f"SUBSESSION_COMPAT_{uuid.uuid4().hex[:8].upper()}"


# -- README: "Isolating Imports" --------------------------------------------------------------


def test_readme_isolating_imports(dummy: str, tracked: Callable[..., Any]) -> None:
    with tracked():
        a = import_stmt(dummy)
    with tracked():
        b = import_stmt(dummy)
    assert a is not b
    a.runs_on_import.assert_called_once()
    b.runs_on_import.assert_called_once()


def test_readme_isolating_reimports_a_globally_cached_module(
    dummy: str, tracked: Callable[..., Any]
) -> None:
    g = import_stmt(dummy)
    with tracked():
        inside = import_stmt(dummy)
    assert inside is not g
    assert inside.runs_on_import is not g.runs_on_import
    inside.runs_on_import.assert_called_once()
    g.runs_on_import.assert_called_once()
    assert sys.modules[dummy] is g


def test_readme_keep_global(
    pkgs: PkgFactory, dummy: str, tracked: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform_module = pkgs.unique("platform_module")
    monkeypatch.syspath_prepend(str(pkgs.make(platform_module, "1.0")))
    cached = import_stmt(platform_module)
    with tracked(keep_global=[platform_module]):
        my_module = import_stmt(dummy)
        inside = import_stmt(platform_module)
    assert inside is cached
    assert is_session_module(my_module)
    assert not is_session_module(inside)


# -- README: "Isolating Environment" ------------------------------------------------------------


def test_readme_env_and_paths(
    local_path: tuple[Path, str], tracked: Callable[..., Any], env_guard: None
) -> None:
    folder, module_at_local_path = local_path
    key = env_key()
    with tracked(env={key: "test"}, paths=[str(folder)]):
        mod = import_stmt(module_at_local_path)  # discoverable at the session's path
        assert mod.FOUND is True
        assert os.getenv(key) == "test"
        assert str(folder) in sys.path
    assert os.getenv(key) is None  # "ONLY patched while the context manager is active"
    assert str(folder) not in sys.path
    with pytest.raises(ImportError):
        import_stmt(module_at_local_path)


# -- README: "Reloading Modules" ----------------------------------------------------------------


def test_readme_reload(dummy: str, tracked: Callable[..., Any]) -> None:
    with tracked() as s:
        my_module = import_stmt(dummy)
    func_before = my_module.runs_on_import
    reloaded = s.reload(my_module)
    assert reloaded is my_module  # in place, like importlib.reload
    assert my_module.runs_on_import is not func_before
    my_module.runs_on_import.assert_called_once()
    func_before.assert_called_once()


def test_reload_by_real_name_runs_with_session_env_and_paths(
    pkgs: PkgFactory, local_path: tuple[Path, str], tracked: Callable[..., Any], env_guard: None
) -> None:
    folder, helper = local_path
    key = env_key()
    name = pkgs.unique("reload_env")
    src = f"import os\nimport {helper}\nSEEN = os.environ.get({key!r})\nFOUND = {helper}.FOUND\n"
    root = pkgs.make(name, "1.0", {"__init__.py": src})
    s = tracked(env={key: "inside"}, paths=[root, folder])
    with s:
        mod = import_stmt(name)
    os.environ[key] = "global"
    mod.SEEN = None
    assert s.reload(name) is mod
    assert (mod.SEEN, mod.FOUND) == ("inside", True)
    assert os.environ[key] == "global"


# -- the original unit tests ------------------------------------------------------------------


def _assert_isolated(a: Any, b: Any, c: Any, d: Any, key: str) -> None:
    assert key not in os.environ
    assert a is not b
    assert a is not c
    assert b is not c
    assert a is d
    for mod in (a, b, c):
        mod.runs_on_import.assert_called_once()


def test_unit_context_manager(
    dummy: str, local_path: tuple[Path, str], tracked: Callable[..., Any], env_guard: None
) -> None:
    folder, non_findable_pkg = local_path
    key = env_key()
    a = import_stmt(dummy)
    with tracked(env={key: "test"}, paths=[str(folder)]):
        b = import_stmt(dummy)
        assert os.environ[key] == "test"
        import_stmt(non_findable_pkg)  # must not raise
    with tracked():
        c = import_stmt(dummy)
        with pytest.raises(ImportError):
            import_stmt(non_findable_pkg)
    d = import_stmt(dummy)
    _assert_isolated(a, b, c, d, key)


def test_unit_decorator(
    dummy: str, local_path: tuple[Path, str], tracked: Callable[..., Any], env_guard: None
) -> None:
    folder, non_findable_pkg = local_path
    key = env_key()
    got: dict[str, Any] = {}
    a = import_stmt(dummy)

    @tracked(env={key: "test"}, paths=[str(folder)])
    def run_b() -> None:
        got["b"] = import_stmt(dummy)
        assert os.environ[key] == "test"
        import_stmt(non_findable_pkg)

    @tracked()
    def run_c() -> None:
        got["c"] = import_stmt(dummy)

    d = import_stmt(dummy)
    run_b()
    run_c()
    _assert_isolated(a, got["b"], got["c"], d, key)
    run_b()  # a decorated function activates its session on every call
    assert got["b"].runs_on_import.call_count == 1


def test_unit_decorator_preserves_function(tracked: Callable[..., Any]) -> None:
    s = tracked()

    @s
    def tool(x: int, *, y: int = 2) -> tuple[int, Any]:
        """Doc."""
        return x * y, subsession.current()

    assert tool.__name__ == "tool" and tool.__doc__ == "Doc."
    assert tool(3, y=4) == (12, s)
    assert subsession.current() is None


def test_unit_internal_caching_import_after(dummy: str, tracked: Callable[..., Any]) -> None:
    with tracked():
        a = import_stmt(dummy)
        b = import_stmt(dummy)
    c = import_stmt(dummy)
    assert a is b
    assert a is not c
    a.runs_on_import.assert_called_once()


def test_unit_internal_caching_import_before(dummy: str, tracked: Callable[..., Any]) -> None:
    a = import_stmt(dummy)
    with tracked():
        b = import_stmt(dummy)
        c = import_stmt(dummy)
    assert b is c
    assert a is not c


def test_unit_keep_global_import_before(dummy: str, tracked: Callable[..., Any]) -> None:
    a = import_stmt(dummy)
    with tracked(keep_global=[dummy]):
        b = import_stmt(dummy)
    assert a is b
    a.runs_on_import.assert_called_once()


def test_unit_keep_global_import_after(dummy: str, tracked: Callable[..., Any]) -> None:
    with tracked(keep_global=[dummy]):
        a = import_stmt(dummy)
    b = import_stmt(dummy)
    assert a is b
    assert sys.modules[dummy] is a
    a.runs_on_import.assert_called_once()
    assert not leaked_real_names()


def test_unit_reload(dummy: str, tracked: Callable[..., Any]) -> None:
    with tracked() as s:
        a = import_stmt(dummy)
    func_before = a.runs_on_import
    s.reload(a)
    assert func_before is not a.runs_on_import


def test_import_error_for_module_only_on_another_sessions_paths(
    local_path: tuple[Path, str], tracked: Callable[..., Any]
) -> None:
    folder, only_there = local_path
    owner = tracked(paths=[folder])
    other = tracked()
    with owner:
        assert import_stmt(only_there).FOUND is True
    with other:
        with pytest.raises(ImportError):
            import_stmt(only_there)
        with owner:
            assert import_stmt(only_there) is owner.modules[only_there]
        with pytest.raises(ImportError):
            import_stmt(only_there)
    with pytest.raises(ImportError):
        other.import_module(only_there)


def test_runs_on_import_once_per_session(dummy: str, tracked: Callable[..., Any]) -> None:
    sessions = [tracked() for _ in range(3)]
    mods = []
    for s in sessions:
        for _ in range(2):
            with s:
                m = import_stmt(dummy)
                import_stmt(dummy)
        mods.append(m)
    assert len({id(m) for m in mods}) == 3
    for m in mods:
        m.runs_on_import.assert_called_once()
    assert len({id(m.runs_on_import) for m in mods}) == 3


def test_session_class_is_importable_like_the_original() -> None:
    assert subsession.Session is Session
    s = Session()
    try:
        with s as entered:
            assert entered is s
    finally:
        s.close()
