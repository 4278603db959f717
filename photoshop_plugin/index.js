"use strict";
/* Entry point loaded by index.html inside Photoshop: set up the panel once it is shown. */
const { entrypoints } = require("uxp");
const { createPanel } = require("./src/panel");

let panel = null;

entrypoints.setup({
  panels: {
    "layerlift.panel": {
      show() {
        if (panel) return;
        panel = createPanel({
          document,
          photoshop: require("photoshop"),
          uxp: require("uxp"),
          WebSocket,
          // Only to tell "refused" from "not running" after a failed connection (src/probe.js).
          fetch: typeof fetch === "function" ? fetch : null,
          storage: window.localStorage,
        });
      },
      hide() {},
    },
  },
});
