"""Score a backend on real Photoshop documents: their own layers are the truth.

    LAYERLIFT_CORPUS=/var/cache/layerlift-tests python bench/real_psd.py [--backend classic]
        [--jpeg 85] [--json out.json]

`bench/quality.py` scores against our own generator, a proxy. Here the pictures are documents
someone else made in Photoshop (psd-tools' test files, found in the corpus folder the same way
tests/test_corpus.py finds them): each document's flattened picture is decomposed, asking for
as many layers as it has, and scored with the same LayerD metric against its visible leaf
layers as LayerLift's own PSD reader returns them, next to the identity floor.

A document is used only where that truth is a truth: an opaque picture of at least
MIN_SIDE px a side, at least two visible layers with pixels, and layers that, laid over each
other normally, give the document's own composite (PSNR >= TRUTH_PSNR); blend modes,
adjustment layers and clipping do not, and such files are listed as left out with the reason.
Of a .psd and its .psb twin only the .psd is used. `--jpeg Q` scores each picture a second
time saved as a JPEG of quality Q (a real encoder's artefacts on a real design).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerlift.inference.backends.base import MAX_LAYERS, Backend, DecomposeRequest
from layerlift.inference.formats import read_stack
from layerlift.inference.formats.psd import flatten
from layerlift.inference.layers import LayerStack, psnr

from bench.corpus import CORPUS_ENV, PLACES, psd_files_in
from bench.layerd_metric import evaluate, recomposition_psnr
from bench.quality import make_backend
from bench.synthetic import jpeg_round_trip

MIN_SIDE = 64
TRUTH_PSNR = 40.0


@dataclass
class Document:
    """One usable document: its picture and its true layers (full canvas, bottom first)."""

    name: str
    picture: np.ndarray
    layers: list[np.ndarray]


@dataclass
class Score:
    """What one decomposition of one document measured (after 0 merges)."""

    name: str
    encoding: str
    true_layers: int
    pred_layers: int
    soft_iou: float
    rgb_l1: float
    floor_soft_iou: float
    floor_rgb_l1: float
    psnr: float
    seconds: float


def document_files(folder: Path) -> list[Path]:
    """Every .psd and .psb under `folder`, a .psb left out where its .psd twin exists."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".psd", ".psb"))
    stems = {p.with_suffix("") for p in files if p.suffix.lower() == ".psd"}
    return [p for p in files if p.suffix.lower() == ".psd" or p.with_suffix("") not in stems]


def load_document(path: Path, name: str) -> Document | str:
    """The document with its truth, or the reason it cannot be scored."""
    try:
        picture = np.asarray(flatten(path, name).convert("RGBA"))
        stack = read_stack(path)
    except Exception as exc:  # a damaged test file is a reason, not a crash of the run
        return f"not readable: {type(exc).__name__}: {str(exc)[:80]}"
    h, w = picture.shape[:2]
    if min(h, w) < MIN_SIDE:
        return f"{w}x{h} is under {MIN_SIDE} px a side"
    if not (picture[..., 3] == 255).all():
        return "its picture is not opaque"
    shown = [layer for layer in stack.layers if layer.visible and layer.pixels.size]
    layers = [canvas for canvas in LayerStack(w, h, shown, {}).canvases()
              if canvas[..., 3].any()]
    if len(layers) < 2:
        return "fewer than two visible layers with pixels"
    truth = LayerStack.from_canvases(layers, [str(i) for i in range(len(layers))])
    agreement = psnr(picture, truth.composite())
    if agreement < TRUTH_PSNR:
        return (f"its layers laid over each other give {agreement:.1f} dB of its picture "
                "(blend modes, adjustments or clipping)")
    return Document(name, picture, layers)


def score(backend: Backend, document: Document, picture: np.ndarray, encoding: str) -> Score:
    request = DecomposeRequest(layers=min(len(document.layers), MAX_LAYERS), seed=0)
    started = time.perf_counter()
    stack = backend.decompose(picture, request)
    seconds = time.perf_counter() - started
    pred = stack.canvases()
    found = evaluate(pred, document.layers, 0)
    floor = evaluate([picture], document.layers, 0)
    return Score(document.name, encoding, len(document.layers), len(pred),
                 found["soft_iou"][0], found["rgb_l1"][0], floor["soft_iou"][0],
                 floor["rgb_l1"][0], recomposition_psnr(pred, picture), seconds)


def summary_line(scores: list[Score], encoding: str) -> str:
    mine = [s for s in scores if s.encoding == encoding]
    if not mine:
        return f"{encoding}: no documents"

    def mean(key: str) -> float:
        return float(np.mean([getattr(s, key) for s in mine]))

    beat = sum(s.soft_iou >= s.floor_soft_iou + 0.15 and s.rgb_l1 < s.floor_rgb_l1
               for s in mine)
    return (f"{encoding}: {len(mine)} documents, soft IoU@0 {mean('soft_iou'):.3f} (floor "
            f"{mean('floor_soft_iou'):.3f}), RGB L1@0 {mean('rgb_l1'):.4f} (floor "
            f"{mean('floor_rgb_l1'):.4f}); {beat} of {len(mine)} beat the floor by the issue's "
            f"rule; layers {mean('pred_layers'):.1f} for {mean('true_layers'):.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="classic")
    parser.add_argument("--corpus", default=os.environ.get(CORPUS_ENV),
                        help=f"the corpus folder (default: ${CORPUS_ENV})")
    parser.add_argument("--jpeg", type=int, default=85, metavar="Q",
                        help="also score each picture saved as JPEG quality Q (0: do not)")
    parser.add_argument("--json", type=Path, help="write every score here")
    args = parser.parse_args(argv)
    if not args.corpus:
        print(f"name the corpus folder: --corpus DIR or {CORPUS_ENV}=DIR", file=sys.stderr)
        return 2
    folder = psd_files_in(Path(args.corpus))
    if folder is None:
        print(f"no folder of .psd files in {args.corpus} ({', '.join(PLACES)})",
              file=sys.stderr)
        return 2
    backend = make_backend(args.backend)
    scores: list[Score] = []
    left_out: dict[str, str] = {}
    for path in document_files(folder):
        name = path.relative_to(folder).as_posix()
        document = load_document(path, name)
        if isinstance(document, str):
            left_out[name] = document
            continue
        encodings = [("png", document.picture)]
        if args.jpeg:
            encodings.append((f"jpeg q{args.jpeg}", jpeg_round_trip(document.picture, args.jpeg)))
        for encoding, picture in encodings:
            result = score(backend, document, picture, encoding)
            scores.append(result)
            h, w = picture.shape[:2]
            print(f"{name:<40} {encoding:<8} {w}x{h} layers {result.pred_layers}/"
                  f"{result.true_layers}  IoU {result.soft_iou:.3f} (floor "
                  f"{result.floor_soft_iou:.3f})  L1 {result.rgb_l1:.4f} (floor "
                  f"{result.floor_rgb_l1:.4f})  {result.psnr:.1f} dB  {result.seconds:.2f} s")
    print(f"\n{len(left_out)} files left out:")
    for name, why in left_out.items():
        print(f"  {name}: {why}")
    print()
    for encoding in dict.fromkeys(s.encoding for s in scores):
        print(summary_line(scores, encoding))
    if args.json:
        args.json.write_text(json.dumps({"scores": [asdict(s) for s in scores],
                                         "left_out": left_out}, indent=2))
    return 0 if scores else 1


if __name__ == "__main__":
    sys.exit(main())
