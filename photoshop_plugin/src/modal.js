"use strict";
/**
 * Running document changes the way Photoshop requires: inside `core.executeAsModal`, with
 * history suspended so that the whole insertion is one step in the History panel (one
 * Ctrl-Z undoes it), and retried while another plug-in holds the modal state.
 *
 * Only Photoshop work runs in here; network waits happen before, so Photoshop is never
 * locked while the GPU works.
 */

const { LayerLiftError } = require("./protocol");

const MODAL_BUSY = 9; // executeAsModal's error number when another plug-in is modal
const DEFAULT_DELAYS_MS = [100, 250, 500, 1000, 2000, 3000];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function isModalBusy(err) {
  if (!err) return false;
  if (err.number === MODAL_BUSY || err.code === MODAL_BUSY) return true;
  const text = String(err.message || err);
  return /modal (state|scope)/i.test(text) && /(busy|already|another|rejected)/i.test(text);
}

/**
 * `executeAsModal(target)` with retries while Photoshop is busy with another plug-in's modal
 * work. Other errors (the target's own) are not retried.
 */
async function executeModal(core, target, { commandName, delaysMs = DEFAULT_DELAYS_MS, wait = sleep } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await core.executeAsModal(target, { commandName });
    } catch (err) {
      if (!isModalBusy(err)) throw err;
      if (attempt >= delaysMs.length) {
        throw new LayerLiftError("photoshop_busy",
          "Photoshop is busy with another plug-in's command; finish or cancel it, then press Decompose again");
      }
      await wait(delaysMs[attempt]);
    }
  }
}

/**
 * Run `work(executionContext)` inside one modal scope and one suspended-history step named
 * `historyName` on `documentID`. `prepare(executionContext)`, when given, runs first in the
 * same scope, before history is suspended (making the document active is not a step to undo).
 * If `work` throws, the document is rolled back to where it was (resumeHistory with
 * commit=false) and the error is passed on.
 */
async function runAsOneStep(core, { documentID, historyName, commandName, delaysMs, wait, prepare }, work) {
  return executeModal(core, async (executionContext) => {
    if (prepare) await prepare(executionContext);
    const { hostControl } = executionContext;
    const suspension = await hostControl.suspendHistory({ documentID, name: historyName });
    let value;
    try {
      value = await work(executionContext);
    } catch (err) {
      try {
        await hostControl.resumeHistory(suspension, false);
      } catch (rollbackError) {
        // The user must see why the insertion failed, not why undoing it did. Photoshop
        // cancels a suspension still open when the modal scope ends with an exception
        // (executeasmodal.md, "History state suspension"), so the document is rolled back
        // anyway.
        if (err && typeof err === "object" && !err.rollbackError) err.rollbackError = rollbackError;
      }
      throw err;
    }
    await hostControl.resumeHistory(suspension, true);
    return value;
  }, { commandName: commandName || historyName, delaysMs, wait });
}

module.exports = { MODAL_BUSY, DEFAULT_DELAYS_MS, isModalBusy, executeModal, runAsOneStep };
