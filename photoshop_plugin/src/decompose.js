"use strict";
/**
 * One Decompose press, start to end: check the document, read the pixels (a short modal
 * scope, no history), send them and wait for the layers (no modal scope: Photoshop stays
 * usable while the GPU works), then insert the result as one history step.
 */

const { JobState, LayerLiftError } = require("./protocol");
const pixels = require("./pixels");
const { planPlacement } = require("./placement");
const { insertLayers, findLayer } = require("./insert");
const { executeModal, runAsOneStep } = require("./modal");
const { requireImaging } = require("./host");
const { activateDocument, findDocument } = require("./target");

function groupKind(constants) {
  const kinds = constants && constants.LayerKind;
  return kinds && kinds.GROUP !== undefined ? kinds.GROUP : "group";
}

function unitValue(value) {
  return value && typeof value === "object" ? value._value : value;
}

/**
 * The selection's bounding box, or null when nothing is selected. `doc.selection` exists from
 * Photoshop 25; 24.x answers through batchPlay.
 */
async function selectionBounds(photoshop, doc) {
  if (doc.selection && "bounds" in doc.selection) {
    const b = doc.selection.bounds;
    return b ? pixels.normalizeBounds(b) : null;
  }
  const [answer] = await photoshop.action.batchPlay([
    { _obj: "get", _target: [{ _property: "selection" }, { _ref: "document", _id: doc.id }] },
  ], {});
  const rect = answer && answer.selection;
  if (!rect) return null;
  return pixels.normalizeBounds({
    left: unitValue(rect.left), top: unitValue(rect.top), right: unitValue(rect.right), bottom: unitValue(rect.bottom),
  });
}

/** The document, source layer and document rectangle that a Decompose press would use. */
async function resolveSource(photoshop, { useSelection }) {
  const { app, constants } = photoshop;
  const doc = app.activeDocument;
  if (!doc) throw new LayerLiftError("no_document", "open a document first");
  const support = pixels.documentSupport(doc, constants);
  if (!support.ok) throw new LayerLiftError(support.code, support.reason);
  const active = doc.activeLayers || [];
  if (active.length !== 1) {
    throw new LayerLiftError("select_one_layer", active.length ? "select only one layer to decompose" : "select the layer to decompose");
  }
  const layer = active[0];
  if (layer.kind === groupKind(constants)) {
    throw new LayerLiftError("not_a_pixel_layer", "select a layer, not a group (decompose one layer of it)");
  }
  let wanted;
  if (useSelection) {
    wanted = await selectionBounds(photoshop, doc);
    if (!wanted) throw new LayerLiftError("no_selection", "“Use selection” is on but nothing is selected");
  } else {
    wanted = pixels.normalizeBounds(layer.boundsNoEffects || layer.bounds);
  }
  const bounds = pixels.clipToCanvas(wanted, doc.width, doc.height);
  if (!bounds.width || !bounds.height) {
    throw new LayerLiftError("empty_region", "the layer (or selection) has no pixels on the canvas");
  }
  return { doc, layer, bounds };
}

/** What the Cancel button talks to while a run is in progress. */
class RunControl {
  constructor() {
    this.cancelled = false;
    this.jobId = null;
    this.connection = null;
  }

  async cancel() {
    this.cancelled = true;
    if (this.jobId && this.connection && !this.connection.closed) {
      await this.connection.cancel(this.jobId);
    }
  }

  check() {
    if (this.cancelled) throw new LayerLiftError("cancelled", "cancelled");
  }
}

/**
 * Decompose the active layer. `params` = {backend, layers, seed, options}.
 * `onProgress({stage, fraction, text})` is told what happens. Resolves to a summary.
 */
async function decomposeActiveLayer({ photoshop, manager, registry, params, useSelection = false, control, onProgress }) {
  const report = onProgress || (() => {});
  const run = control || new RunControl();
  const { core } = photoshop;
  requireImaging(photoshop);
  const { doc, layer, bounds } = await resolveSource(photoshop, { useSelection });
  const source = { id: layer.id, name: layer.name, inLayerLiftGroup: registry ? registry.isInLayerLiftGroup(doc.id, layer) : false };
  const docName = doc.title || doc.name || "the document";
  const layerBounds = layer.isBackgroundLayer
    ? { left: 0, top: 0, right: doc.width, bottom: doc.height }
    : layer.boundsNoEffects || layer.bounds;

  report({ stage: "reading", fraction: 0, text: "reading pixels" });
  const image = await executeModal(core, () => pixels.readLayerPixels(photoshop.imaging, {
    documentID: doc.id, layerID: layer.id, bounds, layerBounds,
  }), { commandName: "LayerLift: read pixels" });
  run.check();

  report({ stage: "sending", fraction: 0, text: "connecting to LayerLift" });
  const connection = await manager.ensure();
  run.connection = connection;
  const job = await connection.submit(image.pixels, image.width, image.height, params);
  run.jobId = job.id;
  if (run.cancelled) await run.cancel();
  report({ stage: job.state, fraction: 0, text: "queued", jobId: job.id });
  const result = await connection.wait(job.id, (record) => report(describeJob(record)));
  run.check();

  // The user kept working while the job ran: the document may be closed, or in the back, and
  // the layer may be gone. Checked here to say so early, and again inside the modal scope.
  const open = findDocument(photoshop.app, doc.id);
  if (open && !findLayer(open.layers, layer.id)) {
    throw new LayerLiftError("source_gone",
      `the layer “${layer.name}” was deleted while LayerLift worked; the result is kept as job ${job.id} in the LayerLift app`);
  }
  const plan = planPlacement(result, bounds, source);
  report({ stage: "inserting", fraction: 1, text: `inserting ${plan.layers.length} layers` });
  let target = null;
  const inserted = await runAsOneStep(core, {
    documentID: doc.id,
    historyName: plan.historyName,
    prepare: () => {
      target = activateDocument(photoshop.app, doc.id, { name: docName, jobId: job.id });
    },
  }, () => insertLayers(photoshop, target, plan, result.layers));
  if (inserted.group && registry) registry.add(doc.id, inserted.group.id);
  report({ stage: JobState.DONE, fraction: 1, text: `${plan.layers.length} layers added` });
  return { jobId: job.id, plan, group: inserted.group, layers: inserted.layers };
}

const STAGE_TEXT = {
  [JobState.QUEUED]: "waiting in the queue",
  [JobState.LOADING]: "loading the model",
  [JobState.RUNNING]: "decomposing",
  [JobState.REFINING]: "refining",
  [JobState.WRITING]: "saving the result",
  [JobState.DONE]: "receiving layers",
  [JobState.FAILED]: "failed",
  [JobState.CANCELLED]: "cancelled",
};

/** A job record (progress event) as the progress bar shows it. */
function describeJob(record) {
  const progress = record.progress || {};
  const state = String(record.state || progress.stage || "");
  let text = STAGE_TEXT[state] || state;
  if (state === JobState.QUEUED && Number.isInteger(record.position) && record.position > 0) text += ` (${record.position} ahead)`;
  if (progress.step && progress.total) text += ` — step ${progress.step}/${progress.total}`;
  if (progress.message) text += ` — ${progress.message}`;
  return { stage: state, fraction: Number(progress.fraction) || 0, text, jobId: record.id };
}

module.exports = { decomposeActiveLayer, resolveSource, selectionBounds, describeJob, RunControl };
