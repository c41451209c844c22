"""Reliability promises (docs/contract.md, "Reliability"): no input and no thread
interleaving crashes the host or leaves global state patched.

Each race runs hundreds of rounds with ``sys.setswitchinterval(1e-6)`` so the GIL
changes hands inside the engine's critical sections. Crash-prone cases (a deep config,
the environment changing under ``${VAR}``) run in a child interpreter, so a crash
fails the test instead of ending the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import subsession
from conftest import PkgFactory, import_stmt, leaked_real_names

ROUNDS = 200


@pytest.fixture
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def run_child(source: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Runs ``source`` in a fresh interpreter that imports this ``subsession``."""
    env = dict(os.environ)
    package_root = str(Path(subsession.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# -- 1. a deeply nested JSON config ------------------------------------------------------


def deep_json(levels: int) -> str:
    return '{"paths": ' + "[" * levels + "]" * levels + "}"


@pytest.mark.parametrize("levels", [33, 1000, 10000, 200000])
def test_deep_json_config_is_an_error_not_a_crash(levels: int) -> None:
    with pytest.raises(subsession.ConfigError) as info:
        subsession._core.parse_session_json(deep_json(levels), "deep.json")
    message = str(info.value)
    assert message.startswith("deep.json:1:"), message
    assert "nested deeper than 32 levels" in message
    assert "\n" not in message


def test_deep_json_on_a_small_thread_stack(tmp_path: Path) -> None:
    """A worker pool thread has 512 KiB of stack; 1,000 levels once overflowed it."""
    config = tmp_path / "studio.json"
    config.write_text('{"sessions": {"a": ' + deep_json(10000) + "}}")
    child = run_child(
        f"""
        import threading, subsession
        results = []
        def work():
            for text in ({deep_json(1000)!r}, {deep_json(10000)!r}):
                try:
                    subsession._core.parse_session_json(text, "x")
                except subsession.ConfigError as e:
                    results.append(str(e))
            try:
                subsession.load_config({str(config)!r})
            except subsession.ConfigError as e:
                results.append(str(e))
        threading.stack_size(512 * 1024)
        t = threading.Thread(target=work)
        t.start(); t.join()
        print(len(results))
        print(results[-1])
        """
    )
    assert child.returncode == 0, child.stderr
    count, last = child.stdout.splitlines()
    assert count == "3"
    assert last.startswith(f"{config}:1:") and "nested deeper" in last


def test_shallow_json_configs_still_parse() -> None:
    spec = subsession._core.parse_session_json(
        json.dumps({"paths": ["/a"], "env": {"X": "1"}}), "ok"
    )
    assert spec["paths"] == ["/a"] and spec["env"] == {"X": "1"}


# -- 2. ${VAR} while another thread changes the environment -------------------------------


def test_var_expansion_while_the_environment_changes(tmp_path: Path) -> None:
    """The environment grows (new variables reallocate C's array) and shrinks on one
    thread while configs expand ``${HOME}`` on another: each expansion must see a
    whole environment (before the fix: HOME "not set", or a crash)."""
    config = tmp_path / "studio.toml"
    refs = ", ".join(f'"${{HOME}}/{i}"' for i in range(2000))
    config.write_text(f"[sessions.a]\npaths = [{refs}]\n")
    child = run_child(
        f"""
        import os, threading, time
        import subsession
        stop = time.monotonic() + 3
        def writer():
            i = 0
            while time.monotonic() < stop:
                os.environ["SUBSESSION_RACE_%d" % (i % 500)] = "v"
                i += 1
                if i % 500 == 0:
                    for j in range(500):
                        os.environ.pop("SUBSESSION_RACE_%d" % j, None)
        t = threading.Thread(target=writer)
        t.start()
        n = 0
        while time.monotonic() < stop:
            subsession._core.parse_config([{str(config)!r}])
            subsession._core.parse_session_json('{{"paths": ["${{HOME}}/y"]}}', "c")
            n += 1
        t.join()
        print(n)
        """
    )
    assert child.returncode == 0, f"child failed ({child.returncode}): {child.stderr[-2000:]}"
    assert int(child.stdout.strip()) > 10


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_environment_is_read_before_the_gil_is_released(tmp_path: Path) -> None:
    """Deterministic form of the race: the config is a named pipe, so reading it waits
    (without the GIL) until another thread, holding the GIL, has changed a variable
    and then writes the text. Values come from the environment as it was when
    ``parse_config`` was called, never from a read made while the GIL is released."""
    fifo = tmp_path / "studio.toml"
    os.mkfifo(fifo)
    key = "SUBSESSION_PROBE_LATE"
    os.environ.pop(key, None)

    def late_writer() -> None:
        # Opening for writing waits until the parser has opened the pipe, i.e. until
        # parse_config is running with the GIL released.
        with open(fifo, "w") as f:
            os.environ[key] = "/late"
            f.write('[sessions.a]\npaths = ["${SUBSESSION_PROBE_LATE:-/early}"]\n')

    writer = threading.Thread(target=late_writer)
    writer.start()
    try:
        parsed = subsession._core.parse_config([str(fifo)])
    finally:
        writer.join()
        os.environ.pop(key, None)
    assert parsed["sessions"]["a"]["paths"] == [os.path.abspath("/early")]


# -- 3. two threads create the same name ------------------------------------------------


def _create_racing(name: str, barrier: threading.Barrier, made: list[Any]) -> None:
    barrier.wait()
    try:
        made.append(subsession.Session(name))
    except subsession.SessionExistsError:
        pass


def test_same_name_created_by_two_threads(fast_switching: None) -> None:
    zombies: list[str] = []
    for round_ in range(ROUNDS):
        name = f"race_{round_}"
        barrier = threading.Barrier(3)
        made: list[Any] = []
        threads = [
            threading.Thread(target=_create_racing, args=(name, barrier, made)) for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        listed = [s for s in subsession.sessions() if s.name == name]
        if len(made) != 1 or len(listed) != 1 or subsession.get(name) is not made[0]:
            zombies.append(f"round {round_}: created {len(made)}, listed {len(listed)}")
        for s in listed:
            s.close()
        with pytest.raises(subsession.NoSuchSessionError):
            subsession.get(name)
    assert not zombies, zombies[:5]


def test_reuse_on_two_threads_gives_both_the_same_session(fast_switching: None) -> None:
    """``Session(name, reuse=True)`` is look-up-or-create: racing itself (or a plain
    ``Session(name)``) it returns the one session, never SessionExistsError."""
    problems: list[str] = []
    for round_ in range(ROUNDS):
        name = f"reuse_race_{round_}"
        barrier = threading.Barrier(3)
        got: list[Any] = []

        def open_it(name: str, barrier: threading.Barrier, got: list[Any]) -> None:
            barrier.wait()
            try:
                got.append(subsession.Session(name, reuse=True))
            except Exception as e:  # noqa: BLE001 - any error is the failure reported
                got.append(e)

        threads = [threading.Thread(target=open_it, args=(name, barrier, got)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        kinds = {type(g).__name__ for g in got}
        if kinds != {"Session"} or len({id(g) for g in got}) != 1:
            problems.append(f"round {round_}: {got}")
        for s in subsession.sessions():
            if s.name == name:
                s.close()
    assert not problems, problems[:5]


def test_a_failed_construction_gives_the_name_back() -> None:
    with pytest.raises(ValueError):
        subsession.Session("giveback", env={"": "x"})
    s = subsession.Session("giveback")
    s.close()


# -- 4. keep_global on one thread while another session shows its copy ------------------


def test_keep_global_never_gets_another_threads_copy(
    pkgs: PkgFactory, monkeypatch: pytest.MonkeyPatch, new_session: Callable[..., Any]
) -> None:
    name = pkgs.unique("smshared")
    global_root = pkgs.make(name, "global", module=True)
    private_root = pkgs.make(name, "private", module=True)
    monkeypatch.syspath_prepend(str(global_root))
    host = import_stmt(name)
    a = new_session(paths=[private_root])
    b = new_session(keep_global=[name])
    a_active = threading.Event()
    done = threading.Event()
    seen: dict[str, Any] = {}

    def hold_a() -> None:
        with a:
            seen["a"] = import_stmt(name)
            a_active.set()
            done.wait(10)

    holder = threading.Thread(target=hold_a)
    holder.start()
    try:
        assert a_active.wait(10)
        for _ in range(50):
            with b:
                got = import_stmt(name)
                by_function = b.import_module(name)
                by_importlib = __import__("importlib").import_module(name)
            assert got is host, f"B's import statement got {got!r}"
            assert by_function is host and by_importlib is host
    finally:
        done.set()
        holder.join()
    assert seen["a"].VERSION == "private"
    assert sys.modules[name] is host
    assert not leaked_real_names()


# -- 5. a block left on another thread ---------------------------------------------------


def test_block_left_by_another_thread_restores_everything(
    pkgs: PkgFactory,
    new_session: Callable[..., Any],
    snapshot: Callable[[], Any],
    env_guard: None,
) -> None:
    name = pkgs.unique("genmod")
    root = pkgs.make(name, "1.0", module=True)
    s = new_session(paths=[root], env={"SUBSESSION_GEN": "1"})
    before = snapshot()

    def gen() -> Iterator[int]:
        with s:
            import_stmt(name)
            yield 1
            yield 2

    g = gen()
    started = threading.Thread(target=lambda: next(g))
    started.start()
    started.join()
    assert os.environ.get("SUBSESSION_GEN") == "1" and name in sys.modules
    closer = threading.Thread(target=g.close)
    closer.start()
    closer.join()
    from conftest import assert_state_equal

    assert_state_equal(before)
    assert subsession.current() is None
    report = s.close()
    assert name in report.unloaded


def test_block_left_by_another_thread_forgotten_by_its_own(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    name = pkgs.unique("genmod")
    root = pkgs.make(name, "1.0", module=True)
    s = new_session(paths=[root])
    entered = threading.Event()
    left = threading.Event()
    after: dict[str, Any] = {}

    def owner() -> None:
        s.__enter__()
        entered.set()
        left.wait(10)
        after["current"] = subsession.current()

    t = threading.Thread(target=owner)
    t.start()
    assert entered.wait(10)
    s.__exit__(None, None, None)  # this thread never entered it
    left.set()
    t.join()
    assert after["current"] is None
    s.close()


def test_exit_of_a_session_never_entered_is_refused(new_session: Callable[..., Any]) -> None:
    s = new_session()
    with pytest.raises(subsession.SessionError, match="not active"):
        s.__exit__(None, None, None)


def test_many_generators_closed_elsewhere(
    pkgs: PkgFactory,
    new_session: Callable[..., Any],
    snapshot: Callable[[], Any],
    fast_switching: None,
) -> None:
    name = pkgs.unique("genmod")
    root = pkgs.make(name, "1.0", module=True)
    s = new_session(paths=[root])
    before = snapshot()

    def gen() -> Iterator[int]:
        with s:
            import_stmt(name)
            yield 1

    for _ in range(ROUNDS):
        g = gen()
        t = threading.Thread(target=next, args=(g,))
        t.start()
        t.join()
        c = threading.Thread(target=g.close)
        c.start()
        c.join()
    from conftest import assert_state_equal

    assert_state_equal(before)
    s.close()


# -- 6. close() racing a thread that enters ----------------------------------------------


# A module whose class has a Python ``__getattribute__`` (lazy-loading packages do
# this): close() reads each module's ``__name__``, which runs Python code and so lets
# other threads in while it works, the window this race needs.
LAZY_MODULE = """\
import sys, time, types
class _Lazy(types.ModuleType):
    def __getattribute__(self, name):
        time.sleep(0)
        return super().__getattribute__(name)
sys.modules[__name__].__class__ = _Lazy
"""


def _enter_until_closed(s: Any, name: str, problems: list[str]) -> None:
    while True:
        try:
            s.__enter__()
        except subsession.ClosedSessionError:
            return  # refused at the door: fine
        try:
            # Inside the block the session stays open until the block ends.
            mod = import_stmt(name)
            if getattr(mod, "__name__", "").split(".")[-1] != name:
                problems.append(f"got {mod!r}")
            if s.closed:
                problems.append("closed while a block was active")
        except BaseException as e:  # noqa: BLE001 - any error inside the block is the bug
            problems.append(f"in the block: {type(e).__name__}: {e}")
        finally:
            s.__exit__(None, None, None)


@pytest.fixture
def gc_switching() -> Iterator[None]:
    """Frequent collections with a Python callback: any allocation inside the engine
    may then run Python code and hand the GIL to another thread."""
    import gc

    threshold = gc.get_threshold()

    def callback(phase: str, info: dict[str, int]) -> None:
        pass

    gc.set_threshold(5)
    gc.callbacks.append(callback)
    yield
    gc.callbacks.remove(callback)
    gc.set_threshold(*threshold)


def test_close_and_enter_exclude_each_other(
    pkgs: PkgFactory, fast_switching: None, gc_switching: None
) -> None:
    name = pkgs.unique("closemod")
    root = pkgs.make(name, "1.0", module=True)
    bulk = pkgs.unique("lazybulk")
    pkgs.make(bulk, "1.0", {f"m{i}.py": LAZY_MODULE for i in range(150)}, root=root)
    problems: list[str] = []
    for round_ in range(ROUNDS // 4):
        s = subsession.Session(f"closerace_{round_}", paths=[str(root)])
        for i in range(150):
            s.import_module(f"{bulk}.m{i}")
        t = threading.Thread(target=_enter_until_closed, args=(s, name, problems))
        t.start()
        time.sleep(0.001)
        while True:
            try:
                s.close()
                break
            except subsession.SessionError as e:
                if "is active" not in str(e):
                    problems.append(f"close: {e}")
                    break
        t.join()
        assert s.closed
    assert not problems, f"{len(problems)} problems in {ROUNDS // 4} rounds: {problems[:3]}"
    assert not leaked_real_names()


# -- 7. config application is all or nothing ---------------------------------------------


def test_failed_application_keeps_host_modules(
    tmp_path: Path, new_session: Callable[..., Any]
) -> None:
    busy = new_session("cfgbusy")
    config = tmp_path / "studio.toml"
    config.write_text(
        'host_modules = ["subsession_test_hostmod"]\n[sessions.cfgbusy]\npaths = ["lib"]\n'
    )
    before = subsession._core.host_modules()
    with busy:
        with pytest.raises(subsession.SessionError, match="is active"):
            subsession.load_config(str(config))
    assert subsession._core.host_modules() == before
    assert busy.paths == []


def test_nul_in_env_value_is_a_located_config_error(tmp_path: Path) -> None:
    config = tmp_path / "studio.toml"
    config.write_text('[sessions.a]\nenv = { A = "a\\u0000b" }\n')
    with pytest.raises(subsession.ConfigError) as info:
        subsession._core.parse_config([str(config)])
    assert str(info.value).startswith(f"{config}:2:"), str(info.value)
    assert "NUL" in str(info.value)


def test_bad_variable_reference_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "studio.toml"
    config.write_text('[sessions.a]\npaths = ["${UNDEF\\nX}"]\n')
    with pytest.raises(subsession.ConfigError) as info:
        subsession._core.parse_config([str(config)])
    assert "\n" not in str(info.value), str(info.value)
    assert "${NAME}" in str(info.value)


# -- 9. environment writes on activation -------------------------------------------------


def test_activation_writes_only_changed_variables() -> None:
    child = run_child(
        """
        import os, sys, subsession
        writes = []
        def hook(event, args):
            if event in ("os.putenv", "os.unsetenv"):
                writes.append((event, args[0]))
        sys.addaudithook(hook)
        os.environ["SUBSESSION_SAME"] = "same"
        plain = subsession.Session("plain")
        same = subsession.Session("same", env={"SUBSESSION_SAME": "same"})
        one = subsession.Session("one", env={"SUBSESSION_ONE": "1", "SUBSESSION_SAME": "same"})
        def count(s):
            writes.clear()
            with s:
                entered = len(writes)
            return entered, len(writes) - entered
        print(count(plain), count(same), count(one), count(plain))
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["(0,", "0)", "(0,", "0)", "(1,", "1)", "(0,", "0)"]


def test_another_threads_exit_is_not_kept_as_this_blocks_edit(
    new_session: Callable[..., Any], env_guard: None
) -> None:
    """os.environ and sys.path are process-wide: when a block of another thread
    restores them while this block is open, this block's session must not record the
    difference as its own edits (it would lose its own settings)."""
    a = new_session(env={"SUBSESSION_RACE_A": "a"})
    b = new_session(env={"SUBSESSION_RACE_B": "b"})
    entered, leave, left = threading.Event(), threading.Event(), threading.Event()

    def hold_a() -> None:
        with a:
            entered.set()
            leave.wait(10)
        left.set()

    t = threading.Thread(target=hold_a)
    t.start()
    assert entered.wait(10)
    with b:
        leave.set()
        assert left.wait(10)
    t.join()
    assert a.env == {"SUBSESSION_RACE_A": "a"}
    assert b.env == {"SUBSESSION_RACE_B": "b"}
    assert "SUBSESSION_RACE_A" not in os.environ and "SUBSESSION_RACE_B" not in os.environ


def test_a_logging_handler_using_the_session_under_its_lock_gets_an_error_not_a_hang(
    pkgs: PkgFactory,
) -> None:
    """Issue 20 item 8: a reload logs its import-cycle warning while it holds the
    session's state; a handler of the ``subsession`` logger (Maya's Script Editor has
    one) that uses the same session on that thread waited forever on the lock (a hung
    Maya loses the scene). It now gets a one-line error and the reload completes."""
    name = pkgs.unique("cyc")
    root = pkgs.make(
        name,
        files={
            "__init__.py": "from . import a\n",
            "a.py": "from . import b\nX = 1\n",
            "b.py": "from . import a\nY = 1\n",
        },
    )
    child = run_child(
        f"""
        import logging, os, subsession
        seen = []
        class Handler(logging.Handler):
            def emit(self, record):
                try:
                    seen.append(len(s.modules))
                except subsession.SessionError as error:
                    seen.append(str(error))
        logging.getLogger("subsession").addHandler(Handler())
        logging.getLogger("subsession").setLevel(logging.WARNING)
        s = subsession.Session(paths=[{str(root)!r}])
        s.import_module({name!r})
        for leaf in ("a", "b"):
            path = os.path.join({str(root)!r}, {name!r}, leaf + ".py")
            with open(path, "a") as handle:
                handle.write("Z = 2\\n")
            st = os.stat(path)
            os.utime(path, ns=(st.st_mtime_ns + 2_000_000_000,) * 2)
        print(sorted(s.reload_stale()))
        for line in seen:
            print(line)
        print("after", len(s.modules))
        """,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    out = child.stdout.splitlines()
    assert out[0] == str(sorted([name, f"{name}.a", f"{name}.b"])), out
    busy = [line for line in out[1:-1] if "is busy on this thread" in line]
    assert busy and all(line.endswith("use the session outside that code") for line in busy), out
    assert out[-1] == "after 3", out  # the lock was let go
