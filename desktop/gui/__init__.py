"""The Qt part of LayerLift: the tray app, its window and dialogs (PySide6).

Everything under `layerlift.desktop.gui` may import Qt; nothing outside it does. The command
line (`layerlift.desktop.cli`) imports from here only for `layerlift tray`, and only inside
that command, so `decompose`, `serve`, `doctor` and the rest run on a machine without a
display or without PySide6 at all.
"""
