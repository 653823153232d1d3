"""``geogrid user|audit|embed|layer``: accounts, the audit log, embed tokens, public layers.

These run on the server with the database owner's rights (whoever can run them can read
``GEOGRID_HOME``); each change is written to the audit log as done by ``cli:<login>``.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine

from geogrid import store
from geogrid.access import audit, users
from geogrid.access import embed as embeds
from geogrid.access.keys import server_secret
from geogrid.access.policy import PERMISSIONS, ROLE_NAMES, Principal, Role
from geogrid.access.scope import Scope
from geogrid.errors import GeogridError
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)
user_app = typer.Typer(
    help="Accounts: add, list, disable, enable, reset-password, grant.", no_args_is_help=True
)
audit_app = typer.Typer(
    help="The audit log: verify its hash chain, search it.", no_args_is_help=True
)
embed_app = typer.Typer(
    help="Embed tokens for other portals: issue, list, revoke.", no_args_is_help=True
)
layer_app = typer.Typer(help="Which layers anonymous users may see.", no_args_is_help=True)


def cli_actor() -> Principal:
    """The person at the console, as the audit log names them."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return Principal(0, f"cli:{login}"[:64], Role.sysadmin, Scope("all"))


@contextmanager
def _conn() -> Iterator[Connection]:
    settings = Settings()
    engine = store.make_engine(store.database_url(settings))
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _log(conn: Connection, action: str, target: str, **detail: object) -> None:
    audit.record(
        conn,
        actor=cli_actor(),
        action=action,
        target_type="user",
        target_ids=[target],
        detail=detail,
    )


@user_app.command("add")
def user_add(
    username: str = typer.Argument(..., help="Login name (letters, digits, _ . @ -)."),
    role: Role = typer.Option(..., help="One role; the three administrator roles stay apart."),
    scope: str = typer.Option("all", help="all, or a town, village or grid code."),
    name: str | None = typer.Option(None, help="Display name."),
) -> None:
    """Create an account; its generated password is printed once (change at first sign-in)."""
    with _conn() as conn:
        user, password = users.add_user(
            conn, username=username, role=role, scope=Scope.parse(scope), display_name=name
        )
        _log(conn, "user.add", username, role=str(role), scope=str(user.scope))
    console.print(f"{user.username}  {ROLE_NAMES[user.role]}  {user.scope}  password: {password}")


@user_app.command("list")
def user_list() -> None:
    """Every account with role, scope, permissions and state."""
    with _conn() as conn:
        found = users.list_users(conn)
    table = Table("user", "role", "scope", "permissions", "state", "last sign-in")
    for u in found:
        state = (
            "disabled"
            if u.disabled
            else ("must change password" if u.must_change_password else "active")
        )
        table.add_row(
            u.username,
            f"{u.role} {ROLE_NAMES[u.role]}",
            str(u.scope),
            ",".join(u.permissions),
            state,
            u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "",
        )
    console.print(table)


def _set_disabled(username: str, *, disabled: bool) -> None:
    word = "disable" if disabled else "enable"
    with _conn() as conn:
        users.set_disabled(conn, username=username, disabled=disabled)
        _log(conn, f"user.{word}", username)
    console.print(f"{username} {word}d")


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Disable an account: its sessions and tokens stop working at once."""
    _set_disabled(username, disabled=True)


@user_app.command("enable")
def user_enable(username: str) -> None:
    """Enable an account (and clear a lockout)."""
    _set_disabled(username, disabled=False)


@user_app.command("reset-password")
def user_reset(username: str) -> None:
    """Print a new generated password, to be changed at the next sign-in."""
    with _conn() as conn:
        password = users.reset_password(conn, username=username)
        _log(conn, "user.reset_password", username)
    console.print(f"{username}  password: {password}")


@user_app.command("grant")
def user_grant(
    username: str,
    permission: list[str] = typer.Argument(..., help=f"One of {', '.join(PERMISSIONS)}."),
    revoke: bool = typer.Option(False, "--revoke", help="Take the permissions away."),
) -> None:
    """Grant (or --revoke) the extra permissions: special, unmask."""
    with _conn() as conn:
        user = users.set_permissions(
            conn,
            username=username,
            grant=[] if revoke else permission,
            revoke=permission if revoke else [],
        )
        _log(
            conn,
            "user.grant",
            username,
            grant=[] if revoke else permission,
            revoke=permission if revoke else [],
        )
    console.print(f"{username}: {', '.join(user.permissions) or 'no extra permissions'}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain; exit 1 at the first entry that does not fit."""
    with _conn() as conn:
        result = audit.verify(conn)
    if not result.ok:
        raise GeogridError(f"audit log broken at entry {result.broken_at}: {result.reason}")
    console.print(f"audit log intact: {result.entries} entries; head {result.head}")


@audit_app.command("search")
def audit_search(
    actor: str | None = typer.Option(None),
    action: str | None = typer.Option(None, help="Action or its prefix, e.g. people."),
    target: str | None = typer.Option(None),
    limit: int = typer.Option(50, min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The newest matching entries."""
    with _conn() as conn:
        entries, total = audit.search(conn, actor=actor, action=action, target=target, limit=limit)
        audit.record(conn, actor=cli_actor(), action="audit.read", target_type="audit_log")
    if as_json:
        console.print_json(json.dumps([e.__dict__ for e in entries], default=str))
        return
    table = Table("id", "at", "actor", "action", "outcome", "targets", title=f"{total} matching")
    for e in entries:
        table.add_row(
            str(e.id),
            e.at.isoformat(timespec="seconds"),
            e.actor or "",
            e.action,
            e.outcome,
            ",".join(e.target_ids),
        )
    console.print(table)


@audit_app.command("maintain")
def audit_maintain(months: int = typer.Option(3, min=1, max=24)) -> None:
    """Create the audit log's monthly partitions ahead (also done by db up and serve)."""
    with _conn() as conn:
        made = audit.ensure_partitions(conn, months_ahead=months)
    console.print(f"partitions created: {', '.join(made) or 'none needed'}")


@embed_app.command("issue")
def embed_issue(
    name: str = typer.Option(..., help="Who it is for, e.g. 区政务门户."),
    layer: list[str] = typer.Option(..., help=f"Layers: {', '.join(embeds.EMBEDDABLE)}."),
    origin: list[str] = typer.Option(..., help="Allowed origin, e.g. http://portal.gov.cn."),
    days: int = typer.Option(365, min=1, max=3660),
) -> None:
    """Issue a signed, read-only embed token (printed once)."""
    settings = Settings()
    with _conn() as conn:
        grant, token = embeds.issue(
            conn,
            server_secret(settings),
            name=name,
            layers=layer,
            origins=origin,
            days=days,
            issued_by=cli_actor().username,
        )
        audit.record(
            conn,
            actor=cli_actor(),
            action="embed.issue",
            target_type="embed_token",
            target_ids=[grant.id],
            detail={"layers": layer, "origins": origin},
        )
    console.print(f"id {grant.id}, expires {grant.expires_at:%Y-%m-%d}")
    console.print(f"/embed/{layer[0]}?embed_token={token}")


@embed_app.command("list")
def embed_list() -> None:
    with _conn() as conn:
        grants = embeds.list_grants(conn)
    table = Table("id", "name", "layers", "origins", "expires", "live")
    for g, live in grants:
        table.add_row(
            g.id,
            g.name,
            ",".join(g.layers),
            ",".join(g.origins),
            f"{g.expires_at:%Y-%m-%d}",
            "yes" if live else "no",
        )
    console.print(table)


@embed_app.command("revoke")
def embed_revoke(token_id: str) -> None:
    with _conn() as conn:
        embeds.revoke(conn, token_id)
        audit.record(
            conn,
            actor=cli_actor(),
            action="embed.revoke",
            target_type="embed_token",
            target_ids=[token_id],
        )
    console.print(f"embed token {token_id} revoked")


@layer_app.command("public")
def layer_public(
    layer: str, hide: bool = typer.Option(False, "--hide", help="Make it non-public.")
) -> None:
    """Make a layer public (anonymous users see it) or, with --hide, not."""
    with _conn() as conn:
        embeds.set_public(conn, layer=layer, public=not hide, by=cli_actor().username)
        audit.record(
            conn,
            actor=cli_actor(),
            action="layer.publish",
            target_type="layer",
            target_ids=[layer],
            detail={"public": not hide},
        )
        shown = sorted(embeds.public_layers(conn))
    console.print(f"public layers: {', '.join(shown) or 'none'}")


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.add_typer(audit_app, name="audit")
    app.add_typer(embed_app, name="embed")
    app.add_typer(layer_app, name="layer")


def ensure_demo_users(conn: Connection, *, town_code: str) -> list[tuple[str, str, str, str]]:
    """One demo user per role (``demo-<role>``) with a fresh generated password each run.

    Returns (user, role, scope, password) rows to print once; nothing is stored in clear.
    """
    from sqlalchemy import text

    village = conn.execute(
        text("SELECT code FROM admin_areas WHERE parent_code = :t ORDER BY code LIMIT 1"),
        {"t": town_code},
    ).scalar()
    grid = conn.execute(
        text(
            "SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id "
            "WHERE p.status = 'active' AND p.town_code = :t AND g.level = 3 "
            "AND g.village_code = :v ORDER BY g.code LIMIT 1"
        ),
        {"t": town_code, "v": village},
    ).scalar()
    scopes = {
        Role.sysadmin: "all",
        Role.secadmin: "all",
        Role.auditor: "all",
        Role.planner: town_code,
        Role.town_leader: town_code,
        Role.viewer: town_code,
        Role.village_leader: village,
        Role.grid_worker: grid,
    }
    rows = []
    for role, scope in scopes.items():
        if not scope:
            continue
        username = f"demo-{role}".replace("_", "-")
        try:
            users.get_user(conn, username=username)
            password = users.reset_password(conn, username=username)
        except GeogridError:
            _, password = users.add_user(
                conn,
                username=username,
                role=role,
                scope=Scope.parse(scope),
                display_name=f"演示{ROLE_NAMES[role]}",
            )
        if role in (Role.town_leader, Role.village_leader, Role.grid_worker):
            users.set_permissions(conn, username=username, grant=["special", "unmask"], revoke=[])
        _log(conn, "user.demo", username, role=str(role))
        rows.append((username, ROLE_NAMES[role], str(Scope.parse(scope)), password))
    return rows


def audit_write(
    engine: Engine,
    action: str,
    *,
    target_type: str,
    target_ids: list[str],
    detail: dict[str, object] | None = None,
) -> None:
    """Record a write done at the console (imports, plans) in the audit log."""
    with engine.begin() as conn:
        audit.record(conn, actor=cli_actor(), action=action, target_type=target_type,
                     target_ids=target_ids, detail=detail)  # fmt: skip
