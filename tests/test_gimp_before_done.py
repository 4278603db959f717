"""The GIMP plug-in's client takes layers sent before "done" and returns them only with it.

The plug-in as LayerLift's installer lays it out (the `plugin` fixture), against the real
server whose job store holds each write until the test lets it go (tests/test_bridge_before_done).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from tests.bridge_fixtures import TOKEN, ServerThread, picture
from tests.test_bridge_before_done import GatedStore, gated_runner


def _watching_session(plugin, port: int):
    """A BridgeSession that tells the test when it has read a result's layers."""

    class Watching(plugin.ll_bridge.BridgeSession):
        layers_read = threading.Event()

        def _read_result(self, message: dict) -> Any:
            result = super()._read_result(message)
            self.layers_read.set()
            return result

    return Watching(port=port, token=TOKEN)


def _decompose_in_thread(session, image: np.ndarray) -> tuple[threading.Thread, dict]:
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            with session:
                outcome["result"] = session.decompose(image.tobytes(), image.shape[1],
                                                      image.shape[0], layers=2,
                                                      backend="split")
        except Exception as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, outcome


def test_layers_are_held_until_done(plugin, tmp_path):
    store = GatedStore(tmp_path / "jobs")
    image = picture(40, 24, seed=11)
    with ServerThread(runner=gated_runner(store)) as server:
        session = _watching_session(plugin, server.server.port)
        thread, outcome = _decompose_in_thread(session, image)
        try:
            assert session.layers_read.wait(20), "no layers came while the store was writing"
            thread.join(0.3)
            assert thread.is_alive(), "decompose returned before the job was done"
        finally:
            store.release.set()
        thread.join(20)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.job["state"] == "done" and result.job["result"]["layers"] == 2
    background = result.layers[0]
    np.testing.assert_array_equal(
        np.frombuffer(background.pixels, np.uint8).reshape(24, 40, 4), image)


def test_a_failed_write_drops_the_layers_with_a_sentence(plugin, tmp_path):
    store = GatedStore(tmp_path / "jobs", fail=True)
    with ServerThread(runner=gated_runner(store)) as server:
        session = _watching_session(plugin, server.server.port)
        thread, outcome = _decompose_in_thread(session, picture(30, 20, seed=12))
        try:
            assert session.layers_read.wait(20)
        finally:
            store.release.set()
        thread.join(20)
    error = outcome.get("error")
    assert isinstance(error, plugin.ll_bridge.BridgeError), outcome
    assert error.code == "write_failed" and "could not be saved" in error.message
    assert "result" not in outcome
