"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const protocol = require("../src/protocol");

test("an image frame has the bridge's 32-byte little-endian header", () => {
  const pixels = Uint8Array.from({ length: 3 * 2 * 4 }, (_, i) => i);
  const frame = protocol.imageFrame("req-1", pixels, 3, 2);
  assert.equal(frame.length, 32 + pixels.length);
  assert.deepEqual([...frame.subarray(0, 4)], [0x4c, 0x4c, 0x46, 0x31]);
  assert.equal(frame[4], protocol.KIND_IMAGE);
  assert.equal(frame[5], protocol.ENCODING_RGBA8);
  assert.deepEqual([...frame.subarray(6, 8)], [0, 0]);
  assert.equal(Buffer.from(frame.subarray(8, 24)).toString("latin1"), "req-1".padEnd(16, "\0"));
  assert.deepEqual([...frame.subarray(24, 32)], [3, 0, 0, 0, 2, 0, 0, 0]);
  assert.deepEqual([...frame.subarray(32)], [...pixels]);
});

test("layer frames decode to their header and a payload view", () => {
  const payload = new Uint8Array(2 * 2 * 4).fill(7);
  const frame = protocol.encodeFrame({ kind: protocol.KIND_LAYER, index: 258, ident: "0123456789abcdef", width: 2, height: 2 }, payload);
  const { header, payload: got } = protocol.decodeFrame(frame.buffer);
  assert.deepEqual(header, { kind: 2, encoding: 0, index: 258, ident: "0123456789abcdef", width: 2, height: 2 });
  assert.equal(protocol.layerPixels(header, got).length, 16);
  assert.throws(() => protocol.layerPixels({ ...header, width: 3 }, got), (e) => e.code === "corrupt_image");
});

test("malformed frames and messages are refused with stable codes", () => {
  assert.throws(() => protocol.decodeFrame(new Uint8Array(10)), (e) => e.code === "protocol_error");
  const bad = protocol.encodeFrame({ kind: 2, ident: "abc", width: 0, height: 0 });
  bad[0] = 0;
  assert.throws(() => protocol.decodeFrame(bad), /LLF1/);
  assert.throws(() => protocol.encodeFrame({ kind: 2, ident: "bad id!", width: 0, height: 0 }), (e) => e.code === "protocol_error");
  assert.throws(() => protocol.parseMessage("not json"), (e) => e.code === "protocol_error");
  assert.throws(() => protocol.parseMessage("[1]"), (e) => e.code === "protocol_error");
});

test("decompose messages carry the picture's size and only non-empty options", () => {
  const m = protocol.decompose({ requestId: "r1", backend: "classic", layers: 4, seed: 9, width: 5, height: 6,
    options: { caption: "", steps: 20, resolution: undefined } });
  assert.deepEqual(m, {
    type: "decompose", request_id: "r1", backend: "classic", layers: 4, seed: 9, options: { steps: 20 },
    image: { encoding: "rgba8", width: 5, height: 6, bytes: 120 }, result_encoding: "rgba8",
  });
  assert.equal(protocol.decompose({ requestId: "r2", width: 1, height: 1 }).layers, null);
  assert.throws(() => protocol.decompose({ requestId: "r", layers: 11, width: 1, height: 1 }), (e) => e.code === "bad_request");
  assert.throws(() => protocol.decompose({ requestId: "r", seed: -1, width: 1, height: 1 }), (e) => e.code === "bad_request");
});

test("hello, pair, and the manifest's loopback URLs", () => {
  assert.deepEqual(protocol.hello("tok"), { type: "hello", protocol: 1, token: "tok", client: { name: "layerlift-photoshop" } });
  assert.deepEqual(protocol.pair("123456"), { type: "pair", code: "123456" });
  const urls = ["ws://127.0.0.1:47811", "ws://localhost:47811", "http://127.0.0.1:47811", "http://localhost:47811"];
  assert.deepEqual(protocol.loopbackUrls(47811), urls);
  const manifest = JSON.parse(require("node:fs").readFileSync(require("node:path").join(__dirname, "..", "manifest.json"), "utf8"));
  assert.deepEqual([...manifest.requiredPermissions.network.domains].sort(), [...urls].sort());
  const err = protocol.remoteError({ code: "queue_full", message: "busy" });
  assert.equal(err.code, "queue_full");
  assert.equal(err.message, "busy");
});
