"""Read the layer tree of an XCF file (GIMP's own format) with the standard library.

Enough of the format to check what the plug-in built: every layer's name, size, offsets,
visibility, whether it is a group, its path in the tree and its parasites. Pixels are checked
through GIMP's flattened PNG export instead of decoding XCF tiles here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

PROP_END, PROP_VISIBLE, PROP_OFFSETS = 0, 8, 15
PROP_PARASITES, PROP_GROUP_ITEM, PROP_ITEM_PATH = 21, 29, 30


@dataclass
class XcfLayer:
    name: str
    width: int
    height: int
    x: int = 0
    y: int = 0
    visible: bool = True
    is_group: bool = False
    path: tuple[int, ...] = ()
    parasites: dict[str, bytes] = field(default_factory=dict)


@dataclass
class XcfImage:
    width: int
    height: int
    layers: list[XcfLayer]

    def top_level(self) -> list[XcfLayer]:
        return [layer for layer in self.layers if len(layer.path) <= 1]

    def children(self, group: XcfLayer) -> list[XcfLayer]:
        depth = len(group.path) + 1
        prefix = group.path
        return [layer for layer in self.layers
                if len(layer.path) == depth and layer.path[: len(prefix)] == prefix]


def _parasites(data: bytes) -> dict[str, bytes]:
    out = {}
    pos = 0
    while pos < len(data):
        (name_len,) = struct.unpack_from(">I", data, pos)
        name = data[pos + 4 : pos + 4 + name_len - 1].decode("utf-8")
        pos += 4 + name_len
        _flags, size = struct.unpack_from(">II", data, pos)
        pos += 8
        out[name] = data[pos : pos + size]
        pos += size
    return out


def read_xcf(path: Path) -> XcfImage:
    data = Path(path).read_bytes()
    if not data.startswith(b"gimp xcf "):
        raise ValueError(f"{path} is not an XCF file")
    tag = data[9:13]
    version = 0 if tag == b"file" else int(tag[1:])
    pos = 14
    width, height, _base = struct.unpack_from(">III", data, pos)
    pos += 12
    if version >= 4:
        pos += 4
    while True:
        prop, length = struct.unpack_from(">II", data, pos)
        pos += 8 + length
        if prop == PROP_END:
            break
    pointer = (8, ">Q") if version >= 11 else (4, ">I")
    offsets = []
    while True:
        (offset,) = struct.unpack_from(pointer[1], data, pos)
        pos += pointer[0]
        if offset == 0:
            break
        offsets.append(offset)
    layers = []
    for index, offset in enumerate(offsets):
        lw, lh, _kind, name_len = struct.unpack_from(">IIII", data, offset)
        name = data[offset + 16 : offset + 16 + name_len - 1].decode("utf-8")
        layer = XcfLayer(name, lw, lh, path=(index,))
        q = offset + 16 + name_len
        while True:
            prop, length = struct.unpack_from(">II", data, q)
            body = data[q + 8 : q + 8 + length]
            if prop == PROP_OFFSETS:
                layer.x, layer.y = struct.unpack(">ii", body)
            elif prop == PROP_VISIBLE:
                layer.visible = struct.unpack(">I", body)[0] == 1
            elif prop == PROP_GROUP_ITEM:
                layer.is_group = True
            elif prop == PROP_ITEM_PATH:
                layer.path = struct.unpack(f">{length // 4}I", body)
            elif prop == PROP_PARASITES:
                layer.parasites = _parasites(body)
            q += 8 + length
            if prop == PROP_END:
                break
        layers.append(layer)
    return XcfImage(width, height, layers)
