"""The private cluster manager, driven through the real ``geogrid`` command."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import make_home

GEOGRID = [sys.executable, "-m", "geogrid"]


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GEOGRID_")}
    full_env.update({"GEOGRID_HOME": str(home), "GEOGRID_CLUSTER_FSYNC": "false"})
    full_env.update(env or {})
    return subprocess.run(
        [*GEOGRID, *args], capture_output=True, text=True, env=full_env, timeout=180, check=False
    )


@pytest.fixture
def home() -> Iterator[Path]:
    path = make_home("geogrid-cluster-")
    try:
        yield path
    finally:
        run(path, "db", "down")
        shutil.rmtree(path, ignore_errors=True)


def _postmaster_pid(home: Path) -> int:
    return int((home / "pgdata" / "postmaster.pid").read_text().splitlines()[0])


def test_up_status_url_down_is_idempotent(home: Path) -> None:
    first = run(home, "db", "up")
    assert first.returncode == 0, first.stderr
    port = json.loads((home / "cluster.json").read_text())["port"]
    assert f"127.0.0.1:{port}" in first.stdout

    again = run(home, "db", "up")
    assert again.returncode == 0, again.stderr
    assert json.loads((home / "cluster.json").read_text())["port"] == port

    status = run(home, "db", "status")
    assert status.returncode == 0, status.stderr
    assert "running" in status.stdout and "up to date" in status.stdout

    url = run(home, "db", "url").stdout.strip()
    assert url.startswith("postgresql+psycopg://geogrid:")
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT postgis_lib_version(), current_database()").fetchone()
        assert row is not None and row[0].startswith("3.") and row[1] == "geogrid"
        tables = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {"admin_areas", "villager_groups", "households", "plans", "grids"} <= tables

    # the server never runs as root: PostgreSQL refuses, geogrid uses an unprivileged user
    owner = subprocess.run(
        ["ps", "-o", "user=", "-p", str(_postmaster_pid(home))], capture_output=True, text=True
    ).stdout.strip()
    if os.geteuid() == 0:
        assert owner != "root" and owner
    else:
        assert owner == pwd.getpwuid(os.geteuid()).pw_name

    down = run(home, "db", "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    stopped = run(home, "db", "status")
    assert stopped.returncode == 3 and "stopped" in stopped.stdout
    assert "not running" in run(home, "db", "down").stdout


def test_port_in_use_picks_another(home: Path) -> None:
    assert run(home, "db", "up").returncode == 0
    port = json.loads((home / "cluster.json").read_text())["port"]
    assert run(home, "db", "down").returncode == 0
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        up = run(home, "db", "up")
        assert up.returncode == 0, up.stderr
        new_port = json.loads((home / "cluster.json").read_text())["port"]
        assert new_port != port
        assert f"127.0.0.1:{new_port}" in up.stdout


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_corrupt_data_folder_gives_one_clear_line(home: Path) -> None:
    assert run(home, "db", "up").returncode == 0
    assert run(home, "db", "down").returncode == 0
    (home / "pgdata" / "global" / "pg_control").write_bytes(b"garbage")
    line = _one_line_error(run(home, "db", "up"))
    assert "failed to start" in line and "move it aside" in line


def test_folder_without_cluster_is_refused(home: Path) -> None:
    (home / "pgdata").mkdir()
    (home / "pgdata" / "stray.txt").write_text("not a cluster")
    line = _one_line_error(run(home, "db", "up"))
    assert "holds no PostgreSQL cluster" in line


def test_damaged_state_file(home: Path) -> None:
    assert run(home, "db", "up").returncode == 0
    (home / "cluster.json").write_text("{not json")
    line = _one_line_error(run(home, "db", "url"))
    assert "damaged" in line


def test_missing_binaries_name_the_debian_packages(home: Path, tmp_path: Path) -> None:
    line = _one_line_error(run(home, "db", "up", env={"GEOGRID_PG_BINDIR": str(tmp_path)}))
    assert "apt-get install postgresql" in line

    # server binaries present but no PostGIS for them
    real = Path(
        os.path.realpath(shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb")
    ).parent
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("initdb", "pg_ctl"):
        (fake / tool).symlink_to(real / tool)
    (fake / "pg_config").write_text(f"#!/bin/sh\necho {tmp_path / 'share'}\n")
    (fake / "pg_config").chmod(0o755)
    line = _one_line_error(run(home, "db", "up", env={"GEOGRID_PG_BINDIR": str(fake)}))
    assert "-postgis-3" in line and "PostGIS is not installed" in line


def test_external_database_url_starts_nothing(home: Path, pg) -> None:  # type: ignore[no-untyped-def]
    name = pg.create_database()
    try:
        proc = run(home, "db", "up", env={"GEOGRID_DATABASE_URL": pg.url(name)})
        assert proc.returncode == 0, proc.stderr
        assert "GEOGRID_DATABASE_URL" in proc.stdout
        assert not (home / "pgdata").exists()
        assert run(
            home, "db", "url", env={"GEOGRID_DATABASE_URL": pg.url(name)}
        ).stdout.strip() == pg.url(name)
    finally:
        pg.drop_database(name)


def test_wrong_password_in_database_url(home: Path, pg) -> None:  # type: ignore[no-untyped-def]
    bad = pg.url("postgres").replace(pg.state.password, "wrong-password")
    line = _one_line_error(run(home, "db", "status", env={"GEOGRID_DATABASE_URL": bad}))
    assert "password authentication failed" in line
    assert "wrong-password" not in line and "***" in line


def test_bad_setting_names_the_variable(home: Path) -> None:
    line = _one_line_error(run(home, "db", "status", env={"GEOGRID_PORT": "eighty"}))
    assert line.startswith("error: GEOGRID_PORT='eighty'") and "integer" in line
    line = _one_line_error(run(home, "serve", env={"GEOGRID_LOG_LEVEL": "LOUD"}))
    assert "GEOGRID_LOG_LEVEL='LOUD'" in line and "'WARNING'" in line
    assert not (home / "pgdata").exists()  # nothing was started


def test_unknown_option_prints_usage(home: Path) -> None:
    proc = run(home, "db", "up", "--no-such-option")
    assert proc.returncode == 2
    assert "Usage:" in proc.stderr and "No such option" in proc.stderr


def test_works_as_a_normal_user(home: Path) -> None:
    """The unprivileged path: the server runs as the user who runs geogrid.

    As root (CI), run geogrid itself as ``nobody``; as a normal user every test here
    already takes that path.
    """
    if os.geteuid() != 0:
        assert run(home, "db", "up").returncode == 0
        owner = pwd.getpwuid(os.stat(home / "pgdata").st_uid).pw_name
        assert owner == pwd.getpwuid(os.geteuid()).pw_name
        return
    import site
    import sysconfig

    user_home = make_home("geogrid-nobody-")
    opened: list[tuple[Path, int]] = []
    try:
        os.chown(user_home, 65534, 65534)
        # an interpreter nobody may execute (pyenv's lives under /root): Debian's own
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        python = f"/usr/bin/{version}"
        if not Path(python).exists():
            python = os.path.realpath(sys.executable)
        repo = str(Path(__file__).resolve().parents[1])
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(user_home),
            "GEOGRID_HOME": str(user_home),
            "GEOGRID_CLUSTER_FSYNC": "false",
            "PYTHONPATH": os.pathsep.join([repo, *site.getsitepackages(),
                                           sysconfig.get_paths()["purelib"]]),
        }  # fmt: skip
        # a checkout under a private folder (mktemp -d is 0700): let nobody pass through
        # the folders above the code it imports, for this test only
        for top in env["PYTHONPATH"].split(os.pathsep):
            for folder in [Path(top), *Path(top).parents]:
                mode = folder.stat().st_mode if folder.exists() else 0
                if mode and not mode & stat.S_IXOTH:
                    opened.append((folder, stat.S_IMODE(mode)))
                    folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)

        def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["runuser", "-u", "nobody", "--", "env", *(f"{k}={v}" for k, v in env.items()),
                 python, "-m", "geogrid", *args],
                capture_output=True, text=True, timeout=180, check=False,
            )  # fmt: skip

        up = as_nobody("db", "up")
        assert up.returncode == 0, up.stderr
        pid = _postmaster_pid(user_home)
        owner = subprocess.run(
            ["ps", "-o", "user=", "-p", str(pid)], capture_output=True, text=True
        ).stdout.strip()
        assert owner == "nobody"
        assert as_nobody("db", "status").returncode == 0
        assert as_nobody("db", "down").returncode == 0
    finally:
        pidfile = user_home / "pgdata" / "postmaster.pid"
        if pidfile.exists():
            subprocess.run(["kill", pidfile.read_text().splitlines()[0]], check=False)
        shutil.rmtree(user_home, ignore_errors=True)
        for folder, mode in reversed(opened):
            folder.chmod(mode)
