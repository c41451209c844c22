"""Maya start-up and one-line helpers for :mod:`subsession`.

In ``userSetup.py`` (creates the studio config's sessions at once, then loads the
``subSession`` plug-in and the config's ``startup`` modules once Maya is idle; all at
once in batch mode and ``mayapy``)::

    import subsession.maya
    subsession.maya.setup()

On a shelf button or in a workspace control's ``uiScript``::

    import subsession.maya; subsession.maya.run("toolA", "toolA.ui", "show")

A shelf button that turns reload-on-save on and off for a tool under development::

    import subsession.maya; subsession.maya.watch("toolA")

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
from typing import Any, Callable, Optional, Union

import subsession
from subsession import _live
from subsession import config as _config

__all__ = [
    "MANAGER_CONTROL",
    "MANAGER_UI_SCRIPT",
    "PLUGIN",
    "load_plugin",
    "log_to_script_editor",
    "remove_old_installs",
    "restore_manager",
    "run",
    "setup",
    "show_manager",
    "watch",
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


#: The drag-and-drop installer (``drag_into_maya.py``) marks the install it replaced
#: with this file; :func:`remove_old_installs` removes marked folders.
OBSOLETE_MARKER = ".subsession-obsolete"
INCOMPLETE_PREFIX = ".incomplete-"
#: An interrupted copy older than this is removed (a younger one may be under way).
INCOMPLETE_AGE = 3600.0


def remove_old_installs(module_root: Optional[str] = None) -> list[str]:
    """Remove the installs a drag-and-drop upgrade replaced; returns the removed folders.

    Looks beside ``module_root`` (default: the module this package runs from) for
    folders the installer marked obsolete, and for interrupted copies an hour old.
    A folder a running Maya still holds is left for a later start-up: it is renamed
    before anything in it is deleted, and Windows refuses to rename a folder with a
    loaded ``_core.pyd`` in it, so nothing of it is touched. Called by :func:`setup`
    and the plug-in; errors are never raised.
    """
    import shutil
    import time

    if module_root is None:
        module_root = os.path.dirname(os.path.dirname(os.path.dirname(subsession.__file__)))
    module_root = os.path.abspath(module_root)
    modules = os.path.dirname(module_root)
    removed: list[str] = []
    try:
        names = sorted(os.listdir(modules))
    except OSError:
        return removed
    for name in names:
        folder = os.path.join(modules, name)
        if os.path.normcase(folder) == os.path.normcase(module_root) or not os.path.isdir(folder):
            continue
        try:
            if name.startswith(INCOMPLETE_PREFIX) and "subsession" in name:
                if time.time() - os.stat(folder).st_mtime < INCOMPLETE_AGE:
                    continue
            elif not (
                name.startswith("subsession")
                and os.path.isfile(os.path.join(folder, OBSOLETE_MARKER))
            ):
                continue
            doomed = os.path.join(modules, f"{INCOMPLETE_PREFIX}removing-{name}-{os.getpid()}")
            os.rename(folder, doomed)  # fails while a Maya holds a file in it (Windows)
        except OSError as error:
            _log.debug("kept %s for a later start-up: %s", folder, error)
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(folder)
        _log.info("removed the replaced install %s", folder)
    return removed


def setup(config: PathArg = None, *, plugin: bool = True, deferred: bool = True) -> None:
    """Start ``subsession`` in Maya: the studio config now, the plug-in when Maya is idle.

    ``config`` is a config file or a list of them, layered studio -> show -> user;
    ``None`` reads ``$SUBSESSION_CONFIG`` (nothing to load if it is unset).

    The config's sessions are created at once: Maya runs the ``uiScript`` of the
    workspace controls it restores at start-up before any deferred code, and a docked
    tool must find its session there. Only the plug-in load (``plugin=False`` skips
    it) and the config's ``startup`` modules wait until Maya is idle
    (``maya.utils.executeDeferred``); in batch mode and ``mayapy``, which have no idle
    loop, and with ``deferred=False`` they run at once.

    Errors: a broken config raises when everything runs at once; in interactive Maya
    it is logged as one error line in the Script Editor (logger ``subsession``) and
    the plug-in is still loaded, so ``userSetup.py`` goes on.

    >>> import subsession.maya                                  # doctest: +SKIP
    >>> subsession.maya.setup()                                 # in userSetup.py
    >>> subsession.maya.setup(["/studio/subsession.toml", "~/subsession.toml"])
    """
    from maya import cmds

    paths = _config_paths(config)
    now = not deferred or bool(cmds.about(batch=True))
    log_to_script_editor()
    remove_old_installs()
    later: Optional[Callable[[Callable[[], None]], object]] = None
    if not now:
        import maya.utils

        later = maya.utils.executeDeferred
    if plugin:
        if later is None:
            load_plugin()
        else:
            later(load_plugin)
    if not paths:
        return
    try:
        loaded = _config.load_config(paths, defer_startup=later)
    except (subsession.ConfigError, OSError) as error:
        if now:
            raise
        _log.error("the studio config was not loaded: %s", " ".join(str(error).split()))
        return
    _log.info("%d sessions from %s", len(loaded), os.pathsep.join(paths))


def log_to_script_editor() -> None:
    """Show WARNING and above of the ``subsession`` logger in the Script Editor, once.

    The ``subsession`` logger gets its own level (WARNING, unless you set one), exactly
    one Script Editor handler (Maya's ``maya.utils.MayaGuiLogHandler``, made safe for
    other threads) and ``propagate = False``. Maya adds its own Script Editor handler to
    the root logger *after* ``userSetup.py`` ran, and ``maya.utils.shellLogHandler()``
    sets the root level to INFO: a record that also propagated to the root would show
    twice, and INFO would reach the Script Editor. Not propagating makes each record
    show once whatever order Maya sets up logging in. To collect the records elsewhere,
    add your handler to the ``subsession`` logger. Records logged on another thread
    (the watcher's) reach Maya on its main thread (``maya.utils.executeDeferred``).
    Called by :func:`setup` and by the plug-in; calling it again changes nothing.
    """
    import maya.utils

    base = getattr(maya.utils, "MayaGuiLogHandler", None)
    if base is None:
        return
    handler_type = _main_thread_handler(base)
    logger = logging.getLogger("subsession")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    logger.propagate = False
    kept = None
    for old in [h for h in logger.handlers if isinstance(h, base)]:
        if kept is None and type(old) is handler_type:
            kept = old
        else:
            logger.removeHandler(old)  # a second one, an earlier version's, or Maya's own
    if kept is not None:
        return
    from maya import cmds

    handler = handler_type()
    handler.batch = bool(cmds.about(batch=True))
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger.addHandler(handler)


_handler_types: dict[type, type] = {}


def _main_thread_handler(base: type) -> Any:
    """A subclass of Maya's Script Editor handler that emits only on the main thread.

    Maya's handler calls ``MGlobal.display*``, and Maya's API must not be called from
    another thread (Autodesk, *Python and threading*). A record from another thread is
    formatted there (its arguments may change later) and handed to the main thread
    through ``maya.utils.executeDeferred``; in batch mode, which runs no deferred code,
    it is written to the process's standard error (``sys.__stderr__``) instead.
    """
    found = _handler_types.get(base)
    if found is not None:
        return found

    class ScriptEditorHandler(base):  # type: ignore[misc]
        #: Maya runs without its interface (no idle queue): set on the main thread
        batch = False

        def emit(self, record: logging.LogRecord) -> None:
            import threading

            if threading.current_thread() is threading.main_thread():
                super().emit(record)
                return
            try:
                import sys

                import maya.utils

                text = self.format(record)
                if self.batch:
                    # The process's own stream: Maya may have replaced sys.stderr with
                    # its output window, which is Maya's API again.
                    stream = sys.__stderr__ or sys.stderr
                    stream.write(f"{record.levelname}: {text}\n")
                    stream.flush()
                    return
                frozen = logging.makeLogRecord(
                    {**record.__dict__, "msg": text, "args": None, "exc_info": None,
                     "exc_text": None, "stack_info": None}
                )  # fmt: skip
                frozen.__dict__["_subsession_formatted"] = True
                maya.utils.executeDeferred(super().emit, frozen)
            except Exception:  # a logging handler must never raise into the logging code
                self.handleError(record)

        def format(self, record: logging.LogRecord) -> str:
            if record.__dict__.get("_subsession_formatted"):
                return record.getMessage()
            return str(super().format(record))

    ScriptEditorHandler.__qualname__ = f"ScriptEditorHandler[{base.__name__}]"
    _handler_types[base] = ScriptEditorHandler
    return ScriptEditorHandler


def run(session: str, module: str, function: Optional[str] = None, /, *args: Any, **kw: Any) -> Any:
    """Import ``module`` in the named ``session`` and call ``function(*args, **kw)``.

    Returns the function's result (or the module without ``function``). The session
    must exist, or be defined in the studio config (``$SUBSESSION_CONFIG``): then the
    config is loaded first, so a workspace control restored before ``setup()`` ran
    still finds its session. Otherwise create it with ``subSession -create``.

    >>> subsession.maya.run("toolA", "toolA.ui", "show")                 # doctest: +SKIP
    >>> subsession.maya.run("toolA", "toolA.ui", "show", dock=True)      # doctest: +SKIP
    """
    owner = _find(session)
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
    owner = _find(session)
    turn_on = (not owner.watching) if on is None else bool(on)
    if turn_on:
        owner.watch(deep=deep, interval=interval)
    else:
        owner.unwatch()
    _log.info(
        "subsession: %s %s", session, "reloads on save" if turn_on else "no longer reloads on save"
    )
    return turn_on


def _find(name: str) -> Any:
    """The open session ``name``; loads the studio config if it defines it."""
    try:
        return subsession.get(name)
    except subsession.SessionError:
        pass
    if name in _config.parse_config(None)["sessions"]:
        _config.load_config(None)
        return subsession.get(name)
    raise subsession.SessionError(
        f"no session named {name!r}; define it in the studio config "
        f"(${_config.ENV_VAR}) or create it with: subSession -create {name}"
    )


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
    control back instead of making a second one. The widget is returned even when Maya
    has not built the control's content yet (a control restored hidden or in a tab
    loads lazily): then it is built here, and the ``uiScript`` finds it later.
    """
    from maya import cmds

    if cmds.workspaceControl(MANAGER_CONTROL, exists=True):
        cmds.workspaceControl(MANAGER_CONTROL, edit=True, restore=True)
    else:
        cmds.workspaceControl(
            MANAGER_CONTROL,
            label="Sub-sessions",
            # A string: Maya saves it with the workspace and runs it at start-up (the
            # stubs type script flags as callables only).
            uiScript=MANAGER_UI_SCRIPT,  # type: ignore[arg-type]
            # Maya loads a control's content when it is first shown, not necessarily
            # now: ask for it now, so the widget exists when this returns.
            loadImmediately=True,
            retain=False,
            floating=True,
            initialWidth=900,
            initialHeight=640,
        )
    if _docked() is None:
        import maya.OpenMayaUI as omui

        control = omui.MQtUtil.findControl(MANAGER_CONTROL)
        if control:
            _build_manager(omui, int(control))
    return _manager


def _docked() -> Any:
    """The manager built into a control, if it still exists (Maya deletes the content
    with the control)."""
    from subsession import _qt

    if _manager is None or not _qt.is_valid(_manager) or _manager.parentWidget() is None:
        return None
    return _manager


def _build_manager(omui: Any, parent: int) -> Any:
    global _manager
    from subsession import _qt, ui

    _manager = ui.SessionManager()
    omui.MQtUtil.addWidgetToMayaLayout(_qt.cpp_pointer(_manager), parent)
    return _manager


def restore_manager() -> Any:
    """The workspace control's ``uiScript``: build the manager inside the control Maya
    is creating (or restoring at start-up); returns the widget. Does nothing but return
    it when :func:`show_manager` built it already."""
    import maya.OpenMayaUI as omui

    parent = omui.MQtUtil.getCurrentParent()
    if not parent:
        raise RuntimeError(
            "restore_manager() runs as the uiScript of a workspace control; "
            "call subsession.maya.show_manager() instead"
        )
    docked = _docked()
    if docked is not None:
        return docked
    return _build_manager(omui, int(parent))


_live.install_maya()
