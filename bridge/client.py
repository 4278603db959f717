"""An asyncio client of the bridge protocol, and `decompose_remote` for `layerlift --remote`.

One reader task owns the socket's input. Direct answers (they carry the `request_id` the
client sent) resolve the matching future; pushed events (`progress`, `result` of a job this
connection is subscribed to) go to a queue per job, so several jobs can be in flight on one
connection. A `result` is always followed by its layer frames, which the reader collects into a
`LayerStack` before handing the result on. The socket is `bridge.wsclient`, which reads each
layer frame straight into its own buffer: layer pixels are views of that buffer, with no copy
after the kernel's (that is what lets a 512 MiB result arrive at socket speed). The messages
themselves are built by `bridge.wire`, as the GIMP plug-in builds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from typing import Any

import numpy as np
from layerlift.bridge import auth, protocol, wire
from layerlift.bridge.wire import ConnectionClosed, HandshakeFailed
from layerlift.bridge.wsclient import WebSocketClient, connect
from layerlift.inference.backends.base import DecomposeRequest, Progress, ProgressCallback
from layerlift.inference.errors import (
    BackendUnavailable,
    BadRequest,
    Cancelled,
    CorruptImage,
    ImageTooLarge,
    InputError,
    LayerLiftError,
    ModelFilesMissing,
    OutOfMemory,
    UnsupportedFormat,
)
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.job_states import UNSUCCESSFUL
from layerlift.inference.layers import Layer, LayerStack

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE = 2 * 1024**3  # what we accept from a server: one 16k x 16k layer and more

_LOCAL_ERRORS: dict[str, type[LayerLiftError]] = {
    cls.code: cls
    for cls in (InputError, UnsupportedFormat, CorruptImage, ImageTooLarge, BadRequest,
                BackendUnavailable, ModelFilesMissing, OutOfMemory, Cancelled)
}


class BridgeError(wire.BridgeError, LayerLiftError):
    """`wire.BridgeError` (its code and message) that is also a `LayerLiftError`, the one
    base the app's error handling catches, so a remote failure reads like a local one."""


class ServerNotRunning(BackendUnavailable):
    code = "server_unavailable"


class Unauthorized(BridgeError):
    def __init__(self, message: str, code: str = "unauthorized") -> None:
        super().__init__(code, message)


def remote_error(message: dict[str, Any]) -> LayerLiftError:
    """The local exception for an `error` message (InputError for bad pictures, etc.)."""
    code = str(message.get("code", "internal"))
    text = str(message.get("message", code))
    if code in ("unauthorized", "pairing_failed", "auth_timeout"):
        return Unauthorized(text, code)
    cls = _LOCAL_ERRORS.get(code)
    if cls is Cancelled:
        return Cancelled(text)
    return cls(text) if cls is not None else BridgeError(code, text)


def default_url() -> str:
    from layerlift.inference.settings import Settings

    settings = Settings.load()
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"ws://{host}:{settings.port}"


def _error_of(job: JobSnapshot) -> dict[str, str]:
    """The error a failed or cancelled job carries, in the shape `remote_error` reads."""
    if job.error is not None:
        return job.error.to_json()
    return {"code": str(job.state), "message": str(job.state)}


def progress_from_job(job: JobSnapshot) -> Progress:
    return Progress(
        stage=str(job.state),
        fraction=job.progress.fraction,
        message=job.progress.message,
        step=job.progress.step,
        total=job.progress.total,
    )


class BridgeClient:
    """`async with BridgeClient(url, token) as client: stack = await client.run(image)`."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 client_name: str = "layerlift-python", open_timeout: float = 10.0,
                 max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.url = url or default_url()
        self.token = token
        self.client_name = client_name
        self.open_timeout = open_timeout
        self.max_size = max_size
        self.ws: WebSocketClient | None = None
        self.welcome: dict[str, Any] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._jobs: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self.unsolicited: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed: asyncio.Future[None] | None = None

    # -- connection --------------------------------------------------------------------------
    async def connect(self) -> dict[str, Any]:
        """Open, authenticate, and return the server's `welcome` (capabilities inside)."""
        if self.token is None:
            self.token = auth.read_token()
            if self.token is None:
                raise ServerNotRunning(f"no token at {auth.token_path()}: start the server "
                                       "once with `layerlift serve`")
        try:
            self.ws = await connect(self.url, open_timeout=self.open_timeout,
                                    max_size=self.max_size)
        except HandshakeFailed as exc:
            if exc.status is None:
                raise ServerNotRunning(f"no LayerLift server at {self.url} ({exc})") from None
            raise Unauthorized(f"the server at {self.url} refused the connection "
                               f"(HTTP {exc.status})", "forbidden") from None
        except ValueError as exc:
            raise BadRequest(f"not a WebSocket URL: {self.url} ({exc})") from None
        except (OSError, TimeoutError) as exc:
            raise ServerNotRunning(f"no LayerLift server at {self.url} ({exc}); start one "
                                   "with `layerlift serve`") from None
        await self.ws.send(wire.dumps(wire.hello(self.token, self.client_name)))
        try:
            first = await asyncio.wait_for(self.ws.recv(), self.open_timeout)
        except ConnectionClosed as exc:
            raise Unauthorized(f"the server closed the connection: {exc}") from None
        message = protocol.parse_json_object(first)
        if message.get("type") == "error":
            await self.ws.close()
            raise remote_error(message)
        if message.get("type") != "welcome":
            await self.ws.close()
            raise BridgeError("protocol_error", f"expected welcome, got {message.get('type')}")
        self.welcome = message
        self.closed = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())
        return message

    @property
    def capabilities(self) -> dict[str, Any]:
        return self.welcome.get("capabilities", {})

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def __aenter__(self) -> BridgeClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- reading -----------------------------------------------------------------------------
    async def _read(self) -> None:
        assert self.ws is not None
        error: BaseException = ConnectionError("the connection to the server closed")
        try:
            async for raw in self.ws:
                if not isinstance(raw, str):
                    log.warning("ignoring a binary message outside a result")
                    continue
                message = protocol.parse_json_object(raw)
                if message.get("type") == "result":
                    message["stack"] = await self._read_layers(message)
                self._route(message)
        except ConnectionClosed as exc:
            error = ConnectionError(f"the connection to the server closed: {exc}")
        except Exception as exc:
            error = exc
            log.exception("client reader failed")
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            for queue in self._jobs.values():
                queue.put_nowait({"type": "closed", "error": error})
            if self.closed is not None and not self.closed.done():
                self.closed.set_result(None)

    async def _read_layers(self, message: dict[str, Any]) -> LayerStack:
        assert self.ws is not None
        job_id = message["job_id"]
        layers = []
        for info in message["layers"]:
            raw = await self.ws.recv()
            if isinstance(raw, str):
                raise BridgeError("protocol_error", "expected a layer frame, got text")
            header, payload = protocol.parse_frame(raw)
            if (header.kind, header.ident, header.index) != (
                    protocol.KIND_LAYER, job_id, info["index"]):
                raise BridgeError("protocol_error", "layer frames arrived out of order")
            pixels = protocol.decode_pixels(header, payload, copy=False)
            layers.append(Layer(info["name"], pixels, info["x"], info["y"],
                                bool(info.get("visible", True))))
        canvas = message["canvas"]
        job = JobSnapshot.from_json(message["job"])
        meta: dict[str, Any] = {"backend": job.backend}
        if job.result is not None:
            meta.update(job.result.details, note=job.result.note, psnr=job.result.quality.psnr,
                        psnr_before=job.result.quality_before.psnr)
        return LayerStack(int(canvas["width"]), int(canvas["height"]), layers, meta)

    def _route(self, message: dict[str, Any]) -> None:
        request_id = message.get("request_id")
        future = self._pending.pop(request_id, None) if request_id is not None else None
        if future is not None:
            if not future.done():
                future.set_result(message)
            return
        job_id = message.get("job_id") or (message.get("job") or {}).get("id")
        if job_id is not None:
            self._queue(job_id).put_nowait(message)
        else:
            self.unsolicited.put_nowait(message)

    def _queue(self, job_id: str) -> asyncio.Queue[dict[str, Any]]:
        if job_id not in self._jobs:
            self._jobs[job_id] = asyncio.Queue()
        return self._jobs[job_id]

    # -- requests ----------------------------------------------------------------------------
    def _new_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def request(self, message: dict[str, Any], *extra: bytes | bytearray,
                      timeout: float | None = 30.0, raw: bool = False) -> dict[str, Any]:
        """Send `message` (plus binary messages) and wait for its direct answer.

        With `raw`, only the binary messages are sent and the answer is awaited under
        `message["request_id"]` (the image upload after `ready`).
        """
        if self.ws is None:
            raise BridgeError("not_connected", "connect() first")
        request_id = message.setdefault("request_id", self._new_id())
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            if not raw:
                await self.ws.send(wire.dumps(message))
            for frame in extra:
                await self.ws.send(frame)
            answer = await asyncio.wait_for(future, timeout)
        except ConnectionClosed as exc:
            raise ServerNotRunning(f"the server closed the connection: {exc}") from None
        finally:
            self._pending.pop(request_id, None)
        if answer.get("type") == "error":
            raise remote_error(answer)
        return answer

    async def submit(self, image: np.ndarray | bytes, *, layers: int | None = None,
                     seed: int = 0, options: dict[str, Any] | None = None,
                     backend: str = "auto", result_encoding: str = "rgba8",
                     cancel_on_disconnect: bool = False) -> JobSnapshot:
        """Send a decompose (raw RGBA8 array or PNG bytes); returns the accepted job.

        With `cancel_on_disconnect` the server cancels the job if this connection ends
        before the job does (otherwise it runs on and can be fetched later).
        """
        request_id = self._new_id()
        if isinstance(image, (bytes, bytearray)):
            frame = protocol.image_frame(request_id, png=bytes(image))
            header, payload = protocol.parse_frame(frame)
            width, height, size, encoding = header.width, header.height, len(payload), "png"
        else:
            pixels = np.ascontiguousarray(image, np.uint8)
            if pixels.ndim != 3 or pixels.shape[2] != 4:
                raise BadRequest(f"the image must be (h, w, 4) uint8, got {pixels.shape}")
            frame = protocol.image_frame(request_id, pixels=pixels)
            height, width, size, encoding = pixels.shape[0], pixels.shape[1], pixels.size, "rgba8"
        message = wire.decompose(request_id, width=width, height=height, size=size,
                                 encoding=encoding, backend=backend, layers=layers, seed=seed,
                                 options=options, result_encoding=result_encoding,
                                 cancel_on_disconnect=cancel_on_disconnect)
        await self.request(message)  # "ready": the server will take the picture
        answer = await self.request({"request_id": request_id}, frame, raw=True)
        job = JobSnapshot.from_json(answer["job"])
        self._queue(job.id)
        return job

    async def wait(self, job_id: str, progress: ProgressCallback | None = None,
                   timeout: float | None = None) -> LayerStack:
        """Wait for a subscribed job's result; raises Cancelled or the job's error."""
        queue = self._queue(job_id)

        async def next_message() -> dict[str, Any]:
            return await queue.get()

        while True:
            message = await asyncio.wait_for(next_message(), timeout)
            kind = message.get("type")
            if kind == "closed":
                raise ServerNotRunning(str(message["error"]))
            if kind == "result":
                self._jobs.pop(job_id, None)
                return message["stack"]
            if kind == "error":
                raise remote_error(message)
            if not isinstance(message.get("job"), dict):
                continue
            job = JobSnapshot.from_json(message["job"])
            if progress is not None:
                progress(progress_from_job(job))
            if job.state in UNSUCCESSFUL:
                self._jobs.pop(job_id, None)
                raise remote_error(_error_of(job))

    async def run(self, image: np.ndarray | bytes, *,
                  progress: ProgressCallback | None = None, **params: Any) -> LayerStack:
        """Submit and wait; cancels the remote job if this coroutine is cancelled."""
        job = await self.submit(image, **params)
        try:
            return await self.wait(job.id, progress)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.cancel(job.id), 2.0)
            raise

    async def cancel(self, job_id: str) -> JobSnapshot:
        return JobSnapshot.from_json((await self.request({"type": "cancel",
                                                          "job_id": job_id}))["job"])

    async def list_jobs(self) -> list[JobSnapshot]:
        return [JobSnapshot.from_json(job)
                for job in (await self.request({"type": "list_jobs"}))["jobs"]]

    async def fetch(self, job_id: str, progress: ProgressCallback | None = None,
                    result_encoding: str = "rgba8", timeout: float | None = None) -> LayerStack:
        """A finished job's result, or wait for it if it is still queued or running."""
        answer = await self.request({"type": "fetch", "job_id": job_id,
                                     "result_encoding": result_encoding})
        if answer.get("type") == "result":
            return answer["stack"]
        job = JobSnapshot.from_json(answer["job"])
        if job.state in UNSUCCESSFUL:
            raise remote_error(_error_of(job))
        return await self.wait(job_id, progress, timeout)

    async def ping(self) -> dict[str, Any]:
        return await self.request({"type": "ping"})


def decompose_remote(
    image: np.ndarray,
    request: DecomposeRequest,
    backend: str,
    *,
    url: str | None = None,
    token: str | None = None,
    progress: ProgressCallback | None = None,
) -> LayerStack:
    """Run one decomposition on a running `layerlift serve` and wait for the stack.

    Raises ServerNotRunning (a BackendUnavailable) when nothing listens, Unauthorized when the
    token is refused, and the server's errors as the matching local classes (InputError,
    BadRequest...). Ctrl-C cancels the job on the server.
    """

    async def main() -> LayerStack:
        async with BridgeClient(url, token, client_name="layerlift-cli") as client:
            return await client.run(image, layers=request.layers, seed=request.seed,
                                    options=dict(request.options), backend=backend,
                                    progress=progress)

    return asyncio.run(main())

