"""Where the result layers go in the GIMP document, decided without GIMP.

Kept apart from the GIMP calls so the rules (group naming, offsets, stacking order, what
happens to the source layer, recursive replacement) are unit-tested on the host, and the
plug-in only carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GROUP_PARASITE = "layerlift-group"


@dataclass
class PlacedLayer:
    name: str
    x: int  # image coordinates
    y: int
    width: int
    height: int
    visible: bool
    pixels: bytes


@dataclass
class InsertPlan:
    """`layers` bottom first. `group_name` None means: insert into the source's parent group."""

    layers: list[PlacedLayer] = field(default_factory=list)
    group_name: str | None = None
    hide_source: bool = True
    remove_source: bool = False


def region_for(drawable_rect: tuple[int, int, int, int],
               selection: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    """The (x, y, w, h) image region to send: the layer, or its overlap with the selection."""
    x, y, w, h = drawable_rect
    if selection is None:
        return x, y, w, h
    sx1, sy1, sx2, sy2 = selection
    x1, y1 = max(x, sx1), max(y, sy1)
    x2, y2 = min(x + w, sx2), min(y + h, sy2)
    if x2 <= x1 or y2 <= y1:
        raise ValueError("The selection does not overlap the active layer.")
    return x1, y1, x2 - x1, y2 - y1


def group_name(source_name: str, count: int) -> str:
    return f"{source_name} – {count} layers"


def plan_insert(result_layers, origin: tuple[int, int], source_name: str,
                recursive: bool) -> InsertPlan:
    """Turn result layers (offsets relative to the sent region) into image placements.

    A fully transparent layer arrives as 0x0; GIMP cannot make an empty layer, so it becomes a
    1x1 transparent one at its offset: the user still sees every layer the backend named.
    """
    ox, oy = origin
    placed = []
    for layer in result_layers:
        if layer.width == 0 or layer.height == 0:
            placed.append(PlacedLayer(layer.name, ox + layer.x, oy + layer.y, 1, 1,
                                      layer.visible, b"\0\0\0\0"))
        else:
            placed.append(PlacedLayer(layer.name, ox + layer.x, oy + layer.y, layer.width,
                                      layer.height, layer.visible, layer.pixels))
    if recursive:
        return InsertPlan(placed, group_name=None, hide_source=False, remove_source=True)
    return InsertPlan(placed, group_name=group_name(source_name, len(placed)))
