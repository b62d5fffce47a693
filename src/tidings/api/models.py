"""Request and response bodies of the HTTP API, for validation and for OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchPublishRequest",
    "ChannelList",
    "CommandRequest",
    "CommandResult",
    "ConnectionList",
    "EventOut",
    "EventTypeOut",
    "EventTypesOut",
    "EventsOut",
    "FieldErrorOut",
    "HistoryOut",
    "PublishRequest",
    "ScheduledAnswer",
    "ScheduledList",
    "ScheduledOut",
]


class PublishRequest(BaseModel):
    """One event to publish."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="channel name", examples=["network:wlan0"])
    type: str = Field(
        "message", description="application event type", examples=["client_connected"]
    )
    data: Any = Field(description="any JSON value, at most 64 KiB serialised")
    idempotency_key: str | None = Field(
        None, description="the same key within 5 minutes returns the first stored event"
    )
    at: str | None = Field(
        None,
        description="publish at this RFC 3339 time instead of now (answer 202)",
        examples=["2026-12-04T10:00:00Z"],
    )
    delay_s: float | None = Field(
        None, ge=0, description="publish after this many seconds instead of now (answer 202)"
    )
    key: str | None = Field(
        None,
        description="with `at` or `delay_s`: names the scheduled event; scheduling under a "
        "pending key replaces it; generated when absent",
    )

    @property
    def scheduled(self) -> bool:
        return self.at is not None or self.delay_s is not None


class CommandRequest(BaseModel):
    """A command for the application: run by an in-process handler or forwarded to the
    command URL."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=200, description="the command's name", examples=["job.cancel"]
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="its arguments", examples=[{"job_id": "j1"}]
    )
    connection_id: str | None = Field(
        None,
        max_length=100,
        description="the caller's stream, if it has one (its `connected` message names it)",
    )


class CommandResult(BaseModel):
    """What the command answered."""

    result: Any = Field(description="the handler's (or the application's) JSON answer")


class BatchPublishRequest(BaseModel):
    """Up to 1,000 events, published in order."""

    model_config = ConfigDict(extra="forbid")

    events: list[PublishRequest]


class EventOut(BaseModel):
    """A stored event."""

    id: str = Field(description="opaque, unique within its channel; what `since` takes")
    channel: str
    type: str
    data: Any
    timestamp: str = Field(description="ISO-8601 UTC")


class EventsOut(BaseModel):
    events: list[EventOut]


class HistoryOut(BaseModel):
    events: list[EventOut] = Field(description="oldest first")
    complete: bool = Field(
        description="false when history no longer reaches back to `since`: refetch state"
    )
    position: str = Field(description="the channel's newest position when read")


class ChannelOut(BaseModel):
    channel: str
    subscribers: int = Field(description="connections following it on this node")
    events: int = Field(description="events in its history")
    last_event_at: str | None = Field(description="timestamp of its newest event, if any")


class ChannelList(BaseModel):
    channels: list[ChannelOut]


class ConnectionOut(BaseModel):
    id: str
    client_id: str | None
    tenant: str | None
    transport: str
    remote: str | None
    channels: list[str]
    connected_at: str
    queued: int
    state: str
    node: str = Field(description="the node (process) holding the connection")


class ConnectionList(BaseModel):
    connections: list[ConnectionOut] = Field(
        description="every node's connections: the answering node's as they are, the "
        "others' as they listed them within the last second or so (at most 1,000 each)"
    )


class PresenceOut(BaseModel):
    channel: str
    connections: int
    clients: list[str]


class ClientEventRequest(BaseModel):
    """An event for one client's personal channel."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field("message", description="application event type")
    data: Any = Field(None, description="any JSON value")


class DisconnectRequest(BaseModel):
    """Why a client is disconnected, and whether its current tokens are revoked."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        "disconnected",
        pattern=r"^[a-z0-9_]{1,64}$",
        examples=["token_revoked"],
        description="sent to the client in its disconnect message",
    )
    revoke: bool = Field(False, description="refuse its current tokens until they expire")
    event: ClientEventRequest | None = Field(
        None,
        description="published to the client's personal channel; each of its connections "
        "receives it right before the disconnect",
    )


class ClientsEventRequest(ClientEventRequest):
    """One event for each listed client's personal channel."""

    client_ids: list[str] = Field(min_length=1, max_length=1000, description="client ids")


class ClientChannelRequest(BaseModel):
    """A channel to put a client on, or take it off (server-side subscription)."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(
        examples=["group:7"],
        # Documented, not enforced here: the hub's own check answers `invalid_channel`.
        json_schema_extra={"pattern": r"^[A-Za-z0-9_\-.:/@=]{1,200}$"},
        description="the channel",
    )


class ScheduledOut(BaseModel):
    """A pending scheduled event."""

    key: str = Field(description="what DELETE /api/v1/scheduled/{key} takes")
    channel: str
    type: str
    at: str = Field(description="when it is due, RFC 3339 UTC")
    data: Any = None


class ScheduledAnswer(BaseModel):
    """The answer to scheduling one event (202)."""

    scheduled: ScheduledOut


class ScheduledList(BaseModel):
    scheduled: list[ScheduledOut] = Field(description="soonest first")


class EventTypeOut(BaseModel):
    """A registered event type."""

    type: str = Field(examples=["onu.online"])
    channels: list[str] = Field(
        description="glob patterns of the channels it applies to; empty: every channel",
        examples=[["olt:*"]],
    )
    # Named `schema` on the wire; the attribute name would shadow BaseModel's.
    data_schema: dict[str, Any] = Field(
        alias="schema", description="the JSON Schema of the event's data"
    )


class EventTypesOut(BaseModel):
    """The hub's registered event types."""

    types: list[EventTypeOut]
    strict: bool = Field(description="unregistered types are refused (`unknown_event_type`)")


class FieldErrorOut(BaseModel):
    """One problem with a typed event's data."""

    path: str = Field(description="JSON pointer into the event's data", examples=["/serial"])
    message: str
