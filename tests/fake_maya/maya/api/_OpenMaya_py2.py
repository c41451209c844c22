"""Fake ``maya.api._OpenMaya_py2``: where Maya's Python API 2.0 classes live.

``maya.api.OpenMaya`` re-exports them (``from maya.api._OpenMaya_py2 import *``), and
some plug-ins import this module directly, so a class replaced in one module's namespace
is still the original in the other. The classes a command plug-in uses:

``MSyntax``, ``MArgList``, ``MArgParser``/``MArgDatabase``, ``MPxCommand``,
``MFnPlugin``, ``MGlobal``, ``MObject``, with Maya's names, signatures and properties
(``MSyntax.enableQuery``/``enableEdit``, ``MArgParser.isQuery``/``isEdit`` are
properties in API 2.0, not methods). Misuse raises as Maya does: ``RuntimeError`` for
a failed status, ``TypeError`` for wrong argument types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from maya import _host

_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0"}


class MObject:
    """A handle to an internal Maya object (here: the plug-in being loaded)."""

    kNullObj: MObject

    def isNull(self) -> bool:
        return getattr(self, "_plugin", None) is None


MObject.kNullObj = MObject()


@dataclass
class _FlagSpec:
    short: str
    long: str
    types: list[int]
    multi: bool = False


class MSyntax:
    """Syntax for commands: flags, their argument types, objects, query/edit."""

    kInvalidArgType = 0
    kNoArg = 1
    kBoolean = 2
    kLong = 3
    kDouble = 4
    kString = 5
    kUnsigned = 6
    kDistance = 7
    kAngle = 8
    kTime = 9
    kSelectionItem = 10
    kLastArgType = 11
    kInvalidObjectFormat = 0
    kNone = 1
    kStringObjects = 2
    kSelectionList = 3
    kLastObjectFormat = 4

    def __init__(self) -> None:
        self.enableQuery = False
        self.enableEdit = False
        self._flags: list[_FlagSpec] = []
        self._object_format = MSyntax.kNone
        self._min_objects = 0
        self._max_objects: Optional[int] = None

    def addFlag(self, shortName: str, longName: str, *argTypes: Any) -> MSyntax:
        """Add a flag; names start with ``-``, short 1-3 letters, long at least 4."""
        types: list[int] = []
        for arg in argTypes:
            types.extend(arg if isinstance(arg, (list, tuple)) else [arg])
        types = types or [MSyntax.kNoArg]
        if len(types) > 6:
            raise TypeError("addFlag() takes at most 6 argument types")
        if not all(isinstance(t, int) and 0 < t < MSyntax.kLastArgType for t in types):
            raise TypeError(f"addFlag(): invalid argument type in {types}")
        for flag, low, high in ((shortName, 1, 3), (longName, 4, 64)):
            if not isinstance(flag, str) or not flag.startswith("-"):
                raise RuntimeError(f"(kInvalidParameter): flag name {flag!r} must start with '-'")
            if not low <= len(flag) - 1 <= high or not flag[1:].isalnum():
                raise RuntimeError(f"(kInvalidParameter): bad flag name {flag!r}")
            if flag[1:] in ("q", "query", "e", "edit") or self.lookup(flag) is not None:
                raise RuntimeError(f"(kInvalidParameter): flag {flag!r} is already in use")
        self._flags.append(_FlagSpec(shortName[1:], longName[1:], types))
        return self

    def makeFlagMultiUse(self, flagName: str) -> MSyntax:
        spec = self.lookup(flagName)
        if spec is None:
            raise RuntimeError(f"(kInvalidParameter): no flag {flagName!r}")
        spec.multi = True
        return self

    def setObjectType(
        self, objectFormat: int, minimumObjects: int = 0, maximumObjects: Optional[int] = None
    ) -> MSyntax:
        if objectFormat not in (MSyntax.kNone, MSyntax.kStringObjects, MSyntax.kSelectionList):
            raise RuntimeError("(kInvalidParameter): bad object format")
        self._object_format = objectFormat
        self._min_objects = minimumObjects
        self._max_objects = maximumObjects
        return self

    def setMinObjects(self, minimumObjects: int) -> MSyntax:
        self._min_objects = minimumObjects
        return self

    def setMaxObjects(self, maximumObjects: int) -> MSyntax:
        self._max_objects = maximumObjects
        return self

    def minObjects(self) -> int:
        return self._min_objects

    def maxObjects(self) -> int:
        return self._max_objects or 0

    # fake-only helpers (not Maya API) ------------------------------------------------
    def lookup(self, name: str) -> Optional[_FlagSpec]:
        """The flag called ``name`` (short or long, with or without ``-``)."""
        bare = name[1:] if name.startswith("-") else name
        for spec in self._flags:
            if bare in (spec.short, spec.long):
                return spec
        return None

    @property
    def flags(self) -> list[_FlagSpec]:
        return list(self._flags)


class MArgList:
    """Argument list for passing to commands."""

    kInvalidArgIndex = -1

    def __init__(self) -> None:
        self._items: list[Any] = []

    def addArg(self, arg: Any) -> MArgList:
        self._items.append(arg)
        return self

    def __len__(self) -> int:
        return len(self._items)

    def _at(self, index: int) -> Any:
        if not 0 <= index < len(self._items):
            raise IndexError("MArgList index out of range")
        return self._items[index]

    def asString(self, index: int) -> str:
        value = self._at(index)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def asBool(self, index: int) -> bool:
        return _as_bool(self._at(index))

    def asInt(self, index: int) -> int:
        return int(self._at(index))

    def asDouble(self, index: int) -> float:
        return float(self._at(index))

    def flagIndex(self, shortFlag: str, longFlag: Optional[str] = None) -> int:
        for i, item in enumerate(self._items):
            if isinstance(item, str) and item in (shortFlag, longFlag):
                return i
        return MArgList.kInvalidArgIndex


def _as_bool(value: Any) -> bool:
    if isinstance(value, (bool, int)):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise RuntimeError(f"(kInvalidParameter): {value!r} is not a boolean")


def _is_flag(word: Any) -> bool:
    return isinstance(word, str) and len(word) > 1 and word[0] == "-" and word[1].isalpha()


@dataclass
class _Parsed:
    uses: dict[str, list[list[Any]]] = field(default_factory=dict)
    objects: list[str] = field(default_factory=list)
    query: bool = False
    edit: bool = False


class MArgParser:
    """Command argument list parser: checks an MArgList against an MSyntax."""

    def __init__(self, syntax: MSyntax, argList: MArgList) -> None:
        if not isinstance(syntax, MSyntax) or not isinstance(argList, MArgList):
            raise TypeError("MArgParser(syntax, argList) takes an MSyntax and an MArgList")
        self._syntax = syntax
        self._parsed = _parse(syntax, argList._items)

    @property
    def isQuery(self) -> bool:
        return self._parsed.query

    @property
    def isEdit(self) -> bool:
        return self._parsed.edit

    @property
    def numberOfFlagsUsed(self) -> int:
        return sum(len(u) for u in self._parsed.uses.values())

    def _spec(self, flagName: str) -> _FlagSpec:
        spec = self._syntax.lookup(flagName)
        if spec is None:
            raise RuntimeError(f"(kInvalidParameter): no flag {flagName!r} in the syntax")
        return spec

    def isFlagSet(self, flagName: str) -> bool:
        return self._spec(flagName).long in self._parsed.uses

    def numberOfFlagUses(self, flagName: str) -> int:
        return len(self._parsed.uses.get(self._spec(flagName).long, []))

    def _arg(self, flagName: str, index: int, occurrence: int = 0) -> Any:
        uses = self._parsed.uses.get(self._spec(flagName).long)
        if not uses:
            raise RuntimeError(f"(kInvalidParameter): flag {flagName!r} is not set")
        args = uses[occurrence]
        if not 0 <= index < len(args):
            raise RuntimeError(f"(kInvalidParameter): flag {flagName!r} has no argument {index}")
        return args[index]

    def flagArgumentString(self, flagName: str, index: int) -> str:
        value = self._arg(flagName, index)
        if not isinstance(value, str):
            raise RuntimeError(f"(kInvalidParameter): argument of {flagName!r} is not a string")
        return value

    def flagArgumentBool(self, flagName: str, index: int) -> bool:
        value = self._arg(flagName, index)
        if not isinstance(value, bool):
            raise RuntimeError(f"(kInvalidParameter): argument of {flagName!r} is not a bool")
        return value

    def getFlagArgumentList(self, flagName: str, occurrence: int) -> MArgList:
        uses = self._parsed.uses.get(self._spec(flagName).long, [])
        if not 0 <= occurrence < len(uses):
            raise RuntimeError(f"(kInvalidParameter): flag {flagName!r} has no use {occurrence}")
        result = MArgList()
        for value in uses[occurrence]:
            result.addArg(value)
        return result

    def getObjectStrings(self) -> list[str]:
        return list(self._parsed.objects)


class MArgDatabase(MArgParser):
    """Command argument list parser (API 2.0 adds selection-list access, not faked)."""


def _parse(syntax: MSyntax, words: list[Any]) -> _Parsed:
    """Maya's parse: flags (each taking its arguments, none in query mode), then objects."""
    parsed = _Parsed()
    i = 0
    while i < len(words):
        word = words[i]
        if parsed.objects or not _is_flag(word):
            if _is_flag(word):
                raise RuntimeError(f"Invalid flag position: {word} (flags go before objects)")
            if syntax._object_format == MSyntax.kNone:
                raise RuntimeError(f"Invalid argument: {word!r} (the command takes no objects)")
            parsed.objects.append(str(word))
            i += 1
            continue
        bare = word[1:]
        if bare in ("q", "query") and syntax.enableQuery:
            parsed.query, i = True, i + 1
            continue
        if bare in ("e", "edit") and syntax.enableEdit:
            parsed.edit, i = True, i + 1
            continue
        spec = syntax.lookup(bare)
        if spec is None:
            raise RuntimeError(f"Invalid flag: {word}")
        kinds = [] if parsed.query or spec.types == [MSyntax.kNoArg] else spec.types
        args = words[i + 1 : i + 1 + len(kinds)]
        if len(args) < len(kinds):
            raise RuntimeError(f"Flag {word} needs {len(kinds)} argument(s)")
        values = [_convert(word, arg, kind) for arg, kind in zip(args, kinds)]
        if spec.long in parsed.uses and not spec.multi:
            raise RuntimeError(f"Flag {word} can only be used once")
        parsed.uses.setdefault(spec.long, []).append(values)
        i += 1 + len(kinds)
    count = len(parsed.objects)
    if count < syntax._min_objects or (
        syntax._max_objects is not None and count > syntax._max_objects
    ):
        raise RuntimeError("Too many objects or values." if count else "Not enough objects.")
    return parsed


def _convert(flag: str, value: Any, kind: int) -> Any:
    if kind == MSyntax.kString:
        if isinstance(value, str):
            return value
        raise RuntimeError(f"Invalid argument for flag {flag}: {value!r}, expected a string")
    if kind == MSyntax.kBoolean:
        try:
            return _as_bool(value)
        except RuntimeError:
            raise RuntimeError(
                f"Invalid argument for flag {flag}: {value!r}, expected a boolean"
            ) from None
    if kind in (MSyntax.kLong, MSyntax.kUnsigned):
        return int(value)
    return float(value) if kind == MSyntax.kDouble else value


class MPxCommand:
    """Base class for custom commands; results and messages are static, as in Maya."""

    kLong = 0
    kDouble = 1
    kString = 2
    kNoArg = 3

    def __init__(self) -> None:
        self._syntax: Optional[MSyntax] = None

    def doIt(self, args: MArgList) -> None:
        pass

    def isUndoable(self) -> bool:
        return False

    def hasSyntax(self) -> bool:
        return True

    def syntax(self) -> MSyntax:
        if self._syntax is None:
            raise RuntimeError("(kFailure): the command has no syntax")
        return self._syntax

    @staticmethod
    def setResult(value: Any) -> None:
        _host.state.result = _result_value(value)

    @staticmethod
    def appendToResult(value: Any) -> None:
        current = _host.state.result
        items = current if isinstance(current, list) else ([] if current is None else [current])
        added = _result_value(value)
        items.extend(added if isinstance(added, list) else [added])
        _host.state.result = items

    @staticmethod
    def clearResult() -> None:
        _host.state.result = None

    @staticmethod
    def currentResult() -> Any:
        return _host.state.result

    @staticmethod
    def isCurrentResultArray() -> bool:
        return isinstance(_host.state.result, list)

    @staticmethod
    def displayError(msg: str, showLineNumbers: bool = False) -> None:
        _host.message("error", msg)

    @staticmethod
    def displayWarning(msg: str, showLineNumbers: bool = False) -> None:
        _host.message("warning", msg)

    @staticmethod
    def displayInfo(msg: str, showLineNumbers: bool = False) -> None:
        _host.message("info", msg)


def _result_value(value: Any) -> Any:
    """What ``setResult`` keeps; Maya's integer results are 32-bit C ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _int32(value)
    if isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_int32(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        if items and (
            all(isinstance(v, str) for v in items)
            or all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)
        ):
            return items
    raise TypeError(
        "setResult() expects a bool, int, float, string or a non-empty sequence of "
        f"strings or numbers, got {value!r}"
    )


def _int32(value: int) -> int:
    if not -(2**31) <= value <= 2**31 - 1:
        raise OverflowError("signed integer is greater than maximum")
    return value


class MFnPlugin:
    """Register and deregister plug-in services with Maya."""

    def __init__(
        self,
        object: Optional[MObject] = None,
        vendor: str = "Unknown",
        version: str = "Unknown",
        requiredApiVersion: str = "Any",
    ) -> None:
        plugin = getattr(object, "_plugin", None) if isinstance(object, MObject) else None
        if plugin is None or plugin not in _host.state.plugins:
            raise TypeError("MFnPlugin() needs the plug-in MObject given to initializePlugin")
        self._plugin: str = plugin
        if vendor != "Unknown" or version != "Unknown":
            record = _host.state.plugins[plugin]
            record.vendor, record.version = str(vendor), str(version)

    def registerCommand(
        self, cmdName: str, createCmdFunc: Callable[[], Any], createSyntaxFunc: Any = None
    ) -> None:
        _host.register_command(self._plugin, cmdName, createCmdFunc, createSyntaxFunc)

    def deregisterCommand(self, cmdName: str) -> None:
        _host.deregister_command(self._plugin, cmdName)

    def name(self) -> str:
        return self._plugin

    def vendor(self) -> str:
        return _host.state.plugins[self._plugin].vendor

    @property
    def version(self) -> str:
        return _host.state.plugins[self._plugin].version

    def loadPath(self) -> str:
        import os

        return os.path.dirname(_host.state.plugins[self._plugin].path)


class MGlobal:
    """Static class providing common API global functions."""

    kInteractive = 0
    kBatch = 1
    kLibraryApp = 2
    kBaseUIMode = 3

    @staticmethod
    def mayaState() -> int:
        return MGlobal.kBatch if _host.state.batch else MGlobal.kInteractive

    @staticmethod
    def apiVersion() -> int:
        return int(_host.state.api_version)

    # The display functions reach the Script Editor: main thread only (_host.message).
    @staticmethod
    def displayError(msg: str) -> None:
        _host.message("error", msg)

    @staticmethod
    def displayWarning(msg: str) -> None:
        _host.message("warning", msg)

    @staticmethod
    def displayInfo(msg: str) -> None:
        _host.message("info", msg)


# -- messages (callbacks) ------------------------------------------------------------------------


class _BuiltinType(type):
    """Maya's API classes are built-in types: their attributes cannot be replaced."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise TypeError(f"cannot set {name!r} attribute of immutable type {cls.__name__!r}")


def _add(message: str, function: Any, clientData: Any) -> int:
    if not callable(function):
        raise TypeError("the callback must be callable")
    ident = _host.state.next_callback
    _host.state.next_callback += 1
    _host.state.callbacks[ident] = (message, function, clientData)
    return ident


class MMessage(metaclass=_BuiltinType):
    """Base of the message classes: removes callbacks by id."""

    kDefaultAction = 0

    @staticmethod
    def removeCallback(id: int) -> None:
        if id not in _host.state.callbacks:
            raise RuntimeError("(kInvalidParameter): Object does not exist")
        del _host.state.callbacks[id]

    @staticmethod
    def removeCallbacks(ids: Any) -> None:
        for ident in list(ids):
            MMessage.removeCallback(ident)


class MEventMessage(MMessage):
    @staticmethod
    def addEventCallback(eventName: str, function: Any, clientData: Any = None) -> int:
        return _add(eventName, function, clientData)


class MSceneMessage(MMessage):
    kAfterOpen = 2
    kBeforeSave = 6

    @staticmethod
    def addCallback(message: int, function: Any, clientData: Any = None) -> int:
        return _add(f"scene:{message}", function, clientData)


class MDGMessage(MMessage):
    @staticmethod
    def addNodeAddedCallback(
        function: Any, nodeType: str = "dependNode", clientData: Any = None
    ) -> int:
        return _add(f"nodeAdded:{nodeType}", function, clientData)


class MTimerMessage(MMessage):
    @staticmethod
    def addTimerCallback(period: float, function: Any, clientData: Any = None) -> int:
        return _add("timer", function, clientData)
