"""Turn any decoded Pillow image into the one pixel format LayerLift works in.

Every backend expects straight-alpha RGBA, 8 bits a channel, in sRGB. Pictures arrive as
16-bit PNGs, CMYK JPEGs from print workflows, Display P3 photos from phones, palette GIFs
and grayscale scans; each needs a different, lossy step, so each step that can change what
the user sees adds a warning instead of happening silently.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms

# Modes whose samples are wider than 8 bits; Pillow's convert() would clip them, not scale.
_WIDE_GRAY_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
# Modes Pillow converts to RGB(A) exactly, with no colour decision to make.
_PLAIN_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "YCbCr", "HSV"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_CMS_ERRORS = (ImageCms.PyCMSError, OSError, ValueError, TypeError)


@lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def raw_is_wide(image: Image.Image) -> bool:
    """Whether the file stores more than 8 bits a sample.

    Pillow silently narrows 16-bit RGB(A) PNG and TIFF data to 8 bits while decoding, so the
    mode alone does not tell; the decoder's raw mode (e.g. 'RGB;16B') does.
    """
    if image.mode in _WIDE_GRAY_MODES:
        return True
    for tile in getattr(image, "tile", None) or []:
        args = tile[3]
        rawmode = args if isinstance(args, str) else (args[0] if args else "")
        if isinstance(rawmode, str) and (";16" in rawmode or ";32" in rawmode):
            return True
    return False


def _narrow(image: Image.Image, warnings: list[str]) -> Image.Image:
    """Scale 16/32-bit grayscale and float samples to 8 bits."""
    array = np.asarray(image)
    if image.mode == "F":
        finite = array[np.isfinite(array)]
        peak = float(finite.max()) if finite.size else 0.0
        scale = 1.0 if peak <= 1.0 else (255.0 if peak <= 255.0 else 65535.0)
        warnings.append(f"floating-point samples were scaled from 0..{scale:g} to 8 bits")
        values = np.nan_to_num(array.astype(np.float64)) / scale * 255.0
    else:
        values = array.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def _open_profile(icc: bytes, warnings: list[str]) -> tuple[ImageCms.ImageCmsProfile, str] | None:
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except _CMS_ERRORS:
        warnings.append("the embedded colour profile is unreadable; colours were used as stored")
        return None
    try:
        description = ImageCms.getProfileDescription(profile).strip() or "unnamed"
    except _CMS_ERRORS:
        description = "unnamed"
    return profile, description


def _is_srgb(description: str) -> bool:
    return "srgb" in description.lower().replace(" ", "")


def _to_srgb(
    image: Image.Image, profile: ImageCms.ImageCmsProfile, description: str, warnings: list[str]
) -> Image.Image | None:
    """`image` (RGB, RGBA, L, LA or CMYK) converted through `profile` to sRGB, or None."""
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    source = image.convert("L") if image.mode == "LA" else image
    out_mode = "RGBA" if source.mode == "RGBA" else "RGB"
    try:
        converted = ImageCms.profileToProfile(source, profile, _srgb_profile(), outputMode=out_mode)
    except _CMS_ERRORS:
        warnings.append(
            f"the embedded colour profile '{description}' could not be applied to this "
            f"{image.mode} image; colours were used as stored"
        )
        return None
    if converted is None:  # pragma: no cover - profileToProfile returns an image unless inPlace
        return None
    if alpha is not None and converted.mode != "RGBA":
        converted = converted.convert("RGBA")
        converted.putalpha(alpha)
    return converted


def _plain(image: Image.Image, icc: bytes | None, warnings: list[str]) -> Image.Image:
    """RGB-like and gray/palette images: exact mode change, then the profile if not sRGB."""
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        has_alpha = image.mode in _ALPHA_MODES or (
            image.mode == "P" and "transparency" in image.info
        )
        image = image.convert("RGBA" if has_alpha else "RGB")
    if not icc:
        return image
    opened = _open_profile(icc, warnings)
    if opened is None or _is_srgb(opened[1]):
        return image
    converted = _to_srgb(image, *opened, warnings)
    if converted is None:
        return image
    warnings.append(f"colours were converted from the embedded profile '{opened[1]}' to sRGB")
    return converted


def _cmyk(image: Image.Image, icc: bytes | None, warnings: list[str]) -> Image.Image:
    opened = _open_profile(icc, warnings) if icc else None
    converted = _to_srgb(image, *opened, warnings) if opened else None
    if converted is not None:
        warnings.append(
            f"the image is CMYK; it was converted to sRGB with its profile '{opened[1]}'"
        )
        return converted
    warnings.append(
        "the image is CMYK without a usable colour profile; it was converted to RGB with a "
        "simple formula, so colours may differ from a print preview"
    )
    return image.convert("RGB")


def _lab(image: Image.Image, warnings: list[str]) -> Image.Image:
    warnings.append("the image is in CIE L*a*b* colour; it was converted to sRGB")
    try:
        return ImageCms.profileToProfile(
            image, ImageCms.createProfile("LAB"), _srgb_profile(), outputMode="RGB"
        )
    except _CMS_ERRORS:
        return image.convert("RGB")


def to_srgb_rgba(image: Image.Image, warnings: list[str], *, wide: bool = False) -> np.ndarray:
    """Return `image` as a contiguous (h, w, 4) uint8 straight-alpha sRGB array.

    `wide` says the source had more than 8 bits a sample (see `raw_is_wide`); the
    narrowing itself already happened inside Pillow or happens here.
    """
    icc = image.info.get("icc_profile") or None
    if wide or image.mode in _WIDE_GRAY_MODES:
        warnings.append("the image has more than 8 bits per channel; it was reduced to 8 bits")
    if image.mode in _WIDE_GRAY_MODES:
        image = _narrow(image, warnings)

    if image.mode == "CMYK":
        image = _cmyk(image, icc, warnings)
    elif image.mode == "LAB":
        image = _lab(image, warnings)
    elif image.mode in _PLAIN_MODES:
        image = _plain(image, icc, warnings)
    else:
        warnings.append(f"the unusual pixel format '{image.mode}' was converted to RGB")
        image = image.convert("RGB")

    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    # np.array, not asarray: Pillow hands out read-only memory, and callers edit pixels.
    return np.array(rgba, dtype=np.uint8, order="C")
