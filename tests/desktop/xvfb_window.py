"""Run under Xvfb by test_xvfb_screenshot.py: the real app, driven through its public API,
decomposes the logo in its window; then this script (not the app) grabs what the X server
shows of the window and writes it, with where the layer list sits, for the test to check.

    python tests/desktop/xvfb_window.py PICTURE SCREENSHOT.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from layerlift.desktop.gui.app import AppOptions, LayerLiftApp
from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication


def grab(app: LayerLiftApp, target: Path) -> None:
    window = app.window
    screen = window.screen() or QGuiApplication.primaryScreen()
    pixmap = screen.grabWindow(window.winId())  # what the display server really shows
    layers = window.layer_list
    corner = layers.mapTo(window, layers.rect().topLeft())
    ratio = pixmap.devicePixelRatio() or 1.0
    ok = not pixmap.isNull() and pixmap.save(str(target), "PNG")
    target.with_suffix(".json").write_text(json.dumps({
        "platform": QGuiApplication.platformName(),
        "layers": layers.count(),
        "layer_list": [round(v * ratio) for v in
                       (corner.x(), corner.y(), layers.width(), layers.height())],
    }), encoding="utf-8")
    app.qapp.exit(0 if ok else 1)


def main(picture: str, screenshot: str) -> int:
    qapp = QApplication([sys.argv[0]])
    qapp.setQuitOnLastWindowClosed(False)
    app = LayerLiftApp(qapp, AppOptions(open=picture, decompose=True, backend="classic"))
    app.start()  # shows the window: a picture was given
    states: list[str] = []

    def finished(_job_id: str, state: str) -> None:
        states.append(state)
        # Let the layer list and preview paint before grabbing.
        QTimer.singleShot(700, lambda: grab(app, Path(screenshot)))

    app.window.job_finished.connect(finished)
    QTimer.singleShot(90_000, lambda: qapp.exit(3))  # a hung job must not hang the test
    try:
        code = qapp.exec()
    finally:
        app.stop()
    print(f"job states: {states}")
    return code if states == ["done"] else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
