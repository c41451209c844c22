"""Shared fixtures for the Python test-suite.

- :func:`make_pkg` writes a package (plus an optional ``.dist-info``) into a folder;
  the ``pkgs`` fixture does the same under the test's ``tmp_path`` with unique names.
- :class:`GlobalState` snapshots what a session must restore exactly: ``sys.modules``
  (non-session keys, by identity), ``sys.path``, ``os.environ`` (and that it stays the
  real ``os._Environ``), ``sys.meta_path`` and ``builtins.__import__``.
- ``new_session`` creates sessions that are closed when the test ends.
- ``import_stmt`` runs a real ``import`` statement for a name chosen at run time.
"""

from __future__ import annotations

import builtins
import itertools
import os
import shutil
import sys
import sysconfig
import textwrap
import types
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

SESSION_PREFIX = "__subsession_"
RUNS_ATTR = "_subsession_test_runs"
_counter = itertools.count(1)


# -- package generation -------------------------------------------------------------------


def unique_name(base: str = "pkg") -> str:
    """A module name no other test (or run) uses: ``base_<n>_<hex>``."""
    return f"{base}_{next(_counter)}_{uuid.uuid4().hex[:6]}"


def default_init(version: str) -> str:
    """The ``__init__.py`` every generated package gets unless ``files`` overrides it.

    It records each execution in ``sys._subsession_test_runs`` (``sys`` is shared by
    every session) so tests can count fresh executions, and carries ``VERSION`` and an
    identity token.
    """
    return textwrap.dedent(
        f"""\
        import sys as _sys

        VERSION = {version!r}
        TOKEN = object()
        _sys.__dict__.setdefault({RUNS_ATTR!r}, []).append(__file__)
        """
    )


def write_files(root: Path, files: Mapping[str, str | bytes]) -> None:
    """Write ``{relative path: text}`` under ``root`` (text is dedented)."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")


def make_dist_info(root: Path, dist: str, version: str, top_level: str | None = None) -> Path:
    """Write a minimal ``<dist>-<version>.dist-info`` so ``importlib.metadata`` finds it."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "top_level.txt").write_text(f"{top_level or dist}\n", encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    return info


def make_pkg(
    root: Path | str,
    name: str,
    version: str = "1.0",
    files: Mapping[str, str | bytes] | None = None,
    *,
    dist: str | None = None,
    module: bool = False,
) -> Path:
    """Write package ``name`` into folder ``root`` and return ``root``.

    ``files`` maps paths relative to the package folder to source (dedented); an
    ``__init__.py`` in it replaces the default one (:func:`default_init`). With
    ``module=True`` a single ``name.py`` is written instead (from ``files["__init__.py"]``
    if given). ``dist`` also writes a ``<dist>-<version>.dist-info``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = dict(files or {})
    init = files.pop("__init__.py", None)
    if init is None:
        init = default_init(version)
    if module:
        if files:
            raise ValueError("module=True takes only an __init__.py source")
        write_files(root, {f"{name}.py": init})
    else:
        write_files(root / name, {"__init__.py": init, **files})
    if dist is not None:
        make_dist_info(root, dist, version, top_level=name)
    return root


def runs_of(path_fragment: str) -> int:
    """How many times a generated module whose ``__file__`` contains the fragment ran."""
    runs = getattr(sys, RUNS_ATTR, [])
    return sum(1 for f in runs if path_fragment in f)


@dataclass
class PkgFactory:
    """``pkgs`` fixture: packages under the test's tmp dir; cleans real-name leftovers."""

    tmp: Path
    names: set[str] = field(default_factory=set)

    def unique(self, base: str = "pkg") -> str:
        name = unique_name(base)
        self.names.add(name)
        return name

    def make(
        self,
        name: str,
        version: str = "1.0",
        files: Mapping[str, str | bytes] | None = None,
        *,
        root: Path | str | None = None,
        dist: str | None = None,
        module: bool = False,
    ) -> Path:
        """Write ``name`` (version ``version``) into ``root`` (default: a fresh folder
        ``tmp/<name>-<version>-<n>``) and return that folder, ready for ``paths=[...]``."""
        self.names.add(name.partition(".")[0])
        if root is None:
            root = self.tmp / f"{name}-{version}-{next(_counter)}"
        return make_pkg(root, name, version, files, dist=dist, module=module)

    def cleanup(self) -> None:
        for key in list(sys.modules):
            if key.partition(".")[0] in self.names:
                sys.modules.pop(key, None)


@pytest.fixture
def pkgs(tmp_path: Path) -> Iterator[PkgFactory]:
    factory = PkgFactory(tmp_path)
    yield factory
    factory.cleanup()


# -- running code --------------------------------------------------------------------------


def import_stmt(name: str, fromlist: tuple[str, ...] = ()) -> Any:
    """Execute a real ``import name as m`` (or ``from name import a, b``) statement in
    global code and return what it bound (``m``, or a tuple of the from-names)."""
    ns: dict[str, Any] = {}
    if fromlist:
        exec(f"from {name} import {', '.join(fromlist)}", ns)
        return tuple(ns[x] for x in fromlist)
    exec(f"import {name} as m", ns)
    return ns["m"]


def is_session_module(mod: object) -> bool:
    name = getattr(mod, "__name__", None)
    return isinstance(name, str) and name.startswith(SESSION_PREFIX)


def leaked_real_names() -> dict[str, str]:
    """``sys.modules`` keys without the session prefix whose value is a session module."""
    return {
        key: mod.__name__
        for key, mod in list(sys.modules.items())
        if isinstance(key, str) and not key.startswith(SESSION_PREFIX) and is_session_module(mod)
    }


# -- global state --------------------------------------------------------------------------


@dataclass
class GlobalState:
    """What a session must put back exactly."""

    modules: dict[str, object]
    path: list[str]
    environ: dict[str, str]
    environ_obj: object
    environ_type: type
    meta_path: list[object]
    import_fn: Callable[..., Any]
    path_hooks: list[object]

    @classmethod
    def take(cls) -> GlobalState:
        return cls(
            modules={
                k: v
                for k, v in list(sys.modules.items())
                if not (isinstance(k, str) and k.startswith(SESSION_PREFIX))
            },
            path=list(sys.path),
            environ=dict(os.environ),
            environ_obj=os.environ,
            environ_type=type(os.environ),
            meta_path=list(sys.meta_path),
            import_fn=builtins.__import__,
            path_hooks=list(sys.path_hooks),
        )

    def diff(self, other: GlobalState) -> list[str]:
        """Human-readable differences from ``self`` (before) to ``other`` (after)."""
        out: list[str] = []
        added = sorted(set(other.modules) - set(self.modules))
        removed = sorted(set(self.modules) - set(other.modules))
        replaced = sorted(
            k
            for k in set(self.modules) & set(other.modules)
            if self.modules[k] is not other.modules[k]
        )
        if added:
            out.append(f"sys.modules keys added: {added[:20]}")
        if removed:
            out.append(f"sys.modules keys removed: {removed[:20]}")
        if replaced:
            out.append(f"sys.modules values replaced: {replaced[:20]}")
        if self.path != other.path:
            out.append(f"sys.path changed:\n  before {self.path}\n  after  {other.path}")
        if self.environ != other.environ:
            keys = sorted(set(self.environ) | set(other.environ))
            changes = {
                k: (self.environ.get(k), other.environ.get(k))
                for k in keys
                if self.environ.get(k) != other.environ.get(k)
            }
            out.append(f"os.environ changed (before, after): {changes}")
        if other.environ_obj is not self.environ_obj or other.environ_type is not os._Environ:
            out.append(f"os.environ replaced by {other.environ_type!r}")
        if [id(x) for x in self.meta_path] != [id(x) for x in other.meta_path]:
            out.append(
                f"sys.meta_path changed:\n  before {self.meta_path}\n  after  {other.meta_path}"
            )
        if self.import_fn is not other.import_fn:
            out.append(f"builtins.__import__ changed: {self.import_fn!r} -> {other.import_fn!r}")
        if [id(x) for x in self.path_hooks] != [id(x) for x in other.path_hooks]:
            out.append("sys.path_hooks changed")
        return out


def assert_state_equal(before: GlobalState, after: GlobalState | None = None) -> None:
    after = after if after is not None else GlobalState.take()
    problems = before.diff(after)
    assert not problems, "global state not restored:\n" + "\n".join(problems)


@pytest.fixture
def snapshot() -> Callable[[], GlobalState]:
    return GlobalState.take


# -- sessions ------------------------------------------------------------------------------


@pytest.fixture
def new_session() -> Iterator[Callable[..., Any]]:
    """``new_session(name=None, **kwargs)`` -> ``subsession.Session``; every session the
    test created is closed at teardown, and the test must leave no block active."""
    import subsession

    created: list[Any] = []

    def factory(name: str | None = None, **kwargs: Any) -> Any:
        s = subsession.Session(name, **kwargs)
        created.append(s)
        return s

    yield factory
    still_active = subsession.current()
    for s in reversed(created):
        if not getattr(s, "closed", False):
            s.close()
    assert still_active is None, f"test left session {still_active!r} active"


@pytest.fixture
def env_guard() -> Iterator[None]:
    """Restore ``os.environ`` exactly after the test, whatever the engine did."""
    saved = dict(os.environ)
    yield
    for key in [k for k in os.environ if k not in saved]:
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def module_file(mod: types.ModuleType) -> str:
    return str(getattr(mod, "__file__", "") or "")


def compiler() -> str:
    """The C compiler for tests that build an extension module of their own."""
    configured = (sysconfig.get_config_var("CC") or "").split()
    for cand in configured[:1] + ["cc", "gcc"]:
        if shutil.which(cand):
            return cand
    raise AssertionError("a C compiler is required for this test (cc or gcc on PATH)")
