"use strict";
/**
 * The document a result goes into: the one the picture came from, made active first.
 *
 * A job can run for minutes while the user works in another document. Photoshop's DOM
 * methods that create layers are called on a Document object, but nothing in Adobe's
 * reference promises they act on that document rather than on the active one, so the panel
 * brings the source document to the front inside the modal scope (switching documents is a
 * change to Photoshop's state) before it creates anything, and refuses when it was closed.
 */

const { LayerLiftError } = require("./protocol");
const { toArray } = require("./collection");

function findDocument(app, documentID) {
  return toArray(app.documents).find((doc) => doc && doc.id === documentID) || null;
}

/**
 * Make document `documentID` the active one and return it. `name` and `jobId` go into the
 * messages: the result stays with LayerLift, so the user can still get it.
 */
function activateDocument(app, documentID, { name = "the document", jobId = "" } = {}) {
  const kept = jobId ? `; the result is kept as job ${jobId} in the LayerLift app` : "";
  const doc = findDocument(app, documentID);
  if (!doc) {
    throw new LayerLiftError("source_gone", `“${name}” was closed while LayerLift worked, so nothing was inserted${kept}`);
  }
  const active = app.activeDocument;
  if (!active || active.id !== documentID) {
    try {
      app.activeDocument = doc;
    } catch (err) {
      throw new LayerLiftError("document_not_active",
        `Photoshop could not bring “${name}” to the front (${err && err.message ? err.message : err}), so nothing was inserted${kept}`);
    }
    const now = app.activeDocument;
    if (!now || now.id !== documentID) {
      throw new LayerLiftError("document_not_active", `Photoshop did not bring “${name}” to the front, so nothing was inserted${kept}`);
    }
  }
  return doc;
}

module.exports = { activateDocument, findDocument };
