"""The `qwen` backend: Qwen-Image-Layered through diffusers, on the user's own GPU.

The backend owns one loaded pipeline (minutes to load, tens of GB), reused across jobs until
`unload()` or until a job needs another memory mode. A decomposition is: validate the
request, plan its memory (memory.py: under `auto` the mode is picked per job from its layers
and resolution, and a job that fits no mode is refused before anything loads), load if needed
(its own progress stage), caption the picture unless the user gave a caption (its own stage,
"captioning"), encode the caption, denoise with per-step progress and cancel, then bring the
layers back to full resolution and make them recomposite to the input. An out-of-memory error
under `auto` retries that job one mode lower; the next job plans afresh. torch and diffusers
are imported only here, inside methods.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from typing import Any, ClassVar

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
from layerlift.inference.backends.qwen import devices, memory
from layerlift.inference.backends.qwen.caption import (
    CaptionResult,
    FourBitEncoder,
    PromptCache,
)
from layerlift.inference.backends.qwen.loading import (
    ModelSource,
    apply_offline_environment,
    check_model_files,
    resolve_model,
)
from layerlift.inference.backends.qwen.options import QWEN_OPTIONS
from layerlift.inference.backends.qwen.pipeline_call import (
    CallOptions,
    StepReporter,
    bucket_size,
    call_kwargs,
    parse_options,
)
from layerlift.inference.errors import (
    BackendUnavailable,
    BadRequest,
    Cancelled,
    LayerLiftError,
    OutOfMemory,
)
from layerlift.inference.input_check import checked_pixels
from layerlift.inference.job_states import JobState
from layerlift.inference.layers import LayerStack, psnr
from layerlift.inference.settings import Settings

log = logging.getLogger(__name__)

_REQUIRED_PACKAGES = ("torch", "diffusers", "transformers", "accelerate")
# Fractions of the whole job given to each stage (progress never goes back).
_LOADED_AT, _CAPTIONED_AT, _DENOISED_AT = 0.05, 0.10, 0.90
# What an out-of-memory error may teach the plan: activations at most this many times the
# fitted figures (a failure caused by another program must not shut the fast modes out).
_MAX_PLAN_RATIO = 4.0


def layer_names(count: int) -> list[str]:
    """Bottom-first names: the model's first layer is the background."""
    return ["Background", *(f"Layer {i}" for i in range(2, count + 1))]


def _forget_frames(exc: BaseException) -> None:
    """Drop the tracebacks of an out-of-memory error and of the errors it chains.

    The failed call's frames hold the pipeline and its activations (the pipeline's step loop
    even snapshots its locals); while a traceback keeps them, freeing frees nothing and a
    retry in a lower mode runs out of memory again. The trace is logged first, as text.
    """
    if log.isEnabledFor(logging.DEBUG):
        log.debug("out of memory:\n%s", "".join(traceback.format_exception(exc)))
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


def _remove_hooks(pipe: Any) -> None:
    """Detach offload hooks, which hold the components (and pinned buffers) alive."""
    remove = getattr(pipe, "remove_all_hooks", None)
    if callable(remove):
        try:
            remove()
        except Exception:  # freeing must not fail the job that triggered it
            log.debug("removing offload hooks failed", exc_info=True)


class QwenBackend(Backend):
    """Qwen-Image-Layered (diffusers `QwenImageLayeredPipeline`)."""

    name: ClassVar[str] = "qwen"
    label: ClassVar[str] = "Qwen-Image-Layered (GPU)"
    options: ClassVar[OptionSchema] = QWEN_OPTIONS
    reported_meta: ClassVar[tuple[str, ...]] = (
        "caption", "caption_source", "caption_way", "caption_seconds", "caption_tokens",
        "caption_truncated", "memory_mode", "memory_mode_reason", "planned_vram_gib",
        "peak_vram_gib", "device", "resolution", "steps", "timings", *(
            f"{phase}_seconds" for phase in ("text", "denoise", "decode", "moves", "fixed",
                                             "total")))

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._lock = threading.RLock()
        self._pipe: Any = None
        self._loaded_key: tuple[str, str, str] | None = None
        self._source: ModelSource | None = None
        self._device: devices.DeviceInfo | None = None
        self._mode: str | None = None
        self._mode_why = ""
        # Learnt from out-of-memory errors: how much larger than planned the activations were
        # (>= 1). A safety margin for later plans, never a mode: jobs that fit the corrected
        # plan still get the fast modes.
        self._plan_ratio = 1.0
        self._prompts = PromptCache()
        self._four_bit: FourBitEncoder | None = None

    # -- availability ------------------------------------------------------------------------
    @classmethod
    def availability(cls, settings: Settings | None = None) -> Availability:
        """Model configured and complete, libraries importable, and the device asked for.

        With `device` auto and no GPU, a run the user asked for by name goes to the CPU with
        a warning (slow, but what was asked for); `auto_availability` keeps `--backend auto`
        off it.
        """
        import importlib.util

        settings = settings or Settings()
        missing = [p for p in _REQUIRED_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            # A frozen bundle cannot pip install: point at the bundle that has the GPU stack.
            remedy = ("use the LayerLift 'gpu' bundle" if getattr(sys, "frozen", False)
                      else "pip install 'layerlift[qwen]'")
            return Availability(False, f"{', '.join(missing)} not installed ({remedy})")
        try:
            source = resolve_model(settings.model)
            check_model_files(source)
        except LayerLiftError as exc:
            return Availability(False, exc.message)
        if (settings.device or "auto") in ("auto", "cpu"):
            return Availability(True)
        try:
            ok, why = devices.gpu_check(settings.device)
        except BadRequest as exc:
            return Availability(False, exc.message)
        return Availability(ok, "" if ok else why)

    @classmethod
    def auto_availability(cls, settings: Settings | None = None) -> Availability:
        """`auto` picks Qwen only with a usable GPU: never start an hours-long CPU run unasked."""
        settings = settings or Settings()
        avail = cls.availability(settings)
        if not avail.ok:
            return avail
        try:
            ok, why = devices.gpu_check(settings.device)
        except BadRequest as exc:
            return Availability(False, exc.message)
        return Availability(ok, "" if ok else why)

    # -- planning ----------------------------------------------------------------------------
    def _machine(self, info: devices.DeviceInfo) -> memory.Machine:
        return memory.Machine(
            kind=info.kind, name=info.name, free_vram_bytes=info.budget_bytes,
            total_vram_bytes=info.total_bytes, ram_bytes=devices.ram_bytes(),
            libraries=memory.installed_libraries(),
        )

    def _choose_mode(self, info: devices.DeviceInfo, job: memory.Job,
                     below: str | None = None,
                     picture: tuple[int, int] | None = None) -> tuple[str, str]:
        """The memory mode for this job; raises OutOfMemory (before loading) if none fits."""
        machine = self._machine(info)
        requested = self.settings.memory_mode or "auto"
        if requested != "auto":
            memory.check_mode(requested, info.kind, machine.libraries)
            ok, verdict = memory.judge(requested, job, machine, self._plan_ratio)
            if not ok and info.kind == "cuda":
                log.warning("memory mode %r for %s: %s; it may run out of memory", requested,
                            job.describe(), verdict)
            return requested, f"memory mode {requested!r} chosen by the user"
        mode, why = memory.choose_auto(job, machine, self._plan_ratio, below)
        if mode is not None:
            return mode, why
        if below is not None:
            lower = memory.next_lower(below, info.kind, machine.libraries)
            if lower is not None:
                return lower, (f"auto retries in {lower!r}, one mode below {below!r}, although "
                               f"the plan does not fit it either")
        raise OutOfMemory(
            "this job fits no memory mode here: "
            + memory.refusal(job, machine, picture, self._plan_ratio)
        )

    # -- loading -----------------------------------------------------------------------------
    def _ensure_loaded(self, info: devices.DeviceInfo, mode: str, why: str, job: memory.Job,
                       progress: ProgressCallback) -> None:
        source: ModelSource = resolve_model(self.settings.model)
        check_model_files(source)
        key = (str(source.folder), info.device, mode)
        if self._pipe is not None and key == self._loaded_key:
            if why != self._mode_why:
                log.info("%s", why)
                self._mode_why = why
            return
        self._release_pipeline()
        if info.warning:
            log.warning(info.warning)
        log.info("%s", why)
        progress(Progress(JobState.LOADING, 0.0, f"loading {source.describe()} on {info.device} "
                                          f"({why})"))
        apply_offline_environment(self.settings.offline)
        from layerlift.inference.backends.qwen.placement import load_pipeline

        started = time.monotonic()
        self._device, self._mode, self._mode_why, self._source = info, mode, why, source
        try:
            self._pipe = load_pipeline(source, info, mode, self.settings.offline, job)
        except Exception as exc:
            if devices.is_out_of_memory(exc):
                raise
            self._release_pipeline()
            # A corrupt shard or a version mismatch: say which model, keep the library's words.
            raise BackendUnavailable(
                f"loading the model from {source.describe()} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._loaded_key = key
        progress(Progress(JobState.LOADING, _LOADED_AT,
                          f"model loaded in {time.monotonic() - started:.1f} s"))

    def _release_pipeline(self) -> None:
        pipe, self._pipe, self._loaded_key = self._pipe, None, None
        self._prompts.clear()
        if self._four_bit is not None:
            self._four_bit.release()
            self._four_bit = None
        if pipe is not None:
            placement = getattr(pipe, "_layerlift_placement", None)
            if placement is not None:
                placement.release()
                placement.pipe = None
                del placement
                pipe._layerlift_placement = None
            _remove_hooks(pipe)
            # Drop the last reference before collecting: the components and their offload
            # hooks form cycles that only the collector frees, and emptying the CUDA cache
            # while a local (even a bound method) still holds the pipeline frees nothing.
            del pipe
        devices.release_memory(self._device.kind if self._device else "cpu")

    def load(self, progress: ProgressCallback = ignore_progress) -> None:
        with self._lock:
            job = memory.Job.of(memory.DEFAULT_LAYERS, self.settings.resolution)
            info = devices.probe(self.settings.device)
            mode, why = self._choose_mode(info, job)
            self._ensure_loaded(info, mode, why, job, progress)

    def unload(self) -> None:
        with self._lock:
            self._release_pipeline()

    # -- the call ----------------------------------------------------------------------------
    def _four_bit_encoder(self) -> FourBitEncoder:
        if self._four_bit is None:
            assert self._source is not None
            self._four_bit = FourBitEncoder(self._source.folder, self.settings.offline)
        return self._four_bit

    def _free_gib(self) -> float | None:
        info = self._device
        budget = devices.live_budget(info) if info is not None else None
        return None if budget is None else budget / memory.GIB

    def _caption(self, picture: Any, options: CallOptions, progress: ProgressCallback,
                 cancel: CancelToken) -> CaptionResult:
        from layerlift.inference.backends.qwen import caption
        from layerlift.inference.backends.qwen.placement import placement_of

        info = self._device
        kind = info.kind if info else "cpu"
        way, why = memory.caption_way(self._mode or "full", kind, self._free_gib(),
                                      memory.installed_libraries())
        image = caption.prompt_image(self._pipe, picture, options.resolution)
        return caption.caption_picture(
            self._pipe, placement_of(self._pipe), image, options.use_en_prompt, way, why,
            progress, cancel, four_bit=self._four_bit_encoder,
        )

    def _encode_way(self) -> str:
        """Where the prompt embeddings are computed: lowvram onloads the encoder if it fits."""
        if self._mode != "lowvram" or self._device is None or self._device.kind != "cuda":
            return "gpu"
        way, _ = memory.caption_way("lowvram", "cuda", self._free_gib(), ())
        return "onload" if way == "onload" else "streamed"

    def _run(
        self,
        pixels: np.ndarray,
        options: CallOptions,
        job: memory.Job,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> tuple[list[np.ndarray], CaptionResult, dict[str, Any]]:
        import torch
        from layerlift.inference.backends.qwen.caption import encode_prompts
        from layerlift.inference.backends.qwen.placement import placement_of
        from PIL import Image

        pipe = self._pipe
        placement = placement_of(pipe)
        cuda = self._device is not None and self._device.kind == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(placement.device)
        def sync() -> None:  # CUDA runs ahead of Python: time what the GPU has done
            if cuda:
                torch.cuda.synchronize(placement.device)

        def last_step() -> None:
            sync()
            placement.after_last_step()

        started = time.perf_counter()
        placement.prepare(job)
        picture = Image.fromarray(pixels, mode="RGBA")
        if options.caption:
            caption = CaptionResult(options.caption, "user", "user", "given with the job")
        else:
            caption = self._caption(picture, options, progress, cancel)
            cancel.raise_if_cancelled()
        caption_moves = placement.moves_s
        progress(Progress(JobState.RUNNING, _CAPTIONED_AT, "encoding the caption"))
        text_started = time.perf_counter()
        negative = options.negative_prompt if options.true_cfg_scale > 1.0 else None
        embeds = encode_prompts(pipe, placement, caption.text, negative, self._encode_way(),
                                self._prompts)
        sync()
        text_s = time.perf_counter() - text_started
        text_moves = placement.moves_s - caption_moves
        cancel.raise_if_cancelled()
        placement.before_denoise()
        progress(Progress(JobState.RUNNING, _CAPTIONED_AT, "denoising", 0, options.steps))
        reporter = StepReporter(options.steps, progress, cancel, _CAPTIONED_AT, _DENOISED_AT,
                                last_step=last_step)
        generator = torch.Generator(device="cpu").manual_seed(options.seed)
        # The embeddings replace the pipeline's own text encoding; the prompt text only has to
        # be non-empty, or the pipeline would caption the picture again.
        kwargs = call_kwargs(options, picture, caption.text or "(no caption)", generator,
                             reporter)
        kwargs.update(embeds, negative_prompt=None)
        call_started = time.perf_counter()
        output = pipe(**kwargs)
        sync()
        finished = time.perf_counter()
        if reporter.interrupted or cancel.cancelled:
            del output
            devices.release_memory(self._device.kind if self._device else "cpu")
            raise Cancelled(f"cancelled after denoising step {reporter.steps_done}/"
                            f"{options.steps}")
        layers = [np.asarray(image.convert("RGBA")) for image in output.images[0]]
        loop_end = reporter.loop_ended_at or finished
        # Moving weights is the fixed cost of a job; captioning, text encoding, the steps and
        # the VAE are its work. Each phase's time counts its own work only.
        phases = {
            "caption_s": caption.seconds - caption_moves,
            "text_s": text_s - text_moves,
            "denoise_s": loop_end - call_started,
            "decode_s": finished - loop_end,
        }
        total = finished - started
        # From the unrounded phases, and never below zero: rounding each phase first made a
        # job with no fixed cost report a negative one.
        fixed = max(0.0, total - sum(phases.values()))
        timings = {key: round(value, 3) for key, value in phases.items()}
        timings.update(moves_s=round(placement.moves_s, 3), total_s=round(total, 3),
                       fixed_s=round(fixed, 3))
        extra: dict[str, Any] = {"timings": timings, "placement": placement.describe()}
        # The same figures one by one, for the job result (which carries scalars only).
        extra.update({f"{key[:-2]}_seconds": value for key, value in timings.items()
                      if key != "caption_s"})
        if cuda:
            extra["peak_vram_gib"] = round(
                torch.cuda.max_memory_allocated(placement.device) / memory.GIB, 2)
        return layers, caption, extra

    def _run_with_memory_fallback(
        self,
        pixels: np.ndarray,
        options: CallOptions,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> tuple[list[np.ndarray], CaptionResult, dict[str, Any]]:
        picture = (int(pixels.shape[1]), int(pixels.shape[0]))
        job = memory.Job.of(options.layers, options.resolution, picture)
        below: str | None = None
        while True:
            info = devices.probe(self.settings.device)
            mode, why = self._choose_mode(info, job, below, picture)
            try:
                self._ensure_loaded(info, mode, why, job, progress)
                cancel.raise_if_cancelled()
                return self._run(pixels, options, job, progress, cancel)
            except Exception as exc:
                if not devices.is_out_of_memory(exc):
                    raise
                _forget_frames(exc)
                failure = exc
            below = self._after_out_of_memory(failure, job, progress)
            del failure

    def _after_out_of_memory(self, exc: BaseException, job: memory.Job,
                             progress: ProgressCallback) -> str:
        """Free everything; under `auto` return the failed mode (the caller retries this job
        below it); with a chosen mode raise OutOfMemory naming what the plan says fits."""
        mode = self._mode or "full"
        info = self._device
        kind = info.kind if info else "cpu"
        if info is None:
            where = "the device"
        elif info.kind == "cpu":
            where = "the CPU run"
        else:
            where = f"{info.name} ({info.device})"
        self._release_pipeline()
        budget = info.budget_bytes if info is not None else None
        planned = memory.plan(mode, job, kind, self._plan_ratio).vram_gib
        if kind == "cuda" and budget is not None:
            # The job needed more than the memory it had: its activations were at least that
            # much larger than planned. Later plans scale their activations by as much.
            learnt = memory.learn_ratio(mode, job, budget / memory.GIB, self._plan_ratio,
                                        _MAX_PLAN_RATIO)
            if learnt > self._plan_ratio:
                log.info("the plan of %r was short for %s: activations now planned x%.2f",
                         mode, job.describe(), learnt)
                self._plan_ratio = learnt
        libraries = memory.installed_libraries()
        if (self.settings.memory_mode or "auto") == "auto":
            lower = memory.next_lower(mode, kind, libraries)
            if lower is not None:
                log.warning("out of memory in %r mode on %s; retrying this job lower", mode,
                            where)
                progress(Progress(JobState.LOADING, 0.0, f"out of GPU memory in {mode!r} mode; "
                                                  f"retrying this job in a lower mode"))
                return mode
        machine = self._machine(info) if info is not None else memory.Machine(kind)
        raise OutOfMemory(
            f"{where} ran out of memory in memory mode {mode!r} ({job.describe()}, planned "
            f"peak about {planned:.0f} GiB): "
            + memory.oom_advice(mode, job, machine, self._plan_ratio)
        ) from exc

    # -- refinement --------------------------------------------------------------------------
    def _refine(
        self,
        pixels: np.ndarray,
        layers_low: list[np.ndarray],
        options: CallOptions,
        caption: CaptionResult,
        extra: dict[str, Any],
        progress: ProgressCallback,
    ) -> LayerStack:
        from layerlift.inference.exact_recomposition import recomposite_exact
        from layerlift.inference.full_resolution import restore_layers
        from PIL import Image

        progress(Progress(JobState.REFINING, _DENOISED_AT, "restoring full resolution"))
        names = layer_names(len(layers_low))
        low_h, low_w = layers_low[0].shape[:2]
        low_stack = LayerStack.from_canvases(layers_low, names)
        reference = np.asarray(Image.fromarray(pixels, "RGBA").resize((low_w, low_h),
                                                                       Image.Resampling.BOX))
        psnr_model = psnr(reference, low_stack.composite())
        restored = restore_layers(layers_low, pixels)
        stack = LayerStack.from_canvases(restored, names)
        progress(Progress(JobState.REFINING, (_DENOISED_AT + 1.0) / 2, "making the stack exact"))
        stack, psnr_before, psnr_after = recomposite_exact(stack, pixels, in_place=True)
        info = self._device
        job = memory.Job.of(options.layers, options.resolution,
                            (int(pixels.shape[1]), int(pixels.shape[0])))
        stack.meta.update(
            backend=self.name,
            model=self.settings.model,
            psnr_model=psnr_model,
            psnr_before=psnr_before,
            psnr=psnr_after,
            caption_language=options.caption_language,
            memory_mode=self._mode,
            memory_mode_reason=self._mode_why,
            planned_vram_gib=(round(memory.plan(self._mode or "full", job).vram_gib, 1)
                              if info is not None and info.kind == "cuda" else None),
            image_tokens=job.tokens,
            device=info.device if info else None,
            resolution=options.resolution,
            model_size=[int(low_w), int(low_h)],
            steps=options.steps,
            true_cfg_scale=options.true_cfg_scale,
            seed=options.seed,
            **caption.meta(),
            **extra,
        )
        if info is not None and info.warning:
            stack.meta["note"] = info.warning
        progress(Progress(JobState.REFINING, 1.0, "done"))
        return stack.trimmed()

    # -- the Backend API ---------------------------------------------------------------------
    def decompose(
        self,
        image: np.ndarray,
        request: DecomposeRequest,
        progress: ProgressCallback = ignore_progress,
        cancel: CancelToken | None = None,
    ) -> LayerStack:
        options = parse_options(request, self.settings)
        pixels = checked_pixels(image)
        bucket_size(pixels.shape[1], pixels.shape[0], options.resolution)
        cancel = cancel or CancelToken()
        cancel.raise_if_cancelled()
        with self._lock:
            layers_low, caption, extra = self._run_with_memory_fallback(
                pixels, options, progress, cancel
            )
        cancel.raise_if_cancelled()
        return self._refine(pixels, layers_low, options, caption, extra, progress)
