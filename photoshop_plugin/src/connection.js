"use strict";
/**
 * The panel's WebSocket client of the bridge: authentication (hello or pair-then-hello),
 * requests matched to their answers by request_id, per-job event queues, and a manager that
 * reconnects and reports the status the panel shows.
 *
 * UXP cannot set headers on a WebSocket, so the token travels in the first message. The
 * WebSocket class is injected: UXP's global one in Photoshop, Node's in the tests.
 */

const protocol = require("./protocol");
const { normalizeCode, isValidCode } = require("./pairing");
const { probeBridge } = require("./probe");

const { LayerLiftError } = protocol;

const STATUS = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  NOT_RUNNING: "server_not_running",
  PAIRING_NEEDED: "pairing_needed",
  REFUSED: "refused",
  CONNECTION_FAILED: "connection_failed",
});

const REFUSED_TEXT = "the LayerLift app refused this panel (see its log)";

/** The status a failed connection shows: refused, answered-but-failed, or not running. */
function statusOf(err) {
  return err.code === STATUS.REFUSED || err.code === STATUS.CONNECTION_FAILED ? err.code : STATUS.NOT_RUNNING;
}

const AUTH_ERRORS = new Set(["unauthorized", "pairing_failed", "auth_timeout"]);

const defaultTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

/** Text or bytes from whatever a WebSocket implementation hands `onmessage`. */
async function normalizeData(data) {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return protocol.asBytes(data);
  if (data && typeof data.arrayBuffer === "function") return new Uint8Array(await data.arrayBuffer());
  throw new LayerLiftError("protocol_error", "the server sent a message of an unknown kind");
}

/** A FIFO of job events with one consumer: events that come before anyone waits are kept. */
class JobQueue {
  constructor() {
    this.items = [];
    this.waiter = null;
  }

  push(item) {
    if (this.waiter) {
      const resolve = this.waiter;
      this.waiter = null;
      resolve(item);
    } else {
      this.items.push(item);
    }
  }

  next() {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }
}

/**
 * The panel's client of the bridge over one authenticated connection, as `BridgeClient` of
 * bridge/client.py is Python's: requests matched to answers, a queue of events per job.
 * Use `BridgeClient.open(...)`; `ConnectionManager` keeps one open.
 */
class BridgeClient {
  constructor({ WebSocket, url, timers = defaultTimers, requestTimeoutMs = 30000, clientName }) {
    if (typeof WebSocket !== "function") throw new Error("a WebSocket class is required");
    this.WebSocket = WebSocket;
    this.url = url;
    this.timers = timers;
    this.requestTimeoutMs = requestTimeoutMs;
    this.clientName = clientName || protocol.CLIENT_NAME;
    this.ws = null;
    this.welcome = null;
    this.closed = false;
    this.closeError = null;
    this.onclose = null;
    this.onunsolicited = null;
    this._chain = Promise.resolve();
    this._waiters = [];
    this._jobs = new Map();
    this._collect = null;
    this._ids = 0;
    this._prefix = Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, "0");
  }

  /**
   * Open and authenticate. With `code`, first trade the pairing code for the token (the
   * result's `token`); with `token`, say hello directly. Resolves to the connection.
   */
  static async open(options) {
    const conn = new BridgeClient(options);
    await conn._connect(options);
    return conn;
  }

  get capabilities() {
    return (this.welcome && this.welcome.capabilities) || {};
  }

  newId() {
    this._ids += 1;
    return `ps${this._prefix}-${this._ids}`;
  }

  async _connect({ token, code, openTimeoutMs = 5000 }) {
    await this._openSocket(openTimeoutMs);
    if (code !== undefined) {
      this._sendJson(protocol.pair(code));
      const answer = await this._waitFor((m) => m.type === "paired" || m.type === "error", openTimeoutMs, "pairing");
      if (answer.type === "error") throw this._authError(answer);
      token = answer.token;
      if (typeof token !== "string" || !token) throw new LayerLiftError("protocol_error", "the server paired without a token");
    }
    this.token = token;
    this._sendJson(protocol.hello(token, this.clientName));
    const answer = await this._waitFor((m) => m.type === "welcome" || m.type === "error", openTimeoutMs, "hello");
    if (answer.type === "error") throw this._authError(answer);
    this.welcome = answer;
  }

  _authError(message) {
    this.close();
    const err = protocol.remoteError(message);
    if (AUTH_ERRORS.has(err.code)) err.authFailed = true;
    return err;
  }

  _openSocket(timeoutMs) {
    return new Promise((resolve, reject) => {
      let settled = false;
      let ws;
      const fail = (err) => {
        if (settled) return;
        settled = true;
        err.beforeOpen = true; // the socket never opened: see ConnectionManager._explain
        this.timers.clearTimeout(timer);
        this.closed = true;
        try {
          if (ws) ws.close();
        } catch (_) {
          /* already closed */
        }
        reject(err);
      };
      const timer = this.timers.setTimeout(() => fail(new LayerLiftError(STATUS.NOT_RUNNING,
        `LayerLift did not answer at ${this.url} within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      try {
        ws = new this.WebSocket(this.url);
      } catch (err) {
        fail(new LayerLiftError(STATUS.NOT_RUNNING, `cannot open ${this.url}: ${err.message}`));
        return;
      }
      this.ws = ws;
      try {
        ws.binaryType = "arraybuffer";
      } catch (_) {
        /* Blob-only implementations are handled by normalizeData */
      }
      ws.onopen = () => {
        if (settled) return;
        settled = true;
        this.timers.clearTimeout(timer);
        resolve();
      };
      ws.onerror = () => {
        fail(new LayerLiftError(STATUS.NOT_RUNNING,
          `LayerLift is not running at ${this.url} (start the tray app or \`layerlift serve\`)`));
      };
      ws.onclose = (event) => {
        if (!settled) {
          fail(new LayerLiftError(STATUS.NOT_RUNNING, `the connection to ${this.url} was refused`));
          return;
        }
        // After the messages already received (an auth error comes just before the close).
        this._chain = this._chain.then(() => this._onClose(event));
      };
      ws.onmessage = (event) => {
        // One message at a time, in arrival order, even when a Blob must be read first.
        this._chain = this._chain.then(() => this._ingest(event.data)).catch((err) => this._fail(err));
      };
    });
  }

  _sendJson(message) {
    if (this.closed || !this.ws) throw this.closeError || new LayerLiftError("not_connected", "not connected to LayerLift");
    this.ws.send(JSON.stringify(message));
  }

  _sendBinary(bytes) {
    if (this.closed || !this.ws) throw this.closeError || new LayerLiftError("not_connected", "not connected to LayerLift");
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    this.ws.send(whole ? bytes.buffer : bytes.slice().buffer);
  }

  async _ingest(raw) {
    const data = await normalizeData(raw);
    if (this._collect) {
      this._collectLayer(data);
      return;
    }
    if (typeof data !== "string") return; // a stray frame outside a result: nothing owns it
    const message = protocol.parseMessage(data);
    if (message.type === "result") {
      this._startResult(message);
      return;
    }
    this._route(message);
  }

  _startResult(message) {
    const infos = Array.isArray(message.layers) ? message.layers : [];
    this._collect = { message, layers: [], expected: infos };
    if (!infos.length) this._finishResult();
  }

  _collectLayer(data) {
    const collect = this._collect;
    if (typeof data === "string") {
      throw new LayerLiftError("protocol_error", "expected a layer frame, got a text message");
    }
    const { header, payload } = protocol.decodeFrame(data);
    const info = collect.expected[collect.layers.length];
    if (header.kind !== protocol.KIND_LAYER || header.ident !== collect.message.job_id || header.index !== info.index) {
      throw new LayerLiftError("protocol_error", "layer frames arrived out of order");
    }
    if (header.width !== info.width || header.height !== info.height) {
      throw new LayerLiftError("protocol_error", `layer ${info.index} frame size differs from the result message`);
    }
    collect.layers.push({ ...info, pixels: protocol.layerPixels(header, payload) });
    if (collect.layers.length === collect.expected.length) this._finishResult();
  }

  _finishResult() {
    const { message, layers } = this._collect;
    this._collect = null;
    this._route({ ...message, layers });
  }

  _route(message) {
    for (let i = 0; i < this._waiters.length; i += 1) {
      const waiter = this._waiters[i];
      if (waiter.match(message)) {
        this._waiters.splice(i, 1);
        waiter.resolve(message);
        return;
      }
    }
    const jobId = message.job_id || (message.job && message.job.id);
    if (jobId && (message.type === "progress" || message.type === "result" || message.type === "error")) {
      this._jobQueue(jobId).push(message);
      return;
    }
    if (this.onunsolicited) this.onunsolicited(message);
  }

  _jobQueue(jobId) {
    if (!this._jobs.has(jobId)) this._jobs.set(jobId, new JobQueue());
    return this._jobs.get(jobId);
  }

  _waitFor(match, timeoutMs, what) {
    if (this.closed) return Promise.reject(this.closeError || new LayerLiftError("not_connected", "not connected"));
    return new Promise((resolve, reject) => {
      const waiter = { match, resolve: null, reject: null };
      const timer = timeoutMs
        ? this.timers.setTimeout(() => {
          this._waiters = this._waiters.filter((w) => w !== waiter);
          reject(new LayerLiftError("timeout", `LayerLift did not answer the ${what} in time`));
        }, timeoutMs)
        : null;
      waiter.resolve = (value) => {
        if (timer) this.timers.clearTimeout(timer);
        resolve(value);
      };
      waiter.reject = (err) => {
        if (timer) this.timers.clearTimeout(timer);
        reject(err);
      };
      this._waiters.push(waiter);
    });
  }

  /** Send a request (and optional binary frames) and wait for the answer with its request_id. */
  async request(message, { binary = null, sendText = true, timeoutMs = this.requestTimeoutMs } = {}) {
    const requestId = message.request_id || (message.request_id = this.newId());
    const answer = this._waitFor((m) => m.request_id === requestId, timeoutMs, message.type || "request");
    try {
      if (sendText) this._sendJson(message);
      if (binary) this._sendBinary(binary);
    } catch (err) {
      this._waiters = this._waiters.filter((w) => !w.match({ request_id: requestId }));
      throw err;
    }
    const reply = await answer;
    if (reply.type === "error") throw protocol.remoteError(reply);
    return reply;
  }

  /**
   * Upload a picture and return the accepted job record. The picture goes only after the
   * server said `ready`, so a refused one (too big, queue full) is never sent.
   */
  async submit(pixels, width, height, params = {}) {
    const requestId = this.newId();
    const message = protocol.decompose({ ...params, requestId, width, height });
    await this.request(message);
    const frame = protocol.imageFrame(requestId, pixels, width, height);
    const accepted = await this.request({ request_id: requestId, type: "image" },
      { binary: frame, sendText: false, timeoutMs: Math.max(this.requestTimeoutMs, 120000) });
    this._jobQueue(accepted.job.id);
    return accepted.job;
  }

  /** Wait for a submitted job's result; `onProgress(job)` gets each progress record. */
  async wait(jobId, onProgress) {
    const queue = this._jobQueue(jobId);
    for (;;) {
      const message = await queue.next();
      if (message.type === "closed") throw message.error;
      if (message.type === "result") {
        this._jobs.delete(jobId);
        return message;
      }
      if (message.type === "error") {
        this._jobs.delete(jobId);
        throw protocol.remoteError(message);
      }
      const job = message.job || {};
      if (onProgress) onProgress(job);
      if (job.state === protocol.JobState.FAILED || job.state === protocol.JobState.CANCELLED) {
        this._jobs.delete(jobId);
        const cancelled = job.state === protocol.JobState.CANCELLED;
        const error = job.error || { code: job.state, message: cancelled ? "cancelled" : "the job failed" };
        throw protocol.remoteError({ code: cancelled ? "cancelled" : error.code, message: error.message });
      }
    }
  }

  async cancel(jobId) {
    const reply = await this.request(protocol.cancel(jobId, this.newId()));
    return reply.job;
  }

  async ping() {
    return this.request({ type: "ping" });
  }

  _fail(err) {
    // A message we cannot understand leaves the stream out of step: drop the connection.
    this.closeError = err instanceof LayerLiftError ? err : new LayerLiftError("protocol_error", String(err && err.message));
    this.close();
    this._onClose({ code: 1002, reason: this.closeError.message });
  }

  _onClose(event) {
    if (this._closedHandled) return;
    this._closedHandled = true;
    this.closed = true;
    const error = this.closeError || new LayerLiftError(STATUS.NOT_RUNNING,
      `the connection to LayerLift closed${event && event.reason ? `: ${event.reason}` : ""}`);
    this.closeError = error;
    for (const waiter of this._waiters.splice(0)) waiter.reject(error);
    for (const queue of this._jobs.values()) queue.push({ type: "closed", error });
    if (this.onclose) this.onclose(error);
  }

  close() {
    this.closed = true;
    if (this.ws) {
      try {
        this.ws.close();
      } catch (_) {
        /* already closed */
      }
    }
  }
}

/**
 * Keeps one live connection for the panel: reconnects with back-off while the server is
 * down, knows whether pairing is needed, and tells the panel its status.
 */
class ConnectionManager {
  constructor({ WebSocket, url, tokenStore, timers = defaultTimers, onStatus, retryMs = [1000, 2000, 5000, 10000], fetch = null }) {
    this.WebSocket = WebSocket;
    this.fetch = fetch;
    this.url = url;
    this.tokenStore = tokenStore;
    this.timers = timers;
    this.onStatus = onStatus || (() => {});
    this.retryMs = retryMs;
    this.connection = null;
    this.status = STATUS.CONNECTING;
    this.detail = "";
    this._connecting = null;
    this._retryTimer = null;
    this._attempt = 0;
    this._stopped = false;
  }

  _setStatus(status, detail = "") {
    this.status = status;
    this.detail = detail;
    this.onStatus(status, detail);
  }

  /** An open, authenticated connection, connecting first if needed. */
  async ensure() {
    if (this.connection && !this.connection.closed) return this.connection;
    if (!this._connecting) {
      this._connecting = this._connect().finally(() => {
        this._connecting = null;
      });
    }
    return this._connecting;
  }

  async _connect() {
    const token = await this.tokenStore.load();
    if (!token) {
      this._setStatus(STATUS.PAIRING_NEEDED, "type the pairing code that LayerLift shows");
      throw new LayerLiftError(STATUS.PAIRING_NEEDED, "pair the panel first: type the code from `layerlift pair` or the tray menu");
    }
    this._setStatus(STATUS.CONNECTING);
    try {
      return this._adopt(await BridgeClient.open({ WebSocket: this.WebSocket, url: this.url, token, timers: this.timers }));
    } catch (err) {
      if (err.authFailed) {
        await this.tokenStore.clear();
        this._setStatus(STATUS.PAIRING_NEEDED, "LayerLift no longer accepts this panel's token: pair again");
        throw new LayerLiftError(STATUS.PAIRING_NEEDED, `pairing needed: ${err.message}`);
      }
      throw await this._failed(err);
    }
  }

  /**
   * Why a connection could not be opened, as the status line and the error to throw. A
   * refusal (HTTP 403) is not retried: LayerLift would refuse again until the user changes
   * something, and every try would only add to its log. The next Decompose or Pair tries once.
   */
  async _failed(err) {
    const why = await this._explain(err);
    this._setStatus(statusOf(why), why.message);
    if (why.code !== STATUS.REFUSED) this._scheduleRetry();
    return why;
  }

  /** A failed open: nothing listening, a refusal, or something else (see probe.js). */
  async _explain(err) {
    if (!err.beforeOpen || !this.fetch) return err;
    const probe = await probeBridge(this.fetch, this.url, { timers: this.timers });
    if (!probe.answered) return err;
    if (probe.status === 403) return new LayerLiftError(STATUS.REFUSED, REFUSED_TEXT, { status: 403 });
    return new LayerLiftError(STATUS.CONNECTION_FAILED,
      `LayerLift answered at ${this.url} (HTTP ${probe.status}) but the connection failed; retrying (see its log)`,
      { status: probe.status });
  }

  /** Trade a pairing code for the token, keep the token, and stay connected. */
  async pair(code) {
    const clean = normalizeCode(code);
    if (!isValidCode(clean)) {
      throw new LayerLiftError("bad_pairing_code", "the pairing code is six digits, like 123 456");
    }
    this._setStatus(STATUS.CONNECTING, "pairing");
    let conn;
    try {
      conn = await BridgeClient.open({ WebSocket: this.WebSocket, url: this.url, code: clean, timers: this.timers });
    } catch (err) {
      if (err.authFailed) {
        this._setStatus(STATUS.PAIRING_NEEDED, err.message);
        throw err;
      }
      const why = await this._explain(err);
      this._setStatus(statusOf(why), why.message);
      throw why;
    }
    await this.tokenStore.save(conn.token);
    return this._adopt(conn);
  }

  async forget() {
    await this.tokenStore.clear();
    if (this.connection) this.connection.close();
    this.connection = null;
    this._setStatus(STATUS.PAIRING_NEEDED, "unpaired");
  }

  _adopt(conn) {
    if (this.connection && this.connection !== conn) this.connection.close();
    this.connection = conn;
    this._attempt = 0;
    conn.onclose = (err) => {
      if (this.connection !== conn) return;
      this.connection = null;
      this._setStatus(STATUS.NOT_RUNNING, err.message);
      this._scheduleRetry();
    };
    this._setStatus(STATUS.CONNECTED, `LayerLift ${((conn.welcome || {}).server || {}).version || ""}`.trim());
    return conn;
  }

  _scheduleRetry() {
    if (this._stopped || this._retryTimer) return;
    const delay = this.retryMs[Math.min(this._attempt, this.retryMs.length - 1)];
    this._attempt += 1;
    this._retryTimer = this.timers.setTimeout(() => {
      this._retryTimer = null;
      this.ensure().catch(() => {});
    }, delay);
  }

  stop() {
    this._stopped = true;
    if (this._retryTimer) this.timers.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this.connection) this.connection.close();
    this.connection = null;
  }
}

module.exports = { STATUS, REFUSED_TEXT, BridgeClient, ConnectionManager, JobQueue, normalizeData };
