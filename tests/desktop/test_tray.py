"""Tray state follows job, model and server events; the icon and tooltip show it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from layerlift.bridge.client import decompose_remote
from layerlift.desktop.gui.app import AppOptions, LayerLiftApp
from layerlift.desktop.gui.tray import (
    ERROR,
    IDLE,
    LOADING,
    WORKING,
    TrayState,
    TrayStatus,
    state_icon,
)
from layerlift.inference.backends.base import Backend, DecomposeRequest
from layerlift.inference.errors import OutOfMemory
from layerlift.inference.formats import read_image
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.job_states import JobState
from layerlift.inference.jobs import BackendProvider
from PySide6.QtGui import QImage

from tests.desktop.conftest import JOB_TIMEOUT_MS, LOGO


def _record(job_id: str, state: str, fraction: float = 0.0, **extra) -> JobSnapshot:
    return JobSnapshot.from_json(
        {"id": job_id, "state": state,
         "progress": {"fraction": fraction, "step": extra.pop("step", None),
                      "total": extra.pop("total", None), "message": ""}, **extra})


def test_status_follows_a_job_through_its_states():
    status = TrayStatus()
    status.on_server("listening", "ws://127.0.0.1:47811")
    assert status.state().kind == IDLE
    assert "ws://127.0.0.1:47811" in status.state().tooltip
    status.on_job(_record("a", "queued"))
    status.on_job(_record("a", "loading"))
    assert status.state().kind == LOADING
    status.on_job(_record("a", "running", 0.42, step=21, total=50))
    state = status.state()
    assert (state.kind, state.percent) == (WORKING, 42)
    assert "42%" in state.tooltip and "step 21/50" in state.tooltip
    status.on_job(_record("b", "queued"))
    assert "1 waiting" in status.state().tooltip
    status.on_job(_record("a", "done", 1.0))
    status.on_job(_record("b", "failed", error={"code": "out_of_memory", "message": "no VRAM"}))
    state = status.state()
    assert state.kind == ERROR and "no VRAM" in state.tooltip
    status.on_job(_record("c", "running", 0.1))  # a new job clears the old failure
    assert status.state().kind == WORKING
    status.on_job(_record("c", "cancelled"))
    assert status.state().kind == IDLE


def test_status_model_and_server_events():
    status = TrayStatus()
    status.on_model("loading", "loading Qwen/Qwen-Image-Layered on cuda:0")
    assert status.state().kind == LOADING
    assert "cuda:0" in status.state().tooltip
    status.on_model("loaded", "the qwen model is loaded")
    assert status.state().kind == IDLE
    status.on_server("error", "the bridge cannot listen on 127.0.0.1:47811 (in use)")
    assert status.state().kind == ERROR and "in use" in status.state().tooltip
    status.on_server("listening", "ws://127.0.0.1:47812")
    assert status.state().kind == IDLE


def test_each_state_has_its_own_icon(qapp):
    images = []
    for state in (TrayState(IDLE, None, ""), TrayState(LOADING, None, ""),
                  TrayState(WORKING, 30, ""), TrayState(WORKING, 90, ""),
                  TrayState(ERROR, None, "")):
        image = state_icon(state).pixmap(64, 64).toImage().convertToFormat(
            QImage.Format.Format_RGBA8888)
        images.append(bytes(image.constBits()))
    assert len(set(images)) == len(images)


@pytest.fixture
def app(qapp, host):
    app = LayerLiftApp(qapp, AppOptions(), host=host)
    yield app
    app.stop()


def _watch(app) -> list[TrayState]:
    seen: list[TrayState] = []
    # Connected after the app's own slots, so the tray has refreshed when this runs.
    app.host.job_event.connect(lambda _record: seen.append(app.tray.current))
    return seen


def test_tray_follows_a_job_from_a_plugin_over_the_bridge(qtbot, app, host):
    qtbot.waitUntil(lambda: host.url is not None or host.server_error is not None,
                    timeout=10_000)
    assert host.url, host.server_error
    seen = _watch(app)
    image = read_image(LOGO).pixels
    out: dict = {}

    def client() -> None:  # a plug-in: its own thread, the real socket, the real token
        try:
            out["stack"] = decompose_remote(image, DecomposeRequest(), "classic",
                                            url=host.url, token=host._token)
        except Exception as exc:
            out["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=JOB_TIMEOUT_MS)
    qtbot.waitUntil(lambda: seen and seen[-1].kind == IDLE, timeout=5000)
    assert "error" not in out, out.get("error")
    kinds = [state.kind for state in seen]
    assert WORKING in kinds
    working = [s for s in seen if s.kind == WORKING]
    assert all(0 <= s.percent <= 100 for s in working)
    assert any("%" in s.tooltip for s in working)
    assert app.tray.current.kind == IDLE
    assert app.tray.icon.toolTip() == app.tray.current.tooltip


class _FailingBackend(Backend):
    name = "classic"
    label = "fails on purpose"

    def decompose(self, image, request, progress=None, cancel=None):
        raise OutOfMemory("the GPU ran out of memory at 640 px; try the offload mode")


class _FailingProvider(BackendProvider):
    def resolve(self, name, settings):
        return "classic"

    def create(self, name, settings):
        return _FailingBackend(settings)


def test_a_failed_job_turns_the_tray_red_and_notifies(qtbot, qapp, make_host):
    host = make_host(_FailingProvider())
    app = LayerLiftApp(qapp, AppOptions(), host=host)
    try:
        with qtbot.waitSignal(host.job_event, timeout=JOB_TIMEOUT_MS,
                              check_params_cb=lambda job: job.state is JobState.FAILED):
            host.submit("t", np.zeros((8, 8, 4), np.uint8), DecomposeRequest(), "classic")
        assert app.tray.current.kind == ERROR
        assert "ran out of memory" in app.tray.icon.toolTip()
        assert app.tray.notifications[-1][0] == "Decomposition failed"
        app.show_window()  # the user looked: back to normal
        assert app.tray.current.kind == IDLE
    finally:
        app.stop()


def test_load_model_without_weights_says_why(qtbot, app, host):
    assert host.settings.model is None
    with qtbot.waitSignal(host.model_state, timeout=30_000,
                          check_params_cb=lambda state, _m: state == "error") as blocker:
        app.tray.actions["load"].trigger()
    message = blocker.args[1]
    assert message.startswith("the model could not be loaded")
    assert app.tray.current.kind == ERROR
    assert app.tray.notifications[-1] == ("Model not loaded", message)


def test_unload_model_from_the_menu(qtbot, app, host):
    with qtbot.waitSignal(host.model_state, timeout=10_000) as blocker:
        app.tray.actions["unload"].trigger()
    assert blocker.args == ["unloaded", "the model is unloaded"]
    assert app.tray.current.kind == IDLE
    assert app.tray.notifications[-1] == ("LayerLift", "the model is unloaded")


def test_menu_has_every_item(app):
    texts = [a.text() for a in app.tray.menu.actions() if not a.isSeparator()]
    assert texts == ["Open window", "Pair a device…", "Load model", "Unload model",
                     "Settings…", "Open results folder", "Quit LayerLift"]
