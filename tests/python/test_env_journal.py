"""The environment during blocks, found from the writes themselves (docs/contract.md §4.3
item 6, docs/design.md §3.3): every write goes through ``os.putenv``/``os.unsetenv``,
which subsession journals while a block is active, so a block restores and keeps what
was written, by ``os.environ`` or by ``os.putenv`` directly, in an environment of
Maya's size, without comparing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

BIG = 300


def child_sees(key: str) -> Optional[str]:
    """The value a child process inherits (the C environment, not ``os.environ``)."""
    code = f"import os, json; print(json.dumps(os.environ.get({key!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    value: Optional[str] = json.loads(out.stdout)
    return value


@pytest.fixture
def big(env_guard: None) -> Iterator[None]:
    """A Maya-sized environment (300 variables)."""
    for i in range(max(0, BIG - len(os.environ))):
        os.environ[f"SUBSESSION_T_BIG_{i:03d}"] = f"/studio/plug-ins/{i}"
    yield


@pytest.fixture
def c_keys() -> Iterator[list[str]]:
    """Names a test writes with ``os.putenv`` directly: unset from C at the end too."""
    keys: list[str] = []
    yield keys
    for k in keys:
        os.unsetenv(k)
        os.environ.pop(k, None)


def test_direct_putenv_in_a_block_is_kept_by_the_session_and_restored(
    new_session: Callable[..., Any], big: None, c_keys: list[str]
) -> None:
    big_env = dict(os.environ)  # taken here: pytest edits its own variable per phase
    key = "SUBSESSION_T_DIRECT_PUT"
    c_keys.append(key)
    s = new_session(env={"SUBSESSION_T_TOOL": "1"})
    with s:
        os.putenv(key, "inside")
        assert child_sees(key) == "inside"
    assert child_sees(key) is None, "a direct putenv leaked out of the block"
    assert dict(os.environ) == big_env
    assert s.env.get(key) == "inside", s.env
    with s:
        # Kept by the session: applied again, through os.environ this time.
        assert os.environ.get(key) == "inside"
        assert child_sees(key) == "inside"
    assert child_sees(key) is None
    assert dict(os.environ) == big_env


def test_direct_unsetenv_of_a_global_variable_is_restored(
    new_session: Callable[..., Any], big: None
) -> None:
    big_env = dict(os.environ)  # taken here: pytest edits its own variable per phase
    key = "SUBSESSION_T_BIG_007"
    assert os.environ[key] == big_env[key]
    s = new_session()
    with s:
        os.unsetenv(key)
        assert child_sees(key) is None
    assert child_sees(key) == big_env[key], "the C environment was not restored"
    assert dict(os.environ) == big_env
    assert s.env.get(key, "missing") is None, s.env


def test_environ_edits_in_a_big_environment_are_kept_and_restored(
    new_session: Callable[..., Any], big: None
) -> None:
    big_env = dict(os.environ)  # taken here: pytest edits its own variable per phase
    s = new_session(env={"SUBSESSION_T_TOOL": "1"})
    with s:
        os.environ["SUBSESSION_T_ADDED"] = "a"
        os.environ["SUBSESSION_T_BIG_001"] = "changed"
        del os.environ["SUBSESSION_T_BIG_002"]
        os.environ["SUBSESSION_T_TOOL"] = "2"
    assert dict(os.environ) == big_env
    assert child_sees("SUBSESSION_T_BIG_002") == big_env["SUBSESSION_T_BIG_002"]
    assert child_sees("SUBSESSION_T_ADDED") is None
    assert s.env == {
        "SUBSESSION_T_TOOL": "2",
        "SUBSESSION_T_ADDED": "a",
        "SUBSESSION_T_BIG_001": "changed",
        "SUBSESSION_T_BIG_002": None,
    }
    with s:
        assert os.environ["SUBSESSION_T_BIG_001"] == "changed"
        assert "SUBSESSION_T_BIG_002" not in os.environ
        assert os.environ["SUBSESSION_T_TOOL"] == "2"
    assert dict(os.environ) == big_env


def test_nested_blocks_each_restore_their_own_writes(
    new_session: Callable[..., Any], big: None
) -> None:
    big_env = dict(os.environ)  # taken here: pytest edits its own variable per phase
    outer = new_session(env={"SUBSESSION_T_OUTER": "o"})
    inner = new_session(env={"SUBSESSION_T_INNER": "i"})
    with outer:
        os.environ["SUBSESSION_T_OUTER_EDIT"] = "1"
        with inner:
            # The inner block applies on the environment from before the outer one.
            assert "SUBSESSION_T_OUTER" not in os.environ
            assert "SUBSESSION_T_OUTER_EDIT" not in os.environ
            assert os.environ["SUBSESSION_T_INNER"] == "i"
            os.environ["SUBSESSION_T_BIG_003"] = "inner"
        assert os.environ["SUBSESSION_T_OUTER"] == "o"
        assert os.environ["SUBSESSION_T_OUTER_EDIT"] == "1"
        assert os.environ["SUBSESSION_T_BIG_003"] == big_env["SUBSESSION_T_BIG_003"]
        assert "SUBSESSION_T_INNER" not in os.environ
    assert dict(os.environ) == big_env
    assert inner.env == {"SUBSESSION_T_INNER": "i", "SUBSESSION_T_BIG_003": "inner"}
    assert outer.env == {"SUBSESSION_T_OUTER": "o", "SUBSESSION_T_OUTER_EDIT": "1"}


def test_isolated_block_hides_c_only_variables_and_restores_them(
    new_session: Callable[..., Any], big: None, c_keys: list[str]
) -> None:
    """A variable in the C environment only (as readline's LINES): hidden inside an
    ``inherit_env=False`` block, back after it."""
    big_env = dict(os.environ)  # taken here: pytest edits its own variable per phase
    key = "SUBSESSION_T_C_ONLY"
    c_keys.append(key)
    os.putenv(key, "c")
    assert key not in os.environ
    s = new_session(env={"SUBSESSION_T_TOOL": "1"}, inherit_env=False)
    with s:
        assert dict(os.environ) == {"SUBSESSION_T_TOOL": "1"}
        assert child_sees(key) is None
        assert child_sees("SUBSESSION_T_BIG_000") is None
    assert child_sees(key) == "c"
    assert dict(os.environ) == big_env
    assert child_sees("SUBSESSION_T_BIG_000") == big_env["SUBSESSION_T_BIG_000"]


def test_a_refused_write_changes_nothing(new_session: Callable[..., Any], big: None) -> None:
    big_env = dict(os.environ)  # taken here: pytest edits its own variable per phase
    s = new_session()
    with s:
        with pytest.raises(ValueError):
            os.putenv("BAD=NAME", "x")
        with pytest.raises(ValueError):
            os.environ["BAD=NAME"] = "x"
    assert s.env == {}
    assert dict(os.environ) == big_env


def test_hooks_stay_the_plain_functions_outside_blocks(big: None) -> None:
    import subsession  # noqa: F401  (the hooks are in place once a block ran)

    os.environ["SUBSESSION_T_OUTSIDE"] = "1"
    assert child_sees("SUBSESSION_T_OUTSIDE") == "1"
    del os.environ["SUBSESSION_T_OUTSIDE"]
    assert child_sees("SUBSESSION_T_OUTSIDE") is None
