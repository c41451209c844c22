"""Python classes CPython's import system requires to be real subclasses.

``importlib.resources``, ``inspect``, ``linecache`` and ``pkgutil`` look at a module's
loader by type, so a session's loaders must *be* ``SourceFileLoader`` & co; they only
hand the module to the Rust core (:mod:`subsession._core`) around execution. The
proxies give session code a session-aware ``importlib``/``importlib.metadata``/
``pkgutil``. Every decision is made in Rust.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery as machinery
import importlib.metadata as metadata
import io
import operator
import os
import pickle
import pkgutil
import sys
import types
from collections.abc import Iterator
from typing import Any, cast

__all__ = [
    "AliasLoader",
    "ImportlibProxy",
    "MetadataProxy",
    "PickleProxy",
    "PkgutilProxy",
    "PortablePickler",
    "SessionExtensionLoader",
    "SessionSourceLoader",
    "SessionForeignLoader",
    "SessionRootPath",
    "SessionSourcelessLoader",
    "SharedModuleLoader",
    "UnloadProbe",
    "find_foreign_spec",
    "portable_multiprocessing",
    "portable_reduce",
    "wrap_foreign_loader",
]


class SessionSourceLoader(machinery.SourceFileLoader):
    """Executes a session's ``.py`` module with the session's ``__builtins__``."""

    _session: Any = None
    _stamp: tuple[int, int] | None = None
    # What the code came from, for stale(): the source bytes compiled, or True for a
    # .pyc. The core takes it once the module ran and clears it.
    _ran: bytes | bool | None = None

    def path_stats(self, path: str) -> dict[str, Any]:
        # The stat that validates the code is also the module's stamp for stale().
        st = os.stat(path)
        self._stamp = (st.st_mtime_ns, st.st_size)
        return {"mtime": st.st_mtime, "size": st.st_size}

    def get_data(self, path: str) -> bytes:
        data = super().get_data(path)
        if path == self.path:
            self._ran = data
        elif path.endswith(".pyc"):
            self._ran = True
        return data

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


class SessionForeignLoader:
    """Wraps a loader other than the standard file loaders (zip imports, a custom
    importer): the module gets the session's ``__builtins__`` before its code runs, so
    its imports are routed like any session module's."""

    def __init__(self, inner: Any, session: Any) -> None:
        self._inner = inner
        self._session = session

    def create_module(self, spec: machinery.ModuleSpec) -> types.ModuleType | None:
        create = getattr(self._inner, "create_module", None)
        if create is None:
            return None
        with _real_name(spec, self._session):
            return create(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        self._session._exec_module(module, _under_real_name(self._inner.exec_module, self._session))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<session loader around {self._inner!r}>"


_STANDARD_FINDERS = (machinery.BuiltinImporter, machinery.FrozenImporter, machinery.PathFinder)
_NAME_KEYED_PATH_FINDERS = (machinery.FileFinder, __import__("zipimport").zipimporter)


def _foreign_finders(session: Any) -> list[Any]:
    """Custom meta-path finders that may answer this session's imports: global ones and
    the session's own (its ``.pth`` hooks), never another session's."""
    prefix = session.prefix + "."
    facade = session.facade
    private = list(getattr(facade, "_import_hooks", ()))
    out = []
    for finder in [*sys.meta_path, *private]:
        if finder in _STANDARD_FINDERS or type(finder).__name__ == "SessionFinder":
            continue
        owner = getattr(finder, "__module__", None)
        if isinstance(owner, str) and owner.startswith("__subsession_"):
            if not owner.startswith(prefix):
                continue
        if getattr(finder, "find_spec", None) is not None:
            out.append(finder)
    return out


def find_foreign_spec(
    session: Any, qualified: str, real: str, path: Any, target: Any
) -> machinery.ModuleSpec | None:
    """A spec for ``real`` from custom meta-path finders or path-entry finders, asked for
    the real name (they know nothing of qualified names), renamed to ``qualified``."""
    finders = _foreign_finders(session)
    meta_path = sys.meta_path
    # Finders that answer the qualified name are asked by the import system after us.
    for finder in finders:
        if any(finder is f for f in meta_path) and finder.find_spec(qualified, path, target):
            return None
    real_path = path if "." in real else None
    for finder in finders:
        spec = finder.find_spec(real, real_path, target)
        if spec is not None:
            return _renamed(spec, real, qualified)
    entries = path if path is not None else ()
    cache = sys.path_importer_cache
    for entry in list(entries):
        entry_finder: Any = cache.get(entry) if isinstance(entry, str) else None
        if type(entry_finder).__name__ == "DirGate":  # _core's gate of a session path
            entry_finder = entry_finder.inner
        if entry_finder is None or isinstance(entry_finder, _NAME_KEYED_PATH_FINDERS):
            continue
        find = getattr(entry_finder, "find_spec", None)
        if find is None:
            continue
        spec = find(real, target)
        if spec is not None and spec.loader is not None:
            return _renamed(spec, real, qualified)
    return None


def _renamed(spec: machinery.ModuleSpec, real: str, qualified: str) -> machinery.ModuleSpec:
    if spec.name == real:
        spec.name = qualified
    return spec


@contextlib.contextmanager
def _real_name(spec: Any, session: Any) -> Iterator[None]:
    """The spec under the real name while a foreign loader works on it: it was asked
    for the real name and may look the module up by it (shiboken's embedded zip
    importer indexes its files by ``spec.name``). The import system reads the
    qualified name again once the loader returns."""
    name = getattr(spec, "name", None)
    prefix = session.prefix + "."
    if not (isinstance(name, str) and name.startswith(prefix)):
        yield
        return
    spec.name = name[len(prefix) :]
    try:
        yield
    finally:
        spec.name = name


def _under_real_name(exec_module: Any, session: Any) -> Any:
    def run(module: types.ModuleType) -> None:
        with _real_name(getattr(module, "__spec__", None), session):
            exec_module(module)

    return run


_SESSION_SUBCLASSES: dict[type, type] = {}


def _session_subclass(cls: type) -> type:
    """``cls`` with an ``exec_module`` that runs the module in its session: a subclass,
    so ``isinstance(loader, zipimport.zipimporter)`` (jinja2) stays true."""
    sub = _SESSION_SUBCLASSES.get(cls)
    if sub is None:

        def create_module(self: Any, spec: machinery.ModuleSpec) -> Any:
            create = getattr(super(sub, self), "create_module", None)
            if create is None:
                return None
            with _real_name(spec, self._session):
                return create(spec)

        def exec_module(self: Any, module: types.ModuleType) -> None:
            inner = super(sub, self).exec_module  # type: ignore[arg-type]
            self._session._exec_module(module, _under_real_name(inner, self._session))

        methods = {"create_module": create_module, "exec_module": exec_module}
        sub = type(cls.__name__, (cls,), {**methods, "__module__": cls.__module__})
        _SESSION_SUBCLASSES[cls] = sub
    return sub


def wrap_foreign_loader(spec: machinery.ModuleSpec, session: Any) -> machinery.ModuleSpec:
    """Gives a spec with a non-standard loader one that runs its module in the session:
    the same loader as an instance of a session subclass of its class when the class
    allows it, else a wrapper."""
    loader = spec.loader
    if (
        loader is None
        or isinstance(loader, (SessionForeignLoader, AliasLoader, SharedModuleLoader))
        or type(loader).__name__.endswith("NamespaceLoader")
        or getattr(loader, "exec_module", None) is None
        or getattr(loader, "_session", None) is session
    ):
        return spec
    if isinstance(loader, type):  # a class used as its own loader
        spec.loader = cast("Any", SessionForeignLoader(loader, session))
        return spec
    try:
        copy: Any = object.__new__(_session_subclass(type(loader)))
        copy.__dict__.update(loader.__dict__)
        copy._session = session
    except (TypeError, AttributeError):  # __slots__ or a C type
        spec.loader = cast("Any", SessionForeignLoader(loader, session))
    else:
        spec.loader = copy
    return spec


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


class SessionRootPath:
    """``__path__`` of a session's root package (``__subsession_toolA__``): the session's
    search path as its next import sees it, so other finders asked for a qualified
    top-level name (pytest's assertion rewriter) search the session's folders."""

    def __init__(self, core: Any) -> None:
        self._core = core

    def _entries(self) -> list[str]:
        return list(self._core._root_path())

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries())

    def __len__(self) -> int:
        return len(self._entries())

    def __getitem__(self, index: int) -> str:
        return self._entries()[index]

    def __contains__(self, entry: object) -> bool:
        return entry in self._entries()

    def __repr__(self) -> str:
        return f"SessionRootPath({self._entries()!r})"


class UnloadProbe:
    """Placed in a closing session's module globals: it dies with them, so a live
    probe after a GC pass means something still holds the module's code. ``globals``
    points back at the dict, so a live probe gives its module's globals at once."""

    __slots__ = ("__weakref__", "globals")


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
        return self._session.import_module(name, package)  # type: ignore[no-any-return]


class PkgutilProxy(types.ModuleType):
    """``pkgutil`` for session code: ``get_data`` reads ``sys.modules[package]`` itself,
    which no import hook can redirect; resolve the package in the session instead."""

    def __init__(self, session: Any) -> None:
        super().__init__("pkgutil")
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(pkgutil, name)

    def get_data(self, package: str, resource: str) -> bytes | None:
        module = self._session.import_module(package, None)
        spec = getattr(module, "__spec__", None)
        loader = getattr(spec, "loader", None)
        file = getattr(module, "__file__", None)
        if loader is None or not hasattr(loader, "get_data") or file is None:
            return None
        parts = [os.path.dirname(file), *resource.split("/")]
        return loader.get_data(os.path.join(*parts))  # type: ignore[no-any-return]


# -- portable pickles -----------------------------------------------------------------------

_PREFIX = "__subsession_"


class _ModuleRef:
    """Pickles as ``importlib.import_module(real name)``: a plain process imports the
    real module; session code (and a block) gets its session's module by routing."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return importlib.import_module, (self.name,)


class _Call:
    """Pickles as ``func(*args)``: the nested calls below use only the standard library,
    so a process without subsession can load them."""

    __slots__ = ("func", "args")

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _module_here_or_real(qualified: str, real: str) -> _Call:
    """``import_module(qualified if qualified in sys.modules else real)``: the session's
    module in this process and its forked children, the real module anywhere else."""
    modules = _Call(operator.attrgetter("modules"), _ModuleRef("sys"))
    chosen = _Call(
        operator.getitem,
        {True: qualified, False: real},
        _Call(operator.contains, modules, qualified),
    )
    return _Call(importlib.import_module, chosen)


def portable_reduce(obj: Any, here_first: bool = False) -> Any:
    """``reducer_override`` writing classes and functions of session modules under their
    real module names (``operator.attrgetter(qualname)(import_module(real))``), so any
    process can load the pickle; everything else pickles as usual (NotImplemented).
    ``here_first``: resolve the qualified name where it exists (multiprocessing: forked
    children hold the session's modules, spawned ones import the real names)."""
    if not isinstance(obj, (type, types.FunctionType)):
        return NotImplemented
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or not module.startswith(_PREFIX) or "." not in module:
        return NotImplemented
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(qualname, str) or "<" in qualname:
        return NotImplemented
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not obj:
        return NotImplemented  # pickle reports it as usual ("not the same object")
    real = module.split(".", 1)[1]
    if here_first:
        return operator.attrgetter(qualname), (_module_here_or_real(module, real),)
    return operator.attrgetter(qualname), (_ModuleRef(real),)


class PortablePickler(pickle.Pickler):
    """``pickle.Pickler`` for session code: session classes and functions by real name."""

    def reducer_override(self, obj: Any) -> Any:
        return portable_reduce(obj)


class PickleProxy(types.ModuleType):
    """``pickle`` for session code: what it pickles names real modules (a process without
    subsession can load it); loading is the standard one."""

    Pickler = PortablePickler

    def __init__(self) -> None:
        super().__init__("pickle")

    def __getattr__(self, name: str) -> Any:
        return getattr(pickle, name)

    @staticmethod
    def dumps(
        obj: Any,
        protocol: int | None = None,
        *,
        fix_imports: bool = True,
        buffer_callback: Any = None,
    ) -> bytes:
        buf = io.BytesIO()
        PortablePickler(
            buf, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback
        ).dump(obj)
        return buf.getvalue()

    @staticmethod
    def dump(
        obj: Any,
        file: Any,
        protocol: int | None = None,
        *,
        fix_imports: bool = True,
        buffer_callback: Any = None,
    ) -> None:
        PortablePickler(
            file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback
        ).dump(obj)


def _forking_reduce(self: Any, obj: Any) -> Any:
    return portable_reduce(obj, here_first=True)


def portable_multiprocessing() -> bool:
    """Makes multiprocessing's pickler (pools, queues, ``concurrent.futures``) write real
    names for session objects when children are spawned (they have no sessions).
    Returns False while ``multiprocessing.reduction`` is not imported yet."""
    reduction = sys.modules.get("multiprocessing.reduction")
    forking = getattr(reduction, "ForkingPickler", None)
    if forking is None:
        return False
    if "reducer_override" not in vars(forking):
        forking.reducer_override = _forking_reduce
    return True


PICKLE_PROXY = PickleProxy()
