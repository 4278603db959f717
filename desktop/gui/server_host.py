"""The bridge server and the job runner, hosted inside the tray app without blocking the GUI.

The tray process owns the one `JobRunner` (and so the GPU): the plug-ins reach it through the
bridge, the window calls it directly. The WebSocket server runs on its own thread with its
own asyncio loop; anything that may be slow (resolving a backend can import torch, loading a
model takes minutes) runs on a single control thread. Results come back as Qt signals, which
Qt delivers on the GUI thread because this object lives there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import fields
from enum import StrEnum
from typing import Any

import numpy as np
from layerlift.inference.backends.base import DecomposeRequest, Progress
from layerlift.inference.errors import LayerLiftError
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.jobs import JobRunner
from layerlift.inference.settings import Settings
from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

DESKTOP_OWNER = "desktop"
# Settings whose change means a loaded model no longer matches them.
_MODEL_FIELDS = ("model", "device", "memory_mode", "offline", "resolution")
_SERVER_FIELDS = ("host", "port")


def _error_words(exc: BaseException) -> tuple[str, str]:
    """(code, sentence) for any exception; unexpected ones are logged with their traceback."""
    if isinstance(exc, LayerLiftError):
        return exc.code, exc.message
    if isinstance(exc, MemoryError):
        return "out_of_memory", "the computer ran out of memory"
    log.error("unexpected error", exc_info=exc)
    return "internal", f"internal error: {type(exc).__name__}: {exc}"


class ModelState(StrEnum):
    """The model's state as the tray shows it (a job's states are `JobState`)."""

    LOADING = "loading"
    LOADED = "loaded"
    UNLOADED = "unloaded"
    ERROR = "error"


class ServerHost(QObject):
    """Owns the runner, the bridge server thread and the control thread; talks in signals."""

    job_event = Signal(object)  # a JobSnapshot after every change, from any client
    server_state = Signal(str, str)  # ("listening", url) | ("error", sentence) | ("stopped", "")
    model_state = Signal(str, str)  # (a ModelState, sentence)
    submitted = Signal(str, object)  # (tag, JobSnapshot) for a `submit` that was queued
    submit_failed = Signal(str, str, str)  # (tag, error code, sentence)

    def __init__(
        self,
        settings: Settings | None = None,
        runner: JobRunner | None = None,
        token: str | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.runner = runner if runner is not None else JobRunner(settings or Settings.load())
        self.settings = self.runner.settings
        self._token = token
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._control = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="layerlift-control"
        )
        self._unsubscribe: Callable[[], None] | None = None
        self.url: str | None = None
        self.server_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the runner, the loop thread and (asynchronously) the server; returns at once."""
        if self._unsubscribe is None:
            self._unsubscribe = self.runner.subscribe(self._on_job)
        self.runner.start()
        if self._thread is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="layerlift-bridge", daemon=True
            )
            self._thread.start()
        self._schedule(self._start_server())

    def restart_server(self) -> None:
        """Stop listening and listen again with the current host/port (after a port change)."""
        self._schedule(self._start_server())

    def stop(self, timeout: float = 10.0) -> None:
        """Close the server, cancel jobs, stop every thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._stop_server(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
        self._loop = self._thread = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._control.shutdown(wait=False, cancel_futures=True)
        self.runner.stop(timeout)

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _schedule(self, coro: Any) -> None:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the server host is not started")
        asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start_server(self) -> None:
        from layerlift.bridge.server import BridgeServer, ServerConfig

        await self._stop_server()
        host, port = self.settings.host, self.settings.port
        try:
            token = self._token
            if token is None:
                from layerlift.bridge.auth import load_or_create_token

                token = await asyncio.to_thread(load_or_create_token)
            server = BridgeServer(self.runner, ServerConfig(host=host, port=port), token=token)
            await server.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.server_error = (
                f"the bridge cannot listen on {host}:{port} ({reason}); the plug-ins cannot "
                "connect until the port is changed in Settings"
            )
            log.error("bridge start failed on %s:%s: %s", host, port, exc)
            self.url = None
            self.server_state.emit("error", self.server_error)
            return
        except Exception as exc:
            _code, words = _error_words(exc)
            self.server_error = f"the bridge did not start: {words}"
            self.url = None
            self.server_state.emit("error", self.server_error)
            return
        self._server, self.url, self.server_error = server, server.url, None
        log.info("bridge listening on %s", server.url)
        self.server_state.emit("listening", server.url)

    async def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                await server.stop()
            except Exception:
                log.exception("stopping the bridge failed")
            self.url = None
            self.server_state.emit("stopped", "")

    # -- jobs --------------------------------------------------------------------------------
    def _on_job(self, job: JobSnapshot, _owner: str | None) -> None:
        # Called by the runner with its lock held: emit (queued to the GUI thread) and return.
        self.job_event.emit(job)

    def submit(
        self, tag: str, image: np.ndarray, request: DecomposeRequest, backend: str = "auto"
    ) -> None:
        """Queue a decomposition off the GUI thread; answers with `submitted` or `submit_failed`.

        Resolving `auto` can import torch and probe the GPU, which would freeze the window.
        """

        def work() -> None:
            try:
                job = self.runner.submit(image, request, backend, owner=DESKTOP_OWNER)
            except Exception as exc:
                code, words = _error_words(exc)
                self.submit_failed.emit(tag, code, words)
                return
            self.submitted.emit(tag, job)

        self._control.submit(work)

    def cancel(self, job_id: str) -> None:
        try:
            self.runner.cancel(job_id)
        except LayerLiftError as exc:
            log.info("cancel %s: %s", job_id, exc.message)

    # -- the model ---------------------------------------------------------------------------
    def load_model(self, name: str = "qwen") -> None:
        """Load a backend's model now (tray "Load model") so the first job does not wait."""

        def work() -> None:
            self.model_state.emit(ModelState.LOADING, f"loading the {name} model")
            try:
                resolved = self.runner.preload(name, self._model_progress)
            except Exception as exc:
                _code, words = _error_words(exc)
                self.model_state.emit(ModelState.ERROR, f"the model could not be loaded: {words}")
                return
            self.model_state.emit(ModelState.LOADED, f"the {resolved} model is loaded")

        self._control.submit(work)

    def _model_progress(self, event: Progress) -> None:
        self.model_state.emit(ModelState.LOADING, event.message or "loading the model")

    def unload_model(self) -> None:
        def work() -> None:
            self.runner.unload()
            self.model_state.emit(ModelState.UNLOADED, "the model is unloaded")

        self._control.submit(work)

    # -- settings ----------------------------------------------------------------------------
    def apply_settings(self, new: Settings) -> set[str]:
        """Adopt `new` in place (backends hold the same object); returns the changed fields.

        A changed port or host restarts the server; a changed model, device or memory mode
        unloads the model so the next job loads what the settings now say.
        """
        changed = {f.name for f in fields(Settings)
                   if getattr(self.settings, f.name) != getattr(new, f.name)}
        for name in changed:
            setattr(self.settings, name, getattr(new, name))
        if changed & set(_MODEL_FIELDS):
            self.unload_model()
        if changed & set(_SERVER_FIELDS) and self._loop is not None:
            self.restart_server()
        return changed
