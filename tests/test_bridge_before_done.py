"""Layers sent while the job store writes them: over real loopback sockets, with real clients.

A client that sends `result_before_done` gets its job's `result` and layer frames at the
"writing" event, from the runner's memory; "done" (or "failed") follows them. The store here
holds each result's write until the test lets it go (and can make it fail), so every test
knows the layers went out before the job was done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from layerlift.bridge.client import BridgeClient
from layerlift.inference.errors import LayerLiftError
from layerlift.inference.job_store import JobStore
from layerlift.inference.jobs import JobRunner, ResultUnavailable
from layerlift.inference.layers import LayerStack
from websockets.asyncio.client import connect

from tests.bridge_fixtures import TOKEN, picture, running_server, split_provider

TIMEOUT = 60.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


class GatedStore(JobStore):
    """A job store whose result writes wait for `release` (and then fail if `fail`)."""

    def __init__(self, root: Path, fail: bool = False) -> None:
        super().__init__(root)
        self.fail = fail
        self.writing = threading.Event()
        self.release = threading.Event()

    def save(self, record: dict[str, Any], stack: LayerStack | None = None) -> Path:
        if stack is not None:
            self.writing.set()
            if not self.release.wait(TIMEOUT):
                raise TimeoutError("the test never released the store")
            if self.fail:
                raise OSError(28, "No space left on device")
        return super().save(record, stack)


@pytest.fixture
def store(tmp_path: Path) -> GatedStore:
    store = GatedStore(tmp_path / "jobs")
    yield store
    store.release.set()


def gated_runner(store: GatedStore) -> JobRunner:
    return JobRunner(store=store, provider=split_provider())


class WatchingClient(BridgeClient):
    """The real client, telling the test when it has read a result's layers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layers_read = asyncio.Event()

    async def _read_layers(self, message: dict[str, Any]) -> LayerStack:
        stack = await super()._read_layers(message)
        self.layers_read.set()
        return stack


async def raw_decompose(ws, image: np.ndarray, before_done: bool = True) -> str:
    """Authenticate, send a decompose and its picture as hand-built messages; the job id."""
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "token": TOKEN}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    height, width = image.shape[:2]
    message = {"type": "decompose", "request_id": "r1", "backend": "split",
               "image": {"encoding": "rgba8", "width": width, "height": height,
                         "bytes": image.nbytes}}
    if before_done:
        message["result_before_done"] = True
    await ws.send(json.dumps(message))
    assert json.loads(await ws.recv())["type"] == "ready"
    header = b"LLF1" + bytes([1, 0, 0, 0]) + b"r1".ljust(16, b"\0")
    header += width.to_bytes(4, "little") + height.to_bytes(4, "little")
    await ws.send(header + image.tobytes())
    accepted = json.loads(await ws.recv())
    assert accepted["type"] == "accepted"
    return accepted["job"]["id"]


async def next_text(ws) -> dict[str, Any]:
    raw = await ws.recv()
    assert isinstance(raw, str), "a layer frame came where a JSON message was expected"
    return json.loads(raw)


def test_layers_arrive_before_done_and_done_follows_them(store):
    image = picture(40, 30, seed=1)

    async def scenario():
        async with running_server(runner=gated_runner(store)) as server, \
                connect(server.url, compression=None) as ws:
            job_id = await raw_decompose(ws, image)
            states = []
            while (message := await next_text(ws))["type"] == "progress":
                states.append(message["job"]["state"])
            assert message["type"] == "result" and message["job"]["state"] == "writing"
            frames = [await ws.recv() for _ in message["layers"]]
            # All of it came while the store was still holding the write.
            assert store.writing.is_set() and not store.release.is_set()
            assert not store.folder(job_id).exists()
            store.release.set()
            done = await next_text(ws)
            return states, frames, done, store.folder(job_id).exists()

    states, frames, done, on_disk = run(scenario())
    assert states[-1] == "writing" and "done" not in states
    assert done["type"] == "progress" and done["job"]["state"] == "done"
    assert done["job"]["result"]["layers"] == len(frames) == 2
    assert on_disk
    background = np.frombuffer(frames[0][32:], np.uint8).reshape(30, 40, 4)
    np.testing.assert_array_equal(background, image)


def test_a_client_that_does_not_ask_gets_the_result_after_done(store):
    image = picture(24, 16, seed=2)

    async def scenario():
        async with running_server(runner=gated_runner(store)) as server, \
                connect(server.url, compression=None) as ws:
            await raw_decompose(ws, image, before_done=False)
            assert await asyncio.to_thread(store.writing.wait, 10)
            store.release.set()
            kinds = []
            while (message := await next_text(ws))["type"] != "result":
                kinds.append(message["job"]["state"])
            return kinds, message

    states, result = run(scenario())
    assert states[-2:] == ["writing", "done"]
    assert result["job"]["state"] == "done"


def test_the_python_client_holds_the_layers_until_done(store):
    image = picture(48, 32, seed=3)

    async def scenario():
        async with running_server(runner=gated_runner(store)) as server, \
                WatchingClient(server.url, TOKEN) as client:
            running = asyncio.create_task(client.run(image, backend="split"))
            await asyncio.wait_for(client.layers_read.wait(), 20)
            assert not store.release.is_set()
            await asyncio.sleep(0.2)
            assert not running.done(), "the client returned layers of a job not yet done"
            store.release.set()
            return await running

    stack = run(scenario())
    np.testing.assert_array_equal(stack.composite(), image)
    # The figures of the finished job, from the "done" event.
    assert stack.meta["backend"] == "split" and "psnr" in stack.meta


def test_a_failed_write_after_the_layers_were_sent_fails_the_job(tmp_path):
    store = GatedStore(tmp_path / "jobs", fail=True)
    image = picture(32, 24, seed=4)

    async def scenario():
        runner = gated_runner(store)
        async with running_server(runner=runner) as server:
            async with WatchingClient(server.url, TOKEN) as client:
                job = await client.submit(image, backend="split")
                waiting = asyncio.create_task(client.wait(job.id))
                await asyncio.wait_for(client.layers_read.wait(), 20)
                store.release.set()
                with pytest.raises(LayerLiftError) as failed:
                    await waiting
            async with BridgeClient(server.url, TOKEN) as later:
                with pytest.raises(LayerLiftError) as fetched:
                    await later.fetch(job.id)
            return runner, job.id, failed.value, fetched.value

    runner, job_id, failed, fetched = run(scenario())
    assert failed.code == fetched.code == "write_failed"
    assert runner.get(job_id).state == "failed"
    assert runner.ready_result(job_id) is None
    with pytest.raises(ResultUnavailable):
        runner.read_result(job_id)


def test_a_client_that_vanishes_mid_send_does_not_break_the_job(store, caplog):
    # Layers of 16 MiB go out as many fragments: the client is gone long before the last.
    image = picture(2048, 2048, seed=5)

    async def scenario():
        runner = gated_runner(store)
        async with running_server(runner=runner) as server:
            async with connect(server.url, compression=None, max_size=None) as ws:
                job_id = await raw_decompose(ws, image)
                while (await next_text(ws))["type"] != "result":
                    pass
                ws.transport.abort()  # no close frame: as if the process were killed
            store.release.set()
            final = await asyncio.to_thread(runner.wait, job_id, 30)
            async with BridgeClient(server.url, TOKEN) as later:
                fetched = await later.fetch(job_id)
                again = await later.run(picture(), backend="split")
            return final, fetched, again

    final, fetched, again = run(scenario())
    assert final.state == "done"
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    np.testing.assert_array_equal(fetched.composite(), image)
    np.testing.assert_array_equal(again.composite(), picture())


def test_fetch_during_the_write_gets_the_layers_before_done(store):
    image = picture(36, 20, seed=6)

    async def scenario():
        async with running_server(runner=gated_runner(store)) as server:
            async with BridgeClient(server.url, TOKEN) as first:
                job = await first.submit(image, backend="split")
            assert await asyncio.to_thread(store.writing.wait, 10)
            async with WatchingClient(server.url, TOKEN) as second:
                fetching = asyncio.create_task(second.fetch(job.id))
                await asyncio.wait_for(second.layers_read.wait(), 20)
                await asyncio.sleep(0.2)
                assert not fetching.done()
                store.release.set()
                return await fetching

    stack = run(scenario())
    np.testing.assert_array_equal(stack.composite(), image)


def test_the_runner_holds_the_final_stack_from_writing_on(store):
    from layerlift.inference.backends.base import DecomposeRequest

    runner = gated_runner(store).start()
    try:
        image = picture(20, 12, seed=7)
        job = runner.submit(image, DecomposeRequest(), "split")
        assert store.writing.wait(10)
        assert runner.get(job.id).state == "writing"
        early = runner.ready_result(job.id)
        assert early is not None
        np.testing.assert_array_equal(early.composite(), image)
        with pytest.raises(ResultUnavailable):  # not done: nobody may use it as a result yet
            runner.read_result(job.id)
        store.release.set()
        assert runner.wait(job.id, 10).state == "done"
        np.testing.assert_array_equal(runner.read_result(job.id).composite(), image)
    finally:
        store.release.set()
        runner.stop()
