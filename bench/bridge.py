"""Transfer throughput of a finished result: our binary frames vs base64 JSON vs a raw socket.

An 8-layer 4096x4096 RGBA stack (512 MiB) goes from server to client three ways, in one run:

- binary: the real `BridgeServer` sending a finished job to the real `BridgeClient.fetch`
  (JSON header + one 32-byte-header binary message per layer, decoded into numpy arrays).
  Only the disk read is left out (the runner hands over the stack from memory), so the
  figure is the protocol's, not the PNG decoder's;
- base64: what the Photoshop peers do, one JSON message per layer with the pixels in a
  base64 string, over the same websockets settings, decoded into numpy arrays;
- raw: the same bytes through a plain loopback TCP socket (sendall / recv_into), the ceiling.

In all three the sending side runs in a thread of its own (its own event loop), as the
server does in its own process, so sending and receiving overlap as they do for real.

Usage: .venv/bin/python bench/bridge.py [--size 4096] [--layers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from bridge.client import BridgeClient
from bridge.server import BridgeServer, ServerConfig
from inference.backends.base import DecomposeRequest
from inference.job_store import JobStore
from inference.jobs import Job, JobRunner, JobState
from inference.layers import Layer, LayerStack

TOKEN = "bench-token"
MIB = 1024 * 1024


def make_stack(size: int, layers: int) -> LayerStack:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size, 4), np.uint8)
    return LayerStack(size, size, [Layer(f"layer {i}", np.roll(base, i, axis=0))
                                   for i in range(layers)])


class MemoryRunner(JobRunner):
    """A runner holding one finished job whose stack is served from memory."""

    def __init__(self, stack: LayerStack, folder: Path) -> None:
        super().__init__(store=JobStore(folder))
        self.stack = stack
        self.job = Job(id="0123456789abcdef", backend="bench", request=DecomposeRequest(),
                       width=stack.width, height=stack.height, state=JobState.DONE)
        self._jobs[self.job.id] = self.job

    def read_result(self, job_id: str) -> LayerStack:
        return self.stack


class LoopThread:
    """An event loop in its own thread: the server side, as in a separate process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


async def _start_binary_server(stack: LayerStack, folder: Path) -> tuple[BridgeServer, str]:
    runner = MemoryRunner(stack, folder)
    server = BridgeServer(runner, ServerConfig(port=0), token=TOKEN)
    await server.start()
    return server, runner.job.id


async def _fetch(url: str, job_id: str) -> tuple[float, LayerStack]:
    async with BridgeClient(url, TOKEN) as client:
        started = time.perf_counter()
        received = await client.fetch(job_id)
        return time.perf_counter() - started, received


def bench_binary(stack: LayerStack) -> float:
    side = LoopThread()
    with tempfile.TemporaryDirectory() as folder:
        server, job_id = side.call(_start_binary_server(stack, Path(folder)))
        try:
            seconds, received = asyncio.run(_fetch(server.url, job_id))
        finally:
            side.call(server.stop())
            side.close()
    assert len(received.layers) == len(stack.layers)
    assert np.array_equal(received.layers[-1].pixels, stack.layers[-1].pixels)
    return seconds


async def _start_base64_server(stack: LayerStack):
    async def handler(ws):
        await ws.recv()
        for layer in stack.layers:
            await ws.send(json.dumps({
                "type": "layer", "name": layer.name, "x": layer.x, "y": layer.y,
                "width": layer.width, "height": layer.height,
                "data": base64.b64encode(layer.pixels.tobytes()).decode("ascii"),
            }))

    return await serve(handler, "127.0.0.1", 0, max_size=None, compression=None)


async def _fetch_base64(port: int, count: int) -> tuple[float, list[np.ndarray]]:
    async with connect(f"ws://127.0.0.1:{port}", max_size=None, compression=None) as ws:
        started = time.perf_counter()
        await ws.send("fetch")
        layers = []
        for _ in range(count):
            message = json.loads(await ws.recv())
            pixels = np.frombuffer(base64.b64decode(message["data"]), np.uint8)
            layers.append(pixels.reshape(message["height"], message["width"], 4))
        return time.perf_counter() - started, layers


def bench_base64(stack: LayerStack) -> float:
    side = LoopThread()
    server = side.call(_start_base64_server(stack))
    try:
        port = server.sockets[0].getsockname()[1]
        seconds, layers = asyncio.run(_fetch_base64(port, len(stack.layers)))
    finally:
        server.close()
        side.call(server.wait_closed())
        side.close()
    assert np.array_equal(layers[-1], stack.layers[-1].pixels)
    return seconds


def bench_raw(stack: LayerStack) -> float:
    total = sum(layer.pixels.nbytes for layer in stack.layers)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def send() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1)
            for layer in stack.layers:
                conn.sendall(memoryview(layer.pixels).cast("B"))

    thread = threading.Thread(target=send)
    thread.start()
    buffer = bytearray(total)
    view = memoryview(buffer)
    with socket.create_connection(("127.0.0.1", port)) as client:
        started = time.perf_counter()
        client.sendall(b"x")
        got = 0
        while got < total:
            count = client.recv_into(view[got:], min(total - got, 16 * MIB))
            if not count:
                raise ConnectionError("raw sender stopped early")
            got += count
        seconds = time.perf_counter() - started
    thread.join()
    listener.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("LAYERLIFT_HOME", tempfile.mkdtemp(prefix="layerlift-bench-"))
    stack = make_stack(args.size, args.layers)
    total = sum(layer.pixels.nbytes for layer in stack.layers) / MIB
    print(f"{args.layers} layers of {args.size}x{args.size} RGBA8 = {total:.0f} MiB")
    results = {
        "raw socket (ceiling)": bench_raw(stack),
        "binary protocol": bench_binary(stack),
        "base64 JSON (peers)": bench_base64(stack),
    }
    raw = total / results["raw socket (ceiling)"]
    for name, seconds in results.items():
        rate = total / seconds
        print(f"{name:22s} {seconds:7.3f} s  {rate:8.1f} MiB/s  {rate / raw * 100:5.1f}% of raw")
    binary = total / results["binary protocol"]
    verdict = "meets" if binary >= raw / 2 else "MISSES"
    print(f"binary protocol {verdict} the target of half the raw socket throughput")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
