"use strict";
/**
 * One Decompose press against the unfriendly fake Photoshop, with a scripted bridge
 * connection (the real bridge is in integration.test.js): no Imaging API, an empty region,
 * the user switching or closing documents while the job runs, and misnesting moves.
 */
const test = require("node:test");
const assert = require("node:assert/strict");
const { decomposeActiveLayer } = require("../src/decompose");
const { GroupRegistry } = require("../src/registry");
const { EMPTY_REGION } = require("../src/pixels");
const { TOO_OLD } = require("../src/host");
const { createFakePhotoshop } = require("./fakes/photoshop");

const JOB = "0123456789abcdef";
const PARAMS = { backend: "classic", layers: 2, seed: 0, options: {} };

function solid(width, height, rgba) {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < data.length; i += 4) data.set(rgba, i);
  return data;
}

/**
 * A bridge connection that answers any picture with two layers: a background of the whole
 * picture and a 1x1 "dot" at its top-left corner. `during()` runs while the job is "running", which is
 * where a user switches or closes documents.
 */
function scriptedManager({ during = async () => {} } = {}) {
  const sent = [];
  const connection = {
    closed: false,
    async submit(pixels, width, height) {
      sent.push({ pixels, width, height });
      return { id: JOB, state: "queued" };
    },
    async wait() {
      await during();
      const { width, height } = sent[sent.length - 1];
      return {
        type: "result", job_id: JOB, canvas: { width, height },
        layers: [
          { index: 0, name: "background", x: 0, y: 0, width, height, visible: true, pixels: solid(width, height, [10, 20, 30, 255]) },
          { index: 1, name: "dot", x: 0, y: 0, width: 1, height: 1, visible: true, pixels: solid(1, 1, [200, 0, 0, 255]) },
        ],
      };
    },
    async cancel() {},
  };
  let ensured = 0;
  return { sent, manager: { ensure: async () => { ensured += 1; return connection; }, get ensured() { return ensured; } } };
}

/** A 12x10 document "Poster.psd" with a background and an 8x6 "Poster" layer at (2, 2). */
function posterDocument(photoshop, title = "Poster.psd") {
  const doc = photoshop.app.createFakeDocument({ width: 12, height: 10, title });
  doc.addPixelLayer("Background", { width: 12, height: 10, data: solid(12, 10, [255, 255, 255, 255]), background: true });
  const source = doc.addPixelLayer("Poster", { left: 2, top: 2, width: 8, height: 6, data: solid(8, 6, [0, 90, 200, 255]) });
  return { doc, source };
}

const names = (layers) => layers.map((layer) => layer.name);

test("the fake is unfriendly: createLayer on a document in the back acts on the active one", async () => {
  const { photoshop } = createFakePhotoshop();
  const { doc } = posterDocument(photoshop);
  const other = photoshop.app.createFakeDocument({ width: 4, height: 4, title: "Other.psd" });
  await photoshop.core.executeAsModal(() => doc.createLayer({ name: "where?" }), { commandName: "x" });
  assert.deepEqual(names(other.layers), ["where?"]);
  assert.ok(!names(doc.layers).includes("where?"));
  assert.throws(() => {
    photoshop.app.activeDocument = doc;
  }, /outside executeAsModal/);
});

test("the result goes into the source document even when the user switched to another", async () => {
  const { photoshop, fake } = createFakePhotoshop();
  const { doc, source } = posterDocument(photoshop);
  let other = null;
  const { manager } = scriptedManager({
    during: async () => {
      other = photoshop.app.createFakeDocument({ width: 30, height: 30, title: "Other.psd" });
      other.addPixelLayer("Sketch", { width: 30, height: 30, data: solid(30, 30, [1, 2, 3, 255]) });
    },
  });
  const outcome = await decomposeActiveLayer({ photoshop, manager, registry: new GroupRegistry(), params: PARAMS });
  assert.equal(photoshop.app.activeDocument, doc, "the source document was brought to the front");
  assert.deepEqual(names(other.layers), ["Sketch"], "the other document is untouched");
  assert.deepEqual(other.history, ["Open"]);
  assert.deepEqual(names(doc.layers), ["Poster", "Poster", "Background"]);
  assert.equal(doc.layers[0], outcome.group);
  assert.deepEqual(names(outcome.group.layers), ["dot", "background"]);
  assert.deepEqual(doc.history, ["Open", "LayerLift: decompose “Poster”"]);
  assert.equal(source.visible, false);
  // Switched inside the modal scope, before history was suspended and anything was created.
  const at = (name) => fake.calls.findIndex((c) => c.name === name);
  const switched = fake.calls.find((c) => c.name === "app.activeDocument=");
  assert.ok(switched.modal);
  assert.ok(at("app.activeDocument=") < at("hostControl.suspendHistory"));
  assert.ok(at("hostControl.suspendHistory") < at("document.createLayerGroup"));
  assert.ok(fake.calls.filter((c) => c.name.startsWith("document.create")).every((c) => c.args.actedOn === doc.id));
});

test("a source document closed during the job is refused with a message; nothing changes", async () => {
  const { photoshop } = createFakePhotoshop();
  const { doc } = posterDocument(photoshop);
  const other = photoshop.app.createFakeDocument({ width: 30, height: 30, title: "Other.psd" });
  photoshop.app.userActivates(doc);
  const { manager } = scriptedManager({ during: async () => photoshop.app.userCloses(doc) });
  await assert.rejects(decomposeActiveLayer({ photoshop, manager, params: PARAMS }), (err) => err.code === "source_gone"
    && err.message === `“Poster.psd” was closed while LayerLift worked, so nothing was inserted; the result is kept as job ${JOB} in the LayerLift app`);
  assert.deepEqual(other.layers, []);
  assert.deepEqual(other.history, ["Open"]);
});

test("layers that a move left outside the group are regrouped with createLayerGroup({name, fromLayers})", async () => {
  const { photoshop, fake } = createFakePhotoshop({ misnest: 1 });
  const { doc, source } = posterDocument(photoshop);
  const registry = new GroupRegistry();
  const { manager } = scriptedManager();
  const outcome = await decomposeActiveLayer({ photoshop, manager, registry, params: PARAMS });
  assert.equal(fake.misnest, 0, "the fake did misnest a move");
  const regroup = fake.calls.find((c) => c.name === "document.createLayerGroup" && c.args.fromLayers.length);
  assert.ok(regroup, "regrouped");
  assert.deepEqual(regroup.args.fromLayers, outcome.layers.map((l) => l.id));
  assert.equal(regroup.args.name, "Poster");
  // One group, holding exactly the new layers in order, directly above the source.
  assert.deepEqual(names(doc.layers), ["Poster", "Poster", "Background"]);
  assert.equal(doc.layers[0], outcome.group);
  assert.equal(doc.layers[1], source);
  assert.deepEqual(outcome.group.layers, [...outcome.layers].reverse());
  assert.ok(outcome.layers.every((layer) => layer.parent === outcome.group));
  assert.ok(registry.has(doc.id, outcome.group.id), "the registry knows the group that stayed");
  assert.deepEqual(doc.history, ["Open", "LayerLift: decompose “Poster”"]);
});

test("when regrouping does not fix it either, the insertion fails and is rolled back", async () => {
  const { photoshop, fake } = createFakePhotoshop({ misnest: 1 });
  const { doc, source } = posterDocument(photoshop);
  const createLayerGroup = doc.createLayerGroup.bind(doc);
  doc.createLayerGroup = (options) => createLayerGroup({ name: options.name }); // fromLayers ignored
  await assert.rejects(decomposeActiveLayer({ photoshop, manager: scriptedManager().manager, params: PARAMS }),
    (err) => err.code === "insert_failed" && /after regrouping/.test(err.message) && /nothing was inserted/.test(err.message));
  assert.equal(fake.misnest, 0);
  assert.deepEqual(names(doc.layers), ["Poster", "Background"], "rolled back");
  assert.equal(doc.layers[0], source);
  assert.equal(source.visible, true);
  assert.deepEqual(doc.history, ["Open"]);
});

test("without a misnest nothing is regrouped", async () => {
  const { photoshop, fake } = createFakePhotoshop();
  posterDocument(photoshop);
  await decomposeActiveLayer({ photoshop, manager: scriptedManager().manager, params: PARAMS });
  assert.equal(fake.calls.filter((c) => c.name === "document.createLayerGroup").length, 1);
});

test("a misnest when replacing a layer inside a LayerLift group fails and is rolled back", async () => {
  const { photoshop, fake } = createFakePhotoshop();
  const { doc } = posterDocument(photoshop);
  const registry = new GroupRegistry();
  const first = await decomposeActiveLayer({ photoshop, manager: scriptedManager().manager, registry, params: PARAMS });
  const child = first.group.layers[0];
  doc.activeLayers = [child];
  const before = doc.walk().map(({ layer, depth }) => `${depth}:${layer.name}`);
  const history = [...doc.history];
  fake.misnest = 1; // the first sub-layer lands above the LayerLift group instead of in it
  await assert.rejects(decomposeActiveLayer({ photoshop, manager: scriptedManager().manager, registry, params: PARAMS }),
    (err) => err.code === "insert_failed" && /not inside “Poster”.*nothing was inserted/.test(err.message));
  assert.equal(fake.misnest, 0);
  assert.deepEqual(doc.walk().map(({ layer, depth }) => `${depth}:${layer.name}`), before, "rolled back");
  assert.deepEqual(doc.history, history);
  assert.ok(fake.calls.some((c) => c.name === "hostControl.resumeHistory" && c.args.commit === false));
});

test("without the Imaging API a press is refused before anything is read or sent", async () => {
  const { photoshop, fake } = createFakePhotoshop({ imaging: false });
  posterDocument(photoshop);
  const scripted = scriptedManager();
  await assert.rejects(decomposeActiveLayer({ photoshop, manager: scripted.manager, params: PARAMS }),
    (err) => err.code === "photoshop_too_old" && err.message === TOO_OLD && /^Photoshop 25 or newer is needed/.test(err.message));
  assert.equal(scripted.manager.ensured, 0);
  assert.deepEqual(fake.calls, []);
});

test("a selection over a transparent part of the layer is empty_region, and nothing is sent", async () => {
  const { photoshop } = createFakePhotoshop();
  const { doc, source } = posterDocument(photoshop);
  doc.activeLayers = [source];
  doc.selectionRect = { left: 10, top: 0, right: 12, bottom: 2 }; // outside the Poster layer's pixels
  const scripted = scriptedManager();
  await assert.rejects(decomposeActiveLayer({ photoshop, manager: scripted.manager, params: PARAMS, useSelection: true }),
    (err) => err.code === "empty_region" && err.message === EMPTY_REGION);
  assert.equal(scripted.manager.ensured, 0);
});
