"""Fake ``maya.utils``: ``executeDeferred`` and the log handlers Maya sets up.

As in Maya, ``executeDeferred`` queues work for the idle loop
(:func:`maya._host.run_idle`), and in batch mode (``mayapy``, ``maya -batch``) it does
not run the work at all: there is no idle loop. (PyMEL's documentation of its own
``executeDeferred`` wrapper: "Maya's version does not execute at all when in batch
mode".) Dropped calls are recorded in ``_host.state.dropped`` for tests. It may be
called from any thread: it is how other threads reach the main one (Autodesk, *Python
and threading*).

The log handlers follow Maya's ``maya/utils.py``: :func:`shellLogHandler` adds a
stream handler to the root logger and sets the root level to INFO;
:func:`guiLogHandler` adds a :class:`MayaGuiLogHandler` to the root logger and raises
the shell handler to CRITICAL; ``MayaGuiLogHandler.emit`` calls API 1.0
``maya.OpenMaya.MGlobal.displayError/Warning/Info`` (so, main thread only).
:func:`maya._host.start_gui` runs them in the order of Maya's start-up.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional

from maya import _host

_shell_handler: Optional[logging.Handler] = None
_gui_handler: Optional[logging.Handler] = None


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
    """Writes log records to the Script Editor: ERROR and above as Maya's error lines,
    WARNING as warning lines, lower levels as plain output (through API 1.0
    ``MGlobal``, as Maya's own handler does)."""

    def emit(self, record: logging.LogRecord) -> None:
        from maya import OpenMaya

        try:
            text = self.format(record)
            if record.levelno > logging.WARNING:
                OpenMaya.MGlobal.displayError(text)
            elif record.levelno > logging.INFO:
                OpenMaya.MGlobal.displayWarning(text)
            else:
                OpenMaya.MGlobal.displayInfo(text)
        except Exception:
            self.handleError(record)


def _root_add(handler: logging.Handler) -> None:
    root = logging.getLogger()
    if _host.state.root_level is None:
        _host.state.root_level = root.level
    root.addHandler(handler)
    _host.state.root_handlers.append(handler)


def shellLogHandler() -> logging.Handler:
    """The root logger's stream handler (created once; the root level becomes INFO)."""
    global _shell_handler
    if _shell_handler is None:
        _shell_handler = logging.StreamHandler(sys.stdout)
        _shell_handler.setFormatter(logging.Formatter("%(name)s : %(levelname)s : %(message)s"))
        _root_add(_shell_handler)
        logging.getLogger().setLevel(logging.INFO)
    return _shell_handler


def guiLogHandler() -> logging.Handler:
    """The root logger's Script Editor handler (created once; the shell handler is
    raised to CRITICAL so records are not printed twice)."""
    global _gui_handler
    if _gui_handler is None:
        shellLogHandler().setLevel(logging.CRITICAL)
        _gui_handler = MayaGuiLogHandler()
        _gui_handler.setFormatter(logging.Formatter("%(name)s : %(message)s"))
        _root_add(_gui_handler)
    return _gui_handler
