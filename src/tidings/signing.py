"""Standard Webhooks signatures: what the hub adds to a request it sends an application,
and what a receiver checks (https://www.standardwebhooks.com).

A signed request carries three headers: ``webhook-id`` (unique per message, the
receiver's idempotency key), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature``: space-separated ``v1,<base64>`` entries, each an HMAC-SHA256 of
``"{id}.{timestamp}.{body}"``. A secret is ``whsec_`` followed by the base64 of the key,
or any other string, used as its own UTF-8 bytes.

Sans-I/O: bytes and mappings in, strings out; no clock unless none is given. Used by
commands forwarded to an application and, later, by webhook deliveries. This module
never logs, and no error it raises holds a secret or a signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from tidings.errors import InvalidSignature

__all__ = [
    "DEFAULT_TOLERANCE",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "generate_secret",
    "new_message_id",
    "secret_key",
    "sign",
    "signed_headers",
    "verify",
]

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
#: Seconds a timestamp may be away from the receiver's clock, either way (the spec's 5 min).
DEFAULT_TOLERANCE = 300.0
_PREFIX = "whsec_"


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of ``secret``: the decoded base64 of a ``whsec_`` secret, else its bytes."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith(_PREFIX):
        try:
            return base64.b64decode(secret[len(_PREFIX) :], validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ secret must be followed by base64") from None
    return secret.encode()


def generate_secret() -> str:
    """A fresh ``whsec_`` secret of 24 random bytes."""
    return _PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def new_message_id() -> str:
    return f"msg_{secrets.token_urlsafe(18)}"


def sign(secret: str | bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` sent as ``message_id`` at ``timestamp``."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str | bytes,
    body: bytes,
    *,
    message_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three headers that make a request carrying ``body`` verifiable."""
    message_id = message_id or new_message_id()
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, message_id, timestamp, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise InvalidSignature(f"the {name} header is missing")


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Raise :class:`InvalidSignature` unless ``headers`` sign ``body`` with ``secret``
    at a time within ``tolerance`` seconds of ``now``. Header names are matched
    regardless of case; one matching ``v1`` entry among several is enough."""
    message_id = _header(headers, ID_HEADER)
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    signatures = _header(headers, SIGNATURE_HEADER)
    if not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
        raise InvalidSignature("the webhook-timestamp header is not Unix seconds")
    timestamp = int(raw_timestamp)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("the webhook-timestamp is too far from the current time")
    expected = sign(secret, message_id, timestamp, body).encode()
    for entry in signatures.split():
        # Other versions (v1a, …) are for other schemes: skipped, never an error.
        if entry.startswith("v1,") and hmac.compare_digest(entry.encode(), expected):
            return
    raise InvalidSignature("no signature in webhook-signature matches")
