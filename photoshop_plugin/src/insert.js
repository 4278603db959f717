"use strict";
/**
 * Carrying out a placement plan in the document. Must run inside a modal scope (see
 * modal.runAsOneStep); every layer is moved explicitly, so the result does not depend on
 * where Photoshop happens to create a new layer.
 */

const { LayerLiftError } = require("./protocol");
const { SRGB } = require("./pixels");

function placement(constants, key, fallback) {
  const table = constants && constants.ElementPlacement;
  return table && table[key] !== undefined ? table[key] : fallback;
}

/** Depth-first search for a layer by id (doc.layers lists only the top level). */
function findLayer(layers, id) {
  for (const layer of layers || []) {
    if (layer.id === id) return layer;
    const inner = layer.layers ? findLayer(layer.layers, id) : null;
    if (inner) return inner;
  }
  return null;
}

async function putLayerPixels(imaging, doc, layer, spec, pixels) {
  // A view into a larger buffer (the received frame) is copied so the host reads exactly it.
  const data = pixels.byteOffset === 0 && pixels.byteLength === pixels.buffer.byteLength ? pixels : pixels.slice();
  const imageData = await imaging.createImageDataFromBuffer(data, {
    width: spec.width,
    height: spec.height,
    components: 4,
    chunky: true,
    colorSpace: "RGB",
    colorProfile: SRGB,
  });
  try {
    await imaging.putPixels({
      documentID: doc.id,
      layerID: layer.id,
      imageData,
      replace: true,
      targetBounds: { left: spec.left, top: spec.top },
      commandName: "LayerLift layer",
    });
  } finally {
    imageData.dispose();
  }
}

/**
 * Insert the layers of `plan` (pixels from `resultLayers`, by index) into `doc`.
 * Returns `{ group, layers }` (group is null in replace mode).
 */
async function insertLayers(photoshop, doc, plan, resultLayers) {
  const { imaging, constants } = photoshop;
  const before = placement(constants, "PLACEBEFORE", "placeBefore");
  const inside = placement(constants, "PLACEINSIDE", "placeInside");
  const source = findLayer(doc.layers, plan.sourceId);
  if (!source) {
    throw new LayerLiftError("source_gone", "the decomposed layer is no longer in the document");
  }
  const pixelsByIndex = new Map(resultLayers.map((layer) => [layer.index, layer.pixels]));
  let group = null;
  let anchor = null;
  if (plan.mode === "group") {
    group = await doc.createLayerGroup({ name: plan.groupName });
    await group.move(source, before);
  }
  const created = [];
  for (const spec of plan.layers) {
    const pixels = pixelsByIndex.get(spec.index);
    if (!pixels) throw new LayerLiftError("protocol_error", `no pixels for layer ${spec.index}`);
    const layer = await doc.createLayer({ name: spec.name });
    if (anchor) {
      await layer.move(anchor, before);
    } else if (group) {
      await layer.move(group, inside);
    } else {
      await layer.move(source, before);
    }
    await putLayerPixels(imaging, doc, layer, spec, pixels);
    if (layer.name !== spec.name) layer.name = spec.name;
    layer.visible = spec.visible;
    created.push(layer);
    anchor = layer;
  }
  if (plan.hideSource) source.visible = false;
  if (plan.removeSource) await source.delete();
  return { group, layers: created };
}

module.exports = { findLayer, insertLayers, putLayerPixels };
