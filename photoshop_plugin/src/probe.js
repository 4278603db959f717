"use strict";
/**
 * Telling "LayerLift is not running" from "LayerLift refused this panel".
 *
 * A WebSocket whose upgrade is answered with HTTP 403 fails exactly like one to a closed port:
 * an `error` event, then (maybe) `close` 1006, with no status anywhere in the WebSocket API
 * (Adobe's UXP WebSocket reference documents none; Node's and browsers' give none either). So
 * after a failed open the panel asks the same address once over plain HTTP: the bridge puts a
 * plain GET through the same Host/Origin checks as an upgrade and answers 403 when it refuses
 * the caller, 426 (Upgrade Required) otherwise; no answer at all means nothing is listening.
 *
 * Assumed, not documented: UXP's `fetch` sends the same Origin as its WebSocket, and returns
 * a 403 response instead of hiding it. Where that fails, the panel says "not running", as
 * it did before; the LayerLift log shows the Origin values it refused either way.
 */

const PROBE_TIMEOUT_MS = 3000;

/** `ws://host:port/path` -> `http://host:port/path` (`wss` -> `https`). */
function httpUrlOf(wsUrl) {
  return String(wsUrl).replace(/^ws(s?):\/\//i, (_, secure) => `http${secure}://`);
}

/**
 * Ask `wsUrl`'s server over HTTP whether it is there. Resolves to `{ answered: true, status }`
 * or `{ answered: false, status: null }`; never rejects.
 */
async function probeBridge(fetchFn, wsUrl, { timeoutMs = PROBE_TIMEOUT_MS, timers } = {}) {
  if (typeof fetchFn !== "function") return { answered: false, status: null };
  const setT = timers ? timers.setTimeout : setTimeout;
  const clearT = timers ? timers.clearTimeout : clearTimeout;
  let timer = null;
  const timeout = new Promise((resolve) => {
    timer = setT(() => resolve({ answered: false, status: null }), timeoutMs);
  });
  const asked = (async () => {
    try {
      const response = await fetchFn(httpUrlOf(wsUrl));
      return { answered: true, status: Number(response.status) };
    } catch (_) {
      return { answered: false, status: null };
    }
  })();
  try {
    return await Promise.race([asked, timeout]);
  } finally {
    clearT(timer);
  }
}

module.exports = { httpUrlOf, probeBridge, PROBE_TIMEOUT_MS };
