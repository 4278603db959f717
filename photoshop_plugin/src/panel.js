"use strict";
/**
 * UI wiring: reads the panel's fields, shows connection status, progress and the last error,
 * and hands the work to decompose.js. Everything that decides something lives in the other
 * modules; this one only connects them to the DOM.
 */

const { DEFAULT_PORT, MAX_SEED } = require("./protocol");
const { ConnectionManager, STATUS } = require("./connection");
const { TokenStore } = require("./pairing");
const { GroupRegistry } = require("./registry");
const { decomposeActiveLayer, RunControl } = require("./decompose");
const { hostSupport } = require("./host");
const { toArray } = require("./collection");
const { optionSpecs, optionPresets, renderOptions, renderPresets, presetOptions, readOptions } = require("./options");

const STATUS_TEXT = {
  [STATUS.CONNECTING]: "Connecting to LayerLift…",
  [STATUS.CONNECTED]: "Connected",
  [STATUS.NOT_RUNNING]: "LayerLift is not running — start the LayerLift app (or `layerlift serve`)",
  [STATUS.PAIRING_NEEDED]: "Pairing needed",
  [STATUS.REFUSED]: "The LayerLift app refused this panel (see its log)",
  [STATUS.CONNECTION_FAILED]: "LayerLift answered but the connection failed — retrying (see its log)",
};

/** A text field's text (sp-textfield documents `.value`). */
function readValue(el, fallback = "") {
  if (!el) return fallback;
  if (el.value !== undefined && el.value !== null && el.value !== "") return String(el.value);
  return fallback;
}

/**
 * The `value` attribute of a picker's selected menu item. Adobe documents only
 * `selectedIndex` for the Spectrum dropdown; its `.value` may be the item's label text
 * ("Fast (640 px, 20 steps)" instead of "fast"), so it is used only when it is one of the
 * items' values. Before any choice, the item marked `selected` in the markup counts.
 */
function readPicker(picker, fallback) {
  if (!picker) return fallback;
  const items = picker.querySelectorAll ? toArray(picker.querySelectorAll("sp-menu-item")) : [];
  const values = items.map((item) => item.getAttribute("value"));
  const index = picker.selectedIndex;
  if (Number.isInteger(index) && index >= 0 && index < items.length && values[index] !== null) return values[index];
  if (picker.value !== undefined && picker.value !== null && values.includes(String(picker.value))) return String(picker.value);
  const marked = items.findIndex((item) => item.hasAttribute && item.hasAttribute("selected"));
  if (marked >= 0 && values[marked] !== null) return values[marked];
  return fallback;
}

/**
 * The decompose parameters from the form; throws a LayerLift-style error for bad input.
 * `specs` and `presets` are the backend's options and presets from `welcome` (see
 * options.js): the chosen preset fills the options it names, a control the user set wins.
 */
function readParams(get, specs = [], presets = []) {
  const layersValue = readPicker(get("layers"), "auto");
  const layers = layersValue === "auto" ? null : Number.parseInt(layersValue, 10);
  const options = presetOptions(presets, readPicker(get("quality"), "default"), specs);
  Object.assign(options, readOptions(get, specs));
  const seedText = readValue(get("seed"), "0").trim() || "0";
  const seed = Number(seedText);
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) throw Object.assign(new Error(`the seed must be a whole number from 0 to ${MAX_SEED}`), { code: "bad_request" });
  return { backend: readPicker(get("backend"), "auto"), layers, seed, options };
}

function createPanel({ document, photoshop, uxp, WebSocket, fetch = null, storage = null, port = DEFAULT_PORT, retryMs }) {
  const get = (id) => document.getElementById(id);
  const registry = new GroupRegistry(storage);
  let control = null;
  let specs = [];
  let presets = [];

  const showError = (err) => {
    get("error").textContent = err ? `${err.message}${err.code ? ` (${err.code})` : ""}` : "";
  };

  const setProgress = ({ fraction = 0, text = "" }) => {
    get("progress").value = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
    get("stage").textContent = text;
  };

  const setBusy = (busy) => {
    if (busy) get("decompose").setAttribute("disabled", "true");
    else get("decompose").removeAttribute("disabled");
    if (busy) get("cancel").removeAttribute("disabled");
    else get("cancel").setAttribute("disabled", "true");
  };

  const fillBackends = (conn) => {
    const menu = get("backend").querySelector("sp-menu");
    if (!menu) return;
    for (const backend of conn.capabilities.backends || []) {
      if (menu.querySelector(`sp-menu-item[value="${backend.name}"]`)) continue;
      const item = document.createElement("sp-menu-item");
      item.setAttribute("value", backend.name);
      item.textContent = backend.available ? backend.label : `${backend.label} (unavailable)`;
      if (!backend.available) item.setAttribute("disabled", "true");
      menu.appendChild(item);
    }
  };

  /** Render the chosen backend's options and quality presets from the server's `welcome`. */
  const refreshOptions = () => {
    const capabilities = manager.connection ? manager.connection.capabilities : {};
    const backend = readPicker(get("backend"), "auto");
    specs = optionSpecs(capabilities, backend);
    presets = optionPresets(capabilities, backend);
    renderOptions(document, get("backend-options"), specs);
    renderPresets(document, get("quality"), presets);
  };

  const manager = new ConnectionManager({
    WebSocket,
    url: `ws://127.0.0.1:${port}`,
    tokenStore: new TokenStore(uxp),
    fetch,
    retryMs,
    onStatus: (status, detail) => {
      get("status-dot").className = `dot ${status}`;
      get("status-text").textContent = STATUS_TEXT[status] || status;
      get("status-text").title = detail || "";
      get("pairing").className = status === STATUS.PAIRING_NEEDED ? "" : "hidden";
      if (status === STATUS.CONNECTED && manager.connection) {
        fillBackends(manager.connection);
        refreshOptions();
      }
    },
  });

  get("backend").addEventListener("change", refreshOptions);

  get("pair-button").addEventListener("click", async () => {
    showError(null);
    try {
      await manager.pair(readValue(get("pair-code")));
      get("pair-code").value = "";
    } catch (err) {
      showError(err);
    }
  });

  get("decompose").addEventListener("click", async () => {
    if (control) return;
    showError(null);
    control = new RunControl();
    setBusy(true);
    try {
      await decomposeActiveLayer({
        photoshop, manager, registry, control,
        params: readParams(get, specs, presets),
        useSelection: Boolean(get("use-selection").checked),
        onProgress: setProgress,
      });
    } catch (err) {
      setProgress({ fraction: 0, text: err.code === "cancelled" ? "Cancelled" : "Failed" });
      if (err.code !== "cancelled") showError(err);
    } finally {
      control = null;
      setBusy(false);
    }
  });

  get("cancel").addEventListener("click", async () => {
    if (!control) return;
    setProgress({ fraction: 0, text: "cancelling…" });
    try {
      await control.cancel();
    } catch (err) {
      showError(err);
    }
  });

  const support = hostSupport(photoshop);
  if (support.ok) {
    manager.ensure().catch(() => {}); // the status line says what happened
  } else {
    // Nothing here can work: say why once, and do not connect or offer Decompose.
    get("status-dot").className = "dot unsupported";
    get("status-text").textContent = "Photoshop 25 or newer is needed";
    get("status-text").title = support.message;
    get("decompose").setAttribute("disabled", "true");
    showError({ message: support.message, code: support.code });
  }
  return { manager, registry, support, refreshOptions, readParams: () => readParams(get, specs, presets) };
}

module.exports = { createPanel, readParams, readPicker, STATUS_TEXT };
