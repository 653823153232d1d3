"""``geogrid db restore ARCHIVE``: a backup back into an empty database and the home.

The order is what makes a restore safe:

1. the whole archive is read into a staging folder and every member checked against the
   manifest (size and SHA-256; encrypted archives are also authenticated chunk by chunk):
   a changed, truncated or odd archive is refused naming the member, before anything
   is written to the database or the home;
2. every file's destination is resolved (symlinks followed) and must stay inside its
   folder; an existing key file that differs is not overwritten without ``--force``;
3. the database must be empty unless ``--force``, which replaces it: no rows in any data
   table (:func:`data_rows`; a schema at any revision is fine, so a cluster fresh from
   ``geogrid db up`` is empty; the reference tables migrations fill are not data);
4. ``pg_restore`` runs in one transaction (all or nothing; with ``--force`` into a new
   database that replaces the old one only once complete), then the files are put in
   place, each written beside its destination and renamed over it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy.engine import make_url

from geogrid import store
from geogrid.errors import Conflict, InvalidInput
from geogrid.files import STORE_DIR
from geogrid.ops import archive
from geogrid.ops.backup import KEY_FILES, client_tool, pg_connection, run_tool
from geogrid.settings import Settings

log = logging.getLogger(__name__)

#: Roles the schema grants to (migrations 0007, 0008): cluster-wide, so not in a dump.
ROLES: Final = ("geogrid_web",)

_OWN_RELATIONS = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1
"""


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did, for the command's report."""

    manifest: dict[str, Any]
    files: int
    keys_missing: list[str] = field(default_factory=list)
    photos_to: Path | None = None
    behind_head: bool = False


def libpq_dsn(url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL."""
    return (
        make_url(store.normalise_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def own_relations(url: str) -> list[str]:
    """Tables, views and sequences of the database's ``public`` schema that are not an
    extension's (PostGIS' ``spatial_ref_sys`` does not make a database non-empty)."""
    with psycopg.connect(libpq_dsn(url), connect_timeout=10) as conn:
        return [r[0] for r in conn.execute(_OWN_RELATIONS).fetchall()]


#: Reference tables the migrations fill (dictionaries, calendars, settings, layer
#: versions): rows there do not make a database non-empty. A fresh ``db up`` has rows in
#: these only (tests/test_ops_backup_fresh.py holds the list to that).
SEEDED: Final = frozenset({
    "alembic_version", "calendar_days", "calendar_office_hours", "calendar_settings",
    "calendar_years", "case_categories", "case_settings", "case_time_limits", "followup_rules",
    "inspection_templates", "key_unit_types", "layer_version_shards", "layer_versions",
    "open311_attributes",
    "public_layers", "visit_area_state", "visit_rules", "visit_tags",
})  # fmt: skip
_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1
"""


def data_rows(url: str, *, seeded: frozenset[str] = SEEDED) -> list[str]:
    """The tables of ``public`` holding rows, less the extensions' and the ``seeded``
    reference tables: empty means a database a restore may fill without ``--force``.

    Row-level security is opened for the check (``geogrid.scope = '*'``), so an owner that
    is not a superuser sees every row too.
    """
    with psycopg.connect(libpq_dsn(url), connect_timeout=10) as conn:
        conn.execute("SELECT set_config('geogrid.scope', '*', true), "
                     "set_config('geogrid.special', 'on', true)")  # fmt: skip
        found = []
        for (table,) in conn.execute(_TABLES).fetchall():
            if table in seeded:
                continue
            query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            if row and row[0]:
                found.append(str(table))
        return found


def plan_files(unpacked: archive.Unpacked, settings: Settings) -> list[tuple[str, Path]]:
    """Each file member and the path it goes to; refuses a member that would land outside.

    ``home/files/…`` and the key files go under ``GEOGRID_HOME``; ``photos/…`` under
    ``GEOGRID_PHOTO_DIR`` (or ``GEOGRID_HOME/photos`` when none is set). Anything else
    (``home/cluster.json``, ``home/pgdata/…``) is refused.
    """
    home = Path(settings.home).absolute()
    photos = Path(settings.photo_dir or home / "photos").absolute()
    plan = []
    for name in unpacked.names:
        if name == archive.DUMP_MEMBER:
            continue
        if name.startswith(f"home/{STORE_DIR}/") or name in {f"home/{k}" for k in KEY_FILES}:
            root, rel = home, name[len("home/") :]
        elif name.startswith("photos/"):
            root, rel = photos, name[len("photos/") :]
        else:
            raise InvalidInput(f"archive member {name!r}: not something a restore writes")
        plan.append((name, contained_target(root, rel, member=name)))
    return plan


def contained_target(root: Path, rel: str, *, member: str) -> Path:
    """``root/rel`` after resolving every symlink on the way; must stay inside ``root``.

    >>> contained_target(Path("/srv/gg"), "files/ab/abc", member="m").as_posix()
    '/srv/gg/files/ab/abc'
    >>> contained_target(Path("/srv/gg"), "../etc/passwd", member="home/../etc/passwd")
    Traceback (most recent call last):
    ...
    geogrid.errors.InvalidInput: archive member 'home/../etc/passwd': its destination \
resolves outside /srv/gg, refused
    """
    base = root.resolve()
    target = root / rel
    final = target.resolve()
    if not final.is_relative_to(base) or target.is_symlink():
        raise InvalidInput(f"archive member {member!r}: its destination resolves outside "
                           f"{root}, refused")  # fmt: skip
    return base / final.relative_to(base)


def restore_backup(settings: Settings, path: Path, *, force: bool = False) -> RestoreResult:
    """Restore the archive at ``path`` into the configured database and home.

    Parameters
    ----------
    settings
        Where to restore: ``database_url`` or the private cluster (created and started if
        needed, no migration), ``home``, ``photo_dir``, and the backup key.
    path
        The archive ``geogrid db backup`` wrote.
    force
        Replace a database that holds data (:func:`data_rows`; a schema alone is replaced
        without it), and key files that differ.

    Raises
    ------
    InvalidInput
        The archive is changed, truncated, needs another key or holds a member that is
        refused (named in the message). Nothing has been written.
    Conflict
        The database is not empty, or a key file in the home differs (without ``force``).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such archive")
    key = archive.backup_key(settings)
    home = Path(settings.home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=home))
    try:
        unpacked = archive.unpack(path, staging, key)
        manifest = unpacked.manifest
        behind = _check_revision(manifest.get("schema_revision"))
        plan = plan_files(unpacked, settings)
        if not force:
            _refuse_changed_keys(unpacked, plan)
        url = store.database_url(settings)
        found = own_relations(url)
        rows = data_rows(url) if found else []
        if rows and not force:
            raise Conflict(
                f"the database is not empty ({len(rows)} tables hold rows, e.g. "
                f"{', '.join(rows[:3])}): restore into an empty database, or use --force "
                "to replace it"
            )
        dump = unpacked.path(archive.DUMP_MEMBER)
        if found:
            _replace_database(settings, url, dump)
        else:
            _pg_restore(settings, url, dump)
        for name, target in plan:
            _install(unpacked.path(name), target, secret=name.startswith("home/") and
                     name[len("home/"):] in KEY_FILES)  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    missing = [k for k in manifest.get("keys_excluded", []) if not (home / k).exists()]
    photos = None
    if any(n.startswith("photos/") for n in unpacked.names):
        photos = Path(settings.photo_dir or home / "photos")
    return RestoreResult(manifest, len(plan), missing, photos, behind)


def _check_revision(revision: str | None) -> bool:
    """Refuse a schema this geogrid does not know; whether it is behind the head."""
    scripts = ScriptDirectory.from_config(store.alembic_config("postgresql://x/y"))
    if revision is None:
        return True
    try:
        scripts.get_revision(revision)
    except Exception:  # alembic raises several kinds for an unknown id
        raise InvalidInput(
            f"the archive's schema revision {revision!r} is unknown to this geogrid "
            "(made by a newer release?): restore it with that release"
        ) from None
    return revision != scripts.get_current_head()


def _refuse_changed_keys(unpacked: archive.Unpacked, plan: list[tuple[str, Path]]) -> None:
    for name, target in plan:
        key_file = name[len("home/") :] in KEY_FILES and target.exists()
        if key_file and target.read_bytes() != unpacked.path(name).read_bytes():
            raise Conflict(
                f"{target} exists and differs from the archive's: it may be the key of "
                "data in this home; move it aside, or use --force to replace it"
            )


def _pg_restore(settings: Settings, url: str, dump: Path) -> None:
    """``pg_restore`` into the empty database at ``url``, in one transaction."""
    _create_roles(url)
    args, env = pg_connection(url)
    run_tool([client_tool(settings, "pg_restore"), "--no-owner", "--single-transaction",
              "--exit-on-error", *args, str(dump)], env, what="pg_restore")  # fmt: skip


def _replace_database(settings: Settings, url: str, dump: Path) -> None:
    """``--force``: restore into a new database beside the old one, then swap them.

    The old database is dropped only once the new one is complete, so a restore that
    fails leaves it as it was. Without the right to create databases (an external server),
    ``public`` is emptied and restored in place instead.
    """
    target = make_url(store.normalise_url(url))
    name = str(target.database)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    fresh, old = f"{name[:40]}_restoring_{stamp}", f"{name[:40]}_replaced_{stamp}"
    admin = libpq_dsn(target.set(database="postgres").render_as_string(hide_password=False))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(fresh)))
    except psycopg.errors.InsufficientPrivilege:
        log.warning("no right to create a database: emptying %s and restoring in place", name)
        with psycopg.connect(libpq_dsn(url), connect_timeout=10) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        _pg_restore(settings, url, dump)
        return
    try:
        _pg_restore(settings, target.set(database=fresh).render_as_string(hide_password=False),
                    dump)  # fmt: skip
    except BaseException:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(fresh)))  # fmt: skip
        raise
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
        conn.execute(rename.format(sql.Identifier(name), sql.Identifier(old)))
        conn.execute(rename.format(sql.Identifier(fresh), sql.Identifier(name)))
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(old)))


def _create_roles(url: str) -> None:
    """Create the roles the schema grants to (cluster-wide objects, not in a dump)."""
    with psycopg.connect(libpq_dsn(url), connect_timeout=10) as conn:
        for role in ROLES:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if not exists:
                conn.execute(f"CREATE ROLE {role} NOLOGIN")
                conn.execute(f"GRANT {role} TO current_user")


def _install(src: Path, target: Path, *, secret: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    same_size = target.is_file() and target.stat().st_size == src.stat().st_size
    if same_size and not secret and target.read_bytes() == src.read_bytes():
        return  # the store's files are named by their hash: already there
    fd, tmp = tempfile.mkstemp(prefix=".restore-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as fh:
            shutil.copyfileobj(fh, out)
        os.chmod(tmp, 0o600 if secret else 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
