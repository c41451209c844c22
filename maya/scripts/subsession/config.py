"""The studio config (docs/config.md): named sessions defined in TOML or JSON files.

Files are listed in ``$SUBSESSION_CONFIG`` (``os.pathsep``-separated, studio first,
user last) or passed to :func:`load_config`. Parsing, layering, ``${VAR}``/``~``
expansion and validation happen in Rust (:func:`subsession._core.parse_config`); this
module applies the result to the session registry. See ``docs/config.md`` for the
format and the layering rules::

    # studio.toml
    [defaults]
    keep_global = ["studio_core"]

    [sessions.toolA]
    paths = ["${STUDIO_TOOLS}/toolA/lib"]
    env = { TOOLA_MODE = "prod" }
    startup = "toolA.boot"

>>> import subsession
>>> subsession.load_config("/studio/subsession.toml")  # doctest: +SKIP
[<Session 'toolA' 1 modules>]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Callable, Optional, Union, cast

from subsession import _core
from subsession._session import Session
from subsession._types import ParsedConfig, SessionSettings, Settings

__all__ = ["ConfigError", "ENV_VAR", "config_paths", "load_config", "parse_config", "sources"]

log = logging.getLogger("subsession")

ConfigError: type[ValueError] = _core.ConfigError
"""Raised for an invalid config: ``file:line:column: key.path: what is wrong``.

The instance also carries ``file``, ``line``, ``column`` and ``key`` (``None`` when not
known), e.g. to point a UI at the spot.
"""

ENV_VAR = "SUBSESSION_CONFIG"
"""The environment variable listing config files (``os.pathsep``-separated)."""

PathArg = Union[str, "os.PathLike[str]"]


def config_paths(paths: PathArg | Sequence[PathArg] | None = None) -> list[str]:
    """Normalise ``paths`` to a list of file names.

    ``None`` reads ``$SUBSESSION_CONFIG``; empty entries (``"a.toml::b.toml"``, a
    trailing separator) are skipped, so unset or empty means no files. A leading ``~``
    is expanded, as a shell would not inside a quoted variable.
    """
    if paths is None:
        value = os.environ.get(ENV_VAR, "")
        items: list[PathArg] = [p for p in value.split(os.pathsep) if p.strip()]
    elif isinstance(paths, (str, os.PathLike)):
        items = [paths]
    elif isinstance(paths, bytes):
        raise TypeError("config paths must be str or os.PathLike, not bytes")
    else:
        items = list(paths)
    return [os.path.expanduser(os.fspath(p)) for p in items]


def parse_config(paths: PathArg | Sequence[PathArg] | None = None) -> ParsedConfig:
    """Read, validate and layer the config files without touching any session.

    Raises :class:`ConfigError` for the first problem found in any file.
    """
    files = config_paths(paths)
    if not files:
        return {"host_modules": [], "sessions": {}}
    return _core.parse_config(files)


def load_config(
    paths: PathArg | Sequence[PathArg] | None = None,
    *,
    defer_startup: Optional[Callable[[Callable[[], None]], object]] = None,
) -> list[Session]:
    """Create, or update, the sessions the studio config defines; return them.

    ``paths`` is one file, a sequence of files (studio first, user last; later files
    override earlier ones), or ``None`` for ``$SUBSESSION_CONFIG``. Unset or empty
    means no config and returns ``[]``.

    Every file is read and validated before any session changes, so a
    :class:`ConfigError` (``file:line:column: key: message``) leaves everything as it
    was. A session that already exists under a configured name is reused and gets the
    configured settings (its imported modules are kept); if applying them fails, the
    sessions changed so far are restored and the new ones closed.

    Once all sessions are configured, each ``startup`` module is imported in its
    session. A failing startup import is logged (ERROR, with traceback, logger
    ``subsession``) and does not stop the other sessions: one broken tool must not
    take the rest of Maya's start-up down with it. ``defer_startup`` (e.g. Maya's
    ``executeDeferred``) is given the function that imports them, to run it later;
    the sessions themselves are configured at once.
    """
    parsed = parse_config(paths)
    files = [os.path.abspath(f) for f in config_paths(paths)]
    _add_store_paths(parsed, files)
    sessions = _apply_sessions(parsed["sessions"], parsed["host_modules"])
    for session in sessions:
        if session.name is not None:
            _sources[session.name] = files
    pending: list[tuple[Session, str]] = []
    for session, settings in zip(sessions, parsed["sessions"].values()):
        startup = settings["startup"]
        if startup is not None:
            pending.append((session, startup))

    def import_startup_modules() -> None:
        for session, startup in pending:
            try:
                session.import_module(startup)
            except Exception:
                log.exception(
                    "session %s: startup module %r failed to import", session.name, startup
                )

    if pending:
        if defer_startup is None:
            import_startup_modules()
        else:
            defer_startup(import_startup_modules)
    return sessions


_sources: dict[str, list[str]] = {}


def sources(name: str) -> list[str]:
    """The config files (studio first, user last) of the last :func:`load_config` that
    defined the session ``name``; empty if no config defined it."""
    return list(_sources.get(name, ()))


def _apply_host_modules(names: list[str]) -> None:
    if names:
        _core.add_host_modules(names)


def _add_store_paths(parsed: ParsedConfig, files: list[str]) -> None:
    """Sessions with ``requirements`` get their locked wheels' store folders after
    their own ``paths``; one WARNING per session missing some (never a download)."""
    from subsession import _store

    folders, problems = _store.session_paths(parsed, files)
    for name, extra in folders.items():
        parsed["sessions"][name]["paths"] = parsed["sessions"][name]["paths"] + extra
    for problem in problems:
        log.warning("%s", problem)


_NOT_SETTINGS = ("startup", "requirements", "index_url", "find_links", "pythons", "platforms")


def _settings(spec: SessionSettings) -> Settings:
    """``spec`` without ``startup`` and the lock keys: what :meth:`Session.configure`
    takes."""
    settings = dict(spec)
    for key in _NOT_SETTINGS:
        settings.pop(key, None)
    return cast(Settings, settings)


def _apply_sessions(
    sessions: Mapping[str, SessionSettings], host_modules: list[str]
) -> list[Session]:
    """Configure every session, then add the host modules: all of it or nothing."""
    created: list[Session] = []
    changed: list[tuple[Session, Settings]] = []
    result: list[Session] = []
    try:
        for name, settings in sessions.items():
            existing = _core.lookup(name)
            session = Session(name, reuse=True)
            if existing is None:
                created.append(session)
            else:
                changed.append((session, session.settings()))
            session.configure(**_settings(settings))
            result.append(session)
        # Last: host modules cannot be taken back once added, so they are added only
        # when every session took its settings.
        _apply_host_modules(host_modules)
    except BaseException:
        # Best effort: a restore that fails too must not hide the original error.
        for session, before in reversed(changed):
            try:
                session.configure(**before)
            except Exception:
                log.exception("session %s: could not restore its settings", session.name)
        for session in reversed(created):
            try:
                session.close()
            except Exception:
                log.exception("session %s: could not close it", session.name)
        raise
    return result
