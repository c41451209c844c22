"""Python classes CPython's import system requires to be real subclasses.

``importlib.resources``, ``inspect``, ``linecache`` and ``pkgutil`` look at a module's
loader by type, so a session's loaders must *be* ``SourceFileLoader`` & co; they only
hand the module to the Rust core (:mod:`subsession._core`) around execution. The
proxies give session code a session-aware ``importlib``/``importlib.metadata``/
``pkgutil``. Every decision is made in Rust.
"""

from __future__ import annotations

import importlib
import importlib.machinery as machinery
import importlib.metadata as metadata
import os
import pkgutil
import types
from collections.abc import Iterator
from typing import Any

__all__ = [
    "AliasLoader",
    "DirGate",
    "ImportlibProxy",
    "MetadataProxy",
    "PkgutilProxy",
    "SessionExtensionLoader",
    "SessionSourceLoader",
    "SessionSourcelessLoader",
    "SharedModuleLoader",
    "UnloadProbe",
]


class SessionSourceLoader(machinery.SourceFileLoader):
    """Executes a session's ``.py`` module with the session's ``__builtins__``."""

    _session: Any = None
    _stamp: tuple[int, int] | None = None

    def path_stats(self, path: str) -> dict[str, Any]:
        # The stat that validates the code is also the module's stamp for stale().
        st = os.stat(path)
        self._stamp = (st.st_mtime_ns, st.st_size)
        return {"mtime": st.st_mtime, "size": st.st_size}

    def exec_module(self, module: types.ModuleType) -> None:
        self._session._exec_module(module, super().exec_module)


class SessionSourcelessLoader(machinery.SourcelessFileLoader):
    """Executes a session's ``.pyc``-only module with the session's ``__builtins__``."""

    _session: Any = None

    def exec_module(self, module: types.ModuleType) -> None:
        self._session._exec_module(module, super().exec_module)


class SessionExtensionLoader(machinery.ExtensionFileLoader):
    """Initialises a session's C extension inside an activation of its session: C code
    imports by real name and reads ``sys.modules`` directly."""

    _session: Any = None

    def create_module(self, spec: machinery.ModuleSpec) -> types.ModuleType:
        return self._session._init_extension(super().create_module, spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        self._session._init_extension(super().exec_module, module)


class AliasLoader:
    """A real-name import that bypassed the hooks inside a block (C code): hand out the
    session's module instead of loading a global one."""

    def __init__(self, session: Any, qualified: str) -> None:
        self.session = session
        self.qualified = qualified

    def create_module(self, spec: machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        self.session._alias_load(module, self.qualified)


class SharedModuleLoader:
    """Hands a session an extension module that is already initialised (C extensions
    cannot be initialised twice); the module keeps its own name and state."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    def create_module(self, spec: machinery.ModuleSpec) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class UnloadProbe:
    """Placed in a closing session's module globals: it dies with them, so a live
    probe after a GC pass means something still holds the module's code."""

    __slots__ = ("__weakref__",)


class DirGate:
    """``sys.path_importer_cache`` entry for a session-only path entry: while blocks are
    active it answers only threads whose active session holds the entry."""

    def __init__(self, path: str, inner: Any, gate: Any) -> None:
        self.path = path
        self.inner = inner
        self._open = gate

    def find_spec(self, fullname: str, target: Any = None) -> Any:
        if self._open(self.path, fullname):
            return self.inner.find_spec(fullname, target)
        return None

    def invalidate_caches(self) -> None:
        invalidate = getattr(self.inner, "invalidate_caches", None)
        if invalidate is not None:
            invalidate()

    def iter_modules(self, prefix: str = "") -> Iterator[tuple[str, bool]]:
        if self._open(self.path, ""):
            return pkgutil.iter_importer_modules(self.inner, prefix)  # type: ignore[attr-defined,no-any-return]
        return iter(())


class MetadataProxy(types.ModuleType):
    """``importlib.metadata`` for session code: distributions come from the session's
    search path, and ``version(__name__)`` strips the session prefix."""

    def __init__(self, session: Any) -> None:
        super().__init__("importlib.metadata")
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(metadata, name)

    def distribution(self, name: str) -> metadata.Distribution:
        real = self._session.real_name(name)
        for dist in metadata.distributions(name=real, path=self._session.search_path()):
            return dist
        raise metadata.PackageNotFoundError(real)

    def distributions(self, **kwargs: Any) -> Any:
        kwargs.setdefault("path", self._session.search_path())
        return metadata.distributions(**kwargs)

    def version(self, name: str) -> str:
        return self.distribution(name).version

    def metadata(self, name: str) -> Any:
        return self.distribution(name).metadata

    def requires(self, name: str) -> Any:
        return self.distribution(name).requires

    def files(self, name: str) -> Any:
        return self.distribution(name).files

    def entry_points(self, **params: Any) -> Any:
        eps = [ep for dist in self.distributions() for ep in dist.entry_points]
        if not params:
            return metadata.EntryPoints(eps) if hasattr(metadata, "EntryPoints") else eps
        return [ep for ep in eps if all(getattr(ep, k) == v for k, v in params.items())]


class ImportlibProxy(types.ModuleType):
    """``importlib`` for session code: ``import_module`` imports in the session."""

    def __init__(self, session: Any) -> None:
        super().__init__("importlib")
        self._session = session
        self.metadata = MetadataProxy(session)

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib, name)

    def import_module(self, name: str, package: str | None = None) -> types.ModuleType:
        return self._session._import_module(name, package)  # type: ignore[no-any-return]


class PkgutilProxy(types.ModuleType):
    """``pkgutil`` for session code: ``get_data`` reads ``sys.modules[package]`` itself,
    which no import hook can redirect; resolve the package in the session instead."""

    def __init__(self, session: Any) -> None:
        super().__init__("pkgutil")
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(pkgutil, name)

    def get_data(self, package: str, resource: str) -> bytes | None:
        module = self._session._import_module(package, None)
        spec = getattr(module, "__spec__", None)
        loader = getattr(spec, "loader", None)
        file = getattr(module, "__file__", None)
        if loader is None or not hasattr(loader, "get_data") or file is None:
            return None
        parts = [os.path.dirname(file), *resource.split("/")]
        return loader.get_data(os.path.join(*parts))  # type: ignore[no-any-return]
