"use strict";
/**
 * Which groups in which open documents LayerLift made, so that decomposing a layer inside
 * one replaces that layer in place instead of nesting a new group.
 *
 * Photoshop layers carry no plug-in metadata through the DOM API, and the group is named
 * after its source layer (what a user looks for in the Layers panel), so the panel remembers group ids itself (in
 * localStorage when given one). Photoshop's document ids last only while the document is
 * open: after reopening a file, a layer of an old group is decomposed into a new group.
 */

const KEY = "layerlift.groups";
const MAX_DOCUMENTS = 50;

class GroupRegistry {
  constructor(storage = null) {
    this.storage = storage;
    this.groups = new Map(); // document id -> Set of group layer ids
    this._load();
  }

  _load() {
    if (!this.storage) return;
    try {
      const data = JSON.parse(this.storage.getItem(KEY) || "{}");
      for (const [doc, ids] of Object.entries(data)) {
        if (Array.isArray(ids)) this.groups.set(String(doc), new Set(ids.filter(Number.isInteger)));
      }
    } catch (_) {
      this.groups.clear(); // a damaged record only costs the replace-in-place behaviour
    }
  }

  _save() {
    if (!this.storage) return;
    const entries = [...this.groups.entries()].slice(-MAX_DOCUMENTS);
    const data = Object.fromEntries(entries.map(([doc, ids]) => [doc, [...ids]]));
    try {
      this.storage.setItem(KEY, JSON.stringify(data));
    } catch (_) {
      /* storage full or unavailable: remember for this session only */
    }
  }

  add(documentID, groupID) {
    const key = String(documentID);
    if (!this.groups.has(key)) this.groups.set(key, new Set());
    this.groups.get(key).add(groupID);
    this._save();
  }

  has(documentID, groupID) {
    const ids = this.groups.get(String(documentID));
    return Boolean(ids && ids.has(groupID));
  }

  /** True when `layer` sits directly inside a group this panel created. */
  isInLayerLiftGroup(documentID, layer) {
    const parent = layer && layer.parent;
    return Boolean(parent && parent.id !== undefined && this.has(documentID, parent.id));
  }
}

module.exports = { GroupRegistry };
