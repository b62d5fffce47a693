// tidings.js: the browser and Node client of a tidings hub. One dependency-free ES module.
//
// This file is the single source of truth: the hub serves it at /static/tidings.js, and
// clients/js/tidings.js (the npm package) is a byte-for-byte copy checked by the Node
// tests (`npm run sync` refreshes it). It must never import anything.
//
// Wire protocols: docs/protocol.md. In short:
//   * WebSocket: one socket, `subscribe` per channel with `since` = the last event id seen
//     on that channel (or the `position` of `subscribed` / `reset`).
//   * Commands: the `command` message over an open socket; otherwise (SSE, or while the
//     socket is not open yet) `POST api/v1/commands` with the same credential.
//   * SSE: read with fetch (not EventSource) so that the client sees every frame's `id:`,
//     can send an Authorization header, and controls its own backoff; resumes with the
//     stream's last cursor as `last_event_id`.
// Both reconnect with exponential backoff (1 s, x2, max 30 s, jitter, 10 attempts).
//
// `token` may be a function (returning a string or a promise of one): it is called on
// every connect and shortly before the current token's `exp`, when a WebSocket sends it
// in-band (`refresh`) and an SSE stream is reopened from its last event id.

const STATUSES = ["connecting", "connected", "reconnecting", "failed", "closed"];

// Close codes after which coming back cannot help (docs/protocol.md, "Close codes").
const FINAL_CLOSE_CODES = new Set([1009, 4001, 4003, 4004, 4008, 4009]);
// HTTP statuses of a refused SSE stream that are worth retrying.
const RETRY_HTTP_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

export const DEFAULT_RECONNECT = Object.freeze({
  initialDelay: 1000,
  factor: 2,
  maxDelay: 30000,
  maxAttempts: 10,
  jitter: 0.5,
  // A connection counts as a success (the schedule starts over) only once it has stayed
  // up this long: one closed right after it opened (an expired token, a full hub) backs
  // off as a failed connect does, instead of looping.
  stableAfter: 5000,
});

/**
 * The delay before reconnection attempt `attempt` (1-based): initialDelay * factor^(attempt-1),
 * capped at maxDelay, multiplied by a random factor in [1 - jitter, 1].
 */
export function backoffDelay(attempt, reconnect = DEFAULT_RECONNECT, random = Math.random) {
  const options = { ...DEFAULT_RECONNECT, ...reconnect };
  const base = Math.min(options.maxDelay, options.initialDelay * options.factor ** (attempt - 1));
  return Math.round(base * (1 - options.jitter * random()));
}

/**
 * A JWT's `exp` in ms, read from its payload (base64url JSON), or null when the token is
 * no JWT or has no numeric `exp` (then no refresh is planned).
 */
export function tokenExpiry(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const exp = JSON.parse(new TextDecoder().decode(bytes)).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * When to fetch the next token, in ms from `now`: `lead` (default 30 s) before `expiresAt`,
 * but never more than a tenth of the time left and never less than 1 s before it; at
 * least `floor` ms from now, so that a token that is already due cannot loop.
 */
export function refreshDelay(expiresAt, now, lead = 30000, floor = 1000) {
  const left = expiresAt - now;
  const before = Math.max(Math.min(lead, left / 10), 1000);
  return Math.max(left - before, floor);
}

/**
 * Whether event id (a position, `<epoch>-<offset>`) `id` is at or before `known` in the
 * same history: an event the client already has. Different epochs compare as new.
 */
function notAfter(id, known) {
  if (!known || typeof id !== "string") return false;
  const a = id.lastIndexOf("-");
  const b = known.lastIndexOf("-");
  if (a < 0 || b < 0 || id.slice(0, a) !== known.slice(0, b)) return false;
  const offset = Number(id.slice(a + 1));
  const knownOffset = Number(known.slice(b + 1));
  return Number.isFinite(offset) && Number.isFinite(knownOffset) && offset <= knownOffset;
}

/** Per-channel positions held by an SSE cursor (`pos` or `ch;pos,ch;pos`). */
export function parseCursor(cursor, channels) {
  const positions = new Map();
  if (!cursor) return positions;
  if (!cursor.includes(";")) {
    if (channels.length === 1) positions.set(channels[0], cursor.trim());
    return positions;
  }
  for (const part of cursor.split(",")) {
    const index = part.indexOf(";");
    if (index > 0) positions.set(part.slice(0, index).trim(), part.slice(index + 1));
  }
  return positions;
}

export class TidingsError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = "TidingsError";
    this.code = code;
    Object.assign(this, details);
  }
}

function defaultBaseUrl() {
  // Served by the hub at <base>/static/tidings.js: the hub is two levels up. Works when
  // the hub is mounted under a prefix too.
  try {
    if (typeof location !== "undefined") return new URL("../", import.meta.url).href;
  } catch {
    /* not in a browser */
  }
  return undefined;
}

export class TidingsClient {
  /**
   * @param {object} options see tidings.d.ts (`TidingsOptions`).
   */
  constructor(options = {}) {
    const base = options.url ?? defaultBaseUrl();
    if (!base) throw new TypeError("tidings: `url` (the hub's base URL) is required outside a browser");
    this.url = new URL(base.endsWith("/") ? base : `${base}/`).href;
    this.transport = options.transport ?? "websocket";
    if (this.transport !== "websocket" && this.transport !== "sse") {
      throw new TypeError(`tidings: unknown transport ${JSON.stringify(this.transport)}`);
    }
    // A string (or null) is the token; a function is asked for one on every connect.
    this._tokenSource = options.token ?? null;
    this.token = typeof this._tokenSource === "function" ? null : this._tokenSource;
    this.tokenRefreshLead = options.tokenRefreshLead ?? 30000;
    this._refreshTimer = null;
    this._refreshAttempt = 0;
    this.reconnect = { ...DEFAULT_RECONNECT, ...(options.reconnect ?? {}) };
    this.pingInterval = options.pingInterval ?? 25000;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this._setTimeout = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((handle) => clearTimeout(handle));
    this._random = options.random ?? Math.random;
    this._now = options.now ?? Date.now;
    this._connectedAt = null;
    this.status = "idle";
    this.error = null;
    this.connectionId = null;
    this._subscriptions = new Map(); // channel -> Set<{handler, types}>
    this._positions = new Map(); // channel -> last position seen
    this._handlers = new Map(); // event type or "*" -> Set<handler>
    this._listeners = { status: new Set(), reset: new Set(), error: new Set() };
    this._attempt = 0;
    this._timer = null;
    this._pingTimer = null;
    this._conn = null; // the live transport: {kind, close(), ...}
    this._closed = false;
    this._requestId = 0;
    this._pending = new Map(); // request id -> {resolve, reject}
    this._httpCommands = new Set(); // AbortControllers of commands sent over HTTP
    this._sseCursor = null; // raw cursor of the last SSE stream
    this._sseCursorKey = null; // the channel set it belongs to
    this._connectScheduled = false;
    for (const channel of options.channels ?? []) this.subscribe(channel);
  }

  // ---- public API -----------------------------------------------------------------

  /** Follow `channel`; returns a function that stops this subscription. */
  subscribe(channel, handler, options = {}) {
    if (typeof channel !== "string" || !channel) throw new TypeError("tidings: channel must be a non-empty string");
    if (this._closed) throw new TidingsError("closed", "tidings: the client is closed");
    const entry = { handler: handler ?? null, types: options.types ?? null };
    if (options.since && !this._positions.has(channel)) this._positions.set(channel, options.since);
    let set = this._subscriptions.get(channel);
    const isNew = !set;
    if (isNew) {
      set = new Set();
      this._subscriptions.set(channel, set);
    }
    set.add(entry);
    this._channelsChanged(channel, isNew ? "added" : "changed");
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      set.delete(entry);
      if (set.size === 0 && this._subscriptions.get(channel) === set) {
        this._subscriptions.delete(channel);
        this._positions.delete(channel);
        this._channelsChanged(channel, "removed");
      } else {
        this._channelsChanged(channel, "changed");
      }
    };
  }

  /** Call `handler(event)` for events of `type` on any subscribed channel ("*" = all). */
  on(type, handler) {
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Status changes: `handler({status, reason, code, attempt, delay})`. */
  onStatus(handler) {
    return this._listen("status", handler);
  }

  /** `reset` frames: history no longer reaches back for `channel`; refetch its state. */
  onReset(handler) {
    return this._listen("reset", handler);
  }

  /** Errors the hub reports that belong to no request (and handler exceptions). */
  onError(handler) {
    return this._listen("error", handler);
  }

  /** The channels followed, with the last position seen on each. */
  get positions() {
    return new Map(this._positions);
  }

  /** Start connecting (subscribing does this by itself). */
  connect() {
    if (this._closed) throw new TidingsError("closed", "tidings: the client is closed");
    if (!this._conn && !this._timer) this._open();
    return this;
  }

  /** Publish an event; resolves to the stored event. Over the socket when one is open. */
  async publish(channel, data, options = {}) {
    const type = options.type ?? "message";
    if (this._conn?.kind === "websocket" && this._conn.ready) {
      const reply = await this._request({ type: "publish", channel, event: type, data });
      return reply.event;
    }
    const body = { channel, type, data };
    if (options.idempotencyKey) body.idempotency_key = options.idempotencyKey;
    return this._api("api/v1/publish", { method: "POST", body });
  }

  /**
   * Run the application's command `name`; resolves to its result. Rejects with a
   * TidingsError whose `code` is the hub's (`forbidden`, `unknown_command`,
   * `command_failed`, …), `timeout` after `options.timeout` ms, or `disconnected` /
   * `closed` when the connection it was sent over ends first.
   */
  command(name, args = {}, options = {}) {
    if (typeof name !== "string" || !name) return Promise.reject(new TypeError("tidings: a command needs a name"));
    if (this._closed) return Promise.reject(new TidingsError("closed", "tidings: the client is closed"));
    const conn = this._conn;
    let cancel;
    let answer;
    if (conn?.kind === "websocket" && conn.ready) {
      const [id, reply] = this._send({ type: "command", name, args: args ?? {} }, conn);
      answer = reply.then((message) => message.data);
      cancel = () => this._pending.delete(id);
    } else {
      const controller = new AbortController();
      answer = this._httpCommand(name, args ?? {}, controller);
      cancel = () => controller.abort(new TidingsError("timeout", "tidings: the command timed out"));
    }
    const timeout = options.timeout;
    if (!timeout) return answer;
    return new Promise((resolve, reject) => {
      const timer = this._setTimeout(() => {
        cancel();
        reject(new TidingsError("timeout", `tidings: no answer to command ${JSON.stringify(name)} within ${timeout} ms`));
      }, timeout);
      answer.then(
        (result) => {
          this._clearTimeout(timer);
          resolve(result);
        },
        (error) => {
          this._clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  /** Stop for good: close the connection, cancel timers, reject pending requests. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._cancelTimer();
    this._stopPing();
    this._cancelRefresh();
    const conn = this._conn;
    this._conn = null;
    if (conn) conn.close();
    this._failPending(new TidingsError("closed", "tidings: the client was closed"));
    for (const controller of this._httpCommands) controller.abort(new TidingsError("closed", "tidings: the client was closed"));
    this._httpCommands.clear();
    this._setStatus("closed", { reason: "client" });
  }

  // ---- internals: status, dispatch ------------------------------------------------

  _listen(kind, handler) {
    this._listeners[kind].add(handler);
    return () => this._listeners[kind].delete(handler);
  }

  _emit(kind, value) {
    for (const handler of [...this._listeners[kind]]) {
      try {
        handler(value);
      } catch (error) {
        if (kind !== "error") this._emit("error", error);
        else console.error(error);
      }
    }
  }

  _setStatus(status, details = {}) {
    if (!STATUSES.includes(status)) throw new Error(`tidings: bad status ${status}`);
    this.status = status;
    if (status === "failed") this.error = details.reason ?? "failed";
    else if (status === "connected") this.error = null;
    this._emit("status", { status, ...details });
  }

  _dispatch(event) {
    const channel = event.channel;
    // At or before where this channel stands: already delivered (a channel the server
    // subscribed this connection to, then subscribed again with `since`): dropped.
    if (notAfter(event.id, this._positions.get(channel))) return;
    this._positions.set(channel, event.id);
    const call = (handler) => {
      try {
        handler(event);
      } catch (error) {
        this._emit("error", error);
      }
    };
    // Channels the server chose (the personal channel, automatic channels, server-side
    // subscriptions) have no entries here: their events reach the `on(type)` handlers.
    for (const entry of [...(this._subscriptions.get(channel) ?? [])]) {
      if (entry.handler && (!entry.types || entry.types.includes("*") || entry.types.includes(event.type))) {
        call(entry.handler);
      }
    }
    for (const handler of [...(this._handlers.get(event.type) ?? [])]) call(handler);
    for (const handler of [...(this._handlers.get("*") ?? [])]) call(handler);
  }

  _reset(message) {
    const known = this._positions.has(message.channel);
    if (message.position) this._positions.set(message.channel, message.position);
    // A channel we never had a position for gets a reset when the SSE stream is reopened
    // with another channel set; there is nothing to refetch, so it is not surfaced.
    if (known || message.reason === "dropped") {
      this._emit("reset", { channel: message.channel, reason: message.reason, position: message.position });
    }
  }

  _serverTypes(channel) {
    const entries = [...(this._subscriptions.get(channel) ?? [])];
    if (!entries.length || entries.some((e) => !e.types || e.types.includes("*"))) return null;
    return [...new Set(entries.flatMap((e) => e.types))];
  }

  _channelsChanged(channel, change) {
    if (this._closed) return;
    const conn = this._conn;
    if (conn?.kind === "websocket" && conn.ready) {
      if (change === "removed") conn.send({ type: "unsubscribe", channel });
      else this._sendSubscribe(conn, channel);
      return;
    }
    if (conn?.kind === "sse") {
      if (change === "changed" && conn.typesKey === this._sseTypesKey()) return;
      // An SSE stream's channels are fixed: reopen it (after the current call stack, so
      // that several subscribe() calls in a row reopen it once), resuming every channel.
      this._scheduleReopen();
      return;
    }
    if (!conn && !this._timer && this._subscriptions.size) this._scheduleReopen();
  }

  _scheduleReopen() {
    if (this._connectScheduled) return;
    this._connectScheduled = true;
    queueMicrotask(() => {
      this._connectScheduled = false;
      if (this._closed || this._timer) return;
      const conn = this._conn;
      if (conn?.kind === "websocket") return; // subscriptions go over the open socket
      if (conn) {
        this._conn = null;
        conn.close();
      }
      if (this._subscriptions.size || this.transport === "websocket") this._open();
    });
  }

  // ---- internals: connection lifecycle ---------------------------------------------

  _open() {
    if (this._closed) return;
    if (this.transport === "sse" && this._subscriptions.size === 0) return; // nothing to stream
    if (this._attempt === 0) this._setStatus("connecting");
    if (typeof this._tokenSource !== "function") {
      this._openTransport();
      return;
    }
    // Until the token arrives, this placeholder is the connection: nothing else opens one,
    // and close() or a reopen makes the late token go unused.
    const pending = {
      kind: "token",
      closed: false,
      close: () => {
        pending.closed = true;
      },
    };
    this._conn = pending;
    this._obtainToken().then(
      (token) => {
        if (pending.closed || this._conn !== pending || this._closed) return;
        this.token = token;
        this._conn = null;
        this._openTransport();
      },
      (error) => {
        if (pending.closed || this._conn !== pending) return;
        this._emit("error", error);
        this._lost(pending, { reason: "token_unavailable", reconnect: true });
      },
    );
  }

  _openTransport() {
    try {
      this._conn = this.transport === "websocket" ? this._openWebSocket() : this._openSse();
    } catch (error) {
      this._conn = null;
      this._lost(null, { reason: error.message ?? String(error), reconnect: true });
    }
  }

  /** A token from the `token` function; rejects with a TidingsError if there is none. */
  async _obtainToken() {
    let token;
    try {
      token = await this._tokenSource();
    } catch (error) {
      throw new TidingsError("token_unavailable", `tidings: the token function failed: ${error?.message ?? error}`, { cause: error });
    }
    if (typeof token !== "string" || !token) {
      throw new TidingsError("token_unavailable", "tidings: the token function returned no token");
    }
    return token;
  }

  // ---- internals: planned token refresh --------------------------------------------

  /** Plan the next token for the live connection `conn`, from the current token's `exp`. */
  _planRefresh(conn) {
    this._cancelRefresh();
    if (typeof this._tokenSource !== "function") return;
    const expiresAt = tokenExpiry(this.token);
    if (expiresAt === null) return;
    const delay = refreshDelay(expiresAt, this._now(), this.tokenRefreshLead);
    this._refreshTimer = this._setTimeout(() => {
      this._refreshTimer = null;
      if (this._conn === conn) this._refresh(conn);
    }, delay);
  }

  _cancelRefresh() {
    if (this._refreshTimer !== null) this._clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  async _refresh(conn) {
    try {
      const token = await this._obtainToken();
      if (this._conn !== conn || this._closed) return;
      if (conn.kind === "websocket") {
        await this._request({ type: "refresh", token }, conn);
        if (this._conn !== conn) return;
        this.token = token;
        this._refreshAttempt = 0;
        this._planRefresh(conn);
      } else {
        // An SSE stream's credential is fixed: reopen it with the new token, resuming from
        // the last event id, so nothing is missed and nothing comes twice.
        this.token = token;
        this._refreshAttempt = 0;
        this._conn = null;
        conn.close();
        this._openTransport();
      }
    } catch (error) {
      if (this._conn !== conn || this._closed) return;
      if (error?.code !== "disconnected" && error?.code !== "closed") this._emit("error", error);
      // Try again with backoff; if `exp` passes first, the hub closes the connection and
      // the reconnect asks the function again.
      this._refreshAttempt += 1;
      const delay = backoffDelay(this._refreshAttempt, this.reconnect, this._random);
      this._cancelRefresh();
      this._refreshTimer = this._setTimeout(() => {
        this._refreshTimer = null;
        if (this._conn === conn) this._refresh(conn);
      }, delay);
    }
  }

  _connected(connectionId) {
    this.connectionId = connectionId ?? null;
    this._connectedAt = this._now();
    this._refreshAttempt = 0;
    this._planRefresh(this._conn);
    this._setStatus("connected");
  }

  /** The connection ended: decide between reconnecting (with backoff) and failing. */
  _lost(conn, { reason, code, reconnect, retryAfter }) {
    if (conn && this._conn !== conn) return; // an old connection, already replaced
    this._conn = null;
    this._stopPing();
    this._cancelRefresh();
    // With a token function, a refused or expired token is worth another try: the next
    // attempt asks the function for a new one (still with backoff, still bounded).
    if (typeof this._tokenSource === "function" && (code === 4001 || code === 401 || reason === "token_expired")) {
      reconnect = true;
    }
    this._failPending(new TidingsError("disconnected", `tidings: connection lost (${reason})`));
    this.connectionId = null;
    if (this._connectedAt !== null && this._now() - this._connectedAt >= this.reconnect.stableAfter) {
      this._attempt = 0; // it was a working connection: start the schedule over
    }
    this._connectedAt = null;
    if (this._closed) return;
    if (!reconnect) {
      this._setStatus("failed", { reason, code });
      return;
    }
    if (this._attempt >= this.reconnect.maxAttempts) {
      this._setStatus("failed", { reason: `gave up after ${this._attempt} attempts: ${reason}`, code, attempt: this._attempt });
      return;
    }
    this._attempt += 1;
    let delay = backoffDelay(this._attempt, this.reconnect, this._random);
    if (retryAfter) delay = Math.max(delay, retryAfter * 1000);
    this._setStatus("reconnecting", { reason, code, attempt: this._attempt, delay });
    this._timer = this._setTimeout(() => {
      this._timer = null;
      this._open();
    }, delay);
  }

  _cancelTimer() {
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
  }

  _failPending(error) {
    for (const { reject } of this._pending.values()) reject(error);
    this._pending.clear();
  }

  _stopPing() {
    if (this._pingTimer !== null) this._clearTimeout(this._pingTimer);
    this._pingTimer = null;
  }

  // ---- WebSocket --------------------------------------------------------------------

  _wsUrl() {
    const url = new URL("ws", this.url);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.token) url.searchParams.set("token", this.token);
    return url.href;
  }

  _openWebSocket() {
    if (!this._WebSocket) throw new Error("no WebSocket implementation: pass options.WebSocket");
    const socket = new this._WebSocket(this._wsUrl());
    const conn = {
      kind: "websocket",
      ready: false,
      disconnect: null,
      socket,
      send: (message) => socket.send(JSON.stringify(message)),
      close: () => {
        try {
          socket.close(1000, "client closed");
        } catch {
          /* already closed */
        }
      },
    };
    socket.onmessage = (message) => {
      if (this._conn !== conn) return;
      let data;
      try {
        data = JSON.parse(typeof message.data === "string" ? message.data : String(message.data));
      } catch {
        return;
      }
      this._onWsMessage(conn, data);
    };
    socket.onclose = (close) => {
      const disconnect = conn.disconnect;
      const code = close.code;
      const reason = disconnect?.reason || close.reason || (code === 1006 || code === undefined ? "connection_lost" : `closed_${code}`);
      const reconnect = disconnect ? disconnect.reconnect : !FINAL_CLOSE_CODES.has(code);
      this._lost(conn, { reason, code, reconnect });
    };
    socket.onerror = () => {
      /* onclose follows and decides */
    };
    return conn;
  }

  _schedulePing(conn) {
    this._stopPing();
    if (!this.pingInterval) return;
    this._pingTimer = this._setTimeout(() => {
      this._pingTimer = null;
      if (this._conn !== conn) return;
      try {
        conn.send({ type: "ping" });
      } catch {
        /* onclose follows */
      }
      this._schedulePing(conn);
    }, this.pingInterval);
  }

  _sendSubscribe(conn, channel) {
    const message = { type: "subscribe", channel };
    const since = this._positions.get(channel);
    if (since) message.since = since;
    const types = this._serverTypes(channel);
    if (types) message.types = types;
    // Replies are matched by id, so a refused subscription is reported with its channel.
    this._request(message, conn).catch((error) => {
      if (error.code !== "disconnected" && error.code !== "closed") {
        error.channel = channel;
        this._emit("error", error);
      }
    });
  }

  _onWsMessage(conn, message) {
    switch (message.type) {
      case "connected":
        conn.ready = true;
        for (const channel of this._subscriptions.keys()) this._sendSubscribe(conn, channel);
        this._connected(message.connection_id);
        this._schedulePing(conn);
        break;
      case "subscribed":
        if (this._subscriptions.has(message.channel) && !this._positions.has(message.channel) && message.position) {
          this._positions.set(message.channel, message.position);
        }
        break;
      case "event":
        this._dispatch(message.data);
        break;
      case "reset":
        this._reset(message);
        break;
      case "ping":
        conn.send({ type: "pong" });
        break;
      case "disconnect":
        conn.disconnect = message;
        break;
      case "error": {
        const details = { id: message.id };
        if (message.errors) details.errors = message.errors; // invalid_event: per-field problems
        const error = new TidingsError(message.code, message.message, details);
        const pending = message.id !== null && message.id !== undefined ? this._pending.get(message.id) : null;
        if (pending) {
          this._pending.delete(message.id);
          pending.reject(error);
        } else {
          this._emit("error", error);
        }
        break;
      }
      default: {
        const pending = message.id !== null && message.id !== undefined ? this._pending.get(message.id) : null;
        if (pending) {
          this._pending.delete(message.id);
          pending.resolve(message);
        }
      }
    }
  }

  _request(message, conn = this._conn) {
    return this._send(message, conn)[1];
  }

  /** Send `message` with a fresh id; the id, and a promise of the reply carrying it. */
  _send(message, conn) {
    const id = `r${++this._requestId}`;
    const reply = new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      try {
        conn.send({ ...message, id });
      } catch (error) {
        this._pending.delete(id);
        reject(error);
      }
    });
    return [id, reply];
  }

  // ---- HTTP -------------------------------------------------------------------------

  async _httpCommand(name, args, controller) {
    const body = { name, args };
    if (this.connectionId) body.connection_id = this.connectionId;
    this._httpCommands.add(controller);
    try {
      const answer = await this._api("api/v1/commands", { method: "POST", body, signal: controller.signal });
      return answer.result;
    } catch (error) {
      if (controller.signal.aborted) {
        const reason = controller.signal.reason;
        throw reason instanceof TidingsError ? reason : new TidingsError("aborted", "tidings: the command was abandoned");
      }
      if (error instanceof TidingsError) throw error;
      throw new TidingsError("unreachable", `tidings: the hub cannot be reached (${error?.message ?? error})`);
    } finally {
      this._httpCommands.delete(controller);
    }
  }

  async _api(path, { method = "GET", body, signal } = {}) {
    if (!this._fetch) throw new Error("no fetch implementation: pass options.fetch");
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (!this.token && typeof this._tokenSource === "function") this.token = await this._obtainToken();
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const response = await this._fetch(new URL(path, this.url).href, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    const payload = await response.json().catch(() => null);
    if (!response.ok) {
      const error = payload?.error ?? {};
      const details = { status: response.status };
      if (error.errors) details.errors = error.errors; // invalid_event: per-field problems
      if (error.index !== undefined) details.index = error.index;
      throw new TidingsError(error.code ?? `http_${response.status}`, error.message ?? response.statusText, details);
    }
    return payload;
  }

  // ---- SSE (read with fetch) --------------------------------------------------------

  _sseTypesKey() {
    const all = [...this._subscriptions.keys()].map((c) => this._serverTypes(c));
    if (all.some((t) => t === null)) return "*";
    return [...new Set(all.flat())].sort().join(",");
  }

  _sseCursorFor(channels) {
    const key = [...channels].sort().join(",");
    if (this._sseCursor && this._sseCursorKey === key) return this._sseCursor; // resend as received
    // The channel set changed: resume each channel we hold a position for.
    const known = new Map(parseCursor(this._sseCursor, this._sseCursorKey ? this._sseCursorKey.split(",") : []));
    for (const [channel, position] of this._positions) known.set(channel, position);
    const pairs = [...known].filter(([, p]) => p).map(([c, p]) => `${c};${p}`);
    return pairs.length ? pairs.join(",") : null;
  }

  _openSse() {
    if (!this._fetch) throw new Error("no fetch implementation: pass options.fetch");
    const channels = [...this._subscriptions.keys()];
    const url = new URL("api/v1/events", this.url);
    url.searchParams.set("plain", "1");
    for (const channel of channels) url.searchParams.append("channel", channel);
    const typesKey = this._sseTypesKey();
    if (typesKey !== "*") for (const type of typesKey.split(",")) url.searchParams.append("type", type);
    const cursor = this._sseCursorFor(channels);
    if (cursor) url.searchParams.set("last_event_id", cursor);
    const controller = new AbortController();
    const conn = {
      kind: "sse",
      typesKey,
      channels,
      closed: false,
      close: () => {
        conn.closed = true;
        controller.abort();
      },
    };
    const headers = { Accept: "text/event-stream" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    this._readSse(conn, url.href, headers, controller.signal).then(
      (outcome) => {
        if (!conn.closed) this._lost(conn, outcome);
      },
      (error) => {
        if (!conn.closed) this._lost(conn, { reason: error?.message ?? String(error), reconnect: true });
      },
    );
    return conn;
  }

  async _readSse(conn, url, headers, signal) {
    const response = await this._fetch(url, { headers, signal, cache: "no-store" });
    if (response.status !== 200) {
      const payload = await response.json().catch(() => null);
      const retryAfter = Number(response.headers.get("retry-after")) || 0;
      return {
        reason: payload?.error?.code ?? `http_${response.status}`,
        code: response.status,
        reconnect: RETRY_HTTP_STATUSES.has(response.status),
        retryAfter,
      };
    }
    const key = [...conn.channels].sort().join(",");
    let disconnect = null;
    let frame = { id: null, event: null, data: [] };
    const handleLine = (line) => {
      // Closed (e.g. reopened with a new token): what is still buffered is not handled, so
      // the cursor stays at the last event handled and the next stream resumes there.
      if (conn.closed) return;
      if (line === "") {
        if (frame.data.length) {
          const text = frame.data.join("\n");
          const type = frame.event ?? "message";
          let payload;
          try {
            payload = JSON.parse(text);
          } catch {
            payload = null;
          }
          if (payload !== null) {
            if (type === "reset") this._reset(payload);
            else if (type === "disconnect") disconnect = payload;
            else if (type !== "position") this._dispatch(payload);
          }
        }
        // After the frame's event: the cursor includes it, and an event at or before a
        // known position is one already delivered.
        if (frame.id !== null) {
          this._sseCursor = frame.id;
          this._sseCursorKey = key;
          for (const [channel, position] of parseCursor(frame.id, conn.channels)) {
            if (this._subscriptions.has(channel) && position) this._positions.set(channel, position);
          }
        }
        frame = { id: null, event: null, data: [] };
        return;
      }
      if (line.startsWith(":")) {
        const comment = line.slice(1).trim();
        if (comment.startsWith("connected ")) this._connected(comment.slice("connected ".length));
        return;
      }
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") frame.id = value;
      else if (field === "event") frame.event = value;
      else if (field === "data") frame.data.push(value);
    };
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let index;
        while ((index = buffer.search(/\r\n|\r|\n/)) !== -1) {
          const line = buffer.slice(0, index);
          const length = buffer[index] === "\r" && buffer[index + 1] === "\n" ? 2 : 1;
          // A lone "\r" at the very end may be the first half of "\r\n": wait for more.
          if (buffer[index] === "\r" && index + 1 === buffer.length) break;
          buffer = buffer.slice(index + length);
          handleLine(line);
        }
      }
    } finally {
      reader.releaseLock?.();
    }
    if (disconnect) return { reason: disconnect.reason, code: disconnect.code, reconnect: disconnect.reconnect };
    return { reason: "stream_ended", reconnect: true };
  }
}

/** `new TidingsClient(options)`. */
export function createClient(options) {
  return new TidingsClient(options);
}

export default TidingsClient;
