// Node's `eventsource` (the most used SSE client outside browsers) against a real hub:
// it applies an `id:` only with a frame that carries data, so the hub's position frame
// must carry data for a stream that saw no event yet to resume exactly. The hub is
// restarted on its SQLite store while the client is away; the events published then
// arrive once each when it reconnects.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { EventSource } from "eventsource";

import { freePort, startHub, until } from "./hub.js";

test("npm eventsource resumes exactly across a hub restart, before any event", async () => {
  const scratch = await mkdtemp(join(tmpdir(), "tidings-es-"));
  const port = await freePort();
  const args = ["--store", `sqlite:///${join(scratch, "events.db")}`];
  process.env.TIDINGS_SSE_RETRY = "200"; // reconnect soon (the hub's `retry:` hint)
  let hub = await startHub({ port, args });
  // Reconnects wait at this gate, so that the test decides when the client comes back.
  let open = true;
  let release;
  const gate = () => (open ? Promise.resolve() : new Promise((resolve) => (release = resolve)));
  const sent = [];
  const source = new EventSource(`${hub.url}api/v1/events?channel=quiet`, {
    fetch: async (url, init) => {
      await gate();
      sent.push(new Headers(init.headers).get("last-event-id"));
      return fetch(url, init);
    },
  });
  const received = [];
  const positions = [];
  source.onmessage = (message) => received.push(JSON.parse(message.data));
  source.addEventListener("position", (message) => positions.push(message.lastEventId));
  try {
    await until(() => positions.length === 1, 5000, "the position frame");
    assert.deepEqual(received, [], "a position frame is not a message");

    open = false;
    await hub.stop(); // SIGTERM: the stream gets `disconnect`, then ends
    hub = await startHub({ port, args });
    const missed = [];
    for (let n = 1; n <= 3; n++) missed.push(await hub.publish("quiet", { n }));
    await until(() => release !== undefined, 5000, "the client's reconnect");
    open = true;
    release();

    await until(() => received.length === 3, 5000, "the missed events");
    const marker = await hub.publish("quiet", { n: "live" });
    await until(() => received.length === 4, 5000, "the live event");
    assert.deepEqual(received, [...missed, marker], "each missed event once, in order");
    assert.equal(sent.at(-1), positions[0], "it resumed from the position frame's id");
  } finally {
    source.close();
    await hub.stop();
    await rm(scratch, { recursive: true, force: true });
  }
});
