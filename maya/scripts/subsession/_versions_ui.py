"""The session manager's *Versions* view: every distribution loaded anywhere, which
version each session and the host loaded, two versions marked, a compiled file shared
with the host flagged (:func:`subsession.versions`)."""

from __future__ import annotations

import os
from typing import Any, Optional

import subsession
from subsession._qt import QtCore, QtGui, QtWidgets, Signal, is_valid
from subsession._versions import LoadedDistribution

__all__ = ["VersionsView"]

Qt = QtCore.Qt

HOST_LABEL = "(host)"
CONFLICT_COLOR = "#f3d27a"
SHARED_COLOR = "#f08a80"


class _Bridge(QtCore.QObject):
    changed = Signal()


class VersionsView(QtWidgets.QWidget):
    """A tree: one row per distribution, one child per session (or the host) that
    loaded it. Refreshes when shown and, while visible, after sessions change."""

    COLUMNS = ["Distribution", "Version", "Loaded by", "Modules", "Location", "Note"]

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.records: list[LoadedDistribution] = []
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        head = QtWidgets.QHBoxLayout()
        self.summary = QtWidgets.QLabel("")
        self.only_conflicts = QtWidgets.QCheckBox("Only conflicts")
        self.only_conflicts.setToolTip(
            "Only distributions loaded at two versions or sharing C code"
        )
        self.only_conflicts.toggled.connect(lambda *_: self._fill())
        refresh = QtWidgets.QPushButton("Refresh")
        refresh.setToolTip("Look again at what every session and the host loaded")
        refresh.clicked.connect(lambda *_: self.refresh())
        head.addWidget(self.summary, 1)
        head.addWidget(self.only_conflicts)
        head.addWidget(refresh)
        layout.addLayout(head)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(self.COLUMNS)
        self.tree.setAlternatingRowColors(True)
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        layout.addWidget(self.tree, 1)
        self._bridge = _Bridge(self)
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self._refresh_if_visible)
        self._bridge.changed.connect(self._timer.start, Qt.ConnectionType.QueuedConnection)
        bridge = self._bridge

        def on_change(_change: subsession.Change) -> None:
            # Any thread: only a queued signal, and only while the widget lives.
            if is_valid(bridge):
                bridge.changed.emit()

        token = subsession.subscribe(on_change)
        self.destroyed.connect(lambda *_: subsession.unsubscribe(token))

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.refresh()

    def _refresh_if_visible(self) -> None:
        if self.isVisible():
            self.refresh()

    def refresh(self) -> list[LoadedDistribution]:
        """Read :func:`subsession.versions` again and show it; returns the records."""
        self.records = subsession.versions()
        self._fill()
        return self.records

    def conflicts(self) -> list[str]:
        """Distributions loaded at two or more versions, as shown (sorted)."""
        return sorted({r.name for r in self.records if r.conflict})

    def shared(self) -> list[str]:
        """Compiled files a session shares with the host, as shown (sorted)."""
        return sorted({f for r in self.records for f in r.shared_with_host})

    def _fill(self) -> None:
        self.tree.clear()
        groups: dict[str, list[LoadedDistribution]] = {}
        for record in self.records:
            groups.setdefault(record.key, []).append(record)
        only = self.only_conflicts.isChecked()
        bold = QtGui.QFont()
        bold.setBold(True)
        for members in groups.values():
            conflict = any(r.conflict for r in members)
            shared = sorted({f for r in members for f in r.shared_with_host})
            if only and not (conflict or shared):
                continue
            versions = sorted({r.version for r in members})
            note = []
            if conflict:
                note.append(f"loaded at {len(versions)} versions")
            if shared:
                note.append("C code shared with the host")
            top = QtWidgets.QTreeWidgetItem(
                [
                    members[0].name,
                    ", ".join(versions),
                    ", ".join(_owner(r) for r in members),
                    str(sum(len(r.modules) for r in members)),
                    "",
                    "; ".join(note),
                ]
            )
            for child_record in members:
                child = QtWidgets.QTreeWidgetItem(
                    [
                        "",
                        child_record.version,
                        _owner(child_record),
                        str(len(child_record.modules)),
                        child_record.location,
                        _shared_note(child_record),
                    ]
                )
                child.setToolTip(3, "\n".join(child_record.modules[:40]))
                if child_record.shared_with_host:
                    child.setToolTip(
                        5,
                        "\n".join(child_record.shared_with_host)
                        + "\nOne loaded file has one C state: the session and the host share "
                        "it. Give the session its own copy or keep the package global.",
                    )
                    _paint(child, SHARED_COLOR)
                top.addChild(child)
            if shared:
                _paint(top, SHARED_COLOR)
            elif conflict:
                _paint(top, CONFLICT_COLOR)
            if conflict or shared:
                for column in range(len(self.COLUMNS)):
                    top.setFont(column, bold)
            self.tree.addTopLevelItem(top)
            top.setExpanded(conflict or bool(shared))
        for column in range(len(self.COLUMNS) - 1):
            self.tree.resizeColumnToContents(column)
        count = len(groups)
        self.summary.setText(
            f"{count} distributions loaded; {len(self.conflicts())} at two or more versions; "
            f"{len(self.shared())} compiled files shared with the host"
        )


def _shared_note(record: LoadedDistribution) -> str:
    names = [os.path.basename(f) for f in record.shared_with_host]
    return f"shares {', '.join(names)} with the host" if names else ""


def _owner(record: LoadedDistribution) -> str:
    return HOST_LABEL if record.session is None else record.session


def _paint(item: QtWidgets.QTreeWidgetItem, color: str) -> None:
    brush = QtGui.QBrush(QtGui.QColor(color))
    for column in range(item.columnCount()):
        item.setBackground(column, brush)
        item.setForeground(column, QtGui.QBrush(QtGui.QColor("#1b1b1b")))
