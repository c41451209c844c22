"""The session manager (``subsession.ui``, docs/contract.md §9.4) with real Qt, offscreen: it lists
sessions and modules, follows changes made elsewhere (Python, another thread, the
``subSession`` command, the C ABI), reloads and closes the selected session, shows the
leak report with a force-close, logs, and renders."""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import subsession
import uihelp
from conftest import unique_name, write_files
from subsession import (
    _core,
    ui,  # noqa: E402  (after uihelp chose the platform)
)
from uihelp import QtCore, pump, pump_until

FAKE_MAYA = str(Path(__file__).resolve().parents[1] / "fake_maya")


@pytest.fixture(autouse=True)
def _app() -> None:
    uihelp.app()


@pytest.fixture
def manager() -> Iterator[ui.SessionManager]:
    window = ui.SessionManager(stale_interval=0)
    window.show()
    pump()
    yield window
    window.close()
    window.deleteLater()
    pump()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)


def tool_tree(root: Path, pkg: str, version: int = 1) -> Path:
    write_files(
        root,
        {
            f"{pkg}/__init__.py": "from . import widgets\n",
            f"{pkg}/widgets.py": (
                f"VERSION = {version}\n"
                "import sys\n"
                "sys.__dict__.setdefault('ui_test_runs', []).append(__name__)\n"
                "class Button:\n"
                f"    def label(self):\n        return 'v{version}'\n"
                "def make():\n    return Button()\n"
            ),
        },
    )
    return root


def edit(path: Path, text: str) -> None:
    stat = path.stat()
    path.write_text(text, encoding="utf-8")
    import os

    os.utime(path, (stat.st_atime + 10, stat.st_mtime + 10))


def widgets_source(version: int) -> str:
    return (
        f"VERSION = {version}\n"
        "class Button:\n"
        f"    def label(self):\n        return 'v{version}'\n"
        "def make():\n    return Button()\n"
    )


def cell(model: Any, row: int, column: int) -> str:
    return str(model.data(model.index(row, column)))


def row_of(window: ui.SessionManager, name: str) -> int:
    return window.session_names().index(name)


# -- listing ---------------------------------------------------------------------------------


def test_lists_sessions_with_their_settings_and_modules(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    pkg = unique_name("uilist")
    name = unique_name("toolList")
    s = new_session(
        name,
        paths=[str(tool_tree(tmp_path, pkg))],
        env={"TOOL_MODE": "dev"},
        keep_global=["studio_*"],
    )
    s.import_module(pkg)
    pump_until(lambda: name in manager.session_names(), what="the new session")
    pump(0.2)  # the coalesced module count
    row = row_of(manager, name)
    model = manager.sessions_model
    assert cell(model, row, 0) == name
    assert cell(model, row, 1) == "2"
    assert cell(model, row, 4) == str(tmp_path)
    assert cell(model, row, 5) == "TOOL_MODE=dev"
    assert cell(model, row, 6) == "studio_*"
    manager.select_session(name)
    assert manager.module_names() == [pkg, f"{pkg}.widgets"]
    assert cell(manager.modules_model, 1, 3) == str(tmp_path / pkg / "widgets.py")
    assert manager.selected_session() is s
    manager.filter_edit.setText("WIDG")  # case-insensitive filter on the name
    assert manager.module_names() == [f"{pkg}.widgets"]
    manager.filter_edit.clear()
    manager.modules_view.sortByColumn(0, QtCore.Qt.SortOrder.DescendingOrder)
    assert manager.module_names() == [f"{pkg}.widgets", pkg]


def test_follows_sessions_created_and_closed_elsewhere(
    manager: ui.SessionManager, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Python, on this thread
    py_name = unique_name("byPython")
    s = subsession.Session(py_name)
    pump_until(lambda: py_name in manager.session_names(), what="a Python session")
    s.close()
    pump_until(lambda: py_name not in manager.session_names(), what="its close")

    # another thread
    th_name = unique_name("byThread")
    t = threading.Thread(target=lambda: subsession.Session(th_name))
    t.start()
    t.join()
    pump_until(lambda: th_name in manager.session_names(), what="a session made on a thread")
    threading.Thread(target=lambda: subsession.get(th_name).close()).start()
    pump_until(lambda: th_name not in manager.session_names(), what="its close on a thread")

    # the subSession command (fake Maya)
    if FAKE_MAYA not in sys.path:
        sys.path.append(FAKE_MAYA)
    import fakehost

    from maya import cmds

    fakehost.fresh_maya(monkeypatch, batch=True)
    cmds.loadPlugin("subSession.py")
    cmd_name = unique_name("byCommand")
    cmds.subSession(cmd_name, create=True)
    pump_until(
        lambda: cmd_name in manager.session_names(), what="a session made by subSession -create"
    )
    cmds.subSession(cmd_name, close=True)
    pump_until(lambda: cmd_name not in manager.session_names(), what="subSession -close")
    cmds.unloadPlugin("subSession.py")

    # the C ABI
    lib = ctypes.PyDLL(_core.__file__)
    lib.subsession_create.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.subsession_close.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    abi_name = unique_name("byABI")
    assert lib.subsession_create(abi_name.encode(), json.dumps({}).encode()) == 0
    pump_until(lambda: abi_name in manager.session_names(), what="a session made through the C ABI")
    assert lib.subsession_close(abi_name.encode(), None) == 0
    pump_until(lambda: abi_name not in manager.session_names(), what="subsession_close")


def test_module_list_follows_imports_and_reloads(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    pkg = unique_name("uifollow")
    name = unique_name("toolFollow")
    s = new_session(name, paths=[str(tool_tree(tmp_path, pkg))])
    pump_until(lambda: name in manager.session_names())
    manager.select_session(name)
    assert manager.module_names() == []
    s.import_module(pkg)  # elsewhere: the manager is told by the core
    pump_until(lambda: manager.module_names() == [pkg, f"{pkg}.widgets"], what="imported modules")
    s.reload_all()
    pump_until(lambda: cell(manager.modules_model, 1, 2) != "—", what="the last reload time")
    assert time.strftime("%H:") in cell(manager.modules_model, 1, 2)


# -- stale checks ----------------------------------------------------------------------------


def test_stale_checks_run_on_a_worker_thread(
    manager: ui.SessionManager,
    new_session: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pkg = unique_name("uistale")
    name = unique_name("toolStale")
    s = new_session(name, paths=[str(tool_tree(tmp_path, pkg))])
    s.import_module(pkg)
    pump_until(lambda: name in manager.session_names())
    manager.select_session(name)
    edit(tmp_path / pkg / "widgets.py", widgets_source(2))
    threads: list[str] = []
    original = subsession.Session.stale

    def spy(self: subsession.Session) -> list[str]:
        threads.append(threading.current_thread().name)
        time.sleep(0.3)  # a slow network share: the UI must go on meanwhile
        return original(self)

    monkeypatch.setattr(subsession.Session, "stale", spy)
    started = time.perf_counter()
    assert manager.check_stale()
    assert time.perf_counter() - started < 0.1  # returned at once
    assert not manager.check_stale()  # one check at a time
    assert manager.progress.isVisibleTo(manager)
    pump_until(
        lambda: cell(manager.sessions_model, row_of(manager, name), 2) == "1",
        what="the stale count",
    )
    assert threads and all(t == "subsession-ui-stale" for t in threads)
    assert manager.module_names() == [pkg, f"{pkg}.widgets"]
    assert cell(manager.modules_model, 1, 1) == "stale"
    assert cell(manager.modules_model, 0, 1) == ""
    assert not manager.progress.isVisibleTo(manager)
    assert "stale check" in manager.status.text()


# -- actions on the selection ------------------------------------------------------------------


def test_reload_acts_on_the_selected_session_only(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    a_root, b_root = tmp_path / "a", tmp_path / "b"
    pkg = unique_name("uireload")
    a = new_session(unique_name("toolA"), paths=[str(tool_tree(a_root, pkg))])
    b = new_session(unique_name("toolB"), paths=[str(tool_tree(b_root, pkg))])
    wa, wb = a.import_module(f"{pkg}.widgets"), b.import_module(f"{pkg}.widgets")
    button_b = wb.make()
    edit(a_root / pkg / "widgets.py", widgets_source(2))
    edit(b_root / pkg / "widgets.py", widgets_source(2))
    pump_until(lambda: b.name in manager.session_names())
    manager.select_session(b.name)
    manager.reload_button.click()
    assert (wa.VERSION, wb.VERSION) == (1, 2)  # only the selection
    assert button_b.label() == "v1"  # a plain reload leaves old objects alone
    assert "reload stale: 2 modules" in manager.status.text()  # the importer too

    button_b = wb.make()  # an instance of the current class
    edit(b_root / pkg / "widgets.py", widgets_source(3))
    manager.deep_button.click()
    assert button_b.label() == "v3"  # deep: the live instance runs the new code
    assert wa.VERSION == 1

    manager.select_session(a.name)
    manager.all_button.click()
    assert wa.VERSION == 2
    assert "reload all: 2 modules" in manager.status.text()


def test_a_failing_reload_is_shown_and_keeps_the_old_code(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    pkg = unique_name("uifail")
    s = new_session(unique_name("toolFail"), paths=[str(tool_tree(tmp_path, pkg))])
    w = s.import_module(f"{pkg}.widgets")
    edit(tmp_path / pkg / "widgets.py", "VERSION = (\n")
    pump_until(lambda: s.name in manager.session_names())
    manager.select_session(s.name)
    assert manager.reload_stale() == []
    assert w.VERSION == 1
    text = manager.status.text()
    assert "reload failed, previous version kept" in text and "widgets.py" in text


def test_a_failing_reload_names_the_users_line_in_status_and_log(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    """issue 20 (3): the user's file and line, not json/decoder.py, in the status line;
    the log pane has the session's frames under it."""
    pkg = unique_name("uiwhere")
    s = new_session(unique_name("toolWhere"), paths=[str(tool_tree(tmp_path, pkg))])
    s.import_module(f"{pkg}.widgets")
    path = tmp_path / pkg / "widgets.py"
    edit(path, "import json\n\nVERSION = json.loads('{bad')\n")
    pump_until(lambda: s.name in manager.session_names())
    manager.select_session(s.name)
    assert manager.reload_stale() == []
    status = manager.status.text()
    assert f'File "{path}", line 3: JSONDecodeError' in status and "decoder.py" not in status
    pump_until(lambda: "VERSION = json.loads" in manager.log_text(), what="the log pane")
    assert f'  File "{path}", line 3, in <module>' in manager.log_text()


def test_close_asks_then_closes_the_selected_session(
    manager: ui.SessionManager, new_session: Callable[..., Any]
) -> None:
    keep, drop = new_session(unique_name("keep")), new_session(unique_name("drop"))
    pump_until(lambda: drop.name in manager.session_names())
    asked: list[str] = []
    manager.confirm_close = lambda s: asked.append(s.name) is not None  # says no
    manager.select_session(drop.name)
    manager.close_button.click()
    assert asked == [drop.name] and not drop.closed
    manager.confirm_close = lambda s: True
    manager.close_button.click()
    assert drop.closed and not keep.closed
    pump_until(lambda: drop.name not in manager.session_names(), what="the closed row to go")
    assert "none alive" in manager.status.text()
    assert manager.leak_dialog is None


def test_the_manager_closes_cleanly_what_close_closes_cleanly(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    """Issue 20 item 2: Close… must not itself hold the session's modules (a loop
    variable over them left in its frame did, and the report blamed C code)."""
    pkg = unique_name("uiclean")
    s = new_session(unique_name("toolClean"), paths=[str(tool_tree(tmp_path, pkg))])
    s.import_module(f"{pkg}.widgets")
    assert len(s.modules) >= 2
    pump_until(lambda: s.name in manager.session_names())
    manager.select_session(s.name)
    manager.confirm_close = lambda s: True
    report = manager.close_selected()
    assert report is not None and s.closed
    assert not report, str(report)
    assert manager.leak_dialog is None
    assert f"{_plural(len(report.unloaded))} unloaded, none alive" in manager.status.text()


def _plural(n: int) -> str:
    return f"{n} module{'s' * (n != 1)}"


def test_a_leaking_close_shows_the_report_with_holders_and_force_closes(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    pkg = unique_name("uileak")
    s = new_session(unique_name("toolLeak"), paths=[str(tool_tree(tmp_path, pkg))])
    w = s.import_module(f"{pkg}.widgets")
    holder = type(sys)("ui_leak_holder")
    holder.make = w.make  # a global of another module keeps the module alive
    sys.modules["ui_leak_holder"] = holder
    try:
        pump_until(lambda: s.name in manager.session_names())
        manager.select_session(s.name)
        manager.confirm_close = lambda s: True
        report = manager.close_selected()
        assert report and f"{pkg}.widgets" in report.leaks
        dialog = manager.leak_dialog
        assert dialog is not None and dialog.isVisible()
        top = [dialog.tree.topLevelItem(i).text(0) for i in range(dialog.tree.topLevelItemCount())]
        assert f"{pkg}.widgets" in top
        item = dialog.tree.topLevelItem(top.index(f"{pkg}.widgets"))
        holders = [item.child(i).text(0) for i in range(item.childCount())]
        assert any("ui_leak_holder" in h for h in holders), holders
        assert holder.make().label() == "v1"  # still works before the force-close
        dialog.force_button.click()
        assert not dialog.force_button.isEnabled()
        with pytest.raises(NameError):
            holder.make()  # its globals were cleared
    finally:
        del sys.modules["ui_leak_holder"]
        gc.collect()


def test_reveal_file_and_config(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    pkg = unique_name("uireveal")
    tool_tree(tmp_path / "lib", pkg)
    name = unique_name("toolReveal")
    config = tmp_path / "studio.toml"
    config.write_text(f'[sessions.{name}]\npaths = ["lib"]\n', encoding="utf-8")
    (s,) = subsession.load_config(str(config))
    try:
        s.import_module(pkg)
        opened: list[str] = []
        manager.reveal = opened.append
        pump_until(lambda: name in manager.session_names())
        pump(0.2)
        manager.select_session(name)
        manager.file_button.click()  # no module selected: the session's first path
        manager.select_module(f"{pkg}.widgets")
        manager.file_button.click()
        manager.config_button.click()
        assert opened == [str(tmp_path / "lib"), str(tmp_path / "lib" / pkg), str(tmp_path)]
        other = new_session(unique_name("noConfig"))
        pump_until(lambda: other.name in manager.session_names())
        manager.select_session(other.name)
        assert manager.reveal_config() is None
        assert "was not defined by a config file" in manager.status.text()
    finally:
        s.close()


def test_watch_toggle_watches_the_selected_session(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    a = new_session(unique_name("toolA"), paths=[str(tmp_path)])
    b = new_session(unique_name("toolB"), paths=[str(tmp_path)])
    pump_until(lambda: b.name in manager.session_names())
    manager.select_session(a.name)
    assert manager.watch_button.isEnabled() and not manager.watch_button.isChecked()
    manager.watch_button.click()
    pump()
    assert a.watching and not b.watching  # only the selection
    assert cell(manager.sessions_model, row_of(manager, a.name), 3) == "yes"
    manager.watch_button.click()
    pump()
    assert not a.watching
    assert cell(manager.sessions_model, row_of(manager, a.name), 3) == "no"


def test_log_pane_shows_the_subsession_logger(
    manager: ui.SessionManager, new_session: Callable[..., Any]
) -> None:
    logger = logging.getLogger("subsession")
    before = logger.level
    try:
        manager.set_log_level("Info")
        s = new_session(unique_name("logged"))
        s.close()  # the core logs "closed session ..." at INFO, from Rust
        logging.getLogger("subsession.maya").warning("a warning from subsession.maya")
        pump_until(
            lambda: "a warning from subsession.maya" in manager.log_text(), what="the log line"
        )
        assert f"closed session {s.name}" in manager.log_text()
        with pytest.raises(ValueError, match="use one of Warnings, Info, Debug"):
            manager.set_log_level("Verbose")
    finally:
        logger.setLevel(before)
        _core.reset_log_cache()


def test_a_deleted_manager_unsubscribes_and_unhooks_the_logger(
    new_session: Callable[..., Any],
) -> None:
    window = ui.SessionManager(stale_interval=0)
    token = window._listener.token
    handler = window._handler
    window.deleteLater()
    pump()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    pump()
    assert handler not in logging.getLogger("subsession").handlers
    assert not subsession.unsubscribe(token)  # already gone
    new_session(unique_name("afterDelete")).close()  # nobody left to call: no warning


def test_show_opens_one_window() -> None:
    first = ui.show()
    try:
        assert ui.show() is first and first.isVisible()
        assert first.windowTitle() == "Sub-sessions"
    finally:
        first.close()
        pump()


def test_it_renders(
    manager: ui.SessionManager, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    pkg = unique_name("uirender")
    s = new_session(unique_name("toolRender"), paths=[str(tool_tree(tmp_path, pkg))])
    s.import_module(pkg)
    pump_until(lambda: s.name in manager.session_names())
    manager.select_session(s.name)
    pump(0.1)
    image = manager.grab().toImage()
    assert (image.width(), image.height()) == (manager.width(), manager.height())
    background, colours = uihelp.blank_fraction(image)
    assert background < 0.9, f"{background:.0%} of the picture is one colour"
    assert colours >= 20, f"only {colours} colours: nothing drawn"
    # the tables really paint rows: the sessions view differs from an empty one
    before = manager.sessions_view.grab().toImage()
    manager.sessions_model.set_rows([], [])
    after = manager.sessions_view.grab().toImage()
    assert before != after
