"""docs/contract.md §4.3 item 8 under stress, bounded in time: one thread imports in a
loop while another activates a session thousands of times; neither ever receives the
other's modules.

Every module exists twice: a global version 0.1 (on ``sys.path``) and a session version
1.0. A pool of modules is imported for the first time by both sides while the test runs,
so real loading (finders, loaders, ``sys.modules`` writes) on one side overlaps the
activations and loads of the other. No thread writes ``sys.modules`` directly (another
thread's direct ``sys.modules`` access during a block is the documented gap).
"""

from __future__ import annotations

import importlib
import random
import sys
import threading
import time
from typing import Any, Callable

import pytest
from conftest import PkgFactory, import_stmt, is_session_module, leaked_real_names

ACTIVATIONS = 3000
MIN_ACTIVATIONS = 2000
DEADLINE_S = 15.0
N_MODULES = 300


def _build(
    pkgs: PkgFactory, monkeypatch: pytest.MonkeyPatch, new_session: Callable[..., Any]
) -> Any:
    name = pkgs.unique("stress")
    mods = [pkgs.unique("stressmod") for _ in range(N_MODULES)]
    files = {"sub.py": "VERSION = {v!r}\n"}
    roots = {}
    for v in ("0.1", "1.0"):
        root = pkgs.make(name, v, {k: s.format(v=v) for k, s in files.items()})
        for m in mods:
            pkgs.make(m, v, {"__init__.py": f"VERSION = {v!r}\n"}, root=root, module=True)
        roots[v] = root
    monkeypatch.syspath_prepend(str(roots["0.1"]))
    session = new_session(paths=[roots["1.0"]])
    return name, mods, session


def test_importing_thread_vs_activating_thread(
    pkgs: PkgFactory, monkeypatch: pytest.MonkeyPatch, new_session: Callable[..., Any]
) -> None:
    name, mods, s = _build(pkgs, monkeypatch, new_session)
    g_top = import_stmt(name)
    g_sub = import_stmt(f"{name}.sub")
    with s:
        s_top = import_stmt(name)
        s_sub = import_stmt(f"{name}.sub")
        s_mods = {m: import_stmt(m) for m in mods[:10]}  # the rest: first loads race
    assert (g_sub.VERSION, s_sub.VERSION) == ("0.1", "1.0")

    stop = threading.Event()
    errors: list[str] = []
    counts = {"imports": 0, "activations": 0}

    def check_global(what: str, got: Any, expected_version: str = "0.1") -> None:
        if is_session_module(got) or getattr(got, "VERSION", None) != expected_version:
            errors.append(f"importer thread got {got!r} from {what}")

    def importer() -> None:
        i = 0
        try:
            while not stop.is_set():
                got = import_stmt(name)
                if got is not g_top:
                    errors.append(f"importer: import {name} -> {got!r}")
                got = importlib.import_module(f"{name}.sub")
                if got is not g_sub:
                    errors.append(f"importer: import_module -> {got!r}")
                got = __import__(f"{name}.sub", fromlist=["VERSION"])
                if got is not g_sub:
                    errors.append(f"importer: __import__ -> {got!r}")
                m = mods[i % N_MODULES]  # the first pass loads each global copy
                i += 1
                check_global(f"import {m}", import_stmt(m))
                check_global(f"from {name} import sub", import_stmt(name, ("sub",))[0])
                counts["imports"] += 5
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(f"importer crashed: {exc!r}")

    worker = threading.Thread(target=importer, daemon=True)
    worker.start()
    rng = random.Random(2)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while counts["activations"] < ACTIVATIONS and time.monotonic() < deadline and not errors:
            with s:
                got = import_stmt(f"{name}.sub")
                if got is not s_sub:
                    errors.append(f"block: import {name}.sub -> {got!r}")
                if importlib.import_module(name) is not s_top:
                    errors.append("block: import_module(top) is not the session's")
                m = mods[rng.randrange(N_MODULES)]
                got = import_stmt(m)
                if getattr(got, "VERSION", None) != "1.0" or not is_session_module(got):
                    errors.append(f"block: import {m} -> {got!r} (the importer's global?)")
                elif s_mods.setdefault(m, got) is not got:
                    errors.append(f"block: import {m} re-executed in the session")
            counts["activations"] += 1
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive(), "importer thread hung"
    assert not errors, f"{len(errors)} cross-talk errors, first: {errors[:5]}"
    assert counts["activations"] >= MIN_ACTIVATIONS, (
        f"only {counts['activations']} activations in {DEADLINE_S}s"
    )
    assert counts["imports"] > 0
    assert not leaked_real_names()
    assert sys.modules[name] is g_top and sys.modules[f"{name}.sub"] is g_sub


def test_two_threads_two_sessions_concurrently(
    pkgs: PkgFactory, monkeypatch: pytest.MonkeyPatch, new_session: Callable[..., Any]
) -> None:
    name = pkgs.unique("twoblocks")
    roots = {v: pkgs.make(name, v, {"sub.py": f"VERSION = {v!r}\n"}) for v in ("0.1", "1.0", "2.0")}
    monkeypatch.syspath_prepend(str(roots["0.1"]))
    a = new_session(paths=[roots["1.0"]])
    b = new_session(paths=[roots["2.0"]])
    errors: list[str] = []
    deadline = time.monotonic() + 4.0
    done = {"a": 0, "b": 0}

    def loop(s: Any, version: str, key: str) -> None:
        try:
            while time.monotonic() < deadline and not errors:
                with s:
                    got = import_stmt(f"{name}.sub")
                    if got.VERSION != version:
                        errors.append(f"{key}: got {got.VERSION}")
                    if importlib.import_module(name).VERSION != version:
                        errors.append(f"{key}: import_module(top) wrong")
                done[key] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(f"{key} crashed: {exc!r}")

    threads = [
        threading.Thread(target=loop, args=(a, "1.0", "a"), daemon=True),
        threading.Thread(target=loop, args=(b, "2.0", "b"), daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads), "a session thread hung"
    assert not errors, errors[:5]
    assert done["a"] > 100 and done["b"] > 100, done
    assert not leaked_real_names()
    after = import_stmt(f"{name}.sub")
    assert after.VERSION == "0.1", f"global import after the blocks got {after!r}"
