"""Access building blocks without a database: scopes, the policy table, password rules,
access tokens. Each guard gets inputs it must reject, one per rule."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from geogrid.access import tokens
from geogrid.access.passwords import (
    generate_password,
    hash_password,
    password_problems,
    verify_password,
)
from geogrid.access.policy import ANONYMOUS, POLICY, Principal, Role, check, relation_for
from geogrid.access.scope import Scope
from geogrid.errors import Forbidden, InvalidInput, Unauthenticated

TOWN = "420117105000"
VILLAGE = "420117105201"
GRID = "420117105201003"
SIBLING = "420117105201004"
OTHER_TOWN = "420117106000"

# --------------------------------------------------------------------------- scopes


@pytest.mark.parametrize(
    ("kind", "code", "why"),
    [
        ("town", "420117105201", "a town code ends in 000"),
        ("town", "42011710500", "11 digits"),
        ("village", "420117105000", "a village code does not end in 000"),
        ("village", "42011710520a", "not digits"),
        ("grid", "420117105201", "a grid code has 15 digits"),
        ("all", "420117105000", "all has no code"),
        ("county", "420117", "no such kind"),
    ],
)
def test_bad_scopes_are_refused(kind: str, code: str, why: str) -> None:
    with pytest.raises(InvalidInput, match="bad scope"):
        Scope(kind, code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "target", "covers", "overlaps"),
    [
        (TOWN, TOWN, True, True),
        (TOWN, VILLAGE, True, True),
        (TOWN, GRID, True, True),
        (TOWN, OTHER_TOWN, False, False),
        (TOWN, "420117106201", False, False),  # a village of another town
        (VILLAGE, GRID, True, True),
        (VILLAGE, VILLAGE, True, True),
        (VILLAGE, TOWN, False, True),  # the parent town
        (VILLAGE, "420117105202", False, False),  # a sibling village
        (GRID, GRID, True, True),
        (GRID, SIBLING, False, False),
        (GRID, VILLAGE, False, True),  # the parent village
        (GRID, TOWN, False, True),
        (GRID, OTHER_TOWN, False, False),
        ("all", OTHER_TOWN, True, True),
    ],
)
def test_scope_relations(scope: str, target: str, covers: bool, overlaps: bool) -> None:
    s = Scope.parse(scope)
    assert s.covers(target) is covers
    assert s.overlaps(target) is overlaps
    # the SQL prefix agrees with covers() for grid-level rows
    if len(target) == 15:
        assert target.startswith(s.prefix) is covers


def test_no_place_is_only_inside_all() -> None:
    assert Scope.parse("all").covers(None)
    assert not Scope.parse(TOWN).covers(None)
    assert not Scope.parse(TOWN).covers("")


# --------------------------------------------------------------------------- policy


def _p(role: Role, scope: str, *perms: str) -> Principal:
    return Principal(1, "u", role, Scope.parse(scope), frozenset(perms))


def test_every_action_is_documented_and_names_only_known_roles() -> None:
    known = {str(r) for r in Role} | {ANONYMOUS}
    for name, action in POLICY.items():
        assert action.description, name
        assert set(action.roles) <= known, name
        assert set(action.roles.values()) <= {"any", "overlaps", "covers"}, name


def test_the_three_administrators_are_separate() -> None:
    """三员分立: no action is shared by two of sysadmin, secadmin and auditor, except
    those every signed-in user has (their own account, public pages, map layers)."""
    public = {name for name, action in POLICY.items() if ANONYMOUS in action.roles}
    assert {"public.read", "auth.signin", "open311.submit"} <= public
    shared = public | {"auth.self", "layer.read", "calendar.read"}  # harmless to every role
    for name, action in POLICY.items():
        if name in shared:
            continue
        admins = {r for r in ("sysadmin", "secadmin", "auditor") if r in action.roles}
        assert len(admins) <= 1, (name, admins)
    assert "audit.read" in POLICY and set(POLICY["audit.read"].roles) == {"auditor"}
    for personal in ("people.read", "people.unmask", "special.read", "case.read"):
        assert not {"sysadmin", "secadmin", "auditor"} & set(POLICY[personal].roles), personal


def test_unknown_action_is_a_configuration_error() -> None:
    with pytest.raises(Exception, match="not in the policy table"):
        relation_for(None, "plans.delete_everything")


@pytest.mark.parametrize(
    ("principal", "action", "target", "error"),
    [
        (None, "plan.read", TOWN, Unauthenticated),  # anonymous, not public
        (_p(Role.viewer, TOWN), "plan.write", TOWN, Forbidden),  # role
        (_p(Role.planner, OTHER_TOWN), "plan.write", TOWN, Forbidden),  # scope: covers
        (_p(Role.grid_worker, SIBLING), "case.read", GRID, Forbidden),  # sibling grid
        (_p(Role.grid_worker, GRID), "case.read", VILLAGE, Forbidden),  # parent village
        (_p(Role.grid_worker, GRID), "special.read", GRID, Forbidden),  # no permission
        (_p(Role.grid_worker, GRID), "people.unmask", GRID, Forbidden),  # no permission
        (_p(Role.sysadmin, "all"), "audit.read", None, Forbidden),  # 三员分立
        (_p(Role.auditor, "all"), "user.manage", None, Forbidden),
        (_p(Role.secadmin, "all"), "people.read", GRID, Forbidden),
        (_p(Role.planner, TOWN), "plan.read", OTHER_TOWN, Forbidden),  # overlaps
    ],
)
def test_check_refuses(
    principal: Principal | None, action: str, target: str | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        check(principal, action, target)


@pytest.mark.parametrize(
    ("principal", "action", "target"),
    [
        (None, "public.read", None),
        (_p(Role.planner, TOWN), "plan.write", TOWN),
        (_p(Role.grid_worker, GRID), "plan.read", TOWN),  # overlaps: the parent town
        (_p(Role.grid_worker, GRID, "special"), "special.read", GRID),
        (_p(Role.village_leader, VILLAGE, "unmask"), "people.unmask", GRID),
        (_p(Role.sysadmin, "all"), "staff.assign", GRID),
        (_p(Role.auditor, "all"), "audit.read", None),
    ],
)
def test_check_allows(principal: Principal | None, action: str, target: str | None) -> None:
    check(principal, action, target)


# --------------------------------------------------------------------------- passwords


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Ab1-xyz", "至少 10"),
        ("abcdefghijkl", "三类"),
        ("alice-Grid-2026", "用户名"),
        ("Password123", "常见"),
        ("Gr1d-w\x00rkers-2026", "NUL"),
        ("A1-" + "x" * 130, "128"),
    ],
)
def test_password_rules_refuse(password: str, rule: str) -> None:
    problems = password_problems(password, username="alice")
    assert any(rule in p for p in problems), problems


def test_hashes_are_argon2_salted_and_verify() -> None:
    pw = generate_password()
    h1, h2 = hash_password(pw), hash_password(pw)
    assert h1.startswith("$argon2id$") and h1 != h2
    assert verify_password(pw, h1) and not verify_password(pw + "x", h1)
    assert not verify_password(pw, "not-a-hash")


# --------------------------------------------------------------------------- access tokens

SECRET = b"k" * 48


def test_access_token_round_trip() -> None:
    token, ttl = tokens.issue_access_token(SECRET, user_id=7, minutes=5)
    assert ttl == 300 and tokens.read_access_token(SECRET, token) == 7


def _forged(**changes: object) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": "7",
        "iss": "geogrid",
        "aud": "geogrid-api",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "typ": "access",
    }
    key = changes.pop("key", SECRET)
    alg = changes.pop("alg", "HS256")
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=alg)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("not.a.token", "malformed"),
        ("", "empty"),
        (_forged(key=b"x" * 48), "signed with another key"),
        (_forged(exp=datetime.now(UTC) - timedelta(seconds=1)), "expired"),
        (_forged(nbf=datetime.now(UTC) + timedelta(hours=1)), "not yet valid"),
        (_forged(aud="geogrid-embed"), "an embed token's audience"),
        (_forged(iss="someone-else"), "another issuer"),
        (_forged(typ="refresh"), "not an access token"),
        (_forged(sub="admin"), "a subject that is no user id"),
        (_forged(exp=None), "no expiry"),
        (jwt.encode({"sub": "7"}, key="", algorithm="none"), "alg none"),
    ],
)
def test_bad_access_tokens_are_refused(token: str, why: str) -> None:
    with pytest.raises(Unauthenticated):
        tokens.read_access_token(SECRET, token)


def test_tampered_payload_fails_the_signature() -> None:
    token, _ = tokens.issue_access_token(SECRET, user_id=7, minutes=5)
    head, _body, sig = token.split(".")
    other, _ = tokens.issue_access_token(SECRET, user_id=8, minutes=5)
    with pytest.raises(Unauthenticated):
        tokens.read_access_token(SECRET, f"{head}.{other.split('.')[1]}.{sig}")


def test_a_remembered_token_still_expires() -> None:
    """The signature is checked once per token; the expiry on every use."""
    token = _forged(exp=datetime.now(UTC) + timedelta(seconds=2))
    assert tokens.read_access_token(SECRET, token) == 7  # verified and remembered
    assert tokens.read_access_token(SECRET, token) == 7  # from memory
    time.sleep(2.1)
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.read_access_token(SECRET, token)


def test_a_remembered_token_is_not_valid_under_another_secret() -> None:
    token, _ = tokens.issue_access_token(SECRET, user_id=7, minutes=5)
    assert tokens.read_access_token(SECRET, token) == 7
    with pytest.raises(Unauthenticated):
        tokens.read_access_token(b"z" * 48, token)  # a rotated server secret
