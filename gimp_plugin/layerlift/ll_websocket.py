"""The GIMP plug-in's WebSocket connection: blocking socket I/O over `ll_wire`'s framing.

GIMP's bundled Python has no third-party packages, so the plug-in cannot use `websockets`.
The bytes (upgrade request and answer, frame headers, masking, fragmentation rules, close
codes) are `ll_wire`'s, which is LayerLift's `bridge/wire.py` copied in by
`layerlift install-gimp-plugin`; this module only moves them through one blocking socket to
the loopback server: text and binary messages of bounded size, ping/pong and a clean close.
"""

from __future__ import annotations

import contextlib
import select
import socket

import ll_wire
from ll_wire import ConnectionClosed, HandshakeFailed, WebSocketError

__all__ = ["ConnectionClosed", "HandshakeFailed", "WebSocket", "WebSocketError", "connect"]

DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024
# Outgoing messages larger than this are sent as several frames, so no single frame (and no
# single masked copy of it) is bigger than this.
DEFAULT_FRAGMENT = 4 * 1024 * 1024
# The longest header of a server frame (servers do not mask): a header read asks for no more,
# so it takes at most a few bytes of the payload that follows.
MAX_HEAD = 10
SCRATCH_SIZE = 4096  # holds headers, and what followed the upgrade answer in its last read


class WebSocket:
    """A blocking client connection. Use `connect()` to make one.

    The receive path is built for the result layers (up to `max_message` bytes each, arriving
    in fragments): frame headers go through a small scratch buffer, every payload is read by
    `recv_into` straight into the buffer of its message, and a binary message is handed over
    as that very buffer. A fragmented LLF1 layer gets one buffer of its whole size up front,
    because its header (the first bytes of the first fragment) says how big it is.
    """

    def __init__(self, sock: socket.socket, max_message: int = DEFAULT_MAX_MESSAGE,
                 fragment_size: int = DEFAULT_FRAGMENT, buffered: bytes = b"") -> None:
        self.sock = sock
        self.max_message = max_message
        self.fragment_size = fragment_size
        self.closed = False
        # Bytes read but not parsed yet are _scratch[_start:_end]: what followed the upgrade
        # answer, and the few bytes a header read takes beyond its header.
        self._scratch = bytearray(max(SCRATCH_SIZE, len(buffered)))
        self._scratch[:len(buffered)] = buffered
        self._start = 0
        self._end = len(buffered)
        self._fragments = ll_wire.Fragments(max_message)

    # -- reading ---------------------------------------------------------------------------
    def _recv_into(self, target: memoryview) -> int:
        """One read from the socket into `target`; the connection's errors as WebSocketError."""
        try:
            count = self.sock.recv_into(target)
        except TimeoutError:
            raise
        except OSError as exc:  # reset, broken pipe: the server is gone
            self.closed = True
            raise WebSocketError(f"connection lost: {exc}") from exc
        if not count:
            self.closed = True
            raise ConnectionClosed(ll_wire.CLOSE_ABNORMAL, "the server went away")
        return count

    def _fill(self, count: int) -> None:
        """Read until the scratch buffer holds `count` unparsed bytes (at most MAX_HEAD).

        Each read asks for no more than MAX_HEAD bytes in all, so a header read takes at most
        a few bytes of the payload after it, and the payload itself goes to its own buffer.
        """
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end + MAX_HEAD > len(self._scratch):
            held = self._end - self._start
            self._scratch[:held] = self._scratch[self._start:self._end]
            self._start, self._end = 0, held
        with memoryview(self._scratch) as view:
            while self._end - self._start < count:
                want = max(count, MAX_HEAD) - (self._end - self._start)
                self._end += self._recv_into(view[self._end:self._end + want])

    def _read_into(self, target: memoryview) -> None:
        """Fill all of `target`: first from the scratch buffer, then from the socket."""
        here = min(len(target), self._end - self._start)
        if here:
            target[:here] = self._scratch[self._start:self._start + here]
            self._start += here
        while here < len(target):
            here += self._recv_into(target[here:])

    def _take(self, count: int) -> bytearray:
        """The next `count` bytes, in a buffer of their own."""
        data = bytearray(count)
        with memoryview(data) as view:
            self._read_into(view)
        return data

    def _read_head(self) -> ll_wire.FrameHead:
        while True:
            head = ll_wire.parse_frame_head(self._scratch, self._start, self._end)
            if head is not None:
                self._start += head.size
                return head
            self._fill(self._end - self._start + 1)

    def wait_readable(self, timeout: float) -> bool:
        """True when a frame has started arriving; lets callers poll without splitting frames."""
        if self._end > self._start:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], timeout)
        except (OSError, ValueError) as exc:  # the socket was closed under us
            self.closed = True
            raise WebSocketError(f"connection lost: {exc}") from None
        return bool(readable)

    def recv(self, spare: bytearray | None = None) -> str | bytearray:
        """The next whole message: `str` for text, `bytearray` for binary. Answers pings itself.

        A binary message is the buffer its payload was received into, handed over without a
        copy: the caller may keep it, slice it through a memoryview, or copy what it needs.
        `spare` is a buffer the caller is done with (the last layer, once its pixels are
        copied out): a binary message whose size is known from its first frame is received
        into it when it is big enough, trimmed to the message, instead of into a new one, which
        costs more than copying it (a fresh 64 MiB bytearray is zeroed and faulted in: 40-75
        ms; a copy of 64 MiB: 35 ms).
        """
        message: bytearray | None = None
        length = 0  # payload bytes of `message` received so far
        opcode = ll_wire.OP_BINARY
        mid_frame = False  # a frame head was taken: a timeout now leaves the stream mid-frame
        try:
            while True:
                head = self._read_head()
                mid_frame = True
                if head.opcode in ll_wire.CONTROL_OPCODES:
                    self._control(head.opcode, bytes(self._take(head.length)))
                    continue
                opcode = self._fragments.add(head)  # checked before its payload is read
                got = 0  # bytes of this frame's payload already in `message`
                if message is None:
                    message, got = self._first_buffer(head, opcode, spare)
                elif length + head.length > len(message):
                    message = _grown(message, length, length + head.length, self.max_message)
                with memoryview(message) as view:
                    self._read_into(view[length + got:length + head.length])
                length += head.length
                if head.fin:
                    if len(message) != length:
                        del message[length:]
                    return ll_wire.decode_text(message) if opcode == ll_wire.OP_TEXT else message
        except ll_wire.ProtocolViolation as exc:
            self._fail(exc)
            raise
        except TimeoutError:
            # The rest of the frame may still come, but this reader has lost its place in
            # it: a later recv would read pixels as a frame head. The connection is done.
            if mid_frame:
                self.closed = True
            raise

    def _first_buffer(self, head: ll_wire.FrameHead, opcode: int,
                      spare: bytearray | None = None) -> tuple[bytearray, int]:
        """The buffer for the message that `head` starts, and how many of its bytes are in it.

        Its whole size when that is known: a message in one frame has it in the frame header.
        For a fragmented binary message, the LLF1 header at the start of its payload gives the
        size of a raw layer; that is trusted only within `max_message` (the fragments are
        still counted against it) and if the first fragment fits in it. Any other buffer grows
        as fragments arrive.
        """
        if opcode != ll_wire.OP_BINARY:
            return bytearray(head.length), 0
        if head.fin or head.length < ll_wire.HEADER_SIZE:
            return _buffer(head.length, spare), 0
        start = self._take(ll_wire.HEADER_SIZE)
        hinted = ll_wire.message_size(start)
        size = head.length
        if hinted is not None and head.length <= hinted <= self.max_message:
            size = hinted
        message = _buffer(size, spare)
        message[:ll_wire.HEADER_SIZE] = start
        return message, ll_wire.HEADER_SIZE

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == ll_wire.OP_PING:
            self._send_frame(ll_wire.OP_PONG, payload)
        elif opcode == ll_wire.OP_CLOSE:
            if not self.closed:
                with contextlib.suppress(WebSocketError):
                    self._send_frame(ll_wire.OP_CLOSE, payload[:2])
            self.closed = True
            raise ConnectionClosed(*ll_wire.parse_close(payload))

    def _fail(self, exc: ll_wire.ProtocolViolation) -> None:
        """The server broke the protocol: say why in a close frame, then drop the socket."""
        if not self.closed:
            with contextlib.suppress(WebSocketError):
                self._send_frame(ll_wire.OP_CLOSE, ll_wire.close_payload(exc.code, str(exc)))
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- writing ---------------------------------------------------------------------------
    def _send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        try:
            self.sock.sendall(ll_wire.client_frame(opcode, payload, fin=fin))
        except OSError as exc:
            self.closed = True
            raise WebSocketError(f"connection lost: {exc}") from exc

    def _send_message(self, opcode: int, payload: bytes) -> None:
        if self.closed:
            raise ConnectionClosed(ll_wire.CLOSE_ABNORMAL, "the connection is closed")
        step = self.fragment_size
        if len(payload) <= step:
            self._send_frame(opcode, payload)
            return
        view = memoryview(payload)
        last = (len(payload) - 1) // step * step
        for start in range(0, len(payload), step):
            self._send_frame(opcode if start == 0 else ll_wire.OP_CONT,
                             view[start: start + step], fin=start == last)

    def send_text(self, text: str) -> None:
        self._send_message(ll_wire.OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self._send_message(ll_wire.OP_BINARY, bytes(data))

    def ping(self, payload: bytes = b"") -> None:
        self._send_frame(ll_wire.OP_PING, payload)

    def close(self, code: int = ll_wire.CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame, wait briefly for the server's, then drop the socket."""
        if not self.closed:
            try:
                self._send_frame(ll_wire.OP_CLOSE, ll_wire.close_payload(code, reason))
                self.sock.settimeout(2.0)
                while True:
                    self.recv()
            except (WebSocketError, OSError):
                pass
            self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _buffer(size: int, spare: bytearray | None) -> bytearray:
    """A buffer of `size` bytes to receive into: `spare`, cut to size, if it is big enough."""
    if spare is None or len(spare) < size:
        return bytearray(size)
    if len(spare) > size:
        del spare[size:]
    return spare


def _grown(message: bytearray, length: int, needed: int, limit: int) -> bytearray:
    """A bigger buffer for a message whose size was not known, with its first `length` bytes.

    Doubling (up to the message limit) keeps the copies of a message that arrives in many
    fragments to about one per byte.
    """
    bigger = bytearray(max(needed, min(2 * len(message), limit)))
    bigger[:length] = memoryview(message)[:length]
    return bigger


def connect(host: str, port: int, path: str = "/", timeout: float = 10.0,
            max_message: int = DEFAULT_MAX_MESSAGE,
            fragment_size: int = DEFAULT_FRAGMENT) -> WebSocket:
    """Open a WebSocket to ws://host:port/path. Raises ConnectionRefusedError if nothing listens,
    HandshakeFailed (with the HTTP status) if the server refuses the upgrade."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        key = ll_wire.new_key()
        sock.sendall(ll_wire.handshake_request(host, port, path, key, "LayerLift-GIMP"))
        data = b""
        while (used := ll_wire.parse_handshake(data, key)) is None:
            chunk = sock.recv(4096)
            if not chunk:
                raise HandshakeFailed(None, "the server closed the connection during the upgrade")
            data += chunk
        return WebSocket(sock, max_message=max_message, fragment_size=fragment_size,
                         buffered=data[used:])
    except BaseException:
        sock.close()
        raise
