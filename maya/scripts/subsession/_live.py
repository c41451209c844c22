"""Module hooks and Maya registrations around reloads and ``close()`` (docs/contract.md §5.5, §9.3).

The Rust core calls :func:`before_reload` and :func:`after_reload` around each
module's re-execution; :meth:`subsession.Session.close` calls :func:`before_close`.

Maya registrations: once :func:`install_maya` ran (the plug-in, ``subsession.maya``
and ``import subsession`` inside Maya call it), ``cmds.scriptJob``, ``cmds.menu``,
``cmds.menuItem``, ``cmds.window``, ``cmds.workspaceControl`` and the
``add*Callback`` functions of the ``M*Message`` classes record what *session code*
creates, per module: API 2.0 (``maya.api.OpenMaya`` and the ``maya.api._OpenMaya_py2``
it re-exports, ``OpenMayaUI``, ``OpenMayaAnim``; int ids) and API 1.0
(``maya.OpenMaya`` & co.; ``MCallbackId`` ids). Global code's registrations are never
recorded, so never removed.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import traceback
from typing import Any, Callable, NamedTuple

__all__ = [
    "after_reload",
    "before_close",
    "before_reload",
    "install_maya",
    "owner_of",
    "registrations",
]

log = logging.getLogger("subsession")

# -- hooks -------------------------------------------------------------------------------


def call_hook(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``; an exception is logged as a WARNING with its traceback (never raised).

    The traceback goes into the message as text: a record holding the exception would
    keep the frames, and with them the modules a ``close()`` is about to unload."""
    try:
        return fn(*args)
    except Exception:
        log.warning("%s raised; going on without it\n%s", what, traceback.format_exc().rstrip())
        return None


def _hook(module: Any, name: str) -> Callable[..., Any] | None:
    fn = getattr(module, "__dict__", {}).get(name)
    return fn if callable(fn) else None


def before_reload(session: Any, real: str, module: Any) -> Any:
    """Before ``module`` re-executes: remove the Maya registrations of its previous
    execution, then call its ``__before_reload__()``; returns the state for after."""
    remove_module(session, real)
    hook = _hook(module, "__before_reload__")
    if hook is None:
        return None
    return call_hook(f"{real}.__before_reload__()", hook)


def after_reload(session: Any, real: str, module: Any, state: Any) -> None:
    """After the batch: the new code's ``__after_reload__(state)`` (the old code's, when
    the reload failed and was rolled back)."""
    hook = _hook(module, "__after_reload__")
    if hook is not None:
        call_hook(f"{real}.__after_reload__(state)", hook, state)


def before_close(session: Any, modules: dict[str, Any]) -> list[str]:
    """Before a session unloads: each module's ``__before_unload__()`` (submodules first),
    then every Maya registration of its code is removed; returns what was removed."""
    for real in sorted(modules, reverse=True):
        hook = _hook(modules[real], "__before_unload__")
        if hook is not None:
            call_hook(f"{real}.__before_unload__()", hook)
    return remove_session(session)


# -- who is calling ------------------------------------------------------------------------

_adopted_lock = threading.Lock()
#: real module name -> the session that adopted it (``subsession.adopt``)
adopted: dict[str, Any] = {}


def _session_of(module_name: str) -> tuple[Any, str] | None:
    if module_name.startswith("__subsession_"):
        from subsession import _core

        for session in _core.sessions():
            prefix = session.prefix + "."
            if module_name.startswith(prefix):
                return session, module_name[len(prefix) :]
        return None
    owner = adopted.get(module_name)
    if owner is not None:
        return owner, module_name
    return None


def owner_of(depth: int = 1) -> tuple[Any, str] | None:
    """(session, real module name) of the session code calling, or None for global code.

    The innermost session frame decides the session; the module whose top-level code
    is executing (an import or a reload) owns what is created, else the innermost
    session module (a callback creating UI at run time)."""
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:
        return None
    found: tuple[Any, str] | None = None
    steps = 0
    while frame is not None and steps < 64:
        name = frame.f_globals.get("__name__")
        if isinstance(name, str):
            owner = _session_of(name)
            if owner is not None:
                if found is None:
                    found = owner
                if owner[0] is found[0] and frame.f_code.co_name == "<module>":
                    return owner
        frame = frame.f_back  # type: ignore[assignment]
        steps += 1
    return found


# -- Maya registrations --------------------------------------------------------------------


class Registration(NamedTuple):
    kind: str  # "scriptJob", "callback", "menu", "menuItem", "window", "workspaceControl"
    ident: Any  # job id, callback id, or UI path
    module: str

    def describe(self) -> str:
        ident = self.ident
        if not isinstance(ident, (int, str)):  # an API 1.0 MCallbackId: no readable value
            ident = f"{type(ident).__name__}@{id(ident):#x}"
        return f"{self.kind} {ident} ({self.module})"


_lock = threading.Lock()
#: session prefix -> registrations in creation order
registrations: dict[str, list[Registration]] = {}


def _record(kind: str, ident: Any) -> None:
    owner = owner_of(2)
    if owner is None:
        return
    session, real = owner
    with _lock:
        registrations.setdefault(session.prefix, []).append(Registration(kind, ident, real))


def _take(session: Any, module: str | None) -> list[Registration]:
    with _lock:
        regs = registrations.get(session.prefix, [])
        taken = [r for r in regs if module is None or r.module == module]
        kept = [r for r in regs if not (module is None or r.module == module)]
        if kept:
            registrations[session.prefix] = kept
        else:
            registrations.pop(session.prefix, None)
    return taken


def remove_module(session: Any, real: str) -> list[str]:
    """Removes what ``real``'s code registered in Maya (newest first)."""
    return _remove(_take(session, real))


def remove_session(session: Any) -> list[str]:
    """Removes what any code of ``session`` registered in Maya (newest first)."""
    return _remove(_take(session, None))


def _remove(regs: list[Registration]) -> list[str]:
    removed: list[str] = []
    for reg in reversed(regs):
        try:
            if _remove_one(reg):
                removed.append(reg.describe())
        except Exception:
            log.warning("could not remove %s; remove it by hand", reg.describe(), exc_info=True)
    for text in removed:
        log.info("removed %s", text)
    return removed


def _remove_one(reg: Registration) -> bool:
    if reg.kind == "callback":
        # API 2.0 ids are ints; API 1.0 ids are MCallbackId objects of maya.OpenMaya.
        api = "maya.api.OpenMaya" if isinstance(reg.ident, int) else "maya.OpenMaya"
        om = sys.modules.get(api)
        if om is None:
            return False
        try:
            om.MMessage.removeCallback(reg.ident)
        except RuntimeError:
            return False  # already removed by its owner
        return True
    cmds = sys.modules.get("maya.cmds")
    if cmds is None:
        return False
    real = _originals.get(reg.kind, getattr(cmds, reg.kind, None))
    if real is None:
        return False
    if reg.kind == "scriptJob":
        if not real(exists=reg.ident):
            return False
        real(kill=reg.ident, force=True)
        return True
    if not real(reg.ident, exists=True):
        return False
    if reg.kind == "menuItem":
        cmds.deleteUI(reg.ident, menuItem=True)
    elif reg.kind == "menu":
        cmds.deleteUI(reg.ident, menu=True)
    elif reg.kind == "window":
        cmds.deleteUI(reg.ident, window=True)
    else:
        cmds.deleteUI(reg.ident)
    return True


# -- installing the recorders ----------------------------------------------------------------

_UI = ("menu", "menuItem", "window", "workspaceControl")
_NOT_CREATING = {
    "scriptJob": ("kill", "k", "killAll", "ka", "exists", "ex", "listJobs", "lj",
                  "listEvents", "le", "listConditions", "lc"),
    "ui": ("edit", "e", "query", "q", "exists", "ex"),
}  # fmt: skip
_originals: dict[str, Callable[..., Any]] = {}
_install_lock = threading.Lock()


def _wrap_command(kind: str, original: Callable[..., Any]) -> Callable[..., Any]:
    blockers = _NOT_CREATING["scriptJob" if kind == "scriptJob" else "ui"]

    @functools.wraps(original)
    def command(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        creates = not any(kwargs.get(flag) for flag in blockers)
        if creates and result:
            _record(kind, result)
        return result

    command.__subsession_original__ = original  # type: ignore[attr-defined]
    return command


def _callback_ids(result: Any) -> list[Any]:
    """The callback ids in what an ``add*Callback`` returned: an int (API 2.0), an
    ``MCallbackId`` (API 1.0), or a list/array of them."""
    if isinstance(result, bool) or result is None:
        return []
    if isinstance(result, int) or type(result).__name__ == "MCallbackId":
        return [result]
    if isinstance(result, (list, tuple)):
        return [i for r in result for i in _callback_ids(r)]
    length = getattr(result, "length", None)  # API 1.0 MCallbackIdArray
    if callable(length):
        return [i for n in range(int(length())) for i in _callback_ids(result[n])]
    return []


def _wrap_adder(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def add(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        for ident in _callback_ids(result):
            _record("callback", ident)
        return result

    add.__subsession_original__ = original  # type: ignore[attr-defined]
    return add


def _is_adder(name: str) -> bool:
    return name.startswith("add") and name.endswith("Callback")


def _unwrap(cls: Any) -> Any:
    if isinstance(cls, MessageProxy):
        return object.__getattribute__(cls, "__subsession_class__")
    return cls


class MessageProxy:
    """Stands in for an API 2.0 ``M*Message`` class in its module: attribute reads go to
    the class, and its ``add*Callback`` functions record what session code adds.
    (Maya's API 2.0 classes are built-in types: their attributes cannot be replaced.)

    ``isinstance``/``issubclass`` with a proxy answer for the class, and a class
    statement may derive from it."""

    def __init__(self, cls: Any) -> None:
        object.__setattr__(self, "__subsession_class__", cls)

    def __getattr__(self, name: str) -> Any:
        value = getattr(object.__getattribute__(self, "__subsession_class__"), name)
        if _is_adder(name) and callable(value):
            return _wrap_adder(value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "__subsession_class__"), name, value)

    def __repr__(self) -> str:
        return repr(object.__getattribute__(self, "__subsession_class__"))

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, object.__getattribute__(self, "__subsession_class__"))

    def __subclasscheck__(self, sub: Any) -> bool:
        return issubclass(_unwrap(sub), object.__getattribute__(self, "__subsession_class__"))

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[Any, ...]:
        return (object.__getattribute__(self, "__subsession_class__"),)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return object.__getattribute__(self, "__subsession_class__")(*args, **kwargs)


#: API 2.0 modules whose M*Message classes are proxied; each re-exports the classes of
#: its ``_*_py2`` module, which some plug-ins import directly.
API2_MODULES = (
    "maya.api.OpenMaya",
    "maya.api._OpenMaya_py2",
    "maya.api.OpenMayaUI",
    "maya.api._OpenMayaUI_py2",
    "maya.api.OpenMayaAnim",
    "maya.api._OpenMayaAnim_py2",
)
#: API 1.0 modules (SWIG: their classes are Python classes, patched in place).
API1_MODULES = ("maya.OpenMaya", "maya.OpenMayaUI", "maya.OpenMayaAnim", "maya.OpenMayaRender")
#: id(real class) -> its one proxy, shared by every module that holds the class
_proxies: dict[int, MessageProxy] = {}


def _is_message_class(name: str, value: Any) -> bool:
    return name.startswith("M") and name.endswith("Message") and isinstance(value, type)


def _proxy_api2(module: Any) -> None:
    for name, value in list(vars(module).items()):
        if _is_message_class(name, value):
            proxy = _proxies.get(id(value))
            if proxy is None:
                proxy = _proxies[id(value)] = MessageProxy(value)
            setattr(module, name, proxy)


def _patch_api1(module: Any) -> None:
    for name, cls in list(vars(module).items()):
        if not _is_message_class(name, cls):
            continue
        for attr in [a for a in vars(cls) if _is_adder(a)]:
            value = getattr(cls, attr)
            if not callable(value) or hasattr(value, "__subsession_original__"):
                continue
            try:
                setattr(cls, attr, staticmethod(_wrap_adder(value)))
            except (TypeError, AttributeError):  # a built-in type after all: proxy it
                _proxy_api2(module)
                break


def _rebind_session_globals() -> None:
    """``from maya.api.OpenMaya import MSceneMessage`` run by session code before the
    recorders were installed bound the real class: point such names at its proxy."""
    for name, module in list(sys.modules.items()):
        if module is None or not (name.startswith("__subsession_") or name in adopted):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            if isinstance(value, type):
                proxy = _proxies.get(id(value))
                if proxy is not None and _unwrap(proxy) is value:
                    namespace[key] = proxy


def install_maya() -> bool:
    """Start recording Maya registrations of session code (idempotent). False outside Maya."""
    with _install_lock:
        try:
            import importlib

            cmds = importlib.import_module("maya.cmds")
        except ImportError:
            return False
        for kind in ("scriptJob", *_UI):
            current = cmds.__dict__.get(kind)
            if current is None or hasattr(current, "__subsession_original__"):
                continue
            _originals[kind] = current
            setattr(cmds, kind, _wrap_command(kind, current))
        for api in API2_MODULES:
            try:
                _proxy_api2(importlib.import_module(api))
            except ImportError:
                continue
        for api in API1_MODULES:
            try:
                _patch_api1(importlib.import_module(api))
            except ImportError:
                continue
        _rebind_session_globals()
        return True
