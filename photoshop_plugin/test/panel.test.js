"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { readParams } = require("../src/panel");

function form(values) {
  return (id) => (id in values ? { value: values[id], checked: values[id] } : null);
}

test("the form becomes decompose parameters", () => {
  assert.deepEqual(readParams(form({ layers: "4", backend: "classic", quality: "fast", steps: "", seed: "12", caption: " a poster " })),
    { backend: "classic", layers: 4, seed: 12, options: { resolution: 640, steps: 20, caption: "a poster" } });
  assert.deepEqual(readParams(form({ layers: "auto", quality: "default", steps: "30", seed: "" })),
    { backend: "auto", layers: null, seed: 0, options: { steps: 30 } });
});

test("bad steps or seed are refused before anything is sent", () => {
  assert.throws(() => readParams(form({ steps: "0" })), /steps/);
  assert.throws(() => readParams(form({ seed: "-3" })), /seed/);
  assert.throws(() => readParams(form({ seed: "1.5" })), /seed/);
});
