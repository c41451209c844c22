"""Helpers for the session manager tests: an offscreen QApplication and event pumping.

Needs PySide6 (``pip install PySide6-Essentials``) or PySide2; ``scripts/test``
installs PySide6 into each test venv. ``QT_QPA_PLATFORM=offscreen`` is set here unless
the caller chose a platform.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:
    from subsession._qt import API, QtCore, QtGui, QtWidgets
except ImportError as error:  # a clear failure, never a silent skip
    raise ImportError(
        f"the session manager tests need Qt: pip install PySide6-Essentials ({error})"
    ) from error

__all__ = ["API", "QtCore", "QtGui", "QtWidgets", "app", "blank_fraction", "pump", "pump_until"]


def app() -> Any:
    instance = QtWidgets.QApplication.instance()
    return instance if instance is not None else QtWidgets.QApplication([])


def pump(seconds: float = 0.05) -> None:
    """Run the event loop for a while (queued signals, timers, deferred deletes)."""
    end = time.monotonic() + seconds
    while True:
        QtWidgets.QApplication.processEvents()
        QtCore.QCoreApplication.sendPostedEvents(None, 0)
        if time.monotonic() >= end:
            return
        time.sleep(0.005)


def pump_until(condition: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        pump(0.01)


def blank_fraction(image: Any) -> tuple[float, int]:
    """(share of sampled pixels equal to the most common colour, distinct colours)."""
    counts: dict[int, int] = {}
    for y in range(0, image.height(), 3):
        for x in range(0, image.width(), 3):
            rgb = image.pixel(x, y)
            counts[rgb] = counts.get(rgb, 0) + 1
    total = sum(counts.values())
    return max(counts.values()) / total, len(counts)
