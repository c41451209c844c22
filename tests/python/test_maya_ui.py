"""The session manager in (fake) Maya: *Windows > Sub-sessions* from the plug-in,
docking in a workspace control restorable at start-up, nothing in batch mode."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import uihelp
from uihelp import pump

FAKE_MAYA = str(Path(__file__).resolve().parents[1] / "fake_maya")
if FAKE_MAYA not in sys.path:  # appended: pytest re-inserts its folder if not sys.path[0]
    sys.path.append(FAKE_MAYA)

import fakehost  # noqa: E402
import subsession.maya  # noqa: E402
from subsession import ui  # noqa: E402

from maya import _host, _ui, cmds  # noqa: E402

ITEM = "subsessionManagerMenuItem"
MAIN_MENU = "MayaWindow|mainWindowMenu"


@pytest.fixture
def maya(monkeypatch: pytest.MonkeyPatch) -> Any:
    uihelp.app()
    host = fakehost.fresh_maya(monkeypatch)
    yield host
    for name in _ui.paths("workspaceControl"):
        _ui.close_control(name)
    if "subSession" in _host.state.plugins:
        cmds.unloadPlugin("subSession.py")
    pump()


def manager_in(control: str) -> ui.SessionManager:
    widget = _ui.find(control, "workspaceControl").widget
    found = widget.findChildren(ui.SessionManager)
    assert len(found) == 1, found
    return found[0]


def test_the_plugin_adds_windows_sub_sessions_and_removes_it(maya: Any) -> None:
    cmds.loadPlugin("subSession.py")
    assert cmds.menuItem(ITEM, exists=True)
    # Maya's Windows menu is MayaWindow|mainWindowMenu; the item lives under it.
    assert cmds.menuItem(f"{MAIN_MENU}|{ITEM}", exists=True)
    assert cmds.menuItem(ITEM, query=True, label=True) == "Sub-sessions"
    # Maya's own Windows items are still there: the plug-in built the menu first.
    labels = _ui.open_menu("mainWindowMenu")
    assert labels[: len(_ui.WINDOWS_MENU_ITEMS)] == _ui.WINDOWS_MENU_ITEMS
    assert labels[-1] == "Sub-sessions"
    cmds.unloadPlugin("subSession.py")
    assert not cmds.menuItem(ITEM, exists=True)
    assert "Sub-sessions" not in _ui.open_menu("mainWindowMenu")
    cmds.loadPlugin("subSession.py")  # and back, once
    assert _ui.open_menu("mainWindowMenu").count("Sub-sessions") == 1


def test_the_menu_item_docks_the_manager_once(maya: Any) -> None:
    cmds.loadPlugin("subSession.py")
    _ui.click(ITEM)
    control = subsession.maya.MANAGER_CONTROL
    assert cmds.workspaceControl(control, exists=True)
    assert cmds.workspaceControl(control, query=True, label=True) == "Sub-sessions"
    assert (
        cmds.workspaceControl(control, query=True, uiScript=True)
        == subsession.maya.MANAGER_UI_SCRIPT
    )
    first = manager_in(control)
    assert first is subsession.maya.show_manager()  # shown again, not a second one
    _ui.click(ITEM)
    assert _ui.paths("workspaceControl") == [control]
    assert manager_in(control) is first
    name = fakehost_session_name = "dockedSeen"
    s = subsession.Session(fakehost_session_name)
    try:
        uihelp.pump_until(
            lambda: name in first.session_names(), what="the docked manager to follow"
        )
    finally:
        s.close()


def test_the_control_is_restored_at_start_up_by_its_ui_script(maya: Any) -> None:
    manager = subsession.maya.show_manager()
    token = manager._listener.token
    restored = _ui.restart()  # Maya starts again with this workspace
    assert restored == [subsession.maya.MANAGER_CONTROL]
    pump()
    fresh = manager_in(subsession.maya.MANAGER_CONTROL)
    assert fresh is not manager and fresh is subsession.maya.show_manager()
    assert not subsession.unsubscribe(token)  # the old one went with its control


def test_closing_the_control_deletes_the_manager(maya: Any) -> None:
    manager = subsession.maya.show_manager()
    token = manager._listener.token
    cmds.workspaceControl(subsession.maya.MANAGER_CONTROL, edit=True, close=True)
    pump()
    assert not cmds.workspaceControl(subsession.maya.MANAGER_CONTROL, exists=True)
    assert not subsession.unsubscribe(token)
    subsession.maya.show_manager()  # a new one
    assert cmds.workspaceControl(subsession.maya.MANAGER_CONTROL, exists=True)


def test_the_fake_ui_behaves_like_maya(maya: Any) -> None:
    from maya import mel

    # The main menus exist, named by Maya's MEL globals, and are built when opened.
    assert mel.eval("$m = $gMainWindowMenu") == "mainWindowMenu"
    assert cmds.menu("mainWindowMenu", exists=True) and cmds.menu(MAIN_MENU, exists=True)
    assert cmds.menu("mainWindowMenu", query=True, numberOfItems=True) == 0
    item = cmds.menuItem("early", parent="mainWindowMenu", label="Early")
    assert item == f"{MAIN_MENU}|early"
    assert _ui.open_menu(MAIN_MENU) == ["Early"]  # not empty: buildViewMenu adds nothing
    cmds.deleteUI(item, menuItem=True)
    assert _ui.open_menu("mainWindowMenu") == _ui.WINDOWS_MENU_ITEMS
    with pytest.raises(RuntimeError, match="not found"):
        cmds.deleteUI("early", menuItem=True)
    # Creating returns full paths; items go to the last menu created; names are unique.
    tools = cmds.menu("tools", label="Tools")
    assert tools == "MayaWindow|tools"
    sub = cmds.menuItem("more", subMenu=True, label="More")
    assert sub == "MayaWindow|tools|more"
    assert cmds.menuItem(label="Deep") == "MayaWindow|tools|more|menuItem5"
    assert cmds.menu("tools", query=True, itemArray=True) == ["more"]
    with pytest.raises(RuntimeError, match="not unique"):
        cmds.menu("tools")
    with pytest.raises(RuntimeError, match="not found"):
        cmds.menuItem(parent="noSuchMenu")
    cmds.deleteUI("tools", menu=True)  # with its items
    assert not cmds.menuItem("more", exists=True) and not cmds.menu("tools", exists=True)
    # A workspace control needs its uiScript, runs it lazily (at once with
    # loadImmediately), and is top-level.
    with pytest.raises(RuntimeError, match="uiScript flag is required"):
        cmds.workspaceControl("noScript")
    ran: list[str] = []
    assert cmds.workspaceControl("ctl", uiScript=lambda: ran.append("ui")) == "ctl"
    assert ran == []
    _host.run_idle()
    assert ran == ["ui"]
    cmds.workspaceControl("now", uiScript=lambda: ran.append("now"), loadImmediately=True)
    assert ran == ["ui", "now"]
    cmds.deleteUI("now")
    cmds.workspaceControl("ctl", edit=True, close=True)  # retained: hidden
    assert cmds.workspaceControl("ctl", exists=True)
    assert not cmds.workspaceControl("ctl", query=True, visible=True)
    cmds.deleteUI("ctl")
    assert not cmds.workspaceControl("ctl", exists=True)


def test_batch_mode_has_no_menu_and_loads_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    from maya import mel

    fakehost.fresh_maya(monkeypatch, batch=True)
    try:
        cmds.loadPlugin("subSession.py")
        assert _host.state.messages == []
        with pytest.raises(RuntimeError, match="not available in batch mode"):
            cmds.menuItem(ITEM, exists=True)
        with pytest.raises(RuntimeError, match="during execution of MEL script"):
            mel.eval("$m = $gMainWindowMenu")
        assert _host.state.messages[-1] == (
            "error",
            'line 1: "$gMainWindowMenu" is an undeclared variable.',
        )
        assert _ui.ui.objects == {}  # not even Maya's main window
    finally:
        cmds.unloadPlugin("subSession.py")


def test_restore_manager_outside_a_control_says_what_to_do(maya: Any) -> None:
    with pytest.raises(RuntimeError, match=r"call subsession.maya.show_manager\(\) instead"):
        subsession.maya.restore_manager()


def test_show_manager_returns_the_panel_when_maya_loads_the_control_later(
    maya: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = subsession.maya.MANAGER_CONTROL
    # Maya building the content only when it first shows the control (a control
    # created without loadImmediately, or restored in a hidden tab).
    real = _ui.workspace_control

    def lazy(name: Any = None, **flags: Any) -> Any:
        flags.pop("loadImmediately", None)
        flags.pop("li", None)
        return real(name, **flags)

    monkeypatch.setattr(_ui, "workspace_control", lazy)
    shown = subsession.maya.show_manager()
    assert isinstance(shown, ui.SessionManager)
    assert manager_in(control) is shown
    _host.run_idle()  # Maya loads the content now: the uiScript finds the panel built
    assert manager_in(control) is shown
    assert subsession.maya.show_manager() is shown


@pytest.mark.parametrize(
    ("api", "binding"),
    [(20230000, "PySide2"), (20240200, "PySide2"), (20250000, "PySide6"), (20270000, "PySide6")],
)
def test_the_qt_binding_follows_the_maya_version(
    maya: Any, monkeypatch: pytest.MonkeyPatch, api: int, binding: str
) -> None:
    from subsession import _qt

    monkeypatch.delenv("SUBSESSION_QT", raising=False)
    _host.state.api_version = api
    # Whatever a tool imported first (a PySide6 from site-packages in Maya 2024): Maya's.
    assert "PySide6" in sys.modules or "PySide2" in sys.modules
    assert _qt.candidates() == [binding]
    monkeypatch.setenv("SUBSESSION_QT", "PySide6" if binding == "PySide2" else "PySide2")
    assert _qt.candidates() != [binding]  # an explicit choice still wins
    monkeypatch.setenv("SUBSESSION_QT", "PyQt5")
    with pytest.raises(ImportError, match="set PySide6 or PySide2"):
        _qt.candidates()


def test_outside_maya_an_imported_binding_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from subsession import _qt

    monkeypatch.delenv("SUBSESSION_QT", raising=False)
    monkeypatch.delitem(sys.modules, "maya.cmds")
    assert _qt.candidates() == [_qt.API]
