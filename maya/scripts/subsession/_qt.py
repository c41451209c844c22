"""The one Qt compatibility layer of subsession: PySide6 (Maya 2025+) or PySide2
(Maya 2023-2024).

Choice: ``$SUBSESSION_QT`` (``PySide6`` or ``PySide2``) if set; inside Maya, the
binding of its version (``cmds.about(apiVersion=True)``: PySide2 before 2025, PySide6
from 2025), whatever else a tool imported first (a PySide6 from a user's
site-packages in Maya 2024 would not share Maya's Qt); elsewhere a binding the process
already imported, then PySide6, then PySide2. Type checking always sees PySide6's
names; where PySide2 differs this module bridges it (``QAction``, ``exec_``,
``wrap_instance``, ``cpp_pointer``, ``is_valid``).
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


#: The first Maya whose Qt binding is PySide6 (Qt 6); older ones ship PySide2.
PYSIDE6_MAYA_API = 20250000


def maya_binding() -> str | None:
    """The binding of the Maya this runs in (None outside Maya or if it cannot say)."""
    cmds = sys.modules.get("maya.cmds")
    about = getattr(cmds, "about", None)
    if about is None:
        return None
    try:
        api = int(about(apiVersion=True))
    except Exception:  # not Maya's cmds, or not its main thread: fall back below
        return None
    return "PySide6" if api >= PYSIDE6_MAYA_API else "PySide2"


def candidates() -> list[str]:
    """The bindings to try, in order (see the module's docstring)."""
    wanted = os.environ.get("SUBSESSION_QT", "")
    if wanted and wanted not in _BINDINGS:
        raise ImportError(f"SUBSESSION_QT={wanted!r} is not supported; set PySide6 or PySide2")
    if wanted:
        return [wanted]
    maya = maya_binding()
    if maya is not None:
        return [maya]
    imported = [name for name in _BINDINGS if name in sys.modules]
    return imported[:1] or list(_BINDINGS)


def _choose() -> str:
    errors = []
    for name in candidates():
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
