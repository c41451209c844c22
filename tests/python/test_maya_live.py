"""docs/contract.md §9.3 (Maya registrations belong to the session) and the Maya side of §7
(``-watch``, ``subsession.maya.watch``, reloads through ``executeDeferred``), against
the fake Maya host (``tests/fake_maya``: scriptJob numbers and ``kill``, UI paths,
``exists`` queries, ``deleteUI``, ``MMessage.removeCallback``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FAKE_MAYA = str(Path(__file__).resolve().parents[1] / "fake_maya")
if FAKE_MAYA not in sys.path:  # appended: pytest re-inserts its folder if not sys.path[0]
    sys.path.append(FAKE_MAYA)

import fakehost  # noqa: E402
import subsession  # noqa: E402
from fakehost import write_tree  # noqa: E402
from maya.api import OpenMaya as om  # noqa: E402
from subsession import _live, _qt  # noqa: E402, F401  (Maya loads Qt before any tool)

from maya import _host, _ui, cmds  # noqa: E402

EVENT = "SelectionChanged"
LOG = "_subsession_maya_live_log"

MENU_V = """\
    import sys
    from maya import cmds
    import maya.api.OpenMaya as om

    VERSION = {v}
    LOG = sys.__dict__.setdefault("{log}", [])

    def on_selection(*_):
        LOG.append(("job", VERSION))

    def on_event(data):
        LOG.append(("callback", VERSION))

    MENU = cmds.menu("toolAMenu", label="Tool A")
    ITEM = cmds.menuItem(label="Open", parent=MENU)
    JOB = cmds.scriptJob(event=["{event}", on_selection], protected=True)
    CALLBACK = om.MEventMessage.addEventCallback("{event}", on_event)
    CONTROL = cmds.workspaceControl("toolAControl", uiScript="pass")

    def open_window():
        return cmds.window("toolAWindow")
    """


@pytest.fixture
def maya(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    before = fakehost.open_sessions()
    host = fakehost.fresh_maya(monkeypatch)
    assert _live.install_maya()
    yield host
    fakehost.close_new_sessions(before)
    _host.reset()


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    write_tree(
        root, {"toolA/__init__.py": "", "toolA/menu.py": MENU_V.format(v=1, log=LOG, event=EVENT)}
    )
    sys.__dict__[LOG] = []
    return root


def save(path: Path, text: str) -> None:
    fakehost.touch_newer(path, text)


def test_close_removes_what_session_code_registered_and_nothing_else(maya: Any, tool: Path) -> None:
    # Global code's registrations: never touched.
    mine_menu = cmds.menu("studioMenu")
    mine_job = cmds.scriptJob(event=[EVENT, lambda: None])
    mine_cb = om.MEventMessage.addEventCallback(EVENT, lambda data: None)
    s = subsession.Session("toolA", paths=[tool])
    menu = s.import_module("toolA.menu")
    window = menu.open_window()  # created at run time, called from global code
    assert cmds.window(window, exists=True) and cmds.scriptJob(exists=menu.JOB)
    assert _host.fire(EVENT) == 4
    report = s.close()
    assert not cmds.menu("toolAMenu", exists=True)
    assert not cmds.menuItem(menu.ITEM, exists=True)
    assert not cmds.window("toolAWindow", exists=True)
    assert not cmds.workspaceControl("toolAControl", exists=True)
    assert not cmds.scriptJob(exists=menu.JOB)  # protected: killed with force
    assert menu.CALLBACK not in _host.state.callbacks
    assert cmds.menu(mine_menu, exists=True) and cmds.scriptJob(exists=mine_job)
    assert mine_cb in _host.state.callbacks
    assert f"scriptJob {menu.JOB} (toolA.menu)" in report.removed
    assert f"callback {menu.CALLBACK} (toolA.menu)" in report.removed
    assert "window toolAWindow (toolA.menu)" in report.removed
    assert "removed from Maya" in str(report)
    assert _host.fire(EVENT) == 2


def test_reload_removes_the_previous_registrations_first(maya: Any, tool: Path) -> None:
    s = subsession.Session("toolA", paths=[tool])
    menu = s.import_module("toolA.menu")
    old_job, old_cb = menu.JOB, menu.CALLBACK
    save(tool / "toolA" / "menu.py", MENU_V.format(v=2, log=LOG, event=EVENT))
    # Without the cleanup, re-creating "toolAMenu"/"toolAControl" would fail as not unique.
    assert s.reload_stale() == ["toolA.menu"]
    assert menu.VERSION == 2 and menu.JOB != old_job and menu.CALLBACK != old_cb
    assert not cmds.scriptJob(exists=old_job) and old_cb not in _host.state.callbacks
    assert len(_host.state.jobs) == 1 and len(_host.state.callbacks) == 1
    # One menu of the tool (besides Maya's own main menus), with its one item.
    assert [m for m in _ui.paths("menu") if not m.startswith("MayaWindow|main")] == [
        "MayaWindow|toolAMenu"
    ]
    assert [i for i in _ui.paths("menuItem") if i.startswith("MayaWindow|toolAMenu|")] == [
        menu.ITEM
    ]
    sys.__dict__[LOG].clear()
    _host.fire(EVENT)
    assert sys.__dict__[LOG] == [("job", 2), ("callback", 2)]


def test_a_registration_that_is_already_gone_is_skipped(maya: Any, tool: Path) -> None:
    s = subsession.Session("toolA", paths=[tool])
    menu = s.import_module("toolA.menu")
    cmds.deleteUI(menu.MENU)  # the user removed the menu (and its item) already
    cmds.scriptJob(kill=menu.JOB, force=True)
    report = s.close()
    assert not any(r.startswith(("menu ", "menuItem ", "scriptJob ")) for r in report.removed)
    assert f"callback {menu.CALLBACK} (toolA.menu)" in report.removed


def test_subsession_command_watch_flag_and_executedeferred_delivery(maya: Any, tool: Path) -> None:
    cmds.loadPlugin("subSession.py")
    cmds.subSession("toolA", create=True, path=[str(tool)], watch=True)
    assert cmds.subSession("toolA", query=True, watch=True) is True
    cmds.subSession("toolA", module="toolA.menu")
    _host.run_idle()  # Maya loads the tool's workspace control
    s = subsession.get("toolA")
    menu = s.modules["toolA.menu"]
    save(tool / "toolA" / "menu.py", MENU_V.format(v=3, log=LOG, event=EVENT))
    # The watcher queues the reload on Maya's idle queue; Maya going idle runs it.
    end = time.monotonic() + 10
    while not _host.state.deferred and time.monotonic() < end:
        time.sleep(0.02)
    assert menu.VERSION == 1
    assert _host.run_idle() >= 1
    assert menu.VERSION == 3 and len(_host.state.jobs) == 1
    cmds.subSession("toolA", edit=True, watch=False)
    assert cmds.subSession("toolA", query=True, watch=True) is False
    assert s.watching is False
    job = s.modules["toolA.menu"].JOB
    del menu
    assert cmds.subSession("toolA", close=True) is None
    assert ("info", f"subSession: toolA closed: removed scriptJob {job} (toolA.menu)") in (
        _host.state.messages
    )


def test_shelf_helper_toggles_watch(maya: Any, tool: Path) -> None:
    import subsession.maya as smaya

    subsession.Session("toolA", paths=[tool])
    assert smaya.watch("toolA") is True and subsession.get("toolA").watching
    assert smaya.watch("toolA") is False and not subsession.get("toolA").watching
    assert smaya.watch("toolA", True, interval=0.1) is True
    with pytest.raises(subsession.SessionError, match="no session named 'nope'"):
        smaya.watch("nope")


def test_fake_maya_behaves_like_maya(maya: Any) -> None:
    job = cmds.scriptJob(event=[EVENT, "pass"], protected=True)
    with pytest.raises(RuntimeError, match="protected"):
        cmds.scriptJob(kill=job)
    cmds.scriptJob(kill=job, force=True)
    with pytest.raises(RuntimeError, match="does not exist"):
        cmds.scriptJob(kill=job)
    menu = cmds.menu("m1")
    assert menu == "MayaWindow|m1" and cmds.menu("m1", exists=True)
    item = cmds.menuItem(label="x")
    assert item == "MayaWindow|m1|menuItem1"
    with pytest.raises(RuntimeError, match="not unique"):
        cmds.window("w") and cmds.window("w")
    cmds.deleteUI(menu)
    assert not cmds.menuItem(item, exists=True)
    with pytest.raises(RuntimeError, match="not found"):
        cmds.deleteUI(menu)
    with pytest.raises(RuntimeError, match="does not exist"):
        om.MMessage.removeCallback(424242)
    with pytest.raises(TypeError, match="immutable"):
        type.__setattr__  # noqa: B018
        om.MEventMessage.__subsession_class__.addEventCallback = None  # type: ignore[union-attr]
    assert os.environ["MAYA_PLUG_IN_PATH"]


# -- every callback API: _OpenMaya_py2, API 1.0, names bound before install -------------------

CALLBACKS = """\
    import maya.OpenMaya as om1
    from maya.api._OpenMaya_py2 import MEventMessage
    from maya.OpenMaya import MSceneMessage as Scene1

    def on_event(data):
        pass

    PY2 = MEventMessage.addEventCallback("{event}", on_event)
    API1 = om1.MEventMessage.addEventCallback("{event}", on_event)
    SCENE1 = Scene1.addCallback(Scene1.kAfterOpen, on_event)
    """


def test_callbacks_through_openmaya_py2_and_api1_are_recorded(maya: Any, tmp_path: Path) -> None:
    import maya.OpenMaya as om1

    root = write_tree(tmp_path / "lib", {"toolB.py": CALLBACKS.format(event=EVENT)})
    mine = om1.MEventMessage.addEventCallback(EVENT, lambda data: None)  # global code's
    s = subsession.Session("toolB", paths=[root])
    tool = s.import_module("toolB")
    assert isinstance(tool.PY2, int) and isinstance(tool.API1, om1.MCallbackId)
    assert _host.fire(EVENT) == 3
    report = s.close()
    for ident in (tool.PY2, tool.API1, tool.SCENE1):
        assert ident not in _host.state.callbacks
    assert mine in _host.state.callbacks
    assert f"callback {tool.PY2} (toolB)" in report.removed
    api1 = [r for r in report.removed if r.startswith("callback MCallbackId@")]
    assert len(api1) == 2 and all(r.endswith("(toolB)") for r in api1)
    with pytest.raises(RuntimeError, match="does not exist"):  # removed for real
        om1.MMessage.removeCallback(tool.API1)
    om1.MMessage.removeCallback(mine)


def test_a_name_imported_before_install_is_recorded_too(
    maya: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maya.api import _OpenMaya_py2

    real = _live._unwrap(om.MSceneMessage)
    # As before install_maya() ran: the modules hold Maya's class itself.
    monkeypatch.setattr(om, "MSceneMessage", real)
    monkeypatch.setattr(_OpenMaya_py2, "MSceneMessage", real)
    root = write_tree(
        tmp_path / "lib",
        {
            "toolC.py": """\
                from maya.api.OpenMaya import MSceneMessage

                def register():
                    return MSceneMessage.addCallback(MSceneMessage.kAfterOpen, lambda d: None)
                """
        },
    )
    s = subsession.Session("toolC", paths=[root])
    tool = s.import_module("toolC")
    assert tool.MSceneMessage is real
    assert _live.install_maya()
    ident = s.run(tool.register)
    report = s.close()
    assert ident not in _host.state.callbacks
    assert f"callback {ident} (toolC)" in report.removed


def test_isinstance_and_issubclass_work_with_recorded_classes(maya: Any) -> None:
    from maya.api import _OpenMaya_py2

    proxy = om.MSceneMessage
    real = _live._unwrap(proxy)
    assert real is not proxy and _OpenMaya_py2.MSceneMessage is proxy  # one proxy a class
    assert isinstance(real(), proxy) and not isinstance(object(), proxy)
    assert issubclass(proxy, om.MMessage) and issubclass(real, om.MMessage)
    assert issubclass(proxy, _live._unwrap(om.MMessage)) and not issubclass(int, proxy)
    assert isinstance(real(), (int, proxy))

    class Derived(proxy):  # type: ignore[misc, valid-type]
        pass

    assert issubclass(Derived, proxy) and issubclass(Derived, real)
