"""The `qwen` backend: Qwen-Image-Layered through diffusers, on the user's own GPU.

The backend owns one loaded pipeline (minutes to load, tens of GB), reused across jobs until
`unload()`. A decomposition is: validate the request, load if needed (its own progress
stage), caption the picture unless the user gave a caption, denoise with per-step progress
and cancel, then bring the layers back to full resolution and make them recomposite to the
input. torch and diffusers are imported only here, inside methods.
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
from layerlift.inference.backends.qwen import devices, memory
from layerlift.inference.backends.qwen.loading import (
    ModelSource,
    apply_offline_environment,
    check_model_files,
    resolve_model,
)
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
from layerlift.inference.job_states import JobState
from layerlift.inference.layers import LayerStack, as_rgba8, psnr
from layerlift.inference.settings import Settings

log = logging.getLogger(__name__)

_REQUIRED_PACKAGES = ("torch", "diffusers", "transformers", "accelerate")
# Fractions of the whole job given to each stage (progress never goes back).
_LOADED_AT, _CAPTIONED_AT, _DENOISED_AT = 0.05, 0.10, 0.90


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
    reported_meta: ClassVar[tuple[str, ...]] = (
        "caption", "caption_source", "memory_mode", "device", "resolution", "steps")

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._lock = threading.RLock()
        self._pipe: Any = None
        self._loaded_key: tuple[str, str, str] | None = None
        self._device: devices.DeviceInfo | None = None
        self._mode: str | None = None
        self._mode_why = ""
        # After an out-of-memory error under `auto`, never start above this mode again.
        self._auto_floor: str | None = None

    # -- availability ------------------------------------------------------------------------
    @classmethod
    def availability(cls, settings: Settings | None = None) -> Availability:
        """Model configured and complete, libraries importable, and the device asked for.

        With `device` auto and no GPU, a run the user asked for by name goes to the CPU with
        a warning (the issue allows it); `auto_availability` keeps `--backend auto` off it.
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

    # -- loading -----------------------------------------------------------------------------
    def _choose_mode(self, info: devices.DeviceInfo, resolution: int) -> tuple[str, str]:
        libraries = memory.installed_libraries()
        requested = self.settings.memory_mode or "auto"
        if requested != "auto":
            memory.check_mode(requested, info.kind, libraries)
            return requested, f"memory mode {requested!r} chosen by the user"
        if self._auto_floor is not None:
            return self._auto_floor, (
                f"auto uses {self._auto_floor!r}: a higher mode ran out of memory earlier"
            )
        return memory.choose_auto(info.kind, info.free_bytes, libraries, resolution, info.name)

    def _ensure_loaded(self, resolution: int, progress: ProgressCallback) -> None:
        source: ModelSource = resolve_model(self.settings.model)
        check_model_files(source)
        info = devices.probe(self.settings.device)
        if self._pipe is not None and self._device is not None and self._mode is not None:
            key = (str(source.folder), info.device, self._mode)
            if key == self._loaded_key:
                return
        mode, why = self._choose_mode(info, resolution)
        key = (str(source.folder), info.device, mode)
        if self._pipe is not None and key == self._loaded_key:
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
        self._device, self._mode, self._mode_why = info, mode, why
        try:
            self._pipe = load_pipeline(source, info, mode, self.settings.offline)
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
        if pipe is not None:
            _remove_hooks(pipe)
            # Drop the last reference before collecting: the components and their offload
            # hooks form cycles that only the collector frees, and emptying the CUDA cache
            # while a local (even a bound method) still holds the pipeline frees nothing.
            del pipe
        devices.release_memory(self._device.kind if self._device else "cpu")

    def load(self, progress: ProgressCallback = ignore_progress) -> None:
        with self._lock:
            self._ensure_loaded(self.settings.resolution, progress)

    def unload(self) -> None:
        with self._lock:
            self._release_pipeline()

    # -- the call ----------------------------------------------------------------------------
    def _caption(self, picture: Any, options: CallOptions) -> str:
        """Caption the picture exactly as the pipeline would, so the caption can be reported."""
        import torch
        from diffusers.pipelines.qwenimage.pipeline_qwenimage_layered import (
            calculate_dimensions,
        )

        pipe = self._pipe
        width, height = calculate_dimensions(
            options.resolution * options.resolution, picture.width / picture.height
        )
        prompt_image = pipe.image_processor.resize(picture, height, width)
        with torch.no_grad():
            return pipe.get_image_caption(
                prompt_image, use_en_prompt=options.use_en_prompt, device=pipe._execution_device
            )

    def _run(
        self,
        pixels: np.ndarray,
        options: CallOptions,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> tuple[list[np.ndarray], str, str]:
        import torch
        from PIL import Image

        picture = Image.fromarray(pixels, mode="RGBA")
        if options.caption:
            caption, caption_source = options.caption, "user"
        else:
            progress(Progress(JobState.RUNNING, _LOADED_AT, "captioning the picture"))
            caption, caption_source = self._caption(picture, options).strip(), "model"
            cancel.raise_if_cancelled()
        progress(Progress(JobState.RUNNING, _CAPTIONED_AT, "denoising", 0, options.steps))
        reporter = StepReporter(options.steps, progress, cancel, _CAPTIONED_AT, _DENOISED_AT)
        generator = torch.Generator(device="cpu").manual_seed(options.seed)
        # An empty caption would make the pipeline caption again: give it the same text.
        prompt = caption or None
        output = self._pipe(**call_kwargs(options, picture, prompt, generator, reporter))
        if reporter.interrupted or cancel.cancelled:
            del output
            devices.release_memory(self._device.kind if self._device else "cpu")
            raise Cancelled(f"cancelled after denoising step {reporter.steps_done}/"
                            f"{options.steps}")
        layers = [np.asarray(image.convert("RGBA")) for image in output.images[0]]
        return layers, caption, caption_source

    def _run_with_memory_fallback(
        self,
        pixels: np.ndarray,
        options: CallOptions,
        progress: ProgressCallback,
        cancel: CancelToken,
    ) -> tuple[list[np.ndarray], str, str]:
        while True:
            try:
                self._ensure_loaded(options.resolution, progress)
                cancel.raise_if_cancelled()
                return self._run(pixels, options, progress, cancel)
            except Exception as exc:
                if not devices.is_out_of_memory(exc):
                    raise
                _forget_frames(exc)
                failure = exc
            self._after_out_of_memory(failure, options, progress)
            del failure

    def _after_out_of_memory(
        self, exc: BaseException, options: CallOptions, progress: ProgressCallback
    ) -> None:
        """Free everything; under `auto` step down one mode (caller retries), else raise."""
        mode = self._mode or "full"
        info = self._device
        kind = info.kind if info else "cpu"
        if info is None:
            where = "the device"
        elif info.kind == "cpu":
            where = "the CPU run"
        else:
            where = f"{info.name} ({info.device})"
        libraries = memory.installed_libraries()
        self._release_pipeline()
        if (self.settings.memory_mode or "auto") == "auto":
            lower = memory.next_lower(mode, kind, libraries)
            if lower is not None:
                log.warning("out of memory in %r mode on %s; retrying in %r", mode, where, lower)
                self._auto_floor = lower
                progress(Progress(JobState.LOADING, 0.0, f"out of GPU memory in {mode!r} mode; "
                                                  f"retrying in {lower!r}"))
                return
        raise OutOfMemory(
            f"{where} ran out of memory in memory mode {mode!r}: "
            + memory.oom_advice(mode, kind, libraries, options.resolution)
        ) from exc

    # -- refinement --------------------------------------------------------------------------
    def _refine(
        self,
        pixels: np.ndarray,
        layers_low: list[np.ndarray],
        options: CallOptions,
        caption: str,
        caption_source: str,
        progress: ProgressCallback,
    ) -> LayerStack:
        from layerlift.inference.refine import recomposite_exact
        from layerlift.inference.restore import restore_layers
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
        stack, psnr_before, psnr_after = recomposite_exact(stack, pixels)
        info = self._device
        stack.meta.update(
            backend=self.name,
            model=self.settings.model,
            psnr_model=psnr_model,
            psnr_before=psnr_before,
            psnr=psnr_after,
            caption=caption,
            caption_source=caption_source,
            caption_language=options.caption_language,
            memory_mode=self._mode,
            memory_mode_reason=self._mode_why,
            device=info.device if info else None,
            resolution=options.resolution,
            model_size=[int(low_w), int(low_h)],
            steps=options.steps,
            true_cfg_scale=options.true_cfg_scale,
            seed=options.seed,
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
        try:
            pixels = as_rgba8(image)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"the image cannot be used: {exc}") from exc
        if pixels.shape[0] == 0 or pixels.shape[1] == 0:
            raise BadRequest("the image is empty")
        bucket_size(pixels.shape[1], pixels.shape[0], options.resolution)
        cancel = cancel or CancelToken()
        cancel.raise_if_cancelled()
        with self._lock:
            layers_low, caption, source = self._run_with_memory_fallback(
                pixels, options, progress, cancel
            )
        cancel.raise_if_cancelled()
        return self._refine(pixels, layers_low, options, caption, source, progress)
