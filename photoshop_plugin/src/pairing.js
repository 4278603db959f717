"use strict";
/**
 * Where the panel keeps the bridge token: UXP `secureStorage` (encrypted per user by the
 * OS), never localStorage or a file, because the token lets any holder use the GPU.
 *
 * The panel gets the token once by pairing (a six-digit code shown by `layerlift pair` or
 * the tray) and then only ever sends it in `hello`.
 */

const TOKEN_KEY = "layerlift.token";

// The bridge's token is URL-safe base64 (`secrets.token_urlsafe`): printable ASCII only.
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

/**
 * The token as explicit bytes, one per character. `secureStorage.setItem` takes a string
 * too, but how it encodes one is not documented, and `getItem` always answers bytes
 * (a Uint8Array): storing bytes makes what comes back exactly what went in.
 */
function textToBytes(token) {
  if (typeof token !== "string" || !TOKEN_CHARS.test(token)) throw new Error("the token must be printable ASCII");
  return Uint8Array.from(token, (c) => c.charCodeAt(0));
}

/**
 * Decode what secureStorage returns (a Uint8Array in UXP) byte for byte into the token, or
 * null when there is none or it is not a token (for example a value stored in another
 * encoding): the panel then asks for pairing again instead of sending garbage.
 */
function bytesToText(value) {
  if (value === null || value === undefined) return null;
  let text = "";
  if (typeof value === "string") {
    text = value; // not what UXP documents (it answers bytes), but harmless to accept
  } else {
    let bytes;
    if (value instanceof ArrayBuffer) bytes = new Uint8Array(value);
    else if (ArrayBuffer.isView(value)) bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    else return null;
    for (let i = 0; i < bytes.length; i += 1) text += String.fromCharCode(bytes[i]);
  }
  text = text.trim();
  return TOKEN_CHARS.test(text) ? text : null;
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
    return bytesToText(value);
  }

  async save(token) {
    if (typeof token !== "string" || !token) throw new Error("no token to save");
    await this.storage.setItem(this.key, textToBytes(token));
  }

  async clear() {
    try {
      await this.storage.removeItem(this.key);
    } catch (_) {
      /* nothing stored */
    }
  }
}

module.exports = { TOKEN_KEY, TokenStore, bytesToText, textToBytes, normalizeCode, isValidCode };
