"use strict";
/**
 * The panel's modules against the real Python bridge (classic backend) on a loopback port:
 * pairing through `layerlift pair`, then Decompose on a fake document. The layer frames the
 * bridge sent are captured at the socket and compared byte for byte with what the fake
 * document received.
 */

const test = require("node:test");
const assert = require("node:assert/strict");
const net = require("node:net");

const { startBridge } = require("./support/bridge");
const { createFakePhotoshop } = require("./fakes/photoshop");
const { createFakeUxp } = require("./fakes/uxp");
const { ConnectionManager, STATUS, REFUSED_TEXT } = require("../src/connection");
const { TokenStore } = require("../src/pairing");
const { GroupRegistry } = require("../src/registry");
const { decomposeActiveLayer } = require("../src/decompose");
const { SEPARATOR } = require("../src/placement");

const NativeWebSocket = globalThis.WebSocket;

/** A WebSocket that keeps a copy of every binary message it receives, in order. */
function spyingWebSocket(frames) {
  return class SpyWebSocket extends NativeWebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener("message", (event) => {
        if (typeof event.data !== "string") frames.push(new Uint8Array(event.data.slice(0)));
      });
    }
  };
}

/** Independent decoding of a layer frame (not the panel's code): header fields + payload. */
function readFrame(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  let ident = "";
  for (let i = 8; i < 24 && bytes[i]; i += 1) ident += String.fromCharCode(bytes[i]);
  return {
    magic, kind: view.getUint8(4), encoding: view.getUint8(5), index: view.getUint16(6, true), ident,
    width: view.getUint32(24, true), height: view.getUint32(28, true), payload: bytes.subarray(32),
  };
}

/** A flat design: a coloured field, a rectangle and a disc, all opaque. */
function design(width, height) {
  const data = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const i = (y * width + x) * 4;
      let color = [30, 90, 200];
      if (x >= 4 && x < 20 && y >= 5 && y < 15) color = [240, 200, 20];
      if ((x - 28) ** 2 + (y - 18) ** 2 < 36) color = [200, 30, 60];
      data.set([...color, 255], i);
    }
  }
  return data;
}

/** Straight-alpha "over" of the fake layers (bottom first) into a w x h canvas at `origin`. */
function composite(layers, origin, width, height) {
  const out = new Float64Array(width * height * 4);
  for (const layer of layers) {
    const p = layer.pixels;
    for (let y = 0; y < p.height; y += 1) {
      for (let x = 0; x < p.width; x += 1) {
        const s = (y * p.width + x) * 4;
        const d = ((p.top - origin.top + y) * width + (p.left - origin.left + x)) * 4;
        const a = p.data[s + 3] / 255;
        const under = out[d + 3];
        const alpha = a + under * (1 - a);
        for (let c = 0; c < 3; c += 1) {
          const mixed = p.data[s + c] * a + out[d + c] * under * (1 - a);
          out[d + c] = alpha > 0 ? mixed / alpha : 0;
        }
        out[d + 3] = alpha;
      }
    }
  }
  return out;
}

/**
 * Node's WebSocket and fetch sending a chosen Origin, as Photoshop's might (Node's own send
 * none). Node's WebSocket takes `headers` as an option; the panel's code is unchanged.
 */
function withOrigin(origin, sockets = []) {
  class OriginWebSocket extends NativeWebSocket {
    constructor(url, protocols) {
      super(url, { protocols, headers: { Origin: origin } });
      sockets.push(this);
    }
  }
  const originFetch = (url, init = {}) => fetch(url, { ...init, headers: { ...(init.headers || {}), Origin: origin } });
  return { WebSocket: OriginWebSocket, fetch: originFetch, sockets };
}

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

test("the real bridge: pair, decompose into a group, decompose a layer again in place", { timeout: 120000 }, async (t) => {
  assert.ok(NativeWebSocket, "this Node has no global WebSocket: run node with --experimental-websocket (Node 20) or use Node 22+");
  const bridge = await startBridge();
  t.after(() => bridge.stop());

  const frames = [];
  const { uxp } = createFakeUxp();
  const statuses = [];
  const manager = new ConnectionManager({
    WebSocket: spyingWebSocket(frames), url: bridge.url, tokenStore: new TokenStore(uxp),
    onStatus: (status) => statuses.push(status),
  });
  t.after(() => manager.stop());

  // Not paired yet: the panel says so instead of trying the server.
  await assert.rejects(manager.ensure(), (err) => err.code === STATUS.PAIRING_NEEDED);
  assert.equal(manager.status, STATUS.PAIRING_NEEDED);

  const code = await bridge.pairingCode();
  const wrong = code.replace(/\s/g, "") === "000000" ? "111111" : "000000";
  await assert.rejects(manager.pair(wrong), (err) => err.code === "pairing_failed");
  const conn = await manager.pair(code);
  assert.equal(manager.status, STATUS.CONNECTED);
  assert.equal(await new TokenStore(uxp).load(), bridge.token, "the token is kept in secureStorage");
  assert.ok(conn.capabilities.backends.some((b) => b.name === "classic" && b.available));

  // A 60x50 document; the design layer is 36x28 at (8, 9); the selection reaches past it,
  // so getPixels trims and the panel must pad back to the selection's bounds.
  const { photoshop, fake } = createFakePhotoshop();
  const doc = photoshop.app.createFakeDocument({ width: 60, height: 50 });
  doc.addPixelLayer("Background", { width: 60, height: 50, data: new Uint8Array(60 * 50 * 4).fill(255), background: true });
  const source = doc.addPixelLayer("Poster", { left: 8, top: 9, width: 36, height: 28, data: design(36, 28) });
  doc.selectionRect = { left: 4, top: 5, right: 50, bottom: 41 };
  const registry = new GroupRegistry();
  const historyBefore = doc.history.length;
  const progress = [];

  const outcome = await decomposeActiveLayer({
    photoshop, manager, registry, useSelection: true,
    params: { backend: "classic", layers: 3, seed: 7, options: {} },
    onProgress: (p) => progress.push(p),
  });

  const origin = { left: 4, top: 5, width: 46, height: 36 };
  const layerFrames = frames.map(readFrame).filter((f) => f.kind === 2 && f.ident === outcome.jobId);
  assert.ok(layerFrames.length >= 2, "the bridge sent layer frames");
  for (const f of layerFrames) assert.equal(f.magic, "LLF1");

  // One group, named after the source, directly above it; the source is hidden, not deleted.
  const group = outcome.group;
  assert.equal(group.name, "Poster");
  assert.equal(doc.layers.indexOf(group), doc.layers.indexOf(source) - 1);
  assert.equal(source.visible, false);
  assert.ok(registry.has(doc.id, group.id));

  // Its layers: top-first in Photoshop, so the reverse of the bridge's bottom-first order,
  // with the bridge's names, offsets and exact pixel bytes.
  const nonEmpty = layerFrames.filter((f) => f.width && f.height);
  assert.equal(group.layers.length, nonEmpty.length);
  const bottomFirst = [...group.layers].reverse();
  nonEmpty.forEach((frame, i) => {
    const info = outcome.plan.layers[i];
    const layer = bottomFirst[i];
    assert.equal(info.index, frame.index);
    assert.equal(layer.name, info.name);
    assert.equal(layer.pixels.width, frame.width);
    assert.equal(layer.pixels.height, frame.height);
    assert.equal(layer.pixels.left, info.left);
    assert.equal(layer.pixels.top, info.top);
    assert.ok(layer.pixels.left >= origin.left && layer.pixels.top >= origin.top);
    assert.deepEqual(Buffer.from(layer.pixels.data), Buffer.from(frame.payload), `pixels of layer ${info.name}`);
  });
  assert.deepEqual(bottomFirst.map((l) => l.name), outcome.plan.layers.map((l) => l.name));

  // Together the layers look like the picture that was sent (inside the design layer).
  const out = composite(bottomFirst, origin, origin.width, origin.height);
  const src = design(36, 28);
  let worst = 0;
  for (let y = 0; y < 28; y += 1) {
    for (let x = 0; x < 36; x += 1) {
      const d = ((y + 4) * origin.width + (x + 4)) * 4;
      for (let c = 0; c < 3; c += 1) worst = Math.max(worst, Math.abs(out[d + c] - src[(y * 36 + x) * 4 + c]));
      worst = Math.max(worst, Math.abs(out[d + 3] * 255 - 255));
    }
  }
  assert.ok(worst <= 2, `the layers recomposite to the picture (worst difference ${worst})`);

  // All of it is one history step, and every change happened inside the suspended scope.
  assert.deepEqual(doc.history.slice(historyBefore), ["LayerLift: decompose “Poster”"]);
  const names = fake.calls.map((c) => c.name);
  const suspend = names.lastIndexOf("hostControl.suspendHistory");
  const resume = names.lastIndexOf("hostControl.resumeHistory");
  const puts = fake.calls.map((c, i) => [c, i]).filter(([c]) => c.name === "imaging.putPixels");
  assert.equal(puts.length, nonEmpty.length);
  for (const [call, i] of puts) {
    assert.ok(call.modal && i > suspend && i < resume, "putPixels ran inside the suspended-history scope");
  }
  assert.equal(fake.calls[resume].args.commit, true);
  assert.equal(fake.lastImageData.disposed, true, "getPixels image data is disposed");
  assert.ok((fake.created || []).every((img) => img.disposed), "created image data is disposed");
  assert.ok(progress.some((p) => p.stage === "done"));

  // Recursive: decompose the top layer of the new group; it is replaced in place.
  const child = group.layers[0];
  const childName = child.name;
  const siblingsBefore = group.layers.length;
  doc.activeLayers = [child];
  const again = await decomposeActiveLayer({
    photoshop, manager, registry, useSelection: false,
    params: { backend: "classic", layers: 2, seed: 1, options: {} },
  });
  assert.equal(again.group, null, "no new group inside a LayerLift group");
  assert.ok(!group.layers.includes(child), "the decomposed layer was replaced");
  const subs = group.layers.filter((l) => l.name.startsWith(`${childName}${SEPARATOR}`));
  assert.equal(subs.length, again.plan.layers.length);
  assert.equal(group.layers.length, siblingsBefore - 1 + subs.length);
  assert.equal(group.layers.indexOf(subs[0]), 0, "the sub-layers sit where the layer was");
  assert.deepEqual(doc.history.slice(historyBefore), ["LayerLift: decompose “Poster”", `LayerLift: decompose “${childName}”`]);
});

test("the panel reports 'server not running' when nothing listens", { timeout: 20000 }, async (t) => {
  assert.ok(NativeWebSocket, "this Node has no global WebSocket");
  const { uxp } = createFakeUxp();
  const store = new TokenStore(uxp);
  await store.save("some-token");
  const port = await freePort();
  // With the probe on: a closed port answers neither the WebSocket nor plain HTTP.
  const manager = new ConnectionManager({ WebSocket: NativeWebSocket, fetch, url: `ws://127.0.0.1:${port}`, tokenStore: store });
  t.after(() => manager.stop());
  await assert.rejects(manager.ensure(), (err) => err.code === STATUS.NOT_RUNNING);
  assert.equal(manager.status, STATUS.NOT_RUNNING);
  manager.stop();
});

test("the real bridge refuses a panel whose Origin is null: the panel says so once and does not retry", { timeout: 60000 }, async (t) => {
  const bridge = await startBridge();
  t.after(() => bridge.stop());
  const { uxp } = createFakeUxp();
  await new TokenStore(uxp).save(bridge.token);
  const { WebSocket, fetch: originFetch, sockets } = withOrigin("null");
  const manager = new ConnectionManager({ WebSocket, fetch: originFetch, url: bridge.url, tokenStore: new TokenStore(uxp), retryMs: [10] });
  t.after(() => manager.stop());
  await assert.rejects(manager.ensure(), (err) => err.code === STATUS.REFUSED && err.message === REFUSED_TEXT);
  assert.equal(manager.status, STATUS.REFUSED);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(sockets.length, 1, "no retry loop");
  // The bridge's log names what it refused, once, although the upgrade and the probe both sent it.
  const lines = bridge.log().split("\n").filter((line) => line.includes("refused a connection"));
  assert.equal(lines.length, 1, bridge.log());
  assert.match(lines[0], /Origin 'null'/);
});

test("the real bridge admits a panel whose Origin is uxp://uxp-internal", { timeout: 60000 }, async (t) => {
  const bridge = await startBridge();
  t.after(() => bridge.stop());
  const { uxp } = createFakeUxp();
  const { WebSocket, fetch: originFetch, sockets } = withOrigin("uxp://uxp-internal");
  const manager = new ConnectionManager({ WebSocket, fetch: originFetch, url: bridge.url, tokenStore: new TokenStore(uxp) });
  t.after(() => manager.stop());
  const conn = await manager.pair(await bridge.pairingCode());
  assert.equal(manager.status, STATUS.CONNECTED);
  assert.ok(conn.capabilities.backends.length > 0);
  assert.equal(sockets.length, 1);
  assert.ok(!bridge.log().includes("refused"), bridge.log());
});
