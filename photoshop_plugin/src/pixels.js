"use strict";
/**
 * Getting a layer's pixels out of Photoshop as the bridge wants them: 8-bit sRGB RGBA,
 * straight alpha, exactly the requested rectangle.
 *
 * `imaging.getPixels` trims the requested bounds to the area that holds pixels, so the
 * result is padded back with transparency; a layer without alpha (the background) gets
 * alpha 255. Documents whose colours cannot be sent faithfully are refused with a message
 * that says what to do, never sent with wrong colours.
 */

const { LayerLiftError } = require("./protocol");

const SRGB = "sRGB IEC61966-2.1";

const MODE_NAMES = {
  bitmapMode: "Bitmap",
  CMYKColorMode: "CMYK",
  duotoneMode: "Duotone",
  grayscaleMode: "Grayscale",
  indexedColorMode: "Indexed Color",
  labColorMode: "Lab",
  multichannelMode: "Multichannel",
  RGBColorMode: "RGB",
};

function enumValue(constants, group, key, fallback) {
  const table = constants && constants[group];
  return table && table[key] !== undefined ? table[key] : fallback;
}

/**
 * Whether the document's pixels can go to the bridge. RGB in 8 or 16 bits can: Photoshop
 * converts 16-bit data to 8 bits for us. Everything else is refused, because a round trip
 * through sRGB would change how a CMYK, Lab or indexed document looks.
 */
function documentSupport(doc, constants) {
  const rgb = enumValue(constants, "DocumentMode", "RGB", "RGBColorMode");
  const bits32 = enumValue(constants, "BitsPerChannelType", "THIRTYTWO", "bitDepth32");
  const mode = String(doc.mode);
  if (mode !== String(rgb)) {
    const name = MODE_NAMES[mode] || mode;
    return {
      ok: false,
      code: "unsupported_color_mode",
      reason: `This document is in ${name} mode; LayerLift works on RGB pictures. Duplicate it and choose Image > Mode > RGB Color, then decompose the copy.`,
    };
  }
  if (String(doc.bitsPerChannel) === String(bits32)) {
    return {
      ok: false,
      code: "unsupported_bit_depth",
      reason: "32-bit (HDR) documents are not supported: choose Image > Mode > 16 Bits/Channel or 8 Bits/Channel first.",
    };
  }
  return { ok: true, code: "", reason: "" };
}

function normalizeBounds(bounds) {
  const left = Math.round(bounds.left);
  const top = Math.round(bounds.top);
  const right = bounds.right !== undefined ? Math.round(bounds.right) : left + Math.round(bounds.width);
  const bottom = bounds.bottom !== undefined ? Math.round(bounds.bottom) : top + Math.round(bounds.height);
  return { left, top, right, bottom, width: Math.max(0, right - left), height: Math.max(0, bottom - top) };
}

/** `bounds` clipped to the canvas (layers may reach past it); width/height 0 when outside. */
function clipToCanvas(bounds, width, height) {
  const b = normalizeBounds(bounds);
  return normalizeBounds({
    left: Math.max(0, b.left),
    top: Math.max(0, b.top),
    right: Math.max(Math.max(0, b.left), Math.min(width, b.right)),
    bottom: Math.max(Math.max(0, b.top), Math.min(height, b.bottom)),
  });
}

/**
 * Copy chunky `data` (3 or 4 components, covering `got`) into a transparent RGBA buffer
 * covering `want`. Rows outside `want` are dropped; missing ones stay transparent.
 */
function padToBounds(data, components, got, want) {
  if (components !== 3 && components !== 4) {
    throw new LayerLiftError("unsupported_color_mode", `expected RGB or RGBA pixels, got ${components} components`);
  }
  const src = normalizeBounds(got);
  const dst = normalizeBounds(want);
  if (data.length < src.width * src.height * components) {
    throw new LayerLiftError("corrupt_image", "Photoshop returned fewer pixels than its bounds say");
  }
  const out = new Uint8Array(dst.width * dst.height * 4);
  const left = Math.max(src.left, dst.left);
  const right = Math.min(src.right, dst.right);
  const top = Math.max(src.top, dst.top);
  const bottom = Math.min(src.bottom, dst.bottom);
  if (right <= left || bottom <= top) return out;
  const span = right - left;
  for (let y = top; y < bottom; y += 1) {
    let s = ((y - src.top) * src.width + (left - src.left)) * components;
    let d = ((y - dst.top) * dst.width + (left - dst.left)) * 4;
    if (components === 4) {
      out.set(data.subarray(s, s + span * 4), d);
      continue;
    }
    for (let x = 0; x < span; x += 1) {
      out[d] = data[s];
      out[d + 1] = data[s + 1];
      out[d + 2] = data[s + 2];
      out[d + 3] = 255;
      s += 3;
      d += 4;
    }
  }
  return out;
}

/** Refuse image data that is not what was asked for, rather than send wrong colours. */
function checkImageData(imageData) {
  if (imageData.componentSize !== 8) {
    throw new LayerLiftError("unsupported_bit_depth",
      `Photoshop returned ${imageData.componentSize}-bit pixels where 8-bit ones were asked for`);
  }
  if (imageData.colorSpace !== "RGB" || (imageData.components !== 3 && imageData.components !== 4)) {
    throw new LayerLiftError("unsupported_color_mode",
      `Photoshop returned ${imageData.colorSpace} pixels with ${imageData.components} components, not RGB(A)`);
  }
  if (imageData.colorProfile && imageData.colorProfile !== SRGB) {
    throw new LayerLiftError("unsupported_color_mode",
      `Photoshop returned pixels in ${imageData.colorProfile}, not ${SRGB}`);
  }
}

const EMPTY_REGION = "there are no pixels to decompose here: the layer is fully transparent in this area. "
  + "Select a part of the layer that has visible pixels (or turn off “Use selection”).";

/** True when `a` and `b` (normalized) share at least one pixel. */
function overlaps(a, b) {
  return Math.max(a.left, b.left) < Math.min(a.right, b.right) && Math.max(a.top, b.top) < Math.min(a.bottom, b.bottom);
}

/**
 * The layer's pixels over `bounds` (document coordinates) as tight RGBA8 rows.
 * `layerBounds` (the layer's `boundsNoEffects`, or the canvas for a background layer) tells
 * a region without any pixels from a failed read: Photoshop may throw, or return no image
 * data, for a region where the layer is fully transparent; both are `empty_region`.
 * Returns `{ pixels, width, height, bounds }`.
 */
async function readLayerPixels(imaging, { documentID, layerID, bounds, layerBounds = null }) {
  const want = normalizeBounds(bounds);
  if (!want.width || !want.height) {
    throw new LayerLiftError("empty_region", "there are no pixels to decompose here (the layer or selection is empty)");
  }
  const have = layerBounds ? normalizeBounds(layerBounds) : null;
  const empty = have !== null && !overlaps(want, have);
  let result;
  try {
    result = await imaging.getPixels({
      documentID,
      layerID,
      sourceBounds: { left: want.left, top: want.top, right: want.right, bottom: want.bottom },
      colorSpace: "RGB",
      colorProfile: SRGB,
      componentSize: 8,
      applyAlpha: false,
    });
  } catch (err) {
    if (empty) throw new LayerLiftError("empty_region", EMPTY_REGION);
    throw new LayerLiftError("read_failed", `Photoshop could not read the layer's pixels: ${err && err.message ? err.message : err}`);
  }
  if (!result || !result.imageData) {
    // Nothing was trimmed to: the region holds no pixels, whatever the bounds said.
    throw new LayerLiftError("empty_region", EMPTY_REGION);
  }
  const { imageData } = result;
  try {
    checkImageData(imageData);
    const data = await imageData.getData({ chunky: true });
    const got = result.sourceBounds ? normalizeBounds(result.sourceBounds) : want;
    if (got.width !== imageData.width || got.height !== imageData.height) {
      throw new LayerLiftError("read_failed", "Photoshop returned pixels scaled from a cache level; try again");
    }
    const pixels = padToBounds(data, imageData.components, got, want);
    return { pixels, width: want.width, height: want.height, bounds: want };
  } finally {
    imageData.dispose();
  }
}

module.exports = {
  SRGB,
  EMPTY_REGION,
  documentSupport,
  normalizeBounds,
  clipToCanvas,
  padToBounds,
  checkImageData,
  readLayerPixels,
};
