"""Fake ``maya.utils``: ``executeDeferred`` queues work for the idle loop.

As in Maya, in batch mode the call runs at once; otherwise it waits for
:func:`maya._host.run_idle` (Maya's idle queue).
"""

from __future__ import annotations

from typing import Any

from maya import _host


def executeDeferred(fn: Any, *args: Any, **kwargs: Any) -> None:
    """Run ``fn(*args, **kwargs)`` (or the Python source ``fn``) when Maya is idle."""
    if isinstance(fn, str):
        source = fn

        def fn() -> None:
            exec(source, {"__name__": "__main__"})

    elif not callable(fn):
        raise TypeError("executeDeferred() expects a callable or a string of Python code")
    _host.state.deferred.append((fn, args, kwargs))
    if _host.state.batch:
        _host.run_idle()
