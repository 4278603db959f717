"use strict";
/**
 * A fake `require("photoshop")` that behaves like the parts of the real one the panel uses,
 * and records every call.
 *
 * What it models (from Adobe's UXP reference): `doc.layers` is top-first; a new layer is
 * created above the active layer; `imaging.getPixels` trims the requested bounds to the
 * layer's pixel area and reports the smaller `sourceBounds`; a background layer has no alpha
 * (3 components); `getData()` returns a promise and fails after `dispose()`; changes outside
 * `core.executeAsModal` throw; every change is its own history step unless history is
 * suspended, and `resumeHistory(id, false)` rolls the document back; a modal scope that ends
 * with an exception cancels any history still suspended (executeasmodal.md);
 * `executeAsModal` throws an error with `number === 9` while another plug-in is modal.
 *
 * Where the documentation leaves room, it takes the least friendly reading:
 * - `createLayer`/`createLayerGroup` act on the *active* document, whichever Document object
 *   they are called on, and switching documents (`app.activeDocument = doc`) is a change that
 *   needs the modal scope;
 * - `getPixels` throws on a region where the layer has no pixels (`emptyRegion: "undefined"`
 *   makes it return no image data instead);
 * - options: `imaging: false` (no `photoshop.imaging`, as on 24.4–24.x release builds),
 *   `misnest: n` (the first n moves into a group, by placeInside or relative to a layer
 *   inside it, leave the layer directly above the group instead: AdobeDocs/uxp-photoshop#493;
 *   settable later as `fake.misnest`), `failRollback: true` (a plug-in's
 *   `resumeHistory(id, false)` throws).
 */

const constants = {
  DocumentMode: {
    BITMAP: "bitmapMode", CMYK: "CMYKColorMode", DUOTONE: "duotoneMode", GRAYSCALE: "grayscaleMode",
    INDEXEDCOLOR: "indexedColorMode", LAB: "labColorMode", MULTICHANNEL: "multichannelMode", RGB: "RGBColorMode",
  },
  BitsPerChannelType: { ONE: "bitDepth1", EIGHT: "bitDepth8", SIXTEEN: "bitDepth16", THIRTYTWO: "bitDepth32" },
  ElementPlacement: {
    PLACEATBEGINNING: "placeAtBeginning", PLACEATEND: "placeAtEnd", PLACEBEFORE: "placeBefore",
    PLACEAFTER: "placeAfter", PLACEINSIDE: "placeInside",
  },
  LayerKind: { NORMAL: "pixel", GROUP: "group", TEXT: "text", SMARTOBJECT: "smartObject" },
};

const SRGB = "sRGB IEC61966-2.1";

class FakeImageData {
  constructor({ width, height, components, componentSize, colorSpace, colorProfile, data }) {
    Object.assign(this, { width, height, components, componentSize, colorSpace, colorProfile });
    this.hasAlpha = components === 4 || components === 2;
    this.pixelFormat = components === 4 ? "RGBA" : "RGB";
    this.isChunky = true;
    this.type = "image/uncompressed";
    this._data = data;
    this.disposed = false;
  }

  getData(options = {}) {
    if (this.disposed) return Promise.reject(new Error("image data was disposed"));
    if (options.chunky === false) return Promise.reject(new Error("the fake only does chunky data"));
    return Promise.resolve(this._data);
  }

  dispose() {
    this.disposed = true;
  }
}

function rect(b) {
  const right = b.right !== undefined ? b.right : b.left + b.width;
  const bottom = b.bottom !== undefined ? b.bottom : b.top + b.height;
  return { left: b.left, top: b.top, right, bottom, width: right - b.left, height: bottom - b.top };
}

function intersect(a, b) {
  const left = Math.max(a.left, b.left);
  const top = Math.max(a.top, b.top);
  const right = Math.min(a.right, b.right);
  const bottom = Math.min(a.bottom, b.bottom);
  if (right <= left || bottom <= top) return null;
  return rect({ left, top, right, bottom });
}

class FakeLayer {
  constructor(fake, doc, { name, kind = constants.LayerKind.NORMAL, isBackgroundLayer = false }) {
    this._fake = fake;
    this._doc = doc;
    this.id = fake.nextId();
    this._name = name;
    this.kind = kind;
    this.isBackgroundLayer = isBackgroundLayer;
    this._visible = true;
    this.parent = null;
    this.layers = kind === constants.LayerKind.GROUP ? [] : undefined;
    this.pixels = null; // {left, top, width, height, data: RGBA Uint8Array} for pixel layers
  }

  get name() {
    return this._name;
  }

  set name(value) {
    this._fake.change("rename layer", this._doc);
    this._name = value;
  }

  get visible() {
    return this._visible;
  }

  set visible(value) {
    this._fake.change(value ? "show layer" : "hide layer", this._doc);
    this._visible = Boolean(value);
  }

  /** Bounding box of the non-transparent pixels (what Photoshop reports as bounds). */
  get boundsNoEffects() {
    if (this.layers) {
      const boxes = this.layers.map((l) => l.boundsNoEffects).filter((b) => b.width && b.height);
      if (!boxes.length) return rect({ left: 0, top: 0, right: 0, bottom: 0 });
      return rect({
        left: Math.min(...boxes.map((b) => b.left)), top: Math.min(...boxes.map((b) => b.top)),
        right: Math.max(...boxes.map((b) => b.right)), bottom: Math.max(...boxes.map((b) => b.bottom)),
      });
    }
    const p = this.pixels;
    if (!p) return rect({ left: 0, top: 0, right: 0, bottom: 0 });
    let left = Infinity;
    let top = Infinity;
    let right = -Infinity;
    let bottom = -Infinity;
    for (let y = 0; y < p.height; y += 1) {
      for (let x = 0; x < p.width; x += 1) {
        if (p.data[(y * p.width + x) * 4 + 3] > 0) {
          left = Math.min(left, x);
          right = Math.max(right, x + 1);
          top = Math.min(top, y);
          bottom = Math.max(bottom, y + 1);
        }
      }
    }
    if (left === Infinity) return rect({ left: 0, top: 0, right: 0, bottom: 0 });
    return rect({ left: p.left + left, top: p.top + top, right: p.left + right, bottom: p.top + bottom });
  }

  get bounds() {
    return this.boundsNoEffects;
  }

  async move(relative, where) {
    this._fake.record("layer.move", { id: this.id, relative: relative.id, where });
    if (relative._doc !== this._doc) throw new Error("move: the layers are in different documents");
    this._fake.change("move layer", this._doc);
    this._doc._detach(this);
    const P = constants.ElementPlacement;
    const into = where === P.PLACEINSIDE ? relative : relative.parent;
    if (into && this._fake.misnest > 0) {
      // Reported, not documented (AdobeDocs/uxp-photoshop#493): a move into a group
      // "succeeds" but the layer lands beside the group, directly above it.
      this._fake.misnest -= 1;
      const siblings = this._doc._container(into.parent);
      siblings.splice(siblings.indexOf(into), 0, this);
      this.parent = into.parent;
      return;
    }
    if (where === P.PLACEINSIDE) {
      if (!relative.layers) throw new Error("placeInside needs a group");
      this.parent = relative;
      relative.layers.unshift(this);
      return;
    }
    if (where === P.PLACEBEFORE || where === P.PLACEAFTER) {
      const siblings = this._doc._container(relative.parent);
      const at = siblings.indexOf(relative);
      if (at < 0) throw new Error("relative layer is not in the document");
      siblings.splice(where === P.PLACEBEFORE ? at : at + 1, 0, this);
      this.parent = relative.parent;
      return;
    }
    throw new Error(`the fake does not support placement ${where}`);
  }

  async delete() {
    this._fake.record("layer.delete", { id: this.id });
    this._fake.change("delete layer", this._doc);
    this._doc._detach(this);
    this._doc.activeLayers = this._doc.activeLayers.filter((l) => l !== this);
  }
}

class FakeDocument {
  constructor(fake, { width, height, title = "Untitled-1", mode = constants.DocumentMode.RGB, bitsPerChannel = constants.BitsPerChannelType.EIGHT }) {
    this._fake = fake;
    this.id = fake.nextId();
    this.title = title;
    this.width = width;
    this.height = height;
    this.mode = mode;
    this.bitsPerChannel = bitsPerChannel;
    this.layers = [];
    this.activeLayers = [];
    this.history = ["Open"];
    this.suspended = null; // {id, name, snapshot, changed}
    this.selectionRect = null;
  }

  _container(parent) {
    return parent ? parent.layers : this.layers;
  }

  _detach(layer) {
    const siblings = this._container(layer.parent);
    const at = siblings.indexOf(layer);
    if (at >= 0) siblings.splice(at, 1);
    layer.parent = null;
  }

  /** Test set-up (not an API): add a pixel layer holding `pixels` at its offset, on top. */
  addPixelLayer(name, { left = 0, top = 0, width, height, data, background = false }) {
    const layer = new FakeLayer(this._fake, this, { name, isBackgroundLayer: background });
    layer.pixels = { left, top, width, height, data: Uint8Array.from(data) };
    this.layers.unshift(layer);
    this.activeLayers = [layer];
    return layer;
  }

  _insertAboveActive(layer) {
    const active = this.activeLayers[0];
    const siblings = this._container(active ? active.parent : null);
    const at = active ? siblings.indexOf(active) : 0;
    siblings.splice(Math.max(0, at), 0, layer);
    layer.parent = active ? active.parent : null;
    this.activeLayers = [layer];
  }

  /** Where Photoshop really acts: the active document, whatever `this` is. */
  _acting() {
    return this._fake.app.activeDocument || this;
  }

  async createLayer(options = {}) {
    const doc = this._acting();
    this._fake.record("document.createLayer", { ...options, documentID: this.id, actedOn: doc.id });
    this._fake.change("New Layer", doc);
    const layer = new FakeLayer(this._fake, doc, { name: options.name || "Layer" });
    doc._insertAboveActive(layer);
    return layer;
  }

  async createLayerGroup(options = {}) {
    const doc = this._acting();
    const from = options.fromLayers ? [].concat(options.fromLayers) : [];
    this._fake.record("document.createLayerGroup", { name: options.name, fromLayers: from.map((l) => l.id), documentID: this.id, actedOn: doc.id });
    this._fake.change("New Group", doc);
    const group = new FakeLayer(this._fake, doc, { name: options.name || "Group", kind: constants.LayerKind.GROUP });
    if (!from.length) {
      doc._insertAboveActive(group);
      return group;
    }
    // Grouping layers: the group takes the place of the topmost of them, which keep their
    // stacking order inside it.
    const order = new Map(doc.walk().map(({ layer }, i) => [layer, i]));
    const members = from.filter((l) => order.has(l)).sort((a, b) => order.get(a) - order.get(b));
    if (members.length !== from.length) throw new Error("fromLayers: a layer is not in the document");
    const top = members[0];
    const siblings = doc._container(top.parent);
    siblings.splice(siblings.indexOf(top), 0, group);
    group.parent = top.parent;
    for (const layer of members) {
      doc._detach(layer);
      group.layers.push(layer);
      layer.parent = group;
    }
    doc.activeLayers = [group];
    return group;
  }

  get selection() {
    // Photoshop 25+ exposes doc.selection; the fake stays at 24.x unless told otherwise.
    return this._fake.options.domSelection ? { bounds: this.selectionRect } : undefined;
  }

  /** Every layer, depth first, top first: [{layer, depth}]. */
  walk() {
    const out = [];
    const visit = (layers, depth) => {
      for (const layer of layers) {
        out.push({ layer, depth });
        if (layer.layers) visit(layer.layers, depth + 1);
      }
    };
    visit(this.layers, 0);
    return out;
  }

  _snapshot() {
    return this.walk().map(({ layer }) => ({
      layer, parent: layer.parent, name: layer._name, visible: layer._visible, pixels: layer.pixels,
      children: layer.layers ? [...layer.layers] : null,
    })).concat([{ top: [...this.layers], active: [...this.activeLayers] }]);
  }

  _restore(snapshot) {
    const last = snapshot[snapshot.length - 1];
    this.layers = last.top;
    this.activeLayers = last.active;
    for (const entry of snapshot.slice(0, -1)) {
      Object.assign(entry.layer, { parent: entry.parent, _name: entry.name, _visible: entry.visible, pixels: entry.pixels });
      if (entry.children) entry.layer.layers = entry.children;
    }
  }
}

function createFakePhotoshop(options = {}) {
  let ids = 100;
  const fake = {
    options,
    calls: [],
    modalDepth: 0,
    busy: options.busy || 0, // executeAsModal calls to refuse as "another plug-in is modal"
    misnest: options.misnest || 0, // placeInside moves that leave the layer beside the group
    nextId: () => (ids += 1),
    record(name, args) {
      fake.calls.push({ name, args, modal: fake.modalDepth > 0 });
    },
    change(what, doc) {
      if (fake.modalDepth === 0) throw new Error(`${what}: a change outside executeAsModal`);
      if (doc.suspended) doc.suspended.changed = true;
      else doc.history.push(what);
    },
  };

  let active = null;
  const app = {
    documents: [],
    get activeDocument() {
      return active;
    },
    /** Switching documents is a change to Photoshop's state: it needs the modal scope. */
    set activeDocument(doc) {
      fake.record("app.activeDocument=", { id: doc && doc.id });
      if (fake.modalDepth === 0) throw new Error("activeDocument: a change outside executeAsModal");
      if (!app.documents.includes(doc)) throw new Error("activeDocument: the document is not open");
      active = doc;
    },
    /** Test set-up (not an API): open a document; it becomes the active one. */
    createFakeDocument(opts) {
      const doc = new FakeDocument(fake, opts);
      app.documents.push(doc);
      active = doc;
      return doc;
    },
    /** Test set-up (not an API): the user brings another document to the front. */
    userActivates(doc) {
      active = doc;
    },
    /** Test set-up (not an API): the user closes a document. */
    userCloses(doc) {
      app.documents = app.documents.filter((d) => d !== doc);
      if (active === doc) active = app.documents[app.documents.length - 1] || null;
    },
  };
  fake.app = app;

  const findDoc = (id) => (id === undefined || id < 0 ? app.activeDocument : app.documents.find((d) => d.id === id));
  const findLayer = (doc, id) => doc.walk().map((e) => e.layer).find((l) => l.id === id);

  const imaging = {
    async getPixels(opts) {
      fake.record("imaging.getPixels", opts);
      const doc = findDoc(opts.documentID);
      const layer = findLayer(doc, opts.layerID);
      if (!layer || !layer.pixels) throw new Error("getPixels: not a pixel layer");
      const want = rect(opts.sourceBounds);
      const have = layer.isBackgroundLayer ? rect({ left: 0, top: 0, width: doc.width, height: doc.height }) : layer.boundsNoEffects;
      const got = intersect(want, have);
      if (!got) {
        if (options.emptyRegion === "undefined") return { imageData: undefined, sourceBounds: undefined, level: 0 };
        throw new Error("getPixels: the requested area has no pixel data");
      }
      const components = layer.isBackgroundLayer ? 3 : 4;
      const sixteen = doc.bitsPerChannel === constants.BitsPerChannelType.SIXTEEN;
      const componentSize = opts.componentSize && opts.componentSize > 0 ? opts.componentSize : (sixteen ? 16 : 8);
      const Type = componentSize === 16 ? Uint16Array : Uint8Array;
      const scale = componentSize === 16 ? 32768 / 255 : 1;
      const data = new Type(got.width * got.height * components);
      const p = layer.pixels;
      for (let y = 0; y < got.height; y += 1) {
        for (let x = 0; x < got.width; x += 1) {
          const s = ((got.top + y - p.top) * p.width + (got.left + x - p.left)) * 4;
          const d = (y * got.width + x) * components;
          for (let c = 0; c < components; c += 1) data[d + c] = Math.round(p.data[s + c] * scale);
        }
      }
      const imageData = new FakeImageData({
        width: got.width, height: got.height, components, componentSize,
        colorSpace: opts.colorSpace || "RGB", colorProfile: opts.colorProfile || SRGB, data,
      });
      fake.lastImageData = imageData;
      return { imageData, sourceBounds: { left: got.left, top: got.top, right: got.right, bottom: got.bottom }, level: 0 };
    },

    async createImageDataFromBuffer(buffer, opts) {
      fake.record("imaging.createImageDataFromBuffer", { ...opts, length: buffer.length });
      if (!(buffer instanceof Uint8Array)) throw new Error("the fake only takes Uint8Array data");
      if (buffer.length !== opts.width * opts.height * opts.components) throw new Error("buffer size does not match");
      if (!opts.colorSpace) throw new Error("colorSpace is required");
      const imageData = new FakeImageData({
        width: opts.width, height: opts.height, components: opts.components, componentSize: 8,
        colorSpace: opts.colorSpace, colorProfile: opts.colorProfile, data: Uint8Array.from(buffer),
      });
      fake.created = (fake.created || []).concat([imageData]);
      return imageData;
    },

    async putPixels(opts) {
      fake.record("imaging.putPixels", {
        documentID: opts.documentID, layerID: opts.layerID, targetBounds: opts.targetBounds, replace: opts.replace,
      });
      const doc = findDoc(opts.documentID);
      fake.change("putPixels", doc);
      const layer = findLayer(doc, opts.layerID);
      if (!layer || layer.layers) throw new Error("putPixels: the target must be a pixel layer");
      const img = opts.imageData;
      if (img.disposed) throw new Error("putPixels: image data was disposed");
      if (img.components !== 4 || img.colorSpace !== "RGB") throw new Error("the fake stores RGBA only");
      const target = opts.targetBounds || { left: 0, top: 0 };
      layer.pixels = { left: target.left, top: target.top, width: img.width, height: img.height, data: Uint8Array.from(img._data) };
    },
  };

  const core = {
    async executeAsModal(target, opts = {}) {
      fake.record("core.executeAsModal", { commandName: opts.commandName });
      if (!opts.commandName) throw new Error("executeAsModal: commandName is required");
      if (fake.busy > 0) {
        fake.busy -= 1;
        const err = new Error("host is in a modal state");
        err.number = 9;
        throw err;
      }
      const suspensions = new Map();
      // What Photoshop does itself when a suspension is resumed (or the scope ends with it
      // still open): commit as one step, or roll the document back.
      const finish = (id, commit) => {
        const doc = suspensions.get(id);
        const state = doc.suspended;
        doc.suspended = null;
        suspensions.delete(id);
        if (!commit) doc._restore(state.snapshot);
        else if (state.changed) doc.history.push(state.name);
      };
      const hostControl = {
        async suspendHistory({ documentID, name }) {
          fake.record("hostControl.suspendHistory", { documentID, name });
          const doc = findDoc(documentID);
          if (!doc) throw new Error("suspendHistory: no such document");
          if (doc.suspended) throw new Error("history already suspended");
          const id = fake.nextId();
          doc.suspended = { id, name, snapshot: doc._snapshot(), changed: false };
          suspensions.set(id, doc);
          return id;
        },
        async resumeHistory(id, commit = true) {
          fake.record("hostControl.resumeHistory", { id, commit });
          const doc = suspensions.get(id);
          if (!doc || !doc.suspended || doc.suspended.id !== id) throw new Error("unknown suspension");
          if (!commit && options.failRollback) throw new Error("resumeHistory: the rollback failed");
          finish(id, commit);
        },
      };
      fake.modalDepth += 1;
      try {
        const value = await target({ isCancelled: false, hostControl, reportProgress() {} }, opts.descriptor);
        for (const id of [...suspensions.keys()]) finish(id, true);
        return value;
      } catch (err) {
        for (const id of [...suspensions.keys()]) finish(id, false);
        throw err;
      } finally {
        fake.modalDepth -= 1;
      }
    },
  };

  const action = {
    async batchPlay(commands) {
      fake.record("action.batchPlay", commands);
      return commands.map((command) => {
        const docRef = command._target.find((t) => t._ref === "document");
        const doc = findDoc(docRef ? docRef._id : undefined);
        const prop = command._target.find((t) => t._property);
        if (command._obj !== "get" || !prop || prop._property !== "selection") throw new Error("unsupported batchPlay");
        if (!doc.selectionRect) return {};
        const px = (v) => ({ _unit: "pixelsUnit", _value: v });
        const s = rect(doc.selectionRect);
        return { selection: { _obj: "rectangle", top: px(s.top), left: px(s.left), bottom: px(s.bottom), right: px(s.right) } };
      });
    },
  };

  const photoshop = { app, core, action, constants };
  if (options.imaging !== false) photoshop.imaging = imaging;
  return { photoshop, fake };
}

module.exports = { createFakePhotoshop, constants, FakeImageData, SRGB };
