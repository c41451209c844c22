"""One exception root (docs/contract.md, "Errors"): ``SessionError`` is a
``RuntimeError`` as Maya's commands raise, every error ``subsession`` defines derives
from it, and ``ConfigError`` is also a ``ValueError``."""

from __future__ import annotations

from pathlib import Path

import pytest
import subsession
from subsession import _core
from subsession.command import CommandError, execute

SUBCLASSES = [
    "ClosedSessionError",
    "ConfigError",
    "NoSuchSessionError",
    "ReloadError",
    "SessionExistsError",
]


def test_the_root_is_a_runtime_error() -> None:
    assert issubclass(subsession.SessionError, RuntimeError)
    assert subsession.SessionError is _core.SessionError
    assert subsession.SessionError.__module__ == "subsession"


@pytest.mark.parametrize("name", SUBCLASSES)
def test_every_error_derives_from_the_root(name: str) -> None:
    error = getattr(subsession, name)
    assert error is getattr(_core, name)
    assert issubclass(error, subsession.SessionError)
    assert error.__module__ == "subsession"
    assert name in subsession.__all__


def test_config_error_is_also_a_value_error(tmp_path: Path) -> None:
    assert issubclass(subsession.ConfigError, ValueError)
    assert subsession.config.ConfigError is subsession.ConfigError
    bad = tmp_path / "studio.toml"
    bad.write_text("[sessions.toolA]\npaht = []\n")
    for caught in (subsession.SessionError, ValueError, RuntimeError):
        with pytest.raises(caught, match="unknown key") as info:
            subsession.load_config(bad)
        assert type(info.value) is subsession.ConfigError
        assert info.value.key == "sessions.toolA.paht"


def test_command_error_derives_from_the_root() -> None:
    assert issubclass(CommandError, subsession.SessionError)
    assert not issubclass(CommandError, ValueError)
    with pytest.raises(subsession.SessionError, match="no session named"):
        execute("noSuchSessionForErrorsTest", {"modules": True}, query=True)


def test_session_errors_are_caught_as_runtime_errors() -> None:
    with pytest.raises(RuntimeError):
        subsession.get("noSuchSessionForErrorsTest")
