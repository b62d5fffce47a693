"""Long-running jobs of a tenant, their progress on ``tenant:<tenant>/jobs``, and the
commands that pause, resume and cancel them.

A job's state changes only through :data:`TRANSITIONS` (one table; anything else is a
``job_conflict``), under the job's lock, and each change is published under that lock
too: a ``job.paused`` is never followed by a ``job.progress`` of the running job. A
client reaches only its own tenant's jobs: another tenant's job is ``not_found``, so
tenants cannot even learn each other's job ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from examples.isp_platform.events import JobState
from examples.isp_platform.publishers import Publisher

from tidings import Hub, Identity
from tidings.errors import BadRequest, NotFound, TidingsError

#: ``(state, action) -> next state``; the action's event type is ``job.<past tense>``.
TRANSITIONS: dict[tuple[JobState, str], tuple[JobState, str]] = {
    ("running", "pause"): ("paused", "job.paused"),
    ("paused", "resume"): ("running", "job.resumed"),
    ("running", "cancel"): ("cancelled", "job.cancelled"),
    ("paused", "cancel"): ("cancelled", "job.cancelled"),
}


class JobConflict(TidingsError):
    """The job is not in a state that allows the action (pausing a paused job)."""

    status = 409
    code = "job_conflict"


@dataclass
class Job:
    job_id: str
    tenant: str
    kind: str
    target: str
    started_by: str
    steps: int
    step: int = 0
    state: JobState = "running"
    started_at: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    running: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def percent(self) -> float:
        return round(100 * self.step / self.steps, 1)

    def describe(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "target": self.target,
            "started_by": self.started_by,
            "state": self.state,
            "percent": self.percent,
        }


class JobRunner:
    """Runs jobs as tasks of the event loop: one step every ``tick`` seconds."""

    def __init__(self, publisher: Publisher, *, tick: float = 0.5, steps: int = 40) -> None:
        self.publisher = publisher
        self.tick = tick
        self.steps = steps
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)

    def jobs(self, tenant: str) -> list[Job]:
        return [job for job in self._jobs.values() if job.tenant == tenant]

    async def start(self, tenant: str, kind: str, target: str, started_by: str) -> Job:
        job = Job(f"job-{next(self._ids)}", tenant, kind, target, started_by, self.steps)
        self._jobs[job.job_id] = job
        job.running.set()
        await self.publisher.publish_job(
            tenant,
            "job.started",
            job_id=job.job_id,
            kind=kind,
            target=target,
            started_by=started_by,
            steps=job.steps,
        )
        job.task = asyncio.create_task(self._run(job), name=f"isp {job.job_id}")
        return job

    async def _run(self, job: Job) -> None:
        while job.step < job.steps:
            await asyncio.sleep(self.tick)
            await job.running.wait()  # a paused job waits here
            async with job.lock:
                if job.state != "running":
                    return
                job.step += 1
                await self.publisher.publish_job(
                    job.tenant,
                    "job.progress",
                    job_id=job.job_id,
                    percent=job.percent,
                    step=job.step,
                    steps=job.steps,
                    state="running",
                )
        async with job.lock:
            job.state = "completed"
            duration = round(time.monotonic() - job.started_at, 3)
            await self.publisher.publish_job(
                job.tenant, "job.completed", job_id=job.job_id, duration_s=duration
            )

    def find(self, identity: Identity, job_id: Any) -> Job:
        """The job ``job_id`` if the caller's tenant owns it; ``not_found`` otherwise."""
        if not isinstance(job_id, str) or not job_id:
            raise BadRequest("args.job_id must be a job id (a string)", code="invalid_args")
        job = self._jobs.get(job_id)
        if job is None or job.tenant != identity.tenant:
            raise NotFound(f"no job {job_id!r}", code="job_not_found")
        return job

    async def act(self, identity: Identity, job_id: Any, action: str) -> dict[str, Any]:
        """Pause, resume or cancel one of the caller's tenant's jobs; its new state."""
        job = self.find(identity, job_id)
        async with job.lock:
            step = TRANSITIONS.get((job.state, action))
            if step is None:
                raise JobConflict(f"{job.job_id} is {job.state}: cannot {action} it")
            job.state, event_type = step
            if job.state == "running":
                job.running.set()
            else:
                job.running.clear()
            await self.publisher.publish_job(
                job.tenant,
                event_type,
                job_id=job.job_id,
                percent=job.percent,
                by=identity.client_id or "?",
            )
        if job.state == "cancelled" and job.task is not None:
            job.task.cancel()
        return job.describe()

    def install(self, hub: Hub) -> None:
        """Register ``job.pause``, ``job.resume`` and ``job.cancel`` as hub commands.

        Who may run them is the token's ``commands`` claim (checked by the hub first);
        which jobs, the tenant (checked here)."""
        for action in ("pause", "resume", "cancel"):

            async def handler(
                identity: Identity, args: dict[str, Any], action: str = action
            ) -> dict[str, Any]:
                return await self.act(identity, args.get("job_id"), action)

            hub.command(f"job.{action}")(handler)

    async def close(self) -> None:
        """Stop every job's task (at the app's shutdown)."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
