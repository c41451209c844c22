"""Helpers for tests that run subsession's Maya side against the fake host.

``import fakehost`` (with ``tests/fake_maya`` on ``sys.path``) then
``fakehost.fresh_maya(monkeypatch)`` for a fresh fake Maya whose
``MAYA_PLUG_IN_PATH`` holds the module's ``plug-ins`` (:data:`MODULE`);
``fakehost.close_new_sessions(before)`` closes the sessions a test opened;
``fakehost.write_tree(root, files)`` writes a tree of source files.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any

FAKE = Path(__file__).resolve().parent
ROOT = FAKE.parents[1]
#: The Maya module under test: the checkout's ``maya/``, or the folder extracted from
#: the module zip when ``$SUBSESSION_TEST_MODULE`` names it (scripts/test does).
MODULE = Path(os.environ.get("SUBSESSION_TEST_MODULE") or ROOT / "maya")
PLUGINS = MODULE / "plug-ins"

if str(FAKE) not in sys.path:
    sys.path.append(str(FAKE))

from maya import _host  # noqa: E402  (needs the path above)


def fresh_maya(monkeypatch: Any, batch: bool = False) -> Any:
    """Reset the fake Maya, point ``MAYA_PLUG_IN_PATH`` at the module's ``plug-ins``.

    The ``subsession`` logger's handlers, level and ``propagate`` (the plug-in and
    ``setup()`` set them) are restored when the test ends; ``_host.reset()`` takes
    Maya's handlers off the root logger.
    """
    import logging

    _host.reset(batch=batch)
    monkeypatch.setenv("MAYA_PLUG_IN_PATH", str(PLUGINS))
    logger = logging.getLogger("subsession")
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(logger, "level", logger.level)
    # setLevel() clears the level caches in place: the restored dict stays true
    monkeypatch.setattr(logger, "_cache", {})
    return _host


def open_sessions() -> set[int]:
    import subsession

    return {id(s) for s in subsession.sessions()}


def close_new_sessions(before: set[int]) -> None:
    """Close every session opened since ``open_sessions()`` returned ``before``."""
    import subsession

    for session in subsession.sessions():
        if id(session) not in before and not session.closed:
            session.close()


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: source}`` under ``root`` (dedented); returns ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def touch_newer(path: Path, text: str) -> None:
    """Rewrite ``path`` with ``text`` and move its mtime forward (so it is stale)."""
    stat = path.stat()
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    os.utime(path, (stat.st_atime + 10, stat.st_mtime + 10))
