"""Soft alpha from colour unmixing at anti-aliased edges.

An edge pixel p that an object of colour F covers by a fraction a over a colour B beneath is
``p = a F + (1 - a) B``. Given F and B, the least-squares a is the projection of p - B on
F - B. How far p lies from that line (the residual) says whether the two-colour story holds
at all: a large residual means p is a mix of other colours (a junction, or an object above).
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.channels import channel_max

# |F - B|^2 below this (0-1 units) leaves alpha undetermined: F and B look the same.
MIN_CONTRAST_SQ = (6.0 / 255.0) ** 2


def unmix(pixel: np.ndarray, over: np.ndarray, under: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, residual) of `pixel` as `over` composited on `under`; arrays (..., 3) in [0, 1].

    alpha = clip(dot(p - B, F - B) / |F - B|^2, 0, 1); residual is the max channel error of
    the reconstruction. Where F and B are indistinguishable alpha is NaN.
    """
    span = over - under
    length = (span * span).sum(axis=-1)
    dot = ((pixel - under) * span).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.clip(dot / length, 0.0, 1.0)
    alpha = np.where(length >= MIN_CONTRAST_SQ, alpha, np.nan)
    recon = under + np.nan_to_num(alpha)[..., None] * span
    residual = channel_max(np.abs(recon - pixel))
    return alpha.astype(np.float32), residual.astype(np.float32)
