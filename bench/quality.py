"""Measure a backend's decomposition quality on the synthetic benchmark.

    python bench/quality.py --backend classic [--count 8] [--size 256] [--tiers flat,design]
                            [--layers truth|auto|N] [--seed 0] [--no-floor] [--json out.json]

For each tier it draws `count` samples (`bench.synthetic`), decomposes each picture with the
backend, scores the full-canvas prediction against the true layers (`bench.layerd_metric`),
and prints one table: RGB L1 and alpha soft IoU after 0-5 merges, the same for the identity
floor (one layer, the input picture itself), mean predicted and true layer counts, mean
recomposition PSNR, the time taken (seconds per megapixel) and the peak resident memory of
the process while the backend ran. A summary line per tier closes the run. No sample is ever
skipped: a backend that fails on one sample fails the run, with the tier and seed that broke it.

`--backend identity` runs the floor as the backend itself. A backend worth shipping must beat it
clearly after 0 merges.

Seeds: 0 and up are the reporting seeds. The classic backend's thresholds were chosen on seeds
1000 and up (`--seed 1000`), which are never reported, so the reported numbers do not measure
how well it was fitted to the samples it is scored on.

Peak memory is the process's high-water mark (VmHWM), reset just before each decomposition
where Linux allows it, so it includes what the process already held (the interpreter, the
sample) but not the generator's or the metric's own peaks. Elsewhere it is ru_maxrss, the
peak of the whole run.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    # Run as `python bench/quality.py`: make the repository root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerlift.inference.backends import create_backend
from layerlift.inference.backends.base import (
    MAX_LAYERS,
    Backend,
    CancelToken,
    DecomposeRequest,
    ProgressCallback,
    ignore_progress,
)
from layerlift.inference.errors import LayerLiftError
from layerlift.inference.layers import LayerStack, as_rgba8

from bench.layerd_metric import MERGE_RULES, evaluate, recomposition_psnr
from bench.synthetic import TIERS, make_sample

PSNR_CAP = 100.0  # exact recompositions (inf dB) count as this in means
MAX_MERGES = 5


class SampleFailed(RuntimeError):
    """A sample could not be decomposed or scored; the run stops rather than skip it."""


class IdentityBackend(Backend):
    """The floor: the whole picture as one layer. Recomposes exactly, decomposes nothing."""

    name = "identity"
    label = "Identity (one layer)"

    def decompose(
        self,
        image: np.ndarray,
        request: DecomposeRequest,
        progress: ProgressCallback = ignore_progress,
        cancel: CancelToken | None = None,
    ) -> LayerStack:
        return LayerStack.from_canvases(
            [as_rgba8(image)], ["image"], backend=self.name, psnr=float("inf")
        )


@dataclass
class SampleResult:
    """Everything measured on one sample."""

    seed: int
    gt_count: int
    pred_count: int
    requested: int | None
    rgb_l1: list[float]
    soft_iou: list[float]
    psnr: float
    seconds: float
    megapixels: float
    peak_rss_mb: float
    floor_rgb_l1: list[float] | None = None
    floor_soft_iou: list[float] | None = None


@dataclass
class TierResult:
    """The samples of one tier, in seed order."""

    tier: str
    samples: list[SampleResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Means over the tier's samples (PSNR capped at PSNR_CAP so exact stacks can average)."""
        s = self.samples
        seconds = sum(r.seconds for r in s)
        megapixels = sum(r.megapixels for r in s)
        psnrs = [min(r.psnr, PSNR_CAP) for r in s]
        floor = all(r.floor_soft_iou is not None for r in s)
        return {
            "tier": self.tier,
            "count": len(s),
            "rgb_l1": np.mean([r.rgb_l1 for r in s], axis=0).tolist(),
            "soft_iou": np.mean([r.soft_iou for r in s], axis=0).tolist(),
            "pred_layers": float(np.mean([r.pred_count for r in s])),
            "true_layers": float(np.mean([r.gt_count for r in s])),
            "psnr_mean": float(np.mean(psnrs)),
            "psnr_min": float(min(r.psnr for r in s)),
            "exact": sum(math.isinf(r.psnr) for r in s),
            "seconds_per_sample": seconds / len(s),
            "seconds_per_megapixel": seconds / megapixels,
            "peak_rss_mb": max(r.peak_rss_mb for r in s),
            "floor_rgb_l1": np.mean([r.floor_rgb_l1 for r in s], axis=0).tolist()
            if floor else None,
            "floor_soft_iou": np.mean([r.floor_soft_iou for r in s], axis=0).tolist()
            if floor else None,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/quality.py",
        description="Score a decomposition backend on seeded synthetic layered designs.",
    )
    parser.add_argument("--backend", default="classic",
                        help="a registered backend (classic, qwen) or 'identity' "
                        "(default: classic)")
    parser.add_argument("--count", type=_positive, default=8, help="samples per tier (default: 8)")
    parser.add_argument("--size", type=_size, default=(256, 256),
                        help="canvas size, N or WxH (default: 256)")
    parser.add_argument("--tiers", type=_tiers, default=TIERS,
                        help=f"comma-separated tiers (default: {','.join(TIERS)})")
    parser.add_argument("--layers", type=_layers, default="truth",
                        help="layer count to request: truth (default), auto, or 1-10")
    parser.add_argument("--seed", type=int, default=0, help="first sample seed (default: 0)")
    parser.add_argument("--merge-rule", choices=MERGE_RULES, default="partners",
                        help="merge selection: partners (docs/metrics.md, default) or layerd "
                        "(the reference code's variant)")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="do not score the identity floor beside the backend")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use 256 or 320x240)") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 16:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (sides of at least 16 px)")
    return values[0], values[1]


def _tiers(text: str) -> tuple[str, ...]:
    tiers = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in tiers if t not in TIERS]
    if unknown or not tiers:
        raise argparse.ArgumentTypeError(f"unknown tier(s) {unknown}; choose from {TIERS}")
    return tiers


def _layers(text: str) -> str | int:
    if text in ("truth", "auto"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use truth, auto or a number") from None
    if not 1 <= value <= MAX_LAYERS:
        raise argparse.ArgumentTypeError(f"layer count must be 1..{MAX_LAYERS}")
    return value


def make_backend(name: str) -> Backend:
    return IdentityBackend() if name == "identity" else create_backend(name)


def requested_layers(mode: str | int, true_count: int) -> int | None:
    """The layer count to ask for: the truth (capped at what a request allows), none, or N."""
    if mode == "truth":
        return min(true_count, MAX_LAYERS)
    if mode == "auto":
        return None
    return int(mode)


def run_tier(
    backend: Backend, tier: str, args: argparse.Namespace, log: Callable[..., None] = print
) -> TierResult:
    """Decompose and score `args.count` samples of one tier; any failure names its sample."""
    result = TierResult(tier)
    for index in range(args.count):
        seed = args.seed + index
        sample = make_sample(tier, seed, args.size)
        layers = requested_layers(args.layers, len(sample.layers))
        request = DecomposeRequest(layers=layers, seed=seed)
        reset_peak_rss()
        start = time.perf_counter()
        try:
            stack = backend.decompose(sample.image, request)
        except Exception as exc:
            raise SampleFailed(f"{tier} sample {seed}: the backend failed: {exc!r}") from exc
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()
        pred = stack.canvases()
        del stack
        try:
            scores = evaluate(pred, sample.layers, MAX_MERGES, merge_rule=args.merge_rule)
            recomposition = recomposition_psnr(pred, sample.image)
        except (ValueError, TypeError) as exc:
            raise SampleFailed(f"{tier} sample {seed}: unusable prediction: {exc}") from exc
        pred_count = len(pred)
        del pred
        floor = None
        if getattr(args, "floor", True):
            floor = evaluate([sample.image], sample.layers, MAX_MERGES,
                             merge_rule=args.merge_rule)
        height, width = sample.image.shape[:2]
        result.samples.append(
            SampleResult(
                seed=seed,
                gt_count=len(sample.layers),
                pred_count=pred_count,
                requested=layers,
                rgb_l1=scores["rgb_l1"],
                soft_iou=scores["soft_iou"],
                psnr=recomposition,
                seconds=seconds,
                megapixels=width * height / 1e6,
                peak_rss_mb=peak,
                floor_rgb_l1=None if floor is None else floor["rgb_l1"],
                floor_soft_iou=None if floor is None else floor["soft_iou"],
            )
        )
        log(f"  {tier} {index + 1}/{args.count}: {pred_count} layers, {seconds:.2f} s",
            file=sys.stderr)
    return result


def format_table(summary: dict[str, Any], header: str) -> str:
    merges = "".join(f"{k:>9}" for k in range(MAX_MERGES + 1))
    lines = [
        header,
        f"  {'merges':<14}{merges}",
        f"  {'RGB L1':<14}" + "".join(f"{v:>9.4f}" for v in summary["rgb_l1"]),
        f"  {'alpha soft IoU':<14}" + "".join(f"{v:>9.4f}" for v in summary["soft_iou"]),
    ]
    if summary.get("floor_soft_iou") is not None:
        lines += [
            f"  {'floor RGB L1':<14}" + "".join(f"{v:>9.4f}" for v in summary["floor_rgb_l1"]),
            f"  {'floor soft IoU':<14}"
            + "".join(f"{v:>9.4f}" for v in summary["floor_soft_iou"]),
        ]
    lines += [
        f"  layers: predicted {summary['pred_layers']:.2f}, true {summary['true_layers']:.2f}",
        f"  recomposition PSNR: mean {summary['psnr_mean']:.2f} dB (inf counted as "
        f"{PSNR_CAP:.0f}), min {summary['psnr_min']:.2f} dB, exact {summary['exact']}"
        f"/{summary['count']}",
        f"  time: {summary['seconds_per_sample']:.3f} s/sample, "
        f"{summary['seconds_per_megapixel']:.3f} s/megapixel; peak RSS "
        f"{summary['peak_rss_mb']:.0f} MB",
    ]
    return "\n".join(lines)


def format_overview(summaries: list[dict[str, Any]]) -> str:
    """One line per tier: soft IoU and RGB L1 at 0 and 5 merges, beside the floor's."""
    head = (f"{'tier':<12}{'IoU@0':>8}{'IoU@5':>8}{'L1@0':>8}{'floor':>8}{'floor@5':>8}"
            f"{'fL1@0':>8}{'margin':>8}{'s/MP':>8}{'RSS MB':>8}")
    lines = [head]
    for s in summaries:
        floor_iou = s["floor_soft_iou"] or [float("nan")] * (MAX_MERGES + 1)
        floor_l1 = s["floor_rgb_l1"] or [float("nan")] * (MAX_MERGES + 1)
        lines.append(
            f"{s['tier']:<12}{s['soft_iou'][0]:>8.3f}{s['soft_iou'][-1]:>8.3f}"
            f"{s['rgb_l1'][0]:>8.4f}{floor_iou[0]:>8.3f}{floor_iou[-1]:>8.3f}"
            f"{floor_l1[0]:>8.4f}{s['soft_iou'][0] - floor_iou[0]:>+8.3f}"
            f"{s['seconds_per_megapixel']:>8.3f}{s['peak_rss_mb']:>8.0f}"
        )
    return "\n".join(lines)


def reset_peak_rss() -> None:
    """Reset the process's resident high-water mark (Linux 4.0+); silently a no-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory in MB since the last reset (VmHWM), else the run's ru_maxrss."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        backend = make_backend(args.backend)
    except LayerLiftError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    width, height = args.size
    report: dict[str, Any] = {
        "backend": args.backend,
        "count": args.count,
        "size": [width, height],
        "layers": args.layers,
        "seed": args.seed,
        "merge_rule": args.merge_rule,
        "tiers": {},
    }
    summaries = []
    try:
        for tier in args.tiers:
            result = run_tier(backend, tier, args)
            summary = result.summary()
            summaries.append(summary)
            header = (f"{tier}: {summary['count']} samples {width}x{height}, backend "
                      f"{args.backend}, layers={args.layers}")
            print(format_table(summary, header), flush=True)
            report["tiers"][tier] = {
                "summary": summary,
                "samples": [_jsonable(asdict(s)) for s in result.samples],
            }
    except SampleFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        backend.unload()
    print(f"\nper tier: {args.count} samples {width}x{height} from seed {args.seed}, backend "
          f"{args.backend}, layers={args.layers}")
    print(format_overview(summaries), flush=True)
    if args.json:
        args.json.write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    return 0


def _jsonable(value: Any) -> Any:
    """Strict JSON has no infinity: an exact recomposition's PSNR is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
