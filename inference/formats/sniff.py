"""Recognise a file by its first bytes, before any decoder touches it.

File names lie (a screenshot saved as `.png` that is really a JPEG, a download that is an
HTML error page), and the right error depends on what the bytes are: a damaged PNG is a
`CorruptImage`, a PDF is an `UnsupportedFormat`. Looking at the magic number first also
lets the reader read a PNG's size from its header without asking Pillow to parse anything.
"""

from __future__ import annotations

import struct

# Formats LayerLift decodes, by the names users know them by.
SUPPORTED_INPUTS = ("PNG", "JPEG", "WebP", "TIFF", "GIF", "BMP", "PSD", "PSB", "ORA")

SUFFIX_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".webp": "WebP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".psd": "PSD",
    ".psb": "PSB",
    ".ora": "ORA",
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ORA_MIMETYPE = b"image/openraster"


def supported_format(head: bytes) -> str | None:
    """The supported format whose magic number `head` starts with, if any."""
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 26:
        return "BMP"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head.startswith(b"PK\x03\x04") and head[30:38] == b"mimetype" and ORA_MIMETYPE in head:
        return "ORA"
    return None


def describe_unsupported(head: bytes) -> str:
    """A plain-words guess at what a file we cannot read is, for the error message."""
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1"):
            return "a HEIC photo (export it as JPEG or PNG first)"
        if brand in (b"avif", b"avis"):
            return "an AVIF image (export it as PNG first)"
        return "a video or MP4-family file"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<svg", b"<?xml")):
        return "an SVG or XML file (vector images are not supported; export a PNG)"
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "a web page (HTML), not an image"
    if head.startswith((b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")):
        return "an icon file"
    if _looks_like_text(head):
        return "a text file"
    return "not a recognised image"


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the end of the sample is still text.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


def png_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR, or None if `head` is not a PNG header."""
    if not head.startswith(PNG_SIGNATURE) or len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)
