"""One call of `QwenImageLayeredPipeline`: its arguments, its step callback, its cancel.

The request's options are validated here (before minutes of model loading are spent), turned
into the pipeline's keyword arguments, and the per-step callback both reports progress and
honours cancel through the pipeline's own interrupt flag, so a cancelled job stops denoising
within one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from layerlift.inference.backends.base import (
    CancelToken,
    DecomposeRequest,
    Progress,
    ProgressCallback,
)
from layerlift.inference.backends.qwen.memory import bucket_dims
from layerlift.inference.backends.qwen.options import QWEN_OPTIONS
from layerlift.inference.errors import BadRequest
from layerlift.inference.job_states import JobState
from layerlift.inference.settings import Settings

DEFAULT_LAYERS = 4
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


def parse_options(request: DecomposeRequest, settings: Settings) -> CallOptions:
    """Check the request against the backend's declared options (`QWEN_OPTIONS`, the same
    check the bridge and the CLI run); BadRequest says what is wrong."""
    layers = DEFAULT_LAYERS if request.layers is None else int(request.layers)
    if not 1 <= layers <= 10:
        raise BadRequest(f"Qwen-Image-Layered makes 1 to 10 layers, not {layers}")
    values = QWEN_OPTIONS.resolve(request.options, settings)
    # The settings file is checked by type only: its defaults go through the same specs.
    for name in ("resolution", "steps"):
        spec = QWEN_OPTIONS.get(name)
        assert spec is not None
        values[name] = spec.check(values[name])
    caption = values["caption"]
    return CallOptions(
        layers=layers,
        resolution=values["resolution"],
        steps=values["steps"],
        true_cfg_scale=values["true_cfg_scale"],
        negative_prompt=values["negative_prompt"],
        cfg_normalize=values["cfg_normalize"],
        caption=caption.strip() if caption else None,
        caption_language=values["caption_language"],
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
