// Resume against a real hub: drop the connection, publish while it is down, reconnect,
// and receive exactly the missed events (no gap, no duplicate), over WebSocket and SSE.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { TidingsClient } from "../tidings.js";
import { nextStatus, startHub, until } from "./hub.js";

let hub;
before(async () => {
  hub = await startHub();
});
after(async () => {
  await hub?.stop();
});

/** Timers the test fires by hand, so the reconnect happens exactly when it says. */
function manualTimers() {
  const pending = new Map();
  let next = 1;
  return {
    pending,
    setTimeout: (fn, ms) => {
      const handle = next++;
      pending.set(handle, { fn, ms });
      return handle;
    },
    clearTimeout: (handle) => pending.delete(handle),
    fireAll() {
      const due = [...pending.values()];
      pending.clear();
      for (const { fn } of due) fn();
    },
  };
}

/** Transports that let the test cut the connection from the client's side. */
function killableTransports() {
  const sockets = [];
  const aborts = [];
  class TrackedWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  const trackedFetch = (url, init = {}) => {
    const controller = new AbortController();
    init.signal?.addEventListener("abort", () => controller.abort());
    aborts.push(controller);
    return fetch(url, { ...init, signal: controller.signal });
  };
  return {
    WebSocket: TrackedWebSocket,
    fetch: trackedFetch,
    kill() {
      sockets.at(-1)?.terminate();
      aborts.at(-1)?.abort();
    },
  };
}

for (const transport of ["websocket", "sse"]) {
  describe(`resume over ${transport}`, () => {
    for (const eventBeforeDrop of [true, false]) {
      test(`exactly the missed events (${eventBeforeDrop ? "after an event" : "before any event"})`, async () => {
        const channel = `resume-${transport}-${eventBeforeDrop}`;
        const timers = manualTimers();
        const transports = killableTransports();
        const client = new TidingsClient({
          url: hub.url,
          transport,
          pingInterval: 0,
          setTimeout: timers.setTimeout,
          clearTimeout: timers.clearTimeout,
          random: () => 0,
          WebSocket: transports.WebSocket,
          fetch: transports.fetch,
        });
        const received = [];
        const statuses = [];
        const resets = [];
        client.onStatus((s) => statuses.push(s.status));
        client.onReset((r) => resets.push(r));
        try {
          const connected = nextStatus(client, "connected");
          client.subscribe(channel, (event) => received.push(event.data.n));
          await connected;
          // The subscription is in place once the client holds a position for it.
          await until(() => client.positions.has(channel), 5000, "a position");
          if (eventBeforeDrop) {
            await hub.publish(channel, { n: 1 });
            await until(() => received.length === 1, 5000, "event 1");
          }
          const reconnecting = nextStatus(client, "reconnecting");
          transports.kill();
          const status = await reconnecting;
          assert.equal(status.attempt, 1);
          assert.equal(status.delay, 1000);
          for (const n of [2, 3, 4]) await hub.publish(channel, { n });
          const back = nextStatus(client, "connected");
          timers.fireAll();
          await back;
          await until(() => received.length >= (eventBeforeDrop ? 4 : 3), 5000, "the missed events");
          await hub.publish(channel, { n: 5 });
          await until(() => received.at(-1) === 5, 5000, "event 5");
          assert.deepEqual(received, eventBeforeDrop ? [1, 2, 3, 4, 5] : [2, 3, 4, 5]);
          assert.deepEqual(resets, []);
          assert.deepEqual(statuses, ["connecting", "connected", "reconnecting", "connected"]);
        } finally {
          client.close();
        }
        assert.equal(client.status, "closed");
      });
    }

    test("a reset is surfaced when history no longer reaches back", async () => {
      const channel = `gone-${transport}`;
      const client = new TidingsClient({ url: hub.url, transport, pingInterval: 0, WebSocket });
      const resets = [];
      client.onReset((r) => resets.push(r));
      try {
        client.subscribe(channel, () => {}, { since: "000000-1" });
        await until(() => resets.length === 1, 5000, "a reset");
        assert.equal(resets[0].channel, channel);
        assert.equal(resets[0].reason, "history_gap");
        assert.equal(client.positions.get(channel), resets[0].position);
      } finally {
        client.close();
      }
    });
  });
}
