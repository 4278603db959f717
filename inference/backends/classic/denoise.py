"""Edge-preserving smoothing before segmentation: JPEG ringing, sensor grain, resampling.

The region step links neighbours that differ by a few levels at most, which is right for the
exact flat colours of a design and wrong for the same design saved as JPEG: the ringing next
to every edge, and the blocks, break one flat area into many small ones. A sigma filter (Lee,
1983) averages each pixel with the neighbours in a small window whose colour is within
SIGMA_LEVELS of its own. Inside a flat area that averages the noise away; across an edge the
two sides differ by far more than the tolerance, so the edge stays sharp, and a lone
anti-aliased pixel between two colours finds no neighbour close enough and stays as it is.
Flat areas and linear gradients are their own averages, but low-contrast anti-aliased edges
are not, so the filter only runs on pictures that look noisy: where moderate curvature (second
differences of NOISE_LOW..NOISE_HIGH levels) is common next to the strong edges (above
NOISE_HIGH). A clean design has almost none (its edges are one blend pixel wide); JPEG ringing
and camera grain have many per edge pixel; resampled screenshots often do. The threshold was
chosen on the tuning seeds (1000 and up) of every benchmark tier.

The smoothed copy is only what the segmentation and the colour models see; the layers are
made to recomposite to the picture itself at the end.
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.channels import channel_max
from scipy import ndimage

SIGMA_LEVELS = 12  # max channel difference (0-255) of the neighbours averaged in
RADIUS = 2  # the window is (2 RADIUS + 1) squared
PASSES = 2
ROWS = 512  # rows per band, to bound the float working set on large pictures
NOISE_LOW, NOISE_HIGH = 3, 16
NOISE_RATIO = 0.55
# JPEG: see `jpeg_step`. A picture quantised this coarsely (about quality 80 and below) rings
# by more than SIGMA_LEVELS next to its edges, and is smoothed with STRONG_LEVELS instead.
COARSE_STEP = 5
STRONG_LEVELS = 18
STEP_POSITIONS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0))  # low AC coefficients of a block
MAX_STEP = 20
PERIODIC = 0.5  # mean cos(2 pi c / step) of the coefficients c on a grid of that step
MIN_COEFFICIENTS = 20


def noise_ratio(rgb: np.ndarray) -> float:
    """Pixels of moderate curvature per pixel of strong curvature (see the module doc)."""
    if min(rgb.shape[:2]) < 3:
        return 0.0
    x = rgb.astype(np.int16)
    horizontal = channel_max(np.abs(x[1:-1, 2:] - 2 * x[1:-1, 1:-1] + x[1:-1, :-2]))
    vertical = channel_max(np.abs(x[2:, 1:-1] - 2 * x[1:-1, 1:-1] + x[:-2, 1:-1]))
    curve = np.maximum(horizontal, vertical)
    moderate = int(((curve >= NOISE_LOW) & (curve <= NOISE_HIGH)).sum())
    return moderate / max(1, int((curve > NOISE_HIGH).sum()))


def is_noisy(rgb: np.ndarray) -> bool:
    return noise_ratio(rgb) >= NOISE_RATIO


def _block_dct() -> np.ndarray:
    """The 8-point orthonormal DCT-II matrix, JPEG's transform of a block's rows and columns.

    A matrix product rather than scipy.fft: the CPU bundle leaves scipy.fft out
    (packaging/flavours.py), and an 8 x 8 transform is two small products.
    """
    x = np.arange(8)
    basis = np.cos((2 * x[None, :] + 1) * x[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    basis[0] /= np.sqrt(2)
    return basis.astype(np.float32)


_BLOCK_DCT = _block_dct()


def jpeg_step(rgb: np.ndarray) -> int:
    """The quantisation step of a JPEG's low luma frequencies (1: not a JPEG, or a fine one).

    JPEG stores each 8 x 8 block's DCT coefficients as multiples of a step from its
    quantisation table, which the quality setting scales (about 7 at quality 70, 1 at 95).
    Decoded, the luma's block DCT still sits on that grid, so the largest step on which most
    non-zero coefficients lie (mean cos(2 pi c / step) > PERIODIC) is the step; a picture
    that was never a JPEG (or was resampled since) has no such grid. The median over a few
    low frequencies is taken, as one position alone can fall on a grid by chance.
    """
    h, w = (rgb.shape[0] // 8) * 8, (rgb.shape[1] // 8) * 8
    if h < 8 or w < 8:
        return 1
    luma = rgb[:h, :w].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    blocks = (luma - 128.0).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    coefficients = _BLOCK_DCT @ blocks @ _BLOCK_DCT.T
    steps = []
    for u, v in STEP_POSITIONS:
        values = coefficients[..., u, v].ravel()
        values = values[np.abs(values) > 1.5]
        found = 1
        if values.size >= MIN_COEFFICIENTS:
            for step in range(2, MAX_STEP + 1):
                if np.cos(2.0 * np.pi * values / step).mean() > PERIODIC:
                    found = step
        steps.append(found)
    return int(np.median(steps))


def sigma_levels(rgb: np.ndarray, step: int | None = None) -> int:
    """The sigma filter's tolerance for a noisy picture: wider for a coarse JPEG.

    `step`: the picture's `jpeg_step`, when the caller has it already.
    """
    if step is None:
        step = jpeg_step(rgb)
    return STRONG_LEVELS if step >= COARSE_STEP else SIGMA_LEVELS


def _pass(rgb: np.ndarray, levels: int, radius: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    padded = padded.astype(np.int16)
    out = np.empty_like(rgb)
    for top in range(0, h, ROWS):
        bottom = min(h, top + ROWS)
        centre = padded[top + radius : bottom + radius, radius : radius + w]
        total = np.zeros(centre.shape, np.int32)
        count = np.zeros(centre.shape[:2], np.int32)
        diff = np.empty(centre.shape, np.int16)
        for dy in range(2 * radius + 1):
            for dx in range(2 * radius + 1):
                other = padded[top + dy : bottom + dy, dx : dx + w]
                np.subtract(other, centre, out=diff)
                np.abs(diff, out=diff)
                near = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2]) <= levels
                # Adding zeros where not near: faster than a mask broadcast over channels.
                total += other * near[..., None]
                count += near
        out[top:bottom] = ((total + count[..., None] // 2) // count[..., None]).astype(np.uint8)
    return out


def smooth(rgb: np.ndarray, levels: int = SIGMA_LEVELS, reduced: int = 1) -> np.ndarray:
    """A sigma-filtered copy of an (h, w, 3) uint8 picture (same shape and type).

    `reduced` > 1: the picture is a box-averaged reduction, whose averaging already did most
    of the work, so one pass with a window of the same reach in the original's pixels does.
    """
    out = np.ascontiguousarray(rgb)
    if reduced > 1:
        return _pass(out, levels, max(1, RADIUS // reduced))
    for _ in range(PASSES):
        out = _pass(out, levels, RADIUS)
    return out


# --- chroma from luma ---------------------------------------------------------------------------
CFL_RADIUS = 2  # half-resolution samples each side of the window a local fit is made over
CFL_EPS = 16.0  # luma variance (levels squared) added: a flat window keeps its mean chroma
_TO_YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    np.float32,
)
_FROM_YCC = np.linalg.inv(_TO_YCC).astype(np.float32)
CFL_RESIDUAL = 300.0  # chroma variance (levels squared) a two-colour line may leave
CFL_SMALL = 2.0  # levels: corrections this small are left out (see `restore_chroma`)
_FOURTH = np.array([1.0, -4.0, 6.0, -4.0, 1.0], np.float32)
_FIRST = np.array([1.0, -1.0], np.float32)
SUBSAMPLED_RATIO = 0.45  # see `chroma_subsampled`: JPEGs 0.11-0.38, others 0.53 and up
_SPREAD = np.array([1.0, 6.0, 1.0], np.float32) / 8.0


def _half(x: np.ndarray) -> np.ndarray:
    """2 x 2 box average of an (h, w) array with even sides."""
    h, w = x.shape
    return x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _fine_share(x: np.ndarray) -> float:
    """Energy of the fourth differences per energy of the first, along both axes."""
    fine = coarse = 0.0
    for axis in (0, 1):
        fine += float((ndimage.correlate1d(x, _FOURTH, axis)[2:-2, 2:-2] ** 2).sum())
        coarse += float((ndimage.correlate1d(x, _FIRST, axis)[2:-2, 2:-2] ** 2).sum())
    return fine / max(coarse, 1e-6)


def chroma_subsampled(rgb: np.ndarray) -> bool:
    """Whether a picture's colour was stored at half resolution (a JPEG, at any quality).

    Decoding interpolates each stored chroma sample over two pixels, which leaves the chroma
    almost nothing at the finest scale, while its luma keeps the sharp edges. The fourth
    differences (which pass the finest scale) per first differences (all edges) of the chroma,
    per that of the luma, is about 1 when both are as sharp, as in any picture that was never
    subsampled (blurred or resampled ones included: their chroma is as soft as their luma).
    """
    if min(rgb.shape[:2]) < 8:
        return False
    ycc = rgb.astype(np.float32) @ _TO_YCC.T
    luma = _fine_share(ycc[..., 0])
    chroma = 0.5 * (_fine_share(ycc[..., 1]) + _fine_share(ycc[..., 2]))
    return chroma < SUBSAMPLED_RATIO * luma


def restore_chroma(rgb: np.ndarray) -> np.ndarray:
    """A JPEG's colours rebuilt at full resolution from its sharp luma (same shape and type).

    JPEG stores colour (Cb, Cr) at half resolution: thin coloured strokes (small print, an
    outline) decode with their colour smeared into the background over two pixels, while the
    luma stays sharp. Near an edge between two colours every channel is the same blend of the
    two, so locally chroma = a * luma + b; fitted on the half-resolution grid the chroma was
    stored on (both averaged 2 x 2), and applied to the full-resolution luma, this puts the
    colour back where the luma says the stroke is (chroma from luma, a guided filter).
    Corrections of at most CFL_SMALL levels are left out: flat areas, gradients and textures
    keep their own colour, and only the smeared strokes change.
    """
    h, w = rgb.shape[:2]
    if h < 4 or w < 4:
        return rgb
    ycc = rgb.astype(np.float32) @ _TO_YCC.T
    eh, ew = h + (h & 1), w + (w & 1)
    padded = np.pad(ycc, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")
    # Decoding spreads each stored chroma sample over its neighbours (libjpeg's "fancy"
    # upsampling), so the 2 x 2 average of the decoded chroma is the stored one blurred by
    # (1, 6, 1) / 8 along each axis: the luma is blurred alike to match.
    luma = ndimage.correlate1d(_half(padded[..., 0]), _SPREAD, 0, mode="nearest")
    luma = ndimage.correlate1d(luma, _SPREAD, 1, mode="nearest")
    size = 2 * CFL_RADIUS + 1
    mean_y = ndimage.uniform_filter(luma, size, mode="nearest")
    var_y = ndimage.uniform_filter(luma * luma, size, mode="nearest") - mean_y * mean_y
    out = ycc.copy()
    for c in (1, 2):
        chroma = _half(padded[..., c])
        mean_c = ndimage.uniform_filter(chroma, size, mode="nearest")
        cov = ndimage.uniform_filter(luma * chroma, size, mode="nearest") - mean_y * mean_c
        var_c = ndimage.uniform_filter(chroma * chroma, size, mode="nearest") - mean_c * mean_c
        a = cov / (np.maximum(var_y, 0) + CFL_EPS)
        b = mean_c - a * mean_y
        # A window of three colours (an outline, a stroke over a shape's edge) is no blend of
        # two: where the line leaves much of the chroma unexplained the decoded one is kept.
        residual = np.maximum(var_c - a * cov, 0)
        trust = np.clip(1.0 - residual / CFL_RESIDUAL, 0.0, 1.0)
        a = ndimage.uniform_filter(a, 3, mode="nearest")
        b = ndimage.uniform_filter(b, 3, mode="nearest")
        trust = ndimage.uniform_filter(trust, 3, mode="nearest")
        full = [np.repeat(np.repeat(x, 2, 0), 2, 1)[:h, :w] for x in (a, b, trust)]
        fitted = full[0] * ycc[..., 0] + full[1]
        change = full[2] * (fitted - ycc[..., c])
        # Small corrections are noise either way: only the smeared strokes are changed.
        change = np.sign(change) * np.maximum(np.abs(change) - CFL_SMALL, 0.0)
        out[..., c] = ycc[..., c] + change
    back = out @ _FROM_YCC.T
    return np.clip(np.rint(back), 0, 255).astype(np.uint8)
