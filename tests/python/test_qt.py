"""Real Qt (offscreen): reload on save through the Qt event loop (docs/contract.md §7), and
the unload report for what Qt holds from C++ (issue 13, item 5).

Runs with the binding of the Maya that uses this Python, through subsession's Qt layer
(``subsession._qt``): PySide2 (Maya 2023/2024, Python 3.9/3.10) or PySide6 (2025+);
``scripts/test`` installs the right one into every venv it makes. The tool code the
tests load imports that same binding (:data:`QT`), as a tool in that Maya would.
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import subsession
from conftest import PkgFactory

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from subsession._qt import API, QtCore, QtWidgets  # noqa: E402  (PySide6 or PySide2)

QT = API  # the binding's package name, for the tool code below

LOG = "_subsession_qt_log"


@pytest.fixture(scope="module")
def app() -> Any:
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


@pytest.fixture(autouse=True)
def not_in_maya(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Qt application outside Maya (the fake Maya of other tests may be imported)."""
    from subsession import _watch

    monkeypatch.setattr(_watch, "_in_interactive_maya", lambda: False)


def save(path: Path, source: str) -> None:
    old = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    ns = max(old + 2_000_000_000, time.time_ns())
    os.utime(path, ns=(ns, ns))


def run_loop_until(app: Any, done: Any, timeout: float = 10.0) -> None:
    """Run the Qt event loop (the only thing that delivers reloads here) until done()."""
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.005)
    assert done(), f"not done after {timeout}s of event loop"


@pytest.fixture
def tool(pkgs: PkgFactory, tmp_path: Path) -> tuple[str, Path]:
    name = pkgs.unique("qt")
    root = tmp_path / "src"
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text("", encoding="utf-8")
    return name, root


UI = """\
    import sys, threading
    from {qt} import QtWidgets

    def on_click():
        sys.__dict__.setdefault("{log}", []).append(("click", "{version}"))

    def __after_reload__(state):
        sys.__dict__.setdefault("{log}", []).append(
            ("reloaded on", threading.current_thread() is threading.main_thread()))

    def make_button():
        button = QtWidgets.QPushButton("go")
        button.clicked.connect(on_click)
        return button
    """


def test_watch_delivers_reloads_through_the_qt_event_loop(
    app: Any, tool: tuple[str, Path], new_session: Any
) -> None:
    name, root = tool
    sys.__dict__[LOG] = []
    save(root / name / "ui.py", UI.format(log=LOG, version="v1", qt=QT))
    s = new_session(paths=[root])
    ui = s.import_module(f"{name}.ui")
    button = ui.make_button()
    button.click()
    s.watch(interval=0.05)
    try:
        save(root / name / "ui.py", UI.format(log=LOG, version="v2", qt=QT))
        # Nobody calls process_pending: only the event loop delivers.
        run_loop_until(app, lambda: ("reloaded on", True) in sys.__dict__[LOG])
        button.click()  # the connection made before the save runs the new code
        assert sys.__dict__[LOG] == [("click", "v1"), ("reloaded on", True), ("click", "v2")]
        assert subsession.process_pending() == []
    finally:
        s.unwatch()
        button.deleteLater()


def _close_report(s: Any) -> str:
    report = s.close()
    text = str(report)
    assert report, "expected a leak"
    return text


def test_report_names_a_qt_connection_to_a_session_function(
    app: Any, tool: tuple[str, Path]
) -> None:
    name, root = tool
    save(root / name / "tool.py", "def on_click():\n    return 1\n")
    s = subsession.Session(paths=[root])
    tool_mod = s.import_module(f"{name}.tool")
    host_button = QtWidgets.QPushButton("host")  # the host's, not the session's
    host_button.clicked.connect(tool_mod.on_click)
    del tool_mod
    try:
        text = _close_report(s)
        assert f"{name}.tool" in text
        assert "held from C code, which this report cannot follow" in text, text
        assert f"held by session module {name}.tool" not in text, text
    finally:
        host_button.deleteLater()


def test_report_for_a_window_kept_in_the_tools_global(app: Any, tool: tuple[str, Path]) -> None:
    name, root = tool
    save(
        root / name / "win.py",
        f"""\
        from {QT} import QtWidgets

        class ToolWindow(QtWidgets.QWidget):
            def __init__(self):
                super().__init__()
                self.button = QtWidgets.QPushButton("ok", self)
                self.button.clicked.connect(self.on_ok)

            def on_ok(self):
                return "ok"

        _window = None

        def show():
            global _window
            _window = ToolWindow()
            _window.show()
        """,
    )
    s = subsession.Session(paths=[root])
    s.import_module(f"{name}.win").show()
    text = _close_report(s)
    try:
        holders = text.split(f"{name}.win:", 1)[-1]
        assert f"held by session module {name}.win" not in holders, text
        # Shiboken holds a live wrapper's class from C: the module's own global makes
        # a cycle the collector never frees, and the report names that global.
        assert "held in its own module as '_window'" in holders, text
        assert "C code" not in holders, text
    finally:
        for w in app.topLevelWidgets():
            if type(w).__name__ == "ToolWindow":
                w.close()
                w.deleteLater()


def test_report_for_a_window_kept_in_a_main_global_names_main(
    app: Any, tool: tuple[str, Path]
) -> None:
    """Issue 20 item 2: the Script Editor case. A window of the tool kept in a
    ``__main__`` global is reported as held there, not as held from C code (shiboken
    keeps one reference to a class per live wrapper, which the instance explains)."""
    name, root = tool
    save(
        root / name / "panel.py",
        f"""\
        from {QT} import QtWidgets

        class Panel(QtWidgets.QWidget):
            def label(self):
                return "panel"
        """,
    )
    s = subsession.Session(paths=[root])
    main = sys.modules["__main__"]
    main.__dict__["tool_window"] = s.import_module(f"{name}.panel").Panel()
    main.__dict__["tool_window"].show()
    try:
        report = s.close()
        texts = report.leaks.get(f"{name}.panel", [])
        assert any("held in module __main__ as 'tool_window'" in t for t in texts), str(report)
        assert not any("C code" in t for t in texts), str(report)
    finally:
        window = main.__dict__.pop("tool_window")
        window.close()
        window.deleteLater()


def test_report_for_a_window_parented_to_a_host_main_window(
    app: Any, tool: tuple[str, Path]
) -> None:
    name, root = tool
    save(
        root / name / "dock.py",
        f"""\
        from {QT} import QtWidgets

        class ToolPanel(QtWidgets.QWidget):
            def label(self):
                return "panel"

        def show(parent):
            panel = ToolPanel(parent)
            panel.show()
        """,
    )
    host_main = QtWidgets.QMainWindow()  # Maya's main window
    s = subsession.Session(paths=[root])
    s.import_module(f"{name}.dock").show(host_main)
    try:
        text = _close_report(s)
        assert f"{name}.dock" in text
        assert f"held by session module {name}.dock" not in text, text
        if API == "PySide6":
            # The report follows the instance (an instance holds its class) to its Qt
            # parent.
            assert "inside an instance of ToolPanel owned by a Qt object (QMainWindow)" in text, (
                text
            )
        else:
            # shiboken2 hides the wrapper's reference to its class from the collector
            # (gc.get_referents(panel) lacks ToolPanel); the report finds the instance
            # by its type, and its parent's ownership may live in C only.
            assert (
                "inside an instance of ToolPanel owned by a Qt object (QMainWindow)" in text
                or "ToolPanel held from C code, which this report cannot follow" in text
            ), text
    finally:
        host_main.deleteLater()


def test_the_watcher_thread_never_runs_module_code(
    app: Any, tool: tuple[str, Path], new_session: Any
) -> None:
    """Module code (and hooks) run on the main thread only, whatever the delivery."""
    name, root = tool
    key = f"{LOG}_threads"
    sys.__dict__[key] = []
    src = (
        "import sys, threading\n"
        "sys.__dict__['{k}'].append(threading.current_thread().name)\nV={v}\n"
    )
    save(root / name / "m.py", src.format(k=key, v=1))
    s = new_session(paths=[root])
    s.import_module(f"{name}.m")
    s.watch(interval=0.02)
    try:
        for v in (2, 3):
            save(root / name / "m.py", src.format(k=key, v=v))
            run_loop_until(app, lambda v=v: s.modules[f"{name}.m"].V == v)
        assert set(sys.__dict__[key]) == {threading.main_thread().name}
    finally:
        s.unwatch()


def test_the_watcher_thread_never_wraps_its_own_qthread(
    app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PySide2 5.15 on Python 3.9 aborted at exit 2 runs in 10 ("terminate called without
    # an active exception"): the watcher thread had asked Qt for its own QThread, and
    # that wrapper's clean-up, run as the thread ends, takes the GIL while the
    # interpreter finalises. The waker is built on the main thread by watch(), and no
    # thread but the main one asks Qt for a QThread.
    from subsession import _watch

    asked: list[str] = []
    real_thread = QtCore.QObject.thread

    def thread(obj: Any) -> Any:
        asked.append(threading.current_thread().name)
        return real_thread(obj)

    monkeypatch.setattr(_watch, "_waker", None)
    monkeypatch.setattr(QtCore.QObject, "thread", thread)
    (tmp_path / "wakemod.py").write_text("V = 1\n", encoding="utf-8")
    session = subsession.Session("qtWaker", paths=[str(tmp_path)])
    try:
        module = session.import_module("wakemod")
        session.watch(interval=0.02)
        assert _watch._waker is not None  # built at once, here
        save(tmp_path / "wakemod.py", "V = 2\n")
        end = time.monotonic() + 10
        while module.V != 2 and time.monotonic() < end:
            QtWidgets.QApplication.processEvents()
            time.sleep(0.01)
        assert module.V == 2
    finally:
        session.close()
    assert [name for name in asked if name != threading.main_thread().name] == []
