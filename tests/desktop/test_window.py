"""The window driven like a user would: open, decompose on classic, cancel, export, reopen."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from layerlift.inference.formats import read_image, read_stack
from layerlift.inference.layers import psnr
from PySide6.QtCore import Qt

from tests.desktop.conftest import JOB_TIMEOUT_MS, LOGO, GatedProvider


def _decompose(qtbot, window) -> str:
    """Click Decompose and wait for the job to end; returns its id."""
    with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(window.decompose_button, Qt.MouseButton.LeftButton)
    job_id, state = blocker.args
    assert state == "done", window.last_error
    return job_id


def _use_classic(window) -> None:
    window.backend_combo.setCurrentIndex(window.backend_combo.findData("classic"))


def test_open_and_decompose_on_classic(qtbot, window):
    assert not window.decompose_button.isEnabled()  # nothing open yet
    assert window.open_path(LOGO)
    assert window.decompose_button.isEnabled()
    _use_classic(window)
    job_id = _decompose(qtbot, window)

    stack = window.stack
    assert stack is not None and len(stack.layers) >= 2
    assert window.layer_list.count() == len(stack.layers)
    # Top layer first in the list, as in GIMP and Photoshop.
    assert window.layer_list.names() == [layer.name for layer in reversed(stack.layers)]
    for row in range(window.layer_list.count()):
        assert not window.layer_list.item(row).icon().isNull()
    assert window.preview.pixmap() is not None and not window.preview.pixmap().isNull()
    source = read_image(LOGO).pixels
    assert psnr(source, stack.composite()) > 35.0
    assert window.progress.value() == 100
    assert job_id in window.history.job_ids()
    assert window.history.item(0).text().split("  ")[1] == "logo.png"


def test_visibility_toggle_changes_the_preview(qtbot, window):
    window.open_path(LOGO)
    _use_classic(window)
    _decompose(qtbot, window)
    before = window.stack.composite()
    top_index = len(window.stack.layers) - 1
    item = window.layer_list.item(window.layer_list.row_of_index(top_index))
    item.setCheckState(Qt.CheckState.Unchecked)
    assert window.stack.layers[top_index].visible is False
    assert not np.array_equal(before, window.stack.composite(visible_only=True))
    item.setCheckState(Qt.CheckState.Checked)
    assert np.array_equal(before, window.stack.composite(visible_only=True))


def test_cancel_a_running_job(qtbot, make_host, make_window):
    provider = GatedProvider()
    window = make_window(make_host(provider))
    window.open_path(LOGO)
    qtbot.mouseClick(window.decompose_button, Qt.MouseButton.LeftButton)
    assert provider.started.wait(30), "the job never started"
    qtbot.waitUntil(lambda: window.current_job is not None, timeout=10_000)
    assert window.cancel_button.isEnabled()
    with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args[1] == "cancelled"
    assert window.stack is None
    assert window.status_label.text() == "cancelled"
    assert window.decompose_button.isEnabled() and not window.cancel_button.isEnabled()
    record = window.runner.get(blocker.args[0])
    assert record.state == "cancelled"


@pytest.mark.parametrize("kind", ["psd", "ora", "png"])
def test_export_each_format(qtbot, window, tmp_path, kind):
    window.open_path(LOGO)
    _use_classic(window)
    _decompose(qtbot, window)
    target = tmp_path / ("logo_layers" if kind == "png" else f"logo.{kind}")
    written = window.export(kind, target)
    assert written, window.last_error
    back = read_stack(target)
    assert [layer.name for layer in back.layers] == [layer.name for layer in window.stack.layers]
    assert psnr(window.stack.composite(), back.composite()) > 40.0


def test_reopen_from_history_after_restart(qtbot, make_host, make_window):
    first = make_window(make_host())
    first.open_path(LOGO)
    _use_classic(first)
    job_id = _decompose(qtbot, first)
    names = [layer.name for layer in first.stack.layers]
    first.close()

    # A new runner reads the job folders from disk, as after restarting the app.
    second = make_window(make_host())
    assert second.stack is None
    assert job_id in second.history.job_ids()
    row = second.history.job_ids().index(job_id)
    item = second.history.item(row)
    with qtbot.waitSignal(second.stack_changed, timeout=5000):
        # A real double-click: press/release, then the double-click event.
        center = second.history.visualItemRect(item).center()
        viewport = second.history.viewport()
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=center)
        qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=center)
    assert [layer.name for layer in second.stack.layers] == names
    assert second.source_name == "logo.png"
    assert second.layer_list.count() == len(names)


def test_decompose_a_layer_again(qtbot, window):
    window.open_path(LOGO)
    _use_classic(window)
    _decompose(qtbot, window)
    before = window.stack
    # The top layer: an object on transparency, split again through the same runner.
    index = len(before.layers) - 1
    parent_name = before.layers[index].name
    window.layers_spin.setValue(2)
    with qtbot.waitSignal(window.job_finished, timeout=JOB_TIMEOUT_MS) as blocker:
        window.split_layer(index)
    assert blocker.args[1] == "done", window.last_error
    after = window.stack
    assert after is not before
    new_names = [layer.name for layer in after.layers]
    children = [name for name in new_names if name.startswith(parent_name + " / ")]
    assert children, new_names
    assert len(after.layers) == len(before.layers) - 1 + len(children)
    assert psnr(before.composite(), after.composite()) > 35.0
    assert window.layer_list.count() == len(after.layers)


def test_close_during_a_job_keeps_the_result(qtbot, make_host, make_window):
    provider = GatedProvider()
    host = make_host(provider)
    window = make_window(host)
    window.open_path(LOGO)
    qtbot.mouseClick(window.decompose_button, Qt.MouseButton.LeftButton)
    assert provider.started.wait(30)
    qtbot.waitUntil(lambda: window.current_job is not None, timeout=10_000)
    job_id = window.current_job
    window.close()
    assert not window.isVisible()
    provider.gate.set()
    record = host.runner.wait(job_id, timeout=JOB_TIMEOUT_MS / 1000)
    assert record.state == "done"
    # On disk, and listed by a fresh window.
    again = make_window(make_host())
    assert job_id in again.history.job_ids()
    assert again.reopen(job_id)


def test_unreadable_picture_is_a_dialog_not_a_crash(window, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    assert window.open_path(bad) is False
    title, message = window.last_error
    assert title == "Cannot open the picture"
    assert "notes.png" in message
    assert window.source is None and not window.decompose_button.isEnabled()


def test_dropping_a_file_opens_it(window):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(LOGO))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.source_name == "logo.png"
    assert window.source.shape == (320, 320, 4)
    assert window.decompose_button.isEnabled()


def test_unavailable_backend_is_explained_and_logged(qtbot, window):
    from layerlift.desktop.gui.logging_setup import setup_logging

    log_file = setup_logging()
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "baseFilename", None) == str(log_file)]
    try:
        window.open_path(LOGO)
        window.backend_combo.setCurrentIndex(window.backend_combo.findData("qwen"))
        qtbot.mouseClick(window.decompose_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.last_error is not None, timeout=30_000)
        title, message = window.last_error
        assert title == "Cannot start the decomposition"
        assert "qwen" in message
        assert window.decompose_button.isEnabled() and not window.cancel_button.isEnabled()
        for handler in ours:
            handler.flush()
        assert message in log_file.read_text()
    finally:
        for handler in ours:
            root.removeHandler(handler)
            handler.close()


def test_the_caption_field_goes_with_the_picture(window):
    window.open_path(LOGO)
    assert window._request().options == {}  # empty: the model captions the picture
    window.caption_edit.setText("  a red logo on white  ")
    assert window._request().options == {"caption": "a red logo on white"}
    # It describes the whole picture: a layer split again goes without it.
    from layerlift.desktop.gui.document_jobs import SplitLayer

    assert window._request(SplitLayer(0, None)).options == {}
    # Another picture, another caption.
    window.open_path(LOGO)
    assert window.caption_edit.text() == ""


# --- the window's Open and Export follow the command line's rules ------------------------


def test_export_never_writes_over_the_opened_picture(qtbot, window, tmp_path):
    import shutil

    from layerlift.inference.formats import write_stack
    from layerlift.inference.layers import Layer, LayerStack

    source = tmp_path / "design.psd"
    base = np.zeros((40, 60, 4), np.uint8)
    base[...] = (250, 250, 240, 255)
    mark = np.zeros((10, 12, 4), np.uint8)
    mark[...] = (200, 20, 20, 255)
    write_stack(LayerStack(60, 40, [Layer("paper", base), Layer("mark", mark, 5, 6)]), source)
    before = source.read_bytes()
    assert window.open_path(source)
    _use_classic(window)
    _decompose(qtbot, window)
    link = tmp_path / "alias.psd"
    link.symlink_to(source)
    for target in (source, link):
        assert window.export("psd", target) == []
        title, message = window.last_error
        assert title == "Export failed" and "is the input" in message
    assert source.read_bytes() == before
    other = tmp_path / "copy.psd"
    shutil.copy(source, other)  # another file may be replaced: the user picked it
    assert window.export("psd", other)
    assert source.read_bytes() == before


def test_export_into_a_users_folder_is_refused(qtbot, window, tmp_path):
    window.open_path(LOGO)
    _use_classic(window)
    _decompose(qtbot, window)
    folder = tmp_path / "logo_layers"
    folder.mkdir()
    (folder / "00_background.png").write_bytes(b"the user's own file")
    assert window.export("png", folder) == []
    title, message = window.last_error
    assert title == "Export failed" and "did not write" in message
    assert (folder / "00_background.png").read_bytes() == b"the user's own file"


@pytest.mark.timeout(60)
def test_opening_a_fifo_is_a_dialog_not_a_hang(window, tmp_path):
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "stream.png"
    os.mkfifo(fifo)
    assert window.open_path(fifo) is False
    title, message = window.last_error
    assert title == "Cannot open the picture" and "FIFO" in message
