"""The text phase of a job: the picture's caption (when the user gave none) and the prompt
embeddings, computed by LayerLift rather than inside the pipeline call.

Doing it here, not in `QwenImageLayeredPipeline.__call__`, is what lets a memory mode decide
where the text encoder runs (see placement.py), report captioning as its own stage with the
tokens generated so far, honour cancel between tokens, cap the caption's length, and cache the
negative prompt's embeddings across jobs. The caption uses the pipeline's own prompts, image
size and decoding, so it is the caption the pipeline would have written, only shorter at most.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerlift.inference.backends.base import CancelToken, Progress, ProgressCallback
from layerlift.inference.backends.qwen import memory
from layerlift.inference.errors import BadRequest, Cancelled

log = logging.getLogger(__name__)

# Captioning stops at this many seconds (keeping what it wrote), and asks for a caption when
# the first tokens show that it could not write MIN_USEFUL_TOKENS in that time.
CAPTION_BUDGET_S = 180.0
MIN_USEFUL_TOKENS = 24
PROBE_TOKENS = 4
ASK_FOR_CAPTION = ("give a caption instead: --caption \"...\" on the command line, or the "
                   "caption field of the window, the GIMP dialog or the Photoshop panel")


@dataclass(frozen=True)
class CaptionResult:
    text: str
    source: str  # "user" or "model"
    way: str  # a key of memory.CAPTION_WAYS
    why: str = ""
    seconds: float = 0.0
    tokens: int = 0
    truncated: bool = False

    def meta(self) -> dict[str, Any]:
        return {
            "caption": self.text,
            "caption_source": self.source,
            "caption_way": self.way,
            "caption_why": self.why,
            "caption_seconds": round(self.seconds, 2),
            "caption_tokens": self.tokens,
            "caption_truncated": self.truncated,
        }


class _Watch:
    """A generation stopping criterion: progress per token, cancel, and the time budget.

    Mixed into transformers' `StoppingCriteria` when used (see `_criterion`), so that this
    module can be imported without transformers.
    """

    def __init__(self, prompt_length: int, limit: int, progress: ProgressCallback,
                 cancel: CancelToken | None, budget_s: float, start: float, end: float,
                 ask_when_slow: bool) -> None:
        self.prompt_length = prompt_length
        self.limit = limit
        self.progress = progress
        self.cancel = cancel
        self.budget_s = budget_s
        self.start, self.end = start, end
        self.ask_when_slow = ask_when_slow
        self.started = time.perf_counter()
        self.tokens = 0
        self.cancelled = False
        self.over_budget = False
        self.too_slow: float | None = None  # seconds per token, when it asked to stop

    def __call__(self, input_ids: Any, scores: Any = None, **_: Any) -> Any:
        import torch

        self.tokens = int(input_ids.shape[-1]) - self.prompt_length
        elapsed = time.perf_counter() - self.started
        fraction = self.start + (self.end - self.start) * min(1.0, self.tokens / self.limit)
        self.progress(Progress("captioning", fraction,
                               f"Captioning the picture… {self.tokens} "
                               f"token{'' if self.tokens == 1 else 's'}"))
        stop = False
        if self.cancel is not None and self.cancel.cancelled:
            self.cancelled = stop = True
        elif elapsed > self.budget_s:
            self.over_budget = stop = True
        elif self.ask_when_slow and self.tokens >= PROBE_TOKENS:
            per_token = elapsed / self.tokens
            if per_token * MIN_USEFUL_TOKENS > self.budget_s:
                self.too_slow, stop = per_token, True
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool,
                          device=input_ids.device)


def _criterion(*args: Any) -> _Watch:
    from transformers import StoppingCriteria

    class Watch(_Watch, StoppingCriteria):
        pass

    return Watch(*args)


def prompt_image(pipe: Any, picture: Any, resolution: int) -> Any:
    """The picture at the size the pipeline captions it (its bucket)."""
    width, height = memory.bucket_dims(picture.width, picture.height, resolution)
    return pipe.image_processor.resize(picture, height, width)


def _trim_to_sentence(text: str) -> str:
    """A caption cut by the length cap or the time budget ends at its last full sentence."""
    cut = max(text.rfind(". "), text.rfind(".\n"))
    if text.endswith(".") or cut < len(text) // 2:
        return text.strip()
    return text[: cut + 1].strip()


def generate_caption(
    pipe: Any,
    encoder: Any,
    image: Any,
    use_en_prompt: bool,
    device: Any,
    progress: ProgressCallback,
    cancel: CancelToken | None,
    max_new_tokens: int = memory.CAPTION_MAX_NEW_TOKENS,
    budget_s: float = CAPTION_BUDGET_S,
    fractions: tuple[float, float] = (0.05, 0.10),
    ask_when_slow: bool = False,
) -> tuple[str, int, bool]:
    """Caption `image` with `encoder` on `device`: (caption, tokens generated, truncated)."""
    import torch
    from transformers import StoppingCriteriaList

    prompt = pipe.image_caption_prompt_en if use_en_prompt else pipe.image_caption_prompt_cn
    inputs = pipe.vl_processor(text=prompt, images=image, padding=True, return_tensors="pt")
    inputs = inputs.to(device)
    watch = _criterion(int(inputs.input_ids.shape[-1]), max_new_tokens, progress, cancel,
                       budget_s, fractions[0], fractions[1], ask_when_slow)
    with torch.no_grad():
        generated = encoder.generate(**inputs, max_new_tokens=max_new_tokens,
                                     stopping_criteria=StoppingCriteriaList([watch]))
    if watch.cancelled:
        raise Cancelled("cancelled while captioning the picture")
    if watch.too_slow is not None:
        raise BadRequest(
            f"captioning runs at {watch.too_slow:.1f} s per token here (on "
            f"{device}), too slow for a caption of even {MIN_USEFUL_TOKENS} tokens within "
            f"{budget_s:.0f} s; {ASK_FOR_CAPTION}"
        )
    trimmed = [out[len(ids):] for ids, out in zip(inputs.input_ids, generated, strict=True)]
    text = pipe.vl_processor.batch_decode(trimmed, skip_special_tokens=True,
                                          clean_up_tokenization_spaces=False)[0].strip()
    tokens = int(trimmed[0].shape[-1])
    truncated = watch.over_budget or tokens >= max_new_tokens
    if truncated:
        text = _trim_to_sentence(text)
    return text, tokens, truncated


class _Threads:
    """All cores for a CPU caption, the previous thread count afterwards."""

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    def __exit__(self, *_: Any) -> None:
        import torch

        torch.set_num_threads(self.before)


class FourBitEncoder:
    """A 4-bit (NF4, bitsandbytes) copy of the text encoder for captioning on a small GPU.

    Loaded from the model folder on first use (about 5.6 GiB on the GPU), parked in RAM
    between captions, dropped with the pipeline.
    """

    def __init__(self, folder: Path, offline: bool) -> None:
        self.folder = folder
        self.offline = offline
        self.model: Any = None
        self.load_s = 0.0

    def on(self, device: Any) -> Any:
        import torch

        if self.model is None:
            from transformers import (
                BitsAndBytesConfig,
                Qwen2_5_VLForConditionalGeneration,
            )

            started = time.perf_counter()
            config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                        bnb_4bit_compute_dtype=torch.bfloat16)
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                str(self.folder / "text_encoder"), quantization_config=config,
                dtype=torch.bfloat16, device_map={"": str(device)},
                local_files_only=self.offline,
            )
            self.load_s = time.perf_counter() - started
            log.info("4-bit text encoder for captions loaded in %.1f s", self.load_s)
        else:
            self.model.to(device)
        return self.model

    def park(self) -> None:
        """Out of the GPU until the next caption (dropped if it cannot move)."""
        if self.model is None:
            return
        try:
            self.model.to("cpu")
        except Exception:  # an older bitsandbytes cannot move 4-bit weights: load again later
            log.debug("the 4-bit text encoder cannot move to the CPU; dropping it",
                      exc_info=True)
            self.model = None

    def release(self) -> None:
        self.model = None


def caption_picture(
    pipe: Any,
    placement: Any,
    image: Any,
    use_en_prompt: bool,
    way: str,
    why: str,
    progress: ProgressCallback,
    cancel: CancelToken | None,
    four_bit: Callable[[], FourBitEncoder] | None = None,
    max_new_tokens: int = memory.CAPTION_MAX_NEW_TOKENS,
    budget_s: float = CAPTION_BUDGET_S,
) -> CaptionResult:
    """Caption the picture the way `way` says; never by streaming the text encoder per token."""
    started = time.perf_counter()
    progress(Progress("captioning", 0.05, "Captioning the picture…"))
    if way == "4bit":
        if four_bit is None:
            raise RuntimeError("the 4-bit caption way needs the model folder")
        holder = four_bit()
        moving = time.perf_counter()
        try:
            encoder = holder.on(placement.device)
            placement.moves_s += time.perf_counter() - moving  # loading it counts as moving
            text, tokens, truncated = generate_caption(
                pipe, encoder, image, use_en_prompt, placement.device, progress, cancel,
                max_new_tokens, budget_s)
        finally:
            moving = time.perf_counter()
            holder.park()
            placement.moves_s += time.perf_counter() - moving
    else:
        with placement.text_encoder(way) as device:
            on_cpu = device.type == "cpu"
            with _Threads() if on_cpu else contextlib.nullcontext():
                text, tokens, truncated = generate_caption(
                    pipe, pipe.text_encoder, image, use_en_prompt, device, progress, cancel,
                    max_new_tokens, budget_s,
                    # Ask for a caption only where the CPU stands in for a GPU that is there.
                    ask_when_slow=on_cpu and placement.info.kind != "cpu")
    seconds = time.perf_counter() - started
    result = CaptionResult(text, "model", way, why, seconds, tokens, truncated)
    log.info("caption: %s (%s) in %.1f s, %d tokens%s", memory.CAPTION_WAYS.get(way, way), why,
             seconds, tokens, ", cut at the limit" if truncated else "")
    return result


class PromptCache:
    """Prompt embeddings of texts used job after job (the negative prompt), per pipeline."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, str], tuple[Any, Any]] = {}

    def get(self, text: str, device: Any) -> tuple[Any, Any] | None:
        return self._store.get((text, str(device)))

    def put(self, text: str, device: Any, value: tuple[Any, Any]) -> None:
        self._store[(text, str(device))] = value

    def clear(self) -> None:
        self._store.clear()


def encode_prompts(
    pipe: Any,
    placement: Any,
    prompt: str,
    negative: str | None,
    way: str,
    cache: PromptCache,
) -> dict[str, Any]:
    """The prompt (and negative prompt) embeddings as the pipeline would compute them.

    Returns the keyword arguments of the pipeline call that replace its own text encoding.
    """
    import torch

    target = pipe._execution_device
    wanted = [prompt] + ([negative] if negative is not None else [])
    missing = [text for text in wanted if text == prompt or cache.get(text, target) is None]
    encoded: dict[str, tuple[Any, Any]] = {}
    if missing:
        with placement.text_encoder(way) as device, torch.no_grad():
            for text in dict.fromkeys(missing):
                embeds, mask = pipe._get_qwen_prompt_embeds(text, device=device)
                encoded[text] = (embeds.to(target), mask.to(target))
    for text in wanted:
        if text in encoded and text != prompt:
            cache.put(text, target, encoded[text])
    positive = encoded[prompt]
    kwargs: dict[str, Any] = {"prompt_embeds": positive[0], "prompt_embeds_mask": positive[1]}
    if negative is not None:
        embeds, mask = encoded.get(negative) or cache.get(negative, target)
        kwargs.update(negative_prompt_embeds=embeds, negative_prompt_embeds_mask=mask)
    return kwargs
