"use strict";
/**
 * Carrying out a placement plan in the document. Must run inside a modal scope (see
 * modal.runAsOneStep); every layer is moved explicitly, so the result does not depend on
 * where Photoshop happens to create a new layer, and checked afterwards, because `move` has
 * been reported to nest layers where it was not asked to (AdobeDocs/uxp-photoshop#493).
 */

const { LayerLiftError } = require("./protocol");
const { SRGB } = require("./pixels");
const { toArray } = require("./collection");

function placement(constants, key, fallback) {
  const table = constants && constants.ElementPlacement;
  return table && table[key] !== undefined ? table[key] : fallback;
}

/** Depth-first search for a layer by id (doc.layers lists only the top level). */
function findLayer(layers, id) {
  for (const layer of toArray(layers)) {
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

const parentId = (layer) => (layer.parent ? layer.parent.id : null);
const siblingsOf = (doc, layer) => toArray(layer.parent ? layer.parent.layers : doc.layers);

/**
 * What is wrong with where `layers` (bottom first) ended up, as sentences; empty when each
 * is directly inside `parent` (a group, or null for the document's top level) and they sit,
 * in order, directly above `below`.
 */
function placementProblems(doc, layers, parent, below) {
  const want = parent ? parent.id : null;
  const stray = layers.filter((layer) => parentId(layer) !== want);
  if (stray.length) {
    const where = parent ? `inside “${parent.name}”` : "at the top level";
    return [`${stray.length} of ${layers.length} new layers are not ${where}`];
  }
  const siblings = siblingsOf(doc, layers[0]).map((layer) => layer.id);
  const expected = [...layers].reverse().map((layer) => layer.id).concat(below ? [below.id] : []);
  const start = siblings.indexOf(expected[0]);
  const found = start < 0 ? [] : siblings.slice(start, start + expected.length);
  if (found.length !== expected.length || found.some((id, i) => id !== expected[i])) {
    return ["the new layers are not stacked in order" + (below ? ` directly above “${below.name}”` : "")];
  }
  return [];
}

/** Problems with the group: its children (exactly `layers`) and its place above `source`. */
function groupProblems(doc, group, layers, source) {
  const problems = placementProblems(doc, layers, group, null);
  const children = toArray(group.layers);
  if (!problems.length && children.length !== layers.length) problems.push(`“${group.name}” holds other layers too`);
  if (parentId(group) !== parentId(source)) {
    problems.push(`the group is not beside “${source.name}”`);
  } else {
    const siblings = siblingsOf(doc, source).map((layer) => layer.id);
    if (siblings.indexOf(group.id) !== siblings.indexOf(source.id) - 1) problems.push(`the group is not directly above “${source.name}”`);
  }
  return problems;
}

/**
 * The group holding exactly `layers` directly above `source`. When the moves did not put them
 * there, the group is built again with `createLayerGroup({name, fromLayers})` (the empty old
 * group is deleted) and checked once more; if that is wrong too, the insertion fails and is
 * rolled back rather than leave layers where the user did not expect them.
 */
async function settleGroup(doc, group, layers, source, name, before) {
  const first = groupProblems(doc, group, layers, source);
  if (!first.length) return group;
  const rebuilt = await doc.createLayerGroup({ name, fromLayers: layers });
  if (rebuilt.id !== group.id && !toArray(group.layers).length) await group.delete();
  const siblings = siblingsOf(doc, source).map((layer) => layer.id);
  if (parentId(rebuilt) !== parentId(source) || siblings.indexOf(rebuilt.id) !== siblings.indexOf(source.id) - 1) {
    await rebuilt.move(source, before);
  }
  const still = groupProblems(doc, rebuilt, layers, source);
  if (still.length) {
    throw new LayerLiftError("insert_failed",
      `Photoshop did not arrange the new layers as asked (${first[0]}; after regrouping: ${still[0]}), so nothing was inserted`);
  }
  return rebuilt;
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
  const sourceParent = source.parent || null;
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
  if (group) {
    group = await settleGroup(doc, group, created, source, plan.groupName, before);
  } else {
    // Replace mode: the sub-layers take the source's place in its (LayerLift) group.
    const problems = placementProblems(doc, created, sourceParent, source);
    if (problems.length) {
      throw new LayerLiftError("insert_failed", `Photoshop did not arrange the new layers as asked (${problems[0]}), so nothing was inserted`);
    }
  }
  if (plan.hideSource) source.visible = false;
  if (plan.removeSource) await source.delete();
  return { group, layers: created };
}

module.exports = { findLayer, insertLayers, putLayerPixels, placementProblems, groupProblems };
