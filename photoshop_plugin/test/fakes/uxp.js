"use strict";
/**
 * A fake `require("uxp")`: secureStorage (values come back as Uint8Array, like UXP's),
 * entrypoints.setup, and a recording of calls.
 */

function createFakeUxp() {
  const calls = [];
  const items = new Map();
  const secureStorage = {
    async setItem(key, value) {
      calls.push({ name: "secureStorage.setItem", key });
      const bytes = typeof value === "string" ? Uint8Array.from(value, (c) => c.charCodeAt(0)) : Uint8Array.from(value);
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
