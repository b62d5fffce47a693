// What the client hands to handlers, against a scripted WebSocket server (the `ws`
// package): an event delivered twice (a channel the server subscribed the connection to,
// then the client's own subscribe with `since` replaying it) reaches handlers once; events
// of channels the server chose reach `on(type)` handlers.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";

import { TidingsClient } from "../tidings.js";

const event = (channel, id, type = "t") => ({
  type: "event",
  data: { id, channel, type, data: id, timestamp: "2026-12-04T00:00:00.000Z" },
});

test("an event seen twice is handled once; server-chosen channels reach on(type)", async () => {
  const server = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await new Promise((resolve) => server.once("listening", resolve));
  server.on("connection", (socket) => {
    socket.send(JSON.stringify({ type: "connected", connection_id: "c1", client_id: "ann", timestamp: "x" }));
    socket.once("message", () => {
      socket.send(JSON.stringify({ type: "subscribed", channel: "alerts", recovered: false, position: "e-0", id: null }));
      for (const message of [
        event("alerts", "e-1"),
        event("alerts", "e-2"),
        event("alerts", "e-1"), // replayed by a later subscribe with since
        event("alerts", "e-2"),
        event("alerts", "e-3"),
        event("client:ann", "p-1", "pairing_completed"), // the personal channel
        event("broadcast", "b-4", "maintenance"), // an automatic channel
        event("alerts", "other-1"), // another epoch: a new history, not a duplicate
      ]) socket.send(JSON.stringify(message));
    });
  });
  const { port } = server.address();
  const client = new TidingsClient({ url: `http://127.0.0.1:${port}/`, WebSocket, pingInterval: 0 });
  const seen = [];
  const typed = [];
  let done;
  const all = new Promise((resolve) => (done = resolve));
  const check = () => {
    if (seen.length >= 4 && typed.length >= 2) done();
  };
  client.subscribe("alerts", (e) => {
    seen.push(e.id);
    check();
  });
  client.on("pairing_completed", (e) => {
    typed.push(e.channel);
    check();
  });
  client.on("maintenance", (e) => {
    typed.push(e.channel);
    check();
  });
  try {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`only got ${seen} ${typed}`)), 5000);
    });
    await Promise.race([all, late]);
    clearTimeout(timer);
    assert.deepEqual(seen, ["e-1", "e-2", "e-3", "other-1"]);
    assert.deepEqual(typed, ["client:ann", "broadcast"]);
  } finally {
    client.close();
    server.close();
  }
});
