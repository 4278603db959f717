"""The tray icon: what LayerLift is doing, at a glance, and the menu that drives it.

The state (idle, model loading, working with a percentage, error) is worked out by
`TrayStatus` from job events, model events and the server state, with no Qt in it, so it can
be tested exactly; `Tray` only draws that state as an icon and a tooltip.
"""

from __future__ import annotations

from dataclasses import dataclass

from layerlift.desktop.gui.server_host import ModelState
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.job_states import JobState
from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QColor, QFont, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

IDLE, LOADING, WORKING, ERROR = "idle", "loading", "working", "error"  # what the icon shows
_COLOURS = {
    IDLE: QColor(90, 110, 140),
    LOADING: QColor(214, 150, 30),
    WORKING: QColor(40, 120, 220),
    ERROR: QColor(200, 50, 50),
}


@dataclass(frozen=True)
class TrayState:
    kind: str  # IDLE, LOADING, WORKING or ERROR
    percent: int | None
    tooltip: str


class TrayStatus:
    """Folds job, model and server events into the one state the tray shows."""

    def __init__(self) -> None:
        self.active: dict[str, JobSnapshot] = {}
        self.model_loading: str | None = None
        self.error: str | None = None
        self.server_url: str | None = None
        self.server_error: str | None = None

    def on_job(self, job: JobSnapshot) -> None:
        if not job.terminal:
            if job.id not in self.active:
                self.error = None  # a new job starts: the last failure is old news
            self.active[job.id] = job
            return
        self.active.pop(job.id, None)
        if job.state is JobState.FAILED:
            self.error = f"a job failed: {job.error.message if job.error else 'unknown error'}"

    def on_model(self, state: str, message: str) -> None:
        if state == ModelState.LOADING:
            self.model_loading, self.error = message or "loading the model", None
        elif state == ModelState.ERROR:
            self.model_loading, self.error = None, message
        else:
            self.model_loading = None

    def on_server(self, state: str, detail: str) -> None:
        if state == "listening":
            self.server_url, self.server_error = detail, None
        elif state == "error":
            self.server_url, self.server_error = None, detail
        else:
            self.server_url = None

    def acknowledge(self) -> None:
        """The user saw the error (opened the window): go back to the normal look."""
        self.error = None

    def state(self) -> TrayState:
        bridge = (f"bridge on {self.server_url}" if self.server_url
                  else "bridge not running" if not self.server_error else self.server_error)
        working = [j for j in self.active.values() if j.state.working]
        loading = [j for j in self.active.values() if j.state is JobState.LOADING]
        queued = sum(1 for j in self.active.values() if j.state is JobState.QUEUED)
        waiting = f", {queued} waiting" if queued else ""
        if working:
            progress = working[0].progress
            percent = round(100 * progress.fraction)
            step = ""
            if progress.step is not None and progress.total:
                step = f" (step {progress.step}/{progress.total})"
            return TrayState(WORKING, percent,
                             f"LayerLift: working {percent}%{step}{waiting}\n{bridge}")
        if loading or self.model_loading:
            what = self.model_loading or loading[0].progress.message
            return TrayState(LOADING, None,
                             f"LayerLift: loading the model{waiting}\n{what or ''}".rstrip())
        if self.error or self.server_error:
            return TrayState(ERROR, None, f"LayerLift: error: {self.error or self.server_error}")
        if queued:
            return TrayState(WORKING, 0, f"LayerLift: {queued} waiting\n{bridge}")
        return TrayState(IDLE, None, f"LayerLift: idle\n{bridge}")


def state_icon(state: TrayState, size: int = 64) -> QIcon:
    """A stack-of-layers glyph in the state's colour, with a progress ring while working."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    colour = _COLOURS[state.kind]
    unit = size / 16
    for i, alpha in enumerate((110, 170, 255)):
        fill = QColor(colour)
        fill.setAlpha(alpha)
        painter.setPen(QPen(QColor(255, 255, 255, 200), unit * 0.4))
        painter.setBrush(fill)
        painter.drawRoundedRect(QRectF(unit * (2 + 2 * i), unit * (8 - 3 * i), unit * 8,
                                       unit * 6), unit, unit)
    if state.kind == WORKING and state.percent is not None:
        painter.setPen(QPen(QColor(255, 255, 255), unit * 1.6))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        span = -int(360 * 16 * max(0, min(100, state.percent)) / 100)
        painter.drawArc(QRectF(unit, unit, size - 2 * unit, size - 2 * unit), 90 * 16, span)
        painter.setPen(QPen(colour.darker(130), unit * 1.0))
        painter.drawArc(QRectF(unit, unit, size - 2 * unit, size - 2 * unit), 90 * 16, span)
    elif state.kind == ERROR:
        painter.setPen(QPen(QColor(255, 255, 255), unit * 0.5))
        painter.setBrush(colour.darker(120))
        painter.drawEllipse(QRectF(unit * 9, unit * 9, unit * 7, unit * 7))
        font = QFont()
        font.setBold(True)
        font.setPixelSize(int(unit * 6))
        painter.setFont(font)
        painter.drawText(QRectF(unit * 9, unit * 9, unit * 7, unit * 7),
                         Qt.AlignmentFlag.AlignCenter, "!")
    elif state.kind == LOADING:
        painter.setPen(QPen(QColor(255, 255, 255), unit * 1.2))
        for k in range(3):
            painter.drawPoint(int(unit * (10 + 2 * k)), int(unit * 14))
    painter.end()
    return QIcon(pixmap)


class Tray(QObject):
    """The tray icon and its menu; every menu item is a signal the app acts on."""

    open_window = Signal()
    pair_device = Signal()
    load_model = Signal()
    unload_model = Signal()
    open_settings = Signal()
    open_results = Signal()
    quit_requested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.status = TrayStatus()
        self.icon = QSystemTrayIcon(self)
        self.menu = QMenu()
        self.actions: dict[str, QAction] = {}
        for key, text, signal in (
            ("open", "Open window", self.open_window),
            ("pair", "Pair a device…", self.pair_device),
            (None, None, None),
            ("load", "Load model", self.load_model),
            ("unload", "Unload model", self.unload_model),
            (None, None, None),
            ("settings", "Settings…", self.open_settings),
            ("results", "Open results folder", self.open_results),
            (None, None, None),
            ("quit", "Quit LayerLift", self.quit_requested),
        ):
            if key is None:
                self.menu.addSeparator()
                continue
            action = self.menu.addAction(text)
            action.triggered.connect(signal)
            self.actions[key] = action
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._on_activated)
        self.current: TrayState | None = None
        self.notifications: list[tuple[str, str]] = []
        self.refresh()

    @property
    def available(self) -> bool:
        """Whether the desktop has a tray at all (some Linux desktops, and CI, do not)."""
        return QSystemTrayIcon.isSystemTrayAvailable()

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger,
                      QSystemTrayIcon.ActivationReason.DoubleClick):
            self.open_window.emit()

    # -- events ------------------------------------------------------------------------------
    def on_job_event(self, job: JobSnapshot) -> None:
        self.status.on_job(job)
        if job.state is JobState.FAILED:
            self.notify("Decomposition failed",
                        job.error.message if job.error else "unknown error", True)
        self.refresh()

    def on_model_state(self, state: str, message: str) -> None:
        self.status.on_model(state, message)
        if state == ModelState.ERROR:
            self.notify("Model not loaded", message, True)
        elif state in (ModelState.LOADED, ModelState.UNLOADED):
            self.notify("LayerLift", message)
        self.refresh()

    def on_server_state(self, state: str, detail: str) -> None:
        self.status.on_server(state, detail)
        if state == "error":
            self.notify("Bridge not running", detail, True)
        self.refresh()

    def acknowledge(self) -> None:
        self.status.acknowledge()
        self.refresh()

    def refresh(self) -> None:
        state = self.status.state()
        if state == self.current:
            return
        self.current = state
        self.icon.setIcon(state_icon(state))
        self.icon.setToolTip(state.tooltip)

    def notify(self, title: str, message: str, error: bool = False) -> None:
        """A desktop notification where the tray supports them; always kept for the log."""
        self.notifications.append((title, message))
        del self.notifications[:-50]
        if self.available and self.icon.isVisible() and self.icon.supportsMessages():
            kind = (QSystemTrayIcon.MessageIcon.Critical if error
                    else QSystemTrayIcon.MessageIcon.Information)
            self.icon.showMessage(title, message, kind, 8000)
