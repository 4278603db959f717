"""One call of `QwenImageLayeredPipeline`: its arguments, its step callback, its cancel.

The request's options are validated here (before minutes of model loading are spent), turned
into the pipeline's keyword arguments, and the per-step callback both reports progress and
honours cancel through the pipeline's own interrupt flag, so a cancelled job stops denoising
within one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from layerlift.inference.backends.base import (
    CancelToken,
    DecomposeRequest,
    Progress,
    ProgressCallback,
)
from layerlift.inference.backends.qwen.memory import bucket_dims
from layerlift.inference.errors import BadRequest
from layerlift.inference.job_states import JobState
from layerlift.inference.settings import Settings

RESOLUTIONS = (640, 1024)
MAX_STEPS = 200
DEFAULT_LAYERS = 4
DEFAULT_TRUE_CFG = 4.0
# A blank negative prompt switches true CFG on, as the model card's example does.
DEFAULT_NEGATIVE = " "
MIN_BUCKET_SIDE = 64


@dataclass(frozen=True)
class CallOptions:
    """Validated knobs of one decomposition."""

    layers: int
    resolution: int
    steps: int
    true_cfg_scale: float
    negative_prompt: str | None
    cfg_normalize: bool
    caption: str | None  # None or "": the model captions the picture itself
    caption_language: str  # "en" or "zh"
    seed: int

    @property
    def use_en_prompt(self) -> bool:
        return self.caption_language == "en"


def _number(options: Mapping[str, Any], key: str, default: Any, kind: type) -> Any:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"option {key!r} must be a number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise BadRequest(f"option {key!r} must be a whole number, got {value!r}")
    return kind(value)


def parse_options(request: DecomposeRequest, settings: Settings) -> CallOptions:
    """Check the request against what the pipeline accepts; BadRequest says what is wrong."""
    options = request.options or {}
    layers = DEFAULT_LAYERS if request.layers is None else int(request.layers)
    if not 1 <= layers <= 10:
        raise BadRequest(f"Qwen-Image-Layered makes 1 to 10 layers, not {layers}")
    resolution = _number(options, "resolution", settings.resolution, int)
    if resolution not in RESOLUTIONS:
        raise BadRequest(f"resolution must be 640 or 1024 (the model's buckets), got {resolution}")
    steps = _number(options, "steps", settings.steps, int)
    if not 1 <= steps <= MAX_STEPS:
        raise BadRequest(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    cfg = _number(options, "true_cfg_scale", DEFAULT_TRUE_CFG, float)
    if not 0.0 <= cfg <= 30.0:
        raise BadRequest(f"true_cfg_scale must be between 0 and 30, got {cfg}")
    negative = options.get("negative_prompt", DEFAULT_NEGATIVE)
    if negative is not None and not isinstance(negative, str):
        raise BadRequest("option 'negative_prompt' must be text")
    normalize = options.get("cfg_normalize", True)
    if not isinstance(normalize, bool):
        raise BadRequest("option 'cfg_normalize' must be true or false")
    caption = options.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise BadRequest("option 'caption' must be text")
    language = options.get("caption_language") or "en"
    if language not in ("en", "zh"):
        raise BadRequest(f"caption_language must be 'en' or 'zh', got {language!r}")
    return CallOptions(
        layers=layers,
        resolution=resolution,
        steps=steps,
        true_cfg_scale=cfg,
        negative_prompt=negative,
        cfg_normalize=normalize,
        caption=caption.strip() if caption else None,
        caption_language=language,
        seed=int(request.seed),
    )


class StepReporter:
    """`callback_on_step_end`: reports step i/n and raises the pipeline's interrupt on cancel.

    The pipeline skips every remaining step once `_interrupt` is set, so the denoising loop
    ends within the step that saw the cancel; the backend raises Cancelled after the call.
    """

    def __init__(
        self,
        total: int,
        progress: ProgressCallback,
        cancel: CancelToken | None,
        start: float,
        end: float,
        last_step: Callable[[], None] | None = None,
    ) -> None:
        self.total = total
        self.progress = progress
        self.cancel = cancel
        self.start = start
        self.end = end
        self.steps_done = 0
        self.interrupted = False
        # Called once when the denoising loop is over (its last step, or a cancel), before
        # the VAE decodes: where a memory mode moves the transformer out of the way.
        self.last_step = last_step
        self.loop_ended_at: float | None = None

    def _loop_over(self) -> None:
        if self.loop_ended_at is None:
            self.loop_ended_at = time.perf_counter()
            if self.last_step is not None:
                self.last_step()

    def __call__(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        self.steps_done = step + 1
        fraction = self.start + (self.end - self.start) * self.steps_done / self.total
        self.progress(Progress(JobState.RUNNING, fraction, f"denoising step {self.steps_done}/"
                               f"{self.total}", self.steps_done, self.total))
        if self.cancel is not None and self.cancel.cancelled:
            pipe._interrupt = True
            self.interrupted = True
        if self.interrupted or self.steps_done >= self.total:
            self._loop_over()
        return {}


def call_kwargs(
    options: CallOptions, image: Any, prompt: str | None, generator: Any, reporter: StepReporter
) -> dict[str, Any]:
    """Keyword arguments for `QwenImageLayeredPipeline.__call__`."""
    # The negative prompt only matters with true CFG (scale > 1); passing it otherwise just
    # makes the pipeline log a warning.
    negative = options.negative_prompt if options.true_cfg_scale > 1.0 else None
    return {
        "image": image,
        "prompt": prompt,
        "negative_prompt": negative,
        "true_cfg_scale": options.true_cfg_scale,
        "layers": options.layers,
        "num_inference_steps": options.steps,
        "num_images_per_prompt": 1,
        "generator": generator,
        "resolution": options.resolution,
        "cfg_normalize": options.cfg_normalize,
        "use_en_prompt": options.use_en_prompt,
        "callback_on_step_end": reporter,
        "callback_on_step_end_tensor_inputs": ["latents"],
        "output_type": "pil",
    }



def bucket_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """The (width, height) the pipeline works at: area resolution², aspect kept, 32 px steps.

    Same rule as diffusers' `calculate_dimensions`; checked up front because a very thin
    picture would round one side to zero deep inside the pipeline.
    """
    size = bucket_dims(width, height, resolution)
    if min(size) < MIN_BUCKET_SIDE:
        raise BadRequest(
            f"a {width}x{height} picture is too thin for the model: at {resolution} px its "
            f"short side would be {min(size)} px (at least {MIN_BUCKET_SIDE}); crop it first"
        )
    return size
