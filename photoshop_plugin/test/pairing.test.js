"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { TokenStore, normalizeCode, isValidCode, TOKEN_KEY } = require("../src/pairing");
const { createFakeUxp } = require("./fakes/uxp");

test("the token lives in secureStorage and comes back as text", async () => {
  const { uxp, items, calls } = createFakeUxp();
  const store = new TokenStore(uxp);
  assert.equal(await store.load(), null);
  await store.save("abc-DEF_123");
  assert.ok(items.get(TOKEN_KEY) instanceof Uint8Array);
  assert.equal(await store.load(), "abc-DEF_123");
  await store.clear();
  assert.equal(await store.load(), null);
  assert.ok(calls.every((c) => c.name.startsWith("secureStorage.")));
  await assert.rejects(store.save(""), /no token/);
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
