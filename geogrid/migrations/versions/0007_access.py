"""Access: users, web sessions, refresh tokens, embed tokens, public layers, the audit log,
the web role and the SQL side of scopes (row-level security helpers).

* ``users``: one role each (三员分立: sysadmin, secadmin and auditor are separate roles, and a
  user holds exactly one role) and a scope (``all``, or a town, village or grid code).
* ``web_sessions`` and ``refresh_tokens`` store only SHA-256 hashes of their secrets.
* ``audit_log`` is append-only: a trigger refuses UPDATE and DELETE, a statement trigger
  refuses TRUNCATE, and the web role has only INSERT and SELECT. Each row carries the
  SHA-256 of the previous row's hash and its own canonical text (``geogrid audit verify``).
  It is partitioned by month; partitions are created ahead by :mod:`geogrid.access.audit`.
* ``geogrid_web`` is the role the web server runs as (``-c role=geogrid_web``): it owns no
  table, cannot read households' personal columns and is subject to the row-level
  security policies of the personal tables, which call ``geogrid_scope_allows(key)``.
* ``households.grid_code``: the basic grid of the town's active plan, kept in step at
  activation, so that scope filters and RLS are a prefix match.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_ROLE = "geogrid_web"
ROLES = (
    "sysadmin", "secadmin", "auditor", "planner",
    "town_leader", "village_leader", "grid_worker", "viewer",
)  # fmt: skip
#: households' columns the web role may not read (the register's personal data)
HOUSEHOLD_PERSONAL = ("head_name", "phone", "address_raw", "address_norm")


def _ts() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    ]  # fmt: skip


def upgrade() -> None:
    # -- households follow the active plan's grids -------------------------------------------
    op.add_column("households", sa.Column("grid_code", sa.String(15), nullable=True))
    op.create_index("ix_households_grid_code", "households", ["grid_code"])

    # -- users ------------------------------------------------------------------------------
    roles = ", ".join(f"'{r}'" for r in ROLES)
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scope_kind", sa.String(8), nullable=False),
        sa.Column("scope_code", sa.String(15), server_default="", nullable=False),
        sa.Column("permissions", ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True),
        *_ts(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
        sa.CheckConstraint(f"role IN ({roles})", name=op.f("ck_users_role")),
        sa.CheckConstraint(
            "(scope_kind = 'all' AND scope_code = '') OR "
            "(scope_kind IN ('town', 'village') AND scope_code ~ '^[0-9]{12}$') OR "
            "(scope_kind = 'grid' AND scope_code ~ '^[0-9]{15}$')",
            name=op.f("ck_users_scope"),
        ),
        sa.CheckConstraint("username ~ '^[A-Za-z0-9_.@-]{3,64}$'", name=op.f("ck_users_username")),
    )

    # -- web sessions (cookie) and refresh tokens (API) ------------------------------------
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False, comment="sha256 of the cookie value"),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_web_sessions_user_id_users")),
    )  # fmt: skip
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.String(64), nullable=False, comment="sha256 of the token"),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_refresh_tokens_user_id_users")),
    )  # fmt: skip
    op.create_index("ix_refresh_tokens_family", "refresh_tokens", ["family"])
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])

    # -- embed tokens and public layers ----------------------------------------------------
    op.create_table(
        "embed_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("layers", ARRAY(sa.Text()), nullable=False),
        sa.Column("origins", ARRAY(sa.Text()), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_by", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embed_tokens")),
    )  # fmt: skip
    op.create_table(
        "public_layers",
        sa.Column("layer", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("changed_by", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("layer", name=op.f("pk_public_layers")),
    )  # fmt: skip
    op.execute(
        "INSERT INTO public_layers (layer, public) VALUES "
        "('towns', true), ('villages', true), ('groups', true), ('grids', true), "
        "('households', false), ('key_units', false), ('inspection_points', false), "
        "('heat', false)"
    )

    # -- audit log: partitioned by month, hash-chained, append-only -------------------------
    op.execute(
        """
        CREATE TABLE audit_log (
            id bigint NOT NULL,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            actor_id integer,
            actor text,
            actor_role text,
            ip text,
            action text NOT NULL,
            outcome text NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
            target_type text,
            target_ids text[] NOT NULL DEFAULT '{}',
            detail jsonb NOT NULL DEFAULT '{}',
            prev_hash text NOT NULL,
            hash text NOT NULL,
            CONSTRAINT pk_audit_log PRIMARY KEY (id, at)
        ) PARTITION BY RANGE (at)
        """
    )
    op.execute("CREATE SEQUENCE audit_log_id_seq")
    op.execute("CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT")
    op.execute("CREATE INDEX ix_audit_log_at ON audit_log (at)")
    op.execute("CREATE INDEX ix_audit_log_actor ON audit_log (actor, at)")
    op.execute(
        """
        CREATE FUNCTION geogrid_audit_canonical(
            id bigint, at timestamptz, actor_id integer, actor text, actor_role text, ip text,
            action text, outcome text, target_type text, target_ids text[], detail jsonb,
            prev_hash text
        ) RETURNS text IMMUTABLE LANGUAGE sql AS $$
            SELECT concat_ws(E'\\x1f', id::text,
                to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                coalesce(actor_id::text, ''), coalesce(actor, ''), coalesce(actor_role, ''),
                coalesce(ip, ''), action, outcome, coalesce(target_type, ''),
                array_to_string(target_ids, ','), detail::text, prev_hash)
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION geogrid_audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE last text;
        BEGIN
            -- one writer at a time, so that each row names the row before it
            -- (the id is drawn under the lock: chain order is id order)
            PERFORM pg_advisory_xact_lock(hashtext('geogrid.audit_log'));
            NEW.id := nextval('audit_log_id_seq');
            SELECT hash INTO last FROM audit_log ORDER BY id DESC LIMIT 1;
            NEW.prev_hash := coalesce(last, repeat('0', 64));
            NEW.hash := encode(sha256(convert_to(geogrid_audit_canonical(
                NEW.id, NEW.at, NEW.actor_id, NEW.actor, NEW.actor_role, NEW.ip, NEW.action,
                NEW.outcome, NEW.target_type, NEW.target_ids, NEW.detail, NEW.prev_hash),
                'UTF8')), 'hex');
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION geogrid_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION geogrid_audit_chain()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION geogrid_audit_refuse()"
    )
    # row triggers do not fire on TRUNCATE: a statement trigger per partition table
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION geogrid_audit_refuse()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log_default "
        "FOR EACH STATEMENT EXECUTE FUNCTION geogrid_audit_refuse()"
    )

    # -- scope helpers for row-level security -----------------------------------------------
    op.execute(
        """
        CREATE FUNCTION geogrid_scope_allows(key text) RETURNS boolean STABLE LANGUAGE sql AS $$
            SELECT CASE coalesce(current_setting('geogrid.scope', true), '')
                WHEN '' THEN false
                WHEN '*' THEN true
                ELSE coalesce(key LIKE current_setting('geogrid.scope', true) || '%', false)
            END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION geogrid_special_allowed() RETURNS boolean STABLE LANGUAGE sql AS $$
            SELECT coalesce(current_setting('geogrid.special', true), '') = 'on'
        $$
        """
    )

    # -- the web role -------------------------------------------------------------------------
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WEB_ROLE}') THEN
                CREATE ROLE {WEB_ROLE} NOLOGIN;
            END IF;
        END $$
        """
    )
    op.execute(f"GRANT {WEB_ROLE} TO current_user")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {WEB_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {WEB_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {WEB_ROLE}")
    op.execute(f"GRANT TRUNCATE ON heat_daily, heat_cum, heat_dirty TO {WEB_ROLE}")
    # the register's personal columns: never readable by the web server
    op.execute(f"REVOKE SELECT, UPDATE ON households FROM {WEB_ROLE}")
    keep = [
        "id", "village_code", "register_no", "group_id", "natural_village", "members", "geom",
        "geocode_precision", "geocode_source", "row_hash", "grid_code", "created_at",
        "updated_at",
    ]  # fmt: skip
    op.execute(f"GRANT SELECT ({', '.join(keep)}) ON households TO {WEB_ROLE}")
    op.execute(f"GRANT UPDATE (grid_code, updated_at) ON households TO {WEB_ROLE}")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_log_default FROM {WEB_ROLE}")
    op.execute(f"REVOKE DELETE ON users FROM {WEB_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {WEB_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {WEB_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {WEB_ROLE}")
    op.execute("DROP FUNCTION geogrid_special_allowed()")
    op.execute("DROP FUNCTION geogrid_scope_allows(text)")
    op.execute("DROP TABLE audit_log")
    op.execute("DROP SEQUENCE audit_log_id_seq")
    op.execute("DROP FUNCTION geogrid_audit_refuse()")
    op.execute("DROP FUNCTION geogrid_audit_chain()")
    op.execute("DROP FUNCTION geogrid_audit_canonical(bigint, timestamptz, integer, text, text, "
               "text, text, text, text, text[], jsonb, text)")  # fmt: skip
    op.drop_table("public_layers")
    op.drop_table("embed_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("web_sessions")
    op.drop_table("users")
    op.drop_index("ix_households_grid_code", table_name="households")
    op.drop_column("households", "grid_code")
