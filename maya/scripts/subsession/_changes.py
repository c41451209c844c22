"""Change notifications from the core: who created, configured, reloaded or closed
which session, whatever made the change (Python, the ``subSession`` command, the C ABI).

>>> import subsession
>>> token = subsession.subscribe(print, kinds=["created", "closed"])   # doctest: +SKIP
>>> s = subsession.Session("toolA")                                     # doctest: +SKIP
Change(kind='created', name='toolA', prefix='__subsession_toolA__', modules=())
>>> subsession.unsubscribe(token)                                       # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Callable, Literal, NamedTuple, Optional, Union

from subsession import _core

__all__ = ["Change", "ChangeKind", "last_reloads", "subscribe", "unsubscribe"]

ChangeKind = Literal["created", "configured", "imported", "reloaded", "closed"]


class Change(NamedTuple):
    """One change of one session.

    - ``kind``: ``"created"``, ``"configured"`` (settings replaced), ``"imported"``
      (a module of the session finished executing; ``modules`` names it),
      ``"reloaded"`` (``modules``: the names reloaded, in order), ``"closed"``
      (``modules``: the names unloaded).
    - ``name``: the registered name, ``None`` for an anonymous session.
    - ``prefix``: the qualified-name prefix, unique for the life of the process.
    """

    kind: ChangeKind
    name: Optional[str]
    prefix: str
    modules: tuple[str, ...]


def subscribe(
    callback: Callable[[Change], object],
    kinds: Union[ChangeKind, Iterable[ChangeKind], None] = None,
) -> int:
    """Call ``callback(change)`` after every change of the given ``kinds`` (default all;
    one kind as a string, ``kinds="closed"``, or several in a list).

    Returns a token for :func:`unsubscribe`. The callback runs on the thread that made
    the change, right after it (a session is created before its ``Session`` object
    is fully built: look it up by name or prefix later, not inside the callback). An
    exception in the callback is logged as a WARNING (logger ``subsession``) and does
    not reach the code that made the change. Keep callbacks short: ``"imported"``
    fires once per module. A UI should hand the change to its own thread (a queued Qt
    signal) and return.
    """
    if not callable(callback):
        raise TypeError(
            "subscribe() takes a callable, e.g. subscribe(lambda change: print(change))"
        )

    def deliver(
        kind: ChangeKind, name: Optional[str], prefix: str, modules: tuple[str, ...]
    ) -> None:
        callback(Change(kind, name, prefix, tuple(modules)))

    deliver.__qualname__ = f"subscribe({getattr(callback, '__qualname__', callback)!s})"
    # One kind as a plain string ("closed"), not its letters.
    wanted: Optional[list[str]] = (
        None if kinds is None else [kinds] if isinstance(kinds, str) else list(kinds)
    )
    return _core.subscribe(deliver, wanted)


def unsubscribe(token: int) -> bool:
    """Stop the callback of ``token``; returns whether it was subscribed."""
    return _core.unsubscribe(token)


# -- last reload times (what the session manager shows) ------------------------------------

_reloads: dict[str, dict[str, float]] = {}
_reloads_lock = threading.Lock()


def _record(change: Change) -> None:
    with _reloads_lock:
        if change.kind == "closed":
            _reloads.pop(change.prefix, None)
            return
        now = time.time()
        times = _reloads.setdefault(change.prefix, {})
        for name in change.modules:
            times[name] = now


def last_reloads(prefix: str) -> dict[str, float]:
    """Real module name -> time (``time.time()``) of its last reload, for one session."""
    with _reloads_lock:
        return dict(_reloads.get(prefix, {}))


_core.subscribe(
    lambda kind, name, prefix, modules: _record(Change(kind, name, prefix, tuple(modules))),
    ["reloaded", "closed"],
)
