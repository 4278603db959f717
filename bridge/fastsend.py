"""The server's WebSocket connection, with a way to send a big binary message without copies.

`ServerConnection.send` serialises a frame into a new bytes object (a copy of the payload);
asyncio's transport then copies what the kernel did not take at once into its own buffer,
page-faulting a fresh 64 MiB allocation per layer, and copies the tail again each time the
buffer halves while it drains. For a 512 MiB result that was most of the server's time.

`BridgeConnection.send_binary` writes the frame header, then the payload's memoryview in 1 MiB
slices, each written only when the transport's buffer is empty, so the kernel takes most of
each slice straight from the layer's pixels. While the frame is on its way the library's own
writes (pong, close reply, keepalive ping), which all pass through `send_data`, are held back
and flushed right after it: a control frame must never land inside a data frame. The bytes on
the wire are exactly those of `send` (one unfragmented binary frame).

`send_data`, `drain` and `protocol` are the library's internals (websockets >= 13); if they
are missing the connection falls back to `send`. `tests/test_bridge_throughput.py` checks that
the direct path is the one the installed version takes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from layerlift.bridge.wire import OP_BINARY, frame_header
from websockets.asyncio.server import ServerConnection
from websockets.protocol import OPEN

# Messages smaller than this go through the library's `send`: one joined copy is cheaper.
MIN_DIRECT = 256 * 1024
# How much is handed to the transport at a time: about what the kernel takes in one send.
SLICE = 1024 * 1024
# Flow control: pause writing above HIGH buffered bytes, resume only once the buffer is empty,
# so that each slice is offered to the kernel directly instead of being copied behind others.
WRITE_LIMIT = (64 * 1024, 0)


def _direct_ok() -> bool:
    return all(callable(getattr(ServerConnection, name, None)) for name in ("send_data", "drain"))


DIRECT = _direct_ok()


class BridgeConnection(ServerConnection):
    """A websockets server connection that can send big binary messages uncopied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._holding = False
        self.direct_sends = 0  # how many messages took the direct path (tests, benchmarks)

    def send_data(self) -> None:
        if not self._holding:
            super().send_data()

    async def send_binary(self, parts: Sequence[Any]) -> None:
        """Send `parts` (C-contiguous buffers) concatenated as one binary message.

        Raises websockets' ConnectionClosed when the connection is or gets closed.
        """
        views = [memoryview(part).cast("B") for part in parts]
        length = sum(view.nbytes for view in views)
        if not DIRECT or length < MIN_DIRECT or self.protocol.state is not OPEN:
            # The library joins and sends, or raises ConnectionClosed without writing.
            await self.send(b"".join(views))
            return
        transport = self.transport
        complete = False
        self._holding = True
        try:
            transport.write(frame_header(OP_BINARY, length))
            for piece in _slices(views):
                if transport.is_closing() or self.protocol.state is not OPEN:
                    break
                transport.write(piece)
                if transport.get_write_buffer_size():
                    await self.drain()
            else:
                complete = True
        finally:
            self._holding = False
            if not complete:
                # Half a frame cannot be taken back: the connection has to end.
                transport.abort()
        if not complete:
            await self.wait_closed()
            raise self.protocol.close_exc
        self.direct_sends += 1
        # What the library wanted to write meanwhile, then its flow control, as `send` does.
        self.send_data()
        await self.drain()


def _slices(views: Sequence[memoryview]) -> Iterator[memoryview]:
    for view in views:
        for start in range(0, view.nbytes, SLICE):
            yield view[start: start + SLICE]


async def send_binary(ws: Any, parts: Sequence[Any]) -> None:
    """`ws.send_binary(parts)` on a BridgeConnection, a joined `ws.send` on anything else."""
    if isinstance(ws, BridgeConnection):
        await ws.send_binary(parts)
    else:
        await ws.send(b"".join(memoryview(part).cast("B") for part in parts))
