"""One layer's RGBA8 pixels in a file of our own: the job store's form, fast both ways.

The job store writes every result before the job is announced and reads it back for any
client that fetches it later, so both directions are on someone's critical path. PNG costs
seconds per noisy 4096 px layer either way (filtering, deflate, inflate, unfiltering);
this file is the pixels themselves, in bands of rows, each band stored as it is or as one
zlib stream:

- a band is deflated (level 1) only when a sample of it shrinks to
  `COMPRESS_AT_MOST` of its size or less. Data that compresses that well (flat colour,
  transparency) deflates and inflates at hundreds of MB/s; data that does not (noise,
  photographic texture) runs at 50 MB/s and saves little, so it is copied instead;
- raw bands are read straight into the layer's array (`readinto`), never copied twice;
- every band carries a checksum of its stored bytes and the header a CRC-32 of itself and
  the band table, so a damaged or truncated file is a `CorruptImage` that says so, never
  wrong pixels or a numpy error. The band checksum is the sum of the bytes' 64-bit words
  (numpy, at memory speed): a CRC-32 of every band took 0.13 s of CPU each way for 512 MB,
  a third of the whole write, where the sum takes a few milliseconds. It catches every
  single changed byte and, short of a one-in-2**64 coincidence, zeroed or foreign blocks;
  reordered words escape it, which is not how files get damaged.

Layout, little-endian: a 32-byte header (magic, version, width, height, rows per band, band
count, header CRC), one 24-byte entry per band (codec, checksum, stored length), then the
bands' bytes in order. The name, offset and meta of a layer live in the manifest of the
folder that holds it (`formats.resultdir`).
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np
from layerlift.inference.errors import CorruptImage

MAGIC = b"LLRGBA8\x00"
VERSION = 1
RAW, ZLIB = 0, 1
# magic, version, reserved, width, height, rows per band, bands, CRC-32 of the rest.
_HEADER = struct.Struct("<8sHHIIIII")
# codec, 7 reserved bytes, checksum of the stored bytes, stored length.
_ENTRY = struct.Struct("<B7xQQ")
# A band is about this many bytes of pixels: small enough that a probe is representative,
# large enough that per-band costs (a system call, a zlib stream) do not show.
BAND_BYTES = 4 * 1024 * 1024
# The probe deflates PROBE_PIECES pieces of PROBE_BYTES in all, spread over the band: on
# noise it is the whole cost of choosing (zlib runs at 50 MB/s there), so it stays small.
PROBE_BYTES = 8 * 1024
PROBE_PIECES = 4
# Deflate a band only when its sample shrinks to this share or less (as `fastpng`).
COMPRESS_AT_MOST = 0.25


def band_rows(width: int) -> int:
    return max(1, BAND_BYTES // max(1, 4 * width))


def checksum(data: bytes | memoryview) -> int:
    """The sum, modulo 2**64, of `data` read as little-endian 64-bit words (the last one
    padded with zeros)."""
    view = np.frombuffer(data, np.uint8)
    whole = len(view) & ~7
    total = int(np.add.reduce(view[:whole].view("<u8"), dtype=np.uint64)) if whole else 0
    return (total + int.from_bytes(bytes(view[whole:]), "little")) & 0xFFFF_FFFF_FFFF_FFFF


def _encode_band(band: memoryview) -> tuple[int, bytes | memoryview]:
    """(codec, stored bytes) of one band: deflated when that pays, else the band itself."""
    size = len(band)
    if size > 2 * PROBE_BYTES:
        piece = PROBE_BYTES // PROBE_PIECES
        starts = [(size * (2 * index + 1) // (2 * PROBE_PIECES)) & ~3
                  for index in range(PROBE_PIECES)]
        sample = b"".join(band[start : start + piece] for start in starts)
        if len(zlib.compress(sample, 1)) > COMPRESS_AT_MOST * len(sample):
            return RAW, band
    packed = zlib.compress(band, 1)
    return (ZLIB, packed) if len(packed) < size else (RAW, band)


def write_layer(pixels: np.ndarray, handle: BinaryIO) -> int:
    """Write (h, w, 4) uint8 `pixels` (at least 1 x 1) to `handle`; returns the bytes written."""
    if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
        raise ValueError(f"a layer file holds (h, w, 4) uint8 pixels, not {pixels.shape}")
    height, width = pixels.shape[:2]
    if height < 1 or width < 1:
        raise ValueError("a layer file needs at least one pixel")
    rows = band_rows(width)
    bands = [
        _encode_band(memoryview(np.ascontiguousarray(pixels[top : top + rows])).cast("B"))
        for top in range(0, height, rows)
    ]
    table = b"".join(_ENTRY.pack(codec, checksum(data), len(data)) for codec, data in bands)
    fields = (MAGIC, VERSION, 0, width, height, rows, len(bands))
    crc = zlib.crc32(table, zlib.crc32(_HEADER.pack(*fields, 0)[:-4]))
    handle.write(_HEADER.pack(*fields, crc))
    handle.write(table)
    total = _HEADER.size + len(table)
    for _codec, data in bands:
        handle.write(data)
        total += len(data)
    return total


def _read_exactly(handle: BinaryIO, size: int, where: str) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise CorruptImage(f"{where} is cut short (the file was truncated)")
    return data


def read_header(handle: BinaryIO, where: str,
                max_pixels: int) -> tuple[int, int, int, list[tuple[int, int, int]]]:
    """(width, height, rows per band, [(codec, checksum, stored length)]) of a layer file.

    Every size is checked before anything of that size is allocated: a damaged header must
    not make a reader ask for gigabytes.
    """
    head = _read_exactly(handle, _HEADER.size, where)
    magic, version, _reserved, width, height, rows, count, crc = _HEADER.unpack(head)
    if magic != MAGIC:
        raise CorruptImage(f"{where} is not a LayerLift layer file")
    if version > VERSION:
        raise CorruptImage(f"{where} was written by a newer LayerLift (format {version})")
    if width < 1 or height < 1 or rows < 1 or count != -(-height // rows):
        raise CorruptImage(f"{where} has a damaged header")
    if width * height > max_pixels:
        raise CorruptImage(f"{where} declares {width} x {height} pixels, more than a result has")
    table = _read_exactly(handle, count * _ENTRY.size, where)
    if zlib.crc32(table, zlib.crc32(head[:-4])) != crc:
        raise CorruptImage(f"{where} has a damaged header (checksum mismatch)")
    entries = [_ENTRY.unpack_from(table, index * _ENTRY.size) for index in range(count)]
    line = width * 4
    for index, (codec, _crc, stored) in enumerate(entries):
        expected = min(rows, height - index * rows) * line
        # Deflated bands are kept only when smaller than the pixels they hold.
        fits = (codec == RAW and stored == expected) or (codec == ZLIB and stored < expected)
        if not fits:
            raise CorruptImage(f"{where} has a damaged header (band {index})")
    return width, height, rows, entries


def read_layer(handle: BinaryIO, where: str, max_pixels: int) -> np.ndarray:
    """The (h, w, 4) uint8 pixels of a layer file; `CorruptImage` if it is damaged.

    `where` names the file in messages. `handle` should be unbuffered (`buffering=0`), so
    raw bands go from the file straight into the array.
    """
    width, height, rows, entries = read_header(handle, where, max_pixels)
    line = width * 4
    pixels = np.empty((height, width, 4), np.uint8)
    flat = memoryview(pixels).cast("B")
    start = 0
    for index, (codec, expected_sum, stored) in enumerate(entries):
        size = min(rows, height - index * rows) * line
        target = flat[start : start + size]
        if codec == RAW:
            got = 0
            while got < size:
                count = handle.readinto(target[got:])
                if not count:
                    raise CorruptImage(f"{where} is cut short (the file was truncated)")
                got += count
            data: bytes | memoryview = target
        else:
            data = _read_exactly(handle, stored, where)
        if checksum(data) != expected_sum:
            raise CorruptImage(f"{where} is damaged (band {index} fails its checksum)")
        if codec == ZLIB:
            _inflate_into(data, target, where, index)
        start += size
    return pixels


def _inflate_into(data: bytes | memoryview, target: memoryview, where: str, index: int) -> None:
    stream = zlib.decompressobj()
    try:
        plain = stream.decompress(data, len(target))
    except zlib.error as exc:
        raise CorruptImage(f"{where} is damaged (band {index}: {exc})") from exc
    if len(plain) != len(target) or not stream.eof or stream.unconsumed_tail:
        raise CorruptImage(f"{where} is damaged (band {index} has the wrong length)")
    target[:] = plain
