"""Fake ``maya.utils``: ``executeDeferred`` and the Script Editor's log handler.

As in Maya, ``executeDeferred`` queues work for the idle loop
(:func:`maya._host.run_idle`), and in batch mode (``mayapy``, ``maya -batch``) it does
not run the work at all: there is no idle loop. (PyMEL's documentation of its own
``executeDeferred`` wrapper: "Maya's version does not execute at all when in batch
mode".) Dropped calls are recorded in ``_host.state.dropped`` for tests.
"""

from __future__ import annotations

import logging
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
    if _host.state.batch:
        _host.state.dropped.append((fn, args, kwargs))
        return
    _host.state.deferred.append((fn, args, kwargs))


class MayaGuiLogHandler(logging.Handler):
    """Writes log records to the Script Editor: ERROR/WARNING as Maya's error/warning
    lines, lower levels as plain output."""

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            _host.message("error", text)
        elif record.levelno >= logging.WARNING:
            _host.message("warning", text)
        else:
            _host.message("info", text)
