"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { TokenStore, normalizeCode, isValidCode, bytesToText, textToBytes, TOKEN_KEY } = require("../src/pairing");
const { createFakeUxp } = require("./fakes/uxp");

test("the token is stored as explicit ASCII bytes and read back byte for byte", async () => {
  const { uxp, items, calls } = createFakeUxp();
  const store = new TokenStore(uxp);
  assert.equal(await store.load(), null);
  const token = "abc-DEF_123";
  await store.save(token);
  assert.deepEqual(calls.find((c) => c.name === "secureStorage.setItem").kind, "Uint8Array");
  assert.deepEqual([...items.get(TOKEN_KEY)], [...token].map((c) => c.charCodeAt(0)), "exactly one byte per character");
  assert.equal(await store.load(), token);
  await store.clear();
  assert.equal(await store.load(), null);
  assert.ok(calls.every((c) => c.name.startsWith("secureStorage.")));
  await assert.rejects(store.save(""), /no token/);
  await assert.rejects(store.save("tök"), /ASCII/);
});

test("a value stored in another encoding is not taken for a token: the panel pairs again", async () => {
  const { uxp } = createFakeUxp();
  // A string given to setItem: the fake encodes it as UTF-16 (the encoding is undocumented).
  await uxp.storage.secureStorage.setItem(TOKEN_KEY, "abc-DEF_123");
  assert.equal(await new TokenStore(uxp).load(), null);
});

test("bytes decode one character per byte, from any view of them", () => {
  const bytes = textToBytes("tok_EN-1");
  assert.equal(bytesToText(bytes), "tok_EN-1");
  assert.equal(bytesToText(bytes.buffer), "tok_EN-1");
  const padded = new Uint8Array(12);
  padded.set(bytes, 2);
  assert.equal(bytesToText(padded.subarray(2, 10)), "tok_EN-1");
  assert.equal(bytesToText(Uint8Array.from([0xc3, 0xa9])), null);
  assert.equal(bytesToText(null), null);
});

test("pairing codes are six digits, typed with or without spaces", () => {
  assert.equal(normalizeCode(" 123 456 "), "123456");
  assert.equal(normalizeCode("123-456"), "123456");
  assert.equal(isValidCode("123 456"), true);
  assert.equal(isValidCode("12345"), false);
  assert.equal(isValidCode("abcdef"), false);
});

test("a UXP without secureStorage is an error, not a silent fallback", () => {
  assert.throws(() => new TokenStore({ storage: {} }), /secureStorage/);
});
