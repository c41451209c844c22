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


@pytest.fixture
def maya(monkeypatch: pytest.MonkeyPatch) -> Any:
    uihelp.app()
    host = fakehost.fresh_maya(monkeypatch)
    yield host
    for name in list(_ui.ui.controls):
        _ui.close_control(name)
    if "subSession" in _host.state.plugins:
        cmds.unloadPlugin("subSession.py")
    pump()


def manager_in(control: str) -> ui.SessionManager:
    widget = _ui.ui.controls[control].widget
    found = widget.findChildren(ui.SessionManager)
    assert len(found) == 1, found
    return found[0]


def test_the_plugin_adds_windows_sub_sessions_and_removes_it(maya: Any) -> None:
    cmds.loadPlugin("subSession.py")
    assert cmds.menuItem(ITEM, exists=True)
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
    assert list(_ui.ui.controls) == [control]
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


def test_batch_mode_has_no_menu_and_loads_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    fakehost.fresh_maya(monkeypatch, batch=True)
    try:
        cmds.loadPlugin("subSession.py")
        assert _host.state.messages == []
        with pytest.raises(RuntimeError, match="not available in batch mode"):
            cmds.menuItem(ITEM, exists=True)
    finally:
        cmds.unloadPlugin("subSession.py")


def test_restore_manager_outside_a_control_says_what_to_do(maya: Any) -> None:
    with pytest.raises(RuntimeError, match=r"call subsession.maya.show_manager\(\) instead"):
        subsession.maya.restore_manager()
