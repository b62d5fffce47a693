// Compiled by `tsc --noEmit -p clients/js` only: the type definitions accept real usage.
import TidingsClient, { TidingsError, backoffDelay, createClient, refreshDelay, tokenExpiry, type StatusChange, type TidingsEvent, type TokenSource } from "tidings-client";
import { useCommand, useTidings } from "tidings-client/react";

interface Alert {
  host: string;
}

const client = new TidingsClient({ url: "https://hub.example/", transport: "sse", token: "t", reconnect: { maxAttempts: 3 } });
const other = createClient({ url: new URL("https://hub.example/realtime/"), pingInterval: 0 });
const stop: () => void = client.subscribe<Alert>("alerts", (event) => {
  const host: string = event.data.host;
  console.log(host, event.id, event.timestamp);
}, { types: ["disk_full"], since: "5d5910-2" });
client.on("*", (event: TidingsEvent) => console.log(event.channel));
client.onStatus((change: StatusChange) => {
  if (change.status === "reconnecting") console.log(change.attempt, change.delay);
});
client.onReset(({ channel, position }) => console.log(channel, position));
client.onError((error) => console.log(error.message));
const delay: number = backoffDelay(3);
async function send(): Promise<string> {
  const event = await client.publish<Alert>("alerts", { host: "db2" }, { type: "disk_full" });
  return event.data.host;
}
async function cancel(): Promise<boolean> {
  const answer = await client.command<{ cancelled: boolean }, { job_id: string }>("job.cancel", { job_id: "j1" }, { timeout: 5000 });
  await client.command("job.ping");
  try {
    await client.command("job.cancel", { job_id: "j2" });
  } catch (error) {
    if (error instanceof TidingsError && error.code === "timeout") return false;
  }
  return answer.cancelled;
}
void cancel();
stop();
other.close();
void send();
void delay;

function Status(): string {
  const { status, error } = useTidings<Alert>("alerts", (event) => console.log(event.data.host), { transport: "websocket" });
  return error ?? status;
}
void Status;

// A token function, sync or async, on the client and in the hook.
const fromLogin: TokenSource = async () => (await fetch("/login/token")).text();
const refreshing = new TidingsClient({ url: "https://hub.example/", token: fromLogin, tokenRefreshLead: 10000 });
const synchronous = createClient({ url: "https://hub.example/", token: () => "t" });
const current: string | null = refreshing.token;
const expires: number | null = tokenExpiry(current);
const due: number = refreshDelay(expires ?? 0, Date.now());
function Refreshing(): string {
  const { status } = useTidings("alerts", () => undefined, { token: () => Promise.resolve("t"), tokenRefreshLead: 5000 });
  return status;
}
void [synchronous, due, Refreshing];
function CancelButton(): string {
  const [run, { pending, error, result }] = useCommand<{ cancelled: boolean }, { job_id: string }>("job.cancel", { timeout: 5000 });
  void run({ job_id: "j1" }).then((answer) => answer.cancelled);
  if (error) return `${error.message}`;
  return pending ? "…" : String(result?.cancelled);
}
void CancelButton;
// A typed map (as `tidings schema typescript` generates): `on` checks type names and data.
interface Events {
  "onu.online": { serial: string; port: number };
  "job.progress": { job_id: string; state: "running" | "done" };
}
const typed = createClient<Events>({ url: "https://hub.example/" });
typed.on("onu.online", (event) => console.log(event.data.serial.toUpperCase(), event.data.port + 1));
typed.on("*", (event) => {
  if (event.type === "job.progress") console.log(event.data.state === "done");
});
// @ts-expect-error: not a field of onu.online
typed.on("onu.online", (event) => console.log(event.data.olt));
// @ts-expect-error: not a registered type
typed.on("onu.offline", () => undefined);
function Typed(): string {
  const { status } = useTidings("olt:1", (event) => console.log(event.data), { client: typed });
  return status;
}
void Typed;
