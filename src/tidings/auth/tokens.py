"""JSON Web Tokens: verification into an :class:`Identity`, and minting for development.

Only the algorithms that fit the configured key are accepted: HS256 with a shared
secret, RS256/ES256 with a PEM public key or a JWKS file. ``alg: none``, any other
algorithm, a bad signature, an expired token, or a token without ``sub`` is refused
with :class:`~tidings.errors.Unauthorized`, whose message never contains the token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt

from tidings.errors import Unauthorized
from tidings.identity import Identity

__all__ = ["TokenVerifier", "identity_from_claims", "mint_token"]

ASYMMETRIC = ("RS256", "ES256")
_TENANT_RE = re.compile(r"[A-Za-z0-9_\-.:@=]{1,64}")


def _patterns(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name, ())
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise Unauthorized(f"claim {name!r} must be a list of patterns", code="invalid_token")
    return tuple(value)


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """Build an identity from verified claims (SPEC §6)."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("the token has no subject (sub)", code="invalid_token")
    tenant = claims.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise Unauthorized("claim 'tenant' must be a non-empty string", code="invalid_token")
    if tenant is not None and _TENANT_RE.fullmatch(tenant) is None:
        # No "/": tenant "acme/evil" would own channels under "tenant:acme/".
        raise Unauthorized(
            "claim 'tenant' must be 1-64 letters, digits, _ - . : @ =", code="invalid_token"
        )
    exp = claims.get("exp")
    jti = claims.get("jti")
    return Identity(
        client_id=sub,
        tenant=tenant,
        admin=claims.get("admin") is True,
        subscribe=_patterns(claims, "channels"),
        publish=_patterns(claims, "publish"),
        commands=_patterns(claims, "commands"),
        expires_at=float(exp) if isinstance(exp, int | float) else None,
        token_id=jti if isinstance(jti, str) else None,
        issued_at=float(claims["iat"]) if isinstance(claims.get("iat"), int | float) else None,
        claims=dict(claims),
    )


class TokenVerifier:
    """Verifies tokens with the configured key material."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        if not (secret or public_key or jwks):
            raise ValueError("a TokenVerifier needs a secret, a public key or a JWKS")
        self._secret = secret
        self._public_key = public_key
        self._jwks = jwt.PyJWKSet.from_dict(dict(jwks)) if jwks else None
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

    @classmethod
    def from_files(
        cls,
        *,
        secret: str | None,
        public_key_file: str | None,
        jwks_file: str | None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> TokenVerifier:
        import orjson

        public_key = Path(public_key_file).read_text() if public_key_file else None
        jwks = orjson.loads(Path(jwks_file).read_bytes()) if jwks_file else None
        return cls(
            secret=secret,
            public_key=public_key,
            jwks=jwks,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
        )

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is malformed", code="invalid_token") from None
        alg = header.get("alg")
        if alg == "HS256" and self._secret:
            return self._secret, ["HS256"]
        if alg in ASYMMETRIC:
            if self._jwks is not None:
                kid = header.get("kid")
                # A key of another type would make PyJWT raise TypeError, not refuse.
                for key in self._jwks.keys:
                    if (kid is None or key.key_id == kid) and key.algorithm_name == alg:
                        return key.key, [alg]
                raise Unauthorized(
                    "no key matches the token's kid and algorithm", code="invalid_token"
                )
            if self._public_key:
                return self._public_key, [alg]
        raise Unauthorized(
            f"tokens signed with {str(alg)[:20]!r} are not accepted", code="invalid_token"
        )

    def verify(self, token: str, *, now: float | None = None) -> Identity:
        """The identity a valid token carries; :class:`Unauthorized` otherwise."""
        key, algorithms = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired", code="token_expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature is not valid", code="invalid_token") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(
                f"the token lacks the {exc.claim!r} claim", code="invalid_token"
            ) from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is for another audience", code="invalid_token") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token is from another issuer", code="invalid_token") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid", code="invalid_token") from None
        if now is not None and self.valid_until(float(claims["exp"])) <= now:
            raise Unauthorized("the token has expired", code="token_expired")
        return identity_from_claims(claims)

    def valid_until(self, expires_at: float) -> float:
        """When a token that expires at ``expires_at`` stops being accepted: the one rule
        for admission and for closing a connection, so that a token the hub admits is
        never closed the moment it connects."""
        return expires_at + self.leeway


def mint_token(
    secret: str,
    *,
    sub: str,
    ttl: float = 3600,
    channels: Iterable[str] = (),
    publish: Iterable[str] = (),
    commands: Iterable[str] = (),
    tenant: str | None = None,
    admin: bool = False,
    jti: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """An HS256 token for development and tests (``tidings token``)."""
    import secrets

    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "iat": now,
        "exp": now + int(ttl),
        "jti": jti or secrets.token_urlsafe(12),
        "channels": list(channels),
        "publish": list(publish),
    }
    if commands:
        claims["commands"] = list(commands)
    if tenant is not None:
        claims["tenant"] = tenant
    if admin:
        claims["admin"] = True
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm="HS256")
