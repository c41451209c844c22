"""The logic of Maya's ``subSession`` command (docs/contract.md §9.1), free of Maya.

The scripted plug-in ``plug-ins/subSession.py`` only parses its arguments with
``MArgDatabase`` and calls :func:`execute`; everything else (flag rules, checks, the
calls into :mod:`subsession`, the result) lives here, so it is testable without Maya::

    from subsession.command import execute

    execute("toolA", {"create": True, "path": ["/tools/a"]})
    execute("toolA", {"module": "toolA.ui", "function": "show"})
    execute("toolA", {"modules": True}, query=True)        # -> ["toolA", "toolA.ui"]

``flags`` maps long flag names to values: ``True`` for flags without argument, a
``str`` or ``bool`` for single-argument flags, a list of strings for multi-use flags
(``path``, ``environment``, ``keepGlobal``). In query mode the value of the queried
flag is ignored. Bad input raises :class:`CommandError` (a one-line message that says
what to do) before any state changes.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import subsession

__all__ = ["FLAGS", "CommandError", "Flag", "Result", "execute", "flag"]

#: Where ``-close`` says what it removed from Maya (the plug-in sets
#: ``MGlobal.displayInfo``: one Script Editor line per scriptJob, callback or UI).
INFO: Optional[Callable[[str], None]] = None

#: What the command returns to Maya: nothing, a bool, a number, a string or strings.
Result = Optional[Union[bool, int, float, str, list[str]]]


@dataclass(frozen=True)
class Flag:
    """One flag of the ``subSession`` command.

    ``arg`` is ``"none"``, ``"string"`` or ``"bool"``; ``multi`` flags may be given
    several times (a list in Python); ``query``/``edit`` say whether the flag may be
    used in query or edit mode.
    """

    long: str
    short: str
    arg: str = "none"
    multi: bool = False
    query: bool = False
    edit: bool = False
    doc: str = ""


FLAGS: tuple[Flag, ...] = (
    Flag("create", "c", doc="create the named session"),
    Flag("path", "p", "string", True, True, True, "session import path (folder)"),
    Flag("environment", "env", "string", True, True, True, "session env override KEY=VALUE"),
    Flag("keepGlobal", "kg", "string", True, True, True, "name/pattern shared globally"),
    Flag("inheritEnvironment", "ie", "bool", False, True, True, "inherit the global env"),
    Flag("inheritPath", "ip", "bool", False, True, True, "inherit the global sys.path"),
    Flag("command", "cmd", "string", doc="run Python source inside the session"),
    Flag("file", "f", "string", doc="run a Python file inside the session"),
    Flag("module", "m", "string", doc="import a module inside the session"),
    Flag("function", "fn", "string", doc="with -module: call this function of it"),
    Flag("reload", "rl", doc="reload stale modules; returns their names"),
    Flag("allModules", "am", doc="with -reload: reload every module of the session"),
    Flag("deep", "dp", doc="with -reload: update existing objects in place"),
    Flag("close", "cl", doc="close the session; returns the modules still alive"),
    Flag("list", "ls", doc="list the names of the open sessions"),
    Flag("exists", "ex", query=True, doc="query: does the session exist"),
    Flag("modules", "mod", query=True, doc="query: the session's module names"),
    Flag("stale", "st", query=True, doc="query: modules whose source changed on disk"),
    Flag("config", "cfg", "string", doc="load session definitions from a config file"),
    Flag("watch", "w", "bool", False, True, True, "reload on save (create/edit/query)"),
)

_BY_NAME: dict[str, Flag] = {f.long: f for f in FLAGS}
_BY_NAME.update({f.short: f for f in FLAGS})

_ACTIONS = ("create", "command", "file", "module", "reload", "close", "list", "config")
_RUNNERS = ("command", "file", "module")
_SETTINGS = ("path", "environment", "keepGlobal", "inheritEnvironment", "inheritPath")
_NEEDS = {"function": "module", "allModules": "reload", "deep": "reload"}
_QUERYABLE = tuple(f.long for f in FLAGS if f.query)
_EDITABLE = tuple(f.long for f in FLAGS if f.edit)


class CommandError(subsession.SessionError):
    """Bad input or a failed action; ``str()`` is one line that says what to do.

    ``details`` holds a traceback when the error came from the session's own code, for
    the plug-in to print to the Script Editor.
    """

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(_one_line(message))
        self.details = details


def flag(name: str) -> Flag:
    """The :class:`Flag` called ``name`` (long or short name, with or without ``-``)."""
    try:
        return _BY_NAME[name.lstrip("-")]
    except KeyError:
        raise CommandError(
            f"unknown flag -{name.lstrip('-')}; run `help subSession` for the flags"
        ) from None


def execute(
    name: str | None,
    flags: Mapping[str, Any],
    *,
    query: bool = False,
    edit: bool = False,
) -> Result:
    """Run one ``subSession`` command: ``name`` is its object (the session name).

    Returns what Maya should return: a list of names (``reload``, ``close``, ``list``,
    ``config``, query of lists), a bool (query of ``exists`` and ``inherit*``), the
    return value of ``function`` if it is a string, bool, number or list of strings,
    else ``None``. Raises :class:`CommandError`; bad input changes nothing.
    """
    given = _normalise(flags, query)
    if query and edit:
        raise CommandError("use either -query or -edit, not both")
    if query:
        return _query(name, given)
    if edit:
        return _edit(name, given)
    return _act(name, given)


# -- modes ------------------------------------------------------------------------------


def _query(name: str | None, given: dict[str, Any]) -> Result:
    if len(given) != 1:
        raise CommandError(
            "query one flag at a time, e.g. subSession -query -modules toolA"
            if given
            else "say what to query, e.g. subSession -query -modules toolA"
        )
    (key,) = given
    if key not in _QUERYABLE:
        raise CommandError(f"-{key} cannot be queried; queryable: {_dashed(_QUERYABLE)}")
    name = _need_name(name, f"-query -{key}")
    if key == "exists":
        try:
            subsession.get(name)
        except subsession.SessionError:
            return False
        return True
    session = _session(name)
    if key == "path":
        return list(session.paths)
    if key == "environment":
        return [k if v is None else f"{k}={v}" for k, v in session.env.items()]
    if key == "keepGlobal":
        return list(session.keep_global)
    if key == "inheritEnvironment":
        return bool(session.inherit_env)
    if key == "inheritPath":
        return bool(session.inherit_paths)
    if key == "modules":
        return sorted(session.modules)
    if key == "watch":
        return bool(session.watching)
    return list(_core_call(session.stale))


def _edit(name: str | None, given: dict[str, Any]) -> Result:
    wrong = [k for k in given if k not in _EDITABLE]
    if wrong:
        raise CommandError(f"-{wrong[0]} cannot be edited; editable: {_dashed(_EDITABLE)}")
    if not given:
        raise CommandError("say what to edit, e.g. subSession -edit -path /tools/a toolA")
    name = _need_name(name, "-edit")
    session = _session(name)
    watch = given.pop("watch", None)
    settings = _settings(given)
    if settings:
        _core_call(lambda: session.configure(**settings))
    if watch is not None:
        _set_watch(session, watch)
    return None


def _set_watch(session: Any, on: bool) -> None:
    if on:
        _core_call(lambda: session.watch())
    else:
        session.unwatch()


def _act(name: str | None, given: dict[str, Any]) -> Result:
    if "exists" in given:  # like `window -exists`: a test, also without -query
        others = [k for k in given if k != "exists"]
        if others:
            raise CommandError(
                f"-exists goes alone: remove -{others[0]}, e.g. subSession -exists toolA"
            )
        return _query(name, given)
    actions = [k for k in _ACTIONS if k in given]
    runners = [k for k in actions if k in _RUNNERS]
    for dependent, needed in _NEEDS.items():
        if dependent in given and needed not in given:
            raise CommandError(f"-{dependent} needs -{needed}")
    settings = [k for k in (*_SETTINGS, "watch") if k in given]
    if settings and "create" not in given:
        raise CommandError(
            f"-{settings[0]} goes with -create or -edit (or -query to read it), "
            f"e.g. subSession -edit -{settings[0]} ... {name or 'toolA'}"
        )
    if not actions:
        raise CommandError(
            f"nothing to do: give one of {_dashed(_ACTIONS)}, or -query/-edit a setting"
        )
    if len(actions) > 1 and not (actions[0] == "create" and len(actions) == 2 and runners):
        raise CommandError(
            f"{_dashed(actions)} cannot be combined: one action per call "
            "(only -create may be combined with -command, -file or -module)"
        )
    action = actions[0]
    if action in ("list", "config"):
        if name is not None:
            raise CommandError(f"-{action} takes no session name; remove {name!r}")
        if action == "list":
            return [s.name for s in subsession.sessions() if s.name is not None]
        path = _existing(given["config"], "config file", file=True)
        loaded = _core_call(lambda: subsession.load_config([path]))
        return [s.name for s in loaded if s.name is not None]
    name = _need_name(name, f"-{action}")
    if action == "create":
        return _create(name, given, runners[0] if runners else None)
    if runners:
        _runner(None, action, given)  # check the arguments before the session
    session = _session(name)
    if action == "reload":
        deep = "deep" in given
        reload = session.reload_all if "allModules" in given else session.reload_stale
        what = f"the reload of session {name!r}"
        return list(_user_call(lambda: _core_call(lambda: reload(deep=deep)), what))
    if action == "close":
        report = _core_call(session.close)
        if INFO is not None:
            for line in report.removed:
                INFO(f"subSession: {name} closed: removed {line}")
        return sorted(report.leaks)
    runner = _runner(session, action, given)
    return runner()


def _create(name: str, given: dict[str, Any], then: str | None) -> Result:
    try:
        subsession.get(name)
    except subsession.SessionError:
        pass
    else:
        raise CommandError(
            f"session {name!r} already exists; change it with -edit or -close it first"
        )
    settings = _settings(given)
    if then is not None:
        _runner(None, then, given)  # check the file/function arguments first
    session = _core_call(lambda: subsession.Session(name, **settings))
    if then is None:
        if given.get("watch"):
            _set_watch(session, True)
        return None
    try:
        result = _runner(session, then, given)()
    except CommandError as error:
        session.close()
        raise CommandError(f"{error} (session {name!r} was not created)", error.details) from None
    if given.get("watch"):
        _set_watch(session, True)
    return result


def _runner(session: Any, action: str, given: dict[str, Any]) -> Callable[[], Result]:
    """Check the arguments of ``-command``/``-file``/``-module`` and return the call.

    With ``session=None`` only the checks run (used before ``-create`` changes state).
    """
    label = "" if session is None else f" in session {session.name!r}"
    if action == "file":
        path = _existing(given["file"], "file", file=True)

        def run_file() -> Result:
            _user_call(lambda: session.exec_file(path), f"{path}{label}")
            return None

        return run_file
    if action == "command":
        source = given["command"]

        def run_source() -> Result:
            _user_call(lambda: session.exec(source), f"the -command{label}")
            return None

        return run_source
    module_name = given["module"]
    function = given.get("function")
    if not module_name.strip():
        raise CommandError("-module needs a module name, e.g. -module toolA.ui")
    if function is not None and not function.isidentifier():
        raise CommandError(f"-function {function!r} is not a function name, e.g. -function show")

    def run_module() -> Result:
        try:
            module = session.import_module(module_name)
        except ImportError as error:
            raise CommandError(
                f"cannot import {module_name!r}{label}: {error}; check the session's -path",
                traceback.format_exc(),
            ) from None
        except Exception as error:
            raise _user_error(error, f"importing {module_name!r}{label}") from None
        if function is None:
            return None
        target = getattr(module, function, None)
        if not callable(target):
            raise CommandError(
                f"module {module_name!r}{label} has no function {function!r}; check -function"
            )
        value = _user_call(lambda: session.run(target), f"{module_name}.{function}(){label}")
        return _as_result(value)

    return run_module


# -- helpers ----------------------------------------------------------------------------


def _normalise(flags: Mapping[str, Any], query: bool) -> dict[str, Any]:
    """Long-name keyed, type-checked copy of ``flags``.

    Flags without argument set to ``False``/``None`` are dropped (as Maya does); in
    query mode every other flag given counts as queried, whatever its value.
    """
    given: dict[str, Any] = {}
    for key, value in flags.items():
        spec = flag(key)
        if spec.long in given:
            raise CommandError(f"-{spec.long} is given twice; give it once")
        if spec.arg == "none" or query:
            if value is False or value is None:
                continue
            value = True
        elif spec.multi:
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
                raise CommandError(f"-{spec.long} takes strings, e.g. -{spec.short} value")
            value = list(value)
        elif spec.arg == "string" and not isinstance(value, str):
            raise CommandError(f"-{spec.long} takes a string, e.g. -{spec.short} value")
        elif spec.arg == "bool" and not isinstance(value, (bool, int)):
            raise CommandError(f"-{spec.long} takes on/off, e.g. -{spec.short} off")
        given[spec.long] = value
    return given


def _settings(given: dict[str, Any]) -> dict[str, Any]:
    """Checked keyword arguments for ``Session``/``configure`` from setting flags."""
    settings: dict[str, Any] = {}
    if "path" in given:
        settings["paths"] = [_existing(p, "-path folder") for p in given["path"]]
    if "environment" in given:
        settings["env"] = dict(_key_value(item) for item in given["environment"])
    if "keepGlobal" in given:
        names = given["keepGlobal"]
        if not all(n.strip() for n in names):
            raise CommandError("-keepGlobal needs a module name or pattern, e.g. -kg six")
        settings["keep_global"] = list(names)
    if "inheritEnvironment" in given:
        settings["inherit_env"] = bool(given["inheritEnvironment"])
    if "inheritPath" in given:
        settings["inherit_paths"] = bool(given["inheritPath"])
    return settings


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise CommandError(
            f'-environment {item!r} is not KEY=VALUE; write it as e.g. -env "TOOL_MODE=dev"'
        )
    return key.strip(), value


def _existing(value: Any, what: str, file: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CommandError(f"the {what} needs a path, e.g. /tools/a")
    path = os.path.abspath(os.path.expandvars(os.path.expanduser(value)))
    if not os.path.exists(path):
        raise CommandError(f"{what} {value!r} does not exist; check the path")
    if file and os.path.isdir(path):
        raise CommandError(f"{what} {value!r} is a folder; give a file")
    return path


def _need_name(name: str | None, what: str) -> str:
    if not name:
        raise CommandError(f"{what} needs the session name, e.g. subSession {what} toolA")
    return name


def _session(name: str) -> Any:
    try:
        return subsession.get(name)
    except subsession.SessionError:
        raise CommandError(
            f"no session named {name!r}; create it with subSession -create {name} "
            "or define it in the studio config"
        ) from None


def _core_call(call: Callable[[], Any]) -> Any:
    """Run a call into :mod:`subsession`; its errors become :class:`CommandError`."""
    try:
        return call()
    except (CommandError, subsession.ReloadError):
        raise  # a ReloadError is the session's code failing: _user_call words it
    except (subsession.SessionError, ValueError, TypeError, OSError) as error:
        raise CommandError(str(error) or type(error).__name__) from None


def _user_call(call: Callable[[], Any], what: str) -> Any:
    """Run session code; its exceptions become one-line :class:`CommandError`."""
    try:
        return call()
    except CommandError:
        raise
    except Exception as error:
        raise _user_error(error, what) from None


def _user_error(error: BaseException, what: str) -> CommandError:
    if isinstance(error, subsession.ReloadError):
        # Its first line names the user's file and line; the rest is the short traceback
        # of the session's own frames (not importlib's and subsession's).
        first = str(error).partition("\n")[0]
        return CommandError(
            f"{what} failed: {first} (traceback in the Script Editor)", f"{error}\n"
        )
    return CommandError(
        f"{what} raised {type(error).__name__}: {error} (traceback in the Script Editor)",
        "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    )


#: Maya's integer results are 32-bit (``MPxCommand.setResult``, MEL ``int``).
INT32 = (-(2**31), 2**31 - 1)


def _as_result(value: Any) -> Result:
    """A result Maya can hold; an int outside 32 bits comes back as its decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if INT32[0] <= value <= INT32[1] else str(value)
    if isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _dashed(names: Sequence[str]) -> str:
    return ", ".join(f"-{n}" for n in names)


def _one_line(text: str) -> str:
    return " ".join(text.split())
