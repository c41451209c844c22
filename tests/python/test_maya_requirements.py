"""``subsession.maya.setup()`` with sessions that name requirements (docs/contract.md
§10.1): start-up downloads nothing, says in one Script Editor line per session what
the store lacks and which command fixes it, and uses the store once it is synced."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

FAKE_MAYA = str(Path(__file__).resolve().parents[1] / "fake_maya")
if FAKE_MAYA not in sys.path:  # appended: pytest re-inserts its folder if not sys.path[0]
    sys.path.append(FAKE_MAYA)

import fakehost  # noqa: E402
import subsession  # noqa: E402
import subsession.maya  # noqa: E402
from subsession import _requirements, _store  # noqa: E402
from test_requirements import TARGET, studio  # noqa: E402
from wheelhouse import ensure_uv, ensure_wheelhouse  # noqa: E402

from maya import _host  # noqa: E402

pytestmark = pytest.mark.skipif(TARGET is None, reason="no lock target for this platform")


@pytest.fixture
def maya(monkeypatch: pytest.MonkeyPatch) -> Any:
    before = fakehost.open_sessions()
    monkeypatch.delenv("SUBSESSION_CONFIG", raising=False)
    host = fakehost.fresh_maya(monkeypatch)
    yield host
    fakehost.close_new_sessions(before)
    _host.reset()


def test_setup_reports_the_missing_wheels_then_uses_the_store(
    maya: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    monkeypatch.setenv(_store.STORE_ENV, str(store))
    monkeypatch.delenv(_requirements.LOCK_ENV, raising=False)
    config = studio(tmp_path / "cfg", ensure_wheelhouse())
    _requirements.lock([str(config)], no_index=True, uv=ensure_uv())

    subsession.maya.setup(str(config), plugin=False)
    warnings = [text for level, text in _host.state.messages if level == "warning"]
    assert len(warnings) == 2, _host.state.messages
    for name, text in zip(["oldTool", "newTool"], warnings):
        assert f"session {name}: " in text and "\n" not in text
        assert text.endswith(f"run `python -m subsession sync {config} --target {TARGET}`")
    assert not store.exists()  # nothing was downloaded
    assert {"oldTool", "newTool"} <= {s.name for s in subsession.sessions()}

    _store.sync([str(config)])
    _host.state.messages.clear()
    subsession.maya.setup(str(config), plugin=False)
    assert [m for m in _host.state.messages if m[0] in ("warning", "error")] == []
    old = subsession.get("oldTool")
    assert all(p.startswith(str(store) + os.sep) for p in old.paths)
    assert old.import_module("packaging").__version__ == "20.9"
    assert subsession.get("newTool").import_module("packaging").__version__ == "24.2"
