"""docs/contract.md §5.5 hooks, §7 watch (plain interpreter: ``process_pending``), §8 adopt.

Files are really written; the watcher really polls them from its thread. Waiting is
bounded (``wait_for``) so a broken watcher fails the test instead of hanging it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import subsession
from conftest import PkgFactory

LOG = "_subsession_live_log"


def log_of(key: str) -> list[Any]:
    return sys.__dict__.setdefault(LOG, {}).setdefault(key, [])


def write(path: Path, source: str) -> None:
    """Write and move the mtime forward (a save)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    ns = max(old + 2_000_000_000, time.time_ns())
    os.utime(path, ns=(ns, ns))


def wait_for(cond: Callable[[], Any], timeout: float = 10.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {cond}")


def pending_after(session: Any, timeout: float = 10.0) -> list[str]:
    """Drive the plain-interpreter delivery: call process_pending until it reloads."""
    return wait_for(lambda: subsession.process_pending(), timeout)  # type: ignore[no-any-return]


@pytest.fixture
def tool(pkgs: PkgFactory, tmp_path: Path) -> tuple[str, Path]:
    name = pkgs.unique("live")
    root = tmp_path / "src"
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    return name, root


# -- hooks (docs/contract.md §5) -----------------------------------------------------------


def test_before_and_after_reload_hooks_pass_state_to_the_new_code(
    tool: tuple[str, Path], new_session: Any
) -> None:
    name, root = tool
    key = f"{name}.hooks"
    src = """\
        import sys
        VERSION = {v}
        LOG = sys.__dict__["{log}"]["{key}"]
        def __before_reload__():
            LOG.append(("before", VERSION))
            return {{"window": "state of v{v}"}}
        def __after_reload__(state):
            LOG.append(("after", VERSION, state))
        """
    log_of(key)
    write(root / name / "ui.py", src.format(v=1, log=LOG, key=key))
    s = new_session(paths=[root])
    s.import_module(f"{name}.ui")
    write(root / name / "ui.py", src.format(v=2, log=LOG, key=key))
    assert s.reload_stale() == [f"{name}.ui"]
    assert log_of(key) == [("before", 1), ("after", 2, {"window": "state of v1"})]


def test_a_raising_hook_is_a_warning_with_traceback_and_the_reload_goes_on(
    tool: tuple[str, Path], new_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name, root = tool
    src = """\
        VERSION = {v}
        def __before_reload__():
            raise RuntimeError("before hook broke")
        def __after_reload__(state):
            raise KeyError("after hook broke")
        """
    write(root / name / "m.py", src.format(v=1))
    s = new_session(paths=[root])
    m = s.import_module(f"{name}.m")
    write(root / name / "m.py", src.format(v=2))
    with caplog.at_level(logging.WARNING, logger="subsession"):
        assert s.reload_stale() == [f"{name}.m"]
    assert m.VERSION == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "__before_reload__" in r.getMessage() and "Traceback" in r.getMessage() for r in warnings
    )
    assert any(
        "__after_reload__" in r.getMessage() and "KeyError" in r.getMessage() for r in warnings
    )
    assert "before hook broke" in caplog.text and "Traceback" in caplog.text


def test_a_failed_reload_calls_after_reload_of_the_old_code(
    tool: tuple[str, Path], new_session: Any
) -> None:
    name, root = tool
    key = f"{name}.rollback"
    log_of(key)
    src = """\
        import sys
        LOG = sys.__dict__["{log}"]["{key}"]
        VERSION = 1
        def __before_reload__():
            return "menu"
        def __after_reload__(state):
            LOG.append((VERSION, state))
        """
    write(root / name / "m.py", src.format(log=LOG, key=key))
    s = new_session(paths=[root])
    m = s.import_module(f"{name}.m")
    write(root / name / "m.py", "VERSION = 2\nraise ValueError('broken save')\n")
    with pytest.raises(subsession.ReloadError):
        s.reload_stale()
    assert m.VERSION == 1
    assert log_of(key) == [(1, "menu")]


def test_on_reload_on_close_and_before_unload(
    tool: tuple[str, Path], new_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name, root = tool
    key = f"{name}.close"
    log_of(key)
    write(
        root / name / "m.py",
        f"""\
        import sys
        def __before_unload__():
            sys.__dict__["{LOG}"]["{key}"].append("before_unload")
        """,
    )
    s = new_session(paths=[root])
    s.import_module(f"{name}.m")
    seen: list[Any] = []
    append = seen.append
    assert s.on_reload(append) is append
    s.on_reload(lambda names: 1 / 0)  # raising: logged, the others still run
    s.on_close(lambda session: log_of(key).append(("on_close", session is s, len(s.modules))))
    s.on_close(lambda session: 1 / 0)
    s.reload(f"{name}.m")
    s.reload_all()
    assert seen[0] == [f"{name}.m"] and len(seen) == 2
    with caplog.at_level(logging.WARNING, logger="subsession"):
        report = s.close()
    assert not report, str(report)
    assert log_of(key) == [("on_close", True, 2), "before_unload"]
    assert caplog.text.count("on_close callback") == 1
    assert caplog.text.count("on_reload callback") == 2
    with pytest.raises(TypeError, match="takes a function"):
        s.on_reload(42)


# -- watch (docs/contract.md §7), delivered by process_pending -----------------------------


def test_watch_reloads_on_save_through_process_pending(
    tool: tuple[str, Path], new_session: Any
) -> None:
    name, root = tool
    write(root / name / "leaf.py", "def value():\n    return 1\n")
    write(root / name / "user.py", "from . import leaf\ndef get():\n    return leaf.value()\n")
    s = new_session(paths=[root])
    user = s.import_module(f"{name}.user")
    held = user.get  # deep reload keeps identity: held functions run new code
    s.watch(interval=0.05)
    assert s.watching
    try:
        write(root / name / "leaf.py", "def value():\n    return 2\n")
        done = pending_after(s)
        assert done == [f"{name}.leaf", f"{name}.user"]
        assert held() == 2 and threading.current_thread() is threading.main_thread()
        # A touch that changes nothing is never reloaded.
        os.utime(root / name / "leaf.py", ns=(time.time_ns() + 10**10,) * 2)
        time.sleep(0.3)
        assert subsession.process_pending() == []
    finally:
        s.unwatch()
    assert not s.watching


def test_a_burst_of_saves_gives_one_reload(tool: tuple[str, Path], new_session: Any) -> None:
    name, root = tool
    key = f"{name}.burst"
    log_of(key)
    body = f"import sys\nsys.__dict__['{LOG}']['{key}'].append(V)\n"
    write(root / name / "a.py", "V = 0\n" + body)
    write(root / name / "b.py", "V = 0\n" + body)
    s = new_session(paths=[root])
    s.import_module(f"{name}.a")
    s.import_module(f"{name}.b")
    s.watch(interval=0.05)
    try:
        for v in range(1, 6):  # an editor writing twice, a save-all of two files
            write(root / name / "a.py", f"V = {v}\n" + body)
            write(root / name / "b.py", f"V = {v}\n" + body)
        done = pending_after(s)
        time.sleep(0.3)
        done += subsession.process_pending()
        assert sorted(done) == [f"{name}.a", f"{name}.b"]
        assert log_of(key) == [0, 0, 5, 5]
    finally:
        s.unwatch()


def test_a_burst_of_saves_20_ms_apart_reloads_once_after_it(
    tool: tuple[str, Path], new_session: Any
) -> None:
    """issue 20 (5): ten real saves 20 ms apart while the host's main thread delivers
    every millisecond (as an event loop does): one reload, of the last version, after
    the burst."""
    name, root = tool
    key = f"{name}.burst20"
    log_of(key)
    body = f"import sys\nsys.__dict__['{LOG}']['{key}'].append(V)\n"
    path = root / name / "e.py"
    write(path, "V = 0\n" + body)
    s = new_session(paths=[root])
    s.import_module(f"{name}.e")
    s.watch(interval=0.01)
    finished = threading.Event()

    def editor() -> None:
        for v in range(1, 11):
            path.write_text(f"V = {v}\n" + body, encoding="utf-8")
            time.sleep(0.02)
        finished.set()

    writer = threading.Thread(target=editor)
    try:
        reloads: list[list[str]] = []
        writer.start()
        end = None
        while end is None or time.monotonic() < end:
            done = subsession.process_pending()
            if done:
                reloads.append(done)
            if end is None and finished.is_set():
                end = time.monotonic() + 1.0
            time.sleep(0.001)
        assert reloads == [[f"{name}.e"]]
        assert log_of(key) == [0, 10]
    finally:
        writer.join()
        s.unwatch()


def test_a_failed_reload_is_a_warning_and_the_next_save_retries(
    tool: tuple[str, Path], new_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name, root = tool
    write(root / name / "m.py", "V = 1\n")
    s = new_session(paths=[root])
    m = s.import_module(f"{name}.m")
    s.watch(interval=0.05)
    try:
        write(root / name / "m.py", "V = 2\ndef broken(:\n")
        with caplog.at_level(logging.WARNING, logger="subsession"):
            wait_for(lambda: (subsession.process_pending(), "SyntaxError" in caplog.text)[1])
        assert "reload failed, previous version kept" in caplog.text and m.V == 1
        # Not retried until the next save...
        time.sleep(0.3)
        assert subsession.process_pending() == [] and m.V == 1
        write(root / name / "m.py", "V = 3\n")
        assert pending_after(s) == [f"{name}.m"] and m.V == 3
    finally:
        s.unwatch()


def test_a_failed_watched_reload_logs_the_users_line_and_frames(
    tool: tuple[str, Path], new_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """issue 20 (3): the WARNING (the Script Editor line in Maya) names the user's file
    and line, not json/decoder.py, then the session's frames."""
    name, root = tool
    path = root / name / "where.py"
    write(path, "import json\n\nCONFIG = {}\n")
    s = new_session(paths=[root])
    s.import_module(f"{name}.where")
    s.watch(interval=0.05)
    try:
        write(path, "import json\n\nCONFIG = json.loads('{bad')\n")
        with caplog.at_level(logging.WARNING, logger="subsession"):
            wait_for(lambda: (subsession.process_pending(), "JSONDecodeError" in caplog.text)[1])
        (record,) = [r for r in caplog.records if "JSONDecodeError" in r.getMessage()]
        first, *frames = record.getMessage().splitlines()
        assert f'File "{path}", line 3: JSONDecodeError' in first
        assert first.endswith("save again to retry)") and "decoder.py" not in first
        assert frames[:2] == [
            f'  File "{path}", line 3, in <module>',
            "    CONFIG = json.loads('{bad')",
        ]
    finally:
        s.unwatch()


def test_reload_stale_while_watching_uses_what_the_watcher_found(
    tool: tuple[str, Path], new_session: Any
) -> None:
    name, root = tool
    write(root / name / "m.py", "V = 1\n")
    s = new_session(paths=[root])
    m = s.import_module(f"{name}.m")
    s.watch(interval=0.05)
    try:
        write(root / name / "m.py", "V = 2\n")
        from subsession import _watch

        wait_for(lambda: _watch._pending)
        assert s.reload_stale() == [f"{name}.m"] and m.V == 2
        assert subsession.process_pending() == []
        # Nothing found yet: reload_stale checks the files itself.
        s.unwatch()
        write(root / name / "m.py", "V = 3\n")
        s.watch(interval=60)
        assert s.reload_stale() == [f"{name}.m"] and m.V == 3
    finally:
        s.unwatch()


def test_watch_arguments_and_closed_sessions(new_session: Any) -> None:
    s = new_session()
    with pytest.raises(ValueError, match="out of range"):
        s.watch(interval=0)
    with pytest.raises(TypeError, match="seconds"):
        s.watch(interval="fast")
    assert not s.watching
    s.watch(interval=0.05)
    s.close()
    assert not s.watching
    with pytest.raises(subsession.ClosedSessionError):
        s.watch()


# -- adopt (docs/contract.md §8) -----------------------------------------------------------


def test_adopt_takes_over_global_modules_in_place(
    tool: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, root = tool
    write(root / name / "__init__.py", "from . import core\n")
    write(root / name / "core.py", "class Item:\n    def size(self):\n        return 1\n")
    write(root / name / "ui.py", "from .core import Item\nITEM = Item()\n")
    monkeypatch.syspath_prepend(str(root))
    ui = importlib.import_module(f"{name}.ui")
    core = sys.modules[f"{name}.core"]
    item = ui.ITEM
    s = subsession.adopt(f"adopt-{name}", [name])
    try:
        assert subsession.get(f"adopt-{name}") is s
        assert set(s.modules) == {name, f"{name}.core", f"{name}.ui"}
        assert s.modules[f"{name}.core"] is core
        assert s.stale() == []
        write(root / name / "core.py", "class Item:\n    def size(self):\n        return 2\n")
        assert s.stale() == [f"{name}.core"]
        # Dependencies first; the importer found from its globals is reloaded too.
        assert s.reload_stale(deep=True) == [f"{name}.core", f"{name}.ui"]
        assert sys.modules[f"{name}.core"] is core and core.__name__ == f"{name}.core"
        assert item.size() == 2 and ui.ITEM.size() == 2
        # A submodule imported later is adopted too.
        write(root / name / "extra.py", "X = 1\n")
        importlib.import_module(f"{name}.extra")
        assert f"{name}.extra" in s.modules
        with pytest.raises(subsession.SessionExistsError, match="already adopted"):
            subsession.adopt(f"other-{name}", [f"{name}.*"])
        with pytest.raises(subsession.NoSuchSessionError):
            subsession.get(f"other-{name}")
    finally:
        report = s.close()
    assert name not in sys.modules and f"{name}.core" not in sys.modules
    assert sorted(report.unloaded) == sorted([name, f"{name}.core", f"{name}.ui", f"{name}.extra"])
    assert set(report.leaks) >= {f"{name}.ui"}  # this test still holds ui and item


def test_adopt_reloads_a_top_level_module_in_place(
    tool: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 20 (1): a single-file module keeps its real name and identity on reload."""
    name, root = tool
    modw, holder = f"{name}_w", f"{name}_holder"
    write(root / f"{modw}.py", "def f():\n    return 1\n")
    write(root / f"{holder}.py", f"from {modw} import f\n")
    monkeypatch.syspath_prepend(str(root))
    module = importlib.import_module(modw)
    held = importlib.import_module(holder)
    s = subsession.adopt(f"adopt1-{name}", [modw])
    try:
        write(root / f"{modw}.py", "def f():\n    return 2\n")
        assert s.reload_stale(deep=True) == [modw]
        assert sys.modules[modw] is module and module.__name__ == modw
        assert [k for k in sys.modules if k.endswith(modw)] == [modw]
        assert held.f() == 2 and held.f is module.f
    finally:
        report = s.close()
    assert report.unloaded == [modw]


def test_adopt_reloads_a_package_init_in_place(
    tool: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 20 (1): a submodule edit reloads the package's __init__ under its real name."""
    name, root = tool
    write(root / name / "__init__.py", "from .core import size\n")
    write(root / name / "core.py", "def size():\n    return 1\n")
    monkeypatch.syspath_prepend(str(root))
    package = importlib.import_module(name)
    core = sys.modules[f"{name}.core"]
    size = package.size
    s = subsession.adopt(f"adopt2-{name}", [name])
    try:
        write(root / name / "core.py", "def size():\n    return 2\n")
        assert s.reload_stale(deep=True) == [f"{name}.core", name]
        assert sys.modules[name] is package and sys.modules[f"{name}.core"] is core
        assert not [k for k in sys.modules if k.endswith(f".{name}") or f".{name}." in k]
        assert size() == 2 and package.size is size
    finally:
        report = s.close()
    assert sorted(report.unloaded) == sorted([name, f"{name}.core"])


def test_a_second_adopt_of_modules_another_session_owns_names_the_owner(
    tool: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20 item 8: a studio reloader deleted the entries by prefix; adopting them
    again under another name returned an empty session that owned nothing."""
    name, root = tool
    write(root / name / "__init__.py", "V = 1\n")
    monkeypatch.syspath_prepend(str(root))
    importlib.import_module(name)
    first = subsession.adopt(f"first-{name}", [name])
    try:
        del sys.modules[name]  # the reloader's `del sys.modules[k]` by prefix
        with pytest.raises(
            subsession.SessionExistsError,
            match=f"{name} already adopted by session first-{name}; close that session",
        ):
            subsession.adopt(f"second-{name}", [name])
        with pytest.raises(subsession.NoSuchSessionError):
            subsession.get(f"second-{name}")
        # Adopting again under the owner's own name adds patterns, as before.
        assert subsession.adopt(f"first-{name}", [name]) is first
    finally:
        first.close()
    second = subsession.adopt(f"second-{name}", [name])  # free once the owner closed
    second.close()


def test_adopt_refuses_shared_modules_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="shared by everyone"):
        subsession.adopt("adopt-json", ["json"])
    with pytest.raises(ValueError, match="shared by everyone"):
        subsession.adopt("adopt-sub", ["subsession.*"])
    with pytest.raises(TypeError, match="takes a list"):
        subsession.adopt("adopt-str", "mytool")
    with pytest.raises(NoSessionYet):
        subsession.get("adopt-json")


NoSessionYet = subsession.NoSuchSessionError


def test_adopted_modules_are_watched(
    tool: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, root = tool
    write(root / name / "m.py", "V = 1\n")
    monkeypatch.syspath_prepend(str(root))
    m = importlib.import_module(f"{name}.m")
    s = subsession.adopt(f"adoptw-{name}", [name])
    try:
        s.watch(interval=0.05)
        write(root / name / "m.py", "V = 2\n")
        assert pending_after(s) == [f"{name}.m"] and m.V == 2
    finally:
        s.close()


def test_the_interpreter_exits_cleanly_while_watching(tool: tuple[str, Path]) -> None:
    """The polling thread is stopped and joined at exit, never caught inside the core."""
    import subprocess

    name, root = tool
    write(root / name / "m.py", "V = 1\n")
    script = textwrap.dedent(
        f"""\
        import subsession, os, time
        s = subsession.Session("exit-{name}", paths=[{str(root)!r}])
        s.import_module("{name}.m")
        s.watch(interval=0.01)
        path = os.path.join({str(root)!r}, "{name}", "m.py")
        for i in range(20):
            with open(path, "w") as f:
                f.write("V = %d\\n" % i)
            time.sleep(0.005)
        subsession.process_pending()
        print("exiting")
        """
    )
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0 and "exiting" in proc.stdout, proc.stderr
