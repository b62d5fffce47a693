"""JSON Web Tokens: verification into an :class:`Identity`, and minting for development.

Only the algorithms that fit the configured key are accepted: HS256 with a shared
secret, RS256/ES256 with a PEM public key or a JWKS file. ``alg: none``, any other
algorithm, a bad signature, an expired token, or a token without ``sub`` is refused
with :class:`~tidings.errors.Unauthorized`, whose message never contains the token.

Tokens the application already issues need not be re-issued: :class:`ClaimRules` reads
each claim the hub needs from the claim the application uses (``sub`` from
``username``), and turns roles into channel patterns.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from tidings.core.channels import personal_channel, validate_channel
from tidings.errors import InvalidChannel, Unauthorized
from tidings.identity import HUB_CLAIMS, Identity

__all__ = [
    "ClaimRules",
    "TokenVerifier",
    "claim_value",
    "identity_from_claims",
    "mint_token",
]

ASYMMETRIC = ("RS256", "ES256")
_TENANT_RE = re.compile(r"[A-Za-z0-9_\-.:@=]{1,64}")


_ABSENT = object()


def claim_value(claims: Mapping[str, Any], name: str, default: Any = _ABSENT) -> Any:
    """The claim ``name``; a dotted name that is not itself a claim is a path into nested
    objects (``realm_access.roles``). The literal name wins: claims named by URL
    (``https://example.com/roles``) contain dots too."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """How the claims of tokens the application already issues become an identity
    (``--jwt-claim``, ``--role-claim``, ``--role-channels``, ``--role-publish``).

    ``names`` maps a claim the hub reads (one of :data:`~tidings.identity.HUB_CLAIMS`)
    to the token claim it is read from; a hub claim that is mapped is read only from
    there. ``role_channels`` and ``role_publish`` map a role to the channel patterns it
    grants: they are added to the token's own ``channels`` and ``publish``, and tenant
    confinement still applies to all of them.
    """

    names: Mapping[str, str] = field(default_factory=dict)
    role_claim: str = "role"
    role_channels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    role_publish: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for hub, name in self.names.items():
            if hub not in HUB_CLAIMS:
                raise ValueError(f"{hub!r} is not a claim the hub reads: {', '.join(HUB_CLAIMS)}")
            if not name:
                raise ValueError(f"the claim {hub!r} is read from is empty")

    def hub_view(self, claims: Mapping[str, Any]) -> dict[str, Any]:
        """``claims`` under the hub's names: each mapped hub claim read from its claim."""
        view = dict(claims)
        for hub, name in self.names.items():
            value = claim_value(claims, name)
            if value is _ABSENT:
                view.pop(hub, None)
            else:
                view[hub] = value
        return view

    def described(self, hub: str) -> str:
        """How an error names hub claim ``hub``: ``'username' (read as sub)``."""
        name = self.names.get(hub)
        return f"{hub!r}" if name is None else f"{name!r} (read as {hub})"

    def roles(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        """The roles ``claims`` give, if roles grant anything here (else none are read)."""
        if not (self.role_channels or self.role_publish):
            return ()
        value = claim_value(claims, self.role_claim)
        if value is _ABSENT or value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise Unauthorized(
            f"claim {self.role_claim!r} must be a role or a list of roles", code="invalid_token"
        )


#: Tokens made for the hub: every claim under its own name, no roles.
PLAIN_CLAIMS = ClaimRules()


def _patterns(view: Mapping[str, Any], name: str, rules: ClaimRules) -> tuple[str, ...]:
    value = view.get(name, ())
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise Unauthorized(
            f"claim {rules.described(name)} must be a list of patterns",
            code="invalid_token",
        )
    return tuple(value)


def _granted(
    own: tuple[str, ...], roles: tuple[str, ...], grants: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    patterns = list(own)
    for role in roles:
        patterns.extend(p for p in grants.get(role, ()) if p not in patterns)
    return tuple(patterns)


def identity_from_claims(claims: Mapping[str, Any], rules: ClaimRules = PLAIN_CLAIMS) -> Identity:
    """Build an identity from verified claims (SPEC §6), read as ``rules`` say (§8)."""
    view = rules.hub_view(claims)
    sub = view.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized(
            f"the token has no subject ({rules.described('sub')})", code="invalid_token"
        )
    tenant = view.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise Unauthorized(
            f"claim {rules.described('tenant')} must be a non-empty string", code="invalid_token"
        )
    if tenant is not None and _TENANT_RE.fullmatch(tenant) is None:
        # No "/": tenant "acme/evil" would own channels under "tenant:acme/".
        raise Unauthorized(
            f"claim {rules.described('tenant')} must be 1-64 letters, digits, _ - . : @ =",
            code="invalid_token",
        )
    try:
        validate_channel(personal_channel(sub, tenant))
    except InvalidChannel:
        # The subject names the personal channel, and channel names are written as they
        # are into SSE `id:` lines: a line break would forge fields, `,` `;` break cursors.
        raise Unauthorized(
            f"claim {rules.described('sub')} must fit in the personal channel name "
            "client:<sub>: letters, digits and _ - . : / @ = (at most 200 in all)",
            code="invalid_token",
        ) from None
    roles = rules.roles(claims)
    exp = view.get("exp")
    jti = view.get("jti")
    return Identity(
        client_id=sub,
        tenant=tenant,
        admin=view.get("admin") is True,
        subscribe=_granted(_patterns(view, "channels", rules), roles, rules.role_channels),
        publish=_granted(_patterns(view, "publish", rules), roles, rules.role_publish),
        commands=_patterns(view, "commands", rules),
        expires_at=float(exp) if isinstance(exp, int | float) else None,
        token_id=jti if isinstance(jti, str) else None,
        issued_at=float(view["iat"]) if isinstance(view.get("iat"), int | float) else None,
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
        rules: ClaimRules = PLAIN_CLAIMS,
    ) -> None:
        if not (secret or public_key or jwks):
            raise ValueError("a TokenVerifier needs a secret, a public key or a JWKS")
        self._secret = secret
        self._public_key = public_key
        self._jwks = jwt.PyJWKSet.from_dict(dict(jwks)) if jwks else None
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.rules = rules

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
        rules: ClaimRules = PLAIN_CLAIMS,
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
            rules=rules,
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
                # `sub` may be read from another claim: identity_from_claims requires it.
                options={
                    "require": ["exp"],
                    "verify_aud": self.audience is not None,
                    # A token whose subject is elsewhere may use `sub` for anything.
                    "verify_sub": "sub" not in self.rules.names,
                },
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
        return identity_from_claims(claims, self.rules)

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
