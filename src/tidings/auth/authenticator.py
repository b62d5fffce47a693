"""From a request's credential to an :class:`Identity` (SPEC §6)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl

from tidings.auth.revocation import Revocations
from tidings.auth.tokens import ClaimRules, TokenVerifier
from tidings.errors import Unauthorized
from tidings.identity import ANONYMOUS, Identity
from tidings.settings import Settings

__all__ = ["Authenticator", "credential_from"]

Headers = Iterable[tuple[bytes, bytes]]


def credential_from(query_string: bytes, headers: Headers) -> str | None:
    """The token of a request: ``?token=``, then ``Authorization: Bearer``, then the
    ``access_token`` cookie (SPEC §6 order)."""
    for key, value in parse_qsl(query_string.decode("latin-1")):
        if key == "token" and value:
            return value
    cookie_header = None
    for name, raw in headers:
        if name == b"authorization":
            scheme, _, value = raw.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        elif name == b"cookie":
            cookie_header = raw.decode("latin-1")
    if cookie_header:
        try:
            cookies: SimpleCookie = SimpleCookie(cookie_header)
        except CookieError:
            return None
        morsel = cookies.get("access_token")
        if morsel is not None and morsel.value:
            return morsel.value
    return None


class Authenticator:
    """Turns credentials into identities; one per hub."""

    def __init__(self, settings: Settings, revocations: Revocations) -> None:
        self.open_mode = settings.open_mode
        self.revocations = revocations
        self._keys = [
            (name, key.get_secret_value().encode()) for name, key in settings.api_keys.items()
        ]
        self.verifier: TokenVerifier | None = None
        if settings.jwt_secret or settings.jwt_public_key or settings.jwks_file:
            self.verifier = TokenVerifier.from_files(
                secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
                public_key_file=settings.jwt_public_key,
                jwks_file=settings.jwks_file,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway=settings.jwt_leeway,
                rules=ClaimRules(
                    names=settings.jwt_claims,
                    role_claim=settings.role_claim,
                    role_channels=settings.role_channels,
                    role_publish=settings.role_publish,
                ),
            )

    def authenticate(self, credential: str | None) -> Identity:
        """The identity behind ``credential``; :class:`Unauthorized` when there is none."""
        if self.open_mode:
            return ANONYMOUS
        if credential is None:
            raise Unauthorized("a token or API key is required", code="unauthorized")
        encoded = credential.encode("utf-8", errors="replace")
        for name, key in self._keys:
            if hmac.compare_digest(encoded, key):
                return Identity(client_id=f"apikey:{name}", admin=True)
        if self.verifier is None:
            raise Unauthorized("not a valid API key", code="unauthorized")
        identity = self.verifier.verify(credential)
        if self.revocations.is_revoked(identity):
            raise Unauthorized("the token has been revoked", code="token_revoked")
        return identity

    def valid_until(self, identity: Identity) -> float | None:
        """When a connection of ``identity`` is closed with ``token_expired`` (its token's
        ``exp`` plus the leeway admission allows), or None if its credential never expires."""
        if identity.expires_at is None or self.verifier is None:
            return identity.expires_at
        return self.verifier.valid_until(identity.expires_at)
