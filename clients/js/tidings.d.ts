// Type definitions for tidings.js (the tidings hub client). See README.md.

/** An event as the hub stores and delivers it. */
export interface TidingsEvent<T = unknown> {
  /** Opaque, unique within its channel. */
  id: string;
  channel: string;
  type: string;
  data: T;
  /** ISO-8601 UTC with milliseconds. */
  timestamp: string;
}

export type Status = "connecting" | "connected" | "reconnecting" | "failed" | "closed";

export interface StatusChange {
  status: Status;
  /** Why (a disconnect reason, an error code, `connection_lost`, `client`, ...). */
  reason?: string;
  /** WebSocket close code or HTTP status, when there was one. */
  code?: number;
  /** Reconnection attempt number (1-based), on `reconnecting` and a give-up `failed`. */
  attempt?: number;
  /** Milliseconds until the next attempt, on `reconnecting`. */
  delay?: number;
}

export interface ResetNotice {
  channel: string;
  /** `history_gap` (missed events are gone) or `dropped` (slow consumer). */
  reason: string;
  /** Where the channel stands now; live events continue after it. */
  position: string;
}

export interface ReconnectOptions {
  /** First delay, ms. Default 1000. */
  initialDelay?: number;
  /** Multiplier per attempt. Default 2. */
  factor?: number;
  /** Cap, ms. Default 30000. */
  maxDelay?: number;
  /** Attempts before `failed`. Default 10. */
  maxAttempts?: number;
  /** Each delay is multiplied by a random factor in [1 - jitter, 1]. Default 0.5. */
  jitter?: number;
  /** A connection that stayed up this long, ms, starts the schedule over. Default 5000. */
  stableAfter?: number;
}

export type TimerHandle = unknown;

/**
 * Where the token comes from: a string (or null), or a function returning one (or a
 * promise of one). A function is called on every connect and reconnect, and shortly
 * before the current token's `exp` (read from the JWT's payload): a WebSocket then sends
 * the new token in-band (`refresh`), an SSE stream is reopened from its last event id.
 * If it throws or rejects, the error goes to `onError` (code `token_unavailable`) and it
 * is tried again with the reconnect backoff.
 */
export type TokenSource = string | null | (() => string | Promise<string>);

export interface TidingsOptions {
  /** The hub's base URL (`https://host/` or `https://host/realtime/`). Default in a browser: two levels above the module's URL. */
  url?: string | URL;
  /** Default `websocket`. */
  transport?: "websocket" | "sse";
  /** JWT or API key: `?token=` on the WebSocket, `Authorization: Bearer` on SSE and HTTP; or a function that returns one (see `TokenSource`). */
  token?: TokenSource;
  /** With a token function: ask for the next token this many ms before `exp` (at most a tenth of the token's remaining lifetime, at least 1 s). Default 30000. */
  tokenRefreshLead?: number;
  /** Channels to subscribe to at once (without handlers). */
  channels?: string[];
  reconnect?: ReconnectOptions;
  /** WebSocket keep-alive `ping` every this many ms (0 = never). Default 25000. */
  pingInterval?: number;
  /** A WebSocket constructor (in Node 20: `import WebSocket from "ws"`). */
  WebSocket?: new (url: string) => WebSocketLike;
  fetch?: typeof fetch;
  setTimeout?: (fn: () => void, ms: number) => TimerHandle;
  clearTimeout?: (handle: TimerHandle) => void;
  /** Random numbers in [0, 1), for the jitter. */
  random?: () => number;
  /** The clock, in ms (default `Date.now`), for `reconnect.stableAfter`. */
  now?: () => number;
}

/** What the client needs of a WebSocket (the browser's and `ws`'s both fit). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((message: { data: unknown }) => void) | null;
  onclose: ((close: { code: number; reason: string }) => void) | null;
  onerror: ((error: unknown) => void) | null;
}

export interface SubscribeOptions {
  /** Only these event types (`*` = all). */
  types?: string[];
  /** Resume from this event id (the last one you saw on the channel). */
  since?: string;
}

export interface PublishOptions {
  /** Event type, default `message`. */
  type?: string;
  /** Over HTTP only: publish at most once per key. */
  idempotencyKey?: string;
}

export interface CommandOptions {
  /** Milliseconds to wait for the answer; then the promise rejects with code `timeout`. */
  timeout?: number;
}

export type Unsubscribe = () => void;
export type EventHandler<T = unknown> = (event: TidingsEvent<T>) => void;

/**
 * A map from event type to the type of its `data`, such as the `TidingsEvents` that
 * `tidings schema typescript` generates. The default knows no types: every `data` is `unknown`.
 */
export type EventMap = Record<string, unknown>;
/** An event of type `K` of the map `E`: its `type` is `K`, its `data` is `E[K]`. */
export type TypedEvent<E, K extends keyof E & string> = TidingsEvent<E[K]> & { type: K };
/** Any event of the map `E`, discriminated by `type`. */
export type AnyTypedEvent<E> = { [K in keyof E & string]: TypedEvent<E, K> }[keyof E & string];

/** One problem with a typed event's data (an `invalid_event` error lists them). */
export interface FieldError {
  /** JSON pointer into the event's data: `/serial`, `/ports/0`. */
  path: string;
  message: string;
}

export class TidingsError extends Error {
  constructor(code: string, message: string, details?: Record<string, unknown>);
  code: string;
  /** HTTP status, for errors of HTTP calls. */
  status?: number;
  /** The channel of a refused subscription. */
  channel?: string;
  /** The request id of a WebSocket request. */
  id?: string | number | null;
  /** `invalid_event` for a registered type: what is wrong with the data. */
  errors?: FieldError[];
  /** The index of the refused event in its batch. */
  index?: number;
}

/**
 * A client of a tidings hub. `E` maps event types to their data (generate it with
 * `tidings schema typescript`): `new TidingsClient<TidingsEvents>(…)` makes `on("onu.online",
 * e => e.data.serial)` type-checked. Without it every type is allowed and `data` is `unknown`.
 */
export class TidingsClient<E extends object = EventMap> {
  constructor(options?: TidingsOptions);
  readonly url: string;
  readonly transport: "websocket" | "sse";
  /** The token in use (with a token function: the last one it returned, null before). */
  token: string | null;
  readonly tokenRefreshLead: number;
  /** `idle` until the first connection attempt. */
  readonly status: Status | "idle";
  /** The reason of the last `failed`, or null. */
  readonly error: string | null;
  /** The hub's id of the current connection (as in `GET /api/v1/connections`). */
  readonly connectionId: string | null;
  /** Last position seen per followed channel. */
  readonly positions: Map<string, string>;
  subscribe<T = unknown>(channel: string, handler?: EventHandler<T> | null, options?: SubscribeOptions): Unsubscribe;
  /** Events of `type` on any subscribed channel, with `data` typed by `E`. */
  on<K extends keyof E & string>(type: K, handler: (event: TypedEvent<E, K>) => void): Unsubscribe;
  /** Every event, on any subscribed channel (of a typed map: discriminated by `type`). */
  on(type: "*", handler: (event: AnyTypedEvent<E>) => void): Unsubscribe;
  onStatus(handler: (status: StatusChange) => void): Unsubscribe;
  onReset(handler: (reset: ResetNotice) => void): Unsubscribe;
  onError(handler: (error: TidingsError | Error) => void): Unsubscribe;
  connect(): this;
  publish<T = unknown>(channel: string, data: T, options?: PublishOptions): Promise<TidingsEvent<T>>;
  /**
   * Run the application's command `name` (over the open socket, else `POST api/v1/commands`);
   * resolves to its result. Rejects with a TidingsError: the hub's code (`forbidden`,
   * `unknown_command`, `command_failed`, `command_timeout`, `command_unavailable`, …),
   * `timeout`, or `disconnected` / `closed` when the connection ends first.
   */
  command<R = unknown, A = Record<string, unknown>>(name: string, args?: A, options?: CommandOptions): Promise<R>;
  close(): void;
}

export function createClient<E extends object = EventMap>(options?: TidingsOptions): TidingsClient<E>;
export function backoffDelay(attempt: number, reconnect?: ReconnectOptions, random?: () => number): number;
/** A JWT's `exp` in ms, or null when the token is no JWT or has no numeric `exp`. */
export function tokenExpiry(token: string | null | undefined): number | null;
/** Ms from `now` until a token expiring at `expiresAt` (ms) is replaced. */
export function refreshDelay(expiresAt: number, now: number, lead?: number, floor?: number): number;
export function parseCursor(cursor: string | null, channels: string[]): Map<string, string>;
export const DEFAULT_RECONNECT: Readonly<Required<ReconnectOptions>>;
export default TidingsClient;
