"""Import errors of session code name modules as the code wrote them (docs/contract.md §4.4).

Libraries probe optional dependencies with ``except ImportError as e: if e.name !=
"socks": raise`` (urllib3) or print ``str(e)`` to the user: a session's qualified
names must not leak into ``e.name``, ``str(e)`` or ``e.args`` of the errors the import
system raises. (``cannot import name 'y' from 'x'`` comes from the interpreter, which
builds it from the module's ``__name__``: a documented limit.) And setuptools'
``distutils`` shim, which answers ``import distutils`` for the whole process, must not
be re-executed inside a session (its private setuptools would become the global
``distutils``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import SESSION_PREFIX, PkgFactory, is_session_module

PROBES = """\
def missing_top():
    try:
        import {missing}
    except ModuleNotFoundError as e:
        return e.name, str(e), e.args
    return None


def missing_dynamic():
    import importlib
    try:
        importlib.import_module("{missing}.deeper")
    except ModuleNotFoundError as e:
        return e.name, str(e), e.args
    return None
"""


@pytest.fixture
def probes(pkgs: PkgFactory, new_session: Callable[..., Any]) -> tuple[Any, str, str]:
    name = pkgs.unique("ierr")
    missing = pkgs.unique("ierr_missing")
    root = pkgs.make(
        name,
        files={
            "__init__.py": PROBES.format(missing=missing),
        },
    )
    s = new_session(paths=[root])
    return s, name, missing


def assert_unqualified(found: Any) -> None:
    assert found is not None, "the import was expected to fail"
    name, text, args = found
    assert SESSION_PREFIX not in str(name), found
    assert SESSION_PREFIX not in text, found
    assert all(SESSION_PREFIX not in str(a) for a in args), found


@pytest.mark.parametrize("probe", ["missing_top", "missing_dynamic"])
@pytest.mark.parametrize("where", ["inside", "after"])
def test_module_not_found_names_the_real_module(
    probes: tuple[Any, str, str], probe: str, where: str
) -> None:
    s, name, missing = probes
    with s:
        mod = importlib.import_module(name)
        if where == "inside":
            found = getattr(mod, probe)()
    if where == "after":
        found = getattr(mod, probe)()
    assert_unqualified(found)
    assert found[0] == missing, found
    assert f"No module named '{missing}'" in found[1], found


def test_import_module_api_error_names_the_real_module(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    missing = pkgs.unique("ierr_api")
    s = new_session(paths=[])
    with pytest.raises(ModuleNotFoundError) as info:
        s.import_module(missing)
    assert info.value.name == missing
    assert SESSION_PREFIX not in str(info.value)


def test_distutils_resolves_globally(new_session: Callable[..., Any]) -> None:
    """Wherever setuptools' shim is active (3.11 venvs), ``import distutils`` in a
    session must give the global distutils and leave no session copy of setuptools;
    where distutils does not exist at all, the error names it plainly."""
    s = new_session(paths=[])
    try:
        with s:
            import distutils.core  # noqa: F401
    except ImportError as e:
        assert SESSION_PREFIX not in str(e)
        assert e.name in (None, "distutils", "distutils.core")
        return
    finally:
        private = [n for n in s.modules if n.partition(".")[0] in ("setuptools", "_distutils_hack")]
        assert not private, private
    glob = sys.modules["distutils"]
    assert not is_session_module(glob), glob
    assert not str(sys.modules["distutils.core"].Command.__module__).startswith(SESSION_PREFIX)
    assert Path(str(glob.__file__)).exists()
