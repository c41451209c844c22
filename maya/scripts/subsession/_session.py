"""The :class:`Session` facade over :class:`subsession._core.SessionCore`."""

from __future__ import annotations

import fnmatch
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Iterable, Mapping
from typing import Any, Callable, TypeVar, Union

from subsession import _core, _live, _loaders, _watch
from subsession._core import (
    ClosedSessionError,
    NoSuchSessionError,
    SessionError,
    SessionExistsError,
)
from subsession._types import Settings

__all__ = [
    "ClosedSessionError",
    "adopt",
    "process_pending",
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


# The one holder text the core gives every survivor kept by compiled extension modules
# (src/unload/leaks.rs, EXTENSION_HOLDER).
_EXTENSION_HOLDER = (
    "a C extension module, or held by one: CPython never unloads compiled extension "
    "modules (their state lives until the process exits)"
)


def _portable_pickle(fn: Any) -> Any:
    """What session code's ``import pickle`` gives for the host's pickle entry point
    ``fn`` (``s.run`` receives the host's function object), else ``fn``."""
    pickle = sys.modules.get("pickle")
    if pickle is None:
        return fn
    proxy = _loaders.PICKLE_PROXY
    for host, portable in (
        (pickle.dumps, proxy.dumps),
        (pickle.dump, proxy.dump),
        (pickle.Pickler, proxy.Pickler),
    ):
        if fn is host:
            return portable
    return fn


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


# What a survivor without holders says (the core always gives one; a report built by
# hand may not).
_NO_HOLDER = "no holder found (gc.get_referrers() on its functions and classes may show more)"
# Names listed on the grouped line; the rest are in report.held_by_extensions.
_GROUP_SHOWN = 12


class UnloadReport:
    """What :meth:`Session.close` found: session modules still alive after a GC pass.

    ``leaks`` maps each surviving module's real name to what holds it, e.g.
    ``{"toolA.ui": ["a function in module 'qtshelf' (global 'on_click')"]}``.
    A clean close has no leaks and is falsy.
    """

    __slots__ = ("session", "unloaded", "leaks", "removed")

    def __init__(
        self,
        session: str,
        unloaded: list[str],
        leaks: dict[str, list[str]],
        removed: list[str] | None = None,
    ) -> None:
        self.session = session
        self.unloaded = unloaded
        self.leaks = leaks
        #: Maya registrations of the session's code that close() removed
        #: (``"scriptJob 12 (toolA.menu)"``)
        self.removed = removed or []

    def __bool__(self) -> bool:
        return bool(self.leaks)

    def __repr__(self) -> str:
        return (
            f"<UnloadReport {self.session!r}: {len(self.unloaded)} unloaded, "
            f"{len(self.leaks)} still alive>"
        )

    @property
    def held_by_extensions(self) -> list[str]:
        """Survivors that compiled extension modules keep (the extension modules
        themselves and what their globals refer to): CPython never unloads those, so
        nothing in Python can free them; ``str(report)`` lists them on one line."""
        return sorted(n for n, h in self.leaks.items() if h == [_EXTENSION_HOLDER])

    def __str__(self) -> str:
        if not self.leaks:
            unloaded = _plural(len(self.unloaded), "module")
            lines = [f"session {self.session}: {unloaded} unloaded, none alive"]
        else:
            lines = [f"session {self.session}: {_plural(len(self.leaks), 'module')} still alive:"]
        grouped = self.held_by_extensions
        if grouped:
            more = ", …" if len(grouped) > _GROUP_SHOWN else ""
            shown = ", ".join(grouped[:_GROUP_SHOWN]) + more
            lines.append(
                f"  {_plural(len(grouped), 'module')} kept until the process exits: "
                f"compiled extension modules, which CPython never unloads, and what they "
                f"hold: {shown}"
            )
        for name, holders in sorted(self.leaks.items()):
            if holders == [_EXTENSION_HOLDER]:
                continue
            lines.append(f"  {name}: " + "; ".join(holders or [_NO_HOLDER]))
        if self.removed:
            lines.append(f"  removed from Maya: {', '.join(self.removed)}")
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
    #: (frame that ran __enter__, block token) of the blocks open through the facade.
    _open_blocks: list[tuple[types.FrameType, int]]
    _import_hooks: list[Any]

    def __new__(
        cls, name: str | None = None, *args: Any, reuse: bool = False, **kw: Any
    ) -> Session:
        if reuse and name is not None:
            # Look up or create, as one step for the caller: another thread may create
            # the name between the two, and then its session is the answer once built.
            deadline = time.monotonic() + 10.0
            while True:
                existing = _core.lookup(name)
                if existing is not None:
                    return existing
                made = super().__new__(cls)
                try:
                    made.__init__(name, *args, **kw)  # type: ignore[misc]
                except SessionExistsError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.0005)  # the other thread is still building it
                    continue
                return made
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
        self._open_blocks = []
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

    def settings(self) -> Settings:
        """The current settings, as :meth:`configure` takes them (``configure(**s)``)."""
        core = self._core
        return {
            "paths": core.paths,
            "env": core.env,
            "keep_global": core.keep_global,
            "inherit_env": core.inherit_env,
            "inherit_paths": core.inherit_paths,
        }

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
        modules = self._core.modules()
        if "_adopt_patterns" in self.__dict__:
            self._adopt_scan()
            for real in _core.adopted_names(self._core):
                module = sys.modules.get(real)
                if module is not None:
                    modules[real] = module
        return types.MappingProxyType(modules)

    @property
    def namespace(self) -> dict[str, Any]:
        """The globals :meth:`exec` runs in (kept across calls)."""
        return self._core.namespace

    # -- activation -----------------------------------------------------------------------
    def __enter__(self) -> Session:
        """Activate this session on this thread (re-entrant, nestable).

        Cost: ~4.5 µs per enter+exit of a 200-module session (0.4x the bare ``sys.modules``
        writes of its aliases), ~3.7 µs for an empty one, flat in the size of
        ``sys.modules`` (1k-10k modules) and of the session (1,656 modules: ~4-5 µs),
        measured by scripts/bench (a) and (m).
        """
        token = self._core.enter()
        # The frame running the with-statement calls __exit__ too, even on another
        # thread (a generator closed elsewhere): it names the block to leave.
        self._open_blocks.append((sys._getframe(1), token))
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leave the block: ``sys.path``, ``os.environ`` and ``sys.modules`` restored.

        A block may be left on another thread than the one that entered it (a
        generator holding it, closed elsewhere): it is restored all the same.

        Cost: included in :meth:`__enter__`'s figure (enter+exit are measured together).
        """
        caller = sys._getframe(1)
        named = next((e for e in reversed(self._open_blocks) if e[0] is caller), None)
        left = self._core.exit(named[1] if named is not None else None)
        # Forget the block the core left: the one named, or the one it chose when
        # __exit__ came from another frame than __enter__ (explicit calls). A re-entered
        # block shares its token between entries, so the named entry goes first.
        entry = named or next((e for e in reversed(self._open_blocks) if e[1] == left), None)
        if entry is not None:
            try:
                self._open_blocks.remove(entry)
            except ValueError:  # another thread forgot it first
                pass

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` so that every call runs with this session active."""
        import functools

        core = self._core

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = core.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                core.exit(token)

        return wrapper  # type: ignore[return-value]

    # -- running code ---------------------------------------------------------------------
    def import_module(self, name: str) -> types.ModuleType:
        """Import ``name`` (a real name such as ``"requests.adapters"``) in this session.

        Cost: a fresh 200-module package takes ~1.12-1.21x a plain import with cached
        bytecode (27-31 ms vs 23 ms), ~1.12-1.15x without, measured by scripts/bench (b);
        an import statement of a loaded module outside any block costs +10-50 ns with
        subsession loaded (bench (c)).
        """
        with self:
            return self._core.import_module(name)

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` with this session active and return its result.

        ``s.run(pickle.dumps, obj)`` (and ``pickle.dump``, ``pickle.Pickler``) pickles
        as session code does: session classes and functions under their real names."""
        fn = _portable_pickle(fn)
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

        Cost: a deep reload of a module whose class has 10,000 live instances takes
        ~0.8 ms, the same with 10k or 1M unrelated heap objects, measured by
        scripts/bench (g).
        """
        self._adopt_scan()
        result = self._core.reload(module, deep)
        name = result.__name__
        self._notify_reload(
            [name[len(self.prefix) + 1 :] if name.startswith(self.prefix + ".") else name]
        )
        return result

    def stale(self) -> list[str]:
        """Real names of this session's modules whose source content changed on disk
        (a save that rewrote the same bytes is no change).

        Cost: ~1.4-2.6 ms for 2,000 session modules, none stale, measured by
        scripts/bench (e) on a 2-core VM; bound by the ``stat`` system call, run without the GIL.
        """
        self._adopt_scan()
        return self._core.stale()

    def reload_stale(self, deep: bool = False) -> list[str]:
        """Reload changed modules and every session module importing them, dependencies
        first. Returns the real names reloaded, in order.

        While the session is watched, the changes the watcher already found are used
        (no file is checked again); with none found, every file is checked.

        Cost: ~1.1-1.7 ms for one changed leaf of a 200-module session, every file
        checked (``importlib.reload`` of the same module: ~0.65-1.0 ms), measured by
        scripts/bench (f); ~1.0-1.25 ms watched (1.18-1.39x).
        """
        self._adopt_scan()
        known = _watch.take_pending(self)
        if known:
            return self._reload_names(known, deep)
        return self._notify_reload(self._core.reload_stale(deep))

    def reload_all(self, deep: bool = False) -> list[str]:
        """Reload every module of this session, dependencies first; returns the names."""
        self._adopt_scan()
        return self._notify_reload(self._core.reload_all(deep))

    def _reload_names(self, names: list[str], deep: bool) -> list[str]:
        return self._notify_reload(_core.reload_names(self._core, names, deep))

    # -- hooks and watching -----------------------------------------------------------------
    def on_reload(self, callback: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
        """Call ``callback(names)`` after each successful reload of this session's modules
        (``names``: real names, dependencies first). Returns ``callback`` (a decorator).
        A callback that raises is logged as a WARNING; the reload stands."""
        if not callable(callback):
            raise TypeError("on_reload() takes a function, e.g. s.on_reload(lambda names: ...)")
        self.__dict__.setdefault("_reload_callbacks", []).append(callback)
        return callback

    def on_close(self, callback: Callable[[Session], Any]) -> Callable[[Session], Any]:
        """Call ``callback(session)`` when :meth:`close` starts, while the modules are still
        loaded. Returns ``callback``. A callback that raises is logged; the close goes on."""
        if not callable(callback):
            raise TypeError("on_close() takes a function, e.g. s.on_close(lambda s: ...)")
        self.__dict__.setdefault("_close_callbacks", []).append(callback)
        return callback

    def _notify_reload(self, names: list[str]) -> list[str]:
        if names:
            for callback in list(self.__dict__.get("_reload_callbacks", ())):
                _live.call_hook(f"on_reload callback {callback!r}", callback, list(names))
        return names

    def watch(self, deep: bool = True, interval: float = _watch.DEFAULT_INTERVAL) -> None:
        """Reload on save: while watched, a change to the content of any of this
        session's module files is reloaded like ``reload_stale(deep=deep)``, on the
        host's main thread (Maya's idle queue, the Qt event loop, or
        :func:`subsession.process_pending`). Files are polled every ``interval``
        seconds by a background thread that runs no module code (network shares work).
        A failed reload is logged as a WARNING and retried on the next save."""
        _watch.watch(self, deep, interval)

    def unwatch(self) -> None:
        """Stop reloading on save (changes found but not yet reloaded are dropped)."""
        _watch.unwatch(self)

    @property
    def watching(self) -> bool:
        """True while :meth:`watch` is on."""
        return _watch.watching(self)

    # -- adopted modules --------------------------------------------------------------------
    def _adopt_scan(self) -> None:
        patterns = self.__dict__.get("_adopt_patterns")
        if patterns and not self.closed:
            _adopt_into(self, patterns)

    def close(self, force: bool = False) -> UnloadReport:
        """Unload: forget this session's modules and report any still alive.

        First the ``on_close`` callbacks run, then each module's ``__before_unload__()``,
        then the Maya registrations (scriptJobs, callbacks, UI) of the session's code are
        removed. ``force=True`` also clears the globals of modules that are still alive,
        which breaks whoever still uses them: a last resort for leaks you cannot fix.

        Cost: ~35-47 ms for a 200-module session with 3,000 modules in ``sys.modules``,
        mostly its garbage-collection pass, measured by scripts/bench (h); 2.4-2.6x one
        ``gc.collect()`` for a 1,656-module pandas/scipy/sympy tool (bench (m)).
        """
        removed: list[str] = []
        if not self.closed and _core.current() is not self:
            _watch.unwatch(self)
            self._adopt_scan()
            for callback in list(self.__dict__.get("_close_callbacks", ())):
                _live.call_hook(f"on_close callback {callback!r}", callback, self)
            removed = _live.before_close(self, dict(self.modules))
        name, unloaded, leaks = self._core.close(force)
        self._open_blocks.clear()  # frames of blocks entered and never left
        with _live._adopted_lock:
            for real in [n for n, s in _live.adopted.items() if s is self]:
                del _live.adopted[real]
        return UnloadReport(name, unloaded, leaks, removed)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.modules)} modules"
        label = repr(self.name) if self.name is not None else self.prefix
        return f"<Session {label} {state}>"


def get(name: str) -> Session:
    """The open session registered under ``name`` (raises :class:`NoSuchSessionError`)."""
    session = _core.lookup(name)
    if session is None:
        raise NoSuchSessionError(
            f"no session named {name!r}; create it with subsession.Session({name!r}, ...)"
        )
    return session


def sessions() -> list[Session]:
    """Every open session, named and anonymous, in creation order."""
    return _core.sessions()


def current() -> Session | None:
    """The innermost session active on this thread, or ``None``."""
    return _core.current()


def process_pending() -> list[str]:
    """Reload what the watchers of every session found, here and now.

    Call it on the host's main thread where neither Maya's idle queue nor a Qt event
    loop delivers reloads (a plain interpreter, ``mayapy``). Returns the real names
    reloaded, in order; a failed reload is logged as a WARNING and keeps the old code.
    """
    return _watch.process_pending()


_adopt_lock = threading.Lock()


def _check_pattern(pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern.strip(".*"):
        raise TypeError(
            f"adopt() takes module names or 'pkg.*' patterns, got {pattern!r}; "
            "e.g. adopt('mytool', ['mytool'])"
        )
    top = pattern.split(".")[0]
    shared = set(_core.host_modules()) | {"subsession", "__main__", "builtins"}
    if top in shared or _is_stdlib(top):
        raise ValueError(
            f"cannot adopt {pattern!r}: the standard library, the host's packages and "
            "subsession are shared by everyone; adopt your tool's own packages"
        )
    return pattern


def _is_stdlib(top: str) -> bool:
    """A standard-library top-level name (Python 3.9 has no ``sys.stdlib_module_names``:
    there, where the module would be found decides)."""
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return top in names or top in sys.builtin_module_names
    if top in sys.builtin_module_names:
        return True
    import importlib.util
    import sysconfig

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None) if spec is not None else None
    if not origin or origin in ("built-in", "frozen"):
        return spec is not None
    paths = sysconfig.get_paths()
    roots = [os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib")]
    origin = os.path.realpath(origin)
    return any(origin.startswith(r) for r in roots) and "site-packages" not in origin


def _matches(name: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        base = pattern[:-2] if pattern.endswith(".*") else pattern
        if any(c in base for c in "*?["):
            if fnmatch.fnmatchcase(name, base) or fnmatch.fnmatchcase(name.split(".")[0], base):
                return True
        elif name == base or name.startswith(base + "."):
            return True
    return False


def _adopt_into(session: Session, patterns: list[str]) -> None:
    with _adopt_lock:
        known = set(_core.adopted_names(session._core))
        found = [
            (name, module)
            for name, module in list(sys.modules.items())
            if name not in known
            and isinstance(module, types.ModuleType)
            and _matches(name, patterns)
        ]
        if not found:
            return
        with _live._adopted_lock:
            for name, _ in found:
                other = _live.adopted.get(name)
                if other is not None and other is not session:
                    raise SessionExistsError(
                        f"module {name} is already adopted by session {other.name}; "
                        "close that session first"
                    )
        names = known | {n for n, _ in found}
        edges: list[tuple[str, str]] = []
        for name, module in found:
            for key, value in list(vars(module).items()):
                # A module's own submodules are attributes the import system set: reading
                # them at run time sees the reloaded module, no dependency.
                target: Any
                if isinstance(value, types.ModuleType):
                    target = value.__name__
                    if target == f"{name}.{key}":
                        continue
                else:
                    target = getattr(value, "__module__", None)
                if isinstance(target, str) and target in names and target != name:
                    edges.append((name, target))
        _core.adopt_modules(session._core, found, edges)
        with _live._adopted_lock:
            for name, _ in found:
                _live.adopted[name] = session


def adopt(name: str, packages: Iterable[str]) -> Session:
    """A named session that takes over modules already imported outside any session.

    ``packages``: module names or ``"pkg.*"`` patterns (``["mytool"]`` is ``mytool`` and
    its submodules). The modules keep their real names and identity; ``stale``,
    ``reload*``, ``watch``, hooks and ``close()`` (which removes them from
    ``sys.modules`` and reports leaks) work on them in place, and submodules imported
    later are taken over too. Isolation does not apply: they stay global. Adopting
    again under the same name adds patterns to that session.
    """
    if isinstance(packages, (str, bytes)):
        raise TypeError("packages takes a list, e.g. subsession.adopt('mytool', ['mytool'])")
    patterns = [_check_pattern(p) for p in packages]
    if not patterns:
        raise ValueError("adopt() needs at least one package, e.g. ['mytool']")
    existing = _core.lookup(name)
    with _live._adopted_lock:
        # Modules another session adopted, whether or not sys.modules still lists them
        # (a reloader that deletes entries by prefix): one owner at a time, named.
        taken = sorted(
            (n, s.name)
            for n, s in _live.adopted.items()
            if s is not existing and _matches(n, patterns)
        )
    if taken:
        owners = sorted({owner for _, owner in taken})
        listed = ", ".join(n for n, _ in taken[:5]) + (", …" if len(taken) > 5 else "")
        raise SessionExistsError(
            f"{listed} already adopted by session {', '.join(map(str, owners))}; close that "
            "session first, or adopt under its name to add patterns"
        )
    if existing is not None and "_adopt_patterns" in existing.__dict__:
        session: Session = existing
        session.__dict__["_adopt_patterns"] = sorted(
            set(session.__dict__["_adopt_patterns"]) | set(patterns)
        )
    else:
        session = Session(name)
        session.__dict__["_adopt_patterns"] = patterns
    try:
        _adopt_into(session, session.__dict__["_adopt_patterns"])
    except BaseException:
        if existing is None:
            session.__dict__.pop("_adopt_patterns", None)
            session.close()
        raise
    return session
