"""The fake Maya's state and machinery: plug-ins, commands, calls, idle queue.

Test hooks: :data:`state` (``batch``, ``messages``, ``deferred``, ``dropped``,
``commands``, ``plugins``, ``printed``), :func:`reset`, :func:`run_idle`,
:func:`script_editor`. The rest is what ``maya.cmds``, ``maya.mel`` and
``maya.api.OpenMaya`` call.

What it reproduces of Maya, for a scripted command plug-in (Python API 2.0):

- ``loadPlugin`` finds the file (a path, or a name on ``MAYA_PLUG_IN_PATH``), runs it
  as a fresh module, requires ``maya_useNewAPI`` and calls ``initializePlugin`` with a
  plug-in ``MObject``; ``unloadPlugin`` calls ``uninitializePlugin``. A failing
  ``initializePlugin`` leaves nothing registered.
- ``registerCommand`` calls the syntax creator once; the command then appears as
  ``maya.cmds.<name>`` and as a MEL command, and disappears on deregistration.
- A Python call turns keyword arguments into flag words like Maya: long or short
  names, ``True``/``False`` for flags without argument, a list for a multi-use flag,
  ``q``/``query`` and ``e``/``edit``, positional objects last. Unknown flags, values of
  the wrong type and lists for single-use flags raise ``TypeError`` before ``doIt``.
- A MEL call passes its words as strings. Maya checks them against the registered
  syntax before ``doIt`` runs (unknown flag, missing or mistyped argument, a single-use
  flag twice; in query mode flags take no argument), so ``doIt`` only sees valid
  input; ``MArgDatabase`` then answers from the parsed words.
- ``doIt`` raising makes the command fail: a Python caller gets ``RuntimeError`` (not
  printed unless nobody catches it, see :func:`script_editor`); in MEL the statement
  fails with one error line and ``mel.eval`` raises ``RuntimeError``.
- Messages print as the Script Editor does: ``# Error: text #`` from Python,
  ``// Error: text //`` from MEL (``Warning``, and plain text for info).
- Results: ``setResult`` ints are 32-bit (``OverflowError`` beyond), as in Maya.
- Threads: "Maya API and Maya Command architectures are not thread-safe. Maya commands
  throw an exception if they are called outside the main thread, and use of the
  OpenMaya API from threads other than the main one has unforeseen side effects"
  (Autodesk, *Python and threading*,
  https://download.autodesk.com/global/docs/maya2014/en_us/files/Python_Python_and_threading.htm).
  The fake is strict for both: ``maya.cmds``, ``MGlobal`` and every Script Editor
  message raise ``RuntimeError`` off the main thread, and each such call is recorded in
  ``state.off_main`` (a logging handler swallows its exception; a test must not).
  ``maya.utils.executeDeferred`` is the way to the main thread, from any thread.
- Start-up (:func:`start_gui`): Maya's own order, from ``maya/app/startup/basic.py``
  and ``gui.py``: ``maya.utils.shellLogHandler()`` (a root stream handler, the root
  level set to INFO), then ``userSetup.py``, then ``maya.utils.guiLogHandler()`` (the
  Script Editor handler added to the root logger, the shell handler raised to
  CRITICAL). So ``userSetup`` runs before the root has Maya's GUI handler.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["reset", "run_idle", "state"]


@dataclass
class _Command:
    plugin: str
    creator: Callable[[], Any]
    syntax: Any


@dataclass
class _Plugin:
    name: str
    path: str
    module: Any
    obj: Any
    vendor: str = "Unknown"
    version: str = "Unknown"


#: The Maya this Python belongs to: Maya 2023-2024 ship Python 3.9/3.10 and PySide2,
#: Maya 2025+ Python 3.11+ and PySide6 (subsession._qt picks the binding from this).
DEFAULT_API_VERSION = 20240000 if sys.version_info < (3, 11) else 20250000


@dataclass
class _State:
    batch: bool = False
    standalone: bool = False
    commands: dict[str, _Command] = field(default_factory=dict)
    plugins: dict[str, _Plugin] = field(default_factory=dict)
    deferred: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = field(
        default_factory=list
    )
    dropped: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = field(
        default_factory=list
    )
    messages: list[tuple[str, str]] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)
    language: str = "python"
    app_dir: str = ""
    api_version: int = DEFAULT_API_VERSION
    undo_queue: list[Any] = field(default_factory=list)
    result: Any = None
    loading: str | None = None
    #: scriptJob number -> (event or condition name, script, protected)
    jobs: dict[int, tuple[str, Any, bool]] = field(default_factory=dict)
    next_job: int = 1
    #: API callback id (an int in API 2.0, an ``MCallbackId`` in API 1.0) ->
    #: (message, function, client data)
    callbacks: dict[Any, tuple[str, Any, Any]] = field(default_factory=dict)
    next_callback: int = 1000
    #: Maya calls made off the main thread: "what (thread name)"
    off_main: list[str] = field(default_factory=list)
    #: the handlers maya.utils put on the root logger, and the root level before
    root_handlers: list[logging.Handler] = field(default_factory=list)
    root_level: int | None = None


state = _State()


def reset(batch: bool = False) -> None:
    """Forget every plug-in, command, message and queued call (a fresh Maya)."""
    for plugin in state.plugins.values():
        sys.modules.pop(plugin.module.__name__, None)
    root = logging.getLogger()
    for handler in state.root_handlers:
        root.removeHandler(handler)
    if state.root_level is not None:
        root.setLevel(state.root_level)
    from maya import utils

    utils._shell_handler = utils._gui_handler = None
    state.__init__()  # type: ignore[misc]
    state.batch = batch
    from maya import _ui

    _ui.reset()


def run_idle() -> int:
    """Run the calls queued with ``executeDeferred`` (Maya going idle); returns how many.

    As in Maya, an exception is reported as an error message and the queue goes on.
    """
    count = 0
    while state.deferred:
        fn, args, kwargs = state.deferred.pop(0)
        count += 1
        try:
            fn(*args, **kwargs)
        except Exception:
            message("error", traceback.format_exc())
    return count


def fire(event: str) -> int:
    """Maya emitting ``event`` (e.g. "SelectionChanged"): runs the scriptJobs and API
    callbacks registered for it; returns how many ran. Errors are reported, as in Maya."""
    count = 0
    for _, (name, script, _) in sorted(state.jobs.items()):
        if name == event:
            count += 1
            try:
                script() if callable(script) else exec(script, {"__name__": "__main__"})
            except Exception:
                message("error", traceback.format_exc())
    for _, (name, fn, data) in list(state.callbacks.items()):
        if name == event:
            count += 1
            try:
                fn(data)
            except Exception:
                message("error", traceback.format_exc())
    return count


def main_thread_only(what: str) -> None:
    """Raise (and record in ``state.off_main``) when Maya is called off the main thread."""
    thread = threading.current_thread()
    if thread is not threading.main_thread():
        state.off_main.append(f"{what} ({thread.name})")
        raise RuntimeError(
            f"{what} called from thread {thread.name!r}: Maya's commands and API work only "
            "on the main thread (hand the call over with maya.utils.executeDeferred)"
        )


def start_gui(user_setup: Callable[[], Any]) -> None:
    """Maya's interactive start-up, in its order: the shell log handler, ``userSetup``
    (``user_setup()``), then the Script Editor log handler on the root logger."""
    from maya import utils

    state.batch = False
    utils.shellLogHandler()
    user_setup()
    utils.guiLogHandler()


def message(level: str, text: str) -> None:
    """Record and print an error/warning/info message as the Script Editor does.

    ``# Error: text #`` when Python code is running, ``// Error: text //`` in MEL;
    info is printed as plain text. Main thread only, as every Maya call.
    """
    main_thread_only(f"Script Editor {level} message")
    state.messages.append((level, text))
    if level == "info":
        line = text
    elif state.language == "mel":
        line = f"// {level.capitalize()}: {text} //"
    else:
        line = f"# {level.capitalize()}: {text} #"
    state.printed.append(line)
    sys.stderr.write(line + "\n")


def script_editor(source: str, language: str = "python") -> Any:
    """Run ``source`` as the Script Editor does; returns the result of MEL, or None.

    An exception nobody caught prints one error line, as Maya's Script Editor does
    (``# Error: RuntimeError: file <maya console> line 1: ... #``); MEL's own error
    line is printed by :func:`maya.mel.eval`.
    """
    if language == "mel":
        from maya import mel

        try:
            return mel.eval(source)
        except RuntimeError:
            return None
    try:
        exec(compile(source, "<maya console>", "exec"), {"__name__": "__main__"})
    except Exception as error:
        line = traceback.extract_tb(error.__traceback__)[-1].lineno if error.__traceback__ else 1
        for frame in traceback.extract_tb(error.__traceback__):
            if frame.filename == "<maya console>":
                line = frame.lineno
        message("error", f"{type(error).__name__}: file <maya console> line {line}: {error}")
    return None


# -- plug-ins ---------------------------------------------------------------------------


def find_plugin(name: str) -> str:
    if os.path.isabs(name) or os.sep in name or "/" in name:
        if os.path.isfile(name):
            return os.path.abspath(name)
    else:
        for folder in os.environ.get("MAYA_PLUG_IN_PATH", "").split(os.pathsep):
            for candidate in (name, name + ".py"):
                path = os.path.join(folder, candidate)
                if folder and os.path.isfile(path):
                    return os.path.abspath(path)
    raise RuntimeError(f'Plug-in, "{name}", was not found on MAYA_PLUG_IN_PATH.')


def plugin_name(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def load_plugin(name: str, quiet: bool) -> list[str]:
    from maya.api import OpenMaya

    stem = plugin_name(name)
    if stem in state.plugins:
        if not quiet:
            message("warning", f"Plug-in {stem} is already loaded; skipping.")
        return []
    path = find_plugin(name)
    spec = importlib.util.spec_from_file_location(stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise RuntimeError(f"Unable to load plug-in {path}: {error}") from error
    if not hasattr(module, "maya_useNewAPI"):
        raise RuntimeError(f"{path}: not a Python API 2.0 plug-in (no maya_useNewAPI)")
    for hook in ("initializePlugin", "uninitializePlugin"):
        if not callable(getattr(module, hook, None)):
            raise RuntimeError(f"{path}: the plug-in has no {hook}() function")
    obj = OpenMaya.MObject()
    obj._plugin = stem  # type: ignore[attr-defined]
    plugin = _Plugin(stem, path, module, obj)
    state.plugins[stem] = plugin
    state.loading = stem
    try:
        module.initializePlugin(obj)
    except Exception as error:
        _drop_plugin(stem)
        raise RuntimeError(f"initializePlugin function failed ({stem}): {error}") from error
    finally:
        state.loading = None
    sys.modules[stem] = module
    return [stem]


def unload_plugin(name: str) -> None:
    stem = plugin_name(name)
    plugin = state.plugins.get(stem)
    if plugin is None:
        raise RuntimeError(f"Plug-in '{stem}' is not loaded.")
    try:
        plugin.module.uninitializePlugin(plugin.obj)
    except Exception as error:
        raise RuntimeError(f"uninitializePlugin function failed ({stem}): {error}") from error
    left = [c for c, cmd in state.commands.items() if cmd.plugin == stem]
    if left:  # Maya would keep a dangling command; say so loudly in tests
        message("warning", f"plug-in {stem} unloaded but left commands registered: {left}")
    del state.plugins[stem]
    sys.modules.pop(stem, None)


def _drop_plugin(stem: str) -> None:
    for name in [c for c, cmd in state.commands.items() if cmd.plugin == stem]:
        del state.commands[name]
    state.plugins.pop(stem, None)


def register_command(plugin: str, name: str, creator: Any, syntax_creator: Any) -> None:
    if name in state.commands:
        raise RuntimeError(f"(kFailure): command {name!r} is already registered")
    if not callable(creator):
        raise TypeError("registerCommand() creator must be callable")
    syntax = syntax_creator() if syntax_creator is not None else None
    state.commands[name] = _Command(plugin, creator, syntax)


def deregister_command(plugin: str, name: str) -> None:
    command = state.commands.get(name)
    if command is None or command.plugin != plugin:
        raise RuntimeError(f"(kFailure): command {name!r} is not registered by {plugin}")
    del state.commands[name]


# -- calling commands -------------------------------------------------------------------


def python_words(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """Turn a ``cmds.<name>(*args, **kwargs)`` call into flag words, as Maya does."""
    syntax = state.commands[name].syntax
    query = edit = False
    words: list[Any] = []
    flags: list[tuple[str, Any]] = []
    for key, value in kwargs.items():
        if key in ("q", "query") and syntax is not None and syntax.enableQuery:
            query = query or bool(value)
        elif key in ("e", "edit") and syntax is not None and syntax.enableEdit:
            edit = edit or bool(value)
        else:
            flags.append((key, value))
    if query:
        words.append("-query")
    if edit:
        words.append("-edit")
    for key, value in flags:
        spec = syntax.lookup(key) if syntax is not None else None
        if spec is None:
            raise TypeError(f"Invalid flag '{key}'")
        words.extend(_flag_words(key, spec, value, query))
    for arg in args:
        for item in arg if isinstance(arg, (list, tuple)) else [arg]:
            if not isinstance(item, str):
                raise TypeError(f"Invalid argument '{item!r}': expected a string object")
            words.append(item)
    return words


def _flag_words(key: str, spec: Any, value: Any, query: bool) -> list[Any]:
    from maya.api.OpenMaya import MSyntax

    flag = f"-{spec.long}"
    if query:  # a queried flag takes no argument: any value but False/None means "use it"
        return [] if value is False or value is None else [flag]
    if spec.types == [MSyntax.kNoArg]:
        if not isinstance(value, (bool, int)):
            raise TypeError(f"Invalid arguments for flag '{key}'.  Expected bool, got {_t(value)}")
        return [flag] if value else []
    uses = value if spec.multi and isinstance(value, (list, tuple)) else [value]
    words: list[Any] = []
    for use in uses:
        values = list(use) if isinstance(use, (list, tuple)) and len(spec.types) > 1 else [use]
        if len(values) != len(spec.types):
            raise TypeError(
                f"Invalid arguments for flag '{key}'.  Expected {len(spec.types)} values"
            )
        for item, kind in zip(values, spec.types):
            ok = isinstance(item, str) if kind == MSyntax.kString else isinstance(item, (bool, int))
            if not ok:
                expected = "string" if kind == MSyntax.kString else "bool"
                raise TypeError(
                    f"Invalid arguments for flag '{key}'.  Expected {expected}, got {_t(item)}"
                )
        words.append(flag)
        words.extend(values)
    return words


def _t(value: Any) -> str:
    return type(value).__name__


def invoke(name: str, words: list[Any], mel: bool = False) -> Any:
    """Run command ``name`` with its words as Maya does: new instance, ``doIt``, result."""
    from maya.api import OpenMaya, _OpenMaya_py2

    main_thread_only(f"command {name}")
    command = state.commands.get(name)
    if command is None:
        raise RuntimeError(f'Cannot find procedure "{name}".')
    instance = command.creator()
    if not isinstance(instance, OpenMaya.MPxCommand):
        raise RuntimeError(f"{name}: the creator did not return an MPxCommand")
    instance._syntax = command.syntax  # what MPxCommand.syntax() returns
    if command.syntax is not None:
        _OpenMaya_py2._parse(command.syntax, list(words))  # Maya checks before doIt
    arg_list = OpenMaya.MArgList()
    for word in words:
        arg_list.addArg(word)
    state.result = None
    try:
        instance.doIt(arg_list)
    except Exception as error:
        raise RuntimeError(str(error)) from error
    if instance.isUndoable():
        state.undo_queue.append(instance)
    result = state.result
    if isinstance(result, list):
        result = list(result)
    if mel and isinstance(result, bool):
        return int(result)
    return result
