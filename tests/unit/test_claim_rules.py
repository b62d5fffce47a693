"""Tokens the application already issues (SPEC §8 "Existing tokens"): claims read from
the application's own claim names, roles turned into channel patterns, and the settings
that configure both."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from tidings.auth.authenticator import Authenticator
from tidings.auth.revocation import Revocations
from tidings.auth.tokens import ClaimRules, TokenVerifier, identity_from_claims
from tidings.errors import Unauthorized
from tidings.settings import Settings, SettingsError, load_settings, parse_role_patterns

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


def _token(**claims: Any) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, SECRET, algorithm="HS256")


def _refusal(rules: ClaimRules, claims: dict[str, Any]) -> str:
    with pytest.raises(Unauthorized) as caught:
        identity_from_claims(claims, rules)
    assert caught.value.code == "invalid_token"
    return caught.value.message


# -- claim names ----------------------------------------------------------------------


def test_an_existing_token_without_sub_is_read_through_the_mapping() -> None:
    token = _token(username="ann", role="viewer")
    plain = TokenVerifier(secret=SECRET)
    with pytest.raises(Unauthorized, match=r"no subject \('sub'\)"):
        plain.verify(token)
    mapped = TokenVerifier(secret=SECRET, rules=ClaimRules(names={"sub": "username"}))
    identity = mapped.verify(token)
    assert identity.client_id == "ann"
    assert identity.claims == jwt.decode(token, SECRET, algorithms=["HS256"])  # as issued


def test_a_mapped_claim_is_read_only_from_its_claim() -> None:
    rules = ClaimRules(names={"sub": "username", "channels": "topics", "publish": "writes"})
    claims = {"sub": 17, "username": "ann", "channels": ["*"], "topics": ["news:*"]}
    identity = identity_from_claims(claims, rules)
    assert identity.client_id == "ann"
    assert identity.subscribe == ("news:*",)  # not the token's own `channels`
    assert identity.publish == ()
    assert "(read as sub)" in _refusal(rules, {"sub": "ann"})


def test_a_numeric_sub_does_not_refuse_a_token_whose_subject_is_elsewhere() -> None:
    token = _token(sub=12345, username="ann")
    verifier = TokenVerifier(secret=SECRET, rules=ClaimRules(names={"sub": "username"}))
    assert verifier.verify(token).client_id == "ann"
    with pytest.raises(Unauthorized):
        TokenVerifier(secret=SECRET).verify(token)


def test_every_hub_claim_can_be_mapped() -> None:
    rules = ClaimRules(
        names={
            "sub": "uid",
            "tenant": "org",
            "channels": "read",
            "publish": "write",
            "admin": "is_admin",
            "commands": "may_run",
        }
    )
    claims = {
        "uid": "ann",
        "org": "acme",
        "read": ["tenant:acme/*"],
        "write": "tenant:acme/out",
        "is_admin": True,
        "may_run": ["job.*"],
    }
    identity = identity_from_claims(claims, rules)
    assert (identity.client_id, identity.tenant, identity.admin) == ("ann", "acme", True)
    assert identity.subscribe == ("tenant:acme/*",)
    assert identity.publish == ("tenant:acme/out",)
    assert rules.hub_view(claims)["commands"] == ["job.*"]  # read once Identity has commands


def test_a_dotted_name_reads_a_nested_claim_but_a_literal_claim_wins() -> None:
    rules = ClaimRules(names={"sub": "user.name", "tenant": "https://example.com/org"})
    nested = {"user": {"name": "ann"}, "https://example.com/org": "acme"}
    identity = identity_from_claims(nested, rules)
    assert (identity.client_id, identity.tenant) == ("ann", "acme")
    literal = {"user.name": "bob", "user": {"name": "ann"}}
    assert identity_from_claims(literal, rules).client_id == "bob"
    _refusal(rules, {"user": "ann"})  # not an object: no such path


@pytest.mark.parametrize("tenant", ["acme/evil", "", 7, "x" * 65])
def test_a_mapped_tenant_is_validated_as_a_tenant_claim_is(tenant: Any) -> None:
    rules = ClaimRules(names={"tenant": "org"})
    message = _refusal(rules, {"sub": "ann", "org": tenant})
    assert "'org' (read as tenant)" in message


def test_a_mapped_admin_must_still_be_literally_true() -> None:
    rules = ClaimRules(names={"admin": "staff"})
    assert identity_from_claims({"sub": "a", "staff": "yes"}, rules).admin is False
    assert identity_from_claims({"sub": "a", "staff": True, "admin": True}, rules).admin is True
    assert identity_from_claims({"sub": "a", "admin": True}, rules).admin is False


@pytest.mark.parametrize(
    ("names", "said"), [({"user": "username"}, "not a claim"), ({"sub": ""}, "empty")]
)
def test_claim_rules_refuse_unknown_hub_claims_and_empty_names(
    names: dict[str, str], said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        ClaimRules(names=names)


# -- roles ----------------------------------------------------------------------------

ROLES = ClaimRules(
    role_channels={"viewer": ("dash:*",), "ops": ("ops:*", "dash:*")},
    role_publish={"ops": ("ops:*",)},
)


def test_roles_grant_subscribe_and_publish_patterns() -> None:
    viewer = identity_from_claims({"sub": "ann", "role": "viewer"}, ROLES)
    assert viewer.subscribe == ("dash:*",)
    assert viewer.publish == ()
    assert viewer.may_subscribe("dash:1") and not viewer.may_publish("dash:1")
    both = identity_from_claims(
        {"sub": "bo", "role": ["viewer", "ops", "unknown"], "channels": ["own"]}, ROLES
    )
    assert both.subscribe == ("own", "dash:*", "ops:*")  # the token's own first, no repeats
    assert both.publish == ("ops:*",)


def test_no_role_grants_nothing_and_a_bad_role_claim_is_refused() -> None:
    nobody = identity_from_claims({"sub": "ann"}, ROLES)
    assert (nobody.subscribe, nobody.publish) == ((), ())
    assert "'role' must be a role" in _refusal(ROLES, {"sub": "ann", "role": {"x": 1}})
    # Without role rules, the role claim is the application's business, not the hub's.
    assert identity_from_claims({"sub": "ann", "role": {"x": 1}}).subscribe == ()


def test_roles_never_reach_across_tenants() -> None:
    rules = ClaimRules(
        role_channels={"viewer": ("*", "tenant:globex/*")}, role_publish={"viewer": ("*",)}
    )
    identity = identity_from_claims({"sub": "ann", "tenant": "acme", "role": "viewer"}, rules)
    assert identity.may_subscribe("tenant:acme/alerts")
    assert not identity.may_subscribe("tenant:globex/alerts")
    assert not identity.may_publish("tenant:globex/alerts")
    assert not identity.may_subscribe("dash:1")


def test_the_role_claim_can_be_renamed_and_nested_and_applies_to_mapped_tokens() -> None:
    rules = ClaimRules(
        names={"sub": "preferred_username"},
        role_claim="realm_access.roles",
        role_channels={"viewer": ("dash:*",)},
    )
    claims = {"preferred_username": "ann", "realm_access": {"roles": ["viewer"]}, "role": "ops"}
    identity = identity_from_claims(claims, rules)
    assert (identity.client_id, identity.subscribe) == ("ann", ("dash:*",))


# -- settings -------------------------------------------------------------------------


def test_settings_carry_the_rules_to_the_authenticator() -> None:
    settings = Settings(
        jwt_secret=SECRET,
        jwt_claims={"sub": "username"},
        role_channels={"viewer": ("dash:*",)},
        role_publish={"viewer": ("dash:notes",)},
    )
    identity = Authenticator(settings, Revocations()).authenticate(
        _token(username="ann", role="viewer")
    )
    assert (identity.client_id, identity.subscribe, identity.publish) == (
        "ann",
        ("dash:*",),
        ("dash:notes",),
    )


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"jwt_claims": {"user": "username"}}, "'user' is not a claim the hub reads"),
        ({"jwt_claims": {"sub": " "}}, "is read from is empty"),
        ({"role_channels": {"viewer": ()}}, "ROLE=PATTERN"),
        ({"role_publish": {"": ("x",)}}, "ROLE=PATTERN"),
        ({"role_claim": ""}, "role_claim"),
    ],
)
def test_bad_mappings_are_a_settings_error_naming_the_setting(
    overrides: dict[str, Any], said: str
) -> None:
    with pytest.raises(SettingsError, match=said) as caught:
        load_settings(**overrides)
    assert next(iter(overrides)) in caught.value.message


def test_mappings_from_the_environment_and_toml(tmp_path: Path) -> None:
    env = {
        "TIDINGS_JWT_CLAIMS": "sub=username,tenant=org.id",
        "TIDINGS_ROLE_CHANNELS": "viewer=dash:*,alerts,ops=ops:*",
        "TIDINGS_ROLE_CLAIM": "roles",
    }
    settings = load_settings(environ=env)
    assert settings.jwt_claims == {"sub": "username", "tenant": "org.id"}
    assert settings.role_channels == {"viewer": ("dash:*", "alerts"), "ops": ("ops:*",)}
    assert settings.role_claim == "roles"
    config = tmp_path / "tidings.toml"
    config.write_text(
        '[tidings]\njwt_claims = {sub = "username"}\n'
        'role_publish = {ops = "ops:*", viewer = ["a", "b"]}\n'
    )
    settings = load_settings(config_file=config)
    assert settings.jwt_claims == {"sub": "username"}
    assert settings.role_publish == {"ops": ("ops:*",), "viewer": ("a", "b")}
    with pytest.raises(SettingsError, match="TIDINGS_JWT_CLAIMS: claims are mapped as HUB=CLAIM"):
        load_settings(environ={"TIDINGS_JWT_CLAIMS": "username"})


def test_role_patterns_may_repeat_the_role_or_continue_after_a_comma() -> None:
    assert parse_role_patterns(["ops=a", "ops=b,c", "viewer=tenant:x=y/*", "ops=a"]) == {
        "ops": ("a", "b", "c"),
        "viewer": ("tenant:x=y/*",),
    }
    for bad in (["dash:*"], ["=dash:*"], ["ops="]):
        with pytest.raises(ValueError, match="ROLE=PATTERN"):
            parse_role_patterns(bad)
