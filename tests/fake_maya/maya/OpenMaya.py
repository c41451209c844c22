"""Fake ``maya.OpenMaya`` (Python API 1.0): ``MGlobal`` and the ``M…Message`` callbacks.

API 1.0 is SWIG-generated: its classes are ordinary Python classes (their attributes
can be replaced, unlike API 2.0's built-in types), and an ``add*Callback`` returns an
``MCallbackId`` object, not an int; ``MMessage.removeCallback(id)`` removes it and
raises ``RuntimeError`` for an id that is no longer registered. Callbacks land in the
same table as API 2.0's (``_host.state.callbacks``), so :func:`maya._host.fire` runs
both. PyMEL and many older tools use this API.
"""

from __future__ import annotations

from typing import Any

from maya import _host


class MCallbackId:
    """An opaque callback handle (SWIG proxy of ``MCallbackId *``)."""

    __slots__ = ("_number",)

    def __init__(self, number: int) -> None:
        self._number = number

    def __repr__(self) -> str:
        swig = f"<Swig Object of type 'MCallbackId *' at {self._number:#x}>"
        return f"<maya.OpenMaya.MCallbackId; proxy of {swig} >"


class MGlobal:
    """API 1.0 ``MGlobal``: what Maya's own ``MayaGuiLogHandler`` calls."""

    @staticmethod
    def displayError(msg: str) -> None:
        _host.message("error", str(msg))

    @staticmethod
    def displayWarning(msg: str) -> None:
        _host.message("warning", str(msg))

    @staticmethod
    def displayInfo(msg: str) -> None:
        _host.message("info", str(msg))

    @staticmethod
    def apiVersion() -> int:
        _host.main_thread_only("MGlobal.apiVersion")
        return int(_host.state.api_version)


def _add(message: str, function: Any, clientData: Any) -> MCallbackId:
    _host.main_thread_only(f"add callback {message}")
    if not callable(function):
        raise TypeError("in method 'add...Callback', argument 2 must be callable")
    ident = MCallbackId(_host.state.next_callback)
    _host.state.next_callback += 1
    _host.state.callbacks[ident] = (message, function, clientData)
    return ident


class MMessage:
    """Base of the message classes: removes callbacks by ``MCallbackId``."""

    @staticmethod
    def removeCallback(id: MCallbackId) -> None:
        _host.main_thread_only("MMessage.removeCallback")
        if not isinstance(id, MCallbackId):
            raise TypeError("in method 'MMessage_removeCallback', argument 1 of type 'MCallbackId'")
        if id not in _host.state.callbacks:
            raise RuntimeError("(kInvalidParameter): Object does not exist")
        del _host.state.callbacks[id]


class MEventMessage(MMessage):
    @staticmethod
    def addEventCallback(eventName: str, function: Any, clientData: Any = None) -> MCallbackId:
        return _add(eventName, function, clientData)


class MSceneMessage(MMessage):
    kAfterOpen = 2
    kBeforeSave = 6

    @staticmethod
    def addCallback(message: int, function: Any, clientData: Any = None) -> MCallbackId:
        return _add(f"scene:{message}", function, clientData)


class MDGMessage(MMessage):
    @staticmethod
    def addNodeAddedCallback(
        function: Any, nodeType: str = "dependNode", clientData: Any = None
    ) -> MCallbackId:
        return _add(f"nodeAdded:{nodeType}", function, clientData)
