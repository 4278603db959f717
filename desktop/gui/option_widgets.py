"""Qt controls for `option_model.OptionField`s: the one place that maps a spec to a widget.

Used by the settings window (saved defaults) and the main window (per-picture options), so both
render whatever the backends declare.
"""

from __future__ import annotations

from typing import Any

from layerlift.desktop.option_model import OptionField
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

_INT_LIMIT = 2**31 - 1


def make_control(field: OptionField, parent: QWidget | None = None) -> QWidget:
    """A widget showing `field.value`, limited to what the spec accepts."""
    spec, value = field.spec, field.value
    widget: QWidget
    if field.control == "choice":
        combo = QComboBox(parent)
        for choice in spec.choices:
            combo.addItem(str(choice), choice)
        combo.setCurrentIndex(max(0, combo.findData(value)))
        widget = combo
    elif field.control == "int":
        spin = QSpinBox(parent)
        spin.setRange(int(spec.minimum if spec.minimum is not None else -_INT_LIMIT),
                      int(spec.maximum if spec.maximum is not None else _INT_LIMIT))
        spin.setValue(int(value or 0))
        widget = spin
    elif field.control == "float":
        dspin = QDoubleSpinBox(parent)
        dspin.setDecimals(2)
        dspin.setSingleStep(0.5)
        dspin.setRange(float(spec.minimum if spec.minimum is not None else -1e9),
                       float(spec.maximum if spec.maximum is not None else 1e9))
        dspin.setValue(float(value or 0.0))
        widget = dspin
    elif field.control == "check":
        check = QCheckBox(parent)
        check.setChecked(bool(value))
        widget = check
    else:
        edit = QLineEdit("" if value is None else str(value), parent)
        edit.setMaxLength(spec.max_length or 32767)
        edit.setClearButtonEnabled(True)
        edit.setPlaceholderText(spec.help)
        widget = edit
    widget.setToolTip(field.tooltip)
    widget.setObjectName(f"option_{field.name}")
    return widget


def control_value(field: OptionField, widget: QWidget) -> Any:
    """The value a control holds now, in the spec's kind."""
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QSpinBox):
        return int(widget.value())
    if isinstance(widget, QDoubleSpinBox):
        return float(widget.value())
    if isinstance(widget, QLineEdit):
        return widget.text()
    raise TypeError(f"no value for a {type(widget).__name__}")
