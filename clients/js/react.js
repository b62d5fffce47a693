// useTidings and useCommand: React hooks over tidings.js. Each mounted hook owns one client
// (or uses the one passed as `options.client`) and closes it on unmount, so no connection
// outlives the component.
import { useCallback, useEffect, useRef, useState } from "react";

import { TidingsClient, TidingsError } from "./tidings.js";

export function useTidings(channel, handler, options = {}) {
  const [state, setState] = useState({ status: channel ? "connecting" : "idle", error: null });
  const handlerRef = useRef(handler);
  handlerRef.current = handler;
  const { client: sharedClient, types, since, ...clientOptions } = options;
  // A token function is called through this ref: a new function on every render (an
  // inline arrow) neither reconnects nor leaves the client calling a stale one.
  const tokenRef = useRef(clientOptions.token);
  tokenRef.current = clientOptions.token;
  const tokenKey = typeof clientOptions.token === "function" ? "function" : clientOptions.token ?? null;
  // Reconnect only when something that changes the connection changes.
  const key = JSON.stringify([clientOptions.url ? String(clientOptions.url) : null, clientOptions.transport, tokenKey, types, clientOptions.reconnect]);
  const optionsRef = useRef(clientOptions);
  optionsRef.current = clientOptions;
  // The last position seen per channel outlives the client: a client made anew (a new
  // token string, another URL) resumes where the previous one stopped.
  const positionsRef = useRef(new Map());

  useEffect(() => {
    if (!channel) {
      setState({ status: "idle", error: null });
      return undefined;
    }
    const ownOptions = { ...optionsRef.current };
    if (typeof ownOptions.token === "function") {
      ownOptions.token = () => {
        const token = tokenRef.current;
        return typeof token === "function" ? token() : token;
      };
    }
    const client = sharedClient ?? new TidingsClient(ownOptions);
    const offStatus = client.onStatus((change) => {
      setState({ status: change.status, error: change.status === "failed" ? change.reason ?? "failed" : null });
    });
    const offError = client.onError((error) => setState((s) => ({ ...s, error: error.message ?? String(error) })));
    if (client.status !== "idle") setState({ status: client.status, error: client.error });
    const resumeFrom = positionsRef.current.get(channel) ?? since;
    const unsubscribe = client.subscribe(channel, (event) => handlerRef.current?.(event), { types, since: resumeFrom });
    return () => {
      const position = client.positions.get(channel);
      if (position) positionsRef.current.set(channel, position);
      offStatus();
      offError();
      unsubscribe();
      if (!sharedClient) client.close();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [channel, key, sharedClient]);

  return state;
}

/**
 * `[run, {pending, error, result}]` for the application command `name`: `run(args)` sends
 * it and resolves to its result (or rejects with the TidingsError also put in `error`).
 * Only the latest call's outcome lands in the state.
 */
export function useCommand(name, options = {}) {
  const [state, setState] = useState({ pending: false, error: null, result: undefined });
  const { client: sharedClient, timeout, ...clientOptions } = options;
  const key = JSON.stringify([clientOptions.url ? String(clientOptions.url) : null, clientOptions.transport, clientOptions.token]);
  const optionsRef = useRef(clientOptions);
  optionsRef.current = clientOptions;
  const clientRef = useRef(null);
  const latest = useRef(0);
  const mounted = useRef(false);

  useEffect(() => {
    mounted.current = true;
    // An own client opens no stream: with nothing subscribed, commands go over HTTP.
    const client = sharedClient ?? new TidingsClient(optionsRef.current);
    clientRef.current = client;
    return () => {
      mounted.current = false;
      clientRef.current = null;
      if (!sharedClient) client.close();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, sharedClient]);

  const run = useCallback(
    async (args) => {
      const client = clientRef.current;
      if (!client) throw new TidingsError("closed", "tidings: useCommand is not mounted");
      const call = ++latest.current;
      const settle = (next) => {
        if (mounted.current && call === latest.current) setState(next);
      };
      settle({ pending: true, error: null, result: undefined });
      try {
        const result = await client.command(name, args, { timeout });
        settle({ pending: false, error: null, result });
        return result;
      } catch (error) {
        settle({ pending: false, error, result: undefined });
        throw error;
      }
    },
    [name, timeout],
  );

  return [run, state];
}

export default useTidings;
