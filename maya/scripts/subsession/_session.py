"""The :class:`Session` facade over :class:`subsession._core.SessionCore`."""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any, Callable, TypeVar, Union, cast

from subsession import _core, _loaders
from subsession._core import (
    ClosedSessionError,
    NoSuchSessionError,
    SessionError,
    SessionExistsError,
)

__all__ = [
    "ClosedSessionError",
    "NoSuchSessionError",
    "Session",
    "SessionError",
    "SessionExistsError",
    "UnloadReport",
    "current",
    "get",
    "sessions",
]

F = TypeVar("F", bound=Callable[..., Any])
PathLike = Union[str, "os.PathLike[str]"]

_core.install(_loaders)
_log = logging.getLogger("subsession")


def _site_dirs(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``paths`` plus the folders their ``.pth`` files add (as ``site.addsitedir``
    would), and the ``import`` lines of those files to run in the session."""
    extra: list[str] = []
    lines: list[tuple[str, str]] = []
    for given in paths:
        if not isinstance(given, str) or not given:
            continue  # the core reports bad entries
        folder = os.path.abspath(given)
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".pth"))
        except OSError:
            continue
        for name in names:
            if name.startswith("."):
                continue
            pth = os.path.join(folder, name)
            try:
                with open(pth, encoding="utf-8") as handle:
                    text = handle.read()
            except (OSError, UnicodeDecodeError):
                continue
            for line in text.splitlines():
                if not line.strip() or line.startswith("#"):
                    continue
                if line.startswith(("import ", "import\t")):
                    lines.append((pth, line))
                    continue
                entry = os.path.abspath(os.path.join(folder, line.rstrip()))
                if os.path.exists(entry) and entry not in paths and entry not in extra:
                    extra.append(entry)
    return [*paths, *extra], lines


class UnloadReport:
    """What :meth:`Session.close` found: session modules still alive after a GC pass.

    ``leaks`` maps each surviving module's real name to what holds it, e.g.
    ``{"toolA.ui": ["a function in module 'qtshelf' (global 'on_click')"]}``.
    A clean close has no leaks and is falsy.
    """

    __slots__ = ("session", "unloaded", "leaks")

    def __init__(self, session: str, unloaded: list[str], leaks: dict[str, list[str]]) -> None:
        self.session = session
        self.unloaded = unloaded
        self.leaks = leaks

    def __bool__(self) -> bool:
        return bool(self.leaks)

    def __repr__(self) -> str:
        return (
            f"<UnloadReport {self.session!r}: {len(self.unloaded)} unloaded, "
            f"{len(self.leaks)} still alive>"
        )

    def __str__(self) -> str:
        if not self.leaks:
            return f"session {self.session}: {len(self.unloaded)} modules unloaded, none alive"
        lines = [f"session {self.session}: {len(self.leaks)} modules still alive:"]
        for name, holders in sorted(self.leaks.items()):
            lines.append(f"  {name}: " + "; ".join(holders or ["held by an unknown object"]))
        return "\n".join(lines)


class Session:
    """A sub-session: private copies of the modules it imports, its own paths and env.

    ``Session(name=None, *, paths=(), env=None, keep_global=(), inherit_env=True,
    inherit_paths=True, reuse=False)``

    - ``name``: registers the session process-wide (:func:`get`); 1-64 letters, digits,
      ``_ - .``. A duplicate name is an error unless ``reuse=True``, which returns the
      existing session unchanged.
    - ``paths``: folders searched first for the session's imports.
    - ``env``: environment overrides while the session is active (``None`` unsets).
    - ``keep_global``: names shared with the global interpreter: ``"six"`` shares six
      and its submodules, ``"pkg.*"`` the same, globs such as ``"studio_*"`` work too.
    - ``inherit_env=False``: the environment inside is exactly ``env``.
    - ``inherit_paths=False``: ``sys.path`` inside is ``paths`` plus the stdlib only.

    Use it as a context manager (re-entrant, nestable) or a decorator::

        s = Session(paths=["/tools/a"])
        with s:
            import toola            # s's own copy, freshly executed
        toola.run()                 # lazy imports inside toola still resolve in s

    A module imported in a session lives in ``sys.modules`` under a permanent
    qualified name, ``__subsession_<name>__.<real name>`` (see :attr:`prefix`).
    """

    _core: _core.SessionCore
    _import_hooks: list[Any]

    def __new__(
        cls, name: str | None = None, *args: Any, reuse: bool = False, **kw: Any
    ) -> Session:
        if reuse and name is not None:
            existing = _core.lookup(name)
            if existing is not None:
                return existing  # type: ignore[no-any-return]
        return super().__new__(cls)

    def __init__(
        self,
        name: str | None = None,
        *,
        paths: Iterable[PathLike] = (),
        env: Mapping[str, str | None] | None = None,
        keep_global: Iterable[str] = (),
        inherit_env: bool = True,
        inherit_paths: bool = True,
        reuse: bool = False,
    ) -> None:
        if getattr(self, "_core", None) is not None:  # returned by reuse=True
            return
        if isinstance(paths, (str, bytes)) or isinstance(keep_global, (str, bytes)):
            raise TypeError("paths and keep_global take a list of strings, e.g. paths=['/a']")
        self._import_hooks: list[Any] = []
        own_paths, pth_lines = _site_dirs([os.fspath(p) for p in paths])
        self._core = _core.SessionCore(
            self,
            name,
            own_paths,
            dict(env or {}),
            list(keep_global),
            bool(inherit_env),
            bool(inherit_paths),
        )
        self._run_pth(pth_lines)
        _loaders.portable_multiprocessing()

    # -- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        """The registered name, or ``None`` for an anonymous session."""
        return self._core.name

    @property
    def prefix(self) -> str:
        """The qualified-name prefix of this session's modules, e.g. ``__subsession_toolA__``.

        ``logging.getLogger(session.prefix)`` catches the logs of the session's modules.
        """
        return self._core.prefix

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran; a closed session cannot be activated again."""
        return self._core.closed

    @property
    def paths(self) -> list[str]:
        """The session's own import paths (absolute), searched before the global ones."""
        return self._core.paths

    @property
    def env(self) -> dict[str, str | None]:
        """The session's environment overrides (``None`` means unset inside)."""
        return self._core.env

    @property
    def keep_global(self) -> list[str]:
        """Names and patterns this session shares with the global interpreter."""
        return self._core.keep_global

    @property
    def inherit_env(self) -> bool:
        return self._core.inherit_env

    @property
    def inherit_paths(self) -> bool:
        return self._core.inherit_paths

    def configure(
        self,
        *,
        paths: Iterable[PathLike] | None = None,
        env: Mapping[str, str | None] | None = None,
        keep_global: Iterable[str] | None = None,
        inherit_env: bool | None = None,
        inherit_paths: bool | None = None,
    ) -> None:
        """Replace some settings; modules already imported are kept. Not while active."""
        own_paths: list[str] | None = None
        pth_lines: list[tuple[str, str]] = []
        if paths is not None:
            own_paths, pth_lines = _site_dirs([os.fspath(p) for p in paths])
        self._core.configure(
            own_paths,
            None if env is None else dict(env),
            None if keep_global is None else list(keep_global),
            inherit_env,
            inherit_paths,
        )
        self._run_pth(pth_lines)

    def _run_pth(self, lines: list[tuple[str, str]]) -> None:
        """Runs the ``import`` lines of the session's ``.pth`` files inside the session.
        Import hooks they install (an editable install's finder) are kept by the
        session and asked only for its imports, never left on the global lists."""
        if not lines:
            return
        meta_path = list(sys.meta_path)
        namespace = {"__builtins__": self._core.namespace["__builtins__"], "__name__": "site"}
        try:
            with self:
                for pth, line in lines:
                    try:
                        exec(line, dict(namespace))
                    except Exception as exc:  # site.addpackage reports and goes on
                        _log.warning(
                            "error in %s, line %r: %s: %s", pth, line, type(exc).__name__, exc
                        )
        finally:
            for finder in [f for f in sys.meta_path if not any(f is g for g in meta_path)]:
                sys.meta_path.remove(finder)
                if not any(finder is g for g in self._import_hooks):
                    self._import_hooks.append(finder)

    @property
    def modules(self) -> Mapping[str, types.ModuleType]:
        """Read-only mapping of real module name -> this session's module object."""
        return types.MappingProxyType(self._core.modules())

    @property
    def namespace(self) -> dict[str, Any]:
        """The globals :meth:`exec` runs in (kept across calls)."""
        return self._core.namespace

    # -- activation -----------------------------------------------------------------------
    def __enter__(self) -> Session:
        self._core.enter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._core.exit()

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` so that every call runs with this session active."""
        import functools

        core = self._core

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            core.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                core.exit()

        return wrapper  # type: ignore[return-value]

    # -- running code ---------------------------------------------------------------------
    def import_module(self, name: str) -> types.ModuleType:
        """Import ``name`` (a real name such as ``"requests.adapters"``) in this session."""
        with self:
            return self._core.import_module(name)

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` with this session active and return its result."""
        with self:
            return fn(*args, **kwargs)

    def exec(self, source: str, filename: str | None = None) -> dict[str, Any]:
        """Execute Python ``source`` in this session; returns the namespace it ran in.

        The namespace persists across calls, and code defined there keeps importing
        from this session after the call returns.
        """
        ns = self._core.namespace
        code = compile(source, filename or f"<subsession {self.prefix}>", "exec")
        with self:
            exec(code, ns)
        return ns

    def exec_file(self, path: PathLike) -> dict[str, Any]:
        """Execute the Python file at ``path`` in this session (``__file__`` is set)."""
        path = os.path.abspath(os.fspath(path))
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        ns = self._core.namespace
        previous = ns.get("__file__")
        ns["__file__"] = path
        try:
            return self.exec(source, path)
        finally:
            if previous is None:
                ns.pop("__file__", None)
            else:
                ns["__file__"] = previous

    # -- reload and unload ------------------------------------------------------------------
    def reload(self, module: types.ModuleType | str, deep: bool = False) -> types.ModuleType:
        """Re-execute ``module`` (object or real name) in place, inside this session.

        With ``deep=True`` existing functions, classes and instances pick up the new
        code too (see the README's hot-reload section).
        """
        return self._core.reload(module, deep)

    def stale(self) -> list[str]:
        """Real names of this session's modules whose source changed on disk."""
        return self._core.stale()

    def reload_stale(self, deep: bool = False) -> list[str]:
        """Reload changed modules and every session module importing them, dependencies
        first. Returns the real names reloaded, in order."""
        return self._core.reload_stale(deep)

    def reload_all(self, deep: bool = False) -> list[str]:
        """Reload every module of this session, dependencies first; returns the names."""
        return self._core.reload_all(deep)

    def close(self, force: bool = False) -> UnloadReport:
        """Unload: forget this session's modules and report any still alive.

        ``force=True`` also clears the globals of modules that are still alive, which
        breaks whoever still uses them: a last resort for leaks you cannot fix.
        """
        name, unloaded, leaks = self._core.close(force)
        return UnloadReport(name, unloaded, leaks)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._core.modules())} modules"
        label = repr(self.name) if self.name is not None else self.prefix
        return f"<Session {label} {state}>"


def get(name: str) -> Session:
    """The open session registered under ``name`` (raises :class:`NoSuchSessionError`)."""
    session = _core.lookup(name)
    if session is None:
        raise NoSuchSessionError(
            f"no session named {name!r}; create it with subsession.Session({name!r}, ...)"
        )
    return session  # type: ignore[no-any-return]


def sessions() -> list[Session]:
    """Every open session, named and anonymous, in creation order."""
    return _core.sessions()


def current() -> Session | None:
    """The innermost session active on this thread, or ``None``."""
    return cast("Session | None", _core.current())
