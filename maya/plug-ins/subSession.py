"""subSession: the Maya command of the ``subsession`` module (Python API 2.0).

Load it from the Plug-in Manager (tick *Auto load* to have it every session) or::

    cmds.loadPlugin("subSession.py")

then, in Python or MEL::

    cmds.subSession("toolA", create=True, path=["/tools/a/lib"])
    cmds.subSession("toolA", module="toolA.ui", function="show")
    cmds.subSession("toolA", query=True, modules=True)
    subSession -m "toolA.ui" -fn "show" toolA;

Flags: ``help subSession`` (Maya's synopsis of the syntax); rules and results: the
README's Maya section and :mod:`subsession.command`, which holds all the logic; this
file only adapts Maya's argument parsing and results to it. With Maya's interface it
also adds *Windows > Sub-sessions* (the session manager, docked). Unloading the
plug-in removes the command and the menu item; the sessions live on and are there
again when it is loaded again.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import maya.api.OpenMaya as om

try:
    from subsession import __version__, _live
    from subsession import command as _command
except ImportError as _error:  # the package or its compiled core is missing
    raise ImportError(
        f"subSession: cannot import the subsession package ({_error}); install the "
        "subsession Maya module for this platform (see the README's Maya section)"
    ) from _error

COMMAND = "subSession"
VENDOR = "subsession"
MENU_ITEM = "subsessionManagerMenuItem"
MENU_COMMAND = "import subsession.maya; subsession.maya.show_manager()"
#: Maya 2023 (Python 3.9) is the oldest Maya the compiled core serves.
MIN_MAYA_API = 20230000

_ARG_TYPES = {"none": om.MSyntax.kNoArg, "string": om.MSyntax.kString, "bool": om.MSyntax.kBoolean}


def maya_useNewAPI() -> None:
    """Tell Maya this plug-in uses the Python API 2.0."""


class SubSessionCommand(om.MPxCommand):
    """``subSession [flags] [sessionName]``: create, run in, reload, query and close
    sub-sessions. Not undoable."""

    def __init__(self) -> None:
        om.MPxCommand.__init__(self)

    @staticmethod
    def creator() -> SubSessionCommand:
        return SubSessionCommand()

    @staticmethod
    def create_syntax() -> om.MSyntax:
        """Every flag of :data:`subsession.command.FLAGS`; the object is the session."""
        syntax = om.MSyntax()
        syntax.setObjectType(om.MSyntax.kStringObjects, 0, 1)
        syntax.enableQuery = True
        syntax.enableEdit = True
        for spec in _command.FLAGS:
            syntax.addFlag(f"-{spec.short}", f"-{spec.long}", _ARG_TYPES[spec.arg])
            if spec.multi:
                syntax.makeFlagMultiUse(f"-{spec.short}")
        return syntax

    def isUndoable(self) -> bool:
        return False

    def hasSyntax(self) -> bool:
        return True

    def doIt(self, args: om.MArgList) -> None:
        try:
            try:
                database = om.MArgDatabase(self.syntax(), args)
            except Exception as error:
                raise _command.CommandError(
                    f"{error}; run `help {COMMAND}` for the flags"
                ) from None
            name, flags = _read(database)
            result = _command.execute(
                name, flags, query=bool(database.isQuery), edit=bool(database.isEdit)
            )
        except _command.CommandError as error:
            # One error line: Maya prints the exception that fails the command (in MEL
            # and in an uncaught Python call); a displayError here would be a second.
            if error.details:
                sys.stderr.write(error.details)
            raise RuntimeError(f"{COMMAND}: {error}") from None
        except Exception as error:  # a bug: still one line, the traceback in the editor
            traceback.print_exc()
            message = " ".join(f"internal error {type(error).__name__}: {error}".split())
            raise RuntimeError(
                f"{COMMAND}: {message}; please report it with the traceback above"
            ) from None
        _set_result(self, result)


def _read(database: Any) -> tuple[str | None, dict[str, Any]]:
    """The session name and the flags used, keyed by long name (see ``execute``)."""
    objects = list(database.getObjectStrings())
    flags: dict[str, Any] = {}
    query = bool(database.isQuery)
    for spec in _command.FLAGS:
        short = f"-{spec.short}"
        if not database.isFlagSet(short):
            continue
        if query or spec.arg == "none":
            flags[spec.long] = True
        elif spec.multi:
            flags[spec.long] = [
                database.getFlagArgumentList(short, use).asString(0)
                for use in range(database.numberOfFlagUses(short))
            ]
        elif spec.arg == "string":
            flags[spec.long] = database.flagArgumentString(short, 0)
        else:
            flags[spec.long] = database.flagArgumentBool(short, 0)
    return (str(objects[0]) if objects else None), flags


def _set_result(command: om.MPxCommand, result: _command.Result) -> None:
    """Strings, lists of strings, bools and numbers; an empty list returns nothing.

    Maya's integer results are 32-bit: a larger int is returned as its decimal string.
    """
    command.clearResult()
    if isinstance(result, list):
        if result:
            command.setResult(result)
    elif isinstance(result, int) and not isinstance(result, bool):
        low, high = _command.INT32
        command.setResult(result if low <= result <= high else str(result))
    elif result is not None:
        command.setResult(result)


def _add_menu_item() -> None:
    """*Windows > Sub-sessions*, in an interactive Maya (no menus in batch mode)."""
    from maya import cmds, mel

    if cmds.about(batch=True):
        return
    menu = str(mel.eval("$subsessionWindowMenu = $gMainWindowMenu"))
    if not cmds.menu(menu, query=True, numberOfItems=True):
        # Maya fills its Windows menu the first time it opens, and only if it is
        # empty: build it now, or our item would be the only one in it.
        mel.eval(f"buildViewMenu {menu}")
    if cmds.menuItem(MENU_ITEM, exists=True):
        cmds.deleteUI(MENU_ITEM, menuItem=True)
    cmds.menuItem(
        MENU_ITEM,
        parent=menu,
        label="Sub-sessions",
        annotation="The subsession manager: sessions, modules, reload, close and leaks",
        sourceType="python",
        # A string, not a function: it survives a reload of this plug-in. Maya takes
        # a string for every script flag; maya-stubs only types callables.
        command=MENU_COMMAND,  # type: ignore[arg-type]
    )


def _remove_menu_item() -> None:
    from maya import cmds

    if not cmds.about(batch=True) and cmds.menuItem(MENU_ITEM, exists=True):
        cmds.deleteUI(MENU_ITEM, menuItem=True)


def initializePlugin(plugin: om.MObject) -> None:
    """Register the ``subSession`` command and the *Windows > Sub-sessions* item
    (Maya 2023 or later)."""
    api = om.MGlobal.apiVersion()
    if api < MIN_MAYA_API:
        raise RuntimeError(
            f"{COMMAND} needs Maya 2023 or later (this Maya's API is {api}); "
            "install subsession only for Maya 2023-2027"
        )
    from subsession.maya import log_to_script_editor, remove_old_installs

    log_to_script_editor()
    remove_old_installs()  # what a drag-and-drop upgrade replaced, once no Maya holds it
    fn = om.MFnPlugin(plugin, VENDOR, __version__, "Any")
    _live.install_maya()  # session code's scriptJobs, callbacks and UI belong to it
    _command.INFO = om.MGlobal.displayInfo
    fn.registerCommand(COMMAND, SubSessionCommand.creator, SubSessionCommand.create_syntax)
    try:
        _add_menu_item()
    except Exception:  # the command works without the menu: say so, do not fail the load
        traceback.print_exc()
        om.MGlobal.displayWarning(
            "subSession: could not add Windows > Sub-sessions (traceback above); open "
            "the manager with: import subsession.maya; subsession.maya.show_manager()"
        )


def uninitializePlugin(plugin: om.MObject) -> None:
    """Deregister the command and remove the menu item; sessions stay alive."""
    _remove_menu_item()
    om.MFnPlugin(plugin).deregisterCommand(COMMAND)
