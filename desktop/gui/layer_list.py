"""The layer stack as thumbnails, top layer first as in GIMP and Photoshop.

Each row shows the layer on its full canvas over a checkerboard (so its position reads at a
glance), its name, and a check box for visibility. Rows map back to stack indices (bottom
first) through `index_of_row`.
"""

from __future__ import annotations

from layerlift.desktop.gui.checkerboard import checkered_pixmap
from layerlift.inference.layers import LayerStack
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

INDEX_ROLE = Qt.ItemDataRole.UserRole
THUMB = QSize(96, 96)


class LayerList(QListWidget):
    visibility_changed = Signal(int, bool)  # (stack index, visible)
    split_requested = Signal(int)  # stack index: decompose this layer again

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setIconSize(THUMB)
        self.setSpacing(2)
        self.setUniformItemSizes(True)
        self._filling = False
        self.itemChanged.connect(self._on_changed)
        self.itemActivated.connect(self._on_activated)

    def set_stack(self, stack: LayerStack | None) -> None:
        self._filling = True
        try:
            self.clear()
            if stack is None:
                return
            for index in reversed(range(len(stack.layers))):
                layer = stack.layers[index]
                canvas = layer.on_canvas(stack.width, stack.height)
                thumb = checkered_pixmap(canvas, THUMB, cell=6, frame=True)
                item = QListWidgetItem(QIcon(thumb), layer.name)
                item.setData(INDEX_ROLE, index)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if layer.visible
                                   else Qt.CheckState.Unchecked)
                w, h = layer.width, layer.height
                item.setToolTip(f"{layer.name}: {w}×{h} at ({layer.x}, {layer.y})\n"
                                "double-click to decompose this layer again")
                self.addItem(item)
        finally:
            self._filling = False

    def index_of_row(self, row: int) -> int:
        return int(self.item(row).data(INDEX_ROLE))

    def row_of_index(self, index: int) -> int:
        for row in range(self.count()):
            if self.index_of_row(row) == index:
                return row
        raise IndexError(index)

    def selected_index(self) -> int | None:
        item = self.currentItem()
        return None if item is None else int(item.data(INDEX_ROLE))

    def names(self) -> list[str]:
        """Layer names, top first, as shown."""
        return [self.item(row).text() for row in range(self.count())]

    def _on_changed(self, item: QListWidgetItem) -> None:
        if not self._filling:
            visible = item.checkState() == Qt.CheckState.Checked
            self.visibility_changed.emit(int(item.data(INDEX_ROLE)), visible)

    def _on_activated(self, item: QListWidgetItem) -> None:
        self.split_requested.emit(int(item.data(INDEX_ROLE)))
