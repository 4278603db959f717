"use strict";
/**
 * Starts the real Python bridge (`python -m layerlift.desktop.cli serve --port 0`) for the integration
 * tests, with LAYERLIFT_HOME in a fresh temp folder, and stops it and removes the folder
 * afterwards. Python is $LAYERLIFT_PYTHON, else the repository's .venv, else python3.
 */

const { spawn, execFile } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const REPO = path.resolve(__dirname, "..", "..", "..");

function pythonPath() {
  if (process.env.LAYERLIFT_PYTHON) return process.env.LAYERLIFT_PYTHON;
  const venv = path.join(REPO, ".venv", process.platform === "win32" ? "Scripts/python.exe" : "bin/python");
  return fs.existsSync(venv) ? venv : "python3";
}

function runCli(python, env, args, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    execFile(python, ["-m", "layerlift.desktop.cli", ...args], { cwd: REPO, env, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`layerlift ${args.join(" ")} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

async function startBridge({ timeoutMs = 60000 } = {}) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "layerlift-ps-"));
  const python = pythonPath();
  const env = { ...process.env, LAYERLIFT_HOME: home, PYTHONUNBUFFERED: "1" };
  const child = spawn(python, ["-m", "layerlift.desktop.cli", "serve", "--port", "0"], { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the bridge did not start within ${timeoutMs} ms:\n${log}`)), timeoutMs);
    const onData = (chunk) => {
      log += chunk.toString();
      const match = /ws:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${python}: ${err.message}`));
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the bridge exited with ${code} before listening:\n${log}`));
    });
  });
  const token = fs.readFileSync(path.join(home, "config", "token"), "utf8").trim();

  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(home, { recursive: true, force: true });
  }

  async function pairingCode() {
    const out = await runCli(python, env, ["pair"]);
    const match = /Pairing code: (\d{3}) (\d{3})/.exec(out);
    if (!match) throw new Error(`no pairing code in: ${out}`);
    return `${match[1]} ${match[2]}`;
  }

  return { url: `ws://127.0.0.1:${port}`, port, token, home, python, stop, pairingCode, log: () => log };
}

module.exports = { startBridge, pythonPath, REPO };
