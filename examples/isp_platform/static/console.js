// The operations console: a tenant's jobs, live, with pause / resume / cancel buttons.
// React without a bundler (createElement as h); the hooks are tidings' own (react.js):
// useTidings follows a channel, useCommand runs a command over the same WebSocket.
import { createElement as h, useCallback, useEffect, useState } from "react";
import { useCommand, useTidings } from "./react.js";
import { TidingsClient } from "./tidings.js";

const HUB_URL = new URL("/realtime/", location.href).href;

function api(path, session, body) {
  const init = { headers: { authorization: `Bearer ${session.token}` } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(path, init).then(async (response) => {
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error?.message ?? response.statusText);
    return answer;
  });
}

const JOB_STATES = {
  "job.started": "running",
  "job.progress": "running",
  "job.paused": "paused",
  "job.resumed": "running",
  "job.cancelled": "cancelled",
  "job.completed": "completed",
};

function applyJobEvent(jobs, event) {
  const data = event.data;
  const job = jobs[data.job_id] ?? { job_id: data.job_id, kind: "?", target: "?", percent: 0 };
  const next = { ...job, state: JOB_STATES[event.type] ?? job.state };
  if (event.type === "job.started") Object.assign(next, { kind: data.kind, target: data.target });
  if (typeof data.percent === "number") next.percent = data.percent;
  if (event.type === "job.completed") next.percent = 100;
  return { ...jobs, [data.job_id]: next };
}

function JobRow({ job, canRun, commands }) {
  const { pause, resume, cancel } = commands;
  const active = job.state === "running" || job.state === "paused";
  return h("li", { className: "job", "data-job": job.job_id, "data-state": job.state },
    h("strong", null, job.job_id), ` ${job.kind} on ${job.target} `,
    h("progress", { max: 100, value: job.percent }),
    h("span", { className: "percent" }, ` ${job.percent}% `),
    h("span", { className: "state" }, job.state), " ",
    canRun && h("button", { type: "button", disabled: job.state !== "running", onClick: () => pause({ job_id: job.job_id }).catch(() => {}) }, "Pause"),
    canRun && h("button", { type: "button", disabled: job.state !== "paused", onClick: () => resume({ job_id: job.job_id }).catch(() => {}) }, "Resume"),
    canRun && h("button", { type: "button", disabled: !active, onClick: () => cancel({ job_id: job.job_id }).catch(() => {}) }, "Cancel"));
}

function Console({ session, client }) {
  const [jobs, setJobs] = useState({});
  const [log, setLog] = useState([]);
  const [problem, setProblem] = useState(null);
  const tenant = session.tenant;

  const onEvent = useCallback((event) => {
    setLog((list) => [...list, event]);
    if (event.type.startsWith("job.")) setJobs((current) => applyJobEvent(current, event));
  }, []);
  const reload = useCallback(() => {
    // The jobs as the platform knows them: at start, and after a `reset` (missed events).
    api("/api/jobs", session).then(({ jobs: list }) => {
      setJobs((current) => Object.fromEntries([...Object.entries(current), ...list.map((job) => [job.job_id, job])]));
    }, (error) => setProblem(error.message));
  }, [session]);
  useEffect(() => {
    reload();
    return client.onReset(reload);
  }, [client, reload]);

  const live = useTidings(`tenant:${tenant}/jobs`, onEvent, { client });
  useTidings(`tenant:${tenant}/alerts`, onEvent, { client });
  const [pause, pausing] = useCommand("job.pause", { client });
  const [resume, resuming] = useCommand("job.resume", { client });
  const [cancel, cancelling] = useCommand("job.cancel", { client });
  const commandError = [pausing, resuming, cancelling].map((s) => s.error?.message).find(Boolean);
  const canRun = session.commands.length > 0;

  return h("main", null,
    h("h1", null, `Jobs of ${tenant}`),
    h("p", null, `Signed in as ${session.name}. Live: `, h("span", { id: "status", role: "status" }, live.status)),
    canRun && h("button", { type: "button", onClick: () => api("/api/jobs", session, {}).catch((e) => setProblem(e.message)) }, "Start job"),
    " ",
    h("button", { type: "button", onClick: () => api("/api/alerts", session, { severity: "major", text: `check ${tenant}'s uplink` }).catch((e) => setProblem(e.message)) }, "Raise alert"),
    (problem || commandError) && h("p", { id: "problem", className: "error" }, problem || commandError),
    h("ul", { id: "jobs" }, Object.values(jobs).map((job) =>
      h(JobRow, { key: job.job_id, job, canRun, commands: { pause, resume, cancel } }))),
    h("h2", null, "Events received"),
    h("ol", { id: "log" }, log.map((e) =>
      h("li", { key: e.id, "data-channel": e.channel, "data-type": e.type }, `${e.channel} ${e.type} ${JSON.stringify(e.data)}`))));
}

function App() {
  const [users, setUsers] = useState([]);
  const [session, setSession] = useState(null);
  const [client, setClient] = useState(null);
  const login = useCallback((user) => {
    fetch("/api/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) })
      .then((response) => response.json())
      .then(setSession);
  }, []);
  useEffect(() => {
    const user = new URLSearchParams(location.search).get("user");
    if (user) login(user);
    else fetch("/api/users").then((r) => r.json()).then((answer) => setUsers(answer.users));
  }, [login]);
  // One connection for the page: both feeds and the three commands share it.
  useEffect(() => {
    if (!session?.token) return undefined;
    const shared = new TidingsClient({ url: HUB_URL, token: session.token });
    setClient(shared);
    return () => shared.close();
  }, [session]);

  if (session && client) return h(Console, { session, client });
  return h("main", null,
    h("h1", null, "ISP operations"),
    h("p", null, "Sign in as a demo operator:"),
    users.map((u) => h("button", { key: u.user, type: "button", onClick: () => login(u.user) }, `${u.name} (${u.tenant})`)));
}

ReactDOM.createRoot(document.getElementById("root")).render(h(App));
