"""The options of the qwen backend, declared once (see `inference.backends.options`).

They mirror the knobs of `QwenImageLayeredPipeline.__call__` a user may turn. The model
folder, device and memory mode are not here: they are the server's settings, never a
request's, so no client can name a file or move the model between devices.
"""

from __future__ import annotations

from layerlift.inference.backends.options import OptionPreset, OptionSchema, OptionSpec
from layerlift.inference.backends.qwen.memory import RESOLUTIONS

MAX_STEPS = 200
MAX_TRUE_CFG = 30.0
DEFAULT_TRUE_CFG = 4.0
# A blank negative prompt switches true CFG on, as the model card's example does.
DEFAULT_NEGATIVE = " "
CAPTION_LANGUAGES = ("en", "zh")

QWEN_OPTIONS = OptionSchema([
    OptionSpec("resolution", "int", "the model's working size in pixels (its area buckets)",
               setting="resolution", default=640, choices=RESOLUTIONS),
    OptionSpec("steps", "int", "denoising steps: more is slower and usually cleaner",
               setting="steps", default=50, minimum=1, maximum=MAX_STEPS),
    OptionSpec("true_cfg_scale", "float", "true classifier-free guidance scale (1 turns it off)",
               label="True CFG scale", default=DEFAULT_TRUE_CFG, minimum=0.0,
               maximum=MAX_TRUE_CFG),
    OptionSpec("negative_prompt", "str", "what the layers should not show (used with true CFG)",
               default=DEFAULT_NEGATIVE),
    OptionSpec("cfg_normalize", "bool", "renormalize the guided prediction (the model's default)",
               label="CFG normalize", default=True),
    OptionSpec("caption", "str", "describe the picture (empty: the model captions it)",
               remembered=False),
    OptionSpec("caption_language", "str", "language of the model's own caption prompt",
               default="en", choices=CAPTION_LANGUAGES),
], presets=[
    OptionPreset("fast", "Fast (640 px, 20 steps)", {"resolution": 640, "steps": 20}),
    OptionPreset("best", "Best (1024 px, 50 steps)", {"resolution": 1024, "steps": 50}),
])
