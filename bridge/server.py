"""The bridge server: authenticated WebSocket connections in front of one JobRunner.

One asyncio loop serves every connection; backends run in the runner's worker thread, so a
decomposition never blocks the socket. Each connection has one writer task fed by a queue,
which keeps a `result` message and its binary layer frames together and in order with the
progress events of other jobs.

Security (docs/protocol.md, "Security"): Host and Origin are checked before the upgrade
(HTTP 403), the first message must authenticate within `Limits.auth_timeout` seconds, and
until it does the connection may only send tiny messages.

Only the public API of `websockets` is used. Its one size limit (`max_size`) is set to the
largest message an authenticated client may send (a picture); the smaller limits (before
authentication, for JSON text) are checked here on each message received. The price: a
stranger's first message is refused (close 1009) only once it has arrived, so before that the
library may have buffered up to `Limits.max_message_bytes` for it, where a per-connection
limit refused it by its header (websockets has no public way to change `max_size` on an open
connection). Big layers go out as a fragmented message (`send` of an iterable): `fragments`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from layerlift.bridge import auth, protocol
from layerlift.bridge.limits import Limits
from layerlift.bridge.protocol import Message, ProtocolError
from layerlift.bridge.wire import CLOSE_INTERNAL, CLOSE_POLICY, CLOSE_TOO_BIG
from layerlift.inference import __version__
from layerlift.inference.backends.qwen.memory import ALL_MODE_CHOICES
from layerlift.inference.errors import BadRequest, LayerLiftError
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.job_states import JobState
from layerlift.inference.jobs import JobRunner, QueueFull
from layerlift.inference.settings import DEFAULT_PORT
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger(__name__)

# A client that stops reading gets progress events dropped (never results) past this backlog.
MAX_BACKLOG = 1000
# Distinct refused Origin values logged per server; past this, refusals are not logged again.
MAX_LOGGED_ORIGINS = 32
# A binary message bigger than this goes out as fragments of this size. `send` serialises each
# frame into a new bytes object, and asyncio buffers what the kernel does not take at once:
# for a 64 MiB layer in one frame both copies went through 64 MiB of cold memory (measured:
# 7% of a raw socket's throughput); 1 MiB fragments keep them in the CPU's cache. RFC 6455
# lets any message be fragmented; every client reassembles them.
FRAGMENT = 1024 * 1024
# Flow control (high, low water marks of the transport's buffer): a few fragments queued keep
# the socket busy while the loop serialises the next. Measured with the server in a process of
# its own, 512 MiB of layers: 260 ms of server CPU and the best throughput, against 330-400 ms
# for (64 KiB, 0), which pauses after every fragment.
WRITE_LIMIT = (4 * 1024 * 1024, 1024 * 1024)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    limits: Limits = field(default_factory=Limits)
    # Exact Origin values admitted besides any `uxp://` origin (see auth.origin_allowed).
    allowed_origins: tuple[str, ...] = ()


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "[::1]") or host.startswith("127.")


class BridgeServer:
    """`async with BridgeServer(runner, config) as server:` serves until the block ends."""

    def __init__(self, runner: JobRunner, config: ServerConfig | None = None,
                 token: str | None = None) -> None:
        self.runner = runner
        self.config = config or ServerConfig()
        self.token = token if token is not None else auth.load_or_create_token()
        self._server: Server | None = None
        self._connections: dict[str, _Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe = None
        self.port = self.config.port
        self._allowed_hosts: frozenset[str] = frozenset()
        self._logged_origins: set[str] = set()

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{self.port}"

    async def start(self) -> BridgeServer:
        self._loop = asyncio.get_running_loop()
        limits = self.config.limits
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            # The largest message anyone may send; each message is checked against the limit
            # for its connection's state (before authentication, text) when it arrives.
            max_size=limits.max_message_bytes,
            max_queue=4,
            compression=None,
            server_header=None,
            write_limit=WRITE_LIMIT,
        )
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        extra = [] if is_loopback(self.config.host) else [self.config.host]
        self._allowed_hosts = auth.allowed_hosts(self.port, extra)
        self._unsubscribe = self.runner.subscribe(self._on_job_event)
        return self

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> BridgeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handshake ---------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        reason = auth.refuse_reason(
            request.headers.get_all("Host"),
            request.headers.get_all("Origin"),
            self._allowed_hosts,
            self.config.allowed_origins,
        )
        if reason:
            self._log_refusal(reason, request.headers.get_all("Origin"))
            return connection.respond(http.HTTPStatus.FORBIDDEN, reason + "\n")
        if len(self._connections) >= self.config.limits.max_connections:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      "too many connections\n")
        return None

    def _log_refusal(self, reason: str, origins: list[str]) -> None:
        """Log what was refused; each Origin value once, so a user's log shows exactly what
        their Photoshop sent (docs/photoshop.md) without a retrying client flooding it."""
        if not origins:
            log.warning("refused a connection: %s", reason)
            return
        value = ", ".join(origins)
        if value in self._logged_origins or len(self._logged_origins) >= MAX_LOGGED_ORIGINS:
            return
        self._logged_origins.add(value)
        log.warning("refused a connection with Origin %r: %s (logged once per Origin value)",
                    value, reason)

    async def _handle(self, websocket: ServerConnection) -> None:
        conn = _Connection(self, websocket)
        self._connections[conn.id] = conn
        try:
            await conn.run()
        finally:
            self._connections.pop(conn.id, None)
            await conn.shutdown()

    # -- job events (called from any thread) -------------------------------------------------
    def _on_job_event(self, snapshot: JobSnapshot, owner: str | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._dispatch, snapshot, owner)

    def _dispatch(self, snapshot: JobSnapshot, owner: str | None) -> None:
        for conn in list(self._connections.values()):
            conn.on_job_event(snapshot, owner)

    def capabilities(self) -> dict[str, Any]:
        backends = self.runner.backends()
        return {
            # Each backend carries its option specs: clients build their controls from them.
            "backends": backends,
            "memory_modes": list(ALL_MODE_CHOICES),
            "memory_mode": self.runner.settings.memory_mode,
            "encodings": sorted(protocol.ENCODINGS),
            # Every option name any backend declares (kept for clients of protocol 1.0).
            "options": sorted({option["name"] for backend in backends
                               for option in backend.get("options", [])}),
            "max_layers": protocol.MAX_LAYERS,
            "limits": self.config.limits.as_dict(),
        }


class _Connection:
    """One client: authentication, its requests, and the ordered stream of what it is sent."""

    def __init__(self, server: BridgeServer, websocket: ServerConnection) -> None:
        self.server = server
        self.ws = websocket
        self.id = secrets.token_hex(6)
        self.limits = server.config.limits
        self.outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        # job id -> result encoding, for jobs whose progress and result this client gets.
        self.subscriptions: dict[str, int] = {}
        self.pending: Message | None = None
        self.writer: asyncio.Task[None] | None = None
        self.authenticated = False
        # Jobs submitted here with cancel_on_disconnect: cancelled when this connection ends.
        self.cancel_on_close: set[str] = set()

    # -- output ------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        self.outbox.put_nowait(("json", message))

    def send_result(self, job_id: str, encoding: int, request_id: str | None = None) -> None:
        self.outbox.put_nowait(("result", (job_id, encoding, request_id)))

    async def _write(self) -> None:
        try:
            while True:
                kind, item = await self.outbox.get()
                if kind == "json":
                    await self.ws.send(protocol.dumps(item))
                elif kind == "result":
                    await self._write_result(*item)
                elif kind == "close":
                    await self.ws.close(*item)
                    return
        except ConnectionClosed:
            pass
        except Exception:
            # A writer that died quietly would leave its client waiting for ever.
            log.exception("sending to a client failed")
            with contextlib.suppress(Exception):
                await self.ws.close(CLOSE_INTERNAL, "internal error")

    async def _write_result(self, job_id: str, encoding: int, request_id: str | None) -> None:
        runner = self.server.runner
        try:
            snapshot = runner.get(job_id)
            stack = await asyncio.to_thread(runner.read_result, job_id)
        except LayerLiftError as exc:
            await self.ws.send(protocol.dumps(protocol.error_message(
                exc, job_id=job_id, request_id=request_id)))
            return
        header = {
            "type": "result",
            "job_id": job_id,
            "job": snapshot.to_json(),
            "canvas": {"width": stack.width, "height": stack.height},
            "encoding": protocol.ENCODING_NAMES[encoding],
            "layers": [
                {"index": index, "name": layer.name, "x": layer.x, "y": layer.y,
                 "width": layer.width, "height": layer.height, "visible": layer.visible}
                for index, layer in enumerate(stack.layers)
            ],
        }
        if request_id is not None:
            header["request_id"] = request_id
        await self.ws.send(protocol.dumps(header))
        for index, layer in enumerate(stack.layers):
            if encoding == protocol.ENCODING_RGBA8:
                # Header and pixels go out as they are: no frame is built, nothing copied.
                parts = protocol.layer_frame_parts(job_id, index, layer)
            else:
                parts = [await asyncio.to_thread(protocol.layer_frame, job_id, index, layer,
                                                 encoding)]
            await self.ws.send(fragments(parts))
            del parts

    def on_job_event(self, snapshot: JobSnapshot, owner: str | None) -> None:
        # Owners are subscribed when their job is accepted; others by `fetch`.
        del owner
        job_id = snapshot.id
        if job_id not in self.subscriptions:
            return
        if not snapshot.terminal and self.outbox.qsize() > MAX_BACKLOG:
            return
        self.send({"type": "progress", "job": snapshot.to_json()})
        if snapshot.terminal:
            encoding = self.subscriptions.pop(job_id)
            if snapshot.state is JobState.DONE:
                self.send_result(job_id, encoding)

    # -- input -------------------------------------------------------------------------------
    async def run(self) -> None:
        self.writer = asyncio.create_task(self._write())
        try:
            if not await self._authenticate():
                return
            async for message in self.ws:
                await self._handle(message)
        except ConnectionClosed:
            pass  # oversize frames and protocol violations end here, with their close code

    async def shutdown(self) -> None:
        if self.cancel_on_close:
            await asyncio.to_thread(self._cancel_flagged_jobs)
        if self.writer is not None:
            self.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await self.writer

    def _cancel_flagged_jobs(self) -> None:
        """The connection is gone, whatever the reason: cancel what it asked us to."""
        runner = self.server.runner
        for job_id in sorted(self.cancel_on_close):
            try:
                if not runner.get(job_id).terminal:
                    runner.cancel(job_id)
                    log.info("cancelled job %s: its client disconnected", job_id)
            except LayerLiftError:  # removed by retention meanwhile: nothing to cancel
                pass
        self.cancel_on_close.clear()

    async def _close(self, code: int, reason: str) -> None:
        """Flush what is queued (the error message), then close."""
        self.outbox.put_nowait(("close", (code, reason)))
        if self.writer is not None:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await asyncio.wait_for(asyncio.shield(self.writer), 5.0)

    async def _authenticate(self) -> bool:
        paired = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.auth_timeout
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                self.send(protocol.error_message("auth_timeout", "no hello within "
                                                 f"{self.limits.auth_timeout:g} s"))
                await self._close(CLOSE_POLICY, "authentication timeout")
                return False
            except ConnectionClosed:
                return False
            if _over(raw, self.limits.max_preauth_bytes):
                # What websockets would do with a limit of its own: close, "message too big".
                await self._close(CLOSE_TOO_BIG, "message too big before authentication")
                return False
            try:
                if not isinstance(raw, str):
                    raise ProtocolError("the first message must be hello (JSON text)")
                message = protocol.parse_text(raw, self.limits.max_preauth_bytes)
            except LayerLiftError as exc:
                self.send(protocol.error_message("unauthorized", f"not authenticated: "
                                                 f"{exc.message}"))
                await self._close(CLOSE_POLICY, "not authenticated")
                return False
            if message.type == "pair" and not paired:
                paired = True
                token = await asyncio.to_thread(auth.redeem_pairing_code, message["code"])
                if token is None:
                    self.send(protocol.error_message(
                        "pairing_failed", "that pairing code is wrong or has expired"))
                    await self._close(CLOSE_POLICY, "pairing failed")
                    return False
                self.send({"type": "paired", "token": token})
                deadline = loop.time() + self.limits.auth_timeout
                continue
            if message.type != "hello":
                self.send(protocol.error_message("unauthorized", "the first message must be "
                                                 "hello with the token"))
                await self._close(CLOSE_POLICY, "not authenticated")
                return False
            if not auth.token_matches(self.server.token, message["token"]):
                self.send(protocol.error_message("unauthorized", "wrong token"))
                await self._close(CLOSE_POLICY, "wrong token")
                return False
            if message["protocol"] not in protocol.SUPPORTED_VERSIONS:
                self.send(protocol.error_message(
                    "unsupported_version",
                    f"protocol {message['protocol']} is not supported; this server speaks "
                    f"{list(protocol.SUPPORTED_VERSIONS)}"))
                await self._close(CLOSE_POLICY, "unsupported protocol version")
                return False
            self.authenticated = True
            capabilities = await asyncio.to_thread(self.server.capabilities)
            self.send({
                "type": "welcome",
                "protocol": protocol.PROTOCOL_VERSION,
                "server": {"name": "layerlift", "version": __version__},
                "capabilities": capabilities,
            })
            return True

    async def _handle(self, raw: str | bytes) -> None:
        request_id = None
        job_id = None
        try:
            if isinstance(raw, str):
                if self.pending is not None:
                    pending, self.pending = self.pending, None
                    raise ProtocolError(
                        f"expected the image of {pending['request_id']} as a binary message; "
                        "that decompose is dropped")
                request_id = protocol.request_id_of(raw, self.limits.max_text_bytes)
                message = protocol.parse_text(raw, self.limits.max_text_bytes)
                request_id = message.get("request_id")
                job_id = message.get("job_id")
                await self._on_message(message)
            else:
                pending, self.pending = self.pending, None
                if pending is None:
                    raise ProtocolError("unexpected binary message: send decompose first")
                request_id = pending["request_id"]
                await self._on_image(pending, raw)
        except LayerLiftError as exc:
            self.send(protocol.error_message(exc, request_id=request_id, job_id=job_id))
        except Exception as exc:  # a bug must cost one request, never the server
            log.exception("request failed")
            self.send(protocol.error_message("internal", f"internal error: {type(exc).__name__}",
                                             request_id=request_id, job_id=job_id))

    async def _on_message(self, message: Message) -> None:
        runner = self.server.runner
        reply: dict[str, Any]
        if message.type == "decompose":
            spec = message["image"]
            protocol.check_image_spec(spec, self.limits)
            # The backend's declared options, checked before the picture is uploaded.
            runner.option_schema(message["backend"]).validate(message["request"].options,
                                                              client=True)
            self._check_quota()
            self.pending = message
            # The client sends the picture only now, so a refused one is never uploaded.
            self.send({"type": "ready", "request_id": message["request_id"]})
            return
        if message.type == "ping":
            reply = {"type": "pong", "id": message.get("id")}
        elif message.type == "list_jobs":
            reply = {"type": "jobs", "jobs": [job.to_json() for job in runner.jobs()]}
        elif message.type == "cancel":
            reply = {"type": "job", "job": runner.cancel(message["job_id"]).to_json()}
        elif message.type == "fetch":
            job_id, encoding = message["job_id"], message["result_encoding"]
            snapshot = runner.get(job_id)
            if snapshot.state is JobState.DONE:
                self.send_result(job_id, encoding, message.get("request_id"))
                return
            if not snapshot.terminal:
                self.subscriptions[job_id] = encoding
            reply = {"type": "job", "job": snapshot.to_json()}
        else:  # hello or pair again
            raise ProtocolError(f"{message.type} is only valid as the first message")
        if message.get("request_id") is not None:
            reply["request_id"] = message.get("request_id")
        self.send(reply)

    def _check_quota(self) -> None:
        active = self.server.runner.active_count(owner=self.id)
        if active >= self.limits.max_jobs_per_client:
            raise QueueFull(f"this connection has {active} jobs queued or running; the limit "
                            f"is {self.limits.max_jobs_per_client}")

    async def _on_image(self, pending: Message, raw: bytes) -> None:
        spec = pending["image"]
        header, payload = protocol.parse_frame(raw)
        if header.kind != protocol.KIND_IMAGE or header.ident != pending["request_id"]:
            raise ProtocolError("the binary message is not the image of "
                                f"{pending['request_id']}")
        if (header.encoding, header.width, header.height, len(payload)) != (
                spec.encoding, spec.width, spec.height, spec.size):
            raise BadRequest("the image frame does not match the decompose message "
                             "(encoding, width, height or bytes differ)")
        pixels = await asyncio.to_thread(protocol.decode_pixels, header, payload, self.limits)
        del raw, payload
        self._check_quota()
        runner = self.server.runner
        backend = await asyncio.to_thread(runner.resolve_backend, pending["backend"])
        # Submit and queue `accepted` in one step of the loop: job events, which reach this
        # connection through call_soon_threadsafe, can only come after it.
        snapshot = runner.submit(pixels, pending["request"], backend, owner=self.id)
        self.subscriptions[snapshot.id] = pending["result_encoding"]
        if pending["cancel_on_disconnect"]:
            self.cancel_on_close.add(snapshot.id)
        self.send({"type": "accepted", "request_id": pending["request_id"],
                   "job": snapshot.to_json()})



def _over(message: str | bytes, limit: int) -> bool:
    """Whether a received message is over `limit` bytes (text counts as UTF-8, as it came)."""
    if len(message) > limit:
        return True
    return isinstance(message, str) and len(message.encode("utf-8")) > limit


def fragments(parts: Sequence[Any]) -> bytes | Iterator[memoryview]:
    """`parts` (C-contiguous buffers: header, pixels) as one binary message for `ws.send`.

    Small messages are joined into one frame; bigger ones become an iterator of FRAGMENT-sized
    views of the parts themselves (the header alone first), which websockets sends as one
    fragmented message, interleaving its control frames (pong, close) between fragments.
    """
    views = [memoryview(part).cast("B") for part in parts]
    if sum(view.nbytes for view in views) <= FRAGMENT:
        return b"".join(views)
    return (view[start: start + FRAGMENT] for view in views
            for start in range(0, view.nbytes, FRAGMENT))
