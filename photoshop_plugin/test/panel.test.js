"use strict";
/** The panel's form and status line, on a fake DOM built from the real index.html. */
const test = require("node:test");
const assert = require("node:assert/strict");
const { readParams, readPicker, createPanel, STATUS_TEXT } = require("../src/panel");
const { STATUS, REFUSED_TEXT } = require("../src/connection");
const { TOO_OLD } = require("../src/host");
const { panelDocument } = require("./fakes/dom");
const { createFakePhotoshop } = require("./fakes/photoshop");
const { createFakeUxp } = require("./fakes/uxp");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function addBackend(document, value, label) {
  const item = document.createElement("sp-menu-item");
  item.setAttribute("value", value);
  item.textContent = label;
  document.getElementById("backend").querySelector("sp-menu").appendChild(item);
}

test("the fake picker is unfriendly: its .value is the label text, not the item's value", () => {
  const document = panelDocument();
  const quality = document.getElementById("quality");
  quality.choose("fast");
  assert.equal(quality.value, "Fast (640 px, 20 steps)");
  assert.equal(quality.selectedIndex, 1);
});

test("the form becomes decompose parameters, read by selectedIndex and each item's value", () => {
  const document = panelDocument();
  const get = (id) => document.getElementById(id);
  addBackend(document, "classic", "Classic (CPU)");
  get("layers").choose("4");
  get("backend").choose("classic");
  get("quality").choose("fast");
  get("seed").value = "12";
  get("caption").value = " a poster ";
  assert.deepEqual(readParams(get),
    { backend: "classic", layers: 4, seed: 12, options: { resolution: 640, steps: 20, caption: "a poster" } });

  get("layers").choose("auto");
  get("quality").choose("best");
  get("steps").value = "30";
  get("seed").value = "";
  get("caption").value = "";
  assert.deepEqual(readParams(get), { backend: "classic", layers: null, seed: 0, options: { resolution: 1024, steps: 30 } });
});

test("untouched pickers give the markup's selected items", () => {
  const document = panelDocument();
  assert.deepEqual(readParams((id) => document.getElementById(id)), { backend: "auto", layers: null, seed: 0, options: {} });
});

test(".value is used only when it is one of the items' values", () => {
  const document = panelDocument();
  // A picker with no selectedIndex and no item marked selected: only .value is left.
  const items = document.getElementById("quality").querySelectorAll("sp-menu-item")
    .map((item) => ({ getAttribute: (name) => item.getAttribute(name), hasAttribute: () => false }));
  const noIndex = (value) => ({ value, querySelectorAll: () => items });
  assert.equal(readPicker(noIndex("best"), "default"), "best");
  assert.equal(readPicker(noIndex("Best (1024 px, 50 steps)"), "default"), "default");
  assert.equal(readPicker(null, "auto"), "auto");
});

test("bad steps or seed are refused before anything is sent", () => {
  const document = panelDocument();
  const get = (id) => document.getElementById(id);
  get("steps").value = "0";
  assert.throws(() => readParams(get), /steps/);
  get("steps").value = "";
  get("seed").value = "-3";
  assert.throws(() => readParams(get), /seed/);
  get("seed").value = "1.5";
  assert.throws(() => readParams(get), /seed/);
});

/** A WebSocket that never opens, like one whose upgrade got HTTP 403 (or a closed port). */
function failingSocket(log) {
  return class FailingSocket {
    constructor(url) {
      this.url = url;
      log.push(this);
      setTimeout(() => this.onerror && this.onerror({ type: "error" }), 0);
    }
    close() {}
    send() {
      throw new Error("not open");
    }
  };
}

async function pairedUxp() {
  const fakes = createFakeUxp();
  await fakes.uxp.storage.secureStorage.setItem("layerlift.token", Uint8Array.from("tok", (c) => c.charCodeAt(0)));
  return fakes.uxp;
}

test("a refused panel says so in the status line and does not retry", async () => {
  const document = panelDocument();
  const sockets = [];
  const probes = [];
  const { photoshop } = createFakePhotoshop();
  const panel = createPanel({
    document, photoshop, uxp: await pairedUxp(), WebSocket: failingSocket(sockets), retryMs: [5],
    fetch: async (url) => {
      probes.push(url);
      return { status: 403 };
    },
  });
  await sleep(100);
  panel.manager.stop();
  await sleep(30);
  assert.equal(document.getElementById("status-text").textContent, STATUS_TEXT[STATUS.REFUSED]);
  assert.equal(document.getElementById("status-text").title, REFUSED_TEXT);
  assert.equal(document.getElementById("status-dot").className, "dot refused");
  assert.equal(sockets.length, 1, "no retry loop");
  assert.deepEqual(probes, ["http://127.0.0.1:47811"]);
});

test("with nothing listening the panel says 'not running' and keeps trying", async () => {
  const document = panelDocument();
  const sockets = [];
  const { photoshop } = createFakePhotoshop();
  const panel = createPanel({
    document, photoshop, uxp: await pairedUxp(), WebSocket: failingSocket(sockets), retryMs: [5],
    fetch: async () => {
      throw new TypeError("fetch failed");
    },
  });
  await sleep(100);
  panel.manager.stop();
  await sleep(30); // let an attempt in flight end
  assert.match(document.getElementById("status-text").textContent, /^LayerLift is not running/);
  assert.ok(sockets.length >= 3, `retried (${sockets.length} sockets)`);
});

test("without the Imaging API the panel says Photoshop 25 is needed and does not connect", async () => {
  const document = panelDocument();
  const sockets = [];
  const { photoshop } = createFakePhotoshop({ imaging: false });
  const panel = createPanel({ document, photoshop, uxp: await pairedUxp(), WebSocket: failingSocket(sockets), retryMs: [5] });
  await sleep(20);
  panel.manager.stop();
  assert.equal(panel.support.ok, false);
  assert.equal(document.getElementById("status-text").textContent, "Photoshop 25 or newer is needed");
  assert.equal(document.getElementById("error").textContent, `${TOO_OLD} (photoshop_too_old)`);
  assert.equal(document.getElementById("decompose").getAttribute("disabled"), "true");
  assert.equal(sockets.length, 0);
});
