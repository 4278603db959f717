"""Decompose one layer of a stack again ("decompose any layer again", Qwen-Image-Layered §3).

Works with any backend: the layer's own pixels (trimmed to its alpha bounds, so the model
spends its whole resolution budget on that object) go through `backend.decompose`, and the
sub-layers it returns replace the layer in place, at the layer's offset, inside the parent
stack. Because every backend's result recomposites to its input, the parent stack still
looks the same afterwards.

Placing is its own pure function, `splice_sublayers`, because the sub-stack does not always
come from a backend called here: the desktop window queues the layer on the job runner like
any other picture and splices the runner's result when it lands.
"""

from __future__ import annotations

from dataclasses import replace

from layerlift.inference.backends.base import (
    Backend,
    CancelToken,
    DecomposeRequest,
    ProgressCallback,
    ignore_progress,
)
from layerlift.inference.errors import BadRequest
from layerlift.inference.layers import LayerStack

SEPARATOR = " / "


def decompose_layer(
    backend: Backend,
    stack: LayerStack,
    index: int,
    k: int,
    request: DecomposeRequest | None = None,
    progress: ProgressCallback = ignore_progress,
    cancel: CancelToken | None = None,
) -> LayerStack:
    """A new stack in which layer `index` is replaced by `k` sub-layers of it, bottom first.

    `request` carries the seed and backend options; its layer count is replaced by `k`.
    Raises BadRequest for an index outside the stack, an empty layer, or `k` out of range.
    """
    if not 0 <= index < len(stack.layers):
        raise BadRequest(f"there is no layer {index}: the stack has {len(stack.layers)} layers")
    parent = stack.layers[index].trimmed()
    if parent.width == 0 or parent.height == 0:
        raise BadRequest(f"layer {index} ({parent.name!r}) is empty: nothing to decompose")
    base = request or DecomposeRequest()
    sub_request = DecomposeRequest(layers=k, seed=base.seed, options=dict(base.options))
    sub = backend.decompose(parent.pixels, sub_request, progress, cancel)
    return splice_sublayers(stack, index, sub, backend.name)


def splice_sublayers(stack: LayerStack, index: int, sub: LayerStack,
                     backend: str | None = None) -> LayerStack:
    """A new stack in which layer `index` is replaced by `sub`, the decomposition of that
    layer's trimmed pixels: each sub-layer moves to the layer's offset, is named
    `parent / sub` and is hidden if the parent was. `stack` itself is left as it was.

    Raises BadRequest for an index outside the stack and ValueError when `sub` is not the
    size of the trimmed layer (it was made from something else).
    """
    if not 0 <= index < len(stack.layers):
        raise BadRequest(f"there is no layer {index}: the stack has {len(stack.layers)} layers")
    parent = stack.layers[index].trimmed()
    if (sub.width, sub.height) != (parent.width, parent.height):
        raise ValueError(
            f"a {sub.width}x{sub.height} decomposition cannot replace the "
            f"{parent.width}x{parent.height} layer {parent.name!r}"
        )
    placed = [
        replace(
            layer,
            name=f"{parent.name}{SEPARATOR}{layer.name}",
            x=layer.x + parent.x,
            y=layer.y + parent.y,
            visible=parent.visible and layer.visible,
            meta={**layer.meta, "parent": parent.name},
        )
        for layer in sub.layers
    ]
    result = stack.replace_layer(index, LayerStack(stack.width, stack.height, placed))
    history = list(result.meta.get("recursive", []))
    history.append({
        "index": index,
        "layer": parent.name,
        "layers": len(placed),
        "backend": sub.meta.get("backend", backend),
        "psnr": sub.meta.get("psnr"),
    })
    result.meta["recursive"] = history
    return result
