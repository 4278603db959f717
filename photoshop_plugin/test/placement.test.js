"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { planPlacement, SEPARATOR } = require("../src/placement");

const result = {
  canvas: { width: 40, height: 30 },
  layers: [
    { index: 0, name: "background", x: 0, y: 0, width: 40, height: 30, visible: true },
    { index: 1, name: "empty", x: 0, y: 0, width: 0, height: 0, visible: true },
    { index: 2, name: "title", x: 5, y: 6, width: 10, height: 4, visible: false },
  ],
};
const origin = { left: 100, top: 50, width: 40, height: 30 };

test("a plan for a new group: named after the source, layers at document offsets, bottom first", () => {
  const plan = planPlacement(result, origin, { id: 7, name: "Poster", inLayerLiftGroup: false });
  assert.equal(plan.mode, "group");
  assert.equal(plan.groupName, "Poster");
  assert.equal(plan.hideSource, true);
  assert.equal(plan.removeSource, false);
  assert.equal(plan.historyName, "LayerLift: decompose “Poster”");
  assert.equal(plan.skipped, 1);
  assert.deepEqual(plan.layers, [
    { index: 0, name: "background", left: 100, top: 50, width: 40, height: 30, visible: true },
    { index: 2, name: "title", left: 105, top: 56, width: 10, height: 4, visible: false },
  ]);
});

test("inside a LayerLift group the layer is replaced in place by 'layer / sub-layer' layers", () => {
  const plan = planPlacement(result, origin, { id: 7, name: "shape 1", inLayerLiftGroup: true });
  assert.equal(plan.mode, "replace");
  assert.equal(plan.groupName, null);
  assert.equal(plan.hideSource, false);
  assert.equal(plan.removeSource, true);
  assert.deepEqual(plan.layers.map((l) => l.name), [`shape 1${SEPARATOR}background`, `shape 1${SEPARATOR}title`]);
});

test("a result that does not match what was sent is refused", () => {
  assert.throws(() => planPlacement(result, { ...origin, width: 41 }, { id: 1, name: "x" }), (e) => e.code === "protocol_error");
  const outside = { ...result, layers: [{ index: 0, name: "a", x: 35, y: 0, width: 10, height: 5 }] };
  assert.throws(() => planPlacement(outside, origin, { id: 1, name: "x" }), (e) => e.code === "protocol_error");
  const empty = { ...result, layers: [{ index: 0, name: "a", x: 0, y: 0, width: 0, height: 0 }] };
  assert.throws(() => planPlacement(empty, origin, { id: 1, name: "x" }), (e) => e.code === "empty_result");
});

test("blank and very long names get sensible ones", () => {
  const named = { ...result, layers: [{ index: 0, name: "  ", x: 0, y: 0, width: 1, height: 1 }] };
  assert.equal(planPlacement(named, origin, { id: 1, name: "" }).layers[0].name, "layer 1");
  assert.equal(planPlacement(named, origin, { id: 1, name: "n".repeat(400) }).groupName.length, 255);
});
