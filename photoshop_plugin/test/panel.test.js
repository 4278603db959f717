"use strict";
/** The panel's form and status line, on a fake DOM built from the real index.html. */
const test = require("node:test");
const assert = require("node:assert/strict");
const { readParams, readPicker, createPanel, STATUS_TEXT } = require("../src/panel");
const { optionSpecs, optionPresets, renderOptions, renderPresets } = require("../src/options");
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
  const backend = document.getElementById("backend");
  backend.choose("auto");
  assert.equal(backend.value, "Automatic");
  assert.equal(backend.selectedIndex, 0);
});

/** Backend options as a `welcome` carries them (docs/protocol.md, "Backend options"). */
const QWEN_SPECS = [
  { name: "resolution", type: "int", label: "Resolution", help: "working size", default: 640, choices: [640, 1024] },
  { name: "steps", type: "int", label: "Steps", help: "denoising steps", default: 50, minimum: 1, maximum: 200 },
  { name: "cfg_normalize", type: "bool", label: "CFG normalize", help: "renormalize", default: true },
  { name: "caption", type: "str", label: "Caption", help: "describe the picture", default: null, max_length: 2000 },
];
const QWEN_PRESETS = [
  { name: "fast", label: "Fast (640 px, 20 steps)", options: { resolution: 640, steps: 20 } },
  { name: "best", label: "Best (1024 px, 50 steps)", options: { resolution: 1024, steps: 50 } },
];
const CAPABILITIES = {
  backends: [
    { name: "qwen", label: "Qwen", available: true, reason: "", options: QWEN_SPECS, presets: QWEN_PRESETS },
    { name: "classic", label: "Classic (CPU)", available: true, reason: "", options: [], presets: [] },
  ],
};

/** The panel's controls for `backend` as `welcome` declares them; `get` and what to read. */
function rendered(document, backend) {
  const specs = optionSpecs(CAPABILITIES, backend);
  const presets = optionPresets(CAPABILITIES, backend);
  renderOptions(document, document.getElementById("backend-options"), specs);
  renderPresets(document, document.getElementById("quality"), presets);
  return { get: (id) => document.getElementById(id), specs, presets };
}

test("the form becomes decompose parameters, read by selectedIndex and each item's value", () => {
  const document = panelDocument();
  const { get, specs, presets } = rendered(document, "qwen");
  addBackend(document, "qwen", "Qwen");
  get("layers").choose("4");
  get("backend").choose("qwen");
  get("quality").choose("fast");
  assert.equal(get("quality").value, "Fast (640 px, 20 steps)");
  get("seed").value = "12";
  get("option-caption").value = " a poster ";
  assert.deepEqual(readParams(get, specs, presets),
    { backend: "qwen", layers: 4, seed: 12, options: { resolution: 640, steps: 20, caption: "a poster" } });

  get("layers").choose("auto");
  get("quality").choose("best");
  get("option-steps").value = "30";
  get("option-cfg_normalize").choose("false");
  get("seed").value = "";
  get("option-caption").value = "";
  assert.deepEqual(readParams(get, specs, presets),
    { backend: "qwen", layers: null, seed: 0, options: { resolution: 1024, steps: 30, cfg_normalize: false } });
  get("option-resolution").choose("640");
  assert.equal(readParams(get, specs, presets).options.resolution, 640, "a control the user set wins over the preset");
});

test("the quality menu is the chosen backend's presets from welcome, a made-up one included", () => {
  const document = panelDocument();
  const labels = () => document.getElementById("quality").items().map((item) => item.textContent.trim());
  rendered(document, "classic");
  assert.deepEqual(labels(), ["Backend default"]);
  rendered(document, "qwen").get("quality").choose("best");
  assert.deepEqual(labels(), ["Backend default", "Fast (640 px, 20 steps)", "Best (1024 px, 50 steps)"]);
  CAPABILITIES.backends[0].presets = [...QWEN_PRESETS, { name: "draft", label: "Draft", options: { steps: 4 } }];
  try {
    const { get, specs, presets } = rendered(document, "qwen");
    assert.equal(get("quality").selectedIndex, 2, "the choice survives a new welcome");
    get("quality").choose("draft");
    assert.deepEqual(readParams(get, specs, presets).options, { steps: 4 });
  } finally {
    CAPABILITIES.backends[0].presets = QWEN_PRESETS;
  }
});

test("a preset sends only options the chosen backend declares", () => {
  const document = panelDocument();
  const { get, presets } = rendered(document, "classic");
  assert.deepEqual(readParams(get, [], [...presets, ...QWEN_PRESETS]).options, {});
  assert.equal(document.getElementById("backend-options").children.length, 0);
});

test("untouched pickers give the markup's selected items", () => {
  const document = panelDocument();
  const { get, specs, presets } = rendered(document, "auto");
  assert.deepEqual(readParams(get, specs, presets), { backend: "auto", layers: null, seed: 0, options: {} });
});

test(".value is used only when it is one of the items' values", () => {
  const document = panelDocument();
  rendered(document, "qwen");
  // A picker with no selectedIndex and no item marked selected: only .value is left.
  const items = document.getElementById("quality").querySelectorAll("sp-menu-item")
    .map((item) => ({ getAttribute: (name) => item.getAttribute(name), hasAttribute: () => false }));
  const noIndex = (value) => ({ value, querySelectorAll: () => items });
  assert.equal(readPicker(noIndex("best"), "default"), "best");
  assert.equal(readPicker(noIndex("Best (1024 px, 50 steps)"), "default"), "default");
  assert.equal(readPicker(null, "auto"), "auto");
});

test("values outside an option's spec, or a bad seed, are refused before anything is sent", () => {
  const document = panelDocument();
  const { get, specs } = rendered(document, "qwen");
  get("option-steps").value = "0";
  assert.throws(() => readParams(get, specs), /Steps must be from 1 to 200/);
  get("option-steps").value = "2.5";
  assert.throws(() => readParams(get, specs), /whole number/);
  get("option-steps").value = "";
  get("seed").value = "-3";
  assert.throws(() => readParams(get, specs), /seed/);
  get("seed").value = "1.5";
  assert.throws(() => readParams(get, specs), /seed/);
});

/** A WebSocket whose server side is a function: `serve(message, socket)` answers each send. */
function scriptedSocket(serve) {
  return class ScriptedSocket {
    constructor(url) {
      this.url = url;
      setTimeout(() => this.onopen && this.onopen(), 0);
    }
    send(data) {
      const message = typeof data === "string" ? JSON.parse(data) : new Uint8Array(data);
      setTimeout(() => serve(message, this), 0);
    }
    push(message) {
      this.onmessage({ data: JSON.stringify(message) });
    }
    close() {
      if (this.closed) return;
      this.closed = true;
      setTimeout(() => this.onclose && this.onclose({ code: 1000, reason: "" }), 0);
    }
  };
}

test("a made-up option in welcome appears as a control and its value is sent", async () => {
  const sparkle = { name: "sparkle", type: "float", label: "Sparkle", help: "glitter", default: 0.5, minimum: 0, maximum: 2 };
  const capabilities = { backends: [{ name: "sparkly", label: "Sparkly", available: true, reason: "", options: [sparkle] }] };
  const decomposes = [];
  const Socket = scriptedSocket((m, s) => {
    if (m.type === "hello") s.push({ type: "welcome", protocol: 1, server: { name: "layerlift", version: "0" }, capabilities });
    else if (m.type === "decompose") {
      decomposes.push(m);
      s.push({ type: "error", code: "bad_request", message: "stop here", request_id: m.request_id });
    }
  });
  const document = panelDocument();
  const { photoshop } = createFakePhotoshop();
  const doc = photoshop.app.createFakeDocument({ width: 4, height: 4, title: "Poster.psd" });
  doc.addPixelLayer("Poster", { width: 4, height: 4, data: new Uint8Array(4 * 4 * 4).fill(200) });
  const panel = createPanel({ document, photoshop, uxp: await pairedUxp(), WebSocket: Socket, retryMs: [5] });
  for (let i = 0; i < 100 && !document.getElementById("option-sparkle"); i += 1) await sleep(5);
  const control = document.getElementById("option-sparkle");
  assert.ok(control, "the control was rendered from welcome");
  assert.equal(control.getAttribute("placeholder"), "default: 0.5");
  assert.equal(control.title, "glitter");
  control.value = "1.25";
  await document.getElementById("decompose").dispatch("click");
  panel.manager.stop();
  assert.equal(decomposes.length, 1);
  assert.deepEqual(decomposes[0].options, { sparkle: 1.25 });
  assert.equal(document.getElementById("error").textContent, "stop here (bad_request)");
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

test("choosing another backend renders that backend's options", async () => {
  const Socket = scriptedSocket((m, s) => {
    if (m.type === "hello") s.push({ type: "welcome", protocol: 1, server: { name: "layerlift", version: "0" }, capabilities: CAPABILITIES });
  });
  const document = panelDocument();
  const { photoshop } = createFakePhotoshop();
  const panel = createPanel({ document, photoshop, uxp: await pairedUxp(), WebSocket: Socket, retryMs: [5] });
  for (let i = 0; i < 100 && !document.getElementById("option-steps"); i += 1) await sleep(5);
  assert.ok(document.getElementById("option-steps"), "auto: every backend's options");
  document.getElementById("backend").choose("classic");
  await document.getElementById("backend").dispatch("change");
  assert.equal(document.getElementById("option-steps"), null);
  document.getElementById("backend").choose("qwen");
  await document.getElementById("backend").dispatch("change");
  assert.ok(document.getElementById("option-caption"));
  panel.manager.stop();
});
