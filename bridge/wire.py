"""The bytes of the LayerLift bridge, with no I/O: one definition for every Python peer.

The server (through `bridge.protocol`), the Python client (`bridge.client`, `bridge.wsclient`)
and the GIMP plug-in build and parse their messages here, following the split of the
`websockets` library: this module turns values into bytes and bytes into values (sans-I/O),
each peer owns its sockets. It is standard library only and imports nothing of LayerLift,
because GIMP's Python has nothing else: `layerlift install-gimp-plugin` copies this very file
into the plug-in as `ll_wire.py` (see `layerlift.desktop.plugin_sources`).

Three parts, each described in docs/protocol.md:

- LLF1 binary messages: the 32-byte header in front of every picture and layer;
- the JSON control messages a client sends (`hello`, `decompose`, ...);
- the client side of RFC 6455 (opening handshake, frame headers, masking, fragmentation,
  close codes). The server speaks WebSocket through the `websockets` library, whose framing
  is independent of this one: the tests pit each against the other.

The Photoshop panel has the one other definition of the LLF1 header, in JavaScript
(photoshop_plugin/src/protocol.js); its tests run against this server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1
# The loopback port the server listens on unless the settings say otherwise. The Photoshop
# panel keeps the one other copy (photoshop_plugin/src/protocol.js; a test compares them),
# because its manifest must name the port before any code runs.
DEFAULT_PORT = 47811

Buffer = bytes | bytearray | memoryview


class WireError(ValueError):
    """Bytes or values that do not follow docs/protocol.md."""


class BridgeError(Exception):
    """A failure a client of the bridge reports: the server's `error` message, or its own
    (the server is unreachable, a frame came out of order).

    `code` is the stable code of docs/protocol.md (or the client's own, like
    `protocol_error`), `message` a sentence for the user. Both Python clients raise this one
    class: the app's (`bridge.client`) and the GIMP plug-in's (`ll_bridge`).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- LLF1 binary messages ---------------------------------------------------------------------
MAGIC = b"LLF1"
# magic, kind, encoding, layer index, id (NUL-padded ASCII), width, height; little-endian.
HEADER = struct.Struct("<4sBBH16sII")
HEADER_SIZE = HEADER.size  # 32

KIND_IMAGE = 1  # client -> server: the picture of a `decompose`
KIND_LAYER = 2  # server -> client: one layer of a `result`
KINDS = (KIND_IMAGE, KIND_LAYER)

ENCODING_RGBA8 = 0
ENCODING_PNG = 1
ENCODINGS = {"rgba8": ENCODING_RGBA8, "png": ENCODING_PNG}
ENCODING_NAMES = {value: name for name, value in ENCODINGS.items()}

# Request ids and job ids (a job id is 16 lowercase hex digits, which this also matches).
IDENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,16}$")


@dataclass(frozen=True)
class FrameHeader:
    """The header of one binary message."""

    kind: int
    encoding: int
    index: int
    ident: str
    width: int
    height: int

    def pack(self) -> bytes:
        if not IDENT_RE.fullmatch(self.ident):
            raise WireError(f"not a request or job id: {self.ident[:40]!r}")
        return HEADER.pack(MAGIC, self.kind, self.encoding, self.index,
                           self.ident.encode("ascii"), self.width, self.height)

    @property
    def raw_size(self) -> int:
        """Payload bytes of this picture as raw RGBA8 rows."""
        return self.width * self.height * 4


def unpack_header(data: Buffer) -> FrameHeader:
    """The header at the start of a binary message; WireError if there is none."""
    if len(data) < HEADER_SIZE:
        raise WireError(f"binary message of {len(data)} bytes is shorter than the header")
    magic, kind, encoding, index, ident, width, height = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise WireError("binary message does not start with the LLF1 magic")
    if kind not in KINDS:
        raise WireError(f"unknown binary frame kind {kind}")
    if encoding not in ENCODING_NAMES:
        raise WireError(f"unknown pixel encoding {encoding}")
    try:
        text = ident.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        raise WireError("the frame's id is not ASCII") from None
    if not IDENT_RE.fullmatch(text):
        raise WireError("the frame's id is not a valid request or job id")
    return FrameHeader(kind, encoding, index, text, width, height)


def image_header(request_id: str, width: int, height: int,
                 encoding: int = ENCODING_RGBA8) -> bytes:
    """The header of a `decompose` picture; the pixels (or the PNG file) follow it."""
    return FrameHeader(KIND_IMAGE, encoding, 0, request_id, width, height).pack()


def message_size(start: Buffer) -> int | None:
    """The whole size of a binary message that begins with `start`, if its header tells.

    A raw RGBA8 frame's header gives its payload size, so a client can put a message that
    arrives in fragments into one buffer of the right size. None for anything else.
    """
    try:
        header = unpack_header(start)
    except WireError:
        return None
    return HEADER_SIZE + header.raw_size if header.encoding == ENCODING_RGBA8 else None


# -- JSON control messages --------------------------------------------------------------------
def dumps(message: Mapping[str, Any]) -> str:
    """A message as compact JSON text (NaN and infinities are not JSON: refused)."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def hello(token: str, client_name: str) -> dict[str, Any]:
    """The first message on a connection: the token, and a name for the server's logs."""
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "token": token,
            "client": {"name": client_name}}


def decompose(request_id: str, *, width: int, height: int, size: int,
              encoding: str = "rgba8", backend: str = "auto", layers: int | None = None,
              seed: int = 0, options: Mapping[str, Any] | None = None,
              result_encoding: str = "rgba8",
              cancel_on_disconnect: bool = False) -> dict[str, Any]:
    """A `decompose` request; the picture goes as a binary message once the server is ready.

    `size` is the picture's payload in bytes (the frame without its header).
    """
    if not IDENT_RE.fullmatch(request_id):
        raise WireError(f"not a request id: {request_id[:40]!r}")
    message: dict[str, Any] = {
        "type": "decompose", "request_id": request_id, "backend": backend, "layers": layers,
        "seed": seed, "options": dict(options or {}),
        "image": {"encoding": encoding, "width": width, "height": height, "bytes": size},
        "result_encoding": result_encoding,
    }
    if cancel_on_disconnect:
        message["cancel_on_disconnect"] = True
    return message


# -- WebSocket, client side (RFC 6455) -------------------------------------------------------
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005  # a close frame without a code (never sent)
CLOSE_ABNORMAL = 1006  # no close frame at all (never sent)
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008  # the bridge: authentication failed or timed out
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011

MAX_HANDSHAKE = 16 * 1024  # the server's HTTP answer to the upgrade


class WebSocketError(ConnectionError):
    """The connection cannot be used (refused upgrade, broken framing, closed...)."""


class HandshakeFailed(WebSocketError):
    """The server did not switch protocols; `status` is its HTTP status (None: no answer)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConnectionClosed(WebSocketError):
    """The connection is closed; `code`/`reason` come from the close frame (1006: none)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class ProtocolViolation(WebSocketError):
    """The server broke RFC 6455 (or sent too much): close the connection with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_key() -> str:
    """A fresh Sec-WebSocket-Key."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_value(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer `key` with."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def handshake_request(host: str, port: int, path: str, key: str, user_agent: str) -> bytes:
    """The HTTP upgrade request. No Origin header: the bridge refuses every browser origin."""
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nUser-Agent: {user_agent}\r\n\r\n").encode("latin-1")


def parse_handshake(data: Buffer, key: str) -> int | None:
    """Check the server's answer to the upgrade at the start of `data`.

    Returns how many bytes the answer took (frames may follow it in `data`), or None while its
    end has not arrived. Raises HandshakeFailed when the server refuses or answers wrongly.
    """
    head_end = bytes(data[:MAX_HANDSHAKE + 4]).find(b"\r\n\r\n")
    if head_end < 0:
        if len(data) > MAX_HANDSHAKE:
            raise HandshakeFailed(None, "the server's upgrade answer is too long")
        return None
    lines = bytes(data[:head_end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HandshakeFailed(None, f"not an HTTP answer: {lines[0][:80]!r}")
    status = int(parts[1])
    if status != 101:
        reason = parts[2] if len(parts) > 2 else ""
        raise HandshakeFailed(status, f"the server refused the upgrade (HTTP {status} {reason})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket" or \
            "upgrade" not in headers.get("connection", "").lower():
        raise HandshakeFailed(status, "the server did not upgrade to WebSocket")
    if headers.get("sec-websocket-accept") != accept_value(key):
        raise HandshakeFailed(status, "the server's Sec-WebSocket-Accept does not match our key")
    if headers.get("sec-websocket-extensions"):
        raise HandshakeFailed(status, "the server chose an extension nobody offered")
    return head_end + 4


def mask(payload: Buffer, key: bytes) -> bytes:
    """`payload` XOR the repeated 4-byte `key` (RFC 6455 5.3: every client frame is masked).

    One big-integer XOR: the fastest the standard library does it (about 130 MB/s).
    """
    size = len(payload)
    if not size:
        return b""
    stream = (key * (size // 4 + 1))[:size]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(size, "little")


def frame_header(opcode: int, length: int, *, fin: bool = True,
                 mask_key: bytes | None = None) -> bytes:
    """The 2-14 byte header of one frame; with `mask_key` (a client's frame) the key follows."""
    first = (0x80 if fin else 0) | opcode
    masked = 0x80 if mask_key is not None else 0
    if length < 126:
        head = struct.pack("!BB", first, masked | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, masked | 126, length)
    else:
        head = struct.pack("!BBQ", first, masked | 127, length)
    return head + mask_key if mask_key is not None else head


def client_frame(opcode: int, payload: Buffer, *, fin: bool = True) -> bytes:
    """A whole masked frame as a client sends it (fine for small payloads; see `mask`)."""
    key = os.urandom(4)
    return frame_header(opcode, len(payload), fin=fin, mask_key=key) + mask(payload, key)


@dataclass(frozen=True)
class FrameHead:
    """A parsed frame header from the server: `size` bytes long, `length` payload bytes after."""

    fin: bool
    opcode: int
    length: int
    size: int


def parse_frame_head(data: Buffer, start: int = 0, end: int | None = None) -> FrameHead | None:
    """The header of the server frame at data[start:end]; None until all of it has arrived.

    Raises ProtocolViolation for what a server must never send: reserved bits (no extension is
    ever agreed), a masked frame, an unknown opcode, a long or fragmented control frame.
    """
    end = len(data) if end is None else end
    if end - start < 2:
        return None
    first, second = data[start], data[start + 1]
    fin, opcode, length = bool(first & 0x80), first & 0x0F, second & 0x7F
    size = 2
    if length == 126:
        size = 4
        if end - start < size:
            return None
        (length,) = struct.unpack_from("!H", data, start + 2)
    elif length == 127:
        size = 10
        if end - start < size:
            return None
        (length,) = struct.unpack_from("!Q", data, start + 2)
    if first & 0x70:
        raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
    if second & 0x80:
        raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "a server must not mask its frames")
    if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
        raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
    if opcode in CONTROL_OPCODES and (not fin or length > 125):
        raise ProtocolViolation(CLOSE_PROTOCOL_ERROR,
                                "control frames are short and not fragmented")
    return FrameHead(fin, opcode, length, size)


class Fragments:
    """Which message the server's data frames belong to, by RFC 6455's fragmentation rules.

    `add` each data frame's header before reading its payload: it refuses a continuation with
    no message, a new message inside another, and a message over `max_size` bytes.
    """

    def __init__(self, max_size: int | None) -> None:
        self.max_size = max_size
        self.opcode: int | None = None  # OP_TEXT or OP_BINARY while a message is incomplete
        self.size = 0

    def add(self, head: FrameHead) -> int:
        """The opcode (OP_TEXT or OP_BINARY) of the message that this data frame is part of."""
        if head.opcode == OP_CONT:
            if self.opcode is None:
                raise ProtocolViolation(CLOSE_PROTOCOL_ERROR,
                                        "a continuation frame without a message")
        elif self.opcode is not None:
            raise ProtocolViolation(CLOSE_PROTOCOL_ERROR, "a new message before the last ended")
        else:
            self.opcode, self.size = head.opcode, 0
        self.size += head.length
        if self.max_size is not None and self.size > self.max_size:
            self.opcode = None
            raise ProtocolViolation(CLOSE_TOO_BIG, f"a message over the limit of "
                                                   f"{self.max_size} bytes")
        opcode = self.opcode
        if head.fin:
            self.opcode = None
        return opcode


def decode_text(data: Buffer) -> str:
    """A text message's payload; a server that sends invalid UTF-8 breaks the protocol."""
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(CLOSE_INVALID_DATA, "a text message that is not UTF-8") from None


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame (the reason is cut to fit a control frame)."""
    return struct.pack("!H", code) + reason.encode("utf-8")[:120]


def parse_close(payload: Buffer) -> tuple[int, str]:
    """Code and reason of a close frame (1005 when it carries no code)."""
    if len(payload) < 2:
        return CLOSE_NO_STATUS, ""
    (code,) = struct.unpack_from("!H", payload)
    return code, bytes(payload[2:]).decode("utf-8", "replace")
