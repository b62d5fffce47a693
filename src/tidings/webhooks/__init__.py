"""Webhooks (SPEC §9): events POSTed to registered endpoints, signed per Standard
Webhooks, through a durable outbox with retries.

For receivers: :func:`verify` checks a request the hub sent::

    from tidings.webhooks import verify
    verify(secret, request.headers, await request.body())   # raises InvalidSignature
"""

from __future__ import annotations

from tidings.signing import generate_secret, sign, verify

__all__ = ["generate_secret", "sign", "verify"]
