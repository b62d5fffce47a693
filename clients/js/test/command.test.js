// client.command against a real hub with in-process handlers (test/command_hub.py), over
// both transports: a result, the hub's errors, a client-side timeout, and what happens to
// a command still waiting when the client closes.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { TidingsClient, TidingsError } from "../tidings.js";
import { nextStatus, startHub } from "./hub.js";

const SCRIPT = fileURLToPath(new URL("./command_hub.py", import.meta.url));

let hub;
before(async () => {
  hub = await startHub({ command: [SCRIPT] });
});
after(async () => {
  await hub?.stop();
});

/** A client connected over `transport` (SSE needs a channel to open its stream). */
async function connected(transport) {
  const client = new TidingsClient({ url: hub.url, transport, WebSocket, pingInterval: 0 });
  const ready = nextStatus(client, "connected");
  client.subscribe(`commands-${transport}`);
  await ready;
  return client;
}

async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("the command should have been rejected");
}

for (const transport of ["websocket", "sse"]) {
  describe(`command over ${transport}`, () => {
    test("resolves to the handler's result", async () => {
      const client = await connected(transport);
      try {
        assert.ok(client.connectionId);
        assert.deepEqual(await client.command("math.add", { a: 2, b: 3 }), { sum: 5, client_id: null });
      } finally {
        client.close();
      }
    });

    test("rejects with the hub's code and message", async () => {
      const client = await connected(transport);
      try {
        const busy = await rejection(client.command("job.refuse"));
        assert.ok(busy instanceof TidingsError);
        assert.equal(busy.code, "job_busy");
        assert.equal(busy.message, "the job is running");
        const unknown = await rejection(client.command("no.such.command", {}));
        assert.equal(unknown.code, "unknown_command");
        if (transport === "sse") assert.equal(unknown.status, 404);
        // The connection is still usable.
        assert.equal((await client.command("math.add", { a: 1, b: 1 })).sum, 2);
      } finally {
        client.close();
      }
    });

    test("rejects with `timeout` when no answer comes in time", async () => {
      const client = await connected(transport);
      try {
        const started = Date.now();
        const late = await rejection(client.command("job.slow", { seconds: 3 }, { timeout: 150 }));
        assert.equal(late.code, "timeout");
        assert.match(late.message, /job\.slow.*150 ms/);
        assert.ok(Date.now() - started < 2500, "rejected before the handler answered");
        assert.equal((await client.command("math.add", { a: 1, b: 2 }, { timeout: 5000 })).sum, 3);
      } finally {
        client.close();
      }
    });

    test("a command still waiting rejects with `closed` when the client closes", async () => {
      const client = await connected(transport);
      const waiting = client.command("job.slow", { seconds: 3 });
      client.close();
      const error = await rejection(waiting);
      assert.equal(error.code, "closed");
      assert.equal((await rejection(client.command("math.add", { a: 1, b: 1 }))).code, "closed");
    });
  });
}

test("a client that never connected sends commands over HTTP", async () => {
  const client = new TidingsClient({ url: hub.url, WebSocket, pingInterval: 0 });
  try {
    assert.equal((await client.command("math.add", { a: 20, b: 22 })).sum, 42);
    assert.equal(client.status, "idle");
  } finally {
    client.close();
  }
});

describe("commands forwarded to the application's command URL", () => {
  let withApp;
  before(async () => {
    withApp = await startHub({ command: [SCRIPT], args: ["with_application=1"] });
  });
  after(async () => {
    await withApp?.stop();
  });

  for (const transport of ["websocket", "sse"]) {
    test(`over ${transport}: its answer, its error, its slowness`, async () => {
      const client = new TidingsClient({ url: withApp.url, transport, WebSocket, pingInterval: 0 });
      const ready = nextStatus(client, "connected");
      client.subscribe(`app-${transport}`);
      await ready;
      try {
        // An in-process handler still wins for its name.
        assert.deepEqual(await client.command("math.add", { a: 1, b: 1 }), { sum: 2, client_id: null });
        assert.deepEqual(await client.command("app.echo", { n: 1 }), { echo: { n: 1 }, via: "url" });
        const failed = await rejection(client.command("app.fail"));
        assert.equal(failed.code, "command_failed");
        assert.equal(failed.message, "boom");
        const slow = await rejection(client.command("app.slow", {}, { timeout: 10000 }));
        assert.equal(slow.code, "command_timeout");
      } finally {
        client.close();
      }
    });
  }
});
