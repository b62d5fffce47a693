// Test helper: a real `tidings serve` in a subprocess, on a free port of 127.0.0.1.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export const PYTHON = process.env.TIDINGS_PYTHON || "python3";

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Start a hub; resolves once /health answers. `hub.stop()` ends it. `command` starts
 * `[python, ...command, port]` instead of `tidings serve` (a script that builds its own hub).
 */
export async function startHub({ port, args = [], command = null } = {}) {
  port = port ?? (await freePort());
  const argv = command
    ? [...command, String(port), ...args]
    : ["-m", "tidings", "serve", "--port", String(port), "--log-level", "warning", ...args];
  const child = spawn(PYTHON, argv, {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 15000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tidings serve exited ${child.exitCode}: ${stderr}`);
    try {
      const response = await fetch(`${url}health`);
      if (response.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`tidings serve did not start: ${stderr}`);
    }
    await sleep(50);
  }
  return {
    port,
    url,
    async publish(channel, data, type = "message") {
      const response = await fetch(`${url}api/v1/publish`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ channel, type, data }),
      });
      if (response.status !== 201) throw new Error(`publish: ${response.status} ${await response.text()}`);
      return response.json();
    },
    async connections() {
      return (await (await fetch(`${url}api/v1/connections`)).json()).connections;
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}

/** Resolves when `predicate()` is true, polling; rejects after `ms`. */
export async function until(predicate, ms = 5000, what = "condition") {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A promise for the next status `wanted` of `client`. */
export function nextStatus(client, wanted) {
  return new Promise((resolve) => {
    const off = client.onStatus((status) => {
      if (status.status === wanted) {
        off();
        resolve(status);
      }
    });
  });
}
