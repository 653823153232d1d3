"""``geogrid user|audit|embed|layer`` against a real database (typer's runner, in process)."""

from __future__ import annotations

import re

from sqlalchemy import Engine, text


def test_user_lifecycle(cli, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    out = cli("user", "add", "wang-grid", "--role", "grid_worker", "--scope", "420117105201003")
    password = re.search(r"password: (\S+)", out)
    assert password and len(password[1]) >= 16
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT password_hash, must_change_password FROM users WHERE username = 'wang-grid'"
            )
        ).one()
    assert stored[0].startswith("$argon2id$") and password[1] not in stored[0] and stored[1]
    assert "wang-grid" in cli("user", "list")
    cli("user", "grant", "wang-grid", "special", "unmask")
    cli("user", "disable", "wang-grid")
    cli("user", "enable", "wang-grid")
    new = re.search(r"password: (\S+)", cli("user", "reset-password", "wang-grid"))
    assert new and new[1] != password[1]
    # refused: a second role for an administrator is impossible (one role per user), a
    # scope that does not fit the role, an unknown permission, a duplicate name
    cli("user", "add", "wang-grid", "--role", "viewer", "--scope", "all", code=1)
    cli("user", "add", "admin2", "--role", "auditor", "--scope", "420117105000", code=1)
    cli("user", "add", "gw2", "--role", "grid_worker", "--scope", "420117105201", code=1)
    cli("user", "grant", "wang-grid", "superpowers", code=1)
    with engine.connect() as conn:
        actions = (
            conn.execute(
                text("SELECT action FROM audit_log WHERE 'wang-grid' = ANY(target_ids) ORDER BY id")
            )
            .scalars()
            .all()
        )
    assert actions == [
        "user.add",
        "user.grant",
        "user.disable",
        "user.enable",
        "user.reset_password",
    ]
    assert "intact" in cli("audit", "verify")


def test_embed_and_layer_commands(cli) -> None:  # type: ignore[no-untyped-def]
    out = cli(
        "embed",
        "issue",
        "--name",
        "portal",
        "--layer",
        "grids",
        "--origin",
        "http://portal.example",
        "--days",
        "30",
    )
    tid = re.search(r"id ([0-9a-f]{32})", out)
    assert tid and "embed_token=" in out
    assert "portal" in cli("embed", "list")
    cli("embed", "revoke", tid[1])
    cli("embed", "revoke", tid[1], code=1)
    cli("embed", "issue", "--name", "x", "--layer", "cases", "--origin", "http://a.b", code=1)
    assert "key_units" in cli("layer", "public", "key_units")
    assert "key_units" not in cli("layer", "public", "key_units", "--hide")
