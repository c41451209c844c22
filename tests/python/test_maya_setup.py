"""``subsession.maya``: ``setup()`` for userSetup.py with a layered studio config, and
the one-line ``run()`` helper for shelf buttons and workspace controls
(docs/contract.md §9.2, docs/config.md)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest

FAKE_MAYA = str(Path(__file__).resolve().parents[1] / "fake_maya")
if FAKE_MAYA not in sys.path:  # appended: pytest re-inserts its folder if not sys.path[0]
    sys.path.append(FAKE_MAYA)

import fakehost  # noqa: E402
import subsession  # noqa: E402
import subsession.maya  # noqa: E402

from maya import _host, cmds  # noqa: E402

UI = """\
import libx

def show(greeting="shows"):
    return f"toolA {greeting} libx " + libx.VERSION
"""


@pytest.fixture
def maya(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh fake Maya (interactive, plug-in not loaded) and no studio config."""
    before = fakehost.open_sessions()
    monkeypatch.delenv("SUBSESSION_CONFIG", raising=False)
    host = fakehost.fresh_maya(monkeypatch)
    yield host
    fakehost.close_new_sessions(before)
    _host.reset()


@pytest.fixture
def layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """studio.toml -> show/show.toml -> user/user.json, on SUBSESSION_CONFIG."""
    monkeypatch.setenv("SUBSESSION_TEST_ROOT", str(tmp_path))
    fakehost.write_tree(
        tmp_path,
        {
            "v1/libx/__init__.py": "VERSION = '1'\n",
            "v2/libx/__init__.py": "VERSION = '2'\n",
            "tools/toolA/__init__.py": "",
            "tools/toolA/ui.py": UI,
            "studio.toml": """\
                # studio-wide: every session shares six with Maya's interpreter
                [defaults]
                keep_global = ["six"]

                [sessions.toolA]
                paths = ["v1", "tools"]

                [sessions.toolB]
                paths = ["v1"]
                """,
            "show/show.toml": """\
                # the show moves toolA to libx 2
                [sessions.toolA]
                paths = ["../v2", "../tools"]
                """,
            "user/user.json": """\
                {"sessions": {"toolC": {"paths": ["${SUBSESSION_TEST_ROOT}/v2"],
                                        "inherit_env": false}}}
                """,
        },
    )
    files = [
        tmp_path / "studio.toml",
        tmp_path / "show" / "show.toml",
        tmp_path / "user" / "user.json",
    ]
    monkeypatch.setenv("SUBSESSION_CONFIG", os.pathsep.join(map(str, files)))
    return files


def loaded() -> bool:
    return bool(cmds.pluginInfo("subSession", query=True, loaded=True))


def names() -> list[str]:
    return sorted(s.name for s in subsession.sessions() if s.name)


def test_setup_creates_sessions_now_and_loads_the_plugin_when_idle(
    maya: Any, layers: list[Path]
) -> None:
    root = layers[0].parent
    subsession.maya.setup()
    # The sessions exist at once: a workspace control Maya restores at start-up runs
    # its uiScript before any deferred code, and finds its session.
    assert {"toolA", "toolB", "toolC"} <= set(names())
    ui_script = "import subsession.maya; r = subsession.maya.run('toolA', 'toolA.ui', 'show')"
    namespace: dict[str, Any] = {}
    exec(ui_script, namespace)
    assert namespace["r"] == "toolA shows libx 2"
    assert not loaded()  # the plug-in waits for Maya to be idle
    assert len(_host.state.deferred) == 1
    assert _host.run_idle() == 1
    assert loaded()
    assert {"toolA", "toolB", "toolC"} <= set(names())
    assert subsession.get("toolA").paths == [str(root / "v2"), str(root / "tools")]  # show wins
    assert subsession.get("toolB").paths == [str(root / "v1")]  # studio only
    assert "six" in subsession.get("toolB").keep_global  # studio defaults
    assert subsession.get("toolC").paths == [str(root / "v2")]  # user, ${VAR} expanded
    assert subsession.get("toolC").inherit_env is False
    assert subsession.maya.run("toolA", "toolA.ui", "show") == "toolA shows libx 2"
    assert cmds.subSession("toolA", q=True, modules=True) == ["libx", "toolA", "toolA.ui"]
    assert [m for m in _host.state.messages if m[0] == "error"] == []


def test_setup_is_immediate_in_batch_mode(
    maya: Any, layers: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fakehost.fresh_maya(monkeypatch, batch=True)
    deferred: list[Any] = []
    monkeypatch.setattr("maya.utils.executeDeferred", deferred.append)
    subsession.maya.setup()
    assert deferred == []  # not even queued
    assert loaded() and {"toolA", "toolB", "toolC"} <= set(names())


def test_setup_deferred_false_and_explicit_config(maya: Any, layers: list[Path]) -> None:
    subsession.maya.setup(str(layers[0]), deferred=False)
    assert loaded() and {"toolA", "toolB"} <= set(names()) and "toolC" not in names()
    assert subsession.get("toolA").paths[0].endswith("v1")


def test_setup_config_list_and_no_plugin(maya: Any, layers: list[Path]) -> None:
    subsession.maya.setup([layers[0], layers[1]], plugin=False)
    _host.run_idle()
    assert not loaded()
    assert subsession.get("toolA").paths[0].endswith("v2")
    assert "toolC" not in names()


def test_setup_without_config_only_loads_the_plugin(maya: Any) -> None:
    subsession.maya.setup()
    _host.run_idle()
    assert loaded() and names() == []
    subsession.maya.setup()  # twice: the plug-in is already loaded, no warning
    _host.run_idle()
    assert [m for m in _host.state.messages if m[0] in ("warning", "error")] == []


def test_setup_reports_config_errors(
    maya: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "studio.toml"
    bad.write_text("[sessions.toolA]\npaths = []\ncolour = 'red'\n", encoding="utf-8")
    monkeypatch.setenv("SUBSESSION_CONFIG", str(bad))
    subsession.maya.setup()  # interactive: one error line in the Script Editor
    (error,) = [text for level, text in _host.state.messages if level == "error"]
    assert "studio.toml" in error and "colour" in error and "\n" not in error
    assert "toolA" not in names()
    _host.run_idle()  # Maya goes on: the plug-in still loads
    assert loaded()
    with pytest.raises(Exception, match="colour"):  # immediate: the caller gets it
        subsession.maya.setup(deferred=False)


def test_run_helper(maya: Any, layers: list[Path]) -> None:
    subsession.maya.setup(deferred=False)
    assert subsession.maya.run("toolA", "toolA.ui", "show", "greets") == "toolA greets libx 2"
    assert subsession.maya.run("toolB", "libx").VERSION == "1"
    ui_script = "import subsession.maya; r = subsession.maya.run('toolA', 'toolA.ui', 'show')"
    namespace: dict[str, Any] = {}
    exec(ui_script, namespace)  # what a workspace control's uiScript runs
    assert namespace["r"] == "toolA shows libx 2"
    assert "libx" not in sys.modules
    with pytest.raises(subsession.SessionError, match="define it in the studio config"):
        subsession.maya.run("nope", "toolA.ui", "show")
    with pytest.raises(ImportError):
        subsession.maya.run("toolB", "toolA.ui", "show")  # toolB has no tools/ path


def test_startup_modules_wait_for_idle(
    maya: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakehost.write_tree(
        tmp_path,
        {
            "lib/boot_a.py": "import sys\nsys._subsession_boot = 'ran'\n",
            "studio.toml": '[sessions.bootA]\npaths = ["lib"]\nstartup = "boot_a"\n',
        },
    )
    monkeypatch.setenv("SUBSESSION_CONFIG", str(tmp_path / "studio.toml"))
    monkeypatch.delattr(sys, "_subsession_boot", raising=False)
    subsession.maya.setup()
    assert "bootA" in names() and not hasattr(sys, "_subsession_boot")
    assert _host.run_idle() == 2  # the plug-in, then the startup modules
    assert getattr(sys, "_subsession_boot", None) == "ran"
    assert "boot_a" in subsession.get("bootA").modules


def test_startup_modules_run_at_once_in_batch(
    maya: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakehost.fresh_maya(monkeypatch, batch=True)
    fakehost.write_tree(
        tmp_path,
        {
            "lib/boot_b.py": "import sys\nsys._subsession_boot = 'batch'\n",
            "studio.toml": '[sessions.bootB]\npaths = ["lib"]\nstartup = "boot_b"\n',
        },
    )
    monkeypatch.setenv("SUBSESSION_CONFIG", str(tmp_path / "studio.toml"))
    monkeypatch.delattr(sys, "_subsession_boot", raising=False)
    subsession.maya.setup()
    assert loaded() and getattr(sys, "_subsession_boot", None) == "batch"
    assert _host.state.deferred == [] and _host.state.dropped == []


def test_execute_deferred_never_runs_in_batch_mode(
    maya: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import maya.utils

    fakehost.fresh_maya(monkeypatch, batch=True)
    ran: list[int] = []
    maya.utils.executeDeferred(ran.append, 1)
    assert _host.run_idle() == 0 and ran == []  # as Maya: no idle loop in batch mode
    assert len(_host.state.dropped) == 1


def test_run_loads_the_config_for_a_configured_session(maya: Any, layers: list[Path]) -> None:
    assert "toolA" not in names()  # setup() has not run (e.g. a restored workspace control)
    assert subsession.maya.run("toolA", "toolA.ui", "show") == "toolA shows libx 2"
    assert {"toolA", "toolB", "toolC"} <= set(names())
    with pytest.raises(subsession.SessionError, match="define it in the studio config"):
        subsession.maya.run("nope", "toolA.ui", "show")


def test_warnings_reach_the_script_editor_info_stays_quiet(maya: Any) -> None:
    import logging

    subsession.maya.setup()
    logger = logging.getLogger("subsession")
    logger.warning("careful: %s", "x")
    logger.info("chatty")
    logging.getLogger("subsession.maya").error("broken")
    assert ("warning", "subsession: careful: x") in _host.state.messages
    assert ("error", "subsession.maya: broken") in _host.state.messages
    assert not [m for m in _host.state.messages if "chatty" in m[1]]
    subsession.maya.setup()  # a second call adds no second handler
    from maya import utils

    logger.addHandler(utils.MayaGuiLogHandler())  # a studio's, on our logger
    subsession.maya.log_to_script_editor()  # back to exactly one
    assert len([h for h in logger.handlers if isinstance(h, utils.MayaGuiLogHandler)]) == 1
    logger.warning("once")
    assert [m for m in _host.state.messages if m[1].endswith("once")] == [
        ("warning", "subsession: once")
    ]


# -- logging in Maya's order, and other threads ------------------------------------------------


def user_setup() -> None:
    """A studio userSetup.py: subsession's setup(), then a tool's own logging call."""
    subsession.maya.setup()


def script_editor_lines(text: str) -> list[str]:
    return [line for line in _host.state.printed if text in line]


@pytest.mark.parametrize("order", ["maya", "gui first", "plug-in later"])
def test_each_record_shows_once_whatever_order_maya_sets_up_logging(maya: Any, order: str) -> None:
    import logging

    from maya import utils

    if order == "maya":  # gui.py: shell handler, userSetup, then the GUI handler on root
        _host.start_gui(user_setup)
    elif order == "gui first":  # setup() called by hand after start-up
        _host.start_gui(lambda: None)
        subsession.maya.setup()
    else:  # no userSetup: the plug-in (auto-load) sets it up after Maya's handlers
        _host.start_gui(lambda: None)
        assert _host.run_idle() == 0
        cmds.loadPlugin("subSession.py")
    _host.run_idle()  # the deferred plug-in load
    root = logging.getLogger()
    assert utils._gui_handler in root.handlers and root.level == logging.INFO
    logger = logging.getLogger("subsession")
    assert logger.level == logging.WARNING and logger.propagate is False
    assert len([h for h in logger.handlers if isinstance(h, utils.MayaGuiLogHandler)]) == 1
    logging.getLogger("subsession.maya").warning("careful")
    logging.getLogger("subsession").info("removed scriptJob 7 (toolA.ui)")
    assert script_editor_lines("careful") == ["# Warning: subsession.maya: careful #"]
    assert script_editor_lines("removed scriptJob") == []
    # A tool's own logger still goes through Maya's root handler, once.
    logging.getLogger("toolA").warning("tool says")
    assert script_editor_lines("tool says") == ["# Warning: toolA : tool says #"]


def test_info_is_shown_when_asked_for(maya: Any) -> None:
    import logging

    _host.start_gui(user_setup)
    logger = logging.getLogger("subsession")
    logger.setLevel(logging.INFO)  # e.g. the session manager's log pane on "Info"
    logger.info("removed scriptJob 7 (toolA.ui)")
    assert script_editor_lines("removed scriptJob") == []  # Script Editor: WARNING and up
    logger.addHandler(capture := _Capture())
    logger.info("now")
    assert capture.lines == ["now"]
    logger.removeHandler(capture)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: Any) -> None:
        self.lines.append(record.getMessage())


def test_records_from_other_threads_reach_maya_on_its_main_thread(maya: Any) -> None:
    import logging
    import threading

    _host.start_gui(user_setup)
    log = logging.getLogger("subsession")
    thread = threading.Thread(target=log.warning, args=("from %s", "a thread"), name="worker")
    thread.start()
    thread.join()
    assert _host.state.off_main == []  # nothing called Maya from the thread
    assert script_editor_lines("from a thread") == []  # not yet: queued for idle
    _host.run_idle()
    assert script_editor_lines("from a thread") == ["# Warning: subsession: from a thread #"]


def test_the_fake_refuses_maya_calls_off_the_main_thread(maya: Any) -> None:
    import threading

    from maya.api import OpenMaya

    errors: list[str] = []

    def call() -> None:
        for fn in (lambda: cmds.about(batch=True), lambda: OpenMaya.MGlobal.displayInfo("x")):
            try:
                fn()
            except RuntimeError as error:
                errors.append(str(error))

    thread = threading.Thread(target=call, name="worker")
    thread.start()
    thread.join()
    assert len(errors) == 2 and all("only on the main thread" in e for e in errors)
    assert _host.state.off_main == ["cmds.about (worker)", "Script Editor info message (worker)"]


def test_watcher_failures_reach_maya_on_its_main_thread(
    maya: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from subsession import _watch

    _host.start_gui(user_setup)
    _host.run_idle()  # the plug-in load setup() deferred
    session = subsession.Session("watchedLog", paths=[str(tmp_path)])

    class Broken:
        def __init__(self, core: Any) -> None:
            pass

        def poll(self) -> list[str]:
            raise OSError("the share went away")

    monkeypatch.setattr(_watch._core, "Watch", Broken)
    try:
        session.watch(interval=0.01)
        deadline = time.monotonic() + 10
        while not _host.state.deferred and time.monotonic() < deadline:
            time.sleep(0.01)
        session.unwatch()
    finally:
        session.close()
    assert _host.state.off_main == []
    _host.run_idle()
    lines = script_editor_lines("watching watchedLog failed")
    assert lines and lines[0].startswith("# Warning: subsession: watching watchedLog failed")


def test_records_from_other_threads_in_batch_mode_go_to_stderr(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import threading

    monkeypatch.delenv("SUBSESSION_CONFIG", raising=False)
    fakehost.fresh_maya(monkeypatch, batch=True)  # mayapy: no idle queue to hand over to
    try:
        subsession.maya.setup()
        log = logging.getLogger("subsession")
        thread = threading.Thread(target=log.warning, args=("batch thread",), name="worker")
        thread.start()
        thread.join()
        assert _host.state.off_main == [] and _host.state.dropped == []
        assert "WARNING: subsession: batch thread" in capfd.readouterr().err
    finally:
        if cmds.pluginInfo("subSession", query=True, loaded=True):
            cmds.unloadPlugin("subSession")
        _host.reset()
