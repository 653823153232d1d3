"""Monthly partitions of the large tables: list, create ahead, detach, archive, drop.

Three tables are range-partitioned by month (migrations 0007 and 0023), each with a
DEFAULT partition that catches a row no month partition takes:

========== ====== ============== ===========================================
table      column months         detach
========== ====== ============== ===========================================
audit_log  at     UTC            not within :data:`~geogrid.access.audit.KEEP_MONTHS`
case_events at    Asia/Shanghai  any month before the current one
heat_daily day    calendar dates never: derived from ``cases``, a refresh rebuilds it
========== ====== ============== ===========================================

:func:`ensure` creates this month's partition and the next ones (``geogrid db upgrade``,
``geogrid serve`` and ``geogrid db partitions create`` call it; run the last from cron
monthly if the server runs for months without a restart). Rows that landed in a DEFAULT
partition all the same (an import of old cases, a clock far off) are moved into partitions
of their own months by it: the DEFAULT partition is detached, the rows copied into a new
plain table that is then attached as their month, removed from the detached DEFAULT table
(which has no row triggers while detached, so the append-only rule is not bypassed on a
live table) and the DEFAULT attached again — one transaction, nothing re-chained.

:func:`detach` detaches whole months before a given one (plain ``DETACH PARTITION``:
PostgreSQL refuses ``CONCURRENTLY`` on a table with a DEFAULT partition, and every table
here has one). A detached partition keeps a row trigger refusing UPDATE and DELETE.
:func:`export` writes it with ``pg_dump`` into ``GEOGRID_HOME/archive`` with a manifest
and verifies the dump's data against the table; :func:`drop` drops it only when such a
verified export of its current content exists. ``pg_restore --dbname … FILE`` brings a
table back, :func:`reattach` makes it a partition again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Connection, text

from geogrid.errors import ConfigurationError, Conflict, InvalidInput, NotFound
from geogrid.settings import Settings

log = logging.getLogger(__name__)

#: Months created ahead of the current one.
MONTHS_AHEAD = 3
#: Serialises partition changes (two workers starting at once).
_LOCK = "geogrid.partitions"


@dataclass(frozen=True)
class Spec:
    """How one table is partitioned."""

    table: str
    column: str
    zone: str | None
    """Time zone of the month bounds of a ``timestamptz`` column; None: a ``date`` column."""
    refuse: str | None = None
    """Trigger function refusing changes (append-only tables), put on every partition."""
    truncate_trigger: str | None = None
    keep_months: int = 0
    """Months before the current one that may not be detached."""
    detachable: bool = True


def _audit_keep() -> int:
    from geogrid.access.audit import KEEP_MONTHS

    return KEEP_MONTHS


SPECS: dict[str, Spec] = {
    "audit_log": Spec("audit_log", "at", "UTC", "geogrid_audit_refuse", "audit_log_no_truncate",
                      keep_months=_audit_keep()),
    "case_events": Spec("case_events", "at", "Asia/Shanghai", "geogrid_case_events_refuse",
                        "case_events_no_truncate"),
    "heat_daily": Spec("heat_daily", "day", None, detachable=False),
}  # fmt: skip

#: Names of the partitions (attached or detached): ``<table>_YYYYMM`` or ``<table>_default``.
PARTITION_NAME = re.compile(rf"({'|'.join(SPECS)})_(\d{{6}}|default)")
_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class Partition:
    """One partition (or a detached former partition) of a partitioned table."""

    table: str
    name: str
    month: dt.date | None
    """First day of its month; None for the DEFAULT partition."""
    bounds: str
    """The bounds as PostgreSQL shows them (``FOR VALUES FROM (…) TO (…)``, ``DEFAULT``)."""
    rows: int
    size: int
    """Bytes, indexes included."""
    attached: bool


@dataclass
class Ensured:
    """What :func:`ensure` did."""

    created: list[str] = field(default_factory=list)
    moved: dict[str, int] = field(default_factory=dict)
    """Rows moved out of a DEFAULT partition, by the partition they went to."""
    blocked: list[str] = field(default_factory=list)
    """Months with rows in DEFAULT whose partition name is taken by a detached table."""


def parse_month(value: str) -> dt.date:
    """The first day of a ``YYYY-MM`` month.

    >>> parse_month("2026-03")
    datetime.date(2026, 3, 1)
    """
    m = _MONTH.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise InvalidInput(f"month {value!r} is not YYYY-MM (e.g. 2026-03)")
    return dt.date(int(m.group(1)), int(m.group(2)), 1)


def shift(month: dt.date, k: int) -> dt.date:
    """The first day of the month ``k`` months after ``month``'s.

    >>> shift(dt.date(2026, 11, 1), 3)
    datetime.date(2027, 2, 1)
    """
    y, m = divmod(month.month - 1 + k, 12)
    return dt.date(month.year + y, m + 1, 1)


def spec_of(table: str) -> Spec:
    """The partitioning of ``table``; :class:`InvalidInput` for any other table."""
    if table not in SPECS:
        raise InvalidInput(f"{table!r} is not partitioned (one of {', '.join(SPECS)})")
    return SPECS[table]


def current_month(spec: Spec, now: dt.datetime | None = None) -> dt.date:
    """This month in the table's time zone (UTC dates for a ``date`` column)."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(ZoneInfo(spec.zone or "UTC")).date().replace(day=1)


def _bound(spec: Spec, month: dt.date) -> str:
    return f"'{month} 00:00:00 {spec.zone}'" if spec.zone else f"'{month}'"


def _values(spec: Spec, month: dt.date) -> str:
    return f"FOR VALUES FROM ({_bound(spec, month)}) TO ({_bound(spec, shift(month, 1))})"


def _in_month(spec: Spec, month: dt.date) -> str:
    """A condition on the partition column: within ``month`` (literal bounds)."""
    col = spec.column
    return f"{col} >= {_bound(spec, month)} AND {col} < {_bound(spec, shift(month, 1))}"


def _exists(conn: Connection, name: str) -> bool:
    return conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar_one()


def list_partitions(conn: Connection, table: str | None = None) -> list[Partition]:
    """Every partition of the partitioned tables (or of ``table``), detached ones included.

    Rows are counted exactly (``count(*)`` per partition), sizes include indexes.
    """
    specs = [spec_of(table)] if table else list(SPECS.values())
    found = conn.execute(
        text(
            """
            SELECT c.relname, p.relname AS parent,
                   coalesce(pg_get_expr(c.relpartbound, c.oid), obj_description(c.oid, 'pg_class'),
                            '') AS bounds,
                   pg_total_relation_size(c.oid) AS size
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
            LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
            LEFT JOIN pg_class p ON p.oid = i.inhparent
            WHERE c.relkind = 'r' AND c.relname ~ :pattern
            ORDER BY c.relname
            """
        ),
        {"pattern": f"^({'|'.join(s.table for s in specs)})_([0-9]{{6}}|default)$"},
    ).all()
    out = []
    for name, parent, bounds, size in found:
        m = PARTITION_NAME.fullmatch(name)
        if m is None:
            continue
        suffix = m.group(2)
        month = None if suffix == "default" else dt.date(int(suffix[:4]), int(suffix[4:]), 1)
        if month is not None and not 1 <= month.month <= 12:
            continue
        rows = conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
        out.append(Partition(m.group(1), name, month, bounds or "(detached)", int(rows),
                             int(size), parent == m.group(1)))  # fmt: skip
    return out


def ensure(
    conn: Connection,
    *,
    months_ahead: int = MONTHS_AHEAD,
    tables: tuple[str, ...] | None = None,
    now: dt.datetime | None = None,
) -> Ensured:
    """Create the month partitions from this month to ``months_ahead`` ahead, and move rows
    found in a DEFAULT partition into partitions of their own months.

    Parameters
    ----------
    conn
        A connection of the tables' owner, in a transaction (committed by the caller).
    months_ahead
        Months after the current one to create (0–120).
    tables
        Only these tables (default: all of :data:`SPECS`).
    now
        The present (tests).

    Returns
    -------
    Ensured
        The partitions created, the rows moved, and months that could not get a partition
        (a detached table of that name still exists: archive or drop it, then run again).
    """
    if not 0 <= months_ahead <= 120:
        raise InvalidInput("months ahead must be between 0 and 120")
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": _LOCK})
    done = Ensured()
    for table in tables or tuple(SPECS):
        spec = spec_of(table)
        if not _exists(conn, f"{table}_default"):
            continue  # an older schema (before the migration that partitions it)
        first = current_month(spec, now)
        wanted = {shift(first, k) for k in range(months_ahead + 1)}
        strays = _stray_months(conn, spec)
        if strays:
            log.warning("%s: rows of %d month(s) in %s_default: moving them", table,
                        len(strays), table)  # fmt: skip
            _move_strays(conn, spec, strays, done)
        for month in sorted(wanted - set(strays)):
            name = f"{table}_{month:%Y%m}"
            if _exists(conn, name):
                continue
            conn.execute(text(f"CREATE TABLE {name} PARTITION OF {table} {_values(spec, month)}"))
            _protect(conn, spec, name)
            done.created.append(name)
    return done


def _stray_months(conn: Connection, spec: Spec) -> list[dt.date]:
    local = f"{spec.column} AT TIME ZONE '{spec.zone}'" if spec.zone else spec.column
    rows = conn.execute(
        text(f"SELECT DISTINCT date_trunc('month', {local})::date FROM {spec.table}_default")
    ).scalars()
    return sorted(rows)


def _protect(conn: Connection, spec: Spec, name: str) -> None:
    """The per-partition TRUNCATE trigger of an append-only table (not cloned from the parent)."""
    if spec.refuse and spec.truncate_trigger:
        conn.execute(
            text(
                f"CREATE TRIGGER {spec.truncate_trigger} BEFORE TRUNCATE ON {name} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {spec.refuse}()"
            )
        )


def _move_strays(conn: Connection, spec: Spec, months: list[dt.date], done: Ensured) -> None:
    """Rows of ``months`` out of the DEFAULT partition into new partitions of their months."""
    table, default = spec.table, f"{spec.table}_default"
    conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {default}"))
    for month in months:
        name = f"{table}_{month:%Y%m}"
        if _exists(conn, name):  # a detached (archived) month: its rows stay in DEFAULT
            done.blocked.append(name)
            log.warning("%s: rows of %s stay in %s: a detached table %s exists", table,
                        f"{month:%Y-%m}", default, name)  # fmt: skip
            continue
        conn.execute(
            text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        )
        where = _in_month(spec, month)
        moved = conn.execute(text(f"INSERT INTO {name} SELECT * FROM {default} WHERE {where}"))
        # the detached DEFAULT table has no row triggers (they are cloned while attached)
        conn.execute(text(f"DELETE FROM {default} WHERE {where}"))
        conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} {_values(spec, month)}"))
        _protect(conn, spec, name)
        done.created.append(name)
        done.moved[name] = moved.rowcount
    conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {default} DEFAULT"))


def detach(
    conn: Connection, table: str, before: dt.date | str, *, now: dt.datetime | None = None
) -> list[str]:
    """Detach ``table``'s month partitions older than the month ``before``.

    Refused: a table not partitioned or derived (heat rows), a month string not
    ``YYYY-MM``, ``before`` after the current month (the current month is being written),
    and for the audit log any month of the last
    :data:`~geogrid.access.audit.KEEP_MONTHS` months (kept at least that long).

    Returns
    -------
    The names of the detached tables (each keeps a trigger refusing UPDATE and DELETE when
    the table is append-only).
    """
    spec = spec_of(table)
    month = parse_month(before) if isinstance(before, str) else before.replace(day=1)
    if not spec.detachable:
        raise Conflict(f"{table} is derived from cases (a heat refresh rebuilds it): "
                       "nothing to archive")  # fmt: skip
    current = current_month(spec, now)
    if month > current:
        raise Conflict(f"cannot detach {table} before {month:%Y-%m}: the current month "
                       f"({current:%Y-%m}) is still written to")  # fmt: skip
    if month > shift(current, -spec.keep_months):
        raise Conflict(f"{table} keeps at least {spec.keep_months} months: detach before "
                       f"{shift(current, -spec.keep_months):%Y-%m} at the latest")  # fmt: skip
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": _LOCK})
    detached = []
    for p in list_partitions(conn, table):
        if not p.attached or p.month is None or p.month >= month:
            continue
        conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {p.name}"))
        if spec.refuse:  # the cloned row trigger went with the detach
            conn.execute(
                text(
                    f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {p.name} "
                    f"FOR EACH ROW EXECUTE FUNCTION {spec.refuse}()"
                )
            )
        note = f"detached from {table} for archiving ({p.bounds})".replace("'", "''")
        conn.execute(text(f"COMMENT ON TABLE {p.name} IS '{note}'"))
        detached.append(p.name)
    return detached


def reattach(conn: Connection, name: str) -> None:
    """Attach a detached (or restored) month table to its partitioned table again."""
    p = _detached(conn, name)
    spec = SPECS[p.table]
    assert p.month is not None  # _detached refuses DEFAULT
    if spec.refuse:
        conn.execute(text(f"DROP TRIGGER IF EXISTS {p.table}_no_change ON {name}"))
    conn.execute(text(f"ALTER TABLE {p.table} ATTACH PARTITION {name} {_values(spec, p.month)}"))
    conn.execute(text(f"COMMENT ON TABLE {name} IS NULL"))


def _detached(conn: Connection, name: str) -> Partition:
    if PARTITION_NAME.fullmatch(name) is None or name.endswith("_default"):
        raise InvalidInput(f"{name!r} is not a month partition name (e.g. case_events_202401)")
    found = [p for p in list_partitions(conn, name.rsplit("_", 1)[0]) if p.name == name]
    if not found:
        raise NotFound(f"no table {name}")
    if found[0].attached:
        raise Conflict(f"{name} is attached: detach it first (geogrid db partitions detach)")
    return found[0]


# --------------------------------------------------------------------------- archives


def archive_dir(settings: Settings) -> Path:
    """``GEOGRID_HOME/archive``: exported partitions and their manifests."""
    return Path(settings.home) / "archive"


def _table_digest(url: str, name: str) -> tuple[int, str]:
    """Rows and SHA-256 of ``COPY name TO STDOUT`` (text format, physical order)."""
    from geogrid.ops.restore import libpq_dsn

    digest, rows = hashlib.sha256(), 0
    with (
        psycopg.connect(libpq_dsn(url), connect_timeout=10) as conn,
        conn.cursor().copy(f'COPY "{name}" TO STDOUT') as copy,
    ):
        for row in copy:
            digest.update(row)
            rows += bytes(row).count(b"\n")
    return rows, digest.hexdigest()


def _dump_digest(settings: Settings, dump: Path, name: str) -> tuple[int, str]:
    """Rows and SHA-256 of the table's data as the dump holds it (``pg_restore`` to SQL)."""
    from geogrid.ops.backup import client_tool

    proc = subprocess.run(
        [client_tool(settings, "pg_restore"), "--data-only", "--table", name, "--file", "-",
         str(dump)],
        capture_output=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise ConfigurationError(f"pg_restore could not read {dump.name}")
    lines = proc.stdout.split(b"\n")
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith(b"COPY ")) + 1
        end = lines.index(b"\\.", start)
    except (StopIteration, ValueError):
        raise ConfigurationError(f"{dump.name} holds no data of {name}") from None
    data = b"".join(ln + b"\n" for ln in lines[start:end])
    return end - start, hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export(settings: Settings, url: str, name: str) -> Path:
    """Dump a detached partition into :func:`archive_dir` and verify the dump.

    Writes ``NAME.dump`` (``pg_dump --format=custom``) and ``NAME.json`` (rows, the SHA-256
    of the table's data and of the file). The dump's data, read back with ``pg_restore``,
    must equal the table's row for row, or nothing is recorded as exported.

    Returns
    -------
    The manifest's path.
    """
    from geogrid import store
    from geogrid.ops.backup import client_tool, pg_connection, run_tool

    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            part = _detached(conn, name)
    finally:
        engine.dispose()
    folder = archive_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    dump, manifest = folder / f"{name}.dump", folder / f"{name}.json"
    args, env = pg_connection(url)
    run_tool([client_tool(settings, "pg_dump"), "--format=custom", "--table", f"public.{name}",
              "--file", str(dump), *args], env, what="pg_dump")  # fmt: skip
    rows, data_sha = _table_digest(url, name)
    if _dump_digest(settings, dump, name) != (rows, data_sha):
        dump.unlink(missing_ok=True)
        raise ConfigurationError(f"the dump of {name} does not match the table: not exported")
    facts = {
        "table": part.table, "partition": name, "month": f"{part.month:%Y-%m}", "rows": rows,
        "data_sha256": data_sha, "file": dump.name, "file_sha256": _file_sha256(dump),
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    manifest.write_text(json.dumps(facts, indent=2))
    return manifest


def drop(settings: Settings, url: str, name: str) -> None:
    """Drop a detached partition, only when :func:`export` archived exactly its content.

    Refused: an attached partition, no manifest or dump, a dump whose hash changed, a table
    whose rows differ from the export's.
    """
    from geogrid import store

    folder = archive_dir(settings)
    manifest = folder / f"{name}.json"
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            _detached(conn, name)
        if not manifest.is_file():
            raise Conflict(f"{name} was not exported (no {manifest}): run export first")
        facts = json.loads(manifest.read_text())
        dump = folder / str(facts.get("file", ""))
        if not dump.is_file() or _file_sha256(dump) != facts.get("file_sha256"):
            raise Conflict(f"the archive of {name} is missing or changed: export it again")
        if _table_digest(url, name) != (facts.get("rows"), facts.get("data_sha256")):
            raise Conflict(f"{name} changed since it was exported: export it again")
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {name}"))
    finally:
        engine.dispose()
