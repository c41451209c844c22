"""Reload on save (docs/contract.md §7): one polling thread for every watched session.

The thread only asks the Rust core which files changed (:class:`_core.Watch`: stats
and content hashes, without the GIL) and wakes the host's main thread; it never runs
module code. Reloads run on the main thread:

- inside interactive Maya: ``maya.utils.executeDeferred`` (Maya's idle queue);
- else, when a Qt ``QCoreApplication`` exists: a queued signal into its event loop;
- else (a plain interpreter, ``mayapy``): when the host calls :func:`process_pending`.

A burst of saves gives one reload: after a change the thread keeps looking every
``SETTLE_STEP`` seconds and hands the changes over only once the files were quiet
(no new change) for ``QUIET`` seconds, a window longer than the gap between an
editor's writes; changes found before the main thread got to them are merged too.
A failed reload is logged as a WARNING (the old code keeps running) and the next save
retries.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from typing import Any

from subsession import _core

__all__ = ["DEFAULT_INTERVAL", "process_pending", "take_pending", "unwatch", "watch", "watching"]

log = logging.getLogger("subsession")

DEFAULT_INTERVAL = 0.5
#: after a change, look again this often, merging what changed...
SETTLE_STEP = 0.02
#: ...until nothing changed for this long (an editor's writes come closer together: a
#: save-all, write-then-rename, or ten saves 20 ms apart is one reload)
QUIET = 0.15
#: a file rewritten without pause is reloaded anyway after this long
SETTLE_MAX = 2.0


class _Watched:
    __slots__ = ("session", "watch", "deep", "interval", "due", "maya")

    def __init__(self, session: Any, deep: bool, interval: float) -> None:
        self.session = session
        #: watch() ran on the main thread of an interactive Maya: deliver through its
        #: idle queue (decided here: Maya's commands are not for other threads)
        self.maya = _in_interactive_maya()
        self.watch = _core.Watch(session._core)
        self.deep = deep
        self.interval = interval
        self.due = time.monotonic() + interval


_lock = threading.RLock()
_watched: dict[int, _Watched] = {}
_pending: dict[int, tuple[Any, set[str]]] = {}
_scheduled = False
_changed = threading.Condition(_lock)
_thread: threading.Thread | None = None
_stopping = False
_waker: Any = None


def watch(session: Any, deep: bool, interval: float) -> None:
    global _thread
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError("interval takes seconds as a number, e.g. watch(interval=0.5)")
    if not 0.01 <= interval <= 3600:
        raise ValueError(f"interval {interval!r} is out of range; give 0.01 to 3600 seconds")
    if session.closed:
        raise _core.ClosedSessionError(
            f"session {session.name or session.prefix} is closed; create a new Session to watch"
        )
    watched = _Watched(session, bool(deep), float(interval))
    if not watched.maya and threading.current_thread() is threading.main_thread():
        qt = _qt_core()
        if qt is not None:
            _qt_waker(qt)  # built here, on the main thread: see _qt_waker
    with _lock:
        _watched[id(session)] = watched
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="subsession-watch", daemon=True)
            _thread.start()
        _changed.notify_all()


def unwatch(session: Any) -> None:
    with _lock:
        _watched.pop(id(session), None)
        _pending.pop(id(session), None)
        _changed.notify_all()


def watching(session: Any) -> bool:
    with _lock:
        return id(session) in _watched


def take_pending(session: Any) -> list[str] | None:
    """The changes the watcher found for ``session`` and not yet delivered (None when
    it is not watched)."""
    with _lock:
        if id(session) not in _watched:
            return None
        _, names = _pending.pop(id(session), (None, set()))
        return sorted(names)


def process_pending() -> list[str]:
    """Reload what the watchers found, here and now (call it on the host's main thread).

    Returns the real names reloaded, in order. A reload that fails is logged as a
    WARNING and keeps the old code; the next save retries.
    """
    global _scheduled
    with _lock:
        work = list(_pending.values())
        _pending.clear()
        _scheduled = False
        deep_of = {id(w.session): w.deep for w in _watched.values()}
    done: list[str] = []
    for session, names in work:
        if session.closed or id(session) not in deep_of:
            continue
        try:
            done.extend(session._reload_names(sorted(names), deep_of[id(session)]))
        except _core.ReloadError as err:
            # First line: where it failed; then the session's frames (a short traceback).
            first, _, frames = str(err).partition("\n")
            label = session.name or session.prefix
            log.warning(
                "%s (session %s; save again to retry)%s", first, label, frames and "\n" + frames
            )
        except Exception:
            log.warning("reload of %s failed", sorted(names), exc_info=True)
    return done


# -- the polling thread --------------------------------------------------------------------


def _run() -> None:
    while True:
        with _lock:
            if _stopping:
                return
            if not _watched:
                _changed.wait()
                continue
            now = time.monotonic()
            due = [w for w in _watched.values() if w.due <= now]
            if not due:
                _changed.wait(min(w.due for w in _watched.values()) - now)
                continue
            for w in due:
                w.due = now + w.interval
        for w in due:
            if _stopping:
                return
            try:
                _poll(w)
            except Exception:
                log.warning("watching %s failed", w.session.name or w.session.prefix, exc_info=True)


def _poll(w: _Watched) -> None:
    session = w.session
    if session.closed:
        unwatch(session)
        return
    if getattr(session, "_adopt_patterns", None):
        session._adopt_scan()
    names = set(w.watch.poll())
    if not names:
        return
    # Settle on quiet, not on a fixed delay from the first change: a burst still being
    # written must not reload halfway through.
    start = last = time.monotonic()
    while not _stopping:
        now = time.monotonic()
        if now - last >= QUIET or now - start >= SETTLE_MAX:
            break
        time.sleep(min(SETTLE_STEP, QUIET - (now - last)))
        more = w.watch.poll()
        if more:
            names.update(more)
            last = time.monotonic()
    with _lock:
        if id(session) not in _watched:
            return
        _pending.setdefault(id(session), (session, set()))[1].update(names)
    _wake(w.maya)


def _wake(maya: bool) -> None:
    global _scheduled
    with _lock:
        if _scheduled:
            return
        _scheduled = True
    try:
        if maya:
            import importlib

            importlib.import_module("maya.utils").executeDeferred(process_pending)
            return
        qt = _qt_core()
        if qt is not None:
            _qt_waker(qt).wake.emit()
            return
    except Exception:
        log.warning("could not schedule a reload on the main thread", exc_info=True)
    with _lock:
        _scheduled = False  # manual delivery: process_pending()


def _in_interactive_maya() -> bool:
    if "maya.cmds" not in sys.modules:
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        import importlib

        importlib.import_module("maya.utils")
        return not sys.modules["maya.cmds"].about(batch=True)
    except Exception:
        return False


def _qt_core() -> Any:
    for name in ("PySide6.QtCore", "PySide2.QtCore"):
        qt = sys.modules.get(name)
        if qt is not None and qt.QCoreApplication.instance() is not None:
            return qt
    return None


def _qt_waker(qt: Any) -> Any:
    """The QObject whose queued signal runs :func:`process_pending` in Qt's main thread.

    Built by :func:`watch` on the main thread; the polling thread builds it only if the
    application appeared later, and then never asks Qt for its own ``QThread``: a Python
    wrapper of a thread's ``QThread`` makes PySide2 take the GIL in Qt's thread-exit
    clean-up, and a thread ending while the interpreter finalises is then stopped inside
    a C++ destructor (``terminate called without an active exception``, an abort at
    exit, seen 2 runs in 10 with PySide2 5.15 on Python 3.9).
    """
    global _waker
    with _lock:
        if _waker is not None and _waker.__class__.__module__ == __name__:
            return _waker

        class Waker(qt.QObject):  # type: ignore[misc]
            wake = qt.Signal()

            def __init__(self) -> None:
                super().__init__()
                self.wake.connect(self.deliver)

            def deliver(self) -> None:
                process_pending()

        waker = Waker()
        # The application's thread only (a no-op when it is this one): never this
        # thread's own QThread, see above.
        waker.moveToThread(qt.QCoreApplication.instance().thread())
        _waker = waker
        return waker


@atexit.register
def _stop() -> None:
    """At exit: stop the thread and wait for it, so it is never inside the core (the GIL
    released) while the interpreter finalises."""
    global _stopping
    with _lock:
        _stopping = True
        _watched.clear()
        _changed.notify_all()
        thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=5)
