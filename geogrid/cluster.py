"""The private PostGIS cluster that geogrid runs itself (the embedded default).

``geogrid db up`` creates (once) and starts a PostgreSQL cluster in ``$GEOGRID_HOME/pgdata``
listening on 127.0.0.1 only, on a free port, with a random password kept in
``$GEOGRID_HOME/cluster.json`` (mode 0600). PostgreSQL refuses to run as root, so when
geogrid runs as root every server command runs as an unprivileged system user
(``postgres`` if Debian's package created it, else a ``geogrid`` system user).

When ``GEOGRID_DATABASE_URL`` is set none of this is used: see :func:`geogrid.store.database_url`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from geogrid.errors import ConfigurationError
from geogrid.settings import Settings

log = logging.getLogger(__name__)

DB_NAME = "geogrid"
DB_USER = "geogrid"
#: Ports tried first, so the private cluster keeps a stable, memorable port when it can.
PREFERRED_PORTS = range(54320, 54340)


@dataclass
class ClusterState:
    """What geogrid remembers about its cluster (``cluster.json``)."""

    port: int
    password: str
    user: str = DB_USER
    database: str = DB_NAME
    pg_version: str = ""

    def url(self, driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL of the cluster's geogrid database."""
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"


@dataclass(frozen=True)
class ClusterStatus:
    """The answer of ``geogrid db status`` for the private cluster."""

    initialised: bool
    running: bool
    port: int | None
    datadir: Path
    pg_version: str | None


@dataclass(frozen=True)
class PgBinaries:
    """Where the PostgreSQL server programs are, and their major version."""

    bindir: Path
    version: str
    sharedir: Path

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def find_binaries(settings: Settings) -> PgBinaries:
    """Locate ``initdb``/``pg_ctl`` and check that PostGIS is installed for them.

    Raises
    ------
    ConfigurationError
        Naming the exact Debian packages to install when something is missing.
    """
    candidates: list[Path] = []
    if settings.pg_bindir is not None:
        candidates.append(Path(settings.pg_bindir))
    else:
        found = []
        for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
            with contextlib.suppress(ValueError):
                found.append((float(initdb.parent.parent.name), initdb.parent))
        candidates.extend(p for _, p in sorted(found, reverse=True))
        which = shutil.which("initdb")
        if which:
            candidates.append(Path(os.path.realpath(which)).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            break
    else:
        raise ConfigurationError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with "
            "`apt-get install postgresql postgresql-15-postgis-3` "
            "(or set GEOGRID_DATABASE_URL to an existing PostGIS database)"
        )
    version = _major_version(bindir)
    sharedir = _sharedir(bindir, version)
    if not (sharedir / "extension" / "postgis.control").exists():
        raise ConfigurationError(
            f"PostGIS is not installed for PostgreSQL {version}: install it with "
            f"`apt-get install postgresql-{version}-postgis-3`"
        )
    return PgBinaries(bindir=bindir, version=version, sharedir=sharedir)


def _major_version(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "initdb"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise ConfigurationError(f"cannot tell the PostgreSQL version of {bindir}/initdb")
    return match.group(1)


def _sharedir(bindir: Path, version: str) -> Path:
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return Path(f"/usr/share/postgresql/{version}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as PostgreSQL does: a port in TIME_WAIT is free to listen on
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def port_lock() -> Iterator[None]:
    """Held from choosing a port until the server listens on it, so that clusters started
    at the same moment on one machine (several homes, parallel test workers) never pick
    the same free port."""
    import fcntl  # local: POSIX only, like the rest of the cluster manager

    path = Path(tempfile.gettempdir()) / "geogrid-cluster-ports.lock"
    try:  # read-only is enough to lock: another user's lock file (0644) serves everyone
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:  # no usable lock file: start unlocked (only the race is lost)
        log.debug("cluster port lock %s unavailable: %s", path, exc)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def pick_port() -> int:
    """A free local TCP port, preferring :data:`PREFERRED_PORTS`."""
    for port in PREFERRED_PORTS:
        if _port_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_options(total: int | None = None) -> str:
    """Server memory settings for this machine, passed at every start (``pg_ctl -o``).

    ``shared_buffers`` is a quarter of the RAM, between 128 MB and 8 GB (PostgreSQL's own
    advice for a dedicated server; its default of 128 MB keeps little of a county's
    cases and heat pyramid cached, and a tile that reads its rows from the OS instead
    took 40 ms rather than 6); ``effective_cache_size`` tells the planner about the rest.

    >>> memory_options(24 * 2**30)
    '-c shared_buffers=6144MB -c effective_cache_size=12288MB'
    >>> memory_options(2**30)
    '-c shared_buffers=256MB -c effective_cache_size=512MB'
    """
    if total is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 2**30
    mb = total // 2**20
    shared = min(max(mb // 4, 128), 8192)
    return f"-c shared_buffers={shared}MB -c effective_cache_size={max(mb // 2, shared)}MB"


class PrivateCluster:
    """A PostgreSQL cluster in geogrid's data folder.

    Parameters
    ----------
    settings
        ``settings.home`` is the data folder; ``settings.server_user`` overrides the
        unprivileged user the server runs as when geogrid runs as root.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = Path(settings.home).absolute()
        self.datadir = self.home / "pgdata"
        self.logfile = self.home / "log" / "postgres.log"
        self.statefile = self.home / "cluster.json"

    # -- who runs the server -------------------------------------------------------------
    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def _server_account(self) -> pwd.struct_passwd | None:
        """The account the server runs as (``None``: the current user)."""
        if not self.as_root:
            return None
        name = self.settings.server_user
        if name is None:
            try:
                return pwd.getpwnam("postgres")
            except KeyError:
                name = "geogrid"
        try:
            return pwd.getpwnam(name)
        except KeyError:
            if self.settings.server_user is not None:
                raise ConfigurationError(
                    f"GEOGRID_SERVER_USER={name!r} does not exist on this machine"
                ) from None
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(name)

    def _run(
        self, args: list[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        account = self._server_account()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
        user: int | None = None
        group: int | None = None
        extra_groups: list[int] | None = None
        if account is not None:
            user, group, extra_groups = account.pw_uid, account.pw_gid, []
            env["HOME"] = str(self.home)
            env["USER"] = account.pw_name
        else:
            env["HOME"] = os.environ.get("HOME", str(self.home))
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            cwd=str(self.home),
            env=env,
            timeout=timeout,
            check=False,
            user=user,
            group=group,
            extra_groups=extra_groups,
        )
        if check and proc.returncode != 0:
            raise ConfigurationError(
                f"`{Path(args[0]).name}` failed: {_last_error(proc.stderr or proc.stdout)}"
            )
        return proc

    def _chown(self, path: Path) -> None:
        account = self._server_account()
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid)

    # -- state -----------------------------------------------------------------------------
    def load_state(self) -> ClusterState | None:
        if not self.statefile.exists():
            return None
        try:
            return ClusterState(**json.loads(self.statefile.read_text()))
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"{self.statefile} is damaged ({exc}); move the folder {self.home} aside "
                "and run `geogrid db up` to create a new cluster"
            ) from None

    def _save_state(self, state: ClusterState) -> None:
        tmp = self.statefile.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(state), fh, indent=2)
        tmp.replace(self.statefile)

    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    # -- lifecycle ---------------------------------------------------------------------------
    def init(self) -> ClusterState:
        """Create the cluster once (``initdb``); a no-op when it exists."""
        state = self.load_state()
        if self.initialised and state is not None:
            return state
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise ConfigurationError(
                f"{self.datadir} is not empty but holds no PostgreSQL cluster "
                "(no PG_VERSION, or cluster.json is missing); move it aside and run "
                "`geogrid db up` again"
            )
        bins = find_binaries(self.settings)
        self.home.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            self.home.chmod(0o755)
        self.datadir.mkdir(mode=0o700, exist_ok=True)
        self.logfile.parent.mkdir(exist_ok=True)
        for path in (self.datadir, self.logfile.parent):
            self._chown(path)
        self._check_reachable()
        password = secrets.token_urlsafe(24)
        pwfile = self.logfile.parent / ".pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        self._chown(pwfile)
        try:
            self._run(
                [bins.tool("initdb"), "-D", str(self.datadir), "-U", DB_USER,
                 "--pwfile", str(pwfile), "--auth=scram-sha-256", "-E", "UTF8",
                 "--no-locale", "--no-instructions"],
                timeout=300,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.datadir / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# geogrid private cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "max_connections = 100\n"
                "work_mem = '32MB'\n"
                "maintenance_work_mem = '256MB'\n"
                "logging_collector = off\n"
            )
            if not self.settings.cluster_fsync:
                fh.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        state = ClusterState(port=pick_port(), password=password, pg_version=bins.version)
        self._save_state(state)
        return state

    def _check_reachable(self) -> None:
        """As root, make sure the server user can enter the data folder."""
        if self._server_account() is None:
            return
        proc = self._run(["test", "-w", str(self.datadir)], check=False)
        if proc.returncode != 0:
            account = self._server_account()
            name = account.pw_name if account else "?"
            raise ConfigurationError(
                f"the PostgreSQL server runs as the unprivileged user {name!r}, which cannot "
                f"reach {self.datadir} (a parent folder is not traversable); set GEOGRID_HOME "
                "to a folder it can enter, such as /var/lib/geogrid"
            )

    def is_running(self) -> bool:
        if not self.initialised:
            return False
        bins = find_binaries(self.settings)
        proc = self._run([bins.tool("pg_ctl"), "status", "-D", str(self.datadir)], check=False)
        return proc.returncode == 0

    def start(self) -> ClusterState:
        """Start the cluster (creating it first if needed); a no-op when it runs."""
        state = self.init()
        bins = find_binaries(self.settings)
        version_file = (self.datadir / "PG_VERSION").read_text().strip()
        if version_file != bins.version:
            raise ConfigurationError(
                f"{self.datadir} was created by PostgreSQL {version_file} but the installed "
                f"server is {bins.version}; install postgresql-{version_file} or move the "
                "folder aside"
            )
        if self.is_running():
            self._ensure_database(state)
            return state
        with port_lock():
            if not _port_free(state.port):
                old = state.port
                state.port = pick_port()
                log.warning("port %s is in use; the private cluster moves to %s", old, state.port)
                self._save_state(state)
            self.logfile.touch()
            self._chown(self.logfile)
            proc = self._run(
                [bins.tool("pg_ctl"), "start", "-D", str(self.datadir), "-w", "-t", "60",
                 "-l", str(self.logfile), "-o", f"-p {state.port} {memory_options()}"],
                check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            tail = _last_error(_tail(self.logfile) or proc.stderr or proc.stdout)
            raise ConfigurationError(
                f"PostgreSQL failed to start from {self.datadir}: {tail} (log: {self.logfile}). "
                "If the folder is damaged, move it aside and run `geogrid db up` again"
            )
        self._ensure_database(state)
        return state

    def _ensure_database(self, state: ClusterState) -> None:
        """Create the geogrid database (with PostGIS) on first start."""
        import psycopg  # local: keeps `import geogrid.cluster` light

        dsn = (f"host=127.0.0.1 port={state.port} user={state.user} "
               f"password={state.password} dbname=postgres connect_timeout=10")  # fmt: skip
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (state.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{state.database}"')
        with psycopg.connect(dsn.replace("dbname=postgres", f"dbname={state.database}"),
                             autocommit=True) as conn:  # fmt: skip
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    def stop(self) -> bool:
        """Stop the cluster; returns whether it was running."""
        if not self.is_running():
            return False
        bins = find_binaries(self.settings)
        self._run([bins.tool("pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast", "-w"])
        return True

    def status(self) -> ClusterStatus:
        state = self.load_state() if self.statefile.exists() else None
        running = self.is_running()
        version = (self.datadir / "PG_VERSION").read_text().strip() if self.initialised else None
        return ClusterStatus(
            initialised=self.initialised,
            running=running,
            port=state.port if state else None,
            datadir=self.datadir,
            pg_version=version,
        )

    # -- for geogrid.ops.wal (WAL archiving, point-in-time recovery) ----------------------
    def run_as_server(
        self, args: list[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the account the server runs as."""
        return self._run(args, check=check, timeout=timeout)

    def give_to_server(self, path: Path) -> None:
        """Make ``path`` and everything under it belong to the server's account."""
        if self._server_account() is None:
            return
        self._chown(path)
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                self._chown(Path(dirpath) / name)

    def url(self) -> str:
        state = self.load_state()
        if state is None or not self.initialised:
            raise ConfigurationError(
                f"no private cluster in {self.home}: run `geogrid db up` first"
            )
        return state.url()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _last_error(text: str) -> str:
    """The most telling line of a PostgreSQL error output."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "FATAL" in ln or "ERROR" in ln or "could not" in ln:
            return ln
    return lines[-1] if lines else "no output"
