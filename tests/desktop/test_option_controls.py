"""The settings window renders the backends' declared options and saves their defaults."""

from __future__ import annotations

from layerlift.desktop.gui.settings_dialog import SettingsDialog
from layerlift.desktop.option_model import memory_mode_items, settings_fields
from layerlift.inference.backends.qwen.memory import MODES
from layerlift.inference.backends.qwen.options import QWEN_OPTIONS
from layerlift.inference.settings import Settings
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox


def test_every_remembered_qwen_option_has_a_control_and_round_trips(qtbot):
    dialog = SettingsDialog(Settings(steps=30), detect=False)
    qtbot.addWidget(dialog)
    remembered = [spec.name for spec in QWEN_OPTIONS if spec.remembered]
    assert [name for name in dialog.option_controls if name in remembered] == remembered
    controls = dialog.option_controls
    assert isinstance(controls["resolution"], QComboBox)
    assert isinstance(controls["steps"], QSpinBox) and controls["steps"].maximum() == 200
    assert controls["steps"].value() == 30
    assert isinstance(controls["true_cfg_scale"], QDoubleSpinBox)
    assert isinstance(controls["cfg_normalize"], QCheckBox)
    assert "caption" not in controls  # it describes one picture, not a default
    assert dialog.result_settings() == Settings(steps=30)

    controls["steps"].setValue(12)
    controls["cfg_normalize"].setChecked(False)
    controls["resolution"].setCurrentIndex(controls["resolution"].findData(1024))
    edited = dialog.result_settings()
    assert (edited.steps, edited.resolution, edited.option_defaults) == (
        12, 1024, {"cfg_normalize": False})
    fields = {field.name: field.value for field in settings_fields(edited)}
    assert fields["cfg_normalize"] is False


def test_memory_modes_are_described_once():
    items = dict(memory_mode_items())
    assert items["auto"].startswith("auto: picked per job")
    for mode in MODES:
        assert items[mode.name] == f"{mode.name}: {mode.summary}"


def test_the_window_asks_for_the_per_picture_options_the_backends_declare(window):
    from tests.desktop.conftest import LOGO

    per_picture = [spec.name for spec in QWEN_OPTIONS if not spec.remembered]
    assert list(window.option_controls) == per_picture == ["caption"]
    window.open_path(LOGO)
    window.caption_edit.setText("a logo")
    assert window._request().options == {"caption": "a logo"}
    # The classic backend declares no caption: choosing it, the caption is not sent.
    window.backend_combo.setCurrentIndex(window.backend_combo.findData("classic"))
    assert window._request().options == {}
