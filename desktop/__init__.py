"""The PySide6 tray app, its window, settings, and the `layerlift` command line."""
