"""The fake Maya's interface: the main window's menus, menu items and workspace
controls, for ``maya.cmds.menu``/``menuItem``/``deleteUI``/``workspaceControl`` and
``maya.OpenMayaUI.MQtUtil``.

What it reproduces of Maya (interactive; none of it exists in batch mode):

- The main menus exist with Maya's global MEL names (``$gMainWindowMenu`` =
  ``"mainWindowMenu"``) but are *built lazily*: empty until first opened, when their
  ``postMenuCommand`` (``buildViewMenu`` for *Windows*) fills them only if they are
  still empty. A plug-in that adds an item before the menu was built therefore leaves
  Maya's own items out, unless it runs ``buildViewMenu`` first, as in Maya.
- ``menuItem`` needs an existing ``parent`` menu, returns its name, and runs its
  ``command`` when clicked (:func:`click`): Python source with ``sourceType="python"``,
  MEL otherwise, or a callable. ``deleteUI(name, menuItem=True)`` removes it.
- ``workspaceControl(name, uiScript=..., ...)`` creates a control (a real ``QWidget``
  with a layout when Qt is importable) and runs ``uiScript`` at once with the control
  as ``MQtUtil.getCurrentParent()``. ``uiScript`` is required at creation, as Maya
  says. ``edit=True, restore=True`` shows it again; closing (``close=True``, or the user)
  deletes a ``retain=False`` control with its content. :func:`restart` replays what
  Maya does at the next start-up for the controls of the saved workspace: each is
  created again and its ``uiScript`` runs (before any deferred code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from maya import _host

MAIN_WINDOW = "MayaWindow"
#: Maya's own *Windows* menu items (a few of them), added by ``buildViewMenu``.
WINDOWS_MENU_ITEMS = [
    "General Editors",
    "Modeling Editors",
    "Animation Editors",
    "Settings/Preferences",
]
MEL_GLOBALS = {"gMainWindowMenu": "mainWindowMenu", "gMainFileMenu": "mainFileMenu"}


@dataclass
class Menu:
    name: str
    label: str
    build_proc: Optional[str] = None
    items: list[str] = field(default_factory=list)


@dataclass
class MenuItem:
    name: str
    parent: str
    label: str = ""
    command: Any = None
    source_type: str = "mel"
    annotation: str = ""
    divider: bool = False


@dataclass
class WorkspaceControl:
    name: str
    label: str
    ui_script: str
    retain: bool
    floating: bool
    widget: Any = None
    visible: bool = True
    flags: dict[str, Any] = field(default_factory=dict)


@dataclass
class _UI:
    menus: dict[str, Menu] = field(default_factory=dict)
    items: dict[str, MenuItem] = field(default_factory=dict)
    controls: dict[str, WorkspaceControl] = field(default_factory=dict)
    current_parent: Any = None
    counter: int = 0


ui = _UI()


def reset() -> None:
    """A fresh interface: Maya's main menus, unbuilt; no workspace controls."""
    for control in ui.controls.values():
        _destroy_widget(control)
    ui.__init__()  # type: ignore[misc]
    if not _host.state.batch:
        ui.menus["mainWindowMenu"] = Menu("mainWindowMenu", "Windows", "buildViewMenu")
        ui.menus["mainFileMenu"] = Menu("mainFileMenu", "File", "buildFileMenu")


def _require_ui(command: str) -> None:
    if _host.state.batch:
        raise RuntimeError(f"{command}: this command is not available in batch mode (no UI)")


# -- menus --------------------------------------------------------------------------------


def build_menu(proc: str, menu: str) -> None:
    """MEL ``buildViewMenu <menu>``: fill Maya's Windows menu if it is still empty."""
    found = ui.menus.get(menu)
    if found is None:
        raise RuntimeError(f"{proc}: menu {menu!r} not found")
    if found.items:
        return
    for label in WINDOWS_MENU_ITEMS:
        ui.counter += 1
        name = f"menuItem{ui.counter}"
        ui.items[name] = MenuItem(name, menu, label)
        found.items.append(name)


def open_menu(menu: str) -> list[str]:
    """The user opens a menu: its ``postMenuCommand`` runs; returns the item labels."""
    found = ui.menus[menu]
    if found.build_proc and not found.items:
        build_menu(found.build_proc, menu)
    return [ui.items[i].label for i in found.items]


def menu(name: str, **flags: Any) -> Any:
    _require_ui("menu")
    flags = _long(
        flags,
        {"ex": "exists", "q": "query", "ni": "numberOfItems", "ia": "itemArray", "l": "label"},
    )
    if flags.pop("exists", False):
        return name in ui.menus
    found = ui.menus.get(name)
    if found is None:
        raise RuntimeError(f"Object '{name}' not found.")
    if flags.pop("query", False):
        if flags.get("numberOfItems"):
            return len(found.items)
        if flags.get("itemArray"):
            return list(found.items) or None
        if flags.get("label"):
            return found.label
    raise TypeError(f"menu: flags not faked: {sorted(flags)}")


def menu_item(name: Optional[str] = None, **flags: Any) -> Any:
    _require_ui("menuItem")
    flags = _long(
        flags,
        {
            "p": "parent",
            "l": "label",
            "c": "command",
            "stp": "sourceType",
            "ann": "annotation",
            "d": "divider",
            "ex": "exists",
            "q": "query",
        },
    )
    if flags.pop("exists", False):
        return name in ui.items
    if flags.pop("query", False):
        item = ui.items.get(name or "")
        if item is None:
            raise RuntimeError(f"Object '{name}' not found.")
        if flags.get("label"):
            return item.label
        if flags.get("command"):
            return item.command
        if flags.get("annotation"):
            return item.annotation
        raise TypeError(f"menuItem: query flags not faked: {sorted(flags)}")
    parent = flags.pop("parent", None)
    if parent is None or parent not in ui.menus:
        raise RuntimeError(
            f"menuItem: parent menu {parent!r} not found; give parent= an existing menu"
        )
    if name is None:
        ui.counter += 1
        name = f"menuItem{ui.counter}"
    if name in ui.items:
        raise RuntimeError(f"Object's name '{name}' is not unique.")
    source = flags.pop("sourceType", "mel")
    if source not in ("mel", "python"):
        raise RuntimeError(f"menuItem: sourceType must be mel or python, not {source!r}")
    item = MenuItem(
        name,
        parent,
        label=str(flags.pop("label", name)),
        command=flags.pop("command", None),
        source_type=source,
        annotation=str(flags.pop("annotation", "")),
        divider=bool(flags.pop("divider", False)),
    )
    if flags:
        raise TypeError(f"menuItem: flags not faked: {sorted(flags)}")
    ui.items[name] = item
    ui.menus[parent].items.append(name)
    return name


def click(name: str) -> Any:
    """The user picks a menu item: its command runs, as Maya runs it."""
    item = ui.items[name]
    command = item.command
    if callable(command):
        return command(False)
    if isinstance(command, str):
        if item.source_type == "python":
            exec(command, {"__name__": "__main__"})
            return None
        from maya import mel

        return mel.eval(command)
    return None


def delete_ui(*names: str, **flags: Any) -> None:
    _require_ui("deleteUI")
    flags = _long(flags, {"mi": "menuItem", "m": "menu", "ctl": "control"})
    for name in names:
        if flags.get("menuItem") or name in ui.items:
            item = ui.items.pop(name, None)
            if item is None:
                raise RuntimeError(f"Object '{name}' not found.")
            ui.menus[item.parent].items.remove(name)
        elif name in ui.controls:
            close_control(name)
        else:
            raise RuntimeError(f"Object '{name}' not found.")


# -- workspace controls ---------------------------------------------------------------------


def workspace_control(name: str, **flags: Any) -> Any:
    _require_ui("workspaceControl")
    flags = _long(
        flags,
        {
            "ex": "exists",
            "q": "query",
            "e": "edit",
            "l": "label",
            "ui": "uiScript",
            "rt": "retain",
            "fl": "floating",
            "vis": "visible",
            "r": "restore",
            "cl": "close",
            "iw": "initialWidth",
            "ih": "initialHeight",
        },
    )
    if flags.pop("exists", False):
        return name in ui.controls
    control = ui.controls.get(name)
    if flags.pop("query", False):
        if control is None:
            raise RuntimeError(f"workspaceControl: Object '{name}' not found.")
        if flags.get("visible"):
            return control.visible
        if flags.get("label"):
            return control.label
        if flags.get("uiScript"):
            return control.ui_script
        if flags.get("floating"):
            return control.floating
        raise TypeError(f"workspaceControl: query flags not faked: {sorted(flags)}")
    if flags.pop("edit", False):
        if control is None:
            raise RuntimeError(f"workspaceControl: Object '{name}' not found.")
        if flags.pop("close", False):
            close_control(name)
            return None
        if flags.pop("restore", False) or flags.get("visible"):
            control.visible = True
            if control.widget is not None:
                control.widget.show()
        elif flags.get("visible") is False:
            control.visible = False
            if control.widget is not None:
                control.widget.hide()
        return None
    if control is not None:
        raise RuntimeError(f"workspaceControl: Object's name '{name}' is not unique.")
    script = flags.pop("uiScript", None)
    if not script:
        raise RuntimeError(
            "workspaceControl: the uiScript flag is required to create a workspace control"
        )
    control = WorkspaceControl(
        name,
        label=str(flags.pop("label", name)),
        ui_script=script,
        retain=bool(flags.pop("retain", True)),
        floating=bool(flags.pop("floating", False)),
        flags=flags,
    )
    ui.controls[name] = control
    _create_widget(control)
    _run_ui_script(control)
    return name


def _create_widget(control: WorkspaceControl) -> None:
    try:
        from subsession._qt import QtWidgets
    except ImportError:
        return
    widget = QtWidgets.QWidget()
    widget.setObjectName(control.name)
    widget.setWindowTitle(control.label)
    layout = QtWidgets.QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    control.widget = widget
    widget.show()


def _run_ui_script(control: WorkspaceControl) -> None:
    ui.current_parent = control.widget
    try:
        if callable(control.ui_script):
            control.ui_script()
        else:
            exec(control.ui_script, {"__name__": "__main__"})
    finally:
        ui.current_parent = None


def _destroy_widget(control: WorkspaceControl) -> None:
    widget, control.widget = control.widget, None
    if widget is not None:
        from subsession._qt import QtCore, QtWidgets, is_valid

        if is_valid(widget):
            widget.close()
            widget.deleteLater()
            # Maya deletes the control's content with it; deliver the deferred delete now.
            QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
            QtWidgets.QApplication.processEvents()


def close_control(name: str) -> None:
    """The user closes a control: a ``retain=False`` one is deleted with its content."""
    control = ui.controls[name]
    control.visible = False
    if control.retain:
        if control.widget is not None:
            control.widget.hide()
        return
    _destroy_widget(control)
    del ui.controls[name]


def restart() -> list[str]:
    """Maya quits and starts again with the saved workspace: every open control is
    created again and its ``uiScript`` runs; returns their names."""
    saved = [c for c in ui.controls.values() if c.visible]
    for control in list(ui.controls.values()):
        _destroy_widget(control)
    ui.controls.clear()
    for control in saved:
        fresh = WorkspaceControl(
            control.name,
            control.label,
            control.ui_script,
            control.retain,
            control.floating,
            flags=control.flags,
        )
        ui.controls[fresh.name] = fresh
        _create_widget(fresh)
        _run_ui_script(fresh)
    return [c.name for c in saved]


def _long(flags: dict[str, Any], short: dict[str, str]) -> dict[str, Any]:
    return {short.get(k, k): v for k, v in flags.items()}


reset()  # Maya starts with its main menus (unbuilt)
