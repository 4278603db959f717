"""RGBA8 arrays to Qt images, shown over a checkerboard so transparency is visible.

Layers are straight alpha; Qt's `Format_RGBA8888` is straight alpha too, so the array's
bytes are handed over as they are and Qt's painter does the compositing.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap

LIGHT = QColor(255, 255, 255)
DARK = QColor(204, 204, 204)
FRAME = QColor(120, 120, 120)


def rgba_to_qimage(pixels: np.ndarray) -> QImage:
    """An (h, w, 4) uint8 array as a QImage that owns a copy of the bytes."""
    if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
        raise ValueError(f"expected (h, w, 4) uint8, got {pixels.shape} {pixels.dtype}")
    data = np.ascontiguousarray(pixels)
    height, width = data.shape[:2]
    image = QImage(data.data, width, height, width * 4, QImage.Format.Format_RGBA8888)
    return image.copy()  # detach from the numpy buffer, which may be freed


def paint_checkerboard(painter: QPainter, width: int, height: int, cell: int = 8) -> None:
    painter.fillRect(0, 0, width, height, LIGHT)
    for y in range(0, height, cell):
        for x in range((y // cell) % 2 * cell, width, 2 * cell):
            painter.fillRect(x, y, cell, cell, DARK)


def checkered_pixmap(
    pixels: np.ndarray, size: QSize, cell: int = 8, frame: bool = False
) -> QPixmap:
    """`pixels` scaled to fit `size` (aspect kept), over a checkerboard the size of the picture.

    `frame` outlines the canvas, so an opaque white layer still reads as a thumbnail.
    """
    image = rgba_to_qimage(pixels)
    scaled = image.scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                          Qt.TransformationMode.SmoothTransformation)
    pixmap = QPixmap(scaled.size())
    painter = QPainter(pixmap)
    paint_checkerboard(painter, scaled.width(), scaled.height(), cell)
    painter.drawImage(0, 0, scaled)
    if frame:
        painter.setPen(QPen(FRAME, 1))
        painter.drawRect(0, 0, scaled.width() - 1, scaled.height() - 1)
    painter.end()
    return pixmap
