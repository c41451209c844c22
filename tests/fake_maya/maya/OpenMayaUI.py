"""Fake ``maya.OpenMayaUI``: ``MQtUtil``, the bridge between Maya's controls and Qt.

Pointers are C++ addresses (ints), as in Maya; wrap them with shiboken's
``wrapInstance``. ``getCurrentParent`` is the control whose ``uiScript`` is running.
"""

from __future__ import annotations

from typing import Any, Optional

from maya import _ui


def _address(widget: Any) -> Optional[int]:
    if widget is None:
        return None
    from subsession._qt import cpp_pointer

    return cpp_pointer(widget)


class MQtUtil:
    @staticmethod
    def getCurrentParent() -> Optional[int]:  # noqa: N802 - Maya's name
        """The layout being filled: the workspace control whose uiScript runs."""
        return _address(_ui.ui.current_parent)

    @staticmethod
    def findControl(name: str) -> Optional[int]:  # noqa: N802
        """The Qt widget of a UI object (full or short name), None if unknown."""
        found = _ui.find(name)
        return _address(getattr(found, "widget", None)) if found is not None else None

    @staticmethod
    def addWidgetToMayaLayout(control: int, layout: int) -> None:  # noqa: N802
        """Parent the Qt widget ``control`` into the Maya layout ``layout``."""
        from subsession._qt import QtWidgets, wrap_instance

        child = wrap_instance(int(control), QtWidgets.QWidget)
        parent = wrap_instance(int(layout), QtWidgets.QWidget)
        parent.layout().addWidget(child)
