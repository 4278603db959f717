"use strict";
/**
 * A fake `require("uxp")`: secureStorage, entrypoints.setup, and a recording of calls.
 *
 * secureStorage keeps exactly the bytes it is given and `getItem` returns them as a
 * Uint8Array (documented). How a *string* given to `setItem` is encoded is not documented;
 * the fake stores it as UTF-16LE, so a panel that relied on some encoding of strings would
 * read back a different token.
 */

function bytesOf(value) {
  if (typeof value === "string") {
    const out = new Uint8Array(value.length * 2);
    for (let i = 0; i < value.length; i += 1) {
      out[2 * i] = value.charCodeAt(i) & 0xff;
      out[2 * i + 1] = value.charCodeAt(i) >> 8;
    }
    return out;
  }
  if (value instanceof ArrayBuffer) return new Uint8Array(value.slice(0));
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
  throw new TypeError("secureStorage.setItem: the value must be a string, ArrayBuffer or TypedArray");
}

function createFakeUxp() {
  const calls = [];
  const items = new Map();
  const secureStorage = {
    async setItem(key, value) {
      const kind = typeof value === "string" ? "string" : Object.prototype.toString.call(value).slice(8, -1);
      calls.push({ name: "secureStorage.setItem", key, kind });
      const bytes = bytesOf(value);
      if (!bytes.length) throw new Error("secureStorage.setItem: the value is empty");
      items.set(key, bytes);
    },
    async getItem(key) {
      calls.push({ name: "secureStorage.getItem", key });
      return items.has(key) ? Uint8Array.from(items.get(key)) : null;
    },
    async removeItem(key) {
      calls.push({ name: "secureStorage.removeItem", key });
      items.delete(key);
    },
    get length() {
      return items.size;
    },
  };
  const entrypoints = {
    setup(config) {
      calls.push({ name: "entrypoints.setup", config });
      entrypoints.config = config;
    },
  };
  return { uxp: { storage: { secureStorage }, entrypoints }, calls, items };
}

module.exports = { createFakeUxp };
