import type { EventHandler, Status, SubscribeOptions, TidingsClient, TidingsOptions } from "./tidings.js";

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
export default useTidings;
