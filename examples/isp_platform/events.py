"""The event catalogue of the ISP operations platform: 24 typed events in six families.

Each family has one channel per tenant, ``tenant:<tenant>/<family>``; every type is
registered for its family's channels only (``hub.event_type(..., channels=[...])``), so
the hub refuses a payload that does not match its model, and ``/asyncapi.json`` and
``tidings schema typescript`` describe exactly these. What is published and delivered is
the data as given, not the model's output: models here are contracts, not converters.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tidings import Hub

#: ``{family: channel suffix}``; a tenant's channel is ``tenant:<tenant>/<suffix>``.
FAMILIES = ("onu", "sessions", "jobs", "tickets", "alerts", "subscribers")

Serial = Field(pattern=r"^[A-Z]{4}[0-9A-F]{8}$", description="GPON serial number")
Severity = Literal["critical", "major", "minor", "warning"]


def channel(tenant_id: str, family: str) -> str:
    """The channel of ``family`` events of ``tenant_id``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown event family {family!r}")
    return f"tenant:{tenant_id}/{family}"


# -- ONU (optical network units) ------------------------------------------------------


class OnuOnline(BaseModel):
    """An ONU came online on an OLT port."""

    serial: str = Serial
    olt: str
    port: int = Field(ge=0)
    rx_power: float | None = Field(None, description="received optical power, dBm")


class OnuOffline(BaseModel):
    """An ONU went offline."""

    serial: str = Serial
    olt: str
    reason: Literal["dying_gasp", "los", "admin", "unknown"]


class OnuSignalDegraded(BaseModel):
    """An ONU's received optical power left its window."""

    serial: str = Serial
    rx_power: float = Field(description="received optical power, dBm")
    threshold: float = Field(description="the limit it crossed, dBm")


class OnuProvisioned(BaseModel):
    """An ONU got its service profile."""

    serial: str = Serial
    subscriber_id: str
    profile: str


# -- RADIUS sessions ------------------------------------------------------------------


class SessionStarted(BaseModel):
    """Accounting-Start: a subscriber's PPPoE/IPoE session began."""

    session_id: str
    username: str
    nas: str = Field(description="the NAS (BNG) that reported it")
    framed_ip: str | None = None


class SessionInterim(BaseModel):
    """Interim-Update: counters of a running session."""

    session_id: str
    input_octets: int = Field(ge=0)
    output_octets: int = Field(ge=0)
    session_time: int = Field(ge=0, description="seconds since the start")


class SessionStopped(BaseModel):
    """Accounting-Stop: a session ended."""

    session_id: str
    terminate_cause: str = Field(description="RADIUS Acct-Terminate-Cause, e.g. User-Request")
    session_time: int = Field(ge=0)


class SessionRejected(BaseModel):
    """Access-Reject: a login was refused."""

    username: str
    nas: str
    reason: str


# -- jobs -----------------------------------------------------------------------------

JobState = Literal["running", "paused", "cancelled", "completed"]


class JobStarted(BaseModel):
    """A long-running operation (a firmware rollout, a bulk reprovisioning) started."""

    job_id: str
    kind: str
    target: str
    started_by: str
    steps: int = Field(ge=1)


class JobProgress(BaseModel):
    """A job did one more step."""

    job_id: str
    percent: float = Field(ge=0, le=100)
    step: int = Field(ge=0)
    steps: int = Field(ge=1)
    state: JobState


class JobPaused(BaseModel):
    job_id: str
    percent: float = Field(ge=0, le=100)
    by: str


class JobResumed(BaseModel):
    job_id: str
    percent: float = Field(ge=0, le=100)
    by: str


class JobCancelled(BaseModel):
    job_id: str
    percent: float = Field(ge=0, le=100)
    by: str


class JobCompleted(BaseModel):
    job_id: str
    duration_s: float = Field(ge=0)


# -- tickets --------------------------------------------------------------------------


class TicketOpened(BaseModel):
    """A trouble ticket was opened."""

    ticket_id: str
    subscriber_id: str | None = None
    subject: str = Field(min_length=1, max_length=200)
    priority: Literal["low", "normal", "high", "urgent"]


class TicketAssigned(BaseModel):
    ticket_id: str
    assignee: str


class TicketCommented(BaseModel):
    ticket_id: str
    author: str
    text: str = Field(min_length=1, max_length=2000)


class TicketClosed(BaseModel):
    ticket_id: str
    resolution: str


# -- alerts ---------------------------------------------------------------------------


class AlertRaised(BaseModel):
    """A monitoring alert fired."""

    alert_id: str
    severity: Severity
    source: str = Field(description="the device or service it is about")
    text: str


class AlertAcknowledged(BaseModel):
    alert_id: str
    by: str


class AlertCleared(BaseModel):
    alert_id: str
    cleared_by: Literal["system", "operator"]


# -- subscribers ----------------------------------------------------------------------


class SubscriberCreated(BaseModel):
    subscriber_id: str
    name: str
    plan: str


class SubscriberSuspended(BaseModel):
    subscriber_id: str
    reason: Literal["non_payment", "abuse", "request"]


class SubscriberReactivated(BaseModel):
    subscriber_id: str


#: ``{type name: (family, model)}``: the whole catalogue.
CATALOGUE: dict[str, tuple[str, type[BaseModel]]] = {
    "onu.online": ("onu", OnuOnline),
    "onu.offline": ("onu", OnuOffline),
    "onu.signal_degraded": ("onu", OnuSignalDegraded),
    "onu.provisioned": ("onu", OnuProvisioned),
    "session.started": ("sessions", SessionStarted),
    "session.interim": ("sessions", SessionInterim),
    "session.stopped": ("sessions", SessionStopped),
    "session.rejected": ("sessions", SessionRejected),
    "job.started": ("jobs", JobStarted),
    "job.progress": ("jobs", JobProgress),
    "job.paused": ("jobs", JobPaused),
    "job.resumed": ("jobs", JobResumed),
    "job.cancelled": ("jobs", JobCancelled),
    "job.completed": ("jobs", JobCompleted),
    "ticket.opened": ("tickets", TicketOpened),
    "ticket.assigned": ("tickets", TicketAssigned),
    "ticket.commented": ("tickets", TicketCommented),
    "ticket.closed": ("tickets", TicketClosed),
    "alert.raised": ("alerts", AlertRaised),
    "alert.acknowledged": ("alerts", AlertAcknowledged),
    "alert.cleared": ("alerts", AlertCleared),
    "subscriber.created": ("subscribers", SubscriberCreated),
    "subscriber.suspended": ("subscribers", SubscriberSuspended),
    "subscriber.reactivated": ("subscribers", SubscriberReactivated),
}


def register(hub: Hub) -> None:
    """Register every type of the catalogue on its family's tenant channels."""
    for name, (family, model) in CATALOGUE.items():
        hub.event_type(name, model, channels=[f"tenant:*/{family}"])
