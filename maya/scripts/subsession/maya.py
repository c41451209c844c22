"""Maya start-up and one-line helpers for :mod:`subsession`.

In ``userSetup.py`` (loads the ``subSession`` plug-in and the studio config once Maya
is idle; at once in batch mode and ``mayapy``)::

    import subsession.maya
    subsession.maya.setup()

On a shelf button or in a workspace control's ``uiScript``::

    import subsession.maya; subsession.maya.run("toolA", "toolA.ui", "show")

A shelf button that turns reload-on-save on and off for a tool under development::

    import subsession.maya; subsession.maya.watch("toolA")

The sessions come from the studio config (``$SUBSESSION_CONFIG``, see the README) or
from ``subSession -create``. The MEL equivalent of :func:`run` is
``subSession -m "toolA.ui" -fn "show" toolA;``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Optional, Union

import subsession
from subsession import _live

__all__ = ["PLUGIN", "load_plugin", "run", "setup", "watch"]

#: The plug-in file, found on ``MAYA_PLUG_IN_PATH`` (the module's ``plug-ins`` folder).
PLUGIN = "subSession.py"

_log = logging.getLogger("subsession.maya")
PathArg = Optional[Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]]


def load_plugin() -> None:
    """Load the ``subSession`` plug-in quietly; nothing happens if it is loaded."""
    from maya import cmds

    if not cmds.pluginInfo(PLUGIN, query=True, loaded=True):
        cmds.loadPlugin(PLUGIN, quiet=True)


def setup(config: PathArg = None, *, plugin: bool = True, deferred: bool = True) -> None:
    """Start ``subsession`` in Maya: load the plug-in, then the studio config.

    ``config`` is a config file or a list of them, layered studio -> show -> user;
    ``None`` reads ``$SUBSESSION_CONFIG`` (nothing to load if it is unset).
    ``plugin=False`` skips the plug-in. The work waits until Maya is idle
    (``maya.utils.executeDeferred``) unless Maya runs in batch mode or
    ``deferred=False``. Errors are raised (in the Script Editor when deferred).

    >>> import subsession.maya                                  # doctest: +SKIP
    >>> subsession.maya.setup()                                 # in userSetup.py
    >>> subsession.maya.setup(["/studio/subsession.toml", "~/subsession.toml"])
    """
    from maya import cmds

    paths = _config_paths(config)

    def start() -> None:
        if plugin:
            load_plugin()
        if paths:
            loaded = subsession.load_config(paths)
            _log.info("subsession: %d sessions from %s", len(loaded), os.pathsep.join(paths))

    if not deferred or cmds.about(batch=True):
        start()
    else:
        import maya.utils

        maya.utils.executeDeferred(start)


def run(session: str, module: str, function: Optional[str] = None, /, *args: Any, **kw: Any) -> Any:
    """Import ``module`` in the named ``session`` and call ``function(*args, **kw)``.

    Returns the function's result (or the module without ``function``). The session
    must exist: define it in the studio config or create it with ``subSession -c``.

    >>> subsession.maya.run("toolA", "toolA.ui", "show")                 # doctest: +SKIP
    >>> subsession.maya.run("toolA", "toolA.ui", "show", dock=True)      # doctest: +SKIP
    """
    try:
        owner = subsession.get(session)
    except subsession.SessionError:
        raise subsession.SessionError(
            f"no session named {session!r}; define it in the studio config "
            f"($SUBSESSION_CONFIG) or create it with: subSession -create {session}"
        ) from None
    target = owner.import_module(module)
    if function is None:
        return target
    return owner.run(getattr(target, function), *args, **kw)


def watch(
    session: str, on: Optional[bool] = None, *, deep: bool = True, interval: float = 0.5
) -> bool:
    """Turn reload-on-save of the named ``session`` on (``on=True``), off (``False``) or
    over (``None``, for a shelf button); returns whether it now watches.

    Reloads run in Maya's idle queue; a failed reload is a warning in the Script
    Editor and the old code keeps running until the next save.

    >>> subsession.maya.watch("toolA")            # doctest: +SKIP
    True
    """
    try:
        owner = subsession.get(session)
    except subsession.SessionError:
        raise subsession.SessionError(
            f"no session named {session!r}; define it in the studio config "
            f"($SUBSESSION_CONFIG) or create it with: subSession -create {session}"
        ) from None
    turn_on = (not owner.watching) if on is None else bool(on)
    if turn_on:
        owner.watch(deep=deep, interval=interval)
    else:
        owner.unwatch()
    _log.info(
        "subsession: %s %s", session, "reloads on save" if turn_on else "no longer reloads on save"
    )
    return turn_on


def _config_paths(config: PathArg) -> list[str]:
    if config is None:
        value = os.environ.get("SUBSESSION_CONFIG", "")
        return [os.path.expanduser(p) for p in value.split(os.pathsep) if p]
    if isinstance(config, (str, os.PathLike)):
        return [os.path.expanduser(os.fspath(config))]
    return [os.path.expanduser(os.fspath(p)) for p in config]


_live.install_maya()
