"""From the model's last step to the client holding the layers, through the real server.

Part of `bench/qwen_overhead.py`. A job runs in a real `JobRunner` (job store on disk) behind a
real `BridgeServer`, submitted by a real `BridgeClient` over loopback, as the GIMP and
Photoshop plug-ins do. Three moments are stamped:

- `refining`: the runner's first "refining" event, i.e. the pipeline call has returned
  (with --no-model: the moment the stand-in backend starts refining);
- `done`: the runner announces the job done, its result complete on disk;
- `received`: the client has every layer of the result decoded into arrays.

`announce_s` = done - refining (`store_s` of it: from the runner's "writing" to "done"), and
`shown_s` = received - refining. The picture's upload comes before `refining`, so it is not
counted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from layerlift.bridge.client import BridgeClient
from layerlift.bridge.server import BridgeServer, ServerConfig
from layerlift.inference.backends.base import (
    Backend,
    CancelToken,
    DecomposeRequest,
    Progress,
    ProgressCallback,
    ignore_progress,
)
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.job_store import JobStore
from layerlift.inference.jobs import JobRunner
from layerlift.inference.layers import LayerStack
from layerlift.inference.settings import Settings

TOKEN = "bench-token"


class OneBackend:
    """A `BackendProvider` whose only backend is the one given (already loaded)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def names(self) -> list[str]:
        return [self.backend.name]

    def describe(self, settings: Settings) -> list[dict[str, Any]]:
        return [{"name": self.backend.name, "label": self.backend.name, "available": True,
                 "reason": ""}]

    def resolve(self, name: str, settings: Settings) -> str:
        return self.backend.name

    def create(self, name: str, settings: Settings) -> Backend:
        return self.backend


class RefineOnly(Backend):
    """The Qwen backend with its model call already done: refines given low-res layers."""

    name: ClassVar[str] = "refine_only"

    def __init__(self, layers_low: list[np.ndarray], resolution: int) -> None:
        super().__init__(Settings(steps=1))
        self.layers_low = layers_low
        self.resolution = resolution

    def decompose(self, image: np.ndarray, request: DecomposeRequest,
                  progress: ProgressCallback = ignore_progress,
                  cancel: CancelToken | None = None) -> LayerStack:
        from layerlift.inference.backends.qwen import QwenBackend
        from layerlift.inference.backends.qwen.caption import CaptionResult
        from layerlift.inference.backends.qwen.pipeline_call import parse_options

        qwen = QwenBackend(self.settings)
        options = parse_options(DecomposeRequest(
            layers=len(self.layers_low), options={"resolution": self.resolution}),
            qwen.settings)
        progress(Progress("running", 0.9, "denoising step 1/1", 1, 1))
        caption = CaptionResult("bench", "user", "user")
        return qwen._refine(image, self.layers_low, options, caption, {}, progress)


class _LoopThread:
    """The server's event loop in a thread of its own, as in a separate process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def time_handoff(backend: Backend, image: np.ndarray, request: DecomposeRequest,
                 folder: Path) -> dict[str, float]:
    """Run one job through runner, store and bridge; the seconds after the model is done."""
    stamps: dict[str, float] = {}

    def listener(record: JobSnapshot, owner: str | None) -> None:
        now = time.perf_counter()
        if record.state == "refining":
            stamps.setdefault("refining", now)
        elif record.state == "writing":
            stamps.setdefault("writing", now)
        elif record.state == "done":
            stamps["done"] = now

    runner = JobRunner(backend.settings, JobStore(folder), OneBackend(backend))
    runner.subscribe(listener)
    runner.start()
    side = _LoopThread()

    async def start() -> BridgeServer:
        server = BridgeServer(runner, ServerConfig(port=0), token=TOKEN)
        await server.start()
        return server

    server = side.call(start())

    async def client() -> LayerStack:
        async with BridgeClient(server.url, TOKEN) as bridge:
            stack = await bridge.run(image, backend=backend.name, layers=request.layers,
                                     seed=request.seed, options=dict(request.options))
            stamps["received"] = time.perf_counter()
            return stack

    try:
        stack = asyncio.run(client())
    finally:
        side.call(server.stop())
        side.close()
        runner._backends.clear()  # the backend is the caller's: the runner must not unload it
        runner.stop()
    if len(stack.layers) == 0:
        raise RuntimeError("the client received no layers")
    return {"announce_s": stamps["done"] - stamps["refining"],
            "store_s": stamps["done"] - stamps["writing"],
            "shown_s": stamps["received"] - stamps["refining"]}
