"""Fake ``maya.standalone``: ``initialize`` switches the fake host to batch mode."""

from __future__ import annotations

from maya import _host


def initialize(name: str = "python") -> None:
    """Start the (fake) standalone session: batch mode, no UI, and Maya's shell log
    handler on the root logger (``maya/app/startup/batch.py`` runs ``basic.py``, which
    calls ``maya.utils.shellLogHandler()``)."""
    from maya import _ui, utils

    _host.state.batch = True
    utils.shellLogHandler()
    _host.state.standalone = True
    _ui.reset()  # nothing of the interface exists in batch mode


def uninitialize() -> None:
    """End the standalone session."""
    _host.state.standalone = False
