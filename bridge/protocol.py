"""The bridge protocol as the server checks it: JSON control messages and binary pixel frames.

Everything a client sends is checked here before the server acts on it, so the server's
handlers only ever see well-typed values. Structure errors (not JSON, unknown type, a field of
the wrong type) are `ProtocolError`; values out of range are `BadRequest`. Both leave the
connection open: one bad message never costs a client its session.

Pixels never travel as base64: a binary message is a 32-byte little-endian header (which job,
which layer, which encoding, the size) followed by raw RGBA8 rows or a PNG file. The header,
the kinds, the encodings and the id rule are defined once, in `bridge.wire` (standard library
only, shipped into the GIMP plug-in); this module adds what needs numpy, Pillow and LayerLift's
errors: typed requests, pixels and limits.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from layerlift.bridge import wire
from layerlift.bridge.limits import Limits
from layerlift.bridge.wire import (
    ENCODING_PNG,
    ENCODING_RGBA8,
    ENCODINGS,
    HEADER_SIZE,
    IDENT_RE,
    KIND_IMAGE,
    KIND_LAYER,
    PROTOCOL_VERSION,
    FrameHeader,
    WireError,
    unpack_header,
)
from layerlift.inference.backends.base import MAX_LAYERS, DecomposeRequest
from layerlift.inference.errors import BadRequest, CorruptImage, ImageTooLarge, LayerLiftError
from layerlift.inference.input_check import check_size
from layerlift.inference.layers import Layer

SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
# What the server writes, under the names it uses (`protocol.dumps`); defined in bridge.wire.
dumps = wire.dumps
ENCODING_NAMES = wire.ENCODING_NAMES

_JOB_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_BACKEND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_SEED = 2**32 - 1

CLIENT_TYPES = ("hello", "pair", "decompose", "cancel", "list_jobs", "fetch", "ping")


class ProtocolError(LayerLiftError):
    """A message that does not follow docs/protocol.md (not JSON, wrong field type...)."""

    code = "protocol_error"


# -- decompose options ----------------------------------------------------------------------
# Only the structure is checked here; the names and values are checked by the schema the
# requested backend declares (`OptionSchema.validate`, the server's and the runner's one
# check). No backend declares an option that names a file or program: the model folder,
# devices and memory modes are the server's settings, never a client's.
MAX_OPTION_NAME = 64
_SCALARS = (str, int, float, bool, type(None))


# -- typed messages -------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSpec:
    encoding: int
    width: int
    height: int
    size: int


@dataclass(frozen=True)
class Message:
    type: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def _field(data: Mapping[str, Any], name: str, kinds: type | tuple[type, ...],
           required: bool = True, default: Any = None) -> Any:
    if name not in data:
        if required:
            raise ProtocolError(f"{data.get('type')}: missing field {name!r}")
        return default
    value = data[name]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ProtocolError(f"{data.get('type')}: field {name!r} has the wrong type")
    if not isinstance(value, kinds):
        raise ProtocolError(f"{data.get('type')}: field {name!r} has the wrong type")
    return value


def _ident(data: Mapping[str, Any], name: str) -> str:
    value = _field(data, name, str)
    if not IDENT_RE.fullmatch(value):
        raise ProtocolError(f"{name} must be 1-16 characters of A-Z a-z 0-9 _ . -")
    return value


def _job_id(data: Mapping[str, Any]) -> str:
    value = _field(data, "job_id", str)
    if not _JOB_ID_RE.fullmatch(value):
        raise ProtocolError("job_id must be 16 lowercase hex digits")
    return value


def _encoding(data: Mapping[str, Any], name: str) -> int:
    value = _field(data, name, str, required=False, default="rgba8")
    if value not in ENCODINGS:
        raise BadRequest(f"{name} must be one of {sorted(ENCODINGS)}, got {value!r}")
    return ENCODINGS[value]


def parse_json_object(text: str | bytes) -> dict[str, Any]:
    """Any JSON object (what a client does with the server's messages)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not valid JSON: {str(exc)[:100]}") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object")
    return data


# A client message has a handful of objects. Counting openers is C-fast and bounds the
# nesting depth before json.loads recurses: "[" * 50000 overflowed the C stack of a thread.
MAX_CONTAINERS = 256


def _check_containers(text: str | bytes) -> None:
    if isinstance(text, str):
        count = text.count("[") + text.count("{")
    else:
        count = text.count(b"[") + text.count(b"{")
    if count > MAX_CONTAINERS:
        raise ProtocolError(f"a message may hold at most {MAX_CONTAINERS} arrays and objects")


def request_id_of(text: str | bytes, max_bytes: int) -> str | None:
    """Best effort: the request_id of a message that failed to parse, to echo in the error."""
    if len(text) > max_bytes:
        return None
    try:
        _check_containers(text)
    except ProtocolError:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    value = data.get("request_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and IDENT_RE.fullmatch(value) else None


def parse_text(text: str | bytes, max_bytes: int) -> Message:
    """Parse one JSON control message; raise ProtocolError/BadRequest if it is not valid."""
    if len(text) > max_bytes:
        raise ProtocolError(f"text message of {len(text)} bytes is over the {max_bytes} limit")
    _check_containers(text)
    data = parse_json_object(text)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        shown = kind if isinstance(kind, str) else type(kind).__name__
        raise ProtocolError(f"unknown message type {shown[:40]!r}; expected one of "
                            f"{', '.join(CLIENT_TYPES)}")
    fields = _PARSERS[kind](data)
    if "request_id" not in fields and data.get("request_id") is not None:
        # Optional on every request: the direct answer echoes it.
        fields["request_id"] = _ident(data, "request_id")
    return Message(kind, fields)


def _parse_hello(data: Mapping[str, Any]) -> dict[str, Any]:
    version = _field(data, "protocol", int)
    token = _field(data, "token", str)
    client = _field(data, "client", dict, required=False, default={})
    name = client.get("name", "")
    return {"protocol": version, "token": token[:256],
            "client": str(name)[:64] if isinstance(name, str) else ""}


def _parse_pair(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"code": _field(data, "code", str)[:64]}


def _parse_options(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProtocolError("decompose: options must be an object")
    for name, value in raw.items():
        if len(name) > MAX_OPTION_NAME:
            raise BadRequest(f"option name {name[:40]!r}... is too long")
        if not isinstance(value, _SCALARS):
            raise BadRequest(f"option {name[:40]!r} must be a number, text, true or false")
    return dict(raw)


def _parse_decompose(data: Mapping[str, Any]) -> dict[str, Any]:
    request_id = _ident(data, "request_id")
    backend = _field(data, "backend", str, required=False, default="auto")
    if not _BACKEND_RE.fullmatch(backend):
        raise BadRequest(f"not a backend name: {backend[:40]!r}")
    layers = _field(data, "layers", (int, type(None)), required=False)
    if layers is not None and not 1 <= layers <= MAX_LAYERS:
        raise BadRequest(f"layers must be between 1 and {MAX_LAYERS}, got {layers}")
    seed = _field(data, "seed", int, required=False, default=0)
    if not 0 <= seed <= MAX_SEED:
        raise BadRequest(f"seed must be between 0 and {MAX_SEED}")
    options = _parse_options(data.get("options", {}))
    image = _field(data, "image", dict)
    spec = ImageSpec(
        encoding=_encoding(image, "encoding") if "encoding" in image else _missing("encoding"),
        width=_field(image, "width", int),
        height=_field(image, "height", int),
        size=_field(image, "bytes", int),
    )
    return {
        "request_id": request_id,
        "backend": backend,
        "request": DecomposeRequest(layers=layers, seed=seed, options=options),
        "image": spec,
        "result_encoding": _encoding(data, "result_encoding"),
        # GIMP's Cancel kills the plug-in, which then cannot send `cancel`: it asks for this.
        "cancel_on_disconnect": _field(data, "cancel_on_disconnect", bool, required=False,
                                       default=False),
    }


def _missing(name: str) -> Any:
    raise ProtocolError(f"decompose: image.{name} is required")


def _parse_job(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"job_id": _job_id(data)}


def _parse_fetch(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"job_id": _job_id(data), "result_encoding": _encoding(data, "result_encoding")}


def _parse_empty(data: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def _parse_ping(data: Mapping[str, Any]) -> dict[str, Any]:
    value = data.get("id")
    ok = value is None or (isinstance(value, (str, int)) and not isinstance(value, bool))
    if not ok or (isinstance(value, str) and len(value) > 64):
        raise ProtocolError("ping: id must be a short string or a number")
    return {"id": value}


_PARSERS = {
    "hello": _parse_hello,
    "pair": _parse_pair,
    "decompose": _parse_decompose,
    "cancel": _parse_job,
    "list_jobs": _parse_empty,
    "fetch": _parse_fetch,
    "ping": _parse_ping,
}


def check_image_spec(spec: ImageSpec, limits: Limits) -> None:
    """Refuse an image by its announced size, before a byte of it is read (the check files
    get too, with the bridge's limits)."""
    check_size(spec.width, spec.height, label="the image", max_pixels=limits.max_image_pixels,
               max_side=limits.max_image_side)
    if spec.size < 1 or spec.size > limits.max_image_bytes:
        raise ImageTooLarge(f"the image data is {spec.size} bytes; the limit is "
                            f"{limits.max_image_bytes}")
    if spec.encoding == ENCODING_RGBA8 and spec.size != spec.width * spec.height * 4:
        raise BadRequest(f"raw RGBA8 of {spec.width}x{spec.height} is "
                         f"{spec.width * spec.height * 4} bytes, not {spec.size}")


# -- binary frames --------------------------------------------------------------------------
def parse_frame(data: bytes | bytearray | memoryview) -> tuple[FrameHeader, memoryview]:
    """Split a binary message into its header and payload (a view: no copy)."""
    view = memoryview(data)
    try:
        header = unpack_header(view)
    except WireError as exc:
        raise ProtocolError(str(exc)) from None
    return header, view[HEADER_SIZE:]


def image_frame(request_id: str, pixels: np.ndarray | None = None,
                png: bytes | None = None) -> bytes:
    """The binary message carrying a `decompose` picture (raw RGBA8 or an encoded PNG)."""
    if png is not None:
        from PIL import Image

        with Image.open(io.BytesIO(png)) as image:
            width, height = image.size
        header = FrameHeader(KIND_IMAGE, ENCODING_PNG, 0, request_id, width, height)
        return header.pack() + png
    if pixels is None:
        raise ValueError("give pixels or png")
    height, width = pixels.shape[:2]
    header = FrameHeader(KIND_IMAGE, ENCODING_RGBA8, 0, request_id, width, height)
    return _with_pixels(header, pixels)


def _with_pixels(header: FrameHeader, pixels: np.ndarray) -> bytes | bytearray:
    """Header plus raw rows in one buffer, with a single copy of the pixels."""
    buffer = bytearray(HEADER_SIZE + pixels.size)
    buffer[:HEADER_SIZE] = header.pack()
    if pixels.size:
        target = np.frombuffer(buffer, np.uint8, pixels.size, HEADER_SIZE)
        target.reshape(pixels.shape)[...] = pixels
    return buffer


def encode_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGBA").save(out, format="PNG",
                                                               compress_level=1)
    return out.getvalue()


def layer_frame(job_id: str, index: int, layer: Layer, encoding: int) -> bytes | bytearray:
    """One layer of a result. Empty (0x0) layers always go as raw with no payload."""
    if layer.width == 0 or layer.height == 0:
        return FrameHeader(KIND_LAYER, ENCODING_RGBA8, index, job_id, 0, 0).pack()
    header = FrameHeader(KIND_LAYER, encoding, index, job_id, layer.width, layer.height)
    if encoding == ENCODING_PNG:
        return header.pack() + encode_png(layer.pixels)
    return _with_pixels(header, layer.pixels)


def layer_frame_parts(job_id: str, index: int,
                      layer: Layer) -> list[bytes | np.ndarray]:
    """A raw RGBA8 layer frame as [header, pixels]: the same bytes as `layer_frame`, uncopied."""
    if layer.width == 0 or layer.height == 0:
        return [layer_frame(job_id, index, layer, ENCODING_RGBA8)]
    header = FrameHeader(KIND_LAYER, ENCODING_RGBA8, index, job_id, layer.width, layer.height)
    return [header.pack(), np.ascontiguousarray(layer.pixels, np.uint8)]


def decode_pixels(header: FrameHeader, payload: memoryview, limits: Limits | None = None,
                  copy: bool = True) -> np.ndarray:
    """The (h, w, 4) uint8 pixels of a frame, checked against its header (and `limits`)."""
    width, height = header.width, header.height
    if limits is not None:
        check_image_spec(ImageSpec(header.encoding, width, height, len(payload)), limits)
    if width == 0 or height == 0:
        if len(payload):
            raise CorruptImage("an empty layer frame must have no payload")
        return np.zeros((0, 0, 4), np.uint8)
    if header.encoding == ENCODING_RGBA8:
        expected = width * height * 4
        if len(payload) != expected:
            raise CorruptImage(f"raw RGBA8 {width}x{height} needs {expected} bytes, "
                               f"got {len(payload)}")
        pixels = np.frombuffer(payload, np.uint8).reshape(height, width, 4)
        return pixels.copy() if copy else pixels
    return _decode_png(bytes(payload), width, height, limits)


def _decode_png(data: bytes, width: int, height: int, limits: Limits | None) -> np.ndarray:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise CorruptImage("the frame says PNG but the data is not a PNG file")
    from layerlift.inference.formats import read_image_bytes

    max_pixels = limits.max_image_pixels if limits else width * height
    max_bytes = limits.max_image_bytes if limits else len(data)
    loaded = read_image_bytes(data, max_pixels=max_pixels, max_bytes=max_bytes)
    pixels = loaded.pixels
    if pixels.shape[:2] != (height, width):
        raise BadRequest(f"the PNG is {pixels.shape[1]}x{pixels.shape[0]} but the frame "
                         f"header says {width}x{height}")
    return pixels


# -- server messages ------------------------------------------------------------------------
def error_message(exc: LayerLiftError | str, message: str | None = None,
                  **context: Any) -> dict[str, Any]:
    """An `error` message; `context` adds request_id / job_id when the error concerns one."""
    if isinstance(exc, LayerLiftError):
        code, text = exc.code, exc.message
    else:
        code, text = exc, message or exc
    body = {"type": "error", "code": code, "message": text}
    body.update({key: value for key, value in context.items() if value is not None})
    return body
