"use strict";
/**
 * The placement plan: which layers a result becomes in the document, with which names, at
 * which document bounds, in which order, and what happens to the source layer.
 *
 * Pure data (no Photoshop calls), so the tests can check every decision directly; `insert.js`
 * carries a plan out.
 *
 * Two modes:
 * - `group`: a new group named after the source layer, directly above it, holding one pixel
 *   layer per result layer (bottom first); the source layer is hidden, not deleted, so
 *   nothing is lost.
 * - `replace`: the source is itself a layer of a LayerLift group (recursive decomposition):
 *   its sub-layers take its place in that group, named "<layer> / <sub-layer>", and the
 *   source layer is removed (one Ctrl-Z brings it back).
 */

const { LayerLiftError } = require("./protocol");

const SEPARATOR = " / ";
const MAX_NAME = 255;

function clampName(name, fallback) {
  const text = String(name === undefined || name === null ? "" : name).trim() || fallback;
  return text.length > MAX_NAME ? text.slice(0, MAX_NAME) : text;
}

/**
 * @param result  the bridge's `result` ({canvas, layers:[{index,name,x,y,width,height,visible}]})
 * @param origin  where the sent picture sits in the document ({left, top, width, height})
 * @param source  the decomposed layer ({id, name, inLayerLiftGroup})
 */
function planPlacement(result, origin, source) {
  const canvas = result.canvas || {};
  if (canvas.width !== origin.width || canvas.height !== origin.height) {
    throw new LayerLiftError("protocol_error",
      `the result is ${canvas.width}x${canvas.height} but ${origin.width}x${origin.height} pixels were sent`);
  }
  const sourceName = clampName(source.name, "Layer");
  const mode = source.inLayerLiftGroup ? "replace" : "group";
  const layers = [];
  let skipped = 0;
  for (const layer of result.layers || []) {
    if (!layer.width || !layer.height) {
      skipped += 1; // an empty layer has nothing to show; Photoshop layers cannot be 0x0
      continue;
    }
    if (layer.x < 0 || layer.y < 0 || layer.x + layer.width > canvas.width || layer.y + layer.height > canvas.height) {
      throw new LayerLiftError("protocol_error", `layer ${layer.index} lies outside the picture`);
    }
    const base = clampName(layer.name, `layer ${layer.index + 1}`);
    layers.push({
      index: layer.index,
      name: mode === "replace" ? clampName(`${sourceName}${SEPARATOR}${base}`, base) : base,
      left: origin.left + layer.x,
      top: origin.top + layer.y,
      width: layer.width,
      height: layer.height,
      visible: layer.visible !== false,
    });
  }
  if (!layers.length) throw new LayerLiftError("empty_result", "LayerLift returned no visible layers");
  return {
    mode,
    historyName: `LayerLift: decompose “${sourceName}”`,
    sourceId: source.id,
    groupName: mode === "group" ? sourceName : null,
    hideSource: mode === "group",
    removeSource: mode === "replace",
    layers, // bottom first: each is placed directly above the one before
    skipped,
  };
}

module.exports = { SEPARATOR, planPlacement, clampName };
