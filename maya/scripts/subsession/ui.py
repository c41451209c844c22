"""The session manager: every session of this interpreter, what each loaded, what is
stale, what a close left alive (PySide6 or PySide2, whichever the host has).

>>> import subsession.ui
>>> window = subsession.ui.show()          # a window; in Maya prefer the docked panel:
>>> import subsession.maya                  # doctest: +SKIP
>>> subsession.maya.show_manager()          # doctest: +SKIP

The manager follows changes made anywhere (Python, the ``subSession`` command, the C
ABI) through the core's change notifications (:func:`subsession.subscribe`), checks
for stale files on a worker thread every few seconds while it is visible, and logs
what the ``subsession`` logger says.
"""

from __future__ import annotations

import gc
import html
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Optional

import subsession
from subsession import _changes
from subsession._qt import QtCore, QtGui, QtWidgets, Signal, is_valid

__all__ = ["LeakReportDialog", "SessionManager", "show"]

Qt = QtCore.Qt
_log = logging.getLogger("subsession.ui")

_WATCH_MISSING = (
    "Watch (reload on save) is not available in this version of subsession; "
    "use Reload stale after saving"
)
_PROBE_KEY = "__subsession_ui_probe__"

#: Log pane levels: label -> logging level of the ``subsession`` logger.
LOG_LEVELS = {"Warnings": logging.WARNING, "Info": logging.INFO, "Debug": logging.DEBUG}


def _label(session: subsession.Session) -> str:
    return session.name if session.name is not None else f"(anonymous) {session.prefix}"


def _has_watch() -> bool:
    return callable(getattr(subsession.Session, "watch", None))


class _Bridge(QtCore.QObject):
    """Carries work from any thread to the widget's thread (queued signals)."""

    changed = Signal(object)
    stale_done = Signal(object)
    record = Signal(str, int)


class _Listener:
    """The core's subscriber: hands each change to the UI thread and returns at once.
    Holds the bridge weakly, so the subscription never keeps a closed manager alive."""

    def __init__(self, bridge: _Bridge) -> None:
        self._bridge = weakref.ref(bridge)
        self.token = 0

    def __call__(self, change: subsession.Change) -> None:
        bridge = self._bridge()
        if bridge is None or not is_valid(bridge):
            subsession.unsubscribe(self.token)
            return
        bridge.changed.emit(change)


class _LogHandler(logging.Handler):
    def __init__(self, bridge: _Bridge) -> None:
        super().__init__(logging.DEBUG)
        self._bridge = weakref.ref(bridge)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        bridge = self._bridge()
        if bridge is None or not is_valid(bridge):
            return
        try:
            bridge.record.emit(self.format(record), record.levelno)
        except Exception:  # a logging handler must never raise into the logging code
            self.handleError(record)


class _Row:
    __slots__ = ("prefix", "session", "stale", "count")

    def __init__(self, session: subsession.Session) -> None:
        self.prefix = session.prefix
        self.session = session
        self.stale: Optional[list[str]] = None  # None: not checked yet
        self.count = len(session.modules)


class _TableModel(QtCore.QAbstractTableModel):
    """A read-only table of strings, filtered and sorted in Python: Qt asks data()
    only for the visible cells (a proxy model would call back per row to sort)."""

    def __init__(self, headers: list[str], parent: QtCore.QObject) -> None:
        super().__init__(parent)
        self.headers = headers
        self._all: list[tuple[str, list[str], bool]] = []
        self._shown: list[tuple[str, list[str], bool]] = []
        self._filter = ""
        self._sort: Optional[tuple[int, bool]] = None

    @property
    def keys(self) -> list[str]:
        return [key for key, _, _ in self._shown]

    def set_rows(
        self, keys: list[str], rows: list[list[str]], marked: Optional[set[str]] = None
    ) -> None:
        """Rows with their keys; ``marked`` keys are drawn in the warning colour."""
        marks = marked or set()
        self._all = [(k, r, k in marks) for k, r in zip(keys, rows)]
        self._apply()

    def set_filter(self, text: str) -> None:
        self._filter = text.lower()
        self._apply()

    def sort(self, column: int, order: Any = None) -> None:
        self._sort = (column, order == Qt.SortOrder.DescendingOrder)
        self._apply()

    def _apply(self) -> None:
        self.beginResetModel()
        shown = self._all
        if self._filter:
            shown = [r for r in shown if self._filter in r[0].lower()]
        if self._sort is not None:
            column, reverse = self._sort
            shown = sorted(shown, key=lambda r: r[1][column], reverse=reverse)
        self._shown = shown
        self.endResetModel()

    def rowCount(self, parent: Any = None) -> int:  # noqa: N802 - Qt's name
        return 0 if parent is not None and parent.isValid() else len(self._shown)

    def columnCount(self, parent: Any = None) -> int:  # noqa: N802
        return 0 if parent is not None and parent.isValid() else len(self.headers)

    def data(self, index: Any, role: int = 0) -> Any:
        row = index.row()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return self._shown[row][1][index.column()]
        if role == Qt.ItemDataRole.ForegroundRole and self._shown[row][2]:
            return QtGui.QBrush(QtGui.QColor(232, 160, 60))
        return None

    def headerData(self, section: int, orientation: Any, role: int = 0) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.headers[section]
        return None


class LeakReportDialog(QtWidgets.QDialog):
    """What a close left alive, with what holds each module, and a force-close that
    clears the survivors' globals (whoever still calls into them then fails)."""

    def __init__(
        self,
        report: subsession.UnloadReport,
        probes: dict[str, weakref.ref[Any]],
        parent: Optional[QtWidgets.QWidget] = None,
    ) -> None:
        super().__init__(parent)
        self.report = report
        self._probes = probes
        self.setWindowTitle(f"Sub-sessions: {report.session} left modules alive")
        layout = QtWidgets.QVBoxLayout(self)
        intro = QtWidgets.QLabel(
            f"<b>{html.escape(report.session)}</b> is closed, but "
            f"{len(report.leaks)} of its modules {'is' if len(report.leaks) == 1 else 'are'} "
            "still alive. Drop what holds them "
            "(below), or force-close: their globals are cleared and whoever still calls "
            "into them fails."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(["Module / held by"])
        for name, holders in sorted(report.leaks.items()):
            item = QtWidgets.QTreeWidgetItem([name])
            for holder in holders or ["an unknown object"]:
                child = QtWidgets.QTreeWidgetItem([holder])
                child.setToolTip(0, holder)
                item.addChild(child)
            self.tree.addTopLevelItem(item)
        self.tree.expandAll()
        layout.addWidget(self.tree)
        buttons = QtWidgets.QDialogButtonBox()
        self.force_button = buttons.addButton(
            "Force close", QtWidgets.QDialogButtonBox.ButtonRole.DestructiveRole
        )
        self.force_button.setToolTip("Clear the globals of the modules still alive")
        buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close)
        self.force_button.clicked.connect(self.force_close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(640, 360)

    def force_close(self) -> list[str]:
        """Clear the globals of every survivor still alive; returns their names."""
        cleared = []
        for name, ref in sorted(self._probes.items()):
            probe = ref()
            if probe is None:
                continue
            for holder in gc.get_referrers(probe):
                if isinstance(holder, dict) and holder.get(_PROBE_KEY) is probe:
                    holder.clear()
                    cleared.append(name)
                    break
        self._probes.clear()
        self.force_button.setEnabled(False)
        _log.warning(
            "force-closed session %s: cleared the globals of %s still alive: %s",
            self.report.session,
            _plural(len(cleared), "module"),
            ", ".join(cleared) or "none",
        )
        return cleared


class _Probe:
    """Put into each module's globals before a close, to find them again for a
    force-close (weakly referenced: it keeps nothing alive)."""


class SessionManager(QtWidgets.QWidget):
    """Every session (name, paths, env, keep_global, module count, stale count,
    watching), the selected session's modules (real name, file, last reload, stale),
    actions on the selection, and a log pane of the ``subsession`` logger.

    ``stale_interval``: seconds between stale checks while visible (0: only on demand).
    Hooks a host or a test may replace: :attr:`confirm_close` (``session -> bool``)
    and :attr:`reveal` (``folder -> None``).
    """

    SESSION_COLUMNS = [
        "Session",
        "Modules",
        "Stale",
        "Watching",
        "Paths",
        "Environment",
        "Keep global",
    ]
    MODULE_COLUMNS = ["Module", "Stale", "Last reload", "File"]

    def __init__(
        self, parent: Optional[QtWidgets.QWidget] = None, *, stale_interval: float = 2.0
    ) -> None:
        super().__init__(parent)
        self.setObjectName("subsessionManager")
        self.setWindowTitle("Sub-sessions")
        self._rows: dict[str, _Row] = {}
        self._checking = False
        self._dirty: set[str] = set()
        self.leak_dialog: Optional[LeakReportDialog] = None
        self.last_stale_seconds: Optional[float] = None
        self.last_refresh_seconds: Optional[float] = None
        self.confirm_close: Callable[[subsession.Session], bool] = self._ask_close
        self.reveal: Callable[[str], None] = self._open_folder
        self._bridge = _Bridge(self)
        self._build()
        self._bridge.changed.connect(self._on_change, Qt.ConnectionType.QueuedConnection)
        self._bridge.stale_done.connect(self._on_stale_done, Qt.ConnectionType.QueuedConnection)
        self._bridge.record.connect(self._append_log, Qt.ConnectionType.QueuedConnection)
        # Changes of the core, from now on; then the sessions that exist already.
        self._listener = _Listener(self._bridge)
        self._listener.token = subsession.subscribe(self._listener)
        self._handler = _LogHandler(self._bridge)
        logging.getLogger("subsession").addHandler(self._handler)
        token, handler = self._listener.token, self._handler
        self.destroyed.connect(lambda *_: _detach(token, handler))
        for session in subsession.sessions():
            self._rows[session.prefix] = _Row(session)
        self._coalesce = QtCore.QTimer(self)
        self._coalesce.setSingleShot(True)
        self._coalesce.setInterval(100)
        self._coalesce.timeout.connect(self._flush_dirty)
        self._stale_timer = QtCore.QTimer(self)
        self._stale_timer.timeout.connect(self._tick)
        if stale_interval > 0:
            self._stale_timer.start(int(stale_interval * 1000))
        self._refresh_sessions()
        if self._rows:
            self.sessions_view.selectRow(0)
        QtCore.QTimer.singleShot(0, self.check_stale)

    # -- building ---------------------------------------------------------------------
    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        bar = QtWidgets.QHBoxLayout()
        self.reload_button = self._button(
            "Reload stale",
            "Reload changed modules and their importers",
            lambda: self.reload_stale(),
        )
        self.deep_button = self._button(
            "Deep reload",
            "Reload stale modules and update live functions, classes and instances in place",
            lambda: self.reload_stale(deep=True),
        )
        self.all_button = self._button(
            "Reload all",
            "Reload every module of the session, dependencies first",
            lambda: self.reload_all(),
        )
        self.watch_button = self._button(
            "Watch", "Reload automatically when a file is saved", self._toggle_watch
        )
        self.watch_button.setCheckable(True)
        if not _has_watch():
            self.watch_button.setEnabled(False)
            self.watch_button.setToolTip(_WATCH_MISSING)
        self.close_button = self._button(
            "Close…",
            "Unload the session and report what is still alive",
            lambda: self.close_selected(),
        )
        self.file_button = self._button(
            "Reveal file",
            "Open the folder of the selected module (or of the session's first path)",
            lambda: self.reveal_file(),
        )
        self.config_button = self._button(
            "Reveal config",
            "Open the folder of the config file that defined the session",
            lambda: self.reveal_config(),
        )
        for button in (self.reload_button, self.deep_button, self.all_button, self.watch_button):
            bar.addWidget(button)
        bar.addSpacing(12)
        bar.addWidget(self.close_button)
        bar.addStretch(1)
        bar.addWidget(self.file_button)
        bar.addWidget(self.config_button)
        layout.addLayout(bar)

        self.sessions_model = _TableModel(self.SESSION_COLUMNS, self)
        self.sessions_view = self._view(self.sessions_model)
        self.sessions_view.selectionModel().selectionChanged.connect(self._on_select)
        self.modules_model = _TableModel(self.MODULE_COLUMNS, self)
        self.modules_view = self._view(self.modules_model)
        self.modules_view.setSortingEnabled(True)
        self.modules_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.filter_edit = QtWidgets.QLineEdit()
        self.filter_edit.setPlaceholderText("Filter modules")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.modules_model.set_filter)
        self.modules_label = QtWidgets.QLabel("Modules")
        modules_box = QtWidgets.QWidget()
        modules_layout = QtWidgets.QVBoxLayout(modules_box)
        modules_layout.setContentsMargins(0, 0, 0, 0)
        head = QtWidgets.QHBoxLayout()
        head.addWidget(self.modules_label)
        head.addStretch(1)
        head.addWidget(self.filter_edit)
        modules_layout.addLayout(head)
        modules_layout.addWidget(self.modules_view)

        log_box = QtWidgets.QWidget()
        log_layout = QtWidgets.QVBoxLayout(log_box)
        log_layout.setContentsMargins(0, 0, 0, 0)
        log_head = QtWidgets.QHBoxLayout()
        log_head.addWidget(QtWidgets.QLabel("Changes and the subsession logger"))
        log_head.addStretch(1)
        self.level_combo = QtWidgets.QComboBox()
        self.level_combo.addItems(list(LOG_LEVELS))
        level = logging.getLogger("subsession").getEffectiveLevel()
        names = [n for n, v in LOG_LEVELS.items() if v >= level] or ["Warnings"]
        self.level_combo.setCurrentText(names[-1] if level <= logging.DEBUG else names[0])
        self.level_combo.setToolTip("Level of the subsession logger while you watch it here")
        self.level_combo.currentTextChanged.connect(self.set_log_level)
        log_head.addWidget(self.level_combo)
        log_layout.addLayout(log_head)
        self.log_view = QtWidgets.QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        self.log_view.setFont(font)
        log_layout.addWidget(self.log_view)

        from subsession._versions_ui import VersionsView

        self.versions_view = VersionsView()
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(modules_box, "Modules")
        self.tabs.addTab(self.versions_view, "Versions")
        splitter = QtWidgets.QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.sessions_view)
        splitter.addWidget(self.tabs)
        splitter.addWidget(log_box)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 4)
        splitter.setStretchFactor(2, 2)
        layout.addWidget(splitter, 1)

        foot = QtWidgets.QHBoxLayout()
        self.status = QtWidgets.QLabel("")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(120)
        self.progress.setMaximumHeight(12)
        self.progress.setTextVisible(False)
        self.progress.hide()
        foot.addWidget(self.status, 1)
        foot.addWidget(self.progress)
        layout.addLayout(foot)
        self.resize(900, 640)

    def _button(self, text: str, tip: str, slot: Callable[[], object]) -> QtWidgets.QPushButton:
        button = QtWidgets.QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(lambda *_: slot())
        return button

    def _view(self, model: QtCore.QAbstractItemModel) -> QtWidgets.QTableView:
        view = QtWidgets.QTableView()
        view.setModel(model)
        view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        view.setAlternatingRowColors(True)
        view.setWordWrap(False)
        view.verticalHeader().hide()
        view.verticalHeader().setDefaultSectionSize(22)
        view.horizontalHeader().setStretchLastSection(True)
        view.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        return view

    # -- selection ----------------------------------------------------------------------
    def session_names(self) -> list[str]:
        """The labels listed, in creation order."""
        return [_label(r.session) for r in self._rows.values()]

    def module_names(self) -> list[str]:
        """The module names listed for the selected session (as sorted on screen)."""
        return self.modules_model.keys

    def selected_session(self) -> Optional[subsession.Session]:
        row = self._selected_row()
        return row.session if row is not None else None

    def _selected_row(self) -> Optional[_Row]:
        rows = self.sessions_view.selectionModel().selectedRows()
        if not rows:
            return None
        keys = self.sessions_model.keys
        index = rows[0].row()
        return self._rows.get(keys[index]) if index < len(keys) else None

    def select_session(self, name: str) -> None:
        """Select the session with this name (or prefix)."""
        for i, key in enumerate(self.sessions_model.keys):
            session = self._rows[key].session
            if name in (session.name, session.prefix):
                self.sessions_view.selectRow(i)
                return
        raise KeyError(
            f"no session {name!r} in the manager; it lists: {', '.join(self.session_names())}"
        )

    def select_module(self, name: str) -> None:
        keys = self.modules_model.keys
        if name in keys:
            self.modules_view.selectRow(keys.index(name))
            return
        raise KeyError(f"module {name!r} is not listed for the selected session")

    def _selected_module(self) -> Optional[str]:
        rows = self.modules_view.selectionModel().selectedRows()
        keys = self.modules_model.keys
        return keys[rows[0].row()] if rows and rows[0].row() < len(keys) else None

    def _on_select(self, *_: Any) -> None:
        self._refresh_modules()

    # -- changes from the core --------------------------------------------------------------
    def _on_change(self, change: subsession.Change) -> None:
        prefix = change.prefix
        if change.kind != "imported":
            self._note_change(change)
        if change.kind == "closed":
            if self._rows.pop(prefix, None) is not None:
                self._refresh_sessions()
                self._refresh_modules()
            return
        if change.kind == "created" and prefix not in self._rows:
            session = self._find(change)
            if session is not None and not session.closed:
                self._rows[prefix] = _Row(session)
                self._refresh_sessions()
                if len(self._rows) == 1:
                    self.sessions_view.selectRow(0)
            return
        self._dirty.add(prefix)
        if change.kind == "reloaded" and prefix in self._rows:
            row = self._rows[prefix]
            if row.stale:
                row.stale = [m for m in row.stale if m not in change.modules]
        if not self._coalesce.isActive():
            self._coalesce.start()

    def _find(self, change: subsession.Change) -> Optional[subsession.Session]:
        if change.name is not None:
            try:
                return subsession.get(change.name)
            except subsession.SessionError:
                return None
        return next((s for s in subsession.sessions() if s.prefix == change.prefix), None)

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        selected = self._selected_row()
        for prefix in dirty:
            row = self._rows.get(prefix)
            if row is None:
                continue
            if row.session.closed:
                del self._rows[prefix]
                continue
            row.count = len(row.session.modules)
        self._refresh_sessions()
        if selected is not None and selected.prefix in dirty:
            self._refresh_modules()

    # -- tables --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read every listed session (the notifications normally keep it current)."""
        for prefix, row in list(self._rows.items()):
            if row.session.closed:
                del self._rows[prefix]
            else:
                row.count = len(row.session.modules)
        self._refresh_sessions()
        self._refresh_modules()

    def _session_cells(self, row: _Row) -> list[str]:
        s = row.session
        env = ", ".join(f"{k}={'(unset)' if v is None else v}" for k, v in sorted(s.env.items()))
        stale = "…" if row.stale is None else str(len(row.stale))
        if _has_watch():
            watching = "yes" if getattr(s, "watching", False) else "no"
        else:
            watching = "n/a"
        paths = os.pathsep.join(s.paths)
        if not s.inherit_paths:
            paths += "  (own paths only)"
        if not s.inherit_env:
            env += "  (own environment only)"
        return [_label(s), str(row.count), stale, watching, paths, env, ", ".join(s.keep_global)]

    def _refresh_sessions(self) -> None:
        selected = self._selected_row()
        keys = list(self._rows)
        rows = [self._session_cells(self._rows[k]) for k in keys]
        marked = {k for k in keys if self._rows[k].stale}
        self.sessions_model.set_rows(keys, rows, marked)
        header = self.sessions_view.horizontalHeader()
        for column in range(len(self.SESSION_COLUMNS) - 1):
            header.setSectionResizeMode(column, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        if selected is not None and selected.prefix in self._rows:
            self.sessions_view.selectRow(keys.index(selected.prefix))
        self._update_actions()

    def _refresh_modules(self) -> None:
        started = time.perf_counter()
        row = self._selected_row()
        keys: list[str] = []
        rows: list[list[str]] = []
        marked: set[str] = set()
        if row is not None and not row.session.closed:
            stale = set(row.stale or ())
            reloads = _changes.last_reloads(row.prefix)
            for name, module in sorted(row.session.modules.items()):
                file = getattr(module, "__file__", None) or "(no file)"
                when = reloads.get(name)
                last = time.strftime("%H:%M:%S", time.localtime(when)) if when else "—"
                is_stale = name in stale
                if is_stale:
                    marked.add(name)
                keys.append(name)
                rows.append([name, "stale" if is_stale else "", last, str(file)])
            self.modules_label.setText(
                f"Modules of <b>{html.escape(_label(row.session))}</b> ({len(rows)})"
            )
        else:
            self.modules_label.setText("Modules")
        self.modules_model.set_rows(keys, rows, marked)
        if rows:
            metrics = self.modules_view.fontMetrics()
            widest = metrics.horizontalAdvance(max(keys, key=len)) + 24
            self.modules_view.setColumnWidth(0, min(360, max(160, widest)))
            self.modules_view.setColumnWidth(1, metrics.horizontalAdvance("stale") + 32)
            self.modules_view.setColumnWidth(2, metrics.horizontalAdvance("00:00:00") + 40)
        self.last_refresh_seconds = time.perf_counter() - started
        self._update_actions()

    def _update_actions(self) -> None:
        row = self._selected_row()
        has = row is not None
        for button in (
            self.reload_button,
            self.deep_button,
            self.all_button,
            self.close_button,
            self.file_button,
            self.config_button,
        ):
            button.setEnabled(has)
        if _has_watch():
            self.watch_button.setEnabled(has)
            self.watch_button.setChecked(
                bool(has and getattr(row.session if row else None, "watching", False))
            )

    # -- stale checks (worker thread) ---------------------------------------------------------
    def _tick(self) -> None:
        if self.isVisible():
            self.check_stale()

    def check_stale(self, wait: bool = False) -> bool:
        """Start a stale check of every listed session on a worker thread; the tables
        update when it ends. Returns False if one is running already. ``wait=True``
        joins the thread (tests and scripts; the UI never waits)."""
        if self._checking:
            return False
        sessions = [(p, r.session) for p, r in self._rows.items()]
        if not sessions:
            return False
        self._checking = True
        self._busy(True)
        bridge = weakref.ref(self._bridge)

        def work() -> None:
            started = time.perf_counter()
            results: dict[str, Any] = {}
            for prefix, session in sessions:
                try:
                    results[prefix] = session.stale()  # the file checks release the GIL
                except subsession.ClosedSessionError:
                    results[prefix] = None
                except Exception as error:  # reported in the UI, never lost in a thread
                    results[prefix] = error
            target = bridge()
            if target is not None and is_valid(target):
                target.stale_done.emit((results, time.perf_counter() - started))

        thread = threading.Thread(target=work, name="subsession-ui-stale", daemon=True)
        thread.start()
        if wait:
            thread.join()
        return True

    def _on_stale_done(self, payload: tuple[dict[str, Any], float]) -> None:
        results, seconds = payload
        self._checking = False
        self._busy(False)
        self.last_stale_seconds = seconds
        changed = False
        for prefix, result in results.items():
            row = self._rows.get(prefix)
            if row is None:
                continue
            if result is None:
                continue
            if isinstance(result, Exception):
                self._say(f"stale check of {_label(row.session)} failed: {result}", error=True)
                continue
            if result != row.stale:
                row.stale = list(result)
                changed = True
        if changed:
            self._refresh_sessions()
            self._refresh_modules()
        total = sum(len(r.stale or ()) for r in self._rows.values())
        self._say(
            f"{_plural(total, 'stale module')} · stale check {seconds * 1000:.1f} ms "
            f"for {_plural(len(results), 'session')}"
        )

    # -- actions ----------------------------------------------------------------------------------
    def _need_session(self) -> Optional[subsession.Session]:
        session = self.selected_session()
        if session is None:
            self._say("select a session first", error=True)
        return session

    def reload_stale(self, deep: bool = False) -> list[str]:
        """Reload the selected session's changed modules (and their importers)."""
        session = self._need_session()
        if session is None:
            return []
        return self._reload(
            session,
            lambda: session.reload_stale(deep=deep),
            "deep reload" if deep else "reload stale",
        )

    def reload_all(self, deep: bool = False) -> list[str]:
        """Reload every module of the selected session, dependencies first."""
        session = self._need_session()
        if session is None:
            return []
        return self._reload(session, lambda: session.reload_all(deep=deep), "reload all")

    def _reload(
        self, session: subsession.Session, run: Callable[[], list[str]], what: str
    ) -> list[str]:
        label = _label(session)
        self._busy(True, f"{label}: {what}…")
        started = time.perf_counter()
        try:
            names = run()
        except subsession.SessionError as error:
            # The status line gets the first line (file, line, error); the log pane the
            # short traceback of a ReloadError too.
            self._say(f"{label}: {str(error).partition(chr(10))[0]}", error=True)
            _log.warning("%s: %s", label, error)
            return []
        finally:
            self._busy(False)
        ms = (time.perf_counter() - started) * 1000
        if names:
            self._say(
                f"{label}: {what}: {_plural(len(names), 'module')} in {ms:.0f} ms "
                f"({', '.join(names)})"
            )
            _log.info("%s: %s of %s", label, what, ", ".join(names))
        else:
            self._say(f"{label}: nothing changed on disk, nothing reloaded")
        self.check_stale()
        return names

    def _toggle_watch(self) -> None:
        session = self._need_session()
        if session is None or not _has_watch():
            return
        if getattr(session, "watching", False):
            session.unwatch()
        else:
            session.watch()
        self._refresh_sessions()

    def close_selected(self, force: bool = False) -> Optional[subsession.UnloadReport]:
        """Close the selected session after :attr:`confirm_close` agrees; a close
        that leaves modules alive opens the leak report (:attr:`leak_dialog`)."""
        session = self._need_session()
        if session is None or not self.confirm_close(session):
            return None
        label = _label(session)
        probes = _probe_modules(session)
        try:
            report = session.close(force=force)
        except subsession.SessionError as error:
            for ref in probes.values():
                _drop_probe(ref)
            self._say(f"{label}: {error}", error=True)
            return None
        if report:
            alive = _plural(len(report.leaks), "module")
            self._say(
                f"closed {label}: {alive} still alive (see the report)",
                error=True,
            )
            self.leak_dialog = LeakReportDialog(report, probes, self)
            self.leak_dialog.show()
        else:
            unloaded = _plural(len(report.unloaded), "module")
            self._say(f"closed {label}: {unloaded} unloaded, none alive")
        return report

    def _ask_close(self, session: subsession.Session) -> bool:
        box = QtWidgets.QMessageBox.question(
            self,
            "Close session",
            f"Close session {_label(session)}? Its {len(session.modules)} modules are "
            "unloaded; tools still holding them keep old objects.",
        )
        return bool(box == QtWidgets.QMessageBox.StandardButton.Yes)

    def reveal_file(self) -> Optional[str]:
        """Open the folder of the selected module's file (or of the session's first
        path); returns the folder."""
        session = self._need_session()
        if session is None:
            return None
        module = self._selected_module()
        target: Optional[str] = None
        if module is not None:
            found = session.modules.get(module)
            target = getattr(found, "__file__", None)
        if target is None and session.paths:
            target = session.paths[0]
        if target is None:
            self._say(
                f"{_label(session)} has no file or path to reveal; select a module with a file",
                error=True,
            )
            return None
        folder = target if os.path.isdir(target) else os.path.dirname(target)
        self.reveal(folder)
        return folder

    def reveal_config(self) -> Optional[str]:
        """Open the folder of the config file that defined the selected session."""
        from subsession import config

        session = self._need_session()
        if session is None:
            return None
        files = config.sources(session.name) if session.name else []
        if not files:
            self._say(
                f"{_label(session)} was not defined by a config file (see $SUBSESSION_CONFIG)",
                error=True,
            )
            return None
        folder = os.path.dirname(files[-1])
        self.reveal(folder)
        return folder

    def _open_folder(self, folder: str) -> None:
        QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(folder))

    # -- log pane and status --------------------------------------------------------------------
    def set_log_level(self, label: str) -> None:
        """Set the ``subsession`` logger's level (``"Warnings"``, ``"Info"``, ``"Debug"``)."""
        if label not in LOG_LEVELS:
            raise ValueError(f"unknown log level {label!r}; use one of {', '.join(LOG_LEVELS)}")
        logging.getLogger("subsession").setLevel(LOG_LEVELS[label])
        from subsession import _core

        _core.reset_log_cache()
        if self.level_combo.currentText() != label:
            self.level_combo.setCurrentText(label)

    def _append_log(self, text: str, level: int) -> None:
        color = (
            "#e05050" if level >= logging.ERROR else "#e8a03c" if level >= logging.WARNING else None
        )
        escaped = html.escape(text)
        line = f'<span style="color:{color}">{escaped}</span>' if color else escaped
        self.log_view.appendHtml(f'<pre style="margin:0">{line}</pre>')

    def _note_change(self, change: subsession.Change) -> None:
        """Changes go to the pane (not to the logger: the Script Editor has enough)."""
        who = change.name if change.name is not None else change.prefix
        text = f"{time.strftime('%H:%M:%S')} {change.kind:<7} {who}"
        if change.modules:
            shown = ", ".join(change.modules[:8])
            more = len(change.modules) - 8
            text += f": {shown}" + (f" (+{more})" if more > 0 else "")
        self.log_view.appendHtml(
            f'<pre style="margin:0"><span style="color:#8fb3cc">{html.escape(text)}</span></pre>'
        )

    def log_text(self) -> str:
        return str(self.log_view.toPlainText())

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #e05050;" if error else "")
        self.status.setText(text)

    def _busy(self, busy: bool, text: Optional[str] = None) -> None:
        if text is not None:
            self._say(text)
        self.progress.setVisible(busy or self._checking)
        if busy and text is not None:
            self.status.repaint()
            self.progress.repaint()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self._stale_timer.stop()
        super().closeEvent(event)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _probe_modules(session: subsession.Session) -> dict[str, weakref.ref[Any]]:
    """A weakly referenced probe in each module's globals, to tell later whether the
    globals died. A function of its own: a loop variable left in the caller's frame
    would keep the last module alive through close() and into its leak report."""
    probes: dict[str, weakref.ref[Any]] = {}
    for name, module in session.modules.items():
        probe = _Probe()
        try:
            vars(module)[_PROBE_KEY] = probe
        except TypeError:
            continue
        probes[name] = weakref.ref(probe)
    return probes


def _drop_probe(ref: weakref.ref[Any]) -> None:
    probe = ref()
    if probe is None:
        return
    for holder in gc.get_referrers(probe):
        if isinstance(holder, dict) and holder.get(_PROBE_KEY) is probe:
            del holder[_PROBE_KEY]


def _detach(token: int, handler: logging.Handler) -> None:
    subsession.unsubscribe(token)
    logging.getLogger("subsession").removeHandler(handler)


_app: Optional[QtWidgets.QApplication] = None
_window: Optional[SessionManager] = None


def show(parent: Optional[QtWidgets.QWidget] = None) -> SessionManager:
    """Show the session manager as a window (one per process; shown again if open).

    Creates a ``QApplication`` when the process has none (a plain interpreter: run
    its event loop yourself). In Maya, :func:`subsession.maya.show_manager` docks it.
    """
    global _app, _window
    if QtWidgets.QApplication.instance() is None:
        _app = QtWidgets.QApplication([])
    if _window is None or not is_valid(_window):
        _window = SessionManager(parent)
        _window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    _window.show()
    _window.raise_()
    _window.activateWindow()
    return _window
