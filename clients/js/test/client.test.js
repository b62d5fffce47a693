// The client's API against a real hub: handlers, wildcard, unsubscribe, publish, close.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { TidingsClient, createClient } from "../tidings.js";
import { nextStatus, startHub, until } from "./hub.js";

let hub;
before(async () => {
  hub = await startHub();
});
after(async () => {
  await hub?.stop();
});

test("clients/js/tidings.js is the file the hub serves", async () => {
  const packaged = readFileSync(new URL("../tidings.js", import.meta.url), "utf8");
  const source = readFileSync(new URL("../../../src/tidings/static/tidings.js", import.meta.url), "utf8");
  assert.equal(packaged, source, "run `npm run sync` in clients/js");
  const served = await (await fetch(`${hub.url}static/tidings.js`)).text();
  assert.equal(served, source);
});

for (const transport of ["websocket", "sse"]) {
  describe(`client over ${transport}`, () => {
    test("per-channel handlers, per-type and wildcard handlers, unsubscribe", async () => {
      const client = createClient({ url: hub.url, transport, WebSocket, pingInterval: 0 });
      const onA = [];
      const onB = [];
      const byType = [];
      const all = [];
      try {
        client.on("alert", (e) => byType.push(e.data));
        client.on("*", (e) => all.push(`${e.channel}:${e.data}`));
        const connected = nextStatus(client, "connected");
        const stopA = client.subscribe(`${transport}-a`, (e) => onA.push(e.data));
        client.subscribe(`${transport}-b`, (e) => onB.push(e.data), { types: ["alert"] });
        await connected;
        await until(() => client.positions.size === 2, 5000, "both subscriptions");
        await hub.publish(`${transport}-a`, 1);
        await hub.publish(`${transport}-b`, 2, "alert");
        await hub.publish(`${transport}-b`, 3, "other");
        await hub.publish(`${transport}-a`, 4, "alert");
        await until(() => all.length === 4 || onA.length === 2, 5000, "four events");
        await until(() => onA.length === 2 && onB.length === 1, 5000, "the handlers");
        assert.deepEqual(onA, [1, 4]);
        assert.deepEqual(onB, [2]);
        assert.deepEqual(byType.sort(), [2, 4]);
        stopA();
        // The hub no longer sends channel a to this connection.
        await until(async () => {
          const connections = await hub.connections();
          return connections.every((c) => !c.channels.includes(`${transport}-a`));
        }, 5000, "the unsubscribe");
        await hub.publish(`${transport}-a`, 5);
        await hub.publish(`${transport}-b`, 6, "alert");
        await until(() => onB.length === 2, 5000, "event 6");
        assert.deepEqual(onA, [1, 4]);
        assert.ok(!all.includes(`${transport}-a:5`));
      } finally {
        client.close();
      }
    });

    test("publish resolves to the stored event", async () => {
      const client = new TidingsClient({ url: hub.url, transport, WebSocket, pingInterval: 0 });
      const seen = [];
      try {
        const connected = nextStatus(client, "connected");
        client.subscribe(`${transport}-pub`, (e) => seen.push(e));
        await connected;
        await until(() => client.positions.size === 1, 5000, "the subscription");
        const event = await client.publish(`${transport}-pub`, { hello: "world" }, { type: "greeting" });
        assert.equal(event.channel, `${transport}-pub`);
        assert.equal(event.type, "greeting");
        assert.deepEqual(event.data, { hello: "world" });
        await until(() => seen.length === 1, 5000, "the event");
        assert.equal(seen[0].id, event.id);
        await assert.rejects(client.publish("bad name", 1), { code: "invalid_channel" });
      } finally {
        client.close();
      }
    });

    if (transport === "sse") {
      test("a refused stream fails at once, with the reason", async () => {
        const client = new TidingsClient({ url: hub.url, transport, pingInterval: 0 });
        const statuses = [];
        client.onStatus((s) => statuses.push(s));
        const failed = nextStatus(client, "failed");
        client.subscribe("bad name");
        const status = await failed;
        assert.equal(status.reason, "invalid_channel");
        assert.equal(status.code, 400);
        assert.equal(client.error, "invalid_channel");
        assert.deepEqual(statuses.map((s) => s.status), ["connecting", "failed"]);
        client.close();
      });
    } else {
      test("a refused subscription is reported with its channel; the socket stays open", async () => {
        const client = new TidingsClient({ url: hub.url, transport, WebSocket, pingInterval: 0 });
        const errors = [];
        client.onError((e) => errors.push(e));
        try {
          const connected = nextStatus(client, "connected");
          client.subscribe("bad name");
          await connected;
          await until(() => errors.length === 1, 5000, "the error");
          assert.equal(errors[0].code, "invalid_channel");
          assert.equal(errors[0].channel, "bad name");
          assert.equal(client.status, "connected");
        } finally {
          client.close();
        }
      });

      test("a refused socket (bad token) fails at once, with the close reason", async () => {
        const secured = await startHub({ args: ["--api-key", "ops=s3cret"] });
        const client = new TidingsClient({ url: secured.url, transport, WebSocket, pingInterval: 0, token: "wrong" });
        try {
          const failed = nextStatus(client, "failed");
          client.subscribe("demo");
          const status = await failed;
          assert.equal(status.code, 4001);
          assert.ok(status.reason);
          const ok = new TidingsClient({ url: secured.url, transport, WebSocket, pingInterval: 0, token: "s3cret" });
          const connected = nextStatus(ok, "connected");
          ok.subscribe("demo");
          await connected;
          ok.close();
        } finally {
          client.close();
          await secured.stop();
        }
      });
    }

    test("close() leaves no connection on the hub", async () => {
      const client = new TidingsClient({ url: hub.url, transport, WebSocket, pingInterval: 0 });
      const connected = nextStatus(client, "connected");
      client.subscribe(`${transport}-close`);
      await connected;
      const id = client.connectionId;
      assert.ok(id);
      await until(async () => (await hub.connections()).some((c) => c.id === id), 5000, "the connection");
      client.close();
      await until(async () => !(await hub.connections()).some((c) => c.id === id), 5000, "no connection");
      assert.throws(() => client.subscribe("x"), { code: "closed" });
    });
  });
}
