"""The studio config (docs/config.md): ``_core.parse_config`` and ``subsession.load_config``."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import textwrap
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "maya" / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

SESSION_KEYS = (
    "paths, env, keep_global, inherit_env, inherit_paths, startup, requirements, index_url, "
    "find_links, pythons, platforms"
)
NO_LOCK_KEYS = {
    "requirements": [],
    "index_url": None,
    "find_links": [],
    "pythons": [],
    "platforms": [],
}


def _load_core() -> types.ModuleType:
    """``subsession._core``, even while the package cannot import (engine not built)."""
    try:
        import subsession  # noqa: F401
    except Exception:  # the facade needs the engine; the extension itself loads fine
        pass
    core = sys.modules.get("subsession._core")
    if core is not None:
        return core
    binaries = sorted((SCRIPTS / "subsession").glob("_core*.so"))
    binaries += sorted((SCRIPTS / "subsession").glob("_core*.pyd"))
    if not binaries:
        pytest.skip("subsession._core is not built (run maturin develop)", allow_module_level=True)
    spec = importlib.util.spec_from_file_location("subsession._core", binaries[0])
    assert spec is not None and spec.loader is not None
    core = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core)
    return core


core = _load_core()
HAS_ENGINE = hasattr(core, "SessionCore")
needs_engine = pytest.mark.skipif(not HAS_ENGINE, reason="session engine not built yet")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def parse(*paths: Path) -> dict[str, Any]:
    result: dict[str, Any] = core.parse_config([str(p) for p in paths])
    return result


STUDIO_TOML = """
host_modules = ["studio_qt"]

[defaults]
keep_global = ["studio_core"]
env = { STUDIO = "1" }

[sessions.toolA]
paths = ["lib", "${SUBSESSION_TEST_TOOLS}/toolA", "~/dev/toolA", "../shared"]
env = { TOOLA_MODE = "prod", PYTHONWARNINGS = false }
inherit_env = false
startup = "toolA.boot"

[sessions."tool-b.v2"]
inherit_paths = false
"""

STUDIO_JSON = {
    "host_modules": ["studio_qt"],
    "defaults": {"keep_global": ["studio_core"], "env": {"STUDIO": "1"}},
    "sessions": {
        "toolA": {
            "paths": ["lib", "${SUBSESSION_TEST_TOOLS}/toolA", "~/dev/toolA", "../shared"],
            "env": {"TOOLA_MODE": "prod", "PYTHONWARNINGS": None},
            "inherit_env": False,
            "startup": "toolA.boot",
        },
        "tool-b.v2": {"inherit_paths": False},
    },
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("SUBSESSION_TEST_TOOLS", str(tmp_path / "tools"))
    monkeypatch.delenv("SUBSESSION_TEST_UNSET", raising=False)
    return home


# -- parse_config ---------------------------------------------------------------------------


def test_toml_full(env: Path, tmp_path: Path) -> None:
    studio = write(tmp_path, "studio/studio.toml", STUDIO_TOML)
    config = parse(studio)
    assert config["host_modules"] == ["studio_qt"]
    assert list(config["sessions"]) == ["toolA", "tool-b.v2"]
    a = config["sessions"]["toolA"]
    assert a == {
        "paths": [
            str(tmp_path / "studio" / "lib"),
            str(tmp_path / "tools" / "toolA"),
            str(env / "dev" / "toolA"),
            str(tmp_path / "shared"),
        ],
        "env": {"STUDIO": "1", "TOOLA_MODE": "prod", "PYTHONWARNINGS": None},
        "keep_global": ["studio_core"],
        "inherit_env": False,
        "inherit_paths": True,
        "startup": "toolA.boot",
        **NO_LOCK_KEYS,
    }
    assert config["sessions"]["tool-b.v2"] == {
        "paths": [],
        "env": {"STUDIO": "1"},
        "keep_global": ["studio_core"],
        "inherit_env": True,
        "inherit_paths": False,
        "startup": None,
        **NO_LOCK_KEYS,
    }


def test_json_equals_toml(env: Path, tmp_path: Path) -> None:
    toml_file = write(tmp_path, "cfg/studio.toml", STUDIO_TOML)
    json_file = write(tmp_path, "cfg/studio.json", json.dumps(STUDIO_JSON, indent=2))
    assert parse(json_file) == parse(toml_file)


def test_layering_studio_show_user(env: Path, tmp_path: Path) -> None:
    studio = write(
        tmp_path,
        "studio/studio.toml",
        """
        host_modules = ["studio_qt"]
        [defaults]
        env = { STUDIO = "1", LEVEL = "studio" }
        keep_global = ["studio_core"]
        [sessions.toolA]
        paths = ["/studio/toolA"]
        env = { A = "studio", KEEP = "yes" }
        startup = "toolA.boot"
        [sessions.toolB]
        paths = ["toolB"]
        """,
    )
    show = write(
        tmp_path,
        "show/show.json",
        json.dumps(
            {
                "host_modules": ["show_lib", "studio_qt"],
                "defaults": {"env": {"LEVEL": "show"}},
                "sessions": {
                    "toolA": {"paths": ["toolA"], "env": {"A": "show"}, "inherit_env": False},
                    "toolC": {},
                },
            }
        ),
    )
    user = write(
        tmp_path,
        "user/user.toml",
        """
        [sessions.toolA]
        env = { KEEP = false }
        inherit_env = true
        keep_global = []
        """,
    )
    config = parse(studio, show, user)
    assert config["host_modules"] == ["studio_qt", "show_lib"]
    assert list(config["sessions"]) == ["toolA", "toolB", "toolC"]
    a = config["sessions"]["toolA"]
    assert a["paths"] == [str(tmp_path / "show" / "toolA")]  # replaced, relative to show/
    assert a["env"] == {"STUDIO": "1", "LEVEL": "show", "A": "show", "KEEP": None}
    assert a["keep_global"] == []
    assert a["inherit_env"] is True
    assert a["startup"] == "toolA.boot"
    b = config["sessions"]["toolB"]
    assert b["paths"] == [str(tmp_path / "studio" / "toolB")]
    assert b["keep_global"] == ["studio_core"]
    assert config["sessions"]["toolC"]["env"] == {"STUDIO": "1", "LEVEL": "show"}


def test_session_keys_beat_defaults_from_any_file(env: Path, tmp_path: Path) -> None:
    studio = write(tmp_path, "studio.toml", "[sessions.a]\ninherit_paths = false\n")
    show = write(tmp_path, "show.toml", "[defaults]\ninherit_paths = true\nstartup = 'boot'\n")
    a = parse(studio, show)["sessions"]["a"]
    assert a["inherit_paths"] is False
    assert a["startup"] == "boot"


def test_expansion(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSESSION_TEST_EMPTY", "")
    sep = os.pathsep
    cfg = write(
        tmp_path,
        "cfg/s.toml",
        f"""
        [sessions.t]
        paths = ["~", "${{SUBSESSION_TEST_UNSET:-{tmp_path.as_posix()}/fallback}}", "a/./b/../c"]
        env = {{ P = "~/a{sep}${{SUBSESSION_TEST_TOOLS}}{sep}~bob", Q = "$${{NOT}} $HOME" }}
        """,
    )
    t = parse(cfg)["sessions"]["t"]
    assert t["paths"] == [
        str(env),
        str(tmp_path / "fallback"),
        str(tmp_path / "cfg" / "a" / "c"),
    ]
    assert t["env"] == {
        "P": sep.join([str(env / "a"), str(tmp_path / "tools"), "~bob"]),
        "Q": "${NOT} $HOME",
    }


def test_empty_and_missing_sections(tmp_path: Path) -> None:
    assert parse(write(tmp_path, "a.toml", "")) == {"host_modules": [], "sessions": {}}
    assert parse(write(tmp_path, "a.json", "{}")) == {"host_modules": [], "sessions": {}}
    assert parse() == {"host_modules": [], "sessions": {}}


BAD_FILES = [
    pytest.param(
        "s.toml",
        '[sessions.toolA]\npaths = ["lib"]\n    paht = ["x"]\n',
        (3, 5, "sessions.toolA.paht"),
        f"unknown key (expected one of: {SESSION_KEYS}); did you mean paths?",
        id="unknown-key",
    ),
    pytest.param(
        "s.json",
        '{"sessions": {"t": {\n  "paths": [],\n  "colour": 1}}}',
        (3, 3, "sessions.t.colour"),
        f"unknown key (expected one of: {SESSION_KEYS})",
        id="unknown-key-json",
    ),
    pytest.param(
        "s.toml",
        'shows = ["x"]\n',
        (1, 1, "shows"),
        "unknown key (expected one of: defaults, sessions, host_modules)",
        id="unknown-top-key",
    ),
    pytest.param(
        "s.toml",
        '[sessions.toolA]\npaths = "lib"\n',
        (2, 9, "sessions.toolA.paths"),
        "expected a list of strings, found a string",
        id="wrong-type",
    ),
    pytest.param(
        "s.json",
        '{"sessions": {"a": {"keep_global": ["six", 3]}}}',
        (1, 44, "sessions.a.keep_global"),
        "expected a list of strings, item 2 is a number",
        id="wrong-item-type-json",
    ),
    pytest.param(
        "s.toml",
        "[sessions.a]\ninherit_env = 'no'\n",
        (2, 15, "sessions.a.inherit_env"),
        "expected true or false, found a string",
        id="wrong-bool",
    ),
    pytest.param(
        "s.toml",
        "[sessions.a]\nenv = { X = true }\n",
        (2, 13, "sessions.a.env.X"),
        "expected a string, or false to unset it, found a boolean",
        id="env-true",
    ),
    pytest.param(
        "s.toml",
        '[sessions.a]\npaths = ["x"\n',
        (2, 13, None),
        "invalid TOML: unclosed array, expected `]`",
        id="toml-syntax",
    ),
    pytest.param(
        "s.json",
        '{\n  "sessions": {"a": {}}\n  "defaults": {}\n}',
        (3, 3, None),
        "invalid JSON: expected `,` or `}`",
        id="json-syntax",
    ),
    pytest.param(
        "s.json",
        '{"sessions": {"a": {"env": {"X": "1",\n  "X": "2"}}}}',
        (2, 3, "sessions.a.env.X"),
        "duplicate key",
        id="json-duplicate",
    ),
    pytest.param(
        "s.toml",
        '[sessions]\nok = {}\n"tool A" = {}\n',
        (3, 1, 'sessions."tool A"'),
        "invalid session name: use 1-64 ASCII letters, digits, '_', '-' or '.'",
        id="session-name",
    ),
    pytest.param(
        "s.toml",
        '[sessions.a]\npaths = ["lib", "${SUBSESSION_TEST_UNSET}/x"]\n',
        (2, 17, "sessions.a.paths"),
        "environment variable SUBSESSION_TEST_UNSET is not set (used as "
        "${SUBSESSION_TEST_UNSET}; set it or write ${SUBSESSION_TEST_UNSET:-default})",
        id="undefined-var",
    ),
    pytest.param(
        "s.toml",
        "[sessions.a]\nstartup = 'tool-a.boot'\n",
        (2, 11, "sessions.a.startup"),
        '"tool-a.boot" is not a module name (e.g. "toolA.startup")',
        id="startup-name",
    ),
]


@pytest.mark.parametrize(("name", "text", "where", "message"), BAD_FILES)
def test_errors_name_file_line_column_key(
    env: Path,
    tmp_path: Path,
    name: str,
    text: str,
    where: tuple[int, int, str | None],
    message: str,
) -> None:
    good = write(tmp_path, "good.toml", "[sessions.fine]\n")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(core.ConfigError) as info:
        parse(good, path)
    line, column, key = where
    expected = f"{path}:{line}:{column}: " + (f"{key}: " if key else "") + message
    assert str(info.value) == expected
    assert "\n" not in str(info.value)
    assert (info.value.file, info.value.line, info.value.column, info.value.key) == (
        str(path),
        line,
        column,
        key,
    )


def test_config_error_is_value_error() -> None:
    assert issubclass(core.ConfigError, ValueError)
    assert core.ConfigError.__name__ == "ConfigError"


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "studio.toml"
    with pytest.raises(core.ConfigError, match=r"studio\.toml: config file not found$") as info:
        parse(missing)
    assert info.value.file == str(missing)
    assert info.value.line is None
    with pytest.raises(core.ConfigError, match=r"\*\.toml or \*\.json"):
        parse(write(tmp_path, "studio.yaml", "sessions: {}\n"))


def test_paths_must_be_a_list() -> None:
    with pytest.raises(TypeError):
        core.parse_config("studio.toml")


def test_parse_session_json(env: Path) -> None:
    settings = core.parse_session_json(
        json.dumps({"paths": ["~/lib"], "env": {"A": "1", "B": None}, "startup": "x.y"}),
        "<C ABI>",
    )
    assert settings == {
        "paths": [str(env / "lib")],
        "env": {"A": "1", "B": None},
        "keep_global": [],
        "inherit_env": True,
        "inherit_paths": True,
        "startup": "x.y",
    }
    assert core.parse_session_json("{}", "x")["paths"] == []
    relative = core.parse_session_json('{"paths": ["lib"]}', "<C ABI>")["paths"]
    assert relative == [os.path.join(os.getcwd(), "lib")]
    with pytest.raises(core.ConfigError) as info:
        core.parse_session_json('{"paths": [],\n "paht": []}', "<C ABI>")
    assert str(info.value) == (
        f"<C ABI>:2:2: paht: unknown key (expected one of: {SESSION_KEYS}); did you mean paths?"
    )


# -- load_config (needs the session engine) ------------------------------------------------


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Unique session names, closed after the test."""
    made = [f"cfg_{uuid.uuid4().hex[:12]}_{i}" for i in range(3)]
    yield made
    for name in made:
        session = core.lookup(name) if HAS_ENGINE else None
        if session is not None:
            session.close()


def tool_package(root: Path, name: str, body: str = "LOADED = True\n") -> Path:
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "boot.py").write_text(body, encoding="utf-8")
    return root


@needs_engine
def test_load_config_creates_and_starts_sessions(
    env: Path, tmp_path: Path, names: list[str]
) -> None:
    import subsession

    a, b, _ = names
    tool_package(tmp_path / "tools" / "a", "tool_a_pkg")
    cfg = write(
        tmp_path,
        "studio.toml",
        f"""
        [defaults]
        keep_global = ["studio_core"]
        [sessions.{a}]
        paths = ["tools/a"]
        env = {{ TOOL = "a", GONE = false }}
        startup = "tool_a_pkg.boot"
        [sessions.{b}]
        inherit_paths = false
        """,
    )
    sessions = subsession.load_config(cfg)
    assert [s.name for s in sessions] == [a, b]
    sa, sb = sessions
    assert subsession.get(a) is sa
    assert sa.paths == [str(tmp_path / "tools" / "a")]
    assert sa.env == {"TOOL": "a", "GONE": None}
    assert sa.keep_global == ["studio_core"]
    assert "tool_a_pkg.boot" in sa.modules
    assert "tool_a_pkg.boot" not in sys.modules
    assert sb.inherit_paths is False


@needs_engine
def test_load_config_reuses_existing_session(tmp_path: Path, names: list[str]) -> None:
    import subsession

    name = names[0]
    existing = subsession.Session(name, paths=[str(tmp_path)], keep_global=["six"])
    cfg = write(tmp_path, "c.json", json.dumps({"sessions": {name: {"inherit_env": False}}}))
    (session,) = subsession.load_config([cfg])
    assert session is existing
    assert session.paths == []  # the config is the whole definition
    assert session.keep_global == []
    assert session.inherit_env is False


@needs_engine
def test_load_config_error_changes_nothing(tmp_path: Path, names: list[str]) -> None:
    import subsession
    from subsession.config import ConfigError

    new_name, old_name, _ = names
    old = subsession.Session(old_name, paths=[str(tmp_path)])
    good = write(tmp_path, "a.toml", f"[sessions.{new_name}]\n[sessions.{old_name}]\n")
    bad = write(tmp_path, "b.toml", f"[sessions.{old_name}]\npaths = 'x'\n")
    with pytest.raises(ConfigError, match=r"b\.toml:2:9: "):
        subsession.load_config([good, bad])
    assert core.lookup(new_name) is None
    assert old.paths == [str(tmp_path)]


@needs_engine
def test_load_config_from_environment(
    tmp_path: Path, names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subsession

    first = write(tmp_path, "studio.toml", f"[sessions.{names[0]}]\npaths = ['a']\n")
    write(tmp_path, "user.toml", f"[sessions.{names[0]}]\npaths = ['b']\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    value = os.pathsep.join([str(first), "", os.path.join("~", "user.toml")])
    monkeypatch.setenv("SUBSESSION_CONFIG", value)
    (session,) = subsession.load_config()
    assert session.paths == [str(tmp_path / "b")]
    monkeypatch.setenv("SUBSESSION_CONFIG", "")
    assert subsession.load_config() == []
    monkeypatch.delenv("SUBSESSION_CONFIG")
    assert subsession.load_config(None) == []


@needs_engine
def test_failing_startup_is_logged_not_raised(
    tmp_path: Path, names: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    import subsession

    broken, fine, _ = names
    tool_package(tmp_path / "b", "broken_pkg", "raise RuntimeError('boom')\n")
    tool_package(tmp_path / "f", "fine_pkg")
    cfg = write(
        tmp_path,
        "c.toml",
        f"""
        [sessions.{broken}]
        paths = ["b"]
        startup = "broken_pkg.boot"
        [sessions.{fine}]
        paths = ["f"]
        startup = "fine_pkg.boot"
        """,
    )
    with caplog.at_level(logging.ERROR, logger="subsession"):
        sessions = subsession.load_config(cfg)
    assert [s.name for s in sessions] == [broken, fine]
    assert "fine_pkg.boot" in sessions[1].modules
    assert any("broken_pkg.boot" in r.getMessage() for r in caplog.records)
