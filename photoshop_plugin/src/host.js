"use strict";
/**
 * What this Photoshop can do for the panel, checked once at start.
 *
 * The panel reads and writes pixels through `require("photoshop").imaging`. Photoshop 24.4's
 * changelog made the Imaging API available in the *Beta* build; public plug-ins refuse their
 * getPixels path below Photoshop 25. So a 24.4–24.x release build may have no `imaging` at
 * all: the panel says so instead of failing on the first Decompose. (The manifest keeps
 * minVersion 24.4 so a 24.x build that does have it still works; docs/photoshop.md.)
 */

const { LayerLiftError } = require("./protocol");

const IMAGING_NEEDED = ["getPixels", "putPixels", "createImageDataFromBuffer"];
const TOO_OLD = "Photoshop 25 or newer is needed: this Photoshop has no Imaging API, "
  + "which LayerLift uses to read and write layer pixels. Update Photoshop from the Creative Cloud app.";

/** `{ ok, code, message }` for `photoshop` (the module). */
function hostSupport(photoshop) {
  const imaging = photoshop && photoshop.imaging;
  const missing = IMAGING_NEEDED.filter((name) => !imaging || typeof imaging[name] !== "function");
  if (missing.length) return { ok: false, code: "photoshop_too_old", message: TOO_OLD };
  return { ok: true, code: "", message: "" };
}

/** Throws the message above when this Photoshop cannot run a decomposition. */
function requireImaging(photoshop) {
  const support = hostSupport(photoshop);
  if (!support.ok) throw new LayerLiftError(support.code, support.message);
}

module.exports = { hostSupport, requireImaging, TOO_OLD };
