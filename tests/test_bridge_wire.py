"""bridge/wire.py, the sans-I/O bytes every Python peer shares: LLF1 headers, client messages,
the client side of RFC 6455.

Most of it also runs against independent implementations elsewhere (the `websockets` server
in test_bridge_wsclient.py and test_gimp_websocket.py, the server's own checks here); these
tests pin the byte layouts and the rules a server must not break.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from layerlift.bridge import protocol, wire
from layerlift.bridge.limits import Limits

from tests.conftest import REPO


def test_header_layout_is_the_documented_one():
    header = wire.FrameHeader(wire.KIND_LAYER, wire.ENCODING_PNG, 3, "0123456789abcdef", 640, 480)
    packed = header.pack()
    # docs/protocol.md, "Binary messages": magic, kind, encoding, u16 index, 16-byte id, w, h.
    assert packed == (b"LLF1" + bytes([2, 1]) + (3).to_bytes(2, "little")
                      + b"0123456789abcdef" + (640).to_bytes(4, "little")
                      + (480).to_bytes(4, "little"))
    assert len(packed) == wire.HEADER_SIZE == 32
    assert wire.unpack_header(packed + b"payload") == header
    short = wire.image_header("r1", 2, 1)
    assert short[8:24] == b"r1" + b"\0" * 14
    assert wire.unpack_header(short) == wire.FrameHeader(wire.KIND_IMAGE, 0, 0, "r1", 2, 1)


@pytest.mark.parametrize(("data", "message"), [
    (b"LLF1", "shorter than the header"),
    (b"LLF2" + bytes(28), "magic"),
    (b"LLF1" + bytes([9, 0, 0, 0]) + b"r1".ljust(16, b"\0") + bytes(8), "kind"),
    (b"LLF1" + bytes([1, 7, 0, 0]) + b"r1".ljust(16, b"\0") + bytes(8), "encoding"),
    (b"LLF1" + bytes([1, 0, 0, 0]) + b"\xff".ljust(16, b"\0") + bytes(8), "ASCII"),
    (b"LLF1" + bytes([1, 0, 0, 0]) + b"a b".ljust(16, b"\0") + bytes(8), "id"),
])
def test_bad_headers_are_refused_with_a_reason(data, message):
    with pytest.raises(wire.WireError, match=message):
        wire.unpack_header(data)
    with pytest.raises(protocol.ProtocolError, match=message):  # what the server makes of it
        protocol.parse_frame(data)


def test_an_id_that_does_not_fit_is_never_packed():
    for ident in ("", "x" * 17, "a/b", "é"):
        with pytest.raises(wire.WireError):
            wire.image_header(ident, 1, 1)


def test_message_size_from_the_first_bytes():
    raw = wire.FrameHeader(wire.KIND_LAYER, wire.ENCODING_RGBA8, 0, "ab", 30, 20).pack()
    assert wire.message_size(raw) == 32 + 30 * 20 * 4
    png = wire.FrameHeader(wire.KIND_LAYER, wire.ENCODING_PNG, 0, "ab", 30, 20).pack()
    assert wire.message_size(png) is None  # a PNG's size is not in its header
    assert wire.message_size(raw[:20]) is None
    assert wire.message_size(b"\0" * 64) is None


def test_client_messages_pass_the_servers_checks():
    limits = Limits()
    hello = protocol.parse_text(wire.dumps(wire.hello("tok", "gimp")), limits.max_text_bytes)
    assert (hello.type, hello["token"], hello["protocol"], hello["client"]) == (
        "hello", "tok", protocol.PROTOCOL_VERSION, "gimp")
    message = wire.decompose("gimp-1", width=30, height=20, size=2400, layers=3, seed=7,
                             backend="classic", options={"steps": 4},
                             cancel_on_disconnect=True)
    parsed = protocol.parse_text(wire.dumps(message), limits.max_text_bytes)
    assert parsed["image"] == protocol.ImageSpec(wire.ENCODING_RGBA8, 30, 20, 2400)
    assert parsed["request"].layers == 3 and parsed["request"].options == {"steps": 4}
    assert parsed["cancel_on_disconnect"] is True and parsed["backend"] == "classic"
    assert "cancel_on_disconnect" not in wire.decompose("r", width=1, height=1, size=4)
    with pytest.raises(wire.WireError):
        wire.decompose("no spaces", width=1, height=1, size=4)


# -- WebSocket, client side ----------------------------------------------------------------
def _answer(key: str, status: str = "101 Switching Protocols", **extra: str) -> bytes:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Accept": wire.accept_value(key), **extra}
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_handshake_request_and_answer():
    key = wire.new_key()
    request = wire.handshake_request("::1", 47811, "/", key, "test").decode("latin-1")
    assert request.startswith("GET / HTTP/1.1\r\nHost: [::1]:47811\r\n")
    assert f"Sec-WebSocket-Key: {key}\r\n" in request and "Origin" not in request
    # RFC 6455 1.3's example key and answer.
    assert wire.accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    answer = _answer(key)
    assert wire.parse_handshake(answer + b"\x81\x00", key) == len(answer)
    assert wire.parse_handshake(answer[:-1], key) is None


@pytest.mark.parametrize(("answer", "status", "message"), [
    (lambda key: _answer(key, "403 Forbidden"), 403, "HTTP 403"),
    (lambda key: _answer("another key"), 101, "Accept"),
    (lambda key: _answer(key, **{"Sec-WebSocket-Extensions": "permessage-deflate"}), 101,
     "extension"),
    (lambda key: _answer(key, Upgrade="h2c"), 101, "did not upgrade"),
    (lambda key: b"SSH-2.0-OpenSSH\r\n\r\n", None, "not an HTTP answer"),
    (lambda key: b"x" * (wire.MAX_HANDSHAKE + 1), None, "too long"),
])
def test_bad_handshake_answers(answer, status, message):
    key = wire.new_key()
    with pytest.raises(wire.HandshakeFailed, match=message) as failed:
        wire.parse_handshake(answer(key), key)
    assert failed.value.status == status


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 2**32 + 5])
def test_frame_headers_round_trip(length):
    head = wire.frame_header(wire.OP_BINARY, length, fin=False)
    parsed = wire.parse_frame_head(b"junk" + head, 4)
    assert parsed == wire.FrameHead(False, wire.OP_BINARY, length, len(head))
    assert wire.parse_frame_head(head[:-1]) is None  # not all of it yet
    masked = wire.frame_header(wire.OP_TEXT, length, mask_key=b"abcd")
    assert masked[1] & 0x80 and masked.endswith(b"abcd")


@pytest.mark.parametrize(("frame", "code"), [
    (bytes([0xC2, 0x00]), 1002),  # RSV1 without an extension
    (bytes([0x82, 0x80]), 1002),  # masked, from a server
    (bytes([0x83, 0x00]), 1002),  # opcode 3 is reserved
    (bytes([0x09, 0x00]), 1002),  # a fragmented ping
    (bytes([0x89, 126, 0, 126]), 1002),  # a control frame over 125 bytes
])
def test_frames_a_server_must_not_send(frame, code):
    with pytest.raises(wire.ProtocolViolation) as violation:
        wire.parse_frame_head(frame)
    assert violation.value.code == code


def test_fragmentation_rules_and_size_limit():
    def head(opcode, fin, length=10):
        return wire.FrameHead(fin, opcode, length, 2)

    fragments = wire.Fragments(max_size=25)
    assert fragments.add(head(wire.OP_BINARY, False)) == wire.OP_BINARY
    assert fragments.add(head(wire.OP_CONT, True)) == wire.OP_BINARY
    assert fragments.add(head(wire.OP_TEXT, True)) == wire.OP_TEXT
    with pytest.raises(wire.ProtocolViolation) as lone:
        fragments.add(head(wire.OP_CONT, True))
    fragments.add(head(wire.OP_TEXT, False))
    with pytest.raises(wire.ProtocolViolation) as nested:
        fragments.add(head(wire.OP_BINARY, True))
    fragments = wire.Fragments(max_size=25)
    fragments.add(head(wire.OP_BINARY, False))
    fragments.add(head(wire.OP_CONT, False))
    with pytest.raises(wire.ProtocolViolation, match="25") as big:
        fragments.add(head(wire.OP_CONT, True))
    assert (lone.value.code, nested.value.code, big.value.code) == (1002, 1002, 1009)
    with pytest.raises(wire.ProtocolViolation) as text:
        wire.decode_text(b"\xc3\x28")
    assert text.value.code == 1007 and wire.decode_text("tëxt".encode()) == "tëxt"


def test_mask_close_and_client_frames():
    key = b"\x01\x02\x03\x04"
    assert wire.mask(b"\0\0\0\0\0", key) == b"\x01\x02\x03\x04\x01"
    data = os.urandom(1001)
    assert wire.mask(wire.mask(data, key), key) == data and wire.mask(b"", key) == b""
    frame = wire.client_frame(wire.OP_TEXT, b"hello")
    assert frame[0] == 0x81 and frame[1] == 0x80 | 5
    assert wire.mask(frame[6:], frame[2:6]) == b"hello"
    assert wire.parse_close(wire.close_payload(4001, "policy says no")) == (4001, "policy says no")
    assert wire.parse_close(b"") == (1005, "")
    assert len(wire.close_payload(1000, "x" * 500)) <= 125


def test_runs_on_the_standard_library_alone(tmp_path):
    """What GIMP's Python can do: import it with no site-packages and no LayerLift."""
    (tmp_path / "ll_wire.py").write_bytes((REPO / "bridge" / "wire.py").read_bytes())
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import ll_wire\n"
              "print(ll_wire.unpack_header(ll_wire.image_header('r1', 3, 2)).width)\n"
              "assert not any(name.startswith(('layerlift', 'numpy', 'websockets'))"
              " for name in sys.modules)\n")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


def test_the_panel_copies_of_the_wire_constants_match():
    """The Photoshop panel cannot import Python: its copies of the facts it must know before
    it connects (the port its manifest allows, the protocol version, the header size, the
    layer count and seeds the server accepts) are checked against the one Python definition."""
    from layerlift.inference.backends.base import MAX_LAYERS

    source = (REPO / "photoshop_plugin" / "src" / "protocol.js").read_text(encoding="utf-8")

    def js_constant(name: str) -> int:
        match = re.search(rf"^const {name} = (\d+);", source, re.M)
        assert match, f"protocol.js has no const {name}"
        return int(match.group(1))

    assert js_constant("DEFAULT_PORT") == wire.DEFAULT_PORT
    assert js_constant("PROTOCOL_VERSION") == wire.PROTOCOL_VERSION
    assert js_constant("HEADER_SIZE") == wire.HEADER_SIZE
    assert js_constant("MAX_LAYERS") == MAX_LAYERS
    assert js_constant("MAX_SEED") == protocol.MAX_SEED


def test_the_panel_job_states_are_the_python_ones():
    """The panel compares job states against its own frozen list; it must be exactly ours."""
    from layerlift.inference.job_states import JobState

    source = (REPO / "photoshop_plugin" / "src" / "protocol.js").read_text(encoding="utf-8")
    block = re.search(r"const JobState = Object\.freeze\(\{(.*?)\}\);", source, re.S)
    assert block, "protocol.js has no frozen JobState"
    pairs = dict(re.findall(r'^\s*([A-Z]+): "([a-z]+)",$', block.group(1), re.M))
    assert pairs == {state.name: state.value for state in JobState}
