"""Receive throughput of the GIMP plug-in's own WebSocket client, and nothing else.

The plug-in's `ll_websocket` (as LayerLift's installer lays it out, with `ll_wire` beside
it) receives `--layers` raw RGBA8 layers of `--size`² in 1 MiB fragments, as the bridge
server sends them, from a forked process that writes pre-built frames to a loopback TCP
socket; each layer's pixels then become the `bytes` that GIMP's Gegl.Buffer.set takes
(what `ll_bridge` does with a layer). No server, job store or JSON: only the receive path,
which bench/handoff.py measures inside the whole handoff. The client's CPU time excludes the
sender's, which runs in its own process as the server does.

Each layer is received into the last one's buffer (`recv(spare)`) as `ll_bridge` does,
unless `--no-reuse` or the plug-in's `recv` takes no spare (an older one).
`--plugin DIR` runs the modules in DIR instead (a folder holding `ll_websocket.py` and
`ll_wire.py`), to compare with another version of the plug-in on the same machine.

Usage: .venv/bin/python bench/gimp_receive.py [--size 4096] [--layers 4] [--repeat 7]
"""

from __future__ import annotations

import argparse
import inspect
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FRAGMENT = 1024 * 1024  # what the bridge server sends a layer in


def _load(folder: Path) -> tuple[ModuleType, ModuleType]:
    sys.path.insert(0, str(folder))
    import ll_websocket
    import ll_wire
    return ll_websocket, ll_wire


def _frames(ll_wire: ModuleType, size: int) -> list[bytes | memoryview]:
    """One layer message as the server's fragments: header and payload of each."""
    pixels = bytes(range(256)) * (size * size * 4 // 256)
    message = ll_wire.FrameHeader(ll_wire.KIND_LAYER, ll_wire.ENCODING_RGBA8, 0, "bench",
                                  size, size).pack() + pixels
    view = memoryview(message)
    frames: list[bytes | memoryview] = []
    for start in range(0, len(message), FRAGMENT):
        part = view[start:start + FRAGMENT]
        frames.append(ll_wire.frame_header(ll_wire.OP_BINARY if start == 0 else ll_wire.OP_CONT,
                                           len(part), fin=start + FRAGMENT >= len(message)))
        frames.append(part)
    return frames


def _pixels(message: bytes | bytearray, header_size: int) -> bytes:
    """What ll_bridge hands GIMP: the pixels past the header, as bytes."""
    if isinstance(message, bytes):  # a client that returns bytes: a slice is a copy
        return message[header_size:]
    with memoryview(message) as view:
        return bytes(view[header_size:])


def run_once(ll_websocket: ModuleType, ll_wire: ModuleType, frames: list, layers: int,
             reuse: bool) -> tuple[float, float, int]:
    """Wall and client CPU seconds to receive `layers` layers; bytes received.

    With `reuse`, each layer is received into the last one's buffer, as `ll_bridge` does.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    pid = os.fork()
    if pid == 0:  # the sender
        try:
            connection, _ = listener.accept()
            for _ in range(layers):
                for frame in frames:
                    connection.sendall(frame)
            connection.recv(1)  # until the client has everything and hangs up
        finally:
            os._exit(0)
    try:
        sock = socket.create_connection(listener.getsockname(), timeout=60)
        ws = ll_websocket.WebSocket(sock)
        cpu, start = time.process_time(), time.perf_counter()
        received = 0
        spare = None
        for _ in range(layers):
            message = ws.recv(spare) if reuse else ws.recv()
            pixels = _pixels(message, ll_wire.HEADER_SIZE)
            received += len(pixels)
            spare = message if isinstance(message, bytearray) else None
            del pixels, message
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        sock.close()
    finally:
        listener.close()
        os.waitpid(pid, 0)
    return seconds, cpu, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--plugin", type=Path, help="a folder with ll_websocket.py and "
                                                    "ll_wire.py (default: install this one)")
    parser.add_argument("--no-reuse", action="store_true",
                        help="receive every layer into a new buffer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        plugin = args.plugin
        if plugin is None:
            from layerlift.desktop.gimp_install import install

            plugin = Path(folder) / "plugin"
            install(plugin)
        ll_websocket, ll_wire = _load(plugin)
        frames = _frames(ll_wire, args.size)
        reuse = "spare" in inspect.signature(ll_websocket.WebSocket.recv).parameters
        if args.no_reuse:
            reuse = False
        runs = [run_once(ll_websocket, ll_wire, frames, args.layers, reuse)
                for _ in range(args.repeat)]
    assert all(received == args.layers * args.size ** 2 * 4 for _, _, received in runs)
    walls = sorted(wall for wall, _, _ in runs)
    mib = args.layers * args.size ** 2 * 4 / 2 ** 20
    load = os.getloadavg()[0]
    into = "each into the last one's buffer" if reuse else "into new buffers"
    print(f"{plugin}: {args.layers} x {args.size}² ({mib:.0f} MiB) in 1 MiB fragments, "
          f"{into}, load {load:.1f}")
    print(f"  wall best {walls[0]:.3f} s ({mib / walls[0]:.0f} MiB/s)  median "
          f"{statistics.median(walls):.3f} s;  client CPU median "
          f"{statistics.median(cpu for _, cpu, _ in runs):.3f} s")


if __name__ == "__main__":
    main()
