// useTidings: a React hook over tidings.js. Each mounted hook owns one client (or uses the
// one passed as `options.client`) and closes it on unmount, so no connection outlives
// the component.
import { useEffect, useRef, useState } from "react";

import { TidingsClient } from "./tidings.js";

export function useTidings(channel, handler, options = {}) {
  const [state, setState] = useState({ status: channel ? "connecting" : "idle", error: null });
  const handlerRef = useRef(handler);
  handlerRef.current = handler;
  const { client: sharedClient, types, since, ...clientOptions } = options;
  // Reconnect only when something that changes the connection changes.
  const key = JSON.stringify([clientOptions.url ? String(clientOptions.url) : null, clientOptions.transport, clientOptions.token, types, clientOptions.reconnect]);
  const optionsRef = useRef(clientOptions);
  optionsRef.current = clientOptions;

  useEffect(() => {
    if (!channel) {
      setState({ status: "idle", error: null });
      return undefined;
    }
    const client = sharedClient ?? new TidingsClient(optionsRef.current);
    const offStatus = client.onStatus((change) => {
      setState({ status: change.status, error: change.status === "failed" ? change.reason ?? "failed" : null });
    });
    const offError = client.onError((error) => setState((s) => ({ ...s, error: error.message ?? String(error) })));
    if (client.status !== "idle") setState({ status: client.status, error: client.error });
    const unsubscribe = client.subscribe(channel, (event) => handlerRef.current?.(event), { types, since });
    return () => {
      offStatus();
      offError();
      unsubscribe();
      if (!sharedClient) client.close();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [channel, key, sharedClient]);

  return state;
}

export default useTidings;
