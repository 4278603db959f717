"use strict";
/**
 * UI wiring: reads the panel's fields, shows connection status, progress and the last error,
 * and hands the work to decompose.js. Everything that decides something lives in the other
 * modules; this one only connects them to the DOM.
 */

const { DEFAULT_PORT } = require("./protocol");
const { ConnectionManager, STATUS } = require("./connection");
const { TokenStore } = require("./pairing");
const { GroupRegistry } = require("./registry");
const { decomposeActiveLayer, RunControl } = require("./decompose");

const STATUS_TEXT = {
  [STATUS.CONNECTING]: "Connecting to LayerLift…",
  [STATUS.CONNECTED]: "Connected",
  [STATUS.NOT_RUNNING]: "LayerLift is not running — start the LayerLift app (or `layerlift serve`)",
  [STATUS.PAIRING_NEEDED]: "Pairing needed",
};

const QUALITY = {
  default: {},
  fast: { resolution: 640, steps: 20 },
  best: { resolution: 1024, steps: 50 },
};

function readValue(el, fallback = "") {
  if (!el) return fallback;
  if (el.value !== undefined && el.value !== null && el.value !== "") return String(el.value);
  const items = el.querySelectorAll ? el.querySelectorAll("sp-menu-item") : [];
  const index = el.selectedIndex;
  if (Number.isInteger(index) && items[index]) return items[index].getAttribute("value");
  return fallback;
}

/** The decompose parameters from the form; throws a LayerLift-style error for bad input. */
function readParams(get) {
  const layersValue = readValue(get("layers"), "auto");
  const layers = layersValue === "auto" ? null : Number.parseInt(layersValue, 10);
  const options = { ...(QUALITY[readValue(get("quality"), "default")] || {}) };
  const stepsText = readValue(get("steps")).trim();
  if (stepsText) {
    const steps = Number(stepsText);
    if (!Number.isInteger(steps) || steps < 1 || steps > 200) throw Object.assign(new Error("steps must be a whole number from 1 to 200"), { code: "bad_request" });
    options.steps = steps;
  }
  const seedText = readValue(get("seed"), "0").trim() || "0";
  const seed = Number(seedText);
  if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) throw Object.assign(new Error("the seed must be a whole number from 0 to 4294967295"), { code: "bad_request" });
  const caption = readValue(get("caption")).trim();
  if (caption) options.caption = caption;
  return { backend: readValue(get("backend"), "auto"), layers, seed, options };
}

function createPanel({ document, photoshop, uxp, WebSocket, storage = null, port = DEFAULT_PORT }) {
  const get = (id) => document.getElementById(id);
  const registry = new GroupRegistry(storage);
  let control = null;

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

  const manager = new ConnectionManager({
    WebSocket,
    url: `ws://127.0.0.1:${port}`,
    tokenStore: new TokenStore(uxp),
    onStatus: (status, detail) => {
      get("status-dot").className = `dot ${status}`;
      get("status-text").textContent = STATUS_TEXT[status] || status;
      get("status-text").title = detail || "";
      get("pairing").className = status === STATUS.PAIRING_NEEDED ? "" : "hidden";
      if (status === STATUS.CONNECTED && manager.connection) fillBackends(manager.connection);
    },
  });

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
        params: readParams(get),
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

  manager.ensure().catch(() => {}); // the status line says what happened
  return { manager, registry, readParams: () => readParams(get) };
}

module.exports = { createPanel, readParams, QUALITY };
