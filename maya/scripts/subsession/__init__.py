"""Sub-sessions for one long-running Python interpreter.

A :class:`Session` owns private, freshly executed copies of the modules it imports,
its own ``sys.path`` entries and environment variables, and can reload or unload them
without restarting the host (Maya, Houdini, Nuke...)::

    from subsession import Session

    tool_a = Session("toolA", paths=["/tools/a/lib"])
    with tool_a:
        import requests           # toolA's requests, its own urllib3
    requests.get("...")           # lazy imports still resolve inside toolA

    @tool_a
    def show() -> None:           # every call runs with toolA active
        import toolA.ui
        toolA.ui.show()

The engine lives in the Rust extension :mod:`subsession._core`; this package is the
typed facade.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from subsession import _platform  # noqa: F401  (module zip: this OS's _core)
from subsession._changes import Change, ChangeKind, subscribe, unsubscribe
from subsession._core import ConfigError, ReloadError
from subsession._session import (
    ClosedSessionError,
    NoSuchSessionError,
    Session,
    SessionError,
    SessionExistsError,
    UnloadReport,
    adopt,
    current,
    get,
    process_pending,
    sessions,
)
from subsession._versions import LoadedDistribution, versions
from subsession.config import PathArg

__all__ = [
    "Change",
    "ChangeKind",
    "ClosedSessionError",
    "ConfigError",
    "LoadedDistribution",
    "NoSuchSessionError",
    "ReloadError",
    "SessionExistsError",
    "Session",
    "SessionError",
    "UnloadReport",
    "adopt",
    "current",
    "get",
    "load_config",
    "process_pending",
    "sessions",
    "subscribe",
    "unsubscribe",
    "versions",
]

__version__ = "0.1.0"

logging.getLogger("subsession").addHandler(logging.NullHandler())

if "maya.cmds" in sys.modules:  # inside Maya: record the Maya registrations of session code
    from subsession import _live

    _live.install_maya()


def load_config(paths: PathArg | Sequence[PathArg] | None = None) -> list[Session]:
    """Create (or update) the sessions a studio config defines (docs/config.md).

    ``paths`` is a path, a list of paths, or ``None`` for ``$SUBSESSION_CONFIG``
    (os.pathsep-separated, later files override earlier ones). Returns the sessions.

    >>> load_config("/studio/subsession.toml")          # doctest: +SKIP
    [<Session 'toolA' ...>]
    """
    from subsession.config import load_config as _load

    return _load(paths)
