"""Desktop tests run Qt offscreen: no display needed, nothing pops up on a developer's screen.

Every host here listens on port 0 (a free port) so tests never collide with a running
LayerLift or with each other, and uses the real job runner and the real classic backend.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

pytest.importorskip("PySide6", reason="the desktop extra (PySide6) is not installed")

from layerlift.inference.backends.base import Backend, CancelToken, DecomposeRequest, Progress
from layerlift.inference.jobs import BackendProvider, JobRunner
from layerlift.inference.settings import Settings

from tests.conftest import EXAMPLES

LOGO = EXAMPLES / "logo.png"
JOB_TIMEOUT_MS = 90_000


def pytest_configure(config: pytest.Config) -> None:
    # Before pytest-qt builds the QApplication; an explicit choice (xcb under Xvfb) wins.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class GatedClassic(Backend):
    """The real classic backend behind a gate the test opens: a job that is reliably running.

    Cancel and close-during-a-job tests need a job that has started and not finished; the
    gate polls the cancel token exactly as a slow backend would.
    """

    name = "classic"
    label = "classic (gated for tests)"

    def __init__(self, settings: Settings | None, gate: threading.Event,
                 started: threading.Event) -> None:
        super().__init__(settings)
        from layerlift.inference.backends.classic import ClassicBackend

        self.inner = ClassicBackend(settings)
        self.gate, self.started = gate, started

    def decompose(self, image: np.ndarray, request: DecomposeRequest, progress=None,
                  cancel: CancelToken | None = None):
        progress(Progress("running", 0.01, "waiting at the test gate"))
        self.started.set()
        while not self.gate.wait(0.02):
            if cancel is not None:
                cancel.raise_if_cancelled()
        return self.inner.decompose(image, request, progress, cancel)


class GatedProvider(BackendProvider):
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def resolve(self, name: str, settings: Settings) -> str:
        return "classic"

    def create(self, name: str, settings: Settings) -> Backend:
        return GatedClassic(settings, self.gate, self.started)


@pytest.fixture
def settings() -> Settings:
    return Settings(port=0)


@pytest.fixture
def make_host(settings, qapp):
    from layerlift.desktop.gui.server_host import ServerHost

    hosts = []

    def make(provider: BackendProvider | None = None, start: bool = True):
        runner = JobRunner(settings, provider=provider)
        host = ServerHost(runner=runner, token="test-token-" + "x" * 20)
        if start:
            host.start()
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        if isinstance(getattr(host.runner.provider, "gate", None), threading.Event):
            host.runner.provider.gate.set()
        host.stop()


@pytest.fixture
def host(make_host):
    return make_host()


@pytest.fixture
def make_window(qtbot):
    from layerlift.desktop.gui.window import MainWindow

    def make(host):
        window = MainWindow(host)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


@pytest.fixture
def window(make_window, host):
    return make_window(host)
