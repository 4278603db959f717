"""The tray app: one process per user that hosts the bridge, the job runner and the window.

Start-up order is chosen for a tray that is ready in about a second: Qt, the single-instance
check, the job runner (no backend is created, so no torch), the tray icon; the bridge comes
up on its own thread moments later and the window is only built when first shown.

Single instance: the first process listens on a `QLocalServer` named after the user and the
config folder; a second start connects to it, asks it to show the window (and open a file),
and exits 0 instead of failing on the port. The same socket answers `ping`, which is how a
script (or bench/startup.py) learns that a started tray is up: it answers only once the event
loop runs, with the tray in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerlift.desktop.gui.logging_setup import install_excepthooks, setup_logging
from layerlift.desktop.gui.server_host import ServerHost
from layerlift.desktop.gui.tray import Tray
from layerlift.inference import paths
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.settings import Settings
from PySide6.QtCore import QObject, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QApplication, QMessageBox

log = logging.getLogger(__name__)

_CONNECT_MS = 500


@dataclass
class AppOptions:
    """What `layerlift tray` was asked to do."""

    open: str | None = None
    show_window: bool = False
    decompose: bool = False  # decompose the opened picture right away
    backend: str = "auto"
    layers: int | None = None


def instance_name(config_dir: Path | None = None) -> str:
    """One name per user and config folder (so tests with their own LAYERLIFT_HOME coexist)."""
    user = os.environ.get("USER") or os.environ.get("USERNAME") or "user"
    folder = (config_dir or paths.config_dir()).resolve()
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return f"layerlift-{user}-{digest}"


def ask_running(name: str, request: dict[str, Any], wait_ms: int = 2000) -> bool:
    """Hand `request` to the instance listening on `name`; True when it answered."""
    socket = QLocalSocket()
    socket.connectToServer(name)
    if not socket.waitForConnected(_CONNECT_MS):
        return False
    socket.write(json.dumps(request).encode() + b"\n")
    socket.waitForBytesWritten(_CONNECT_MS)
    # Wait for the first instance to answer, so a dying instance does not swallow it.
    answered = socket.waitForReadyRead(wait_ms) and bytes(socket.readAll().data()).strip()
    socket.disconnectFromServer()
    return bool(answered)


def ping_running(config_dir: Path | None = None, wait_ms: int = 2000) -> bool:
    """Is a tray for this config folder up, with its event loop running?"""
    return ask_running(instance_name(config_dir), {"cmd": "ping"}, wait_ms)


class SingleInstance(QObject):
    """The local socket that makes a second start hand its request to the first."""

    message = Signal(dict)

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or instance_name()
        self.server: QLocalServer | None = None

    def send_to_running(self, request: dict[str, Any]) -> bool:
        """True when another instance took `request`; this process should then exit."""
        return ask_running(self.name, request)

    def listen(self) -> bool:
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            # A crashed instance leaves its socket file behind: nobody answered on it above.
            QLocalServer.removeServer(self.name)
            if not server.listen(self.name):
                log.warning("single-instance socket unavailable: %s", server.errorString())
                return False
        server.newConnection.connect(self._on_connection)
        self.server = server
        return True

    def _on_connection(self) -> None:
        assert self.server is not None
        while self.server.hasPendingConnections():
            socket = self.server.nextPendingConnection()
            socket.readyRead.connect(lambda s=socket: self._read(s))

    def _read(self, socket: QLocalSocket) -> None:
        if not socket.canReadLine():
            return
        line = bytes(socket.readLine().data())
        try:
            request = json.loads(line)
        except ValueError:
            request = {}
        socket.write(b"ok\n")
        socket.flush()
        socket.disconnectFromServer()
        if isinstance(request, dict):
            self.message.emit(request)


class LayerLiftApp(QObject):
    """Wires the tray, the server host and the window together."""

    def __init__(self, qapp: QApplication, options: AppOptions | None = None,
                 host: ServerHost | None = None, settings: Settings | None = None) -> None:
        super().__init__()
        self.qapp = qapp
        self.options = options or AppOptions()
        self.host = host or ServerHost(settings or Settings.load())
        self.tray = Tray(self)
        self._window: Any = None
        self._dialogs: list[Any] = []
        self._quit_when_idle = False
        self._stopped = False
        self.ready_at: float | None = None
        self.host.job_event.connect(self.tray.on_job_event)
        self.host.job_event.connect(self._on_job_event)
        self.host.model_state.connect(self.tray.on_model_state)
        self.host.server_state.connect(self.tray.on_server_state)
        self.tray.open_window.connect(self.show_window)
        self.tray.pair_device.connect(self.pair)
        self.tray.load_model.connect(lambda: self.host.load_model("qwen"))
        self.tray.unload_model.connect(self.host.unload_model)
        self.tray.open_settings.connect(self.open_settings)
        self.tray.open_results.connect(self.open_results)
        self.tray.quit_requested.connect(self.request_quit)
        qapp.aboutToQuit.connect(self.stop)

    # -- start and stop ----------------------------------------------------------------------
    def start(self) -> None:
        self.host.start()
        self.tray.show()
        if not self.tray.available or self.options.show_window or self.options.open:
            self.show_window()
        QTimer.singleShot(0, self._ready)

    def _ready(self) -> None:
        self.ready_at = time.time()
        log.info("tray ready on the %s platform (system tray %s)",
                 QGuiApplication.platformName(),
                 "available" if self.tray.available else "unavailable")
        if self.options.open:
            window = self.window
            if window.open_path(self.options.open) and self.options.decompose:
                self._decompose_opened()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.tray.hide()
        self.host.stop()

    def request_quit(self) -> None:
        active = self.host.runner.active_count()
        if active and self.tray.available:
            answer = QMessageBox.question(
                None, "Quit LayerLift",
                f"{active} job(s) are still running or waiting; quitting cancels them. Quit?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.qapp.quit()

    # -- the window --------------------------------------------------------------------------
    @property
    def window(self) -> Any:
        if self._window is None:
            from layerlift.desktop.gui.window import MainWindow

            self._window = MainWindow(self.host)
            self._window.finished_while_hidden.connect(
                lambda title, text: self.tray.notify(title, text))
            self._window.closed.connect(self._on_window_closed)
        return self._window

    def show_window(self) -> None:
        window = self.window
        window.show()
        window.raise_()
        window.activateWindow()
        self.tray.acknowledge()

    def on_instance_message(self, request: dict[str, Any]) -> None:
        """A second `layerlift` start: bring the window forward (and open its file)."""
        if request.get("cmd") == "ping":
            return  # answered already; nothing to show
        log.info("second start: showing the window (open=%s)", request.get("open"))
        self.show_window()
        path = request.get("open")
        if isinstance(path, str) and path:
            self.window.open_path(path)

    def _on_window_closed(self) -> None:
        if self.tray.available:
            return  # the tray lives on; so does any job
        # No tray to come back to: quit, but only once running jobs have landed on disk.
        if self._busy():
            self._quit_when_idle = True
            log.info("window closed during a job; quitting when it finishes")
        else:
            self.qapp.quit()

    def _on_job_event(self, job: JobSnapshot) -> None:
        if self._quit_when_idle and job.terminal:
            # The runner announces a job only after its folder is written.
            QTimer.singleShot(0, self._quit_if_idle)

    def _busy(self) -> bool:
        """Any job not finished yet? (By state: the runner still counts a job as running for
        a moment after announcing it done, and no event would follow to ask again.)"""
        return any(not job.terminal for job in self.host.runner.jobs())

    def _quit_if_idle(self) -> None:
        if self._quit_when_idle and not self._busy():
            self.qapp.quit()

    # -- menu actions ------------------------------------------------------------------------
    def pair(self) -> tuple[str, float]:
        """Show a one-time pairing code for the Photoshop panel."""
        from layerlift.bridge.auth import create_pairing_code, load_or_create_token

        load_or_create_token()
        code, expires = create_pairing_code()
        minutes = max(1, round((expires - time.time()) / 60))
        text = (f"Pairing code: {code[:3]} {code[3:]}\n\nType it into the LayerLift panel in "
                f"Photoshop. It works once, for about {minutes} minutes.")
        box = QMessageBox(QMessageBox.Icon.Information, "Pair a device", text)
        box.setModal(False)
        box.show()
        self._keep(box)
        return code, expires

    def open_results(self) -> bool:
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(paths.jobs_dir())))

    def open_settings(self) -> Any:
        from layerlift.desktop.gui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.host.settings)
        dialog.accepted.connect(lambda: self.apply_settings_dialog(dialog))
        dialog.open()
        self._keep(dialog)
        return dialog

    def apply_settings_dialog(self, dialog: Any) -> set[str]:
        from layerlift.desktop import autostart

        new = dialog.result_settings()
        try:
            new.save()
        except OSError as exc:
            self.tray.notify("Settings not saved", f"{Settings.path()}: {exc}", True)
            self._error_dialog("Settings not saved", f"cannot write {Settings.path()}: {exc}")
        if autostart.supported() and dialog.start_with_system() != autostart.is_enabled():
            try:
                autostart.set_enabled(dialog.start_with_system())
            except OSError as exc:
                self._error_dialog("Start with the system", f"could not change it: {exc}")
        return self.host.apply_settings(new)

    def _error_dialog(self, title: str, message: str) -> None:
        log.warning("%s: %s", title, message)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message)
        box.setModal(False)
        box.show()
        self._keep(box)

    def _keep(self, widget: Any) -> None:
        self._dialogs = [d for d in self._dialogs if d.isVisible()] + [widget]

    # -- `--open PICTURE --decompose` ---------------------------------------------------------
    def _decompose_opened(self) -> None:
        window = self.window
        index = window.backend_combo.findData(self.options.backend)
        if index >= 0:
            window.backend_combo.setCurrentIndex(index)
        if self.options.layers:
            window.layers_spin.setValue(self.options.layers)
        window.job_finished.connect(
            lambda _job_id, state: log.info("decomposition of the opened picture ended: %s",
                                            state))
        window.decompose()


def _quit_on_signals(qapp: QApplication) -> None:
    """Ctrl-C or SIGTERM quit cleanly (server closed, jobs cancelled, socket removed).

    Python only runs signal handlers between bytecodes, and Qt's loop is C++: a cheap timer
    hands control back to Python a few times a second so the handler gets its turn.
    """
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(number, lambda *_: qapp.quit())
    timer = QTimer(qapp)
    timer.timeout.connect(lambda: None)
    timer.start(250)


def run(options: AppOptions, argv: list[str] | None = None) -> int:
    """Start the tray app (or hand over to the running one); returns the exit code."""
    log_file = setup_logging()
    install_excepthooks()
    qapp = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    qapp.setApplicationName("LayerLift")
    qapp.setQuitOnLastWindowClosed(False)
    instance = SingleInstance()
    request = {"cmd": "show", "open": str(Path(options.open).resolve()) if options.open else None}
    if instance.send_to_running(request):
        print("LayerLift is already running; brought its window forward.", file=sys.stderr)
        return 0
    instance.listen()
    _quit_on_signals(qapp)
    app = LayerLiftApp(qapp, options)
    instance.message.connect(app.on_instance_message)
    log.info("LayerLift starting (log: %s)", log_file)
    app.start()
    try:
        return int(qapp.exec())
    finally:
        app.stop()
