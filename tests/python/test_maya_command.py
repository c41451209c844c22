"""``subsession.command.execute``, the plug-in's pure-Python core, called directly."""

from __future__ import annotations

from pathlib import Path

import pytest
import subsession
from subsession.command import FLAGS, CommandError, execute, flag


@pytest.fixture
def cleanup() -> object:
    before = {id(s) for s in subsession.sessions()}
    yield None
    for session in subsession.sessions():
        if id(session) not in before:
            session.close()


def test_flag_names_follow_maya_rules() -> None:
    longs = [f.long for f in FLAGS]
    shorts = [f.short for f in FLAGS]
    assert len(set(longs + shorts)) == 2 * len(FLAGS)
    assert all(len(n) >= 4 for n in longs) and all(1 <= len(n) <= 3 for n in shorts)
    assert not {"q", "query", "e", "edit"} & set(longs + shorts)
    assert flag("-mod").long == "modules" and flag("keepGlobal").short == "kg"


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        ({"bogus": True}, "unknown flag -bogus; run `help subSession`"),
        ({"create": True, "path": 5}, "-path takes strings"),
        ({"create": True, "path": ["/", 5]}, "-path takes strings"),
        ({"module": 5}, "-module takes a string"),
        ({"create": True, "inheritPath": "no"}, "-inheritPath takes on/off"),
        ({"path": ["/"], "p": ["/"]}, "-path is given twice"),
        ({"module": " "}, "-module needs a module name"),
        ({"create": True, "keepGlobal": [""]}, "-keepGlobal needs a module name"),
    ],
)
def test_bad_direct_calls(cleanup: object, flags: dict, match: str) -> None:
    with pytest.raises(CommandError, match=match) as info:
        execute("direct", flags)
    assert "\n" not in str(info.value)
    assert "direct" not in [s.name for s in subsession.sessions()]


def test_direct_create_run_query_close(cleanup: object, tmp_path: Path) -> None:
    (tmp_path / "dmod.py").write_text("def hello():\n    return ['hi']\n", encoding="utf-8")
    assert execute("direct", {"c": True, "p": str(tmp_path), "m": "dmod", "fn": "hello"}) == ["hi"]
    assert execute("direct", {"modules": True}, query=True) == ["dmod"]
    assert execute("direct", {"exists": "anything"}, query=True) is True
    assert execute("direct", {"close": True}) == []
    assert execute("direct", {"ex": True}, query=True) is False


def test_a_failed_reload_names_the_users_line(cleanup: object, tmp_path: Path) -> None:
    """issue 20 (3): the Script Editor's error line names the user's file and line (not
    json/decoder.py); the details printed under it are the session's frames."""
    module = tmp_path / "cmdwhere.py"
    module.write_text("import json\n\nCONFIG = {}\n", encoding="utf-8")
    execute("cmdreload", {"c": True, "p": str(tmp_path), "m": "cmdwhere"})
    module.write_text("import json\n\nCONFIG = json.loads('{bad')\n", encoding="utf-8")
    with pytest.raises(CommandError) as info:
        execute("cmdreload", {"reload": True})
    assert f'File "{module}", line 3: JSONDecodeError' in str(info.value)
    assert "\n" not in str(info.value) and "decoder.py" not in str(info.value)
    assert info.value.details is not None
    assert f'  File "{module}", line 3, in <module>\n' in info.value.details
    assert "    CONFIG = json.loads('{bad')\n" in info.value.details
