"""The fake Maya's interface: one model of its UI objects behind ``maya.cmds.window``/
``menu``/``menuItem``/``workspaceControl``/``deleteUI``/``setParent`` and
``maya.OpenMayaUI.MQtUtil``.

What it reproduces of Maya (interactive; none of it exists in batch mode, where every
UI command raises):

- UI objects form a hierarchy named by full paths: ``MayaWindow`` (the main window),
  its menus ``MayaWindow|mainWindowMenu``, their items
  ``MayaWindow|mainWindowMenu|menuItem3``. Creating commands return the full path; a
  top-level object (window, workspace control) is its own name. Edit, query,
  ``exists`` and ``deleteUI`` take the full path, a partial path or the short name (the
  first object found with it). A name already used at that place raises "Object's
  name '...' is not unique."; an unknown object raises "Object '...' not found."
- Default parents, as ``setParent`` documents them: a ``window`` becomes the default
  parent of the menus created next (at start-up, the main window); a ``menu`` (or a
  ``menuItem`` with ``subMenu=True``) becomes the default menu of the items created
  next. An explicit ``parent`` wins. ``deleteUI`` deletes an object with everything
  under it.
- The main menus exist with Maya's global MEL names (``$gMainWindowMenu`` =
  ``"mainWindowMenu"``) but are *built lazily*: empty until first opened
  (:func:`open_menu`), when their ``postMenuCommand`` (``buildViewMenu`` for *Windows*)
  fills them, and only if they are still empty. A plug-in that adds an item before the
  menu was built therefore leaves Maya's own items out, unless it runs
  ``buildViewMenu`` first, as in Maya.
- A ``menuItem`` runs its ``command`` when clicked (:func:`click`): Python source with
  ``sourceType="python"``, MEL otherwise, or a callable.
- ``workspaceControl(name, uiScript=..., ...)`` requires ``uiScript`` at creation and
  runs it at once, with the control (a real ``QWidget`` with a layout when a Qt
  application exists) as ``MQtUtil.getCurrentParent()``. ``edit=True, restore=True``
  shows it again; closing (``close=True``, or the user) hides a ``retain=True`` control
  and deletes a ``retain=False`` one with its content; ``deleteUI`` deletes it.
  :func:`restart` is Maya's next start-up: a fresh interface, then each control of the
  saved workspace is created again and its ``uiScript`` runs. (Python's state is not
  restarted.)

Test hooks: :func:`reset`, :func:`find`, :func:`paths`, :func:`open_menu`,
:func:`click`, :func:`close_control`, :func:`restart`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from maya import _host

MAIN_WINDOW = "MayaWindow"
#: Maya's own *Windows* menu items (a few of them), added by ``buildViewMenu``.
WINDOWS_MENU_ITEMS = [
    "General Editors",
    "Modeling Editors",
    "Animation Editors",
    "Settings/Preferences",
]
FILE_MENU_ITEMS = ["New Scene", "Open Scene...", "Save Scene", "Exit"]
#: Maya's global MEL variables naming its main menus (short names, as in Maya).
MEL_GLOBALS = {"gMainWindowMenu": "mainWindowMenu", "gMainFileMenu": "mainFileMenu"}
#: main menu -> (label, the MEL procedure that builds it, the items it adds)
MAIN_MENUS = {
    "mainFileMenu": ("File", "buildFileMenu", FILE_MENU_ITEMS),
    "mainWindowMenu": ("Windows", "buildViewMenu", WINDOWS_MENU_ITEMS),
}


# -- the objects ------------------------------------------------------------------------------


@dataclass
class UIObject:
    path: str

    kind = "control"

    @property
    def name(self) -> str:
        return self.path.rpartition("|")[2]

    @property
    def parent(self) -> str:
        return self.path.rpartition("|")[0]


@dataclass
class Window(UIObject):
    title: str = ""
    kind = "window"


@dataclass
class Menu(UIObject):
    label: str = ""
    post_menu_command: Any = None
    kind = "menu"


@dataclass
class MenuItem(UIObject):
    label: str = ""
    command: Any = None
    source_type: str = "mel"
    annotation: str = ""
    divider: bool = False
    sub_menu: bool = False
    enable: bool = True
    kind = "menuItem"


@dataclass
class WorkspaceControl(UIObject):
    label: str = ""
    ui_script: Any = None
    retain: bool = True
    floating: bool = False
    widget: Any = None
    visible: bool = True
    flags: dict[str, Any] = field(default_factory=dict)
    kind = "workspaceControl"


@dataclass
class _UI:
    #: full path -> object, in creation order
    objects: dict[str, UIObject] = field(default_factory=dict)
    #: ``setParent``: the default parent of menus (a window)
    parent: str = ""
    #: ``setParent -menu``: the default parent of menu items
    menu: str = ""
    #: the Qt widget of the control whose ``uiScript`` runs (``MQtUtil.getCurrentParent``)
    current_parent: Any = None
    counts: dict[str, int] = field(default_factory=dict)


ui = _UI()


def reset() -> None:
    """A fresh interface: Maya's main window and its main menus, unbuilt (nothing in
    batch mode); no windows, menus or workspace controls of anyone else."""
    for obj in list(ui.objects.values()):
        if isinstance(obj, WorkspaceControl):
            _destroy_widget(obj)
    ui.__init__()  # type: ignore[misc]
    if _host.state.batch:
        return
    _add(Window(MAIN_WINDOW, title="Autodesk Maya"))
    for name, (label, proc, _) in MAIN_MENUS.items():
        path = f"{MAIN_WINDOW}|{name}"
        _add(Menu(path, label=label, post_menu_command=f"{proc} {path}"))
    ui.parent = MAIN_WINDOW
    ui.menu = ""


def _add(obj: UIObject) -> str:
    ui.objects[obj.path] = obj
    return obj.path


def _require_ui(command: str) -> None:
    if _host.state.batch:
        raise RuntimeError(f"{command}: this command is not available in batch mode (no UI)")


def _is(obj: UIObject, kinds: tuple[str, ...]) -> bool:
    if obj.kind in kinds:
        return True
    # "menu item objects created using -subMenu may also be treated as menu objects"
    return "menu" in kinds and isinstance(obj, MenuItem) and obj.sub_menu


def find(name: Any, *kinds: str) -> Optional[UIObject]:
    """The object called ``name`` (full path, partial path or short name; the first
    created wins for a short name), of one of ``kinds`` if given; None if none."""
    if not isinstance(name, str) or not name:
        return None
    exact = ui.objects.get(name)
    if exact is not None:
        return exact if not kinds or _is(exact, kinds) else None
    tail = "|" + name.strip("|")
    for path, obj in ui.objects.items():
        if path.endswith(tail) and (not kinds or _is(obj, kinds)):
            return obj
    return None


def _lookup(command: str, name: Any, *kinds: str) -> Any:
    obj = find(name, *kinds)
    if obj is None:
        raise RuntimeError(f"{command}: Object '{name}' not found.")
    return obj


def paths(kind: str) -> list[str]:
    """Full paths of the objects of ``kind`` ("menu", "menuItem", ...), in creation order."""
    return [p for p, obj in ui.objects.items() if obj.kind == kind]


def children(path: str) -> list[UIObject]:
    return [obj for obj in ui.objects.values() if obj.parent == path]


def _new_path(command: str, kind: str, name: Optional[str], parent: str) -> str:
    prefix = f"{parent}|" if parent else ""
    if name is None:
        while True:
            ui.counts[kind] = ui.counts.get(kind, 0) + 1
            name = f"{kind}{ui.counts[kind]}"
            if prefix + name not in ui.objects:
                break
    if not name or "|" in name:
        raise RuntimeError(f"{command}: invalid object name {name!r}")
    if prefix + name in ui.objects:
        raise RuntimeError(f"{command}: Object's name '{name}' is not unique.")
    return prefix + name


def _long(command: str, flags: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """Flags by their long names; an unknown flag raises TypeError, as in Maya."""
    known = set(names.values())
    out: dict[str, Any] = {}
    for key, value in flags.items():
        long = names.get(key, key)
        if long not in known:
            raise TypeError(f"{command}: Invalid flag '{key}' (not faked)")
        out[long] = value
    return out


_COMMON = {"ex": "exists", "q": "query", "e": "edit", "p": "parent"}


def _mode(flags: dict[str, Any]) -> str:
    if flags.pop("exists", False):
        return "exists"
    query = bool(flags.pop("query", False))
    edit = bool(flags.pop("edit", False))
    return "query" if query else "edit" if edit else "create"


def _queried(command: str, flags: dict[str, Any], answers: dict[str, Callable[[], Any]]) -> Any:
    asked = [k for k, v in flags.items() if v]
    if len(asked) != 1 or asked[0] not in answers:
        raise TypeError(f"{command}: query one flag of {sorted(answers)} (got {asked})")
    return answers[asked[0]]()


# -- windows and default parents ------------------------------------------------------------------


def window(name: Optional[str] = None, **flags: Any) -> Any:
    """A top-level window (invisible until ``showWindow``); it becomes the default
    parent. Returns its name."""
    _require_ui("window")
    flags = _long("window", flags, {**_COMMON, "t": "title", "mb": "menuBar", "wh": "widthHeight",
                                    "rtf": "resizeToFitChildren", "ret": "retain"})  # fmt: skip
    mode = _mode(flags)
    if mode == "exists":
        return find(name, "window") is not None
    if mode != "create":
        found = _lookup("window", name, "window")
        if mode == "query":
            return _queried("window", flags, {"title": lambda: found.title})
        if "title" in flags:
            found.title = str(flags["title"])
        return found.path
    path = _add(Window(_new_path("window", "window", name, ""), title=str(flags.get("title", ""))))
    ui.parent = path
    return path


def set_parent(name: Optional[str] = None, **flags: Any) -> Any:
    """``setParent``: the default parent (``menu=True``: of menu items); ``".."`` goes up
    one level; query mode returns it."""
    _require_ui("setParent")
    flags = _long(
        "setParent", flags, {"q": "query", "m": "menu", "u": "upLevel", "top": "topLevel"}
    )
    menu = bool(flags.get("menu"))
    if flags.get("query"):
        return (ui.menu if menu else ui.parent) or "NONE"
    if flags.get("upLevel"):
        name = ".."
    if flags.get("topLevel"):
        name = "|"
    current = ui.menu if menu else ui.parent
    if name == "..":
        target = current.rpartition("|")[0] or current
    elif name == "|":
        target = current.split("|", 1)[0]
    else:
        target = _lookup("setParent", name, *(("menu",) if menu else ("window",))).path
    if menu:
        ui.menu = target
    else:
        ui.parent = target
    return target


# -- menus ----------------------------------------------------------------------------------------


def menu(name: Optional[str] = None, **flags: Any) -> Any:
    """A menu in a window's menu bar (the default parent: at start-up, Maya's main
    window); it becomes the default menu. Returns its full path."""
    _require_ui("menu")
    flags = _long("menu", flags, {**_COMMON, "l": "label", "to": "tearOff", "ni": "numberOfItems",
                                  "ia": "itemArray", "pmc": "postMenuCommand",
                                  "dai": "deleteAllItems", "aob": "allowOptionBoxes"})  # fmt: skip
    mode = _mode(flags)
    if mode == "exists":
        return find(name, "menu") is not None
    if mode == "query":
        found = _lookup("menu", name, "menu")
        return _queried(
            "menu",
            flags,
            {
                "numberOfItems": lambda: len(children(found.path)),
                "itemArray": lambda: [c.name for c in children(found.path)] or None,
                "label": lambda: found.label,
                "postMenuCommand": lambda: getattr(found, "post_menu_command", None),
            },
        )
    if mode == "edit":
        found = _lookup("menu", name, "menu")
        if flags.get("deleteAllItems"):
            for child in children(found.path):
                _delete(child.path)
        if "label" in flags:
            found.label = str(flags["label"])
        if "postMenuCommand" in flags and isinstance(found, Menu):
            found.post_menu_command = flags["postMenuCommand"]
        return found.path
    parent = flags.get("parent") or ui.parent
    if not parent or find(parent, "window") is None:
        raise RuntimeError(f"menu: Object '{parent or ''}' not found (a menu needs a window).")
    parent = _lookup("menu", parent, "window").path
    path = _new_path("menu", "menu", name, parent)
    label = str(flags.get("label", path.rpartition("|")[2]))
    _add(Menu(path, label=label, post_menu_command=flags.get("postMenuCommand")))
    ui.menu = path
    return path


def build_menu(proc: str, menu_name: str) -> None:
    """Maya's MEL procedure ``buildViewMenu <menu>`` (``buildFileMenu``): fill the main
    menu with Maya's own items, only if it is still empty."""
    _require_ui(proc)
    found = find(menu_name, "menu")
    if found is None:
        raise RuntimeError(f"{proc}: Object '{menu_name}' not found.")
    if children(found.path):
        return
    labels = next((items for _, p, items in MAIN_MENUS.values() if p == proc), None)
    if labels is None:
        raise RuntimeError(f'Cannot find procedure "{proc}".')
    for label in labels:
        _add(MenuItem(_new_path(proc, "menuItem", None, found.path), label=label))


def open_menu(name: str) -> list[str]:
    """The user opens a menu: its ``postMenuCommand`` runs; returns the item labels."""
    found = _lookup("open_menu", name, "menu")
    command = getattr(found, "post_menu_command", None)
    if callable(command):
        command()
    elif isinstance(command, str) and command:
        from maya import mel

        mel.eval(command)
    return [c.label for c in children(found.path) if isinstance(c, MenuItem)]


def menu_item(name: Optional[str] = None, **flags: Any) -> Any:
    """A menu item of ``parent`` or of the default menu (the last menu created). Returns
    its full path."""
    _require_ui("menuItem")
    flags = _long("menuItem", flags, {**_COMMON, "l": "label", "c": "command",
                                      "stp": "sourceType", "ann": "annotation", "d": "divider",
                                      "sm": "subMenu", "to": "tearOff", "en": "enable",
                                      "i": "image", "ecr": "echoCommand"})  # fmt: skip
    mode = _mode(flags)
    if mode == "exists":
        return find(name, "menuItem") is not None
    if mode == "query":
        item = _lookup("menuItem", name, "menuItem")
        return _queried(
            "menuItem",
            flags,
            {
                "label": lambda: item.label,
                "command": lambda: item.command,
                "annotation": lambda: item.annotation,
                "sourceType": lambda: item.source_type,
                "subMenu": lambda: item.sub_menu,
                "divider": lambda: item.divider,
                "enable": lambda: item.enable,
            },
        )
    if mode == "edit":
        item = _lookup("menuItem", name, "menuItem")
        for flag, attr in (("label", "label"), ("command", "command"),
                           ("annotation", "annotation"), ("enable", "enable")):  # fmt: skip
            if flag in flags:
                setattr(item, attr, flags[flag])
        if "sourceType" in flags:
            item.source_type = _source_type(flags["sourceType"])
        return item.path
    parent = flags.get("parent") or ui.menu
    if not parent:
        raise RuntimeError("menuItem: no menu to put the item in: give parent= or create a menu")
    parent = _lookup("menuItem", parent, "menu").path
    path = _new_path("menuItem", "menuItem", name, parent)
    item = MenuItem(
        path,
        label=str(flags.get("label", path.rpartition("|")[2])),
        command=flags.get("command"),
        source_type=_source_type(flags.get("sourceType", "mel")),
        annotation=str(flags.get("annotation", "")),
        divider=bool(flags.get("divider", False)),
        sub_menu=bool(flags.get("subMenu", False)),
        enable=bool(flags.get("enable", True)),
    )
    _add(item)
    if item.sub_menu:
        ui.menu = path
    return path


def _source_type(value: Any) -> str:
    if value not in ("mel", "python"):
        raise RuntimeError(f"menuItem: sourceType must be mel or python, not {value!r}")
    return str(value)


def click(name: str) -> Any:
    """The user picks a menu item: its command runs, as Maya runs it."""
    item = _lookup("click", name, "menuItem")
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


# -- deleteUI -------------------------------------------------------------------------------------

_DELETE_KINDS = {
    "window": ("window",),
    "menu": ("menu",),
    "menuItem": ("menuItem",),
    "control": ("workspaceControl",),
}


def delete_ui(*names: str, **flags: Any) -> None:
    """``deleteUI``: each object with everything under it; a type flag (``menuItem``,
    ``menu``, ``window``, ``control``) restricts the names to that type. An unknown
    object raises (those before it are deleted, as in Maya)."""
    _require_ui("deleteUI")
    flags = _long("deleteUI", flags, {"wnd": "window", "m": "menu", "mi": "menuItem",
                                      "ctl": "control"})  # fmt: skip
    kinds = tuple(k for flag, ks in _DELETE_KINDS.items() if flags.get(flag) for k in ks)
    if not names:
        raise RuntimeError("deleteUI: no object given")
    for name in names:
        _delete(_lookup("deleteUI", name, *kinds).path)


def _delete(path: str) -> None:
    doomed = [p for p in ui.objects if p == path or p.startswith(path + "|")]
    for p in reversed(doomed):
        obj = ui.objects.pop(p)
        if isinstance(obj, WorkspaceControl):
            _destroy_widget(obj)
    if ui.parent in doomed:
        ui.parent = MAIN_WINDOW if MAIN_WINDOW in ui.objects else ""
    if ui.menu in doomed:
        ui.menu = ""


# -- workspace controls ---------------------------------------------------------------------------


def workspace_control(name: Optional[str] = None, **flags: Any) -> Any:
    """A dockable workspace control (top-level): ``uiScript`` is required at creation.
    Returns its name.

    As in Maya, the content is loaded lazily: the ``uiScript`` runs when Maya next
    goes idle (``_host.run_idle``), unless ``loadImmediately=True`` (Autodesk's
    workspaceControl reference: "loadImmediately: If true, the control will be loaded
    immediately. Otherwise, the control will be loaded when it is first shown") — so
    right after the command, the control may still be empty."""
    _require_ui("workspaceControl")
    flags = _long("workspaceControl", flags, {**_COMMON, "l": "label", "ui": "uiScript",
                                              "rt": "retain", "fl": "floating", "vis": "visible",
                                              "r": "restore", "cl": "close", "iw": "initialWidth",
                                              "ih": "initialHeight", "cc": "closeCommand",
                                              "li": "loadImmediately"})  # fmt: skip
    mode = _mode(flags)
    if mode == "exists":
        return find(name, "workspaceControl") is not None
    if mode == "query":
        control = _lookup("workspaceControl", name, "workspaceControl")
        return _queried(
            "workspaceControl",
            flags,
            {
                "visible": lambda: control.visible,
                "label": lambda: control.label,
                "uiScript": lambda: control.ui_script,
                "floating": lambda: control.floating,
                "retain": lambda: control.retain,
            },
        )
    if mode == "edit":
        control = _lookup("workspaceControl", name, "workspaceControl")
        if flags.get("close"):
            close_control(control.path)
            return None
        if "label" in flags:
            control.label = str(flags["label"])
        if flags.get("restore") or flags.get("visible"):
            control.visible = True
            if control.widget is not None:
                control.widget.show()
        elif "visible" in flags:
            control.visible = False
            if control.widget is not None:
                control.widget.hide()
        return None
    script = flags.pop("uiScript", None)
    if not script:
        raise RuntimeError(
            "workspaceControl: the uiScript flag is required to create a workspace control"
        )
    control = WorkspaceControl(
        _new_path("workspaceControl", "workspaceControl", name, ""),
        ui_script=script,
        retain=bool(flags.pop("retain", True)),
        floating=bool(flags.pop("floating", False)),
    )
    control.label = str(flags.pop("label", control.name))
    immediately = bool(flags.pop("loadImmediately", False))
    control.flags = flags
    return _open_control(control, immediately)


def _open_control(control: WorkspaceControl, immediately: bool = True) -> str:
    _add(control)
    _create_widget(control)
    if immediately:
        _load_content(control)
    else:
        from maya import _host

        _host.state.deferred.append((_load_content, (control,), {}))
    return control.path


def _load_content(control: WorkspaceControl) -> None:
    if ui.objects.get(control.path) is not control:
        return  # deleted before Maya got to it
    ui.current_parent = control.widget
    try:
        if callable(control.ui_script):
            control.ui_script()
        else:
            exec(control.ui_script, {"__name__": "__main__"})
    finally:
        ui.current_parent = None


def _create_widget(control: WorkspaceControl) -> None:
    try:
        from subsession._qt import QtWidgets
    except ImportError:
        return
    if QtWidgets.QApplication.instance() is None:  # Maya always has one; a test may not
        return
    widget = QtWidgets.QWidget()
    widget.setObjectName(control.name)
    widget.setWindowTitle(control.label)
    layout = QtWidgets.QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    control.widget = widget
    widget.show()


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
    """The user closes a control: a ``retain=False`` one is deleted with its content, a
    retained one is only hidden."""
    control = _lookup("workspaceControl", name, "workspaceControl")
    control.visible = False
    if control.retain:
        if control.widget is not None:
            control.widget.hide()
        return
    _delete(control.path)


def restart() -> list[str]:
    """Maya quits and starts again with the saved workspace: a fresh interface (main
    menus unbuilt, no one else's menus or windows), then every control that was open is
    created again and its ``uiScript`` runs. Returns their names."""
    saved = [obj for obj in ui.objects.values() if isinstance(obj, WorkspaceControl)]
    saved = [c for c in saved if c.visible]
    reset()
    for old in saved:
        fresh = WorkspaceControl(
            old.path,
            label=old.label,
            ui_script=old.ui_script,
            retain=old.retain,
            floating=old.floating,
            flags=dict(old.flags),
        )
        _open_control(fresh)
    return [c.name for c in saved]


reset()  # Maya starts with its main window and main menus (unbuilt)
