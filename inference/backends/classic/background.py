"""Which unit is the background, and which other units are just more of it.

The background is what the picture's border shows most: posters and slides put objects inside
the frame. When transparency owns more of the border than any colour does, the picture has no
background layer at all (a logo cut out on transparency). Pieces of the background cut off by
an object (a band across a gradient, the counter of a letter) are recognised by colour, against
the background's own model where it lies, and join it.
"""

from __future__ import annotations

import numpy as np
from layerlift.inference.backends.classic.facts import UnitFacts

# Max colour difference (levels) for a piece to count as more background.
MATCH_TOLERANCE = 8.0


def pick_background(own: np.ndarray, facts: UnitFacts) -> int | None:
    """The unit owning most of the border (ties: the larger), or None for transparency."""
    edge = np.concatenate([own[0], own[-1], own[1:-1, 0], own[1:-1, -1]])
    transparent = int((edge < 0).sum())
    counts = facts.border
    if counts.sum() == 0 or transparent > counts.max():
        return None
    best = counts.max()
    tied = np.flatnonzero(counts == best)
    return int(tied[np.argmax(facts.area[tied])])


def matching_pieces(background: int, facts: UnitFacts, candidates: list[int]) -> list[int]:
    """Flat units among `candidates` whose colour is the background's where they lie.

    Only units that touch the background or the picture's border: something inside a photo
    that happens to share the background's colour is not background.
    """
    touching = facts.neighbours.get(background, {})
    return [
        unit
        for unit in candidates
        if unit != background
        and not facts.complex[unit]
        and (unit in touching or facts.border[unit] > 0)
        and facts.colour_near(unit, background, MATCH_TOLERANCE)
    ]
