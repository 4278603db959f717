"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const modal = require("../src/modal");
const { createFakePhotoshop } = require("./fakes/photoshop");

const noWait = async () => {};

test("executeAsModal is retried while another plug-in holds the modal state", async () => {
  const { photoshop, fake } = createFakePhotoshop({ busy: 2 });
  const waits = [];
  const value = await modal.executeModal(photoshop.core, async () => 42,
    { commandName: "x", wait: async (ms) => waits.push(ms) });
  assert.equal(value, 42);
  assert.deepEqual(waits, modal.DEFAULT_DELAYS_MS.slice(0, 2));
  assert.equal(fake.calls.filter((c) => c.name === "core.executeAsModal").length, 3);
});

test("it gives up with photoshop_busy, and never retries the work's own errors", async () => {
  const { photoshop, fake } = createFakePhotoshop({ busy: 100 });
  await assert.rejects(modal.executeModal(photoshop.core, async () => 1, { commandName: "x", delaysMs: [1, 1], wait: noWait }),
    (e) => e.code === "photoshop_busy");
  assert.equal(fake.calls.length, 3);
  const other = createFakePhotoshop();
  let runs = 0;
  await assert.rejects(modal.executeModal(other.photoshop.core, async () => { runs += 1; throw new Error("boom"); },
    { commandName: "x", wait: noWait }), /boom/);
  assert.equal(runs, 1);
  assert.equal(modal.isModalBusy({ message: "The host is in a modal state and is busy" }), true);
  assert.equal(modal.isModalBusy(new Error("boom")), false);
});

test("changes in runAsOneStep are one history step; a failure rolls them back", async () => {
  const { photoshop } = createFakePhotoshop({ busy: 1 });
  const doc = photoshop.app.createFakeDocument({ width: 4, height: 4 });
  await modal.runAsOneStep(photoshop.core, { documentID: doc.id, historyName: "LayerLift: test", wait: noWait }, async () => {
    await doc.createLayerGroup({ name: "g" });
    await doc.createLayer({ name: "a" });
    await doc.createLayer({ name: "b" });
  });
  assert.deepEqual(doc.history, ["Open", "LayerLift: test"]);
  assert.deepEqual(doc.layers.map((l) => l.name), ["b", "a", "g"]);
  await assert.rejects(modal.runAsOneStep(photoshop.core, { documentID: doc.id, historyName: "bad", wait: noWait }, async () => {
    await doc.createLayer({ name: "c" });
    throw new Error("half way");
  }), /half way/);
  assert.deepEqual(doc.layers.map((l) => l.name), ["b", "a", "g"], "rolled back");
  assert.deepEqual(doc.history, ["Open", "LayerLift: test"]);
});

test("the fake refuses changes outside a modal scope, like Photoshop", async () => {
  const { photoshop } = createFakePhotoshop();
  const doc = photoshop.app.createFakeDocument({ width: 4, height: 4 });
  await assert.rejects(doc.createLayer({ name: "x" }), /outside executeAsModal/);
});

test("a failed rollback does not hide the error that caused it; Photoshop rolls back at scope end", async () => {
  const { photoshop, fake } = createFakePhotoshop({ failRollback: true });
  const doc = photoshop.app.createFakeDocument({ width: 4, height: 4 });
  await assert.rejects(modal.runAsOneStep(photoshop.core, { documentID: doc.id, historyName: "bad", wait: noWait }, async () => {
    await doc.createLayer({ name: "c" });
    throw new Error("the real reason");
  }), (err) => err.message === "the real reason" && /rollback failed/.test(err.rollbackError.message));
  assert.ok(fake.calls.some((c) => c.name === "hostControl.resumeHistory" && c.args.commit === false), "a rollback was asked for");
  assert.deepEqual(doc.layers, [], "the document is as before");
  assert.deepEqual(doc.history, ["Open"]);
});

test("prepare runs inside the modal scope, before history is suspended", async () => {
  const { photoshop, fake } = createFakePhotoshop();
  const doc = photoshop.app.createFakeDocument({ width: 4, height: 4 });
  const order = [];
  await modal.runAsOneStep(photoshop.core, {
    documentID: doc.id, historyName: "step", wait: noWait,
    prepare: () => order.push(`prepare modal=${fake.modalDepth > 0} suspended=${Boolean(doc.suspended)}`),
  }, async () => order.push(`work suspended=${Boolean(doc.suspended)}`));
  assert.deepEqual(order, ["prepare modal=true suspended=false", "work suspended=true"]);
});
