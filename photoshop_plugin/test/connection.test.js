"use strict";
/** The client's message handling against a scripted in-memory socket (no network). */
const test = require("node:test");
const assert = require("node:assert/strict");
const protocol = require("../src/protocol");
const { BridgeClient, ConnectionManager, STATUS } = require("../src/connection");
const { TokenStore } = require("../src/pairing");
const { createFakeUxp } = require("./fakes/uxp");

/** A WebSocket whose server side is a function: `serve(message, socket)` answers each send. */
function scriptedSocket(serve, log = []) {
  return class ScriptedSocket {
    constructor(url) {
      this.url = url;
      log.push(this);
      setTimeout(() => this.onopen && this.onopen(), 0);
    }
    send(data) {
      const message = typeof data === "string" ? JSON.parse(data) : new Uint8Array(data);
      setTimeout(() => serve(message, this), 0);
    }
    push(message) {
      this.onmessage({ data: typeof message === "string" || message instanceof ArrayBuffer ? message : JSON.stringify(message) });
    }
    close() {
      if (this.closed) return;
      this.closed = true;
      setTimeout(() => this.onclose && this.onclose({ code: 1000, reason: "" }), 0);
    }
  };
}

const welcome = { type: "welcome", protocol: 1, server: { name: "layerlift", version: "0.1.0" }, capabilities: { backends: [] } };
const JOB = "0123456789abcdef";

function layerFrame(index, width, height, fill) {
  return protocol.encodeFrame({ kind: protocol.KIND_LAYER, index, ident: JOB, width, height },
    new Uint8Array(width * height * 4).fill(fill)).buffer;
}

test("an auth error that arrives just before the close is what the caller sees", async () => {
  const Socket = scriptedSocket((m, s) => {
    s.push({ type: "error", code: "unauthorized", message: "wrong token" });
    s.close();
  });
  await assert.rejects(BridgeClient.open({ WebSocket: Socket, url: "ws://x", token: "t" }),
    (e) => e.code === "unauthorized" && e.authFailed === true);
});

test("a job's progress, result and layer frames are delivered in order", async () => {
  const sent = [];
  const Socket = scriptedSocket((m, s) => {
    sent.push(m);
    if (m.type === "hello") s.push(welcome);
    else if (m.type === "decompose") s.push({ type: "ready", request_id: m.request_id });
    else if (m instanceof Uint8Array) {
      const { header } = protocol.decodeFrame(m);
      s.push({ type: "accepted", request_id: header.ident, job: { id: JOB, state: "queued" } });
      // Events come straight after `accepted`, before the caller has asked to wait.
      s.push({ type: "progress", job: { id: JOB, state: "running", progress: { fraction: 0.5, step: 1, total: 2 } } });
      s.push({ type: "result", job_id: JOB, canvas: { width: 2, height: 2 }, layers: [
        { index: 0, name: "bg", x: 0, y: 0, width: 2, height: 2 }, { index: 1, name: "dot", x: 1, y: 1, width: 1, height: 1 }] });
      s.push(layerFrame(0, 2, 2, 5));
      s.push(layerFrame(1, 1, 1, 9));
    }
  });
  const conn = await BridgeClient.open({ WebSocket: Socket, url: "ws://x", token: "tok" });
  assert.deepEqual(sent[0], protocol.hello("tok"));
  const job = await conn.submit(new Uint8Array(16), 2, 2, { backend: "classic", layers: 2 });
  assert.equal(job.id, JOB);
  const seen = [];
  const result = await conn.wait(JOB, (record) => seen.push(record.state));
  assert.deepEqual(seen, ["running"]);
  assert.deepEqual(result.layers.map((l) => [l.name, l.pixels.length, l.pixels[0]]), [["bg", 16, 5], ["dot", 4, 9]]);
  conn.close();
});

test("cancel sends the job id; a cancelled job ends the wait with code 'cancelled'", async () => {
  const Socket = scriptedSocket((m, s) => {
    if (m.type === "hello") s.push(welcome);
    if (m.type === "cancel") {
      s.push({ type: "job", request_id: m.request_id, job: { id: m.job_id, state: "cancelled" } });
      s.push({ type: "progress", job: { id: m.job_id, state: "cancelled", error: { code: "cancelled", message: "cancelled" } } });
    }
  });
  const conn = await BridgeClient.open({ WebSocket: Socket, url: "ws://x", token: "tok" });
  const waiting = conn.wait(JOB);
  const record = await conn.cancel(JOB);
  assert.equal(record.state, "cancelled");
  await assert.rejects(waiting, (e) => e.code === "cancelled");
  conn.close();
});

test("a closed connection fails waiting jobs; the manager reconnects with the stored token", async () => {
  const sockets = [];
  const Socket = scriptedSocket((m, s) => {
    if (m.type === "hello") s.push(welcome);
  }, sockets);
  const { uxp } = createFakeUxp();
  const store = new TokenStore(uxp);
  await store.save("tok");
  const statuses = [];
  const manager = new ConnectionManager({ WebSocket: Socket, url: "ws://x", tokenStore: store, retryMs: [5],
    onStatus: (s) => statuses.push(s) });
  const conn = await manager.ensure();
  const waiting = conn.wait(JOB);
  sockets[0].close();
  await assert.rejects(waiting, (e) => e.code === STATUS.NOT_RUNNING);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(sockets.length, 2, "reconnected");
  assert.equal(manager.status, STATUS.CONNECTED);
  assert.deepEqual(statuses.filter((s) => s !== STATUS.CONNECTING), ["connected", "server_not_running", "connected"]);
  manager.stop();
});

test("a refused token is forgotten and the panel asks for pairing", async () => {
  const Socket = scriptedSocket((m, s) => {
    s.push({ type: "error", code: "unauthorized", message: "wrong token" });
    s.close();
  });
  const { uxp } = createFakeUxp();
  const store = new TokenStore(uxp);
  await store.save("old");
  const manager = new ConnectionManager({ WebSocket: Socket, url: "ws://x", tokenStore: store });
  await assert.rejects(manager.ensure(), (e) => e.code === STATUS.PAIRING_NEEDED);
  assert.equal(manager.status, STATUS.PAIRING_NEEDED);
  assert.equal(await store.load(), null);
  await assert.rejects(manager.pair("12"), (e) => e.code === "bad_pairing_code");
  manager.stop();
});

/** A WebSocket that never opens: its upgrade was refused, or nothing listens. */
function neverOpens(log) {
  return class NeverOpens {
    constructor(url) {
      this.url = url;
      log.push(this);
      setTimeout(() => {
        if (this.onerror) this.onerror({ type: "error" });
        if (this.onclose) this.onclose({ code: 1006, reason: "" });
      }, 0);
    }
    close() {}
  };
}

async function managerWith(fetch, sockets) {
  const { uxp } = createFakeUxp();
  const store = new TokenStore(uxp);
  await store.save("tok");
  const statuses = [];
  const manager = new ConnectionManager({ WebSocket: neverOpens(sockets), url: "ws://127.0.0.1:47811", tokenStore: store,
    retryMs: [5], fetch, onStatus: (s) => statuses.push(s) });
  return { manager, statuses };
}

test("an upgrade refused with HTTP 403 is reported as a refusal and not retried", async () => {
  const sockets = [];
  const asked = [];
  const { manager, statuses } = await managerWith(async (url) => {
    asked.push(url);
    return { status: 403 };
  }, sockets);
  await assert.rejects(manager.ensure(), (e) => e.code === STATUS.REFUSED && e.message === "the LayerLift app refused this panel (see its log)");
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(manager.status, STATUS.REFUSED);
  assert.equal(sockets.length, 1, "no retry loop");
  assert.deepEqual(asked, ["http://127.0.0.1:47811"]);
  assert.deepEqual(statuses, [STATUS.CONNECTING, STATUS.REFUSED]);
  // A user action (Decompose, Pair) tries once more: still refused, still no loop.
  await assert.rejects(manager.pair("123 456"), (e) => e.code === STATUS.REFUSED);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(sockets.length, 2);
  manager.stop();
});

test("no HTTP answer means not running, retried with back-off", async () => {
  const sockets = [];
  const { manager } = await managerWith(async () => {
    throw new TypeError("fetch failed");
  }, sockets);
  await assert.rejects(manager.ensure(), (e) => e.code === STATUS.NOT_RUNNING);
  await new Promise((r) => setTimeout(r, 80));
  manager.stop();
  await new Promise((r) => setTimeout(r, 30)); // let an attempt in flight end
  assert.equal(manager.status, STATUS.NOT_RUNNING);
  assert.ok(sockets.length >= 3, `retried (${sockets.length})`);
});

test("an HTTP answer other than 403 is a failed connection, retried", async () => {
  const sockets = [];
  const { manager } = await managerWith(async () => ({ status: 426 }), sockets);
  await assert.rejects(manager.ensure(), (e) => e.code === STATUS.CONNECTION_FAILED && /HTTP 426/.test(e.message));
  await new Promise((r) => setTimeout(r, 80));
  manager.stop();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(manager.status, STATUS.CONNECTION_FAILED);
  assert.ok(sockets.length >= 3, `retried (${sockets.length})`);
});
