"""The Settings dialog: model, device and memory, privacy, the bridge port, results, autostart.

It edits a copy of `Settings`; the app saves it (config folder, platformdirs) and applies
it: a new port restarts the server, a new model or memory mode unloads the loaded one. The
VRAM figure comes from `nvidia-smi` on a background thread, never from torch: importing
torch takes seconds and gigabytes, and only the Qwen backend may pay for that. The memory
plan below it is `layerlift doctor`'s for the current settings (4 layers at the settings'
resolution): each mode's peak VRAM and RAM, whether it fits here, and what `auto` picks.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace

from layerlift.desktop import autostart
from layerlift.desktop.gui.option_widgets import control_value, make_control
from layerlift.desktop.option_model import apply_defaults, memory_mode_items, settings_fields
from layerlift.inference.backends.qwen.devices import DEVICE_CHOICES
from layerlift.inference.settings import DEFAULT_MODEL, Settings
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)


def detect_vram(timeout: float = 5.0) -> str:
    """A sentence naming each GPU and its memory, or why none was found."""
    from layerlift.inference.backends.qwen.doctor import gpu_summary

    return gpu_summary(timeout)


def plan_text(settings: Settings, layers: int = 4) -> str:
    """`layerlift doctor`'s memory plan for these settings, one line per mode."""
    from layerlift.inference.backends.qwen.doctor import plan_lines, report

    try:
        result = report(layers=layers, resolution=settings.resolution, model=settings.model,
                        device=settings.device)
    except Exception as exc:  # a bad device setting must not break the dialog
        return f"no plan: {exc}"
    head = f"For {layers} layers at {settings.resolution} px (layerlift doctor):"
    return "\n".join([head, *plan_lines(result)])


class SettingsDialog(QDialog):
    vram_detected = Signal(str)
    plan_ready = Signal(str)

    def __init__(self, settings: Settings, parent: QWidget | None = None,
                 detect: bool = True) -> None:
        super().__init__(parent)
        self.setWindowTitle("LayerLift settings")
        self._original = settings
        form = QFormLayout()

        self.model_edit = QLineEdit(settings.model or "")
        self.model_edit.setPlaceholderText(f"a folder, or a repo id such as {DEFAULT_MODEL}")
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse_model)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_edit, 1)
        model_row.addWidget(browse)
        form.addRow("Qwen model:", model_row)

        self.device_combo = QComboBox()
        self.device_combo.setEditable(True)
        self.device_combo.addItems(DEVICE_CHOICES)
        self.device_combo.setCurrentText(settings.device)
        form.addRow("Device:", self.device_combo)

        self.memory_combo = QComboBox()
        for mode, text in memory_mode_items():
            self.memory_combo.addItem(text, mode)
        index = self.memory_combo.findData(settings.memory_mode)
        self.memory_combo.setCurrentIndex(max(0, index))
        form.addRow("Memory mode:", self.memory_combo)
        self.vram_label = QLabel("detecting…" if detect else "")
        self.vram_label.setWordWrap(True)
        form.addRow("GPU memory:", self.vram_label)
        self.plan_label = QLabel("planning…" if detect else "")
        self.plan_label.setWordWrap(True)
        form.addRow("Memory plan:", self.plan_label)

        # The backends' options, generated from their schemas: the defaults of every job.
        self.option_fields = settings_fields(settings)
        self.option_controls = {}
        for option in self.option_fields:
            control = make_control(option, self)
            self.option_controls[option.name] = control
            form.addRow(f"{option.label}:", control)

        self.offline_check = QCheckBox("never contact a model hub (local files only)")
        self.offline_check.setChecked(settings.offline)
        form.addRow("Offline:", self.offline_check)

        self.port_spin = QSpinBox()
        self.port_spin.setRange(1024, 65535)
        self.port_spin.setValue(settings.port)
        form.addRow("Bridge port:", self.port_spin)

        self.keep_days_spin = QDoubleSpinBox()
        self.keep_days_spin.setRange(0.0, 3650.0)
        self.keep_days_spin.setDecimals(1)
        self.keep_days_spin.setSuffix(" days")
        self.keep_days_spin.setValue(settings.results_keep_days)
        form.addRow("Keep results:", self.keep_days_spin)
        self.max_mb_spin = QSpinBox()
        self.max_mb_spin.setRange(0, 1_000_000)
        self.max_mb_spin.setSuffix(" MB")
        self.max_mb_spin.setValue(int(settings.results_max_mb))
        form.addRow("Results at most:", self.max_mb_spin)

        self.autostart_check = QCheckBox("start LayerLift when I log in")
        self.autostart_check.setEnabled(autostart.supported())
        self.autostart_check.setChecked(autostart.supported() and autostart.is_enabled())
        form.addRow("Start with the system:", self.autostart_check)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

        self.vram_detected.connect(self.vram_label.setText)
        self.plan_ready.connect(self.plan_label.setText)
        if detect:
            threading.Thread(target=self._detect, name="layerlift-vram", daemon=True).start()

    def _detect(self) -> None:
        text = detect_vram()
        with contextlib.suppress(RuntimeError):  # the dialog was closed and deleted meanwhile
            self.vram_detected.emit(text)
        plan = plan_text(self._original)
        with contextlib.suppress(RuntimeError):
            self.plan_ready.emit(plan)

    def _browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "The Qwen-Image-Layered model folder")
        if folder:
            self.model_edit.setText(folder)

    def result_settings(self) -> Settings:
        """The edited settings (a new object; the original is untouched)."""
        model = self.model_edit.text().strip() or None
        options = {option.name: control_value(option, self.option_controls[option.name])
                   for option in self.option_fields}
        return replace(
            self._original,
            **apply_defaults(self._original, self.option_fields, options),
            model=model,
            device=self.device_combo.currentText().strip() or "auto",
            memory_mode=str(self.memory_combo.currentData()),
            offline=self.offline_check.isChecked(),
            port=int(self.port_spin.value()),
            results_keep_days=float(self.keep_days_spin.value()),
            results_max_mb=float(self.max_mb_spin.value()),
        )

    def start_with_system(self) -> bool:
        return self.autostart_check.isEnabled() and self.autostart_check.isChecked()
