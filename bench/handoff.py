"""From the model's last step to the client showing the layers, through the real server.

Part of `bench/qwen_overhead.py`, and a benchmark of its own (`python bench/handoff.py`). A
job runs in a real `JobRunner` (job store on disk) behind a real `BridgeServer`; a real client
in a process of its own (as the GIMP and Photoshop plug-ins are) submits it over loopback:
`python`, the `BridgeClient`, or `gimp`, the GIMP plug-in's `ll_bridge` as LayerLift's
installer lays it out. Four moments are stamped (`time.perf_counter`, CLOCK_MONOTONIC on
Linux, so the two processes share the clock):

- `refining`: the runner's first "refining" event, i.e. the pipeline call has returned
  (with the stand-in backend: the moment it starts refining);
- `done`: the runner announces the job done, its result complete on disk;
- `held`: the client has every layer of the result (decoded into arrays or bytes);
- `shown`: the client's decompose call returned: it holds the layers *and* knows the job is
  done, the moment a plug-in starts inserting them into the document.

`announce_s` = done - refining (`store_s` of it: from the runner's "writing" to "done"),
`held_s` = held - refining, `shown_s` = shown - refining. The picture's upload comes before
`refining`, so it is not counted. `handoff_s` = shown - writing leaves out the refinement,
whose time varies most on a shared machine: it is the part that saving and sending take
("writing" comes just before trimming, which copies nothing for these layers: 0.07 s at
4096 px).

Alone, it runs the Qwen backend's own refinement on smooth noise layers (the worst case of
`bench/qwen_overhead.py --no-model`) for the 480 x 640 poster and square sizes, several times
each, and prints every run and the best and median per client:
`.venv/bin/python bench/handoff.py --sizes 4096 --repeat 5 --clients python gimp`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from layerlift.bridge.server import BridgeServer, ServerConfig  # noqa: E402
from layerlift.inference.backends.base import (  # noqa: E402
    Backend,
    CancelToken,
    DecomposeRequest,
    Progress,
    ProgressCallback,
    ignore_progress,
)
from layerlift.inference.job_snapshot import JobSnapshot  # noqa: E402
from layerlift.inference.job_store import JobStore  # noqa: E402
from layerlift.inference.jobs import BackendProvider, JobRunner  # noqa: E402
from layerlift.inference.layers import LayerStack  # noqa: E402
from layerlift.inference.settings import Settings  # noqa: E402

TOKEN = "bench-token"
CLIENTS = ("python", "gimp")


class OneBackend(BackendProvider):
    """A `BackendProvider` whose only backend is the one given (already loaded)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def names(self) -> list[str]:
        return [self.backend.name]

    def backend_type(self, name: str) -> type[Backend]:
        return type(self.backend)

    def describe(self, settings: Settings) -> list[dict[str, Any]]:
        return [{"name": self.backend.name, "label": self.backend.name, "available": True,
                 "reason": "", "options": []}]

    def resolve(self, name: str, settings: Settings) -> str:
        return self.backend.name

    def create(self, name: str, settings: Settings) -> Backend:
        return self.backend


class RefineOnly(Backend):
    """The Qwen backend with its model call already done: refines given low-res layers."""

    name: ClassVar[str] = "refine_only"

    def __init__(self, layers_low: list[np.ndarray], resolution: int) -> None:
        super().__init__(Settings(steps=1))
        self.layers_low = layers_low
        self.resolution = resolution

    def decompose(self, image: np.ndarray, request: DecomposeRequest,
                  progress: ProgressCallback = ignore_progress,
                  cancel: CancelToken | None = None) -> LayerStack:
        from layerlift.inference.backends.qwen import QwenBackend
        from layerlift.inference.backends.qwen.caption import CaptionResult
        from layerlift.inference.backends.qwen.pipeline_call import parse_options

        qwen = QwenBackend(self.settings)
        options = parse_options(DecomposeRequest(
            layers=len(self.layers_low), options={"resolution": self.resolution}),
            qwen.settings)
        progress(Progress("running", 0.9, "denoising step 1/1", 1, 1))
        caption = CaptionResult("bench", "user", "user")
        return qwen._refine(image, self.layers_low, options, caption, {}, progress)


class _LoopThread:
    """The server's event loop in a thread of its own, as in a separate process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def time_handoff(backend: Backend, image: np.ndarray, request: DecomposeRequest,
                 folder: Path, client: str = "python") -> dict[str, float]:
    """Run one job through runner, store and bridge; the seconds after the model is done."""
    stamps: dict[str, float] = {}

    def listener(record: JobSnapshot, owner: str | None) -> None:
        now = time.perf_counter()
        if record.state == "refining":
            stamps.setdefault("refining", now)
        elif record.state == "writing":
            stamps.setdefault("writing", now)
        elif record.state == "done":
            stamps["done"] = now

    folder.mkdir(parents=True, exist_ok=True)
    picture = folder / "picture.npy"
    np.save(picture, np.ascontiguousarray(image, np.uint8))
    runner = JobRunner(backend.settings, JobStore(folder / "jobs"), OneBackend(backend))
    runner.subscribe(listener)
    runner.start()
    side = _LoopThread()

    async def start() -> BridgeServer:
        server = BridgeServer(runner, ServerConfig(port=0), token=TOKEN)
        await server.start()
        return server

    server = side.call(start())
    command = [sys.executable, __file__, "--client-run", client, "--port", str(server.port),
               "--picture", str(picture), "--backend", backend.name,
               "--layers", str(request.layers or 0), "--plugin", str(folder / "plugin")]
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    finally:
        side.call(server.stop())
        side.close()
        runner._backends.clear()  # the backend is the caller's: the runner must not unload it
        runner.stop()
    if done.returncode != 0:
        raise RuntimeError(f"the {client} client failed:\n{done.stderr[-3000:]}")
    stamps.update(json.loads(done.stdout.strip().splitlines()[-1]))
    if not stamps.get("layers"):
        raise RuntimeError("the client received no layers")
    return {"announce_s": stamps["done"] - stamps["refining"],
            "store_s": stamps["done"] - stamps["writing"],
            "held_s": stamps["held"] - stamps["refining"],
            "shown_s": stamps["shown"] - stamps["refining"],
            "handoff_s": stamps["shown"] - stamps["writing"]}


# --- the client, in its own process --------------------------------------------------------


def _python_client(port: int, image: np.ndarray, backend: str,
                   layers: int | None) -> dict[str, float]:
    from layerlift.bridge.client import BridgeClient

    stamps: dict[str, float] = {}

    class Stamped(BridgeClient):
        async def _read_layers(self, message: dict[str, Any]) -> LayerStack:
            stack = await super()._read_layers(message)
            stamps["held"] = time.perf_counter()
            return stack

    async def main() -> LayerStack:
        async with Stamped(f"ws://127.0.0.1:{port}", TOKEN) as bridge:
            return await bridge.run(image, backend=backend, layers=layers)

    stack = asyncio.run(main())
    stamps["shown"] = time.perf_counter()
    return {**stamps, "layers": len(stack.layers)}


def _gimp_client(port: int, image: np.ndarray, backend: str, layers: int | None,
                 plugin: Path) -> dict[str, float]:
    """The GIMP plug-in's own protocol client, installed as users get it."""
    from layerlift.desktop.gimp_install import install

    install(plugin)
    sys.path.insert(0, str(plugin))
    import ll_bridge  # type: ignore[import-not-found]

    stamps: dict[str, float] = {}

    class Stamped(ll_bridge.BridgeSession):
        def _read_result(self, message: dict) -> Any:
            result = super()._read_result(message)
            stamps["held"] = time.perf_counter()
            return result

    height, width = image.shape[:2]
    with Stamped(port=port, token=TOKEN) as session:
        result = session.decompose(image.tobytes(), width, height, layers=layers,
                                   backend=backend)
    stamps["shown"] = time.perf_counter()
    return {**stamps, "layers": len(result.layers)}


def client_main(args: argparse.Namespace) -> int:
    image = np.load(args.picture)
    layers = args.layers or None
    if args.client_run == "python":
        stamps = _python_client(args.port, image, args.backend, layers)
    else:
        stamps = _gimp_client(args.port, image, args.backend, layers, Path(args.plugin))
    print(json.dumps(stamps))
    return 0


# --- alone: several runs, best and median ----------------------------------------------------


def _summary(values: list[float]) -> str:
    return f"best {min(values):5.2f}  median {statistics.median(values):5.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[4096],
                        help="square sizes besides the 480x640 poster")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=640)
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=["python"])
    parser.add_argument("--json", action="store_true", help="also print every run as JSON")
    parser.add_argument("--tmp", help="folder for the job store (default: the system's "
                        "temporary folder; /dev/shm leaves the disk's writeback out)")
    parser.add_argument("--client-run", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--picture", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--plugin", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client_run:
        return client_main(args)

    from bench.qwen_overhead import inputs, low_layers

    print(f"load {os.getloadavg()[0]:.1f}; {args.layers} noise layers at the "
          f"{args.resolution} bucket; seconds after the model is done")
    keys = ("announce_s", "store_s", "held_s", "shown_s", "handoff_s")
    for name, image in inputs(args.sizes):
        backend = RefineOnly(low_layers("noise", image, args.layers, args.resolution),
                             args.resolution)
        runs: dict[str, list[dict[str, float]]] = {client: [] for client in args.clients}
        for index in range(args.repeat):
            for client in args.clients:  # interleaved, so load changes hit every client alike
                with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
                    row = time_handoff(backend, image, DecomposeRequest(layers=args.layers),
                                       Path(tmp), client)
                runs[client].append(row)
                print(f"{name:<18}{client:<7}run {index + 1}: "
                      + "  ".join(f"{key[:-2]} {row[key]:.2f}" for key in keys)
                      + f"  (load {os.getloadavg()[0]:.1f})", flush=True)
                if args.json:
                    print(json.dumps({"input": name, "client": client, **row}))
        for client, rows in runs.items():
            for key in keys:
                print(f"{name:<18}{client:<7}{key[:-2]:<9}"
                      f"{_summary([row[key] for row in rows])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
