"""Every bound the bridge enforces, in one place, and announced to clients in `welcome`.

A local server that drives the GPU must survive any client: a buggy plug-in, a fuzzer, or a
process that found the port. Each limit here turns a resource a client could exhaust (memory,
the queue, a socket held open) into a clear refusal with a stable error code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from layerlift.bridge.wire import HEADER_SIZE
from layerlift.inference.input_check import MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    # Seconds a new connection has to send `hello` (or `pair`) before it is closed.
    auth_timeout: float = 5.0
    # Largest WebSocket message before authentication: `hello` and `pair` are tiny.
    max_preauth_bytes: int = 16 * 1024
    # Largest text (JSON) message after authentication.
    max_text_bytes: int = 256 * 1024
    # Input image bounds: pixels (width x height), either side, and the encoded payload.
    # Pixels: the input limit of files too (inference.input_check says why it is where it is).
    max_image_pixels: int = MAX_PIXELS
    max_image_side: int = 16384
    max_image_bytes: int = 8192 * 8192 * 4
    # Jobs queued or running per connection, and connections at once.
    max_jobs_per_client: int = 16
    max_connections: int = 64

    @property
    def max_message_bytes(self) -> int:
        """The WebSocket message size limit after authentication (image frame + header)."""
        return max(self.max_text_bytes, self.max_image_bytes + HEADER_SIZE)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["max_message_bytes"] = self.max_message_bytes
        return data
