"""Fake ``maya.cmds``: plug-in loading, ``about``, ``warning``, ``scriptJob``, the UI
commands ``window``/``setParent``/``menu``/``menuItem``/``workspaceControl``/``deleteUI``,
and every command a loaded plug-in registered (``cmds.subSession(...)``), which vanish
on unload.

As in Maya: a scriptJob returns its job number, ``kill`` needs ``force=True`` for a
protected job and raises for an unknown one, ``exists`` answers for a number. The UI
commands only delegate to :mod:`maya._ui`, the one model of Maya's interface: they
return the full path of what they create (``MayaWindow|menu1``), take full or short
names, refuse a name in use, answer ``exists=True`` queries, and ``deleteUI`` raises
for an unknown object and deletes an object with everything under it.
"""

from __future__ import annotations

import functools
from typing import Any

from maya import _host, _ui


def about(
    *, batch: bool = False, version: bool = False, apiVersion: bool = False, **kwargs: Any
) -> Any:
    """``about(batch=True)`` -> whether Maya runs without UI; ``version=True`` -> "2025";
    ``apiVersion=True`` -> 20250000 (2024 and 20240000 on Python 3.9/3.10)."""
    if batch:
        return _host.state.batch
    if version:
        return str(_host.state.api_version // 10000)
    if apiVersion:
        return _host.state.api_version
    raise TypeError(f"about(): flag not faked: {sorted(kwargs) or 'none given'}")


def internalVar(*, userAppDir: bool = False, **kwargs: Any) -> str:
    """``internalVar(userAppDir=True)``: the user's Maya folder, with a trailing slash
    (``$MAYA_APP_DIR``, else ``~/maya/``), as Maya returns it."""
    if not userAppDir:
        raise TypeError(f"internalVar(): flag not faked: {sorted(kwargs) or 'none given'}")
    import os

    folder = _host.state.app_dir or os.environ.get("MAYA_APP_DIR") or "~/maya"
    return os.path.expanduser(folder).rstrip("/\\") + "/"


def error(*args: Any) -> None:
    """Print an error line and raise RuntimeError, as ``cmds.error`` does."""
    text = " ".join(str(a) for a in args)
    _host.message("error", text)
    raise RuntimeError(text)


def help(name: str = "", **kwargs: Any) -> str:  # noqa: A001 - Maya's name
    """The synopsis Maya builds from a command's registered syntax: every flag with its
    short and long name and argument types."""
    from maya.api.OpenMaya import MSyntax

    command = _host.state.commands.get(name)
    if command is None or kwargs:
        raise RuntimeError(f"help: no help for {name!r} in the fake (only plug-in commands)")
    syntax = command.syntax
    kinds = {MSyntax.kString: "String", MSyntax.kBoolean: "on|off", MSyntax.kLong: "Int"}
    lines = [f"Synopsis: {name} [flags] [String...]", "Flags:"]
    if syntax.enableEdit:
        lines.append("   -e -edit")
    if syntax.enableQuery:
        lines.append("   -q -query")
    for spec in sorted(syntax._flags, key=lambda f: f.long.lower()):
        args = " ".join(kinds.get(k, "") for k in spec.types if k != MSyntax.kNoArg)
        multi = " (multi-use)" if spec.multi else ""
        lines.append(f"{'-' + spec.short:>6} -{spec.long:<20} {args}{multi}".rstrip())
    return "\n".join(lines) + "\n"


def loadPlugin(*names: str, quiet: bool = False, qt: bool = False, **kwargs: Any) -> list[str]:
    """Load plug-ins by path or by name on ``MAYA_PLUG_IN_PATH``; returns the names."""
    if kwargs:
        raise TypeError(f"Invalid flag '{next(iter(kwargs))}'")
    loaded: list[str] = []
    for name in names:
        loaded.extend(_host.load_plugin(name, quiet or qt))
    return loaded


def unloadPlugin(*names: str, force: bool = False, f: bool = False) -> list[str]:
    """Unload plug-ins (``uninitializePlugin`` runs); returns the names."""
    for name in names:
        _host.unload_plugin(name)
    return [_host.plugin_name(n) for n in names]


def pluginInfo(name: str = "", *, query: bool = False, q: bool = False, **kwargs: Any) -> Any:
    """``pluginInfo(name, q=True, loaded=True)`` and ``path``/``version``/``vendor``/
    ``command``/``registered``; ``listPlugins=True`` without a name."""
    if not (query or q):
        raise RuntimeError("pluginInfo: only query mode is faked")
    plugin = _host.state.plugins.get(_host.plugin_name(name)) if name else None
    if kwargs.get("listPlugins") or kwargs.get("lp"):
        return sorted(_host.state.plugins) or None
    if kwargs.get("loaded") or kwargs.get("l"):
        return plugin is not None
    if kwargs.get("registered") or kwargs.get("r"):
        return plugin is not None
    if plugin is None:
        raise RuntimeError(f"Plug-in '{name}' is not loaded.")
    if kwargs.get("path") or kwargs.get("p"):
        return plugin.path
    if kwargs.get("version") or kwargs.get("v"):
        return plugin.version
    if kwargs.get("vendor") or kwargs.get("vd"):
        return plugin.vendor
    if kwargs.get("command") or kwargs.get("c"):
        return [c for c, cmd in _host.state.commands.items() if cmd.plugin == plugin.name] or None
    raise TypeError(f"pluginInfo: flag not faked: {sorted(kwargs)}")


def window(name: Any = None, **flags: Any) -> Any:
    """A top-level window: returns its name; it becomes the default parent."""
    return _ui.window(name, **flags)


def setParent(name: Any = None, **flags: Any) -> Any:  # noqa: N802 - Maya's name
    """The default parent of new menus (``menu=True``: of new menu items)."""
    return _ui.set_parent(name, **flags)


def menu(name: Any = None, **flags: Any) -> Any:
    """Create (in the default window, at start-up Maya's main window), edit or query a
    menu; returns its full path (``MayaWindow|menu1``)."""
    return _ui.menu(name, **flags)


def menuItem(name: Any = None, **flags: Any) -> Any:  # noqa: N802 - Maya's name
    """Create (in ``parent`` or the default menu), edit, query or test (``exists``) a menu
    item; returns its full path (``MayaWindow|menu1|menuItem1``)."""
    return _ui.menu_item(name, **flags)


def deleteUI(*names: str, **flags: Any) -> None:  # noqa: N802 - Maya's name
    """Delete UI objects with everything under them; unknown ones raise."""
    _ui.delete_ui(*names, **flags)


def workspaceControl(name: Any = None, **flags: Any) -> Any:  # noqa: N802 - Maya's name
    """Create (``uiScript`` required, run at once), edit (``restore``, ``visible``,
    ``close``, ``label``) and query a workspace control; returns its name."""
    return _ui.workspace_control(name, **flags)


def warning(*args: Any) -> None:
    """Print a warning in the Script Editor."""
    _host.message("warning", " ".join(str(a) for a in args))


def _main_thread_only(fn: Any) -> Any:
    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        _host.main_thread_only(f"cmds.{fn.__name__}")
        return fn(*args, **kwargs)

    return command


def __getattr__(name: str) -> Any:
    """Registered plug-in commands appear here, as in Maya, and vanish on unload."""
    if name.startswith("__") or name not in _host.state.commands:
        raise AttributeError(f"module 'maya.cmds' has no attribute {name!r}")

    @functools.wraps(_call)
    def command(*args: Any, **kwargs: Any) -> Any:
        if name not in _host.state.commands:
            raise RuntimeError(f"Command {name!r} is no longer registered")
        return _host.invoke(name, _host.python_words(name, args, kwargs))

    command.__name__ = command.__qualname__ = name
    return command


def _call(*args: Any, **kwargs: Any) -> Any:
    """A command registered by a plug-in."""


# -- scriptJob -------------------------------------------------------------------------------

_JOB_KINDS = ("event", "e", "conditionTrue", "ct", "conditionFalse", "cf", "idleEvent", "ie",
              "timeChange", "tc", "attributeChange", "ac", "uiDeleted", "uid")  # fmt: skip


def scriptJob(**kwargs: Any) -> Any:
    """Create a job (returns its number), or ``kill``/``exists``/``listJobs``/``killAll``."""
    state = _host.state
    kill = kwargs.pop("kill", kwargs.pop("k", None))
    force = bool(kwargs.pop("force", kwargs.pop("f", False)))
    if kill is not None:
        if kill not in state.jobs:
            raise RuntimeError(f"Job #{kill} does not exist.")
        if state.jobs[kill][2] and not force:
            raise RuntimeError(f"Job #{kill} is protected; use -force to kill it.")
        del state.jobs[kill]
        return None
    exists = kwargs.pop("exists", kwargs.pop("ex", None))
    if exists is not None:
        return exists in state.jobs
    if kwargs.pop("listJobs", kwargs.pop("lj", False)):
        return [f"{n}: {name}={script!r}" for n, (name, script, _) in sorted(state.jobs.items())]
    if kwargs.pop("killAll", kwargs.pop("ka", False)):
        for n in [n for n, job in state.jobs.items() if force or not job[2]]:
            del state.jobs[n]
        return None
    protected = bool(kwargs.pop("protected", kwargs.pop("pro", False)))
    kwargs.pop("parent", kwargs.pop("p", None))
    kwargs.pop("killWithScene", kwargs.pop("kws", None))
    kinds = [k for k in kwargs if k in _JOB_KINDS]
    if len(kinds) != 1 or set(kwargs) - set(kinds):
        raise TypeError(
            f"scriptJob: give one of -event, -conditionTrue, ... (got {sorted(kwargs)})"
        )
    value = kwargs[kinds[0]]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise TypeError("scriptJob: -event takes [name, script]")
    number = state.next_job
    state.next_job += 1
    state.jobs[number] = (str(value[0]), value[1], protected)
    return number


# "Maya commands throw an exception if they are called outside the main thread"
# (Autodesk, Python and threading): every command here does.
for _name, _fn in list(globals().items()):
    if callable(_fn) and not _name.startswith("_") and getattr(_fn, "__module__", "") == __name__:
        globals()[_name] = _main_thread_only(_fn)
del _name, _fn
