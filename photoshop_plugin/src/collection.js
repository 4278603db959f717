"use strict";
/**
 * Photoshop's DOM collections (`app.documents`, `doc.layers`, `group.layers`) are proxies
 * documented with `length` and index access; whether they also have every Array method
 * (`find`, iteration) is not documented. This copies one into a plain array.
 */

function toArray(collection) {
  if (!collection) return [];
  if (Array.isArray(collection)) return collection.slice();
  const out = [];
  for (let i = 0; i < collection.length; i += 1) out.push(collection[i]);
  return out;
}

module.exports = { toArray };
