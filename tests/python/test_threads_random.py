"""A seeded random walk over sessions on three threads (docs/contract.md, Reliability).

Three long-lived worker threads take commands, so blocks stay open across steps on
the thread that opened them. Each step is one of: create a session (some keep the
shared module global), enter, or leave any open block of a thread (not only the
innermost: it is left once the blocks above it end), import inside a block (checked:
the session's own copy, or the host's for ``keep_global``), open a ``with`` block
inside a generator on one thread and close the generator on another, close a session
(refused while a block is open anywhere) and close racing an enter on two threads.
After every step with no block open anywhere, global state equals the state before
the walk. Reproducible: the seed is printed on failure.
"""

from __future__ import annotations

import queue
import random
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import subsession
from conftest import GlobalState, PkgFactory, assert_state_equal, import_stmt, leaked_real_names

STEPS = 4000
SEED = 20261128


class Worker:
    """A thread that runs the callables it is given, one at a time."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.inbox: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self.outbox: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.inbox.get()
            if job is None:
                return
            try:
                self.outbox.put((True, job()))
            except BaseException as e:  # noqa: BLE001 - handed back to the test
                self.outbox.put((False, e))

    def submit(self, job: Callable[[], Any]) -> None:
        self.inbox.put(job)

    def result(self) -> Any:
        ok, value = self.outbox.get(timeout=60)
        if not ok:
            raise value
        return value

    def run(self, job: Callable[[], Any]) -> Any:
        self.submit(job)
        return self.result()

    def stop(self) -> None:
        self.inbox.put(None)
        self.thread.join(10)


@dataclass
class Frame:
    """One open block in the model: entered with a token, or held by a generator."""

    session: Any
    token: int | None = None
    generator: Iterator[int] | None = None
    left: bool = False  # asked to leave while later frames of its thread are open


def test_random_walk_on_three_threads(pkgs: PkgFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = pkgs.unique("rwshared")
    monkeypatch.syspath_prepend(str(pkgs.make(shared, "host", module=True)))
    private_root = pkgs.make(shared, "private", module=True)
    host_module = import_stmt(shared)
    before = GlobalState.take()
    rng = random.Random(SEED)
    workers = [Worker(i) for i in range(3)]
    sessions: list[Any] = []
    stacks: dict[int, list[Frame]] = {0: [], 1: [], 2: []}  # per thread, innermost last
    counter = 0
    step = 0
    trace: list[str] = []

    def active(s: Any) -> bool:
        return any(f.session is s for stack in stacks.values() for f in stack)

    def leave(thread: int, frame: Frame) -> None:
        # The engine leaves a frame once nothing entered after it on its thread is open.
        frame.left = True
        stack = stacks[thread]
        while stack and stack[-1].left:
            stack.pop()

    def holder(s: Any) -> Iterator[int]:
        with s:
            yield 1
            yield 2

    try:
        for step in range(STEPS):
            op = rng.choice(
                ["create", "enter", "enter", "leave", "leave", "import", "import",
                 "generator", "generator_close", "close", "close_race"]
            )  # fmt: skip
            w = rng.choice(workers)
            mine = stacks[w.index]
            trace.append(f"{step}: {op} on thread {w.index}")
            if op == "create" and len(sessions) < 4:
                counter += 1
                keep = rng.random() < 0.5
                s = subsession.Session(
                    f"rw{counter}",
                    paths=[str(private_root)],
                    keep_global=[shared] if keep else [],
                )
                sessions.append(s)
            elif op == "enter" and sessions and len(mine) < 4:
                s = rng.choice(sessions)
                mine.append(Frame(s, token=w.run(s._core.enter)))
            elif op == "leave":
                blocks = [f for f in mine if f.token is not None and not f.left]
                if blocks:
                    frame = rng.choice(blocks)  # not always the innermost
                    w.run(lambda f=frame: f.session._core.exit(f.token))
                    leave(w.index, frame)
            elif op == "import" and mine:
                s = mine[-1].session
                got = w.run(lambda: import_stmt(shared))
                if shared in s.keep_global:
                    assert got is host_module, f"step {step}: keep_global gave {got!r}"
                else:
                    assert got.VERSION == "private" and got is s.modules[shared], (
                        f"step {step}: {s!r} gave {got!r}"
                    )
            elif op == "generator" and sessions and len(mine) < 4:
                held = rng.choice(sessions)
                g = holder(held)
                w.run(lambda g=g: next(g))
                mine.append(Frame(held, generator=g))
            elif op == "generator_close":
                held_by = [
                    (t, f)
                    for t, stack in stacks.items()
                    for f in stack
                    if f.generator is not None and not f.left
                ]
                if held_by:
                    thread, frame = rng.choice(held_by)
                    w.run(frame.generator.close)  # often on another thread
                    leave(thread, frame)
            elif op == "close" and sessions:
                s = rng.choice(sessions)
                if active(s):
                    with pytest.raises(subsession.SessionError, match="is active"):
                        w.run(s.close)
                else:
                    w.run(s.close)
                    sessions.remove(s)
            elif op == "close_race" and sessions:
                s = rng.choice(sessions)
                others = [x for x in workers if x is not w and not stacks[x.index]]
                if others and not active(s) and not mine:
                    enterer = others[0]

                    def enter_and_leave(s: Any = s) -> str:
                        try:
                            with s:
                                import_stmt(shared)
                                assert not s.closed
                            return "entered"
                        except subsession.ClosedSessionError:
                            return "closed"

                    def close_until_done(s: Any = s) -> None:
                        while True:
                            try:
                                s.close()
                                return
                            except subsession.SessionError as e:
                                assert "is active" in str(e)

                    enterer.submit(enter_and_leave)
                    w.submit(close_until_done)
                    assert enterer.result() in ("entered", "closed")
                    w.result()
                    assert s.closed
                    sessions.remove(s)
            shown = [
                [f"{f.session.name}{'*' if f.left else ''}{'g' if f.generator else ''}" for f in st]
                for st in stacks.values()
            ]
            trace.append(f"   {shown}  (* asked to leave, g held by a generator)")
            if not any(stacks.values()):
                assert_state_equal(before)
                assert not leaked_real_names()
    except BaseException:
        print(f"random walk failed at step {step} (seed {SEED})", file=sys.stderr)
        print("\n".join(trace[-60:]), file=sys.stderr)
        raise
    finally:
        for index, stack in stacks.items():
            for frame in reversed(stack):
                if frame.left:
                    continue
                if frame.generator is not None:
                    workers[index].run(frame.generator.close)
                else:
                    workers[index].run(lambda f=frame: f.session._core.exit(f.token))
        for s in sessions:
            if not s.closed:
                s.close()
        for w in workers:
            w.stop()
    assert_state_equal(before)
