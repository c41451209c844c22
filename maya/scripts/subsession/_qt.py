"""The one Qt compatibility layer of subsession: PySide6 (Maya 2025+) or PySide2
(Maya 2023-2024), whichever the host has.

Choice: a binding the process already imported wins (Maya imports its own at
start-up), then ``$SUBSESSION_QT`` (``PySide6`` or ``PySide2``), then PySide6, then
PySide2. Type checking always sees PySide6's names; where PySide2 differs this module
bridges it (``QAction``, ``exec_``, ``wrap_instance``, ``cpp_pointer``, ``is_valid``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

__all__ = [
    "API",
    "QAction",
    "QtCore",
    "QtGui",
    "QtWidgets",
    "Signal",
    "cpp_pointer",
    "exec_",
    "is_valid",
    "wrap_instance",
]

_BINDINGS = ("PySide6", "PySide2")


def _choose() -> str:
    for name in _BINDINGS:
        if name in sys.modules:
            return name
    wanted = os.environ.get("SUBSESSION_QT", "")
    if wanted and wanted not in _BINDINGS:
        raise ImportError(f"SUBSESSION_QT={wanted!r} is not supported; set PySide6 or PySide2")
    order = [wanted] if wanted else list(_BINDINGS)
    errors = []
    for name in order:
        try:
            importlib.import_module(f"{name}.QtWidgets")
            return name
        except ImportError as error:
            errors.append(f"{name}: {error}")
    raise ImportError(
        "the session manager needs PySide6 or PySide2 (Maya ships one); outside Maya "
        f"install one, e.g. pip install PySide6-Essentials ({'; '.join(errors)})"
    )


if TYPE_CHECKING:
    import shiboken6 as _shiboken
    from PySide6 import QtCore, QtGui, QtWidgets
    from PySide6.QtCore import Signal
    from PySide6.QtGui import QAction

    API = "PySide6"
else:
    API = _choose()
    QtCore = importlib.import_module(f"{API}.QtCore")
    QtGui = importlib.import_module(f"{API}.QtGui")
    QtWidgets = importlib.import_module(f"{API}.QtWidgets")
    _shiboken = importlib.import_module("shiboken6" if API == "PySide6" else "shiboken2")
    Signal = QtCore.Signal
    QAction = QtGui.QAction if API == "PySide6" else QtWidgets.QAction


def exec_(obj: Any) -> Any:
    """``obj.exec()`` (PySide6) or ``obj.exec_()`` (PySide2): dialogs, menus, apps."""
    run = getattr(obj, "exec", None) or obj.exec_
    return run()


def wrap_instance(pointer: int, cls: type[Any]) -> Any:
    """The Python wrapper of a C++ ``QObject*`` (Maya's ``MQtUtil`` pointers)."""
    return _shiboken.wrapInstance(int(pointer), cls)


def cpp_pointer(obj: Any) -> int:
    """The address of ``obj``'s C++ object, for Maya's ``MQtUtil`` calls."""
    return int(_shiboken.getCppPointer(obj)[0])


def is_valid(obj: Any) -> bool:
    """False once the C++ object behind ``obj`` was deleted."""
    return bool(_shiboken.isValid(obj))
