// A token function against a real hub: tokens that expire every few seconds are replaced
// before they do (in-band over WebSocket, by a resuming reopen over SSE), and a numbered
// sequence published across several expiries arrives with no gap and no duplicate.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { TidingsClient, refreshDelay, tokenExpiry } from "../tidings.js";
import { startHub, until } from "./hub.js";

const SECRET = "js-test-secret-that-is-long-enough-for-hs256";
const API_KEY = "js-test-publisher-key-0123456789";

function base64url(value) {
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
}

/** An HS256 token for `sub` that expires in `ttl` seconds. */
function mint(sub, ttl, claims = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = `${base64url({ alg: "HS256", typ: "JWT" })}.${base64url({ sub, iat: now, exp: now + ttl, ...claims })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

describe("token helpers", () => {
  test("tokenExpiry reads exp from the payload, or gives null", () => {
    const token = mint("ann", 60);
    const exp = JSON.parse(Buffer.from(token.split(".")[1], "base64url")).exp;
    assert.equal(tokenExpiry(token), exp * 1000);
    assert.equal(tokenExpiry("an-api-key"), null);
    assert.equal(tokenExpiry("a.!!!.c"), null);
    assert.equal(tokenExpiry(`x.${base64url({ sub: "no-exp" })}.y`), null);
  });

  test("refreshDelay: 30 s or a tenth of the time left before exp, at least 1 s before", () => {
    assert.equal(refreshDelay(3_600_000, 0), 3_570_000);
    assert.equal(refreshDelay(100_000, 0), 90_000);
    assert.equal(refreshDelay(3_000, 0), 2_000);
    assert.equal(refreshDelay(1_500, 0), 1_000); // never sooner than the floor: no hot loop
    assert.equal(refreshDelay(0, 10_000), 1_000);
  });
});

describe("a token function against a hub", () => {
  let hub;
  before(async () => {
    hub = await startHub({ args: ["--jwt-secret", SECRET, "--jwt-leeway", "0", "--api-key", `pub=${API_KEY}`] });
  });
  after(async () => {
    await hub?.stop();
  });

  async function publish(n) {
    const response = await fetch(`${hub.url}api/v1/publish`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ channel: "tick", type: "tick", data: { n } }),
    });
    assert.equal(response.status, 201, await response.text());
  }

  function follow(transport) {
    const state = { calls: 0, received: [], statuses: [], errors: [] };
    state.client = new TidingsClient({
      url: hub.url,
      transport,
      WebSocket,
      reconnect: { initialDelay: 100, maxDelay: 500 },
      token: async () => {
        state.calls += 1;
        return mint(`${transport}-reader`, 3, { channels: ["tick"] });
      },
    });
    state.client.onStatus((change) => state.statuses.push(change.status));
    state.client.onError((error) => state.errors.push(error));
    state.client.subscribe("tick", (event) => state.received.push(event.data.n));
    return state;
  }

  test("WebSocket and SSE receive every event once across several expiries", { timeout: 20000 }, async () => {
    const readers = [follow("websocket"), follow("sse")];
    try {
      await until(() => readers.every((r) => r.client.status === "connected"), 5000, "both connected");
      const count = 70;
      for (let n = 1; n <= count; n += 1) {
        await publish(n);
        await new Promise((resolve) => setTimeout(resolve, 100)); // spread over ~3 lifetimes
      }
      await until(() => readers.every((r) => r.received.length >= count), 5000, "every event");
      const expected = Array.from({ length: count }, (_, i) => i + 1);
      for (const reader of readers) {
        const name = reader.client.transport;
        assert.deepEqual(reader.received, expected, `${name}: no gap, no duplicate`);
        assert.ok(reader.calls >= 3, `${name}: the token function was called ${reader.calls} times`);
        // Every new token came before the old one expired: the hub never closed the stream.
        assert.ok(!reader.statuses.includes("reconnecting"), `${name}: ${reader.statuses.join(" ")}`);
        assert.deepEqual(reader.errors, []);
      }
    } finally {
      for (const reader of readers) reader.client.close();
    }
  });

  test("a failing token function is reported and retried with backoff", { timeout: 10000 }, async () => {
    let calls = 0;
    const errors = [];
    const client = new TidingsClient({
      url: hub.url,
      WebSocket,
      reconnect: { initialDelay: 50, maxDelay: 200, jitter: 0 },
      token: () => {
        calls += 1;
        if (calls <= 2) throw new Error("the login service is down");
        return mint("late", 60, { channels: ["tick"] });
      },
    });
    client.onError((error) => errors.push(error));
    const started = Date.now();
    try {
      client.subscribe("tick");
      await until(() => client.status === "connected", 5000, "connected after the failures");
      assert.equal(calls, 3);
      assert.deepEqual(
        errors.map((e) => e.code),
        ["token_unavailable", "token_unavailable"],
      );
      assert.match(errors[0].message, /login service is down/);
      assert.ok(Date.now() - started >= 150, "the retries waited (50 ms, then 100 ms)");
    } finally {
      client.close();
    }
  });
});
