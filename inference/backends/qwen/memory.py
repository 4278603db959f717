"""The VRAM and RAM plan of a Qwen-Image-Layered job, per memory mode, and the choices made from it.

Pure logic, no torch: which modes exist on a device, what each needs for *this* job (its layer
count and resolution), which one `auto` picks, which one to retry after an out-of-memory
error, and how the picture gets its caption. Keeping it free of torch lets `layerlift doctor`
answer in a moment and the tests drive it with made-up VRAM figures on a machine without a GPU.

The model behind the figures (fitted to measurements of the real architecture, bf16, on an
NVIDIA H100 80GB; see docs/qwen.md):

* weights: transformer 20.43B parameters = 38.06 GiB, text encoder 8.29B = 15.44 GiB, VAE
  0.13B = 0.24 GiB (53.74 GiB together, as measured resident in `full`);
* a job's size is its image tokens, tokens = (layers + 1) x (bucket H / 16) x (bucket W / 16):
  the generated layers plus the input's own frame;
* the peak is reached while the VAE decodes the generated layers at the bucket size:
  1.007 GiB per 1,000 tokens of generated layers plus 0.030 GiB per 1,000 tokens of the input
  frame (a least-squares fit of the three measured points: 640 px with 4 layers +6.4 GiB over
  the weights, 640/10 +15.8, 1024/4 +16.8, each reproduced within 1 %; about 0.8 GiB per 1,000
  tokens at 4 layers). The transformer's own activations are 0.15 GiB per 1,000 tokens (its
  measured peak in `offload`: 39.2 GiB at 640/4), the text encoder's about 0.4 GiB;
* a mode's peak is the largest, over the phases of a job (text, denoising, decoding), of what
  is on the GPU in that phase plus that phase's activations; a mode that quantizes on the GPU
  may peak while loading instead.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from layerlift.inference.errors import BackendUnavailable, BadRequest

GIB = 1024**3
RESOLUTIONS = (640, 1024)
DEFAULT_LAYERS = 4
MAX_LAYERS = 10

# -- the fitted model ----------------------------------------------------------------------------
TRANSFORMER_GIB = 38.06  # 20.43B parameters, bf16
TEXT_ENCODER_GIB = 15.44  # 8.29B, bf16
VAE_GIB = 0.24  # 0.13B, bf16
WEIGHTS_GIB = TRANSFORMER_GIB + TEXT_ENCODER_GIB + VAE_GIB
# Quantized weights on the GPU (measured peaks of the real-size transformer while loading;
# the text encoder's figures include its bf16 embeddings).
TRANSFORMER_INT8_GIB = 19.2
TRANSFORMER_NF4_GIB = 10.8
TRANSFORMER_TORCHAO_GIB = 19.0
TEXT_ENCODER_INT8_GIB = 9.7
TEXT_ENCODER_NF4_GIB = 5.6
# Activations.
DECODE_GIB_PER_KTOKEN_LAYERS = 1.007
DECODE_GIB_PER_KTOKEN_FRAME = 0.030
DENOISE_GIB_PER_KTOKEN = 0.15
TEXT_ACTIVATION_GIB = 0.4
# lowvram: the leaves being streamed at any moment (two in flight with prefetching).
LOWVRAM_STREAMED_GIB = 0.25
# RAM: the process itself (Python, torch, the CUDA context's host side), and the shard a
# quantizing loader holds while it converts.
BASE_RAM_GIB = 3.0
LOAD_SHARD_RAM_GIB = 5.0
# What `auto` adds to a plan before comparing it with the free VRAM: the allocator's
# fragmentation and the CUDA context's own growth.
SAFETY_FRACTION = 0.05
SAFETY_GIB = 0.5
# Generated caption tokens at most (diffusers asks for 512; captions of this prompt run to
# 100-250 tokens, and on a GPU 256 take about 16 s).
CAPTION_MAX_NEW_TOKENS = 256


@dataclass(frozen=True)
class ModeSpec:
    """One memory mode: what it does and what it needs beyond diffusers."""

    name: str
    library: str | None  # python package the mode needs beyond diffusers
    lossless: bool
    summary: str


# Ordered from most VRAM (fastest) to least; the OOM fallback walks this list downwards.
MODES: tuple[ModeSpec, ...] = (
    ModeSpec("full", None, True, "every component on the GPU in bf16"),
    ModeSpec("offload", None, True,
             "transformer kept on the GPU when it fits, text encoder onloaded from pinned RAM "
             "for the text phase"),
    ModeSpec("int8", "bitsandbytes", False,
             "transformer and text encoder in 8-bit (bitsandbytes), resident when they fit, "
             "else model offload"),
    ModeSpec("torchao", "torchao", False,
             "transformer int8 weight-only (torchao), resident when it fits, else model "
             "offload"),
    ModeSpec("nf4", "bitsandbytes", False,
             "transformer and text encoder in 4-bit NF4 (bitsandbytes), resident when they "
             "fit, else model offload"),
    ModeSpec("lowvram", None, True,
             "transformer and VAE streamed layer by layer (group offloading, CUDA streams); "
             "the text encoder without stream prefetching"),
)
MODE_NAMES: tuple[str, ...] = tuple(spec.name for spec in MODES)
ALL_MODE_CHOICES: tuple[str, ...] = ("auto", *MODE_NAMES)
_SPECS = {spec.name: spec for spec in MODES}
AUTO_SUMMARY = "picked per job from its layers, resolution and the free VRAM"


def mode_summaries() -> dict[str, str]:
    """Every choice of the memory-mode setting and its one description (CLI, settings)."""
    return {"auto": AUTO_SUMMARY, **{s.name: s.summary for s in MODES}}


def spec(mode: str) -> ModeSpec:
    try:
        return _SPECS[mode]
    except KeyError:
        raise BadRequest(
            f"unknown memory mode {mode!r}; choose one of: {', '.join(ALL_MODE_CHOICES)}"
        ) from None


def installed_libraries() -> frozenset[str]:
    """Quantization libraries importable here (checked without importing them)."""
    found = set()
    for name in ("bitsandbytes", "torchao"):
        try:
            if importlib.util.find_spec(name) is not None:
                found.add(name)
        except (ImportError, ValueError):  # a broken or blocked install counts as absent
            pass
    return frozenset(found)


# -- the job -------------------------------------------------------------------------------------
def bucket_dims(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(width, height) the pipeline works at: area resolution², aspect kept, 32 px steps.

    diffusers' `calculate_dimensions` is the rule; it is restated here because the memory
    plan (`layerlift doctor`, the settings dialog) must answer without importing diffusers,
    whose import alone takes seconds. tests/qwen/test_memory.py checks the two agree.
    """
    ratio = width / height
    bucket_w = math.sqrt(resolution * resolution * ratio)
    bucket_h = bucket_w / ratio
    return int(round(bucket_w / 32) * 32), int(round(bucket_h / 32) * 32)


@dataclass(frozen=True)
class Job:
    """What a plan is for: the layer count and the bucket the model works at."""

    layers: int = DEFAULT_LAYERS
    resolution: int = 640
    width: int = 640  # bucket size
    height: int = 640

    @classmethod
    def of(cls, layers: int | None, resolution: int,
           picture: tuple[int, int] | None = None) -> Job:
        """The job for a picture of (width, height), or for a square one when not known."""
        width, height = picture or (resolution, resolution)
        bucket_w, bucket_h = bucket_dims(width, height, resolution)
        return cls(layers or DEFAULT_LAYERS, resolution, bucket_w, bucket_h)

    @property
    def frame_tokens(self) -> int:
        return (self.height // 16) * (self.width // 16)

    @property
    def tokens(self) -> int:
        return (self.layers + 1) * self.frame_tokens

    def describe(self) -> str:
        return f"{self.layers} layer{'' if self.layers == 1 else 's'} at {self.resolution} px"


def decode_activation_gib(job: Job) -> float:
    layer_tokens = job.tokens - job.frame_tokens
    return (DECODE_GIB_PER_KTOKEN_LAYERS * layer_tokens
            + DECODE_GIB_PER_KTOKEN_FRAME * job.frame_tokens) / 1000


def denoise_activation_gib(job: Job) -> float:
    return DENOISE_GIB_PER_KTOKEN * job.tokens / 1000


# -- the plan of one mode ------------------------------------------------------------------------
@dataclass(frozen=True)
class ModePlan:
    """Peak VRAM and RAM of one mode for one job (GiB), and where the peak comes from."""

    mode: str
    job: Job
    load_vram_gib: float
    run_vram_gib: float
    ram_gib: float
    phases: dict[str, float] = field(default_factory=dict)  # phase -> peak VRAM in it
    note: str = ""

    @property
    def vram_gib(self) -> float:
        return max(self.load_vram_gib, self.run_vram_gib)

    @property
    def peak_phase(self) -> str:
        if self.load_vram_gib > self.run_vram_gib:
            return "loading"
        return max(self.phases, key=self.phases.get) if self.phases else "running"

    def needed_gib(self) -> float:
        """What must be free for `auto` to pick it: the plan and a margin."""
        return self.vram_gib * (1 + SAFETY_FRACTION) + SAFETY_GIB

    def as_dict(self) -> dict:
        return {
            "vram_gib": round(self.vram_gib, 1),
            "ram_gib": round(self.ram_gib, 1),
            "load_vram_gib": round(self.load_vram_gib, 1),
            "run_vram_gib": round(self.run_vram_gib, 1),
            "peak_phase": self.peak_phase,
        }


def _phases(text_gib: float, denoise_gib: float, decode_gib: float, job: Job,
            act_ratio: float = 1.0) -> dict[str, float]:
    return {
        "text": text_gib + TEXT_ACTIVATION_GIB * act_ratio,
        "denoise": denoise_gib + denoise_activation_gib(job) * act_ratio,
        "decode": decode_gib + decode_activation_gib(job) * act_ratio,
    }


def plan(mode: str, job: Job, kind: str = "cuda", act_ratio: float = 1.0) -> ModePlan:
    """The peak VRAM and RAM of `mode` for `job` with the real model.

    `act_ratio` scales the activations (the weights are known exactly): what an
    out-of-memory error taught the backend. On the CPU (float32) and Apple's unified memory
    the weights never move, so only `full` exists there and its figure is memory in general
    (RAM on the CPU, shared memory on MPS).
    """
    spec(mode)
    r = max(1.0, act_ratio)
    T, E, V = TRANSFORMER_GIB, TEXT_ENCODER_GIB, VAE_GIB
    if kind == "cpu":
        # float32: twice the weights and the activations, all of it in RAM.
        need = 2 * (WEIGHTS_GIB + decode_activation_gib(job) * r)
        return ModePlan("full", job, 0.0, 0.0, need + BASE_RAM_GIB, {}, "float32 on the CPU")
    if mode == "full":
        resident = T + E + V
        phases = _phases(resident, resident, resident, job, r)
        return ModePlan(mode, job, resident, max(phases.values()), WEIGHTS_GIB + BASE_RAM_GIB,
                        phases, "the weights pass through RAM once while loading")
    if mode == "offload":
        # The VAE stays; the transformer leaves the GPU for the text phase and, if the decode
        # does not fit beside it, at the last step (pinned copies: leaving costs nothing).
        phases = _phases(V + E, V + T, V, job, r)
        return ModePlan(mode, job, V, max(phases.values()), T + E + V + BASE_RAM_GIB, phases,
                        "transformer and text encoder pinned in RAM")
    if mode == "lowvram":
        phases = _phases(LOWVRAM_STREAMED_GIB, LOWVRAM_STREAMED_GIB, LOWVRAM_STREAMED_GIB, job,
                         r)
        return ModePlan(mode, job, 0.0, max(phases.values()), WEIGHTS_GIB + BASE_RAM_GIB,
                        phases, "transformer and VAE pinned in RAM, text encoder in RAM")
    if mode in ("int8", "nf4"):
        t_q = TRANSFORMER_INT8_GIB if mode == "int8" else TRANSFORMER_NF4_GIB
        e_q = TEXT_ENCODER_INT8_GIB if mode == "int8" else TEXT_ENCODER_NF4_GIB
        phases = _phases(e_q, t_q, V, job, r)
        # bitsandbytes quantizes on the GPU: both quantized components are there at load.
        return ModePlan(mode, job, t_q + e_q, max(phases.values()),
                        t_q + e_q + V + LOAD_SHARD_RAM_GIB + BASE_RAM_GIB, phases,
                        "quantized on the GPU while loading")
    # torchao: the transformer is quantized on the CPU while loading; the text encoder stays
    # bf16 and is offloaded.
    phases = _phases(E, TRANSFORMER_TORCHAO_GIB, V, job, r)
    return ModePlan(mode, job, 0.0, max(phases.values()),
                    TRANSFORMER_TORCHAO_GIB + E + V + LOAD_SHARD_RAM_GIB + BASE_RAM_GIB, phases,
                    "quantized on the CPU while loading")


def resident_plan(mode: str, job: Job, act_ratio: float = 1.0) -> ModePlan:
    """The plan of a quantized mode when every component stays on the GPU (no offload)."""
    plan_ = plan(mode, job, act_ratio=act_ratio)
    if mode not in ("int8", "nf4", "torchao"):
        return plan_
    weights = {"int8": TRANSFORMER_INT8_GIB + TEXT_ENCODER_INT8_GIB,
               "nf4": TRANSFORMER_NF4_GIB + TEXT_ENCODER_NF4_GIB,
               "torchao": TRANSFORMER_TORCHAO_GIB + TEXT_ENCODER_GIB}[mode] + VAE_GIB
    phases = _phases(weights, weights, weights, job, max(1.0, act_ratio))
    return ModePlan(mode, job, plan_.load_vram_gib, max(phases.values()), plan_.ram_gib, phases,
                    "every component resident")


# -- the machine and what fits on it -------------------------------------------------------------
@dataclass(frozen=True)
class Machine:
    """What a plan is judged against. None where a figure could not be measured."""

    kind: str  # "cuda", "mps", "cpu"
    name: str = ""
    free_vram_bytes: int | None = None
    total_vram_bytes: int | None = None
    ram_bytes: int | None = None  # physical RAM
    libraries: frozenset[str] = frozenset()

    @property
    def free_gib(self) -> float | None:
        return None if self.free_vram_bytes is None else self.free_vram_bytes / GIB

    @property
    def ram_gib(self) -> float | None:
        return None if self.ram_bytes is None else self.ram_bytes / GIB

    def where(self) -> str:
        name = self.name or ("the GPU" if self.kind == "cuda" else self.kind)
        if self.free_gib is None:
            return name
        return f"{self.free_gib:.1f} GiB free on {name}"


def usable_modes(kind: str, libraries: Iterable[str]) -> list[str]:
    """Modes that can run on a device kind ("cuda", "mps", "cpu") with these libraries.

    On the CPU and on Apple's unified memory, moving weights between "GPU" and "CPU" saves
    nothing, and bitsandbytes/torchao kernels target CUDA, so only `full` makes sense there.
    """
    if kind != "cuda":
        return ["full"]
    libraries = set(libraries)
    return [s.name for s in MODES if s.library is None or s.library in libraries]


def check_mode(mode: str, kind: str, libraries: Iterable[str]) -> str:
    """Validate a user-chosen (non-auto) mode for this device; returns it."""
    wanted = spec(mode)
    libraries = set(libraries)
    if kind != "cuda" and mode != "full":
        raise BadRequest(
            f"memory mode {mode!r} needs a CUDA GPU; on {kind} only 'full' (or 'auto') applies"
        )
    if wanted.library and wanted.library not in libraries:
        raise BackendUnavailable(
            f"memory mode {mode!r} needs the {wanted.library} package: "
            f"pip install {wanted.library}"
        )
    return mode


def judge(mode: str, job: Job, machine: Machine, ratio: float = 1.0) -> tuple[bool, str]:
    # `ratio`: the activation ratio learnt from out-of-memory errors (see `plan`).
    """Whether `mode` can run `job` on `machine`, and a sentence saying why (not)."""
    wanted = spec(mode)
    if machine.kind != "cuda" and mode != "full":
        return False, "needs a CUDA GPU"
    if wanted.library and wanted.library not in machine.libraries:
        return False, f"needs the {wanted.library} package (pip install {wanted.library})"
    plan_ = plan(mode, job, machine.kind, ratio)
    ram = machine.ram_gib
    if ram is not None and plan_.ram_gib > ram:
        return False, (f"needs about {plan_.ram_gib:.0f} GiB of RAM ({plan_.note}); "
                       f"this machine has {ram:.0f} GiB")
    if machine.kind == "cpu":
        return True, f"runs on the CPU in float32 (about {plan_.ram_gib:.0f} GiB of RAM)"
    free = machine.free_gib
    if free is None:
        if machine.kind == "mps":
            return True, "shared memory: the free amount cannot be measured"
        return False, "the free GPU memory could not be measured"
    need = plan_.needed_gib()
    if need > free:
        return False, (f"needs about {plan_.vram_gib:.1f} GiB at its peak ({plan_.peak_phase}) "
                       f"plus a margin, {free:.1f} GiB free")
    return True, f"peak about {plan_.vram_gib:.1f} GiB ({plan_.peak_phase}), {free:.1f} GiB free"


def fitting_modes(job: Job, machine: Machine, ratio: float = 1.0) -> list[str]:
    return [m for m in usable_modes(machine.kind, machine.libraries)
            if judge(m, job, machine, ratio)[0]]


def largest_jobs(machine: Machine, resolution: int, picture: tuple[int, int] | None = None,
                 ratio: float = 1.0) -> list[Job]:
    """Per resolution up to `resolution`, the job with the most layers some mode fits here."""
    found = []
    for res in sorted({r for r in RESOLUTIONS if r <= resolution}, reverse=True):
        for layers in range(MAX_LAYERS, 0, -1):
            job = Job.of(layers, res, picture)
            if fitting_modes(job, machine, ratio):
                found.append(job)
                break
    return found


def largest_job(machine: Machine, resolution: int, picture: tuple[int, int] | None = None,
                ratio: float = 1.0) -> Job | None:
    """The job with the most layers that fits here (the higher resolution on a tie)."""
    jobs = largest_jobs(machine, resolution, picture, ratio)
    return max(jobs, key=lambda job: (job.layers, job.resolution)) if jobs else None


def _fits_text(jobs: list[Job]) -> str:
    return ", or ".join(f"{job.describe()} (--layers {job.layers} --resolution "
                        f"{job.resolution})" for job in sorted(
                            jobs, key=lambda job: (-job.layers, -job.resolution)))


def choose_auto(job: Job, machine: Machine, ratio: float = 1.0,
                below: str | None = None) -> tuple[str | None, str]:
    """The fastest mode whose plan for this job fits here; (None, why) when none does.

    `below`: only modes lower than this one (the retry after it ran out of memory).
    """
    if machine.kind != "cuda":
        where = "the CPU" if machine.kind == "cpu" else f"{machine.name or machine.kind} " \
                                                         "(shared memory)"
        return "full", f"auto chose 'full': running on {where}, where offloading saves nothing"
    if machine.free_vram_bytes is None:
        return "offload", "auto chose 'offload': the free GPU memory could not be measured"
    skipped: list[str] = []
    modes = usable_modes(machine.kind, machine.libraries)
    if below is not None:
        modes = [m for m in modes if MODE_NAMES.index(m) > MODE_NAMES.index(spec(below).name)]
    for mode in modes:
        ok, why = judge(mode, job, machine, ratio)
        if ok:
            because = f"; {skipped[-1]}" if skipped else ""
            return mode, (f"auto chose {mode!r} for {job.describe()}: {machine.where()}, "
                          f"its peak is about {plan(mode, job, act_ratio=ratio).vram_gib:.1f} "
                          f"GiB{because}")
        skipped.append(f"{mode!r} {why}")
    return None, f"no memory mode fits {job.describe()} here ({machine.where()})"


def refusal(job: Job, machine: Machine, picture: tuple[int, int] | None = None,
            ratio: float = 1.0) -> str:
    """Why a job fits no mode, with the biggest job that would."""
    lowest = usable_modes(machine.kind, machine.libraries)[-1]
    plan_ = plan(lowest, job, machine.kind, ratio)
    text = (f"{job.describe()} needs about {plan_.vram_gib:.1f} GiB of GPU memory even in "
            f"{lowest!r} mode ({plan_.ram_gib:.0f} GiB of RAM), and {machine.where()}")
    if machine.ram_gib is not None:
        text += f" with {machine.ram_gib:.0f} GiB of RAM"
    jobs = largest_jobs(machine, job.resolution, picture, ratio)
    if not jobs:
        return text + "; no layer count fits here: free GPU memory or use a bigger GPU"
    return text + f"; the most that fits here: {_fits_text(jobs)}"


def next_lower(mode: str, kind: str, libraries: Iterable[str]) -> str | None:
    """The mode to try after `mode` ran out of memory, or None when none is lower."""
    modes = usable_modes(kind, libraries)
    order = MODE_NAMES.index(spec(mode).name)
    for candidate in modes:
        if MODE_NAMES.index(candidate) > order:
            return candidate
    return None


def oom_advice(mode: str, job: Job, machine: Machine, ratio: float = 1.0) -> str:
    """The sentence an OutOfMemory error ends with: the mode and settings the plan says fit."""
    tips = []
    fits = [m for m in fitting_modes(job, machine, ratio) if m != mode]
    lower = [m for m in fits if MODE_NAMES.index(m) > MODE_NAMES.index(mode)]
    if lower:
        target = lower[0]
        tips.append(f"--memory-mode {target} fits this job by the plan (about "
                    f"{plan(target, job, act_ratio=ratio).vram_gib:.0f} GiB at its peak), or "
                    "--memory-mode auto")
    else:
        following = next_lower(mode, machine.kind, machine.libraries)
        if following:
            tips.append(f"try --memory-mode {following} (about "
                        f"{plan(following, job, act_ratio=ratio).vram_gib:.0f} GiB) or "
                        "--memory-mode auto")
        else:
            tips.append(f"{mode!r} is the lowest memory mode here")
        jobs = [best for best in largest_jobs(machine, job.resolution, ratio=ratio)
                if (best.layers, best.resolution) != (job.layers, job.resolution)]
        if jobs:
            tips.append(f"what fits here by the plan: {_fits_text(jobs)}")
    if job.resolution > 640:
        tips.append("use --resolution 640")
    tips.append("close other programs that use the GPU" if machine.kind != "cpu"
                else "close other programs to free RAM")
    return "; ".join(tips)


# -- captioning ----------------------------------------------------------------------------------
CAPTION_WAYS = {
    "user": "the caption you gave",
    "gpu": "the text encoder on the GPU, as the mode places it",
    "onload": "the text encoder onloaded whole to the GPU for the caption",
    "4bit": "a 4-bit copy of the text encoder on the GPU (bitsandbytes)",
    "cpu": "the text encoder on the CPU, all cores",
}


def caption_way(mode: str, kind: str, free_gib: float | None,
                libraries: Iterable[str]) -> tuple[str, str]:
    """How the model captions the picture in `mode`; never by streaming the text encoder.

    Streaming its 16 GB of weights for every generated token takes 7 s or more per token
    (measured), so in `lowvram` the text encoder is onloaded whole when it fits, else run in
    4-bit on the GPU (bitsandbytes), else on the CPU with all cores.
    """
    if kind == "cpu":
        return "cpu", "the model runs on the CPU"
    if mode != "lowvram" or kind != "cuda":
        return "gpu", f"{mode!r} runs the whole text encoder on the GPU"
    whole = (TEXT_ENCODER_GIB + TEXT_ACTIVATION_GIB) * (1 + SAFETY_FRACTION) + SAFETY_GIB
    four_bit = (TEXT_ENCODER_NF4_GIB + TEXT_ACTIVATION_GIB) * (1 + SAFETY_FRACTION) + SAFETY_GIB
    free = -1.0 if free_gib is None else free_gib
    if free >= whole:
        return "onload", f"the text encoder fits whole ({whole:.1f} GiB, {free:.1f} free)"
    if "bitsandbytes" in set(libraries) and free >= four_bit:
        return "4bit", (f"the text encoder does not fit whole ({whole:.1f} GiB, {free:.1f} free); "
                        f"in 4-bit it needs {four_bit:.1f}")
    missing = "" if "bitsandbytes" in set(libraries) else "; bitsandbytes is not installed"
    return "cpu", (f"the text encoder fits the GPU neither whole ({whole:.1f} GiB) nor in 4-bit "
                   f"({four_bit:.1f}; {max(free, 0):.1f} free){missing}")


# -- offload: what stays on the GPU --------------------------------------------------------------
@dataclass(frozen=True)
class Residency:
    """Where `offload` keeps the transformer during one job."""

    keep_transformer_for_text: bool  # the text encoder fits beside it
    keep_transformer_for_decode: bool  # the VAE's decode fits beside it (and the next job
    # finds it resident)

    def describe(self) -> str:
        text = ("stays for the text phase" if self.keep_transformer_for_text
                else "leaves for the text phase")
        decode = ("stays through the decode" if self.keep_transformer_for_decode
                  else "leaves before the decode")
        return f"transformer {text}, {decode}"


def offload_residency(job: Job, budget_gib: float | None) -> Residency:
    """Keep the transformer resident wherever it fits within the GPU memory we may use."""
    if budget_gib is None:
        return Residency(False, False)
    margin = 1 + SAFETY_FRACTION

    def fits(gib: float) -> bool:
        return gib * margin + SAFETY_GIB <= budget_gib

    resident = TRANSFORMER_GIB + VAE_GIB
    return Residency(
        fits(resident + TEXT_ENCODER_GIB + TEXT_ACTIVATION_GIB),
        fits(resident + max(decode_activation_gib(job), denoise_activation_gib(job))),
    )


def learn_ratio(mode: str, job: Job, budget_gib: float, ratio: float = 1.0,
                limit: float = 8.0) -> float:
    """The activation ratio at which `mode`'s plan for `job` reaches `budget_gib`.

    After `job` ran out of memory with `budget_gib` to use, its activations were at least this
    much larger than planned; never below `ratio` (what was known already). A failure while
    loading teaches nothing about activations.
    """
    if plan(mode, job, act_ratio=limit).run_vram_gib < budget_gib:
        return max(ratio, limit)
    low, high = max(1.0, ratio), limit
    if plan(mode, job, act_ratio=low).run_vram_gib >= budget_gib:
        return low
    for _ in range(40):
        middle = (low + high) / 2
        if plan(mode, job, act_ratio=middle).run_vram_gib >= budget_gib:
            high = middle
        else:
            low = middle
    return high
