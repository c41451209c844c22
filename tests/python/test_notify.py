"""Change notifications from the core (``subsession.subscribe``): created, configured,
imported, reloaded and closed, whoever made the change (Python, the C ABI); thread
safety; a raising callback is logged, never propagated."""

from __future__ import annotations

import ctypes
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import subsession
from conftest import unique_name, write_files
from subsession import _core


@pytest.fixture
def changes() -> Iterator[list[subsession.Change]]:
    seen: list[subsession.Change] = []
    token = subsession.subscribe(seen.append)
    yield seen
    assert subsession.unsubscribe(token)


def kinds(seen: list[subsession.Change], prefix: str) -> list[str]:
    return [c.kind for c in seen if c.prefix == prefix]


def test_a_session_life_is_told_in_order(
    changes: list[subsession.Change], new_session: Callable[..., Any], tmp_path: Path
) -> None:
    write_files(
        tmp_path, {"nt_pkg/__init__.py": "from . import leaf\n", "nt_pkg/leaf.py": "X = 1\n"}
    )
    name = unique_name("notify")
    s = new_session(name, paths=[str(tmp_path)])
    s.import_module("nt_pkg")
    s.configure(env={"A": "1"})
    s.reload_all()
    s.close()
    assert kinds(changes, s.prefix) == [
        "created",
        "imported",
        "imported",
        "configured",
        "reloaded",
        "closed",
    ]
    created = changes[[c.prefix for c in changes].index(s.prefix)]
    assert created == subsession.Change("created", name, s.prefix, ())
    imported = [c.modules for c in changes if c.prefix == s.prefix and c.kind == "imported"]
    assert sorted(imported) == [("nt_pkg",), ("nt_pkg.leaf",)]
    reloaded = next(c for c in changes if c.prefix == s.prefix and c.kind == "reloaded")
    assert reloaded.modules == ("nt_pkg.leaf", "nt_pkg")  # dependencies first
    closed = next(c for c in changes if c.prefix == s.prefix and c.kind == "closed")
    assert sorted(closed.modules) == ["nt_pkg", "nt_pkg.leaf"]
    assert subsession._changes.last_reloads(s.prefix) == {}  # forgotten with the session


def test_kinds_filter_and_unsubscribe(new_session: Callable[..., Any]) -> None:
    seen: list[subsession.Change] = []
    token = subsession.subscribe(seen.append, kinds=["closed"])
    s = new_session(unique_name("filter"))
    s.close()
    assert [c.kind for c in seen] == ["closed"]
    assert subsession.unsubscribe(token)
    assert not subsession.unsubscribe(token)
    new_session(unique_name("after")).close()
    assert len(seen) == 1


def test_one_kind_may_be_given_as_a_string(new_session: Callable[..., Any]) -> None:
    """Issue 20 item 8: ``kinds="closed"`` was read letter by letter."""
    seen: list[subsession.Change] = []
    token = subsession.subscribe(seen.append, kinds="closed")
    try:
        s = new_session(unique_name("onekind"))
        s.close()
        assert [c.kind for c in seen] == ["closed"]
    finally:
        subsession.unsubscribe(token)
    with pytest.raises(ValueError, match="unknown change kind 'close'; use some of"):
        subsession.subscribe(print, kinds="close")  # type: ignore[arg-type]


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="unknown change kind 'create'; use some of: created"):
        subsession.subscribe(print, kinds=["create"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="takes a callable"):
        subsession.subscribe(42)  # type: ignore[arg-type]


def test_a_raising_callback_is_logged_not_propagated(
    new_session: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    def boom(change: subsession.Change) -> None:
        raise RuntimeError("callback bug")

    seen: list[subsession.Change] = []
    bad = subsession.subscribe(boom)
    good = subsession.subscribe(seen.append)
    try:
        with caplog.at_level(logging.WARNING, logger="subsession"):
            _core.reset_log_cache()
            s = new_session(unique_name("boom"))  # no exception reaches the creator
    finally:
        subsession.unsubscribe(bad)
        subsession.unsubscribe(good)
        _core.reset_log_cache()
    assert [c.kind for c in seen] == ["created"]  # the next subscriber still told
    assert not s.closed
    messages = [r.getMessage() for r in caplog.records]
    assert any("raised on created" in m and "callback bug" in m for m in messages), messages


def test_callbacks_may_unsubscribe_and_use_sessions_inside(new_session: Callable[..., Any]) -> None:
    seen: list[str] = []
    tokens: list[int] = []

    def once(change: subsession.Change) -> None:
        seen.append(change.kind)
        subsession.unsubscribe(tokens[0])  # no lock of the core is held here
        subsession.sessions()

    tokens.append(subsession.subscribe(once))
    new_session(unique_name("once"))
    new_session(unique_name("twice"))
    assert seen == ["created"]


def test_threads_subscribe_and_change_at_once(new_session: Callable[..., Any]) -> None:
    seen: list[subsession.Change] = []
    lock = threading.Lock()

    def record(change: subsession.Change) -> None:
        with lock:
            seen.append(change)

    token = subsession.subscribe(record, kinds=["created", "closed"])
    errors: list[BaseException] = []
    names = [unique_name(f"thr{i}") for i in range(8)]

    def worker(name: str) -> None:
        try:
            for _ in range(5):
                extra = subsession.subscribe(lambda c: None)
                s = subsession.Session(name)
                s.close()
                subsession.unsubscribe(extra)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    subsession.unsubscribe(token)
    assert not errors
    for name in names:
        assert [c.kind for c in seen if c.name == name] == ["created", "closed"] * 5


def test_changes_through_the_c_abi_are_told(
    changes: list[subsession.Change], tmp_path: Path
) -> None:
    write_files(tmp_path, {"abi_mod.py": "X = 1\n"})
    lib = ctypes.PyDLL(_core.__file__)
    lib.subsession_create.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.subsession_reload.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.subsession_close.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.subsession_import.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    name = unique_name("abi")
    config = json.dumps({"paths": [str(tmp_path)]}).encode()
    assert lib.subsession_create(name.encode(), config) == 0
    assert lib.subsession_import(name.encode(), b"abi_mod") == 0
    assert lib.subsession_reload(name.encode(), 1, 0, None) == 0
    assert lib.subsession_close(name.encode(), None) == 0
    mine = [c for c in changes if c.name == name]
    assert [c.kind for c in mine] == ["created", "imported", "reloaded", "closed"]
    assert mine[2].modules == ("abi_mod",)
