"""Guard against a Qt binding that corrupts reference counts (PySide6 6.12.0 on Python 3.11).

PySide6-Essentials 6.12.0 drops a reference to `None` on every call of a void C++ method
(`QLabel.setText`, `QPainter.fillRect`, ...). Python 3.11's `None` is not immortal, so a tray
app that updates its progress for long enough dies with "Fatal Python error: none_dealloc".
This test fails on such a binding, whatever version it is, instead of a user's session.
"""

from __future__ import annotations

import sys

from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import QLabel, QProgressBar


def test_void_methods_keep_none_alive(qapp):
    label, bar, pixmap = QLabel(), QProgressBar(), QPixmap(16, 16)
    painter = QPainter(pixmap)
    colour = QColor(10, 20, 30)
    try:
        before = sys.getrefcount(None)
        for i in range(2000):
            label.setText("x")
            bar.setValue(i % 100)
            painter.fillRect(0, 0, 4, 4, colour)
        lost = before - sys.getrefcount(None)
    finally:
        painter.end()
    assert lost < 1000, (
        f"None lost {lost} references in 6000 Qt calls: this PySide6 build "
        "(PySide6 6.12.0 does this on Python 3.11) would crash a long-running tray app; "
        "install PySide6-Essentials<6.12"
    )
