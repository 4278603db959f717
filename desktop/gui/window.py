"""The LayerLift window: open a picture, decompose it, look at the layers, export them.

The window never runs a backend itself: it queues jobs on the tray's in-process job runner
(through `ServerHost`), exactly like the plug-ins do over the bridge, so one runner owns the
GPU. Because the runner writes every result to its job folder, closing the window during a
job loses nothing: the job finishes, and its result is in the history list.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from layerlift.desktop.gui.checkerboard import checkered_pixmap
from layerlift.desktop.gui.document_jobs import (
    DocumentJobs,
    Purpose,
    SplitLayer,
    WholePicture,
    land,
)
from layerlift.desktop.gui.history import HistoryList, SourceNames
from layerlift.desktop.gui.layer_list import LayerList
from layerlift.desktop.gui.option_widgets import control_value, make_control
from layerlift.desktop.gui.server_host import ServerHost
from layerlift.desktop.option_model import picture_fields
from layerlift.inference.backends.base import DecomposeRequest
from layerlift.inference.errors import LayerLiftError
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.job_states import JobState
from layerlift.inference.layers import LayerStack
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

log = logging.getLogger(__name__)

OPEN_FILTER = "Pictures (*.png *.jpg *.jpeg *.webp *.tif *.tiff *.psd *.psb *.ora *.gif *.bmp)"
EXPORT_KINDS = {"psd": "Photoshop (*.psd)", "ora": "OpenRaster (*.ora)", "png": "PNG folder"}

class PreviewLabel(QLabel):
    """The recomposited picture over a checkerboard, rescaled with the window."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(240, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._pixels: np.ndarray | None = None
        self.setText("Drop a picture here, or use Open…")

    def set_pixels(self, pixels: np.ndarray | None) -> None:
        self._pixels = pixels
        self._redraw()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._redraw()

    def _redraw(self) -> None:
        if self._pixels is None:
            self.clear()
            self.setText("Drop a picture here, or use Open…")
            return
        size = QSize(max(16, self.width() - 8), max(16, self.height() - 8))
        self.setPixmap(checkered_pixmap(self._pixels, size, cell=10))


class MainWindow(QMainWindow):
    """One document at a time: a source picture and, once decomposed, its layer stack."""

    stack_changed = Signal()
    job_finished = Signal(str, str)  # (job id, final state)
    finished_while_hidden = Signal(str, str)  # (title, sentence) for a tray notification
    closed = Signal()

    def __init__(self, host: ServerHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.runner = host.runner
        self.names = SourceNames()
        self.source: np.ndarray | None = None
        self.source_name: str | None = None
        # The file the document was opened from: an export never writes over it.
        self.source_path: Path | None = None
        self.stack: LayerStack | None = None
        self.jobs = DocumentJobs()
        self.last_error: tuple[str, str] | None = None
        self.setWindowTitle("LayerLift")
        self.setAcceptDrops(True)
        self.resize(1000, 680)
        self._build()
        host.job_event.connect(self._on_job_event)
        host.submitted.connect(self._on_submitted)
        host.submit_failed.connect(self._on_submit_failed)
        self._history_timer = QTimer(self, singleShot=True, interval=200)
        self._history_timer.timeout.connect(self.refresh_history)
        self.refresh_history()
        self._update_buttons()

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.open_button = QPushButton("Open…")
        self.open_button.clicked.connect(self._ask_open)
        self.layers_spin = QSpinBox()
        self.layers_spin.setRange(0, 10)
        self.layers_spin.setSpecialValueText("auto")
        self.layers_spin.setToolTip("about how many layers to make (auto: the backend decides)")
        self.backend_combo = QComboBox()
        self.backend_combo.addItem("auto", "auto")
        from layerlift.inference.backends import backend_names

        for name in backend_names():
            self.backend_combo.addItem(name, name)
        # The backends' per-picture options (qwen's caption), generated from their schemas.
        # Empty, the option is left out: for the caption, the model captions the picture itself
        # (on a small GPU that can take a while); its caption comes back here, ready to reuse.
        self.picture_fields = picture_fields(self.runner.settings)
        self.option_controls = {field.name: make_control(field, self)
                                for field in self.picture_fields}
        self.caption_edit = self.option_controls.get("caption")
        self.decompose_button = QPushButton("Decompose")
        self.decompose_button.clicked.connect(self.decompose)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setSizePolicy(QSizePolicy.Policy.Expanding,
                                        QSizePolicy.Policy.Preferred)

        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(QLabel("Layers:"))
        top.addWidget(self.layers_spin)
        top.addWidget(QLabel("Backend:"))
        top.addWidget(self.backend_combo)
        top.addWidget(self.decompose_button)
        top.addWidget(self.cancel_button)
        top.addWidget(self.progress, 1)

        self.preview = PreviewLabel()
        self.layer_list = LayerList()
        self.layer_list.visibility_changed.connect(self.set_layer_visible)
        self.layer_list.split_requested.connect(self.split_layer)
        self.split_button = QPushButton("Decompose layer again")
        self.split_button.setToolTip("split the selected layer into layers of its own")
        self.split_button.clicked.connect(self._split_selected)
        self.export_buttons: dict[str, QPushButton] = {}
        exports = QHBoxLayout()
        for kind, label in (("psd", "PSD…"), ("ora", "ORA…"), ("png", "PNG folder…")):
            button = QPushButton(f"Export {label}")
            button.clicked.connect(lambda _=False, k=kind: self.export(k))
            self.export_buttons[kind] = button
            exports.addWidget(button)
        right = QVBoxLayout()
        right.addWidget(QLabel("Layers (top first)"))
        right.addWidget(self.layer_list, 1)
        right.addWidget(self.split_button)
        right.addLayout(exports)
        right_widget = QWidget()
        right_widget.setLayout(right)

        self.history = HistoryList(self.names)
        self.history.reopen_requested.connect(self.reopen)
        history_box = QVBoxLayout()
        history_box.addWidget(QLabel("Recent jobs (double-click to reopen)"))
        history_box.addWidget(self.history)
        history_widget = QWidget()
        history_widget.setLayout(history_box)

        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(self.preview)
        upper.addWidget(right_widget)
        upper.setStretchFactor(0, 3)
        upper.setStretchFactor(1, 2)
        outer = QSplitter(Qt.Orientation.Vertical)
        outer.addWidget(upper)
        outer.addWidget(history_widget)
        outer.setStretchFactor(0, 4)
        outer.setStretchFactor(1, 1)

        caption_row = QHBoxLayout()
        for field in self.picture_fields:
            caption_row.addWidget(QLabel(f"{field.label}:"))
            caption_row.addWidget(self.option_controls[field.name], 1)

        main = QVBoxLayout()
        main.addLayout(top)
        main.addLayout(caption_row)
        main.addWidget(outer, 1)
        main.addWidget(self.status_label)
        central = QWidget()
        central.setLayout(main)
        self.setCentralWidget(central)

    def _update_buttons(self) -> None:
        busy = self.jobs.busy
        self.decompose_button.setEnabled(self.source is not None and not busy)
        self.cancel_button.setEnabled(busy)
        has_stack = self.stack is not None
        for button in self.export_buttons.values():
            button.setEnabled(has_stack)
        self.split_button.setEnabled(has_stack and not busy)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_error(self, title: str, message: str) -> None:
        """A non-blocking dialog in words (details are in the log file)."""
        self.last_error = (title, message)
        log.warning("%s: %s", title, message)
        if not self.isVisible():
            self.finished_while_hidden.emit(title, message)
            return
        box = QMessageBox(QMessageBox.Icon.Warning, title, message,
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # -- opening -----------------------------------------------------------------------------
    def _ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a picture", "", OPEN_FILTER)
        if path:
            self.open_path(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_path(files[0])

    def open_path(self, path: str | Path) -> bool:
        """Load a picture as the new document; a bad file gets a dialog, never a crash."""
        from layerlift.inference.formats import read_image

        try:
            loaded = read_image(path)
        except LayerLiftError as exc:
            self.show_error("Cannot open the picture", exc.message)
            return False
        self.set_document(loaded.pixels, Path(path).name, None)
        self.source_path = Path(path)
        for warning in loaded.warnings:
            self.set_status(warning)
        return True

    def set_document(self, source: np.ndarray, name: str, stack: LayerStack | None) -> None:
        if source is not self.source:
            for control in self.option_controls.values():  # they describe one picture
                if isinstance(control, QLineEdit):
                    control.clear()
        self.source, self.source_name, self.source_path = source, name, None
        self.setWindowTitle(f"LayerLift: {name}")
        self._set_stack(stack)
        h, w = source.shape[:2]
        self.set_status(f"{name}: {w}×{h}")

    def _set_stack(self, stack: LayerStack | None) -> None:
        self.stack = stack
        self.layer_list.set_stack(stack)
        self._redraw_preview()
        self._update_buttons()
        self.stack_changed.emit()

    def _redraw_preview(self) -> None:
        if self.stack is not None:
            self.preview.set_pixels(self.stack.composite(visible_only=True))
        else:
            self.preview.set_pixels(self.source)

    def set_layer_visible(self, index: int, visible: bool) -> None:
        if self.stack is None:
            return
        self.stack.layers[index].visible = visible
        row = self.layer_list.row_of_index(index)
        item = self.layer_list.item(row)
        wanted = Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked
        if item.checkState() != wanted:
            item.setCheckState(wanted)  # re-enters through visibility_changed: harmless
        self._redraw_preview()

    # -- jobs --------------------------------------------------------------------------------
    def _request(self, purpose: Purpose | None = None) -> DecomposeRequest:
        count = self.layers_spin.value()
        options: dict[str, Any] = {}
        if not isinstance(purpose, SplitLayer):  # they describe the whole picture
            # Only what the chosen backend (for auto: any backend) declares is sent.
            schema = self.runner.option_schema(str(self.backend_combo.currentData()))
            for field in self.picture_fields:
                value = control_value(field, self.option_controls[field.name])
                if isinstance(value, str):
                    value = value.strip()
                if value not in ("", None) and field.name in schema:
                    options[field.name] = value
        return DecomposeRequest(layers=count or None, options=options)

    @property
    def current_job(self) -> str | None:
        """The id of the job the window is waiting for, once the runner accepted it."""
        return self.jobs.current_job

    def decompose(self) -> None:
        """Queue the whole picture."""
        if self.source is None or self.jobs.busy:
            return
        self._submit(self.source, WholePicture(self.source), "decomposing")

    def split_layer(self, index: int) -> None:
        """Queue one layer for a decomposition of its own: recursive layers.

        The layer goes through the same job runner as everything else (one owner for the
        GPU), trimmed to its alpha bounds so the backend spends its resolution on it.
        """
        if self.stack is None or self.jobs.busy:
            return
        if not 0 <= index < len(self.stack.layers):
            return
        layer = self.stack.layers[index].trimmed()
        if layer.width == 0 or layer.height == 0:
            self.show_error("Nothing to decompose", f"the layer '{layer.name}' is empty")
            return
        self._submit(layer.pixels, SplitLayer(index, self.stack), f"splitting '{layer.name}'")

    def _split_selected(self) -> None:
        index = self.layer_list.selected_index()
        if index is None:
            self.set_status("select a layer to decompose it again")
            return
        self.split_layer(index)

    def _submit(self, image: np.ndarray, purpose: Purpose, words: str) -> None:
        tag = self.jobs.submit(purpose)
        self.progress.setValue(0)
        self.set_status(f"{words}…")
        self._update_buttons()
        self.host.submit(tag, image, self._request(purpose), self.backend_combo.currentData())

    def _on_submitted(self, tag: str, job: JobSnapshot) -> None:
        purpose = self.jobs.accepted(tag, job.id)
        if purpose is None:
            return
        if self.source_name:
            name = self.source_name
            if isinstance(purpose, SplitLayer):
                name = f"{name} (layer {purpose.index})"
            self.names.set(job.id, name)
        if self.jobs.take_cancel_request():
            self.host.cancel(job.id)
        self._on_job_event(job)
        self._update_buttons()

    def _on_submit_failed(self, tag: str, code: str, message: str) -> None:
        if not self.jobs.refused(tag):
            return
        self.progress.setValue(0)
        self.set_status("")
        self._update_buttons()
        self.show_error("Cannot start the decomposition", message)

    def cancel(self) -> None:
        job_id = self.jobs.cancel_now()  # without an id yet: cancelled once accepted
        if job_id:
            self.set_status("cancelling…")
            self.host.cancel(job_id)

    def _on_job_event(self, job: JobSnapshot) -> None:
        if job.terminal:
            self._history_timer.start()
        if job.id != self.jobs.current_job:
            if job.terminal:
                self.jobs.finished(job)
            return
        self.progress.setValue(round(100 * job.progress.fraction))
        if not job.terminal:
            text = job.progress.describe()
            if job.position:
                text = f"waiting, position {job.position} in the queue"
            self.set_status(text)
            return
        purpose = self.jobs.finished(job)
        try:
            if job.state is JobState.DONE:
                self._land_result(job, purpose or WholePicture(self.source))
            elif job.state is JobState.CANCELLED:
                self.progress.setValue(0)
                self.set_status("cancelled")
            else:
                self.progress.setValue(0)
                self.set_status("failed")
                self.show_error("Decomposition failed",
                                job.error.message if job.error else "unknown error")
        finally:
            self._update_buttons()
            self.refresh_history()
            self.job_finished.emit(job.id, str(job.state))

    def _land_result(self, job: JobSnapshot, purpose: Purpose) -> None:
        try:
            result = self.runner.read_result(job.id)
        except LayerLiftError as exc:
            self.show_error("Cannot read the result", exc.message)
            return
        landing = land(job, purpose, result, self.source, self.stack)
        if landing.error is not None:
            self.show_error(*landing.error)
            return
        status = landing.status
        details = job.result.details if job.result is not None else {}
        if (isinstance(purpose, WholePicture) and landing.stack is not None
                and self.caption_edit is not None
                and details.get("caption_source") == "model" and details.get("caption")):
            # The model's caption, ready to reuse (and to edit) for the next run.
            self.caption_edit.setText(str(details["caption"]))
            status += (f"; the model's caption ({details.get('caption_way')}, "
                       f"{float(details.get('caption_seconds') or 0):.1f} s) is in the caption "
                       "field")
        self.set_status(status)
        if landing.stack is None:
            return
        self._set_stack(landing.stack)
        self.progress.setValue(100)
        if not self.isVisible():
            self.finished_while_hidden.emit(
                "Layers ready", f"{self.source_name or 'the picture'}: "
                                f"{len(self.stack.layers) if self.stack else 0} layers")

    # -- history -----------------------------------------------------------------------------
    def refresh_history(self) -> None:
        self.history.populate(self.runner.jobs())

    def reopen(self, job_id: str) -> bool:
        """Open a finished job's layers as the document (the source is their composite)."""
        try:
            stack = self.runner.read_result(job_id)
        except LayerLiftError as exc:
            self.show_error("Cannot reopen the job", exc.message)
            return False
        name = self.names.get(job_id) or f"job {job_id}"
        self.set_document(stack.composite(visible_only=False), name, stack)
        self.set_status(f"reopened {name}: {len(stack.layers)} layers")
        return True

    # -- export ------------------------------------------------------------------------------
    def _default_export_name(self) -> str:
        return Path(self.source_name or "layers").stem

    def export(self, kind: str, path: str | Path | None = None) -> list[Path]:
        """Write the current stack (hidden layers included, as hidden) as PSD, ORA or PNGs.

        The same rules as the command line's: never over the opened picture, a PNG folder
        only when new, empty or LayerLift's own; a refusal is a dialog.
        """
        from layerlift.inference.formats import write_stack

        if self.stack is None:
            return []
        if path is None:
            path = self._ask_export_path(kind)
            if path is None:
                return []
        target = str(path)
        if kind == "png" and not target.endswith(("/", "\\")):
            target += "/"
        try:
            sources = (self.source_path,) if self.source_path is not None else ()
            written = write_stack(self.stack, target, group_name=self._default_export_name(),
                                  sources=sources)
        except LayerLiftError as exc:
            self.show_error("Export failed", exc.message)
            return []
        except OSError as exc:
            self.show_error("Export failed", f"cannot write {target}: {exc.strerror or exc}")
            return []
        self.set_status(f"exported {len(self.stack.layers)} layers to {path}")
        return written

    def _ask_export_path(self, kind: str) -> str | None:
        stem = self._default_export_name()
        if kind == "png":
            folder = QFileDialog.getExistingDirectory(self, "Export the layers into a folder")
            return str(Path(folder) / f"{stem}_layers") if folder else None
        path, _ = QFileDialog.getSaveFileName(self, "Export the layers", f"{stem}.{kind}",
                                              EXPORT_KINDS[kind])
        if path and not path.lower().endswith(f".{kind}"):
            path += f".{kind}"
        return path or None

    # -- closing -----------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing only hides: the job (if any) carries on in the runner and lands in history."""
        if self.current_job:
            self.set_status("the job continues in the background")
        super().closeEvent(event)
        self.closed.emit()
