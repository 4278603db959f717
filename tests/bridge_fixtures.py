"""Real, small backends and a running server for the job-runner and bridge tests.

`SplitBackend` is a genuine (if simple) decomposer: a background plus the picture's top-left
quarter as a second layer, which recomposites exactly. `GatedBackend` blocks inside
`decompose` until the test releases it, polling its cancel token, so cancel tests wait on
events instead of sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from layerlift.bridge.limits import Limits
from layerlift.bridge.server import BridgeServer, ServerConfig
from layerlift.inference.backends.base import (
    Backend,
    CancelToken,
    DecomposeRequest,
    Progress,
    ProgressCallback,
    ignore_progress,
)
from layerlift.inference.errors import BadRequest
from layerlift.inference.jobs import BackendProvider, JobRunner
from layerlift.inference.layers import LayerStack
from layerlift.inference.settings import Settings


def _have_classic() -> bool:
    try:
        module = importlib.import_module("layerlift.inference.backends.classic")
    except ImportError:
        return False
    return hasattr(module, "ClassicBackend")


HAVE_CLASSIC = _have_classic()
TOKEN = "test-token-0123456789"


class SplitBackend(Backend):
    name = "split"
    label = "Split (test)"

    def decompose(self, image: np.ndarray, request: DecomposeRequest,
                  progress: ProgressCallback = ignore_progress,
                  cancel: CancelToken | None = None) -> LayerStack:
        cancel = cancel or CancelToken()
        height, width = image.shape[:2]
        top = np.zeros_like(image)
        top[: max(1, height // 2), : max(1, width // 2)] = image[: max(1, height // 2),
                                                               : max(1, width // 2)]
        steps = 3
        for step in range(1, steps + 1):
            cancel.raise_if_cancelled()
            progress(Progress("running", step / (steps + 1), "splitting", step, steps))
        progress(Progress("refining", 0.95, "checking"))
        stack = LayerStack.from_canvases([image.copy(), top], ["background", "quarter"],
                                         backend=self.name, psnr=float("inf"))
        return stack


class GatedBackend(SplitBackend):
    """Blocks until `release` is set (or its job is cancelled)."""

    name = "gated"
    started = threading.Event()
    release = threading.Event()

    @classmethod
    def reset(cls) -> None:
        cls.started = threading.Event()
        cls.release = threading.Event()

    def decompose(self, image, request, progress=ignore_progress, cancel=None):
        cancel = cancel or CancelToken()
        progress(Progress("loading", 0.0, "pretend to load a model"))
        type(self).started.set()
        while not type(self).release.wait(0.01):
            cancel.raise_if_cancelled()
        return super().decompose(image, request, progress, cancel)


class FailingBackend(SplitBackend):
    name = "failing"

    def decompose(self, image, request, progress=ignore_progress, cancel=None):
        raise BadRequest("this backend refuses every picture")


class DictProvider(BackendProvider):
    """Backends by name without the global registry; `auto` is the first one."""

    def __init__(self, backends: dict[str, Callable[[Settings], Backend]]) -> None:
        self.factories = backends

    def names(self) -> list[str]:
        return list(self.factories)

    def backend_type(self, name: str) -> type[Backend]:
        if name not in self.factories:
            raise BadRequest(f"unknown backend {name!r}")
        factory = self.factories[name]
        return factory if isinstance(factory, type) else Backend

    def describe(self, settings: Settings) -> list[dict[str, Any]]:
        return [{"name": name, "label": name, "available": True, "reason": "",
                 "options": self.backend_type(name).options.to_json(settings)}
                for name in self.factories]

    def resolve(self, name: str, settings: Settings) -> str:
        if name == "auto":
            return next(iter(self.factories))
        if name not in self.factories:
            raise BadRequest(f"unknown backend {name!r}")
        return name

    def create(self, name: str, settings: Settings) -> Backend:
        return self.factories[name](settings)


def split_provider() -> DictProvider:
    return DictProvider({"split": SplitBackend, "gated": GatedBackend,
                         "failing": FailingBackend})


def real_provider() -> BackendProvider:
    """The registry (classic) when the classic backend exists, else the split test backend."""
    if HAVE_CLASSIC:
        return BackendProvider()
    return split_provider()


REAL_BACKEND = "classic" if HAVE_CLASSIC else "split"


def picture(width: int = 48, height: int = 32, seed: int = 0) -> np.ndarray:
    """A small flat design: background, a rectangle and a disc."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 4), np.uint8)
    image[...] = (*rng.integers(0, 255, 3), 255)
    image[height // 4: height // 2, width // 5: width // 2] = (*rng.integers(0, 255, 3), 255)
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - height * 0.6) ** 2 + (xx - width * 0.65) ** 2 < (min(width, height) / 5) ** 2
    image[disc] = (*rng.integers(0, 255, 3), 255)
    return image


async def handshake_status(port: int, headers: list[tuple[str, str]], upgrade: bool = True) -> int:
    """Send a hand-written upgrade request (exact headers, no library defaults) to a server
    on 127.0.0.1:`port`; the HTTP status it answers (101 when it accepts). With
    `upgrade=False`, a plain GET with just `headers`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    websocket = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"] if upgrade else []
    lines = ["GET / HTTP/1.1", *(f"{name}: {value}" for name, value in headers),
             *websocket, "", ""]
    writer.write("\r\n".join(lines).encode())
    await writer.drain()
    status = await reader.readline()
    writer.close()
    return int(status.split()[1])


@contextlib.asynccontextmanager
async def running_server(provider: BackendProvider | None = None, limits: Limits | None = None,
                         settings: Settings | None = None,
                         runner: JobRunner | None = None) -> AsyncIterator[BridgeServer]:
    """A real server on a free loopback port, with its runner started, torn down after."""
    runner = runner or JobRunner(settings=settings, provider=provider or split_provider())
    runner.start()
    config = ServerConfig(host="127.0.0.1", port=0, limits=limits or Limits())
    server = BridgeServer(runner, config, token=TOKEN)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await asyncio.to_thread(runner.stop, 10.0)


class ServerThread:
    """A real server on its own event loop in a thread, for sync callers (hypothesis, CLI)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self.server: BridgeServer | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="bridge-test-server",
                                        daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                async with running_server(**self.kwargs) as server:
                    self.server = server
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                self._error = exc
                self._ready.set()

        self.loop.run_until_complete(serve())
        self.loop.close()

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the test server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
