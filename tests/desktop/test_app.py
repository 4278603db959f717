"""Settings round-trip, port change, pairing, single instance, and a torch-free start-up."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from layerlift.bridge.auth import redeem_pairing_code
from layerlift.bridge.client import BridgeClient
from layerlift.desktop import autostart
from layerlift.desktop.gui.app import AppOptions, LayerLiftApp, ping_running
from layerlift.desktop.gui.settings_dialog import SettingsDialog, detect_vram
from layerlift.inference.backends.qwen.doctor import parse_nvidia_smi
from layerlift.inference.settings import Settings
from PySide6.QtWidgets import QMessageBox

from bench import tray_probe
from tests.conftest import REPO
from tests.desktop.conftest import LOGO


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _hello(url: str, token: str) -> dict:
    async def main() -> dict:
        client = BridgeClient(url, token)
        try:
            return await client.connect()
        finally:
            await client.close()

    return asyncio.run(main())


@pytest.fixture
def app(qapp, host):
    app = LayerLiftApp(qapp, AppOptions(), host=host)
    yield app
    app.stop()


def test_settings_dialog_round_trip(qtbot):
    original = Settings(model="/models/qwen", device="cuda:0", memory_mode="offload",
                        offline=True, port=47811, results_keep_days=14.0, results_max_mb=2048.0)
    dialog = SettingsDialog(original, detect=False)
    qtbot.addWidget(dialog)
    # What the dialog shows is what it was given.
    assert dialog.result_settings() == original
    dialog.model_edit.setText("Qwen/Qwen-Image-Layered")
    dialog.device_combo.setCurrentText("cpu")
    dialog.memory_combo.setCurrentIndex(dialog.memory_combo.findData("nf4"))
    dialog.offline_check.setChecked(False)
    dialog.port_spin.setValue(50123)
    dialog.keep_days_spin.setValue(3.5)
    dialog.max_mb_spin.setValue(512)
    edited = dialog.result_settings()
    assert original.port == 47811  # the original is untouched
    edited.save()
    loaded = Settings.load()
    assert loaded == edited
    assert (loaded.model, loaded.device, loaded.memory_mode, loaded.offline, loaded.port,
            loaded.results_keep_days, loaded.results_max_mb) == (
        "Qwen/Qwen-Image-Layered", "cpu", "nf4", False, 50123, 3.5, 512.0)
    # An empty model field means "not configured".
    dialog.model_edit.setText("  ")
    assert dialog.result_settings().model is None


def test_settings_dialog_shows_the_memory_plan_of_the_current_settings(qtbot):
    from layerlift.desktop.gui.settings_dialog import plan_text

    settings = Settings(resolution=1024)
    text = plan_text(settings)
    assert text.startswith("For 4 layers at 1024 px")
    lines = text.splitlines()
    # One line per mode with its planned peak (full at 1024 px: ~70 GiB), then auto.
    assert lines[1].startswith("full: 70.") and "GiB VRAM" in lines[1]
    assert any(line.startswith("lowvram: 16.9 GiB VRAM") for line in lines)
    assert lines[-1].startswith("auto: ")
    dialog = SettingsDialog(settings, detect=True)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.plan_label.text().startswith("For 4 layers"), timeout=10_000)
    assert "lowvram:" in dialog.plan_label.text()


def test_vram_detection_is_a_sentence_and_never_imports_torch():
    code = ("import sys; from layerlift.desktop.gui.settings_dialog import detect_vram; "
            "print(detect_vram()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout.splitlines()
    assert out[-1] == "False"
    assert out[0].strip()
    assert detect_vram()  # in-process too


def test_nvidia_smi_output_becomes_a_vram_figure():
    text = ("0, NVIDIA H100 80GB HBM3, 580.65, 81559, 80995\n"
            "1, NVIDIA GeForce RTX 4090, 580.65, 24564, [N/A]\n"
            "2, NVIDIA RTX 6000, Ada Generation, 580.65, 49140, 48000\n"
            "garbage\n")
    gpus = parse_nvidia_smi(text)
    assert [(g["index"], g["name"]) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3"), (2, "NVIDIA RTX 6000, Ada Generation")]
    assert gpus[0]["total_bytes"] == 81559 * 2**20 and gpus[0]["free_bytes"] == 80995 * 2**20
    assert parse_nvidia_smi("") == []


def test_changing_the_port_restarts_the_server_cleanly(qtbot, app, host):
    qtbot.waitUntil(lambda: host.url is not None, timeout=10_000)
    old_port = int(host.url.rsplit(":", 1)[1])
    assert _listening(old_port)
    new_port = _free_port()
    with qtbot.waitSignal(host.server_state, timeout=10_000,
                          check_params_cb=lambda state, _u: state == "listening") as blocker:
        changed = host.apply_settings(replace(host.settings, port=new_port))
    assert changed == {"port"}
    assert blocker.args[1] == f"ws://127.0.0.1:{new_port}"
    assert not _listening(old_port)
    welcome = _hello(host.url, host._token)  # a real client, on the new port
    assert welcome["type"] == "welcome"
    assert host.runner.settings.port == new_port


def test_settings_dialog_applies_through_the_app(qtbot, app, host):
    qtbot.waitUntil(lambda: host.url is not None, timeout=10_000)
    new_port = _free_port()
    dialog = app.open_settings()
    qtbot.addWidget(dialog)
    dialog.port_spin.setValue(new_port)
    dialog.offline_check.setChecked(False)
    dialog.autostart_check.setChecked(True)
    with qtbot.waitSignal(host.server_state, timeout=10_000,
                          check_params_cb=lambda state, _u: state == "listening"):
        dialog.accept()
    assert Settings.load().port == new_port and Settings.load().offline is False
    assert host.url == f"ws://127.0.0.1:{new_port}"
    assert autostart.is_enabled()
    entry = Path(os.environ["LAYERLIFT_HOME"]) / "autostart" / "layerlift.desktop"
    assert "tray" in entry.read_text() and "Exec=" in entry.read_text()
    dialog = app.open_settings()
    qtbot.addWidget(dialog)
    assert dialog.autostart_check.isChecked()
    dialog.autostart_check.setChecked(False)
    dialog.accept()
    assert not autostart.is_enabled()


def test_pairing_code_is_shown_and_redeemable(app):
    code, expires = app.pair()
    assert len(code) == 6 and code.isdigit() and expires > time.time()
    boxes = [w for w in app._dialogs if isinstance(w, QMessageBox)]
    assert boxes and f"{code[:3]} {code[3:]}" in boxes[-1].text()
    assert redeem_pairing_code(code) is not None


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, LAYERLIFT_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    settings = Settings(port=_free_port())
    (home / "config").mkdir(parents=True, exist_ok=True)
    settings.save(home / "config" / "settings.json")
    return env


def test_tray_starts_without_torch_and_answers_when_ready(tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    assert not ping_running(home / "config", wait_ms=200)  # nothing answers before it starts
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "layerlift.desktop.cli", "tray"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready_at = tray_probe.wait_until_ready(proc, home, timeout=60)
        app = tray_probe.app_process(proc)
        assert not tray_probe.torch_loaded(app)
        assert ready_at - started < 10  # generous for a loaded 2-core CI; see bench/startup.py
        assert tray_probe.logged_platform(home) == "offscreen"
        assert tray_probe.stop(proc, app) == 0  # SIGTERM is a clean quit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "showing the window" not in (home / "logs" / "layerlift.log").read_text()


def test_second_start_hands_over_to_the_first(tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    log_file = home / "logs" / "layerlift.log"
    # `layerlift` with no arguments is the tray.
    first = subprocess.Popen([sys.executable, "-m", "layerlift.desktop.cli"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if log_file.exists() and "bridge listening" in log_file.read_text():
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.1)
        else:
            pytest.fail("the first instance never came up")
        second = subprocess.run(
            [sys.executable, "-m", "layerlift.desktop.cli", "tray", "--open", str(LOGO)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=30,
        )
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        deadline = time.monotonic() + 10
        while "second start" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"second start: showing the window (open={LOGO})" in log_file.read_text()
        assert first.poll() is None  # the first one is still serving
    finally:
        first.terminate()
        try:
            first.wait(15)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
    assert first.returncode == 0  # SIGTERM is a clean quit


class _QuitRecorder:
    """Stands in for QApplication.quit only: the test session's QApplication must live on."""

    def __init__(self) -> None:
        self.calls = 0

    def quit(self) -> None:
        self.calls += 1


def test_closing_the_window_without_a_tray_waits_for_the_job(qtbot, qapp, make_host):
    from tests.desktop.conftest import GatedProvider

    provider = GatedProvider()
    host = make_host(provider)
    app = LayerLiftApp(qapp, AppOptions(), host=host)
    recorder = _QuitRecorder()
    app.qapp = recorder
    try:
        assert not app.tray.available  # offscreen has no system tray
        window = app.window
        app.show_window()
        window.open_path(LOGO)
        window.decompose()
        assert provider.started.wait(30)
        qtbot.waitUntil(lambda: window.current_job is not None, timeout=10_000)
        job_id = window.current_job
        window.close()
        assert recorder.calls == 0  # not while the job runs
        provider.gate.set()
        qtbot.waitUntil(lambda: recorder.calls == 1, timeout=90_000)
        assert host.runner.get(job_id).state == "done"
        assert host.runner.read_result(job_id).layers  # on disk, readable
    finally:
        app.stop()
