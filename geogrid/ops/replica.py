"""Read replicas of the private cluster: PostgreSQL's own streaming replication.

``geogrid db replica add`` makes a **hot standby** of the private cluster with the server's
own tools, nothing home-made:

1. the primary gets what streaming needs: ``wal_level = replica`` (PostgreSQL's default;
   restarted once only if it was lowered), enough ``max_wal_senders``, ``wal_keep_size``
   (WAL kept for a standby that was stopped for a while), a login role
   ``geogrid_replicator`` with the ``REPLICATION`` attribute and its own random password
   (kept in ``GEOGRID_HOME/replication.json``, mode 0600) and a ``pg_hba.conf`` line
   letting that role replicate from 127.0.0.1 (``--allow CIDR`` adds a further address,
   for a standby on another machine, and widens ``listen_addresses`` by this machine's
   address on the route to it: the private cluster listens on 127.0.0.1 only);
2. ``pg_basebackup -R -X stream`` copies the cluster into the standby's data directory and
   writes its ``primary_conninfo`` and ``standby.signal``; the password reaches it through
   a ``passfile`` (0600, owned by the server account), never a command line;
3. the standby starts (``pg_ctl``) as the same unprivileged account as the private cluster,
   on its own port of 127.0.0.1, with ``hot_standby_feedback`` on (long reads on the standby
   are not cancelled by the primary's vacuum), and is recorded in
   ``GEOGRID_HOME/replicas.json`` (mode 0600).

``geogrid db replica list`` reports each standby's state and lag: bytes from the primary's
``pg_stat_replication`` (sent, replayed), seconds from the standby
(``pg_last_xact_replay_timestamp``; 0 when it has replayed all it received). ``stop``,
``start`` and ``remove`` act on one standby; ``remove`` deletes its data directory.
The web server's side (which reads go where) is :mod:`geogrid.ops.replica_pool`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from geogrid.cluster import (
    PrivateCluster,
    _last_error,
    _port_free,
    _tail,
    find_binaries,
    memory_options,
    pick_port,
    port_lock,
)
from geogrid.errors import ConfigurationError, Conflict, InvalidInput, NotFound
from geogrid.settings import Settings

ROLE: Final = "geogrid_replicator"
SECRET_FILE: Final = "replication.json"
RECORD_FILE: Final = "replicas.json"
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_HBA_MARK: Final = "# geogrid replication"
#: WAL the primary keeps for a standby that was away (no replication slot: a removed or
#: long-stopped standby must never fill the primary's disk).
WAL_KEEP: Final = "1GB"


@dataclass
class Replica:
    """A standby recorded in ``replicas.json``."""

    name: str
    datadir: str
    port: int
    created: str

    @property
    def application_name(self) -> str:
        return f"geogrid-replica-{self.name}"


@dataclass(frozen=True)
class ReplicaStatus:
    """One line of ``geogrid db replica list``."""

    name: str
    port: int
    running: bool
    standby: bool | None  #: in recovery (``None``: not reachable)
    state: str  #: pg_stat_replication's state (``streaming``...) or ``stopped``/``unknown``
    lag_bytes: int | None
    lag_seconds: float | None


def _private(settings: Settings) -> PrivateCluster:
    if settings.database_url:
        raise ConfigurationError(
            "geogrid db replica manages standbys of the private cluster; with "
            "GEOGRID_DATABASE_URL set, make the standby on that server (pg_basebackup -R) "
            "and name it in GEOGRID_REPLICA_URLS"
        )
    return PrivateCluster(settings)


def _dsn(cluster: PrivateCluster, port: int | None = None, db: str | None = None) -> str:
    state = cluster.load_state()
    if state is None:
        raise ConfigurationError(f"no private cluster in {cluster.home}: run `geogrid db up`")
    return (f"host=127.0.0.1 port={port or state.port} user={state.user} "
            f"password={state.password} dbname={db or state.database} "
            "connect_timeout=5")  # fmt: skip


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def load(settings: Settings) -> list[Replica]:
    """The recorded standbys (``replicas.json``), in order of creation."""
    path = Path(settings.home).absolute() / RECORD_FILE
    if not path.exists():
        return []
    try:
        return [Replica(**r) for r in json.loads(path.read_text())["replicas"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(f"{path} is damaged ({exc})") from None


def _save(settings: Settings, replicas: list[Replica]) -> None:
    path = Path(settings.home).absolute() / RECORD_FILE
    _write_private(path, json.dumps({"replicas": [asdict(r) for r in replicas]}, indent=2))


def get(settings: Settings, name: str) -> Replica:
    """The recorded standby ``name``; :class:`NotFound` otherwise."""
    for rep in load(settings):
        if rep.name == name:
            return rep
    known = ", ".join(r.name for r in load(settings)) or "none"
    raise NotFound(f"no replica {name!r} (replicas: {known})")


def replication_password(settings: Settings) -> str:
    """The replication role's password, made on first use (``replication.json``, 0600)."""
    path = Path(settings.home).absolute() / SECRET_FILE
    if path.exists():
        return str(json.loads(path.read_text())["password"])
    password = secrets.token_urlsafe(24)
    _write_private(path, json.dumps({"role": ROLE, "password": password}))
    return password


def check_name(name: str) -> str:
    """A replica name: lower-case letters, digits, ``-`` and ``_``, a letter first.

    >>> check_name("r1")
    'r1'
    """
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"replica name {name!r}: use lower-case letters, digits, '-' and '_' "
            "(a letter first, at most 32)"
        )
    return name


def hba_line(cidr: str) -> str:
    """The ``pg_hba.conf`` line letting the replication role stream from ``cidr``.

    >>> hba_line("10.0.0.7")
    'host replication geogrid_replicator 10.0.0.7/32 scram-sha-256'
    """
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise InvalidInput(f"{cidr!r} is not an address or network (CIDR)") from None
    return f"host replication {ROLE} {net} scram-sha-256"


def listen_address_for(cidr: str) -> str:
    """This machine's address that a standby in ``cidr`` reaches it on: the source address
    the kernel picks for that destination (no packet is sent); ``*`` when no route is known.

    >>> listen_address_for("127.0.0.5")
    '127.0.0.1'
    """
    net = ipaddress.ip_network(cidr, strict=False)
    host = net.network_address if net.num_addresses <= 2 else next(net.hosts())
    family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((str(host), 9))
            return str(probe.getsockname()[0])
    except OSError:
        return "*"


def widened_listen(current: str, allow: list[str]) -> str | None:
    """``listen_addresses`` with the addresses the standbys in ``allow`` need added, or
    ``None`` when it covers them already.

    >>> widened_listen("127.0.0.1", ["127.0.0.9"]) is None
    True
    >>> widened_listen("*", ["10.1.2.3"]) is None
    True
    """
    have = [a.strip() for a in current.split(",") if a.strip()]
    if "*" in have:
        return None
    wanted = [listen_address_for(c) for c in allow]
    if "*" in wanted:
        return "*"
    more = [a for a in dict.fromkeys(wanted) if a not in have]
    return ", ".join([*have, *more]) if more else None


def prepare_primary(settings: Settings, allow: list[str] | None = None) -> None:
    """Make the running private cluster ready to stream to standbys (idempotent)."""
    cluster = _private(settings)
    cluster.start()
    lines = [hba_line(c) for c in ["127.0.0.1/32", *(allow or [])]]
    password = replication_password(settings)
    with psycopg.connect(_dsn(cluster), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(password)
            )
        )
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('wal_level', 'max_wal_senders', 'hba_file', 'listen_addresses')"
        ).fetchall()
        now: dict[str, str] = {str(k): str(v) for k, v in rows}
        conn.execute(f"ALTER SYSTEM SET wal_keep_size = '{WAL_KEEP}'")
        restart = now.get("wal_level") == "minimal"
        if restart:
            conn.execute("ALTER SYSTEM SET wal_level = 'replica'")
        if int(now.get("max_wal_senders", "0")) < 4:
            conn.execute("ALTER SYSTEM SET max_wal_senders = 10")
            restart = True
        listen = widened_listen(now.get("listen_addresses", "127.0.0.1"), allow or [])
        if listen is not None:  # a standby elsewhere must reach us: listen there too
            conn.execute(sql.SQL("ALTER SYSTEM SET listen_addresses = {}").format(
                sql.Literal(listen)))  # fmt: skip
            restart = True
        hba = Path(str(now["hba_file"]))
        text = hba.read_text()
        present = {ln.split("#", 1)[0].strip() for ln in text.splitlines()}  # (less our mark)
        missing = [ln for ln in lines if ln not in present]
        if missing:  # first match wins: ours go on top
            hba.write_text("".join(f"{ln}  {_HBA_MARK}\n" for ln in missing) + text)
            cluster.give_to_server(hba)
        if not restart:
            conn.execute("SELECT pg_reload_conf()")
    if restart:
        bins = find_binaries(settings)
        cluster.run_as_server([bins.tool("pg_ctl"), "restart", "-D", str(cluster.datadir),
                               "-m", "fast", "-w", "-t", "120", "-l", str(cluster.logfile)],
                              timeout=180)  # fmt: skip


def add(
    settings: Settings,
    *,
    name: str | None = None,
    datadir: Path | None = None,
    port: int | None = None,
    allow: list[str] | None = None,
) -> Replica:
    """Create, start and record a streaming standby of the private cluster.

    Parameters
    ----------
    name
        Its name (default ``r1``, ``r2``...).
    datadir
        Its data directory (default ``GEOGRID_HOME/replicas/<name>/pgdata``); must not
        exist or be empty.
    port
        Its port on 127.0.0.1 (default: a free one).
    allow
        Further addresses (CIDR) allowed to replicate, for standbys on other machines.
    """
    cluster = _private(settings)
    known = load(settings)
    if name is None:
        taken = {r.name for r in known}
        name = next(f"r{i}" for i in range(1, 1000) if f"r{i}" not in taken)
    check_name(name)
    if any(r.name == name for r in known):
        raise Conflict(f"replica {name!r} exists already")
    for cidr in allow or []:
        hba_line(cidr)
    if port is not None:
        if not 1024 <= port <= 65535:
            raise InvalidInput(f"port {port}: choose one between 1024 and 65535")
        if not _port_free(port) or any(r.port == port for r in known):
            raise Conflict(f"port {port} is in use")
    folder = cluster.home / "replicas" / name
    target = Path(datadir).absolute() if datadir else folder / "pgdata"
    if target.exists() and any(target.iterdir()):
        raise Conflict(f"{target} is not empty")
    if target.resolve() == cluster.datadir.resolve():
        raise InvalidInput("the replica's data directory must not be the primary's")
    prepare_primary(settings, allow)
    state = cluster.load_state()
    assert state is not None  # prepare_primary started it
    port = port or _free_port({state.port, *(r.port for r in known)})
    rep = Replica(name, str(target), port, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    passfile = folder / "pgpass"
    _write_private(passfile, f"127.0.0.1:*:*:{ROLE}:{replication_password(settings)}\n")
    target.mkdir(parents=True, mode=0o700, exist_ok=True)
    cluster.give_to_server(folder)
    cluster.give_to_server(target)
    conninfo = (f"host=127.0.0.1 port={state.port} user={ROLE} passfile={passfile} "
                f"application_name={rep.application_name}")  # fmt: skip
    bins = find_binaries(settings)
    try:
        cluster.run_as_server([bins.tool("pg_basebackup"), "-D", str(target), "-R",
                               "-X", "stream", "--checkpoint=fast", "-d", conninfo],
                              timeout=3600)  # fmt: skip
        with (target / "postgresql.auto.conf").open("a") as fh:
            fh.write(f"\n# geogrid standby {name}\nhot_standby = on\nhot_standby_feedback = on\n"
                     f"cluster_name = '{rep.application_name}'\n")  # fmt: skip
        _start(settings, rep)
    except BaseException:
        _stop(settings, rep)
        shutil.rmtree(target, ignore_errors=True)
        raise
    _save(settings, [*known, rep])
    return rep


def _free_port(taken: set[int]) -> int:
    port = pick_port()
    while port in taken or not _port_free(port):
        port += 1
    return port


def _logfile(settings: Settings, rep: Replica) -> Path:
    return Path(settings.home).absolute() / "log" / f"replica-{rep.name}.log"


def _running(settings: Settings, rep: Replica) -> bool:
    if not (Path(rep.datadir) / "PG_VERSION").exists():
        return False
    cluster = PrivateCluster(settings)
    proc = cluster.run_as_server(
        [find_binaries(settings).tool("pg_ctl"), "status", "-D", rep.datadir], check=False
    )
    return proc.returncode == 0


def _start(settings: Settings, rep: Replica) -> None:
    """Start the standby; moves it to another free port (``rep.port``) if its own is taken."""
    cluster = PrivateCluster(settings)
    log = _logfile(settings, rep)
    log.parent.mkdir(exist_ok=True)
    log.touch()
    cluster.give_to_server(log)
    _follow_primary_port(cluster, rep)
    with port_lock():  # from choosing the port until the server listens on it
        if not _port_free(rep.port):
            state = cluster.load_state()
            others = {r.port for r in load(settings) if r.name != rep.name}
            rep.port = _free_port(others | {state.port if state else 0})
        proc = cluster.run_as_server(
            [find_binaries(settings).tool("pg_ctl"), "start", "-D", rep.datadir, "-w",
             "-t", "120", "-l", str(log), "-o", f"-p {rep.port} {_memory()}"],
            check=False, timeout=180,
        )  # fmt: skip
    if proc.returncode != 0:
        why = _last_error(_tail(log, 40) or proc.stderr or proc.stdout)
        raise ConfigurationError(f"replica {rep.name} failed to start: {why} (log: {log})")


def _follow_primary_port(cluster: PrivateCluster, rep: Replica) -> None:
    """Point the standby's ``primary_conninfo`` at the primary's current port (the private
    cluster moves to another port when its own is taken at start)."""
    state = cluster.load_state()
    auto_conf = Path(rep.datadir) / "postgresql.auto.conf"
    if state is None or not auto_conf.exists():
        return
    text = auto_conf.read_text()
    fixed = re.sub(r"(?m)^(primary_conninfo = '.*?\bhost=127\.0\.0\.1 port=)\d+",
                   rf"\g<1>{state.port}", text)  # fmt: skip
    if fixed != text:
        auto_conf.write_text(fixed)
    passfile = cluster.home / "replicas" / rep.name / "pgpass"
    if passfile.exists():  # older passfiles named the port
        old = passfile.read_text()
        new = re.sub(r"^127\.0\.0\.1:\d+:", "127.0.0.1:*:", old)
        if new != old:
            passfile.write_text(new)


def _memory() -> str:
    """Server memory settings of a standby: as the private cluster's for half the RAM (the
    primary runs on the same machine and keeps its own quarter)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 2**31
    return memory_options(total // 2)


def _stop(settings: Settings, rep: Replica) -> bool:
    if not _running(settings, rep):
        return False
    PrivateCluster(settings).run_as_server(
        [find_binaries(settings).tool("pg_ctl"), "stop", "-D", rep.datadir, "-m", "fast", "-w"]
    )
    return True


def start(settings: Settings, name: str) -> Replica:
    """Start a recorded standby (a no-op when it runs); it catches up by streaming."""
    rep = get(settings, name)
    if not _running(settings, rep):
        port = rep.port
        _start(settings, rep)
        if rep.port != port:
            _save(settings, [rep if r.name == name else r for r in load(settings)])
    return rep


def stop(settings: Settings, name: str) -> bool:
    """Stop a standby (fast shutdown); returns whether it was running."""
    return _stop(settings, get(settings, name))


def remove(settings: Settings, name: str) -> Replica:
    """Stop a standby, delete its data directory and forget it."""
    rep = get(settings, name)
    _stop(settings, rep)
    shutil.rmtree(rep.datadir, ignore_errors=True)
    folder = Path(settings.home).absolute() / "replicas" / name
    shutil.rmtree(folder, ignore_errors=True)
    _save(settings, [r for r in load(settings) if r.name != name])
    return rep


def url(settings: Settings, name: str) -> str:
    """The SQLAlchemy URL of a standby (for ``GEOGRID_REPLICA_URLS``)."""
    rep = get(settings, name)
    state = _private(settings).load_state()
    assert state is not None
    return state.url().replace(f":{state.port}/", f":{rep.port}/")


def status(settings: Settings) -> list[ReplicaStatus]:
    """State and lag of every recorded standby (the primary is asked when it runs)."""
    cluster = _private(settings)
    senders: dict[str, tuple[str, int | None]] = {}
    if cluster.is_running():
        with psycopg.connect(_dsn(cluster)) as conn:
            for app, st, lag in conn.execute(
                "SELECT application_name, state, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                "FROM pg_stat_replication"
            ).fetchall():
                senders[str(app)] = (str(st), None if lag is None else int(lag))
    out = []
    for rep in load(settings):
        running = _running(settings, rep)
        standby: bool | None = None
        seconds: float | None = None
        if running:
            try:
                with psycopg.connect(_dsn(cluster, rep.port)) as conn:
                    row = conn.execute(STANDBY_LAG_SQL).fetchone()
                assert row is not None
                standby, seconds = bool(row[0]), None if row[1] is None else float(row[1])
            except psycopg.OperationalError:
                pass
        st, lag = senders.get(rep.application_name, ("stopped" if not running else "unknown", None))
        out.append(ReplicaStatus(rep.name, rep.port, running, standby, st, lag, seconds))
    return out


#: On a standby: in recovery? and seconds behind (0 once all received WAL is replayed).
STANDBY_LAG_SQL: Final = (
    "SELECT pg_is_in_recovery(), CASE WHEN NOT pg_is_in_recovery() THEN NULL "
    "WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_replay_lsn() >= "
    "pg_last_wal_receive_lsn() THEN 0 ELSE extract(epoch FROM now() - "
    "pg_last_xact_replay_timestamp()) END, pg_last_wal_replay_lsn()"
)
