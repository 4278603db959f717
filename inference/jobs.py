"""The job runner: one FIFO queue, one job on the backend at a time, results on disk first.

A GPU holds one 20B-parameter model at a time, so jobs from every client (GIMP, Photoshop, the
desktop window) go through a single worker thread. The runner keeps each job's state, forwards
backend progress to subscribers, honours cancel for queued and running jobs, and writes every
finished job to its folder (`inference.job_store`) *before* it reports "done", so a result is
never announced that a reconnecting client could not fetch.

Subscribers are called with the runner's lock held, from the worker thread or from the thread
that called `submit`/`cancel`: that keeps events in order, but a callback must be quick and
must not wait on anything (the bridge hands events to its event loop with
`call_soon_threadsafe`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from layerlift.inference.backends.base import (
    Availability,
    Backend,
    CancelToken,
    DecomposeRequest,
    Progress,
    ProgressCallback,
    ignore_progress,
)
from layerlift.inference.backends.options import OptionSchema
from layerlift.inference.errors import Cancelled, LayerLiftError
from layerlift.inference.input_check import checked_pixels
from layerlift.inference.job_snapshot import (
    JobError,
    JobParams,
    JobProgress,
    JobResult,
    JobSnapshot,
    Quality,
)
from layerlift.inference.job_states import TERMINAL, JobState, parse_state
from layerlift.inference.job_store import JobStore, valid_job_id
from layerlift.inference.layers import LayerStack
from layerlift.inference.settings import Settings

log = logging.getLogger(__name__)


class QueueFull(LayerLiftError):
    """Too many jobs waiting; the client should retry after some finish."""

    code = "queue_full"


class UnknownJob(LayerLiftError):
    """No job with that id (never existed, or its result was removed by retention)."""

    code = "unknown_job"


class ResultUnavailable(LayerLiftError):
    """The job exists but has no result to send (failed, cancelled, or not finished yet)."""

    code = "no_result"


# Backend progress stages that are job states of their own; any other stage counts as running.
_STAGE_STATES = frozenset({JobState.LOADING, JobState.REFINING})


def _saved_form(stack: LayerStack) -> LayerStack:
    """`stack` as the job store gives it back: JSON-safe meta, and read-only pixels (they are
    shared with every reader of the result)."""
    from layerlift.inference.formats.manifest import json_safe

    layers = []
    for layer in stack.layers:
        pixels = layer.pixels.view()
        pixels.flags.writeable = False
        layers.append(replace(layer, pixels=pixels, meta=json_safe(layer.meta)))
    return LayerStack(stack.width, stack.height, layers, json_safe(stack.meta))


def _copy_stack(stack: LayerStack) -> LayerStack:
    """New stack and layer objects (own meta dicts) over the same pixels."""
    layers = [replace(layer, meta=dict(layer.meta)) for layer in stack.layers]
    return LayerStack(stack.width, stack.height, layers, dict(stack.meta))


class BackendProvider:
    """Which backends exist, which one `auto` means, and how to build one.

    The default uses the registry in `inference.backends`; tests pass their own (a slow
    backend for cancel tests) without touching the registry.
    """

    def names(self) -> list[str]:
        from layerlift.inference.backends import backend_names

        return backend_names()

    def backend_type(self, name: str) -> type[Backend]:
        """The backend's class, read without building it (nor importing torch)."""
        from layerlift.inference.backends import backend_class

        return backend_class(name)

    def option_schema(self, name: str) -> OptionSchema:
        """What a request for `name` may set: its backend's options, or for `auto` every
        backend's (a value must then suit each backend that declares its name)."""
        if name != "auto":
            return self.backend_type(name).options
        schemas = []
        for candidate in self.names():
            try:
                schemas.append(self.backend_type(candidate).options)
            except LayerLiftError:  # not installed: it cannot be picked either
                continue
        return OptionSchema.union(schemas)

    def check_options(self, requested: str, resolved: str,
                      options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The one validation of a request's options: refused unless the requested backend
        (or, for `auto`, some backend) declares them; the backend that runs gets its own."""
        checked = self.option_schema(requested).validate(options)
        return self.option_schema(resolved).validate(checked, others=checked.keys())

    def describe(self, settings: Settings) -> list[dict[str, Any]]:
        from layerlift.inference.backends import availability

        described = []
        for name in self.names():
            label, options, presets = name, [], []
            try:
                avail = availability(name, settings)
                cls = self.backend_type(name)
                options = cls.options.to_json(settings)
                presets = cls.options.presets_json()
                if avail.ok:
                    label = getattr(cls, "label", name)
            except Exception as exc:  # a broken backend must not hide the others
                avail = Availability(False, f"{type(exc).__name__}: {exc}")
            described.append({"name": name, "label": label, "available": avail.ok,
                              "reason": avail.reason, "options": options, "presets": presets})
        return described

    def resolve(self, name: str, settings: Settings) -> str:
        from layerlift.inference.backends import choose_backend

        return choose_backend(name, settings)[0]

    def create(self, name: str, settings: Settings) -> Backend:
        from layerlift.inference.backends import create_backend

        return create_backend(name, settings)


@dataclass
class Job:
    """A job as the runner tracks it (mutable, under the runner's lock); `snapshot()` is the
    frozen value everyone else sees."""

    id: str
    backend: str
    request: DecomposeRequest
    width: int
    height: int
    owner: str | None = None
    created: float = field(default_factory=time.time)
    state: JobState = JobState.QUEUED
    position: int | None = None
    stage: str = str(JobState.QUEUED)
    fraction: float = 0.0
    step: int | None = None
    total: int | None = None
    message: str = ""
    started: float | None = None
    finished: float | None = None
    error: JobError | None = None
    result: JobResult | None = None
    image: np.ndarray | None = None
    cancel_token: CancelToken = field(default_factory=CancelToken)

    def snapshot(self) -> JobSnapshot:
        return JobSnapshot(
            id=self.id,
            state=self.state,
            backend=self.backend,
            created=self.created,
            started=self.started,
            finished=self.finished,
            position=self.position,
            params=JobParams(layers=self.request.layers, seed=self.request.seed,
                             options=MappingProxyType(dict(self.request.options)),
                             width=self.width, height=self.height),
            progress=JobProgress(stage=self.stage, fraction=self.fraction, step=self.step,
                                 total=self.total, message=self.message),
            error=self.error,
            result=self.result,
        )

    @classmethod
    def from_snapshot(cls, snapshot: JobSnapshot) -> Job:
        """Rebuild a finished job from its job.json (no image, nothing to run)."""
        params = snapshot.params
        job = cls(
            id=snapshot.id,
            backend=snapshot.backend,
            request=DecomposeRequest(layers=params.layers, seed=params.seed,
                                     options=dict(params.options)),
            width=params.width,
            height=params.height,
            created=snapshot.created,
            state=snapshot.state,
            stage=snapshot.progress.stage,
            fraction=snapshot.progress.fraction,
            started=snapshot.started,
            finished=snapshot.finished,
            error=snapshot.error,
            result=snapshot.result,
        )
        if not job.state.terminal:
            # It was running when the server stopped; its image is gone with the process.
            job.state = JobState.FAILED
            job.error = JobError("interrupted", "the server stopped during this job")
        return job


# Called as listener(snapshot, owner): `owner` is whatever the submitter passed (the bridge's
# connection id), kept out of the snapshot because it means nothing to other clients.
JobListener = Callable[[JobSnapshot, str | None], None]


class JobRunner:
    """Queue, worker thread, cancel, results on disk. Thread-safe."""

    def __init__(
        self,
        settings: Settings | None = None,
        store: JobStore | None = None,
        provider: BackendProvider | None = None,
        max_queue: int = 256,
        prune_interval: float = 10.0,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.store = store if store is not None else JobStore()
        self.provider = provider if provider is not None else BackendProvider()
        self.max_queue = max_queue
        self.prune_interval = prune_interval
        self._last_prune = 0.0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._running: Job | None = None
        # The newest finished result, as it was saved: its first fetch (the bridge sends every
        # result to its client the moment it is announced) needs no decoding from disk.
        self._recent: tuple[str, LayerStack] | None = None
        self._backends: dict[str, Backend] = {}
        self._listeners: list[JobListener] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        for record in self.store.load_records():
            try:
                job = Job.from_snapshot(JobSnapshot.from_json(record))
            except (KeyError, TypeError, ValueError, LayerLiftError) as exc:
                log.warning("ignoring job record %s: %s", record.get("id"), exc)
                continue
            self._jobs[job.id] = job
        self.prune()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> JobRunner:
        with self._lock:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._work, name="layerlift-jobs", daemon=True
                )
                self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything, wait for the worker, unload backends."""
        with self._lock:
            self._stopping = True
            for job in list(self._queue):
                self._finish_cancelled_queued(job)
            self._queue.clear()
            if self._running is not None:
                self._running.cancel_token.cancel()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            self._thread = None
        self.unload()

    def preload(self, name: str, progress: ProgressCallback = ignore_progress) -> str:
        """Load backend `name` (or `auto`'s choice) into the instance jobs will use.

        Returns the resolved name. Runs on the caller's thread; a backend with a model guards
        its own loading, so a job that starts meanwhile waits for the same load.
        """
        resolved = self.resolve_backend(name)
        self._backend(resolved).load(progress)
        return resolved

    def unload(self) -> None:
        """Free every loaded model (the tray's "unload" item); the next job loads again."""
        with self._lock:
            backends, self._backends = self._backends, {}
        for backend in backends.values():
            try:
                backend.unload()
            except Exception:  # an unload that fails must not take the server down
                log.exception("unloading backend %s failed", backend)

    # -- subscriptions -----------------------------------------------------------------------
    def subscribe(self, listener: JobListener) -> Callable[[], None]:
        """Call `listener(snapshot, owner)` on every change of any job; returns the
        unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, job: Job) -> None:
        """Tell listeners (lock held, so events arrive in the order states changed)."""
        snapshot = job.snapshot()
        for listener in list(self._listeners):
            try:
                listener(snapshot, job.owner)
            except Exception:
                log.exception("job listener failed")
        self._changed.notify_all()

    # -- queries -----------------------------------------------------------------------------
    def backends(self) -> list[dict[str, Any]]:
        return self.provider.describe(self.settings)

    def option_schema(self, name: str) -> OptionSchema:
        return self.provider.option_schema(name)

    def resolve_backend(self, name: str) -> str:
        """`auto` or a name -> the backend that will run (raises if it cannot run here)."""
        return self.provider.resolve(name, self.settings)

    def get(self, job_id: str) -> JobSnapshot:
        return self._job(job_id).snapshot()

    def _job(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id) if valid_job_id(job_id) else None
        if job is None:
            raise UnknownJob(f"no job {job_id!r} (it may have been removed by retention)")
        return job

    def jobs(self) -> list[JobSnapshot]:
        """Every known job, oldest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.created)
            return [job.snapshot() for job in jobs]

    def active_count(self, owner: str | None = None) -> int:
        """Queued plus running jobs, of one owner or of everyone."""
        with self._lock:
            active = list(self._queue) + ([self._running] if self._running else [])
            return sum(1 for job in active if owner is None or job.owner == owner)

    def read_result(self, job_id: str) -> LayerStack:
        """The finished stack: the newest one from memory, any other read back from disk.

        Both are the same stack (what the job store wrote, meta as JSON keeps it); pixels
        kept in memory are read-only, and each call gets its own stack and layer objects.
        """
        job = self._job(job_id)
        if job.state is not JobState.DONE:
            raise ResultUnavailable(f"job {job_id} has no result: it is {job.state}")
        with self._lock:
            recent = self._recent
        if recent is not None and recent[0] == job_id:
            return _copy_stack(recent[1])
        try:
            return self.store.read_result(job_id)
        except (OSError, ValueError, LayerLiftError) as exc:
            raise ResultUnavailable(f"the result of job {job_id} cannot be read: {exc}") from exc

    def wait(self, job_id: str, timeout: float | None = None) -> JobSnapshot:
        """Block until the job is finished (or `timeout` passes); returns its snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                job = self._job(job_id)
                if job.state in TERMINAL:
                    return job.snapshot()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return job.snapshot()
                self._changed.wait(remaining)

    # -- submit and cancel -------------------------------------------------------------------
    def submit(
        self,
        image: np.ndarray,
        request: DecomposeRequest,
        backend: str = "auto",
        owner: str | None = None,
    ) -> JobSnapshot:
        """Queue a decomposition; returns the job's snapshot (state queued, with position)."""
        pixels = checked_pixels(image)
        name = self.provider.resolve(backend, self.settings)
        request = replace(request, options=self.provider.check_options(backend, name,
                                                                       request.options))
        with self._lock:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} jobs are waiting already; try again later")
            job_id = secrets.token_hex(8)
            while job_id in self._jobs:
                job_id = secrets.token_hex(8)
            job = Job(
                id=job_id,
                backend=name,
                request=request,
                width=int(pixels.shape[1]),
                height=int(pixels.shape[0]),
                owner=owner,
                image=pixels,
            )
            self._jobs[job_id] = job
            self._queue.append(job)
            job.position = self._position(job)
            job.message = "waiting for the backend"
            self._emit(job)
            return job.snapshot()

    def _position(self, job: Job) -> int:
        """1 = next to run. The running job is not in the queue."""
        return self._queue.index(job) + 1

    def cancel(self, job_id: str) -> JobSnapshot:
        """Cancel a queued job at once or ask a running one to stop; finished jobs stay."""
        job = self._job(job_id)
        with self._lock:
            if job in self._queue:
                self._queue.remove(job)
                self._finish_cancelled_queued(job)
                self._announce_positions()
            elif job is self._running:
                job.cancel_token.cancel()
                job.message = "cancelling"
                self._emit(job)
            return job.snapshot()

    def _finish_cancelled_queued(self, job: Job) -> None:
        job.state = JobState.CANCELLED
        job.stage = str(JobState.CANCELLED)
        job.position = None
        job.image = None
        job.finished = time.time()
        job.message = "cancelled before it started"
        job.error = JobError(Cancelled.code, "cancelled by the user")
        self._save_record(job)
        self._emit(job)

    def _announce_positions(self) -> None:
        for job in self._queue:
            position = self._position(job)
            if position != job.position:
                job.position = position
                self._emit(job)

    # -- the worker --------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                self._running = job
                job.position = None
                job.started = time.time()
                job.state = JobState.LOADING
                job.stage = str(JobState.LOADING)
                job.message = f"preparing the {job.backend} backend"
                self._emit(job)
                self._announce_positions()
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running = None
                    if time.monotonic() - self._last_prune >= self.prune_interval:
                        self.prune()
                    self._changed.notify_all()

    def _backend(self, name: str) -> Backend:
        with self._lock:
            backend = self._backends.get(name)
        if backend is None:
            backend = self.provider.create(name, self.settings)
            with self._lock:
                self._backends[name] = backend
        return backend

    def _on_progress(self, job: Job, event: Progress) -> None:
        with self._lock:
            if job.state in TERMINAL:
                return
            stage = parse_state(str(event.stage).lower(), JobState.RUNNING)
            job.state = stage if stage in _STAGE_STATES else JobState.RUNNING
            job.stage = event.stage
            job.fraction = max(job.fraction, min(1.0, max(0.0, float(event.fraction))))
            job.step, job.total = event.step, event.total
            job.message = event.message
            self._emit(job)

    def _run(self, job: Job) -> None:
        image, job.image = job.image, None
        token = job.cancel_token
        try:
            token.raise_if_cancelled()
            backend = self._backend(job.backend)
            token.raise_if_cancelled()
            with self._lock:
                job.state, job.stage, job.message = JobState.RUNNING, str(JobState.RUNNING), ""
                self._emit(job)
            stack = backend.decompose(image, job.request, lambda e: self._on_progress(job, e),
                                      token)
            del image
            # A cancel that came after the backend's last poll still wins.
            token.raise_if_cancelled()
            with self._lock:
                job.state, job.stage = JobState.WRITING, str(JobState.WRITING)
                job.message = "saving layers"
                self._emit(job)
            self._finish_done(job, stack, backend.reported_meta)
        except Cancelled as exc:
            self._finish(job, JobState.CANCELLED, JobError(exc.code, exc.message))
        except LayerLiftError as exc:
            self._finish(job, JobState.FAILED, JobError(exc.code, exc.message))
        except MemoryError:
            self._finish(job, JobState.FAILED, JobError(
                "out_of_memory", "the computer ran out of memory for this job"))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self._finish(job, JobState.FAILED, JobError(
                "internal", f"internal error: {type(exc).__name__}: {exc}"))

    def _finish_done(self, job: Job, stack: LayerStack, reported: tuple[str, ...]) -> None:
        trimmed = stack.trimmed()
        meta = trimmed.meta
        result = JobResult(
            layers=len(trimmed.layers),
            names=tuple(layer.name for layer in trimmed.layers),
            quality=Quality.of(meta.get("psnr")),
            # Before refinement: how far the backend itself was from the input.
            quality_before=Quality.of(meta.get("psnr_before")),
            note=meta.get("note") if isinstance(meta.get("note"), str) else None,
            details=MappingProxyType({key: meta[key] for key in reported
                                      if isinstance(meta.get(key), (str, int, float, bool))}),
        )
        done = replace(job.snapshot(), state=JobState.DONE, finished=time.time(),
                       result=result, progress=JobProgress(str(JobState.DONE), 1.0))
        try:
            self.store.save(done.to_json(), trimmed)
        except OSError as exc:
            self._finish(job, JobState.FAILED, JobError(
                "write_failed", f"the result could not be saved: {exc}"), save=False)
            return
        kept = _saved_form(trimmed)
        with self._lock:
            self._recent = (job.id, kept)
            job.state, job.stage, job.fraction, job.message = (
                JobState.DONE, str(JobState.DONE), 1.0, "")
            job.step = job.total = None
            job.finished, job.result = done.finished, result
            self._emit(job)

    def _finish(self, job: Job, state: JobState, error: JobError, save: bool = True) -> None:
        with self._lock:
            job.state, job.stage, job.error = state, str(state), error
            job.finished = time.time()
            job.message = error.message
            if save:
                self._save_record(job)
            self._emit(job)

    def _save_record(self, job: Job) -> None:
        try:
            self.store.save(job.snapshot().to_json())
        except OSError as exc:
            log.warning("could not save the record of job %s: %s", job.id, exc)

    def prune(self) -> list[str]:
        """Apply the retention settings now (the worker also does it between jobs)."""
        with self._lock:
            self._last_prune = time.monotonic()
            protect = {self._running.id} if self._running else set()
            try:
                removed = self.store.prune(
                    self.settings.results_keep_days, self.settings.results_max_mb, protect
                )
            except OSError as exc:
                log.warning("pruning old results failed: %s", exc)
                return []
            for job_id in removed:
                if self._recent is not None and self._recent[0] == job_id:
                    self._recent = None
                job = self._jobs.get(job_id)
                if job is not None and job.state in TERMINAL:
                    del self._jobs[job_id]
            return removed
