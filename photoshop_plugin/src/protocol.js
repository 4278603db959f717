"use strict";
/**
 * The wire format of docs/protocol.md, as the panel speaks it: JSON text messages for control
 * and binary frames for pixels (a 32-byte little-endian header, then raw RGBA8 rows).
 *
 * Pure functions only (no socket, no Photoshop), so the same code runs in UXP and under
 * `node --test`, and the tests can check the byte layout against the Python bridge.
 */

// Copies of bridge/wire.py's (MAX_LAYERS: inference/backends/base.py's, MAX_SEED:
// bridge/protocol.py's), which the panel cannot import; tests/test_bridge_wire.py checks them.
const PROTOCOL_VERSION = 1;
const DEFAULT_PORT = 47811;
const CLIENT_NAME = "layerlift-photoshop";

const MAGIC = [0x4c, 0x4c, 0x46, 0x31]; // "LLF1"
const HEADER_SIZE = 32;
const IDENT_SIZE = 16;
const KIND_IMAGE = 1; // panel -> server: the picture of a decompose
const KIND_LAYER = 2; // server -> panel: one layer of a result
const ENCODING_RGBA8 = 0;
const ENCODING_PNG = 1;
const IDENT_RE = /^[A-Za-z0-9_.-]{1,16}$/;
const MAX_SEED = 4294967295;
const MAX_LAYERS = 10;
// The states a job goes through, as the server names them (Python: inference/job_states.py;
// a test checks that the two lists agree). The panel compares against these, never a literal.
const JobState = Object.freeze({
  QUEUED: "queued",
  LOADING: "loading",
  RUNNING: "running",
  REFINING: "refining",
  WRITING: "writing",
  DONE: "done",
  FAILED: "failed",
  CANCELLED: "cancelled",
});

/** An error with a stable `code`, shown to the user through its `message`. */
class LayerLiftError extends Error {
  constructor(code, message, extra) {
    super(message);
    this.name = "LayerLiftError";
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/**
 * Every loopback URL the manifest must allow for `port` (UXP checks the exact origin): the
 * WebSocket, and plain HTTP for the probe that tells a refusal from a stopped app (probe.js).
 */
function loopbackUrls(port = DEFAULT_PORT) {
  return [`ws://127.0.0.1:${port}`, `ws://localhost:${port}`, `http://127.0.0.1:${port}`, `http://localhost:${port}`];
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new LayerLiftError("protocol_error", "binary data must be an ArrayBuffer or a typed array");
}

/**
 * One binary message: header + payload in a single buffer, so a 100 MB picture is copied
 * once (the payload) and not again by a concatenation.
 */
function encodeFrame(header, payload) {
  const { kind, encoding = ENCODING_RGBA8, index = 0, ident, width, height } = header;
  if (!IDENT_RE.test(ident || "")) {
    throw new LayerLiftError("protocol_error", `not a request or job id: ${ident}`);
  }
  const body = payload ? asBytes(payload) : new Uint8Array(0);
  const frame = new Uint8Array(HEADER_SIZE + body.length);
  const view = new DataView(frame.buffer);
  frame.set(MAGIC, 0);
  view.setUint8(4, kind);
  view.setUint8(5, encoding);
  view.setUint16(6, index, true);
  for (let i = 0; i < ident.length; i += 1) frame[8 + i] = ident.charCodeAt(i);
  view.setUint32(24, width, true);
  view.setUint32(28, height, true);
  frame.set(body, HEADER_SIZE);
  return frame;
}

/** Split a binary message into its header and payload (a view: no copy). */
function decodeFrame(data) {
  const bytes = asBytes(data);
  if (bytes.length < HEADER_SIZE) {
    throw new LayerLiftError("protocol_error", `binary message of ${bytes.length} bytes is shorter than the header`);
  }
  for (let i = 0; i < MAGIC.length; i += 1) {
    if (bytes[i] !== MAGIC[i]) throw new LayerLiftError("protocol_error", "binary message does not start with LLF1");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  let ident = "";
  for (let i = 8; i < 8 + IDENT_SIZE && bytes[i] !== 0; i += 1) ident += String.fromCharCode(bytes[i]);
  const header = {
    kind: view.getUint8(4),
    encoding: view.getUint8(5),
    index: view.getUint16(6, true),
    ident,
    width: view.getUint32(24, true),
    height: view.getUint32(28, true),
  };
  if (header.kind !== KIND_IMAGE && header.kind !== KIND_LAYER) {
    throw new LayerLiftError("protocol_error", `unknown binary frame kind ${header.kind}`);
  }
  if (!IDENT_RE.test(ident)) throw new LayerLiftError("protocol_error", "the frame's id is not valid");
  return { header, payload: bytes.subarray(HEADER_SIZE) };
}

/** The raw RGBA8 pixels of a layer frame, checked against its header. */
function layerPixels(header, payload) {
  if (header.encoding !== ENCODING_RGBA8) {
    throw new LayerLiftError("protocol_error", "the panel asks for raw RGBA8 layers; got another encoding");
  }
  const expected = header.width * header.height * 4;
  if (payload.length !== expected) {
    throw new LayerLiftError("corrupt_image",
      `layer ${header.index} is ${header.width}x${header.height} and needs ${expected} bytes, got ${payload.length}`);
  }
  return payload;
}

function parseMessage(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new LayerLiftError("protocol_error", `the server sent text that is not JSON: ${String(err.message).slice(0, 80)}`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data) || typeof data.type !== "string") {
    throw new LayerLiftError("protocol_error", "the server sent a message without a type");
  }
  return data;
}

function hello(token, clientName = CLIENT_NAME) {
  return { type: "hello", protocol: PROTOCOL_VERSION, token, client: { name: clientName } };
}

function pair(code) {
  return { type: "pair", code };
}

/**
 * The `decompose` message for a raw RGBA8 picture. Only options the protocol knows are sent,
 * and empty ones are dropped, so a blank caption never overrides the model's own captioning.
 */
function decompose({ requestId, backend = "auto", layers = null, seed = 0, options = {}, width, height }) {
  if (!IDENT_RE.test(requestId || "")) throw new LayerLiftError("bad_request", "invalid request id");
  if (layers !== null && layers !== undefined && !(Number.isInteger(layers) && layers >= 1 && layers <= MAX_LAYERS)) {
    throw new LayerLiftError("bad_request", `the layer count must be 1-${MAX_LAYERS} (or automatic)`);
  }
  if (!(Number.isInteger(seed) && seed >= 0 && seed <= MAX_SEED)) {
    throw new LayerLiftError("bad_request", `the seed must be a whole number from 0 to ${MAX_SEED}`);
  }
  const clean = {};
  for (const [name, value] of Object.entries(options || {})) {
    if (value === null || value === undefined || value === "") continue;
    clean[name] = value;
  }
  return {
    type: "decompose",
    request_id: requestId,
    backend,
    layers: layers === undefined ? null : layers,
    seed,
    options: clean,
    image: { encoding: "rgba8", width, height, bytes: width * height * 4 },
    result_encoding: "rgba8",
  };
}

function cancel(jobId, requestId) {
  return { type: "cancel", job_id: jobId, request_id: requestId };
}

function imageFrame(requestId, pixels, width, height) {
  return encodeFrame({ kind: KIND_IMAGE, encoding: ENCODING_RGBA8, index: 0, ident: requestId, width, height }, pixels);
}

/** The local error for an `error` message or a failed job's `error` record. */
function remoteError(message) {
  const code = String((message && message.code) || "internal");
  const text = String((message && message.message) || code);
  return new LayerLiftError(code, text, { remote: true });
}

module.exports = {
  PROTOCOL_VERSION,
  DEFAULT_PORT,
  CLIENT_NAME,
  HEADER_SIZE,
  KIND_IMAGE,
  KIND_LAYER,
  ENCODING_RGBA8,
  ENCODING_PNG,
  MAX_LAYERS,
  MAX_SEED,
  JobState,
  LayerLiftError,
  loopbackUrls,
  asBytes,
  encodeFrame,
  decodeFrame,
  layerPixels,
  parseMessage,
  hello,
  pair,
  decompose,
  cancel,
  imageFrame,
  remoteError,
};
