"use strict";
/**
 * A fake of the few DOM features the panel uses, built from the real index.html so the tests
 * read the markup the panel ships (ids, menu items and their `value` attributes).
 *
 * `sp-picker` behaves as unfriendly as Adobe's documentation allows: only `selectedIndex` is
 * documented for the Spectrum dropdown, so its `.value` here is the selected item's *label*
 * text, never its `value` attribute.
 */

const fs = require("node:fs");
const path = require("node:path");

const INDEX_HTML = path.join(__dirname, "..", "..", "index.html");
const VOID = new Set(["meta", "link", "br", "img", "input", "hr"]);

class FakeElement {
  constructor(document, tagName, attributes = {}) {
    this.ownerDocument = document;
    this.tagName = tagName.toLowerCase();
    this.attributes = new Map(Object.entries(attributes));
    this.children = [];
    this.parentNode = null;
    this.listeners = new Map();
    this._text = "";
    this.title = "";
  }

  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }

  removeAttribute(name) {
    this.attributes.delete(name);
  }

  hasAttribute(name) {
    return this.attributes.has(name);
  }

  get id() {
    return this.getAttribute("id") || "";
  }

  get className() {
    return this.getAttribute("class") || "";
  }

  set className(value) {
    this.setAttribute("class", value);
  }

  get textContent() {
    return this._text + this.children.map((c) => c.textContent).join("");
  }

  set textContent(value) {
    this.children = [];
    this._text = String(value);
  }

  appendChild(child) {
    child.parentNode = this;
    this.children.push(child);
    return child;
  }

  addEventListener(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(listener);
  }

  /** Test helper: run the listeners of `type` and wait for what they return. */
  async dispatch(type) {
    await Promise.all((this.listeners.get(type) || []).map((listener) => listener({ type, target: this })));
  }

  *descendants() {
    for (const child of this.children) {
      yield child;
      yield* child.descendants();
    }
  }

  querySelectorAll(selector) {
    const match = /^([a-z-]+)(?:\[([a-z-]+)="([^"]*)"\])?$/.exec(selector);
    if (!match) throw new Error(`the fake DOM does not support the selector ${selector}`);
    const [, tag, attr, value] = match;
    return [...this.descendants()].filter((el) => el.tagName === tag && (!attr || el.getAttribute(attr) === value));
  }

  querySelector(selector) {
    return this.querySelectorAll(selector)[0] || null;
  }
}

/** sp-textfield: `.value` is the text (documented). */
class FakeTextfield extends FakeElement {
  constructor(document, tagName, attributes) {
    super(document, tagName, attributes);
    this.value = this.getAttribute("value") || "";
  }
}

/** sp-checkbox: `.checked`. */
class FakeCheckbox extends FakeElement {
  constructor(document, tagName, attributes) {
    super(document, tagName, attributes);
    this.checked = this.hasAttribute("checked");
  }
}

/**
 * sp-picker: `selectedIndex` (documented) and a `.value` that is the label text. The markup's
 * `selected` attribute is only the initial choice: a user's choice does not move it.
 */
class FakePicker extends FakeElement {
  items() {
    return this.querySelectorAll("sp-menu-item");
  }

  get selectedIndex() {
    if (this._index === undefined) this._index = this.items().findIndex((item) => item.hasAttribute("selected"));
    return this._index;
  }

  set selectedIndex(index) {
    this._index = index;
  }

  get value() {
    const item = this.items()[this.selectedIndex];
    return item ? item.textContent.trim() : "";
  }

  /** Test helper: what a user does, choosing the item whose `value` attribute is `value`. */
  choose(value) {
    const index = this.items().findIndex((item) => item.getAttribute("value") === value);
    if (index < 0) throw new Error(`no menu item with value ${value}`);
    this.selectedIndex = index;
  }
}

const CLASSES = { "sp-textfield": FakeTextfield, "sp-checkbox": FakeCheckbox, "sp-picker": FakePicker };

class FakeDocument {
  constructor() {
    this.body = new FakeElement(this, "body");
  }

  createElement(tagName) {
    const Class = CLASSES[tagName.toLowerCase()] || FakeElement;
    return new Class(this, tagName);
  }

  getElementById(id) {
    for (const el of this.body.descendants()) if (el.id === id) return el;
    return null;
  }
}

function parseAttributes(text) {
  const attributes = {};
  for (const m of text.matchAll(/([a-zA-Z-]+)(?:="([^"]*)")?/g)) attributes[m[1]] = m[2] === undefined ? "" : m[2];
  return attributes;
}

/** The body of `html` as fake elements (enough HTML for index.html: tags, attributes, text). */
function parseBody(html) {
  const document = new FakeDocument();
  const body = html.slice(html.indexOf("<body>") + "<body>".length, html.indexOf("</body>"));
  const stack = [document.body];
  let last = 0;
  for (const m of body.matchAll(/<(\/?)([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>/g)) {
    const text = body.slice(last, m.index).replace(/\s+/g, " ");
    if (text.trim()) stack[stack.length - 1].appendChild(Object.assign(new FakeElement(document, "#text"), { _text: text }));
    last = m.index + m[0].length;
    const [, closing, tag, rest] = m;
    if (closing) {
      if (stack[stack.length - 1].tagName !== tag.toLowerCase()) throw new Error(`index.html: unexpected </${tag}>`);
      stack.pop();
      continue;
    }
    const Class = CLASSES[tag.toLowerCase()] || FakeElement;
    const el = stack[stack.length - 1].appendChild(new Class(document, tag, parseAttributes(rest)));
    if (!VOID.has(tag.toLowerCase()) && !rest.trim().endsWith("/")) stack.push(el);
  }
  if (stack.length !== 1) throw new Error("index.html: unclosed elements");
  return document;
}

/** A fake `document` holding the panel's real markup. */
function panelDocument() {
  return parseBody(fs.readFileSync(INDEX_HTML, "utf8"));
}

module.exports = { panelDocument, parseBody, FakeElement, FakePicker };
