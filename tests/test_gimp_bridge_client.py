"""The GIMP plug-in's protocol client (standard library only) against the real bridge server.

The same conversation the plug-in has inside GIMP, from the host's Python, with the plug-in as
LayerLift's installer lays it out (the `plugin` fixture): token, picture as fragmented binary
frames, progress, result frames (big layers arrive fragmented), and every failure a GIMP user
can meet.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
from layerlift.bridge.limits import Limits

from tests.bridge_fixtures import REAL_BACKEND, TOKEN, ServerThread, picture, real_provider


@pytest.fixture(scope="module")
def server():
    with ServerThread(provider=real_provider()) as running:
        yield running.server


def _session(plugin, server, **kwargs):
    return plugin.ll_bridge.BridgeSession(port=server.port, token=kwargs.pop("token", TOKEN),
                                          **kwargs)


def _composite(result) -> np.ndarray:
    from layerlift.inference.layers import Layer, LayerStack

    layers = [Layer(item.name, np.frombuffer(item.pixels, np.uint8).reshape(
        item.height, item.width, 4) if item.width else np.zeros((0, 0, 4), np.uint8),
        item.x, item.y) for item in result.layers]
    return LayerStack(result.width, result.height, layers).composite()


def test_decompose_with_progress_and_exact_result(plugin, server):
    image = picture(96, 64, seed=3)
    events = []
    with _session(plugin, server) as session:
        assert REAL_BACKEND in [b["name"] for b in session.capabilities.get("backends", [])]
        result = session.decompose(image.tobytes(), 96, 64, layers=3, backend=REAL_BACKEND,
                                   progress=lambda f, t: events.append((f, t)))
    assert (result.width, result.height) == (96, 64)
    assert len(result.layers) >= 2
    assert events and all(0.0 <= f <= 1.0 for f, _ in events)
    assert [f for f, _ in events] == sorted(f for f, _ in events)
    from layerlift.inference.layers import psnr

    assert psnr(image, _composite(result)) >= 50


def test_large_picture_travels_as_fragmented_frames(plugin, server):
    rng = np.random.default_rng(0)
    image = np.repeat(np.repeat(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8), 32, 0), 32, 1)
    image[..., 3] = 255  # 2048 x 2048: 16 MiB, sent as four 4 MiB frames
    with _session(plugin, server) as session:
        assert session.ws.fragment_size < image.nbytes
        result = session.decompose(image.tobytes(), 2048, 2048, layers=2, backend=REAL_BACKEND)
    assert (result.width, result.height) == (2048, 2048)
    # The server sends layers over 1 MiB in fragments; the plug-in gets them whole.
    assert max(len(layer.pixels) for layer in result.layers) > 1024 * 1024
    composite = _composite(result)
    assert composite.shape == image.shape and np.abs(
        composite.astype(int) - image).mean() < 8


def test_ping_pong_mid_session(plugin, server):
    with _session(plugin, server) as session:
        session.ws.ping(b"gimp")
        session._send({"type": "ping", "id": "p1"})
        reply = session._recv_json(timeout=10)
        assert reply == {"type": "pong", "id": "p1"}


def test_wrong_token_is_refused_with_a_sentence(plugin, server):
    with pytest.raises(plugin.ll_bridge.BridgeError) as exc:
        _session(plugin, server, token="wrong").open()
    assert exc.value.code == "unauthorized"
    assert "token" in exc.value.message


def test_server_closes_and_client_reports_it(plugin, server):
    session = _session(plugin, server).open()
    try:
        session.ws.send_binary(b"not a frame")  # the server answers with an error, stays up
        reply = session._recv(timeout=10)
        assert "protocol_error" in reply
        session.ws.close(1000, "bye")
        with pytest.raises(plugin.ll_websocket.ConnectionClosed):
            session.ws.send_text("{}")
    finally:
        session.close()


def test_nothing_listening_says_start_the_app(plugin):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(plugin.ll_bridge.BridgeError) as exc:
        plugin.ll_bridge.BridgeSession(port=port, token="x").open()
    assert exc.value.code == "not_running"
    assert "layerlift serve" in exc.value.message


def test_missing_token_file_says_start_the_app(plugin, layerlift_home):
    with pytest.raises(plugin.ll_bridge.BridgeError) as exc:
        plugin.ll_bridge.read_token()
    assert exc.value.code == "no_token"
    assert str(layerlift_home) in exc.value.message


def test_oversize_picture_gets_a_clear_error(plugin, monkeypatch):
    small = Limits(max_image_pixels=10_000)
    with ServerThread(provider=real_provider(), limits=small) as running, \
            _session(plugin, running.server) as session:
        image = picture(200, 100)
        with pytest.raises(plugin.ll_bridge.BridgeError) as exc:
            session.decompose(image.tobytes(), 200, 100, layers=2, backend=REAL_BACKEND)
    assert exc.value.code == "image_too_large"


def test_killed_plugin_cancels_its_job(plugin):
    """GIMP's Cancel kills the plug-in: the dropped socket alone must cancel the job."""
    import threading

    from tests.bridge_fixtures import GatedBackend, split_provider

    GatedBackend.reset()
    with ServerThread(provider=split_provider()) as running:
        session = _session(plugin, running.server).open()
        errors: list = []

        def run() -> None:
            try:
                session.decompose(picture(40, 30).tobytes(), 40, 30, layers=2, backend="gated")
            except plugin.ll_bridge.BridgeError as exc:
                errors.append(exc)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            assert GatedBackend.started.wait(20), "the job never started"
            jobs = running.call(_list_jobs(running.server))
            job_id = jobs[-1].id
            # What a killed process leaves behind: the TCP connection drops, no close frame.
            session.ws.sock.shutdown(socket.SHUT_RDWR)
            session.ws.sock.close()
            record = running.server.runner.wait(job_id, 20)
            assert record.state == "cancelled", record
        finally:
            GatedBackend.release.set()
            worker.join(10)
        assert [error.code for error in errors] == ["connection_lost"]


async def _list_jobs(server):
    return server.runner.jobs()
