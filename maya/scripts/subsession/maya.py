"""Maya start-up and one-line helpers for :mod:`subsession`.

In ``userSetup.py`` (loads the ``subSession`` plug-in and the studio config once Maya
is idle; at once in batch mode and ``mayapy``)::

    import subsession.maya
    subsession.maya.setup()

On a shelf button or in a workspace control's ``uiScript``::

    import subsession.maya; subsession.maya.run("toolA", "toolA.ui", "show")

The session manager, docked in a workspace control (also *Windows > Sub-sessions*
once the plug-in is loaded)::

    import subsession.maya; subsession.maya.show_manager()

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

__all__ = [
    "MANAGER_CONTROL",
    "MANAGER_UI_SCRIPT",
    "PLUGIN",
    "load_plugin",
    "restore_manager",
    "run",
    "setup",
    "show_manager",
]

#: The plug-in file, found on ``MAYA_PLUG_IN_PATH`` (the module's ``plug-ins`` folder).
PLUGIN = "subSession.py"

#: The workspace control of the session manager.
MANAGER_CONTROL = "subsessionManagerWorkspaceControl"
#: What Maya runs to build (and, at start-up, restore) the manager in its control.
MANAGER_UI_SCRIPT = "import subsession.maya; subsession.maya.restore_manager()"

_log = logging.getLogger("subsession.maya")
_manager: Any = None
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


def _config_paths(config: PathArg) -> list[str]:
    if config is None:
        value = os.environ.get("SUBSESSION_CONFIG", "")
        return [os.path.expanduser(p) for p in value.split(os.pathsep) if p]
    if isinstance(config, (str, os.PathLike)):
        return [os.path.expanduser(os.fspath(config))]
    return [os.path.expanduser(os.fspath(p)) for p in config]


def show_manager() -> Any:
    """Show the session manager docked in a workspace control; returns the widget.

    The control is floating the first time; dock it anywhere. Maya saves it with the
    workspace and rebuilds it at start-up through :data:`MANAGER_UI_SCRIPT`, which
    needs nothing but ``import subsession.maya``. Called again, it brings the existing
    control back instead of making a second one.
    """
    from maya import cmds

    if cmds.workspaceControl(MANAGER_CONTROL, exists=True):
        cmds.workspaceControl(MANAGER_CONTROL, edit=True, restore=True)
        return _manager
    cmds.workspaceControl(
        MANAGER_CONTROL,
        label="Sub-sessions",
        # A string: Maya saves it with the workspace and runs it at start-up (the
        # stubs type script flags as callables only).
        uiScript=MANAGER_UI_SCRIPT,  # type: ignore[arg-type]
        retain=False,
        floating=True,
        initialWidth=900,
        initialHeight=640,
    )
    return _manager


def restore_manager() -> Any:
    """The workspace control's ``uiScript``: build the manager inside the control Maya
    is creating (or restoring at start-up); returns the widget."""
    global _manager
    import maya.OpenMayaUI as omui

    from subsession import _qt, ui

    parent = omui.MQtUtil.getCurrentParent()
    if not parent:
        raise RuntimeError(
            "restore_manager() runs as the uiScript of a workspace control; "
            "call subsession.maya.show_manager() instead"
        )
    _manager = ui.SessionManager()
    omui.MQtUtil.addWidgetToMayaLayout(_qt.cpp_pointer(_manager), int(parent))
    return _manager
