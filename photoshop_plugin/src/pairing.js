"use strict";
/**
 * Where the panel keeps the bridge token: UXP `secureStorage` (encrypted per user by the
 * OS), never localStorage or a file, because the token lets any holder use the GPU.
 *
 * The panel gets the token once by pairing (a six-digit code shown by `layerlift pair` or
 * the tray) and then only ever sends it in `hello`.
 */

const TOKEN_KEY = "layerlift.token";

/** Decode what secureStorage returns (a Uint8Array in UXP) into the ASCII token string. */
function bytesToText(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  const bytes = value instanceof Uint8Array ? value : new Uint8Array(value.buffer || value);
  let text = "";
  for (let i = 0; i < bytes.length; i += 1) text += String.fromCharCode(bytes[i]);
  return text;
}

/** The pairing code as the server wants it: digits only (users type "123 456"). */
function normalizeCode(code) {
  return String(code || "").replace(/[\s-]+/g, "");
}

function isValidCode(code) {
  return /^[0-9]{6}$/.test(normalizeCode(code));
}

class TokenStore {
  constructor(uxp, key = TOKEN_KEY) {
    const storage = uxp && uxp.storage && uxp.storage.secureStorage;
    if (!storage) throw new Error("UXP secureStorage is not available");
    this.storage = storage;
    this.key = key;
  }

  async load() {
    let value;
    try {
      value = await this.storage.getItem(this.key);
    } catch (_) {
      return null; // nothing stored yet: some UXP versions reject instead of returning null
    }
    const text = bytesToText(value);
    return text && text.trim() ? text.trim() : null;
  }

  async save(token) {
    if (typeof token !== "string" || !token) throw new Error("no token to save");
    await this.storage.setItem(this.key, token);
  }

  async clear() {
    try {
      await this.storage.removeItem(this.key);
    } catch (_) {
      /* nothing stored */
    }
  }
}

module.exports = { TOKEN_KEY, TokenStore, bytesToText, normalizeCode, isValidCode };
