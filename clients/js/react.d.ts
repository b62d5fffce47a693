import type { CommandOptions, EventHandler, Status, SubscribeOptions, TidingsClient, TidingsError, TidingsOptions } from "./tidings.js";

export interface UseTidingsOptions extends TidingsOptions, SubscribeOptions {
  /** Use this client instead of creating one (it is not closed on unmount); typed or not. */
  client?: TidingsClient<any>;
}

export interface UseTidingsState {
  status: Status | "idle";
  /** Why the connection failed, or the last error the hub reported; null otherwise. */
  error: string | null;
}

/** Follow `channel` while the component is mounted; `handler` gets each event. */
export function useTidings<T = unknown>(channel: string | null | undefined, handler: EventHandler<T>, options?: UseTidingsOptions): UseTidingsState;
export interface UseCommandOptions extends TidingsOptions, CommandOptions {
  /** Use this client instead of creating one (it is not closed on unmount). */
  client?: TidingsClient;
}

export interface UseCommandState<R = unknown> {
  /** A call is on its way. */
  pending: boolean;
  /** The last call's failure (`error.code` is the hub's, or `timeout`), or null. */
  error: TidingsError | Error | null;
  /** The last call's result; undefined until one succeeds. */
  result: R | undefined;
}

/** `[run, state]`: `run(args)` runs the command `name` and resolves to its result. */
export function useCommand<R = unknown, A = Record<string, unknown>>(name: string, options?: UseCommandOptions): [(args?: A) => Promise<R>, UseCommandState<R>];
export default useTidings;
