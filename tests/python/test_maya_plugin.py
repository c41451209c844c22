"""The ``subSession`` plug-in (docs/contract.md §9.1) against the fake Maya in tests/fake_maya.

Every flag in Python and MEL form, every error path (a RuntimeError, one error line
saying what to do, no state changed), and load/unload/reload of the plug-in.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

FAKE_MAYA = str(Path(__file__).resolve().parents[1] / "fake_maya")
if FAKE_MAYA not in sys.path:  # appended: pytest re-inserts its folder if not sys.path[0]
    sys.path.append(FAKE_MAYA)

import fakehost  # noqa: E402
import subsession  # noqa: E402
from maya.api import OpenMaya as om  # noqa: E402

from maya import _host, cmds, mel  # noqa: E402

# docs/contract.md §9.1, copied by hand: (long, short, argument, multi-use, queryable, editable)
CONTRACT_FLAGS = [
    ("create", "c", om.MSyntax.kNoArg, False, False, False),
    ("path", "p", om.MSyntax.kString, True, True, True),
    ("environment", "env", om.MSyntax.kString, True, True, True),
    ("keepGlobal", "kg", om.MSyntax.kString, True, True, True),
    ("inheritEnvironment", "ie", om.MSyntax.kBoolean, False, True, True),
    ("inheritPath", "ip", om.MSyntax.kBoolean, False, True, True),
    ("command", "cmd", om.MSyntax.kString, False, False, False),
    ("file", "f", om.MSyntax.kString, False, False, False),
    ("module", "m", om.MSyntax.kString, False, False, False),
    ("function", "fn", om.MSyntax.kString, False, False, False),
    ("reload", "rl", om.MSyntax.kNoArg, False, False, False),
    ("allModules", "am", om.MSyntax.kNoArg, False, False, False),
    ("deep", "dp", om.MSyntax.kNoArg, False, False, False),
    ("close", "cl", om.MSyntax.kNoArg, False, False, False),
    ("list", "ls", om.MSyntax.kNoArg, False, False, False),
    ("exists", "ex", om.MSyntax.kNoArg, False, True, False),
    ("modules", "mod", om.MSyntax.kNoArg, False, True, False),
    ("stale", "st", om.MSyntax.kNoArg, False, True, False),
    ("config", "cfg", om.MSyntax.kString, False, False, False),
]

UI = """\
import libx

def show():
    return "toolA shows libx " + libx.VERSION

def names():
    return ["a", "b"]

def yes():
    return True

def count():
    return 3

def opaque():
    return object()

def big():
    return 2**40

def small():
    return -(2**31)

def broken():
    raise ValueError("boom")

NOT_CALLABLE = 1
"""


@pytest.fixture
def maya(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh fake Maya with the plug-in loaded; closes the sessions a test opens."""
    before = fakehost.open_sessions()
    host = fakehost.fresh_maya(monkeypatch)
    cmds.loadPlugin("subSession.py")
    yield host
    fakehost.close_new_sessions(before)
    _host.reset()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two versions of ``libx`` (v1/, v2/) and a tool ``toolA`` plus a script (tools/)."""
    return fakehost.write_tree(
        tmp_path,
        {
            "v1/libx/__init__.py": "VERSION = '1'\n",
            "v2/libx/__init__.py": "VERSION = '2'\n",
            "tools/toolA/__init__.py": "",
            "tools/toolA/ui.py": UI,
            "tools/script.py": "import libx\nSCRIPT_RESULT = libx.VERSION\n",
        },
    )


def create(name: str, tree: Path, version: str = "1", **kwargs: Any) -> None:
    cmds.subSession(
        name, create=True, path=[str(tree / f"v{version}"), str(tree / "tools")], **kwargs
    )


def errors() -> list[str]:
    return [text for level, text in _host.state.messages if level == "error"]


def fails(*args: Any, match: str, **kwargs: Any) -> str:
    """Call cmds.subSession expecting a failure; returns the one error line shown.

    A Python caller that catches the RuntimeError sees no error line (as with Maya's
    own commands); run uncaught in the Script Editor, the failure prints exactly one.
    """
    shown = len(errors())
    with pytest.raises(RuntimeError, match=match):
        cmds.subSession(*args, **kwargs)
    assert errors()[shown:] == []
    _host.script_editor(f"from maya import cmds\ncmds.subSession(*{args!r}, **{kwargs!r})")
    new = errors()[shown:]
    assert len(new) == 1, new
    assert "\n" not in new[0] and new[0].strip(), new[0]
    assert re.search(match, new[0]) and new[0].startswith("RuntimeError: file <maya console>")
    return new[0]


def names() -> list[str]:
    return sorted(s.name for s in subsession.sessions() if s.name)


# -- the syntax ---------------------------------------------------------------------------


def test_syntax_carries_every_flag_of_the_spec(maya: Any) -> None:
    syntax = _host.state.commands["subSession"].syntax
    assert syntax.enableQuery is True and syntax.enableEdit is True
    got = {(f.long, f.short, f.types[0], f.multi) for f in syntax.flags}
    assert got == {(lg, sh, arg, multi) for lg, sh, arg, multi, _, _ in CONTRACT_FLAGS}
    assert syntax._object_format == om.MSyntax.kStringObjects
    assert (syntax.minObjects(), syntax.maxObjects()) == (0, 1)


def test_command_is_not_undoable_and_registered_by_the_plugin(maya: Any, tree: Path) -> None:
    create("a", tree)
    assert _host.state.undo_queue == []
    assert cmds.pluginInfo("subSession", query=True, command=True) == ["subSession"]
    assert cmds.pluginInfo("subSession.py", query=True, vendor=True) == "subsession"
    assert cmds.pluginInfo("subSession", query=True, version=True) == subsession.__version__


# -- create and the settings flags -----------------------------------------------------


def test_create_with_long_flags_then_query_each_setting(maya: Any, tree: Path) -> None:
    result = cmds.subSession(
        "a",
        create=True,
        path=[str(tree / "v1"), str(tree / "tools")],
        environment=["TOOL_MODE=dev", "EMPTY="],
        keepGlobal=["six", "studio.*"],
        inheritEnvironment=False,
        inheritPath=False,
    )
    assert result is None
    assert cmds.subSession("a", query=True, path=True) == [str(tree / "v1"), str(tree / "tools")]
    assert cmds.subSession("a", query=True, environment=True) == ["TOOL_MODE=dev", "EMPTY="]
    assert cmds.subSession("a", query=True, keepGlobal=True) == ["six", "studio.*"]
    assert cmds.subSession("a", query=True, inheritEnvironment=True) is False
    assert cmds.subSession("a", query=True, inheritPath=True) is False
    assert cmds.subSession("a", query=True, exists=True) is True


def test_create_with_short_flags_and_single_strings(maya: Any, tree: Path) -> None:
    cmds.subSession("b", c=True, p=str(tree / "v2"), env="X=1", kg="six", ie=True, ip=True)
    assert cmds.subSession("b", q=True, p=True) == [str(tree / "v2")]
    assert cmds.subSession("b", q=True, env=True) == ["X=1"]
    assert cmds.subSession("b", q=True, kg=True) == ["six"]
    assert cmds.subSession("b", q=True, ie=True) is True
    assert cmds.subSession("b", q=True, ip=True) is True
    assert cmds.subSession("b", q=True, ex=True) is True
    assert cmds.subSession("nope", q=True, ex=True) is False


def test_defaults_inherit_on(maya: Any) -> None:
    cmds.subSession("a", create=True)
    assert cmds.subSession("a", q=True, ie=True) is True
    assert cmds.subSession("a", q=True, ip=True) is True
    assert cmds.subSession("a", q=True, p=True) is None  # an empty list returns nothing


def test_environment_is_active_inside_the_session(maya: Any, tree: Path) -> None:
    import os

    create("a", tree, env=["SUBSESSION_TEST_VAR=inside"])
    cmds.subSession("a", command="import os; seen = os.environ.get('SUBSESSION_TEST_VAR')")
    assert subsession.get("a").namespace["seen"] == "inside"
    assert "SUBSESSION_TEST_VAR" not in os.environ


# -- running code ---------------------------------------------------------------------------


def test_two_sessions_two_versions_interleaved(maya: Any, tree: Path) -> None:
    create("a", tree, "1")
    create("b", tree, "2")
    for _ in range(2):
        assert cmds.subSession("a", module="toolA.ui", function="show") == "toolA shows libx 1"
        assert cmds.subSession("b", m="toolA.ui", fn="show") == "toolA shows libx 2"
    assert "libx" not in sys.modules


def test_create_combined_with_module_function(maya: Any, tree: Path) -> None:
    paths = [str(tree / "v2"), str(tree / "tools")]
    result = cmds.subSession("a", create=True, path=paths, module="toolA.ui", function="show")
    assert result == "toolA shows libx 2"
    assert cmds.subSession("a", q=True, modules=True) == ["libx", "toolA", "toolA.ui"]


def test_create_combined_with_command_and_with_file(maya: Any, tree: Path) -> None:
    paths = [str(tree / "v1"), str(tree / "tools")]
    cmds.subSession("a", create=True, path=paths, command="import libx; v = libx.VERSION")
    assert subsession.get("a").namespace["v"] == "1"
    cmds.subSession("b", c=True, p=[str(tree / "v2")], f=str(tree / "tools" / "script.py"))
    assert subsession.get("b").namespace["SCRIPT_RESULT"] == "2"


def test_command_runs_source_in_the_session(maya: Any, tree: Path) -> None:
    create("a", tree, "2")
    assert cmds.subSession("a", command="import libx\nversion = libx.VERSION") is None
    assert subsession.get("a").namespace["version"] == "2"
    assert cmds.subSession("a", cmd="version += '!'") is None
    assert subsession.get("a").namespace["version"] == "2!"


def test_file_runs_in_the_session(maya: Any, tree: Path) -> None:
    create("a", tree, "1")
    assert cmds.subSession("a", file=str(tree / "tools" / "script.py")) is None
    assert subsession.get("a").namespace["SCRIPT_RESULT"] == "1"


def test_module_alone_imports_it(maya: Any, tree: Path) -> None:
    create("a", tree)
    assert cmds.subSession("a", module="toolA.ui") is None
    assert "toolA.ui" in cmds.subSession("a", q=True, modules=True)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("names", ["a", "b"]),
        ("yes", True),
        ("count", 3),
        ("opaque", None),
        ("big", str(2**40)),  # beyond Maya's 32-bit int results: its decimal string
        ("small", -(2**31)),
    ],
)
def test_function_results(maya: Any, tree: Path, function: str, expected: Any) -> None:
    create("a", tree)
    assert cmds.subSession("a", module="toolA.ui", function=function) == expected


# -- reload, stale, close, list --------------------------------------------------------------


def test_stale_and_reload(maya: Any, tree: Path) -> None:
    create("a", tree, "1")
    cmds.subSession("a", module="toolA.ui")
    assert cmds.subSession("a", q=True, stale=True) is None
    fakehost.touch_newer(tree / "v1" / "libx" / "__init__.py", "VERSION = 'one point one'\n")
    assert cmds.subSession("a", q=True, st=True) == ["libx"]
    reloaded = cmds.subSession("a", reload=True)
    assert reloaded[0] == "libx" and "toolA.ui" in reloaded
    assert cmds.subSession("a", m="toolA.ui", fn="show") == "toolA shows libx one point one"
    assert cmds.subSession("a", q=True, stale=True) is None


def test_reload_all_modules_and_deep(maya: Any, tree: Path) -> None:
    create("a", tree, "1")
    cmds.subSession("a", module="toolA.ui")
    assert sorted(cmds.subSession("a", reload=True, allModules=True)) == [
        "libx",
        "toolA",
        "toolA.ui",
    ]
    show = subsession.get("a").modules["toolA.ui"].show  # e.g. connected to a button
    fakehost.touch_newer(tree / "tools" / "toolA" / "ui.py", UI.replace("shows", "deeply shows"))
    assert cmds.subSession("a", rl=True, dp=True) == ["toolA.ui"]
    assert show() == "toolA deeply shows libx 1"  # the old function object has the new code
    assert cmds.subSession("a", rl=True, am=True, dp=True)


def test_close_returns_modules_still_alive(maya: Any, tree: Path) -> None:
    create("a", tree)
    create("b", tree)
    cmds.subSession("a", module="toolA.ui")
    cmds.subSession("b", module="toolA.ui")
    held = subsession.get("b").modules["toolA.ui"]
    assert cmds.subSession("a", close=True) is None  # clean: nothing alive
    assert "toolA.ui" in cmds.subSession("b", cl=True)
    assert held.show() == "toolA shows libx 1"
    assert cmds.subSession("a", q=True, exists=True) is False


def test_list_names_the_open_sessions(maya: Any, tree: Path) -> None:
    before = cmds.subSession(list=True) or []
    create("a", tree)
    create("b", tree)
    assert cmds.subSession(ls=True) == before + ["a", "b"]
    cmds.subSession("a", close=True)
    assert cmds.subSession(list=True) == before + ["b"]


# -- edit ------------------------------------------------------------------------------------


def test_edit_replaces_lists_and_sets_bools(maya: Any, tree: Path) -> None:
    create("a", tree, env=["A=1", "B=2"], keepGlobal=["six"])
    cmds.subSession("a", edit=True, path=[str(tree / "v2")], environment=["C=3"])
    assert cmds.subSession("a", q=True, path=True) == [str(tree / "v2")]
    assert cmds.subSession("a", q=True, env=True) == ["C=3"]
    assert cmds.subSession("a", q=True, kg=True) == ["six"]  # not given: unchanged
    cmds.subSession("a", e=True, kg=["attr", "pkg.*"], ie=False, ip=False)
    assert cmds.subSession("a", q=True, kg=True) == ["attr", "pkg.*"]
    assert cmds.subSession("a", q=True, ie=True) is False
    assert cmds.subSession("a", q=True, ip=True) is False


def test_edit_changes_what_the_session_imports(maya: Any, tree: Path) -> None:
    create("a", tree, "1")
    cmds.subSession("a", edit=True, path=[str(tree / "v2"), str(tree / "tools")])
    assert cmds.subSession("a", m="toolA.ui", fn="show") == "toolA shows libx 2"


# -- MEL ----------------------------------------------------------------------------------------


def test_mel_calls(maya: Any, tree: Path) -> None:
    v1, tools = tree / "v1", tree / "tools"
    mel.eval(f'subSession -c -p "{v1}" -p "{tools}" -env "MODE=mel" -ie on -ip true toolA;')
    assert cmds.subSession("toolA", q=True, p=True) == [str(v1), str(tools)]
    assert cmds.subSession("toolA", q=True, env=True) == ["MODE=mel"]
    assert mel.eval('subSession -m "toolA.ui" -fn "show" toolA;') == "toolA shows libx 1"
    assert mel.eval("subSession -q -mod toolA;") == ["libx", "toolA", "toolA.ui"]
    assert mel.eval("subSession -query -exists toolA;") == 1  # MEL has no bool
    assert mel.eval("subSession -q -ie toolA;") == 1
    mel.eval("subSession -e -ie off -kg six toolA;")
    assert mel.eval("subSession -q -inheritEnvironment toolA;") == 0
    assert mel.eval("subSession -q -kg toolA;") == ["six"]
    assert mel.eval('subSession -cmd "x = \\"quoted\\"" toolA;') is None
    assert subsession.get("toolA").namespace["x"] == "quoted"
    assert sorted(mel.eval("subSession -rl -am toolA;")) == ["libx", "toolA", "toolA.ui"]
    assert "toolA" in mel.eval("subSession -ls;")
    mel.eval("subSession -cl toolA;")
    assert mel.eval("subSession -q -ex toolA;") == 0


def test_mel_errors(maya: Any, tree: Path) -> None:
    create("a", tree)
    for script, match in [
        ("subSession -bogus a;", "Invalid flag"),
        ("subSession -ie maybe a;", "expected a boolean"),
        ("subSession -m;", "needs 1 argument"),
        ("subSession -p x -p y -c a b;", "Too many objects"),
        ("subSession -cmd x -cmd y a;", "only be used once"),
        ("subSession -m toolA.ui -cl a;", "cannot be combined"),
        ("subSession -m toolA.ui nope;", "no session named 'nope'"),
    ]:
        shown = len(errors())
        with pytest.raises(RuntimeError, match="Error occurred during execution of MEL script"):
            mel.eval(script)
        assert len(errors()) == shown + 1 and "\n" not in errors()[-1], script
        assert re.search(match, errors()[-1]), (script, errors()[-1])
        assert _host.state.printed[-1] == f"// Error: {errors()[-1]} //"
    assert names() == ["a"]


# -- errors: one line, says what to do, nothing changed ----------------------------------------


def test_unknown_session(maya: Any) -> None:
    line = fails("nope", module="x", match="no session named 'nope'")
    assert "subSession -create nope" in line
    fails("nope", query=True, modules=True, match="no session named")
    fails("nope", edit=True, path=["/"], match="no session named")
    fails("nope", reload=True, match="no session named")
    fails("nope", close=True, match="no session named")


def test_malformed_environment_creates_nothing(maya: Any, tree: Path) -> None:
    for bad in ("NOEQUALS", "=value", " =x"):
        line = fails("a", create=True, environment=["OK=1", bad], match="KEY=VALUE")
        assert "e.g." in line
    assert names() == []


def test_missing_path_creates_nothing_and_edits_nothing(maya: Any, tree: Path) -> None:
    fails("a", create=True, path=[str(tree / "v1"), str(tree / "missing")], match="does not exist")
    assert names() == []
    create("a", tree)
    fails("a", edit=True, path=[str(tree / "missing")], env=["A=1"], match="does not exist")
    assert cmds.subSession("a", q=True, path=True) == [str(tree / "v1"), str(tree / "tools")]
    assert cmds.subSession("a", q=True, env=True) is None


def test_missing_file(maya: Any, tree: Path) -> None:
    create("a", tree)
    fails("a", file=str(tree / "nope.py"), match="does not exist")
    fails("a", file=str(tree), match="is a folder")
    fails("b", create=True, file=str(tree / "nope.py"), match="does not exist")
    assert names() == ["a"]


def test_missing_config_file(maya: Any, tmp_path: Path) -> None:
    fails(config=str(tmp_path / "studio.toml"), match="does not exist")


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        ({"create": True, "close": True}, "cannot be combined"),
        ({"reload": True, "close": True}, "cannot be combined"),
        ({"module": "m", "command": "x"}, "cannot be combined"),
        ({"create": True, "module": "m", "file": "f"}, "cannot be combined"),
        ({"create": True, "reload": True}, "cannot be combined"),
        ({"function": "show"}, "-function needs -module"),
        ({"allModules": True}, "-allModules needs -reload"),
        ({"deep": True}, "-deep needs -reload"),
        ({"close": True, "deep": True}, "-deep needs -reload"),
        ({"path": ["/"]}, "-path goes with -create or -edit"),
        ({"inheritPath": False}, "-inheritPath goes with -create or -edit"),
        ({"module": "toolA.ui", "environment": ["A=1"]}, "goes with -create"),
        ({}, "nothing to do"),
        ({"create": False}, "nothing to do"),
    ],
)
def test_conflicting_and_incomplete_flags(maya: Any, tree: Path, flags: dict, match: str) -> None:
    create("a", tree)
    fails("a", match=match, **flags)
    assert names() == ["a"]
    assert cmds.subSession("a", q=True, modules=True) is None  # nothing ran


def test_query_and_edit_rules(maya: Any, tree: Path) -> None:
    create("a", tree)
    fails("a", query=True, create=True, match="-create cannot be queried; queryable: -path")
    fails("a", query=True, list=True, match="-list cannot be queried")
    fails("a", query=True, path=True, modules=True, match="query one flag at a time")
    fails("a", query=True, match="say what to query")
    fails(query=True, modules=True, match="needs the session name")
    fails("a", edit=True, module="x", match="-module cannot be edited; editable: -path")
    fails("a", edit=True, match="say what to edit")
    fails("a", edit=True, query=True, path=True, match="either -query or -edit")


def test_names(maya: Any, tree: Path) -> None:
    fails(create=True, match="-create needs the session name")
    fails(module="toolA.ui", match="needs the session name")
    fails("a", list=True, match="-list takes no session name")
    fails("a b", create=True, match="name")
    create("a", tree)
    fails("a", create=True, match="already exists; change it with -edit or -close it first")
    assert names() == ["a"]


def test_failing_create_and_run_creates_nothing(maya: Any, tree: Path) -> None:
    paths = [str(tree / "v1"), str(tree / "tools")]
    fails("a", c=True, p=paths, m="toolA.nothing", match="cannot import 'toolA.nothing'.*was not")
    fails("a", c=True, p=paths, m="toolA.ui", fn="broken", match="ValueError: boom.*was not")
    fails("a", c=True, p=paths, cmd="1/0", match="ZeroDivisionError")
    fails("a", c=True, p=paths, m="toolA.ui", fn="bad name", match="not a function name")
    assert names() == []


def test_errors_in_session_code(maya: Any, tree: Path, capsys: pytest.CaptureFixture) -> None:
    create("a", tree)
    line = fails("a", m="toolA.ui", fn="broken", match="raised ValueError: boom")
    assert "traceback in the Script Editor" in line
    assert 'raise ValueError("boom")' in capsys.readouterr().err  # the traceback was printed
    fails("a", m="toolA.ui", fn="missing", match="has no function 'missing'; check -function")
    fails("a", m="toolA.ui", fn="NOT_CALLABLE", match="has no function")
    fails("a", m="nothere", match="cannot import 'nothere'.*check the session's -path")
    fails("a", cmd="def broken(:\n  pass", match="SyntaxError")
    assert cmds.subSession("a", m="toolA.ui", fn="show") == "toolA shows libx 1"  # still usable


# -- what the host rejects before the command runs ------------------------------------------


def test_host_rejects_bad_python_calls(maya: Any) -> None:
    with pytest.raises(TypeError, match="Invalid flag 'bogus'"):
        cmds.subSession("a", bogus=True)
    with pytest.raises(TypeError, match="Expected string, got int"):
        cmds.subSession("a", create=True, path=5)
    with pytest.raises(TypeError, match="Expected string, got list"):
        cmds.subSession("a", command=["x = 1"])
    with pytest.raises(TypeError, match="Expected bool, got str"):
        cmds.subSession("a", create="yes")
    with pytest.raises(TypeError, match="Expected bool, got str"):
        cmds.subSession("a", create=True, inheritPath="no")
    with pytest.raises(RuntimeError, match="Too many objects"):
        cmds.subSession("a", "b", create=True)
    assert names() == []


# -- the plug-in's life cycle ------------------------------------------------------------------


def test_unload_deregisters_and_sessions_live_on(maya: Any, tree: Path) -> None:
    create("a", tree)
    cmds.subSession("a", module="toolA.ui")
    cmds.unloadPlugin("subSession")
    assert not hasattr(cmds, "subSession")
    assert cmds.pluginInfo("subSession", query=True, loaded=True) is False
    with pytest.raises(RuntimeError, match="Error occurred during execution of MEL script"):
        mel.eval("subSession -ls;")
    assert _host.state.printed[-1] == '// Error: line 1: Cannot find procedure "subSession". //'
    assert [w for w in _host.state.messages if w[0] == "warning"] == []
    assert subsession.get("a").modules["toolA.ui"].show() == "toolA shows libx 1"
    cmds.loadPlugin("subSession.py")
    assert cmds.subSession("a", q=True, modules=True) == ["libx", "toolA", "toolA.ui"]
    assert cmds.subSession("a", m="toolA.ui", fn="show") == "toolA shows libx 1"


def test_load_twice_is_quiet_and_mel_load(maya: Any) -> None:
    assert cmds.loadPlugin("subSession.py", quiet=True) == []
    assert not [m for m in _host.state.messages if m[0] == "warning"]
    mel.eval("unloadPlugin subSession;")
    assert not hasattr(cmds, "subSession")
    mel.eval('loadPlugin -quiet "subSession.py";')
    assert cmds.subSession("x", q=True, exists=True) is False


def test_plugin_loads_by_full_path(monkeypatch: pytest.MonkeyPatch) -> None:
    fakehost.fresh_maya(monkeypatch)
    monkeypatch.delenv("MAYA_PLUG_IN_PATH")
    with pytest.raises(RuntimeError, match="was not found on MAYA_PLUG_IN_PATH"):
        cmds.loadPlugin("subSession.py")
    assert cmds.loadPlugin(str(fakehost.PLUGINS / "subSession.py")) == ["subSession"]
    assert cmds.subSession("x", q=True, exists=True) is False
    cmds.unloadPlugin("subSession.py")
    assert _host.state.commands == {}


def test_plugin_without_subsession_fails_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    fakehost.fresh_maya(monkeypatch)
    monkeypatch.delattr(subsession, "command", raising=False)  # as if the package were broken
    monkeypatch.setitem(sys.modules, "subsession.command", None)
    with pytest.raises(RuntimeError, match="cannot import the subsession package"):
        cmds.loadPlugin("subSession.py")
    assert _host.state.commands == {} and _host.state.plugins == {}


@pytest.mark.parametrize("spec", CONTRACT_FLAGS, ids=[f[0] for f in CONTRACT_FLAGS])
def test_each_flag_in_query_and_edit_mode(maya: Any, tree: Path, spec: tuple) -> None:
    long, short, arg, _, queryable, editable = spec
    create("a", tree)
    edits = {"path": str(tree), "environment": "K=V", "keepGlobal": "six"}
    by_type = {om.MSyntax.kString: str(tree), om.MSyntax.kBoolean: False}
    value: Any = edits.get(long, by_type.get(arg, True))
    if editable:
        assert cmds.subSession("a", **{"edit": True, long: value}) is None
    else:
        fails("a", **{"edit": True, long: value}, match=f"-{long} cannot be edited")
    if queryable:
        expected = {"exists": True, "modules": None, "stale": None}.get(long)
        if expected is None and editable:
            expected = value if isinstance(value, bool) else [value]
        assert cmds.subSession("a", **{"query": True, short: True}) == expected
        mel_expected = int(expected) if isinstance(expected, bool) else expected
        assert mel.eval(f"subSession -q -{short} a;") == mel_expected
    else:
        fails("a", **{"query": True, long: True}, match=f"-{long} cannot be queried")
    assert names() == ["a"]


def test_config_flag_loads_sessions(maya: Any, tree: Path) -> None:
    config = tree / "studio.toml"
    config.write_text(
        '[sessions.cfgA]\npaths = ["v2", "tools"]\n\n[sessions.cfgB]\npaths = ["v1"]\n',
        encoding="utf-8",
    )
    assert sorted(cmds.subSession(config=str(config))) == ["cfgA", "cfgB"]
    assert cmds.subSession("cfgA", q=True, path=True) == [str(tree / "v2"), str(tree / "tools")]
    assert mel.eval('subSession -m "toolA.ui" -fn "show" cfgA;') == "toolA shows libx 2"
    assert sorted(mel.eval(f'subSession -cfg "{config}";')) == ["cfgA", "cfgB"]  # again: updates


def test_config_flag_errors_are_one_line(maya: Any, tree: Path) -> None:
    config = tree / "broken.toml"
    config.write_text('[sessions.cfgA]\npaths = ["v1"]\ncolour = "red"\n', encoding="utf-8")
    line = fails(config=str(config), match="colour")
    assert "broken.toml" in line
    fails("cfgA", config=str(config), match="-config takes no session name")
    assert "cfgA" not in names()


def test_failing_reload_keeps_the_session(maya: Any, tree: Path) -> None:
    create("a", tree)
    cmds.subSession("a", module="toolA.ui")
    ui = tree / "tools" / "toolA" / "ui.py"
    fakehost.touch_newer(ui, UI + "\ndef broken(:\n    pass\n")
    line = fails("a", reload=True, match="ui.py")
    assert "line" in line
    assert cmds.subSession("a", m="toolA.ui", fn="show") == "toolA shows libx 1"  # old code
    fakehost.touch_newer(ui, UI + "\nraise ValueError('at import')\n")
    fails("a", reload=True, allModules=True, match="at import")
    assert names() == ["a"]


def test_a_bug_in_the_command_is_still_one_line(
    maya: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import subsession.command

    def bug(*args: Any, **kwargs: Any) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(subsession.command, "execute", bug)
    fails(list=True, match="internal error KeyError: 'oops'")
    assert "Traceback" in capsys.readouterr().err


# -- Maya conventions ---------------------------------------------------------------------------


def test_exists_also_in_create_mode(maya: Any, tree: Path) -> None:
    # Like `window -exists`: -exists is a test, with or without -query.
    assert cmds.subSession("a", exists=True) is False
    assert mel.eval("subSession -exists a;") == 0
    create("a", tree)
    assert cmds.subSession("a", exists=True) is True
    assert cmds.subSession("a", ex=True) is True
    assert mel.eval("subSession -ex a;") == 1
    fails("a", exists=True, close=True, match="-exists goes alone")
    assert names() == ["a"]


def test_host_results_are_32_bit(maya: Any) -> None:
    with pytest.raises(OverflowError):
        om.MPxCommand.setResult(2**31)
    with pytest.raises(OverflowError):
        om.MPxCommand.setResult([1, 2**40])
    om.MPxCommand.setResult(2**31 - 1)
    assert om.MPxCommand.currentResult() == 2**31 - 1


def test_help_lists_every_flag(maya: Any) -> None:
    text = cmds.help("subSession")
    assert mel.eval("help subSession;") == text
    assert text.startswith("Synopsis: subSession [flags] [String...]")
    for long, short, arg, multi, _, _ in CONTRACT_FLAGS:
        (line,) = [x for x in text.splitlines() if x.split()[:2] == [f"-{short}", f"-{long}"]]
        assert ("String" in line) == (arg == om.MSyntax.kString)
        assert ("multi-use" in line) == multi
    assert "   -q -query" in text and "   -e -edit" in text


def test_plugin_refuses_maya_older_than_2023(maya: Any) -> None:
    cmds.unloadPlugin("subSession")
    _host.state.api_version = 20220500
    with pytest.raises(RuntimeError, match="needs Maya 2023 or later"):
        cmds.loadPlugin("subSession.py")
    assert not hasattr(cmds, "subSession")
    _host.state.api_version = 20230000
    assert cmds.loadPlugin("subSession.py") == ["subSession"]


def test_argument_errors_happen_before_doit(maya: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Maya checks MEL words against the registered syntax before doIt runs.
    plugin = _host.state.plugins["subSession"].module
    ran: list[Any] = []
    monkeypatch.setattr(plugin.SubSessionCommand, "doIt", lambda self, args: ran.append(args))
    for script in ("subSession -bogus a;", "subSession -ie maybe a;", "subSession -m;"):
        with pytest.raises(RuntimeError):
            mel.eval(script)
    assert ran == []
    mel.eval("subSession -ls;")
    assert len(ran) == 1
