"""The LayerLift bridge protocol (docs/protocol.md) for the GIMP plug-in, standard library only.

This is the plug-in's whole conversation with the app: authenticate with the token from the
app's config folder, send the picture as one raw RGBA8 binary message, relay progress, and
collect the result layers. Every failure becomes a BridgeError whose message a GIMP user can
act on (start the app, pair again, pick a smaller selection), never a traceback.

The messages and the LLF1 header come from `ll_wire`, the job states from `ll_job_states`:
LayerLift's own `bridge/wire.py` and `inference/job_states.py`, copied in unchanged by
`layerlift install-gimp-plugin`, so the plug-in and the app cannot disagree about them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ll_paths
import ll_websocket
import ll_wire
from ll_job_states import UNSUCCESSFUL, JobState

START_HINT = "Start the LayerLift app (or run `layerlift serve` in a terminal), then try again."
# A failure with a stable code (from the server or ours) and a sentence for the user.
BridgeError = ll_wire.BridgeError


@dataclass
class ResultLayer:
    name: str
    x: int
    y: int
    width: int
    height: int
    visible: bool = True
    pixels: bytes = b""


@dataclass
class Result:
    job_id: str
    width: int
    height: int
    layers: list[ResultLayer] = field(default_factory=list)
    job: dict = field(default_factory=dict)


ProgressSink = Callable[[float, str], None]


def read_token() -> str:
    path = ll_paths.token_path()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise BridgeError("no_token", f"LayerLift has not been set up on this computer yet "
                                      f"(no token at {path}). {START_HINT}") from None
    except OSError as exc:
        raise BridgeError("no_token", f"Cannot read the LayerLift token at {path}: "
                                      f"{exc.strerror}") from None
    if not token:
        raise BridgeError("no_token", f"The LayerLift token file {path} is empty. {START_HINT}")
    return token


def read_port() -> int:
    """The port from the app's settings (what the server listens on), else the default."""
    env = os.environ.get("LAYERLIFT_PORT")
    if env and env.isdigit():
        return int(env)
    try:
        settings = json.loads(ll_paths.settings_path().read_text(encoding="utf-8"))
        port = settings.get("port")
        if isinstance(port, int) and 0 < port < 65536:
            return port
    except (OSError, ValueError, AttributeError):
        pass
    return ll_wire.DEFAULT_PORT


STAGE_LABELS = {JobState.LOADING: "Loading the model", JobState.RUNNING: "Decomposing",
                JobState.REFINING: "Refining layers", JobState.WRITING: "Saving the result",
                JobState.DONE: "Done"}


def _stage_text(job: dict) -> str:
    state = str(job.get("state", ""))
    progress = job.get("progress") or {}
    if state == JobState.QUEUED:
        position = job.get("position")
        return f"Waiting in the queue (position {position})" if position else "Queued"
    step, total = progress.get("step"), progress.get("total")
    label = STAGE_LABELS.get(state, state.capitalize())
    if step is not None and total:
        return f"{label} ({step}/{total})"
    message = progress.get("message")
    return f"{label}: {message}" if message else label


class BridgeSession:
    """One authenticated connection to the LayerLift server."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None,
                 token: str | None = None, connect_timeout: float = 5.0,
                 idle_timeout: float = 900.0) -> None:
        self.host = host
        self.port = port or read_port()
        self.token = token
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.ws: ll_websocket.WebSocket | None = None
        self.capabilities: dict = {}

    # -- connection ------------------------------------------------------------------------
    def open(self) -> BridgeSession:
        token = self.token or read_token()
        try:
            self.ws = ll_websocket.connect(self.host, self.port, timeout=self.connect_timeout)
        except ConnectionRefusedError:
            raise BridgeError("not_running", f"The LayerLift server is not running on port "
                                             f"{self.port}. {START_HINT}") from None
        except TimeoutError:
            raise BridgeError("timeout", f"The LayerLift server on port {self.port} did not "
                                         "answer in time.") from None
        except ll_websocket.HandshakeFailed as exc:
            raise BridgeError("refused", f"The server on port {self.port} refused the "
                                         f"connection ({exc.status}). Is it LayerLift?") from None
        except (OSError, ll_websocket.WebSocketError) as exc:
            raise BridgeError("connection_failed", f"Cannot reach LayerLift on port "
                                                   f"{self.port}: {exc}") from None
        self.ws.sock.settimeout(60.0)
        self._send(ll_wire.hello(token, "gimp"))
        welcome = self._recv_json(timeout=self.connect_timeout + 10)
        if welcome.get("type") != "welcome":
            raise BridgeError("protocol_error", f"unexpected answer to hello: {welcome}")
        self.capabilities = welcome.get("capabilities") or {}
        return self

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def __enter__(self) -> BridgeSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- messages --------------------------------------------------------------------------
    def _send(self, message: dict) -> None:
        assert self.ws is not None
        try:
            self.ws.send_text(ll_wire.dumps(message))
        except ll_websocket.WebSocketError as exc:
            raise BridgeError("connection_lost", f"The connection to LayerLift was lost: "
                                                 f"{exc}") from None

    def _wait(self, timeout: float) -> bool:
        assert self.ws is not None
        try:
            return self.ws.wait_readable(timeout)
        except ll_websocket.WebSocketError as exc:
            raise BridgeError("connection_lost", f"The connection to LayerLift was lost: "
                                                 f"{exc}") from None

    def _recv(self, timeout: float, spare: bytearray | None = None) -> str | bytearray:
        assert self.ws is not None
        try:
            if not self.ws.wait_readable(timeout):
                raise BridgeError("timeout", f"LayerLift sent nothing for {timeout:.0f} s.")
            return self.ws.recv(spare)
        except ll_websocket.ConnectionClosed as exc:
            why = f": {exc.reason}" if exc.reason else ""
            raise BridgeError("connection_lost", f"LayerLift closed the connection{why}.") from None
        except (OSError, ll_websocket.WebSocketError) as exc:
            raise BridgeError("connection_lost", f"The connection to LayerLift was lost: "
                                                 f"{exc}") from None

    def _recv_json(self, timeout: float) -> dict:
        raw = self._recv(timeout)
        if not isinstance(raw, str):
            raise BridgeError("protocol_error", "expected a control message, got pixels")
        message = json.loads(raw)
        if message.get("type") == "error":
            raise _server_error(message)
        return message

    # -- decompose -------------------------------------------------------------------------
    def decompose(self, pixels: bytes, width: int, height: int, *, layers: int | None = 4,
                  backend: str = "auto", seed: int = 0, options: dict | None = None,
                  progress: ProgressSink | None = None, poll: Callable[[], None] | None = None
                  ) -> Result:
        """Send one picture and wait for its layers. `poll` runs ~10 times a second."""
        if len(pixels) != width * height * 4:
            raise ValueError("pixels must be raw RGBA8 rows")
        request_id = "gimp" + os.urandom(6).hex()
        # GIMP's Cancel ends this process without a word to the server: let the dropped
        # connection itself cancel the job, so the GPU is not kept busy for nobody.
        self._send(ll_wire.decompose(request_id, width=width, height=height, size=len(pixels),
                                     backend=backend, layers=layers, seed=seed, options=options,
                                     cancel_on_disconnect=True))
        # The server checks the announced size first and says `ready` (or refuses without
        # costing a 100 MB upload); only then do the pixels go.
        ready = self._recv_json(timeout=60)
        if ready.get("type") != "ready" or ready.get("request_id") != request_id:
            raise BridgeError("protocol_error", f"expected ready, got {ready.get('type')}")
        assert self.ws is not None
        try:
            self.ws.send_binary(ll_wire.image_header(request_id, width, height) + pixels)
        except ll_websocket.WebSocketError as exc:
            raise BridgeError("connection_lost", f"Sending the picture failed: {exc}") from None
        job_id = None
        last_event = time.monotonic()
        while True:
            if poll is not None:
                poll()
            if not self._wait(0.1):
                if time.monotonic() - last_event > self.idle_timeout:
                    raise BridgeError("timeout", "LayerLift stopped reporting progress.")
                continue
            last_event = time.monotonic()
            message = self._recv_json(timeout=60)
            kind = message.get("type")
            job = message.get("job") or {}
            if kind == "accepted":
                job_id = job.get("id")
            elif kind == "progress" and job.get("id") == job_id:
                state = job.get("state")
                if state in UNSUCCESSFUL:
                    error = job.get("error") or {}
                    raise BridgeError(error.get("code", state),
                                      error.get("message", f"the job was {state}"))
                if progress is not None:
                    fraction = float((job.get("progress") or {}).get("fraction") or 0.0)
                    progress(fraction, _stage_text(job))
            elif kind == "result" and message.get("job_id") == job_id:
                return self._read_result(message)

    def _read_result(self, message: dict) -> Result:
        canvas = message.get("canvas") or {}
        result = Result(message["job_id"], int(canvas.get("width", 0)),
                        int(canvas.get("height", 0)), job=message.get("job") or {})
        spare: bytearray | None = None  # the last layer's message, once its pixels are copied
        for entry in message.get("layers", []):
            raw = self._recv(timeout=120, spare=spare)
            if isinstance(raw, str):
                raise BridgeError("protocol_error", "expected a layer's pixels")
            try:
                header = ll_wire.unpack_header(raw)
            except ll_wire.WireError as exc:
                raise BridgeError("protocol_error", f"a layer frame is broken: {exc}") from None
            if header.kind != ll_wire.KIND_LAYER or header.encoding != ll_wire.ENCODING_RGBA8:
                raise BridgeError("protocol_error", "a layer frame has a bad header")
            width, height = header.width, header.height
            if header.index != entry["index"] or (width, height) != (entry["width"],
                                                                    entry["height"]):
                raise BridgeError("protocol_error", "a layer frame does not match the result")
            if len(raw) - ll_wire.HEADER_SIZE != header.raw_size:
                raise BridgeError("protocol_error", "a layer frame has the wrong size")
            result.layers.append(ResultLayer(
                name=entry["name"], x=int(entry["x"]), y=int(entry["y"]), width=width,
                height=height, visible=bool(entry.get("visible", True)),
                pixels=_pixels(raw)))
            spare = raw  # the next layer may be received into it
        return result

    def cancel(self, job_id: str) -> None:
        self._send({"type": "cancel", "job_id": job_id})


def _pixels(message: bytearray) -> bytes:
    """A layer message's pixels (past its LLF1 header) as `bytes`, in one copy.

    `bytes` because GIMP needs them: PyGObject copies a `bytes` argument of Gegl.Buffer.set
    with one memcpy, but walks any other buffer (bytearray, memoryview) item by item as a
    Python sequence (measured in GIMP 3.0's Python, setting and reading back 4 MiB: 0.04 s
    with bytes, 0.4-0.56 s with a bytearray or a memoryview).
    """
    with memoryview(message) as view:
        return bytes(view[ll_wire.HEADER_SIZE:])


def _server_error(message: dict) -> BridgeError:
    code = message.get("code", "error")
    text = message.get("message", "the server reported an error")
    if code == "unauthorized":
        text = ("LayerLift refused the plug-in's token (" + text + "). The token file may be "
                "from another installation: restart the LayerLift app and try again.")
    return BridgeError(code, text)
