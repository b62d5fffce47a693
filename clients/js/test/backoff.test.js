// The reconnection schedule, with injected timers, randomness and transports: 1 s, x2,
// capped at 30 s, jittered, and `failed` after the last attempt.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { TidingsClient, backoffDelay } from "../tidings.js";

/** A WebSocket that never connects: it closes (1006) right after it is created. */
class UnreachableWebSocket {
  constructor(url) {
    this.url = url;
    queueMicrotask(() => this.onclose?.({ code: 1006, reason: "" }));
  }
  send() {
    throw new Error("not open");
  }
  close() {}
}

/** A WebSocket refused by the hub with `code` after its `error` message. */
function refusingWebSocket(code, reason) {
  return class {
    constructor() {
      queueMicrotask(() => {
        this.onmessage?.({ data: JSON.stringify({ type: "error", code: reason, message: reason, id: null }) });
        this.onclose?.({ code, reason });
      });
    }
    send() {}
    close() {}
  };
}

const unreachableFetch = async () => {
  throw new TypeError("fetch failed");
};

function run(options) {
  const delays = [];
  return new Promise((resolve) => {
    const client = new TidingsClient({
      url: "http://127.0.0.1:9/",
      pingInterval: 0,
      setTimeout: (fn, ms) => {
        delays.push(ms);
        queueMicrotask(fn);
        return delays.length;
      },
      clearTimeout: () => {},
      ...options,
    });
    const statuses = [];
    client.onStatus((s) => {
      statuses.push(s);
      if (s.status === "failed") resolve({ client, delays, statuses });
    });
    client.subscribe("demo");
  });
}

describe("backoff", () => {
  test("backoffDelay: 1 s doubling to 30 s, times a factor in [0.5, 1]", () => {
    const top = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, undefined, () => 0));
    assert.deepEqual(top, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert.equal(backoffDelay(1, undefined, () => 1), 500);
    assert.equal(backoffDelay(6, undefined, () => 0.5), 22500);
    assert.equal(backoffDelay(3, { initialDelay: 100, factor: 3, maxDelay: 500, jitter: 0 }), 500);
  });

  for (const [transport, transports] of [
    ["websocket", { WebSocket: UnreachableWebSocket }],
    ["sse", { fetch: unreachableFetch }],
  ]) {
    test(`${transport}: 10 attempts on the default schedule, then failed`, async () => {
      const { client, delays, statuses } = await run({ transport, random: () => 0, ...transports });
      assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]);
      const kinds = statuses.map((s) => s.status);
      assert.deepEqual(kinds, ["connecting", ...Array(10).fill("reconnecting"), "failed"]);
      assert.deepEqual(statuses.filter((s) => s.status === "reconnecting").map((s) => s.attempt), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.match(statuses.at(-1).reason, /gave up after 10 attempts/);
      assert.equal(client.status, "failed");
      client.close();
      assert.equal(client.status, "closed");
    });

    test(`${transport}: a configured schedule and full jitter`, async () => {
      const { delays } = await run({
        transport,
        random: () => 1,
        reconnect: { initialDelay: 200, factor: 3, maxDelay: 2000, maxAttempts: 4, jitter: 0.5 },
        ...transports,
      });
      assert.deepEqual(delays, [100, 300, 900, 1000]);
    });
  }

  for (const [code, reason] of [
    [4001, "unauthorized"],
    [4003, "forbidden"],
    [4008, "invalid_channel"],
  ]) {
    test(`websocket: close ${code} is final (no reconnect)`, async () => {
      const { delays, statuses } = await run({ transport: "websocket", WebSocket: refusingWebSocket(code, reason) });
      assert.deepEqual(delays, []);
      assert.equal(statuses.at(-1).code, code);
      assert.equal(statuses.at(-1).reason, reason);
    });
  }

  test("websocket: a connection closed right after it opened backs off, then fails", { timeout: 5000 }, async () => {
    // Connected, then closed at once (an expired token, say): not a working connection,
    // so the schedule goes on instead of starting over each time.
    class ClosedAtOnce {
      constructor() {
        queueMicrotask(() => {
          this.onopen?.();
          this.onmessage?.({ data: JSON.stringify({ type: "connected", connection_id: "c", client_id: null }) });
          this.onmessage?.({ data: JSON.stringify({ type: "disconnect", reason: "token_expired", code: 4000, reconnect: true }) });
          this.onclose?.({ code: 4000, reason: "token_expired" });
        });
      }
      send() {}
      close() {}
    }
    const { delays, statuses } = await run({ WebSocket: ClosedAtOnce, random: () => 0, now: () => 0 });
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]);
    assert.match(statuses.at(-1).reason, /gave up after 10 attempts/);
  });

  test("websocket: a connection that stayed up starts the schedule over", { timeout: 5000 }, async () => {
    let clock = 0;
    let opened = 0;
    class StaysUp {
      constructor() {
        opened += 1;
        queueMicrotask(() => {
          this.onopen?.();
          this.onmessage?.({ data: JSON.stringify({ type: "connected", connection_id: "c", client_id: null }) });
          clock += 60000; // a minute later the network drops it
          this.onclose?.({ code: 1006, reason: "" });
        });
      }
      send() {}
      close() {}
    }
    const delays = [];
    const client = new TidingsClient({
      url: "http://127.0.0.1:9/",
      pingInterval: 0,
      WebSocket: StaysUp,
      random: () => 0,
      now: () => clock,
      setTimeout: (fn, ms) => {
        delays.push(ms);
        if (delays.length < 4) queueMicrotask(fn);
        return delays.length;
      },
      clearTimeout: () => {},
    });
    client.subscribe("demo");
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.close();
    assert.deepEqual(delays, [1000, 1000, 1000, 1000]);
    assert.equal(opened, 4);
  });

  test("websocket: 4029 (rate limited) is retried", async () => {
    const { delays } = await run({
      transport: "websocket",
      random: () => 0,
      reconnect: { maxAttempts: 2 },
      WebSocket: refusingWebSocket(4029, "rate_limited"),
    });
    assert.deepEqual(delays, [1000, 2000]);
  });

  test("sse: HTTP 401 is final, 503 honours Retry-After", async () => {
    const response = (status, retryAfter) => async () =>
      new Response(JSON.stringify({ error: { code: status === 401 ? "unauthorized" : "unavailable", message: "x" } }), {
        status,
        headers: { "content-type": "application/json", ...(retryAfter ? { "retry-after": String(retryAfter) } : {}) },
      });
    const final = await run({ transport: "sse", fetch: response(401) });
    assert.deepEqual(final.delays, []);
    assert.equal(final.statuses.at(-1).reason, "unauthorized");
    const later = await run({ transport: "sse", random: () => 0, reconnect: { maxAttempts: 2 }, fetch: response(503, 5) });
    assert.deepEqual(later.delays, [5000, 5000]);
  });
});
