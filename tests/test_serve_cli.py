"""``geogrid serve`` as a real process: HTTPS with ``--certfile``/``--keyfile``, and
several workers (``--workers``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

GEOGRID = [sys.executable, "-m", "geogrid"]
#: Seconds to wait for a server to answer (start-up imports the app in every worker).
START_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOGRID_")}
    env.update({"GEOGRID_HOME": str(home), "GEOGRID_LOG_LEVEL": "WARNING", **extra})
    return env


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "geogrid test 127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _workers(pid: int) -> list[int]:
    """uvicorn's worker processes under the server process ``pid`` (spawned interpreters)."""
    return [c for c in _children(pid) if "spawn_main" in _cmdline(c)]


def _stop(proc: subprocess.Popen[str], extra: list[int]) -> None:
    """Stop the server (SIGTERM, then SIGKILL) and any of its workers still alive."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in extra:  # a worker the server left behind (checked to be one of ours)
        if "spawn_main" in _cmdline(pid):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def _serving(
    args: list[str], env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """``geogrid serve ARGS`` in a subprocess; yields it and a list to record worker ids in
    (killed at the end if the server left them behind)."""
    proc = subprocess.Popen(
        [*GEOGRID, "serve", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    seen: list[int] = []
    try:
        yield proc, seen
    finally:
        _stop(proc, seen)
        proc.communicate(timeout=10)


def _wait_for(proc: subprocess.Popen[str], url: str, **client: object) -> httpx.Response:
    """The first answer of ``url`` while the server starts (bounded by START_TIMEOUT)."""
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"geogrid serve exited with {proc.returncode}: {err[-2000:]}")
        try:
            return httpx.get(url, timeout=5, **client)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            last = exc
            time.sleep(0.3)
    pytest.fail(f"no answer from {url} within {START_TIMEOUT} s: {last!r}")


def test_serves_https_with_certfile_and_keyfile(
    tmp_path: Path,
    db_url: str,
    make_account: Callable[..., Any],
) -> None:
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    env = _env(tmp_path / "home", GEOGRID_DATABASE_URL=db_url, GEOGRID_PORT=str(port))
    trust = ssl.create_default_context(cafile=str(cert))
    user = make_account(db_url, "viewer", "all")
    base = f"https://127.0.0.1:{port}"
    with _serving(["--certfile", str(cert), "--keyfile", str(key)], env) as (proc, _):
        r = _wait_for(proc, f"{base}/health", verify=trust)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ok"
        with httpx.Client(base_url=base, verify=trust, timeout=30) as client:
            # a page sign-in over HTTPS sets a Secure, HttpOnly session cookie
            r = client.post("/login", data={"username": user.username, "password": user.password})
            assert r.status_code == 303, r.text
            cookie = r.headers["set-cookie"].lower()
            assert "gg_session=" in cookie and "; secure" in cookie and "httponly" in cookie
            assert client.get("/leader").status_code == 200
            # and the API's bearer tokens work over it
            client.cookies.clear()
            assert client.get("/api/auth/me", headers=user.headers(client)).status_code == 200
        # plain HTTP on the TLS port gets no answer
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        # and a client that does not trust the certificate refuses the server
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{base}/health", timeout=10)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("cert", "give both --certfile and --keyfile"),
        ("key", "give both --certfile and --keyfile"),
        ("missing-cert", "no such file"),
        ("missing-key", "no such file"),
    ],
)
def test_tls_options_are_checked_before_starting(tmp_path: Path, given: str, says: str) -> None:
    cert, key = _self_signed(tmp_path)
    gone = tmp_path / "nowhere.pem"
    args = {
        "cert": ["--certfile", str(cert)],
        "key": ["--keyfile", str(key)],
        "missing-cert": ["--certfile", str(gone), "--keyfile", str(key)],
        "missing-key": ["--certfile", str(cert), "--keyfile", str(gone)],
    }[given]
    home = tmp_path / "home"
    proc = subprocess.run(
        [*GEOGRID, "serve", *args], env=_env(home, GEOGRID_PORT=str(_free_port())),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert says in lines[0]
    if given.startswith("missing"):
        assert str(gone) in lines[0]
    assert not (home / "pgdata").exists()  # refused before starting any database


def test_two_workers_serve(tmp_path: Path, db_url: str) -> None:
    port = _free_port()
    env = _env(tmp_path / "home", GEOGRID_DATABASE_URL=db_url, GEOGRID_PORT=str(port))
    db_port = int(db_url.rsplit(":", 1)[1].split("/", 1)[0])
    with _serving(["--workers", "2"], env) as (proc, seen):
        base = f"http://127.0.0.1:{port}"
        assert _wait_for(proc, f"{base}/health").status_code == 200
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            seen[:] = _workers(proc.pid)
            # a worker is up when its app's lifespan opened its database pool
            if len(seen) == 2 and all(_db_sockets(pid, db_port) for pid in seen):
                break
            time.sleep(0.3)
        assert len(seen) == 2, [_cmdline(c) for c in _children(proc.pid)]
        assert all(_db_sockets(pid, db_port) for pid in seen)
        # requests on fresh connections (either worker may accept each): all succeed
        for _ in range(20):
            with httpx.Client(timeout=10) as client:
                r = client.get(f"{base}/health")
                assert r.status_code == 200 and r.json()["status"] == "ok"
        assert httpx.get(f"{base}/public", timeout=10).status_code == 200
        assert sorted(_workers(proc.pid)) == sorted(seen)  # no worker died or restarted
    assert all(not Path(f"/proc/{pid}").exists() for pid in seen)


def _db_sockets(pid: int, db_port: int) -> int:
    """Established TCP connections of process ``pid`` to 127.0.0.1:``db_port``."""
    try:
        inodes = {
            os.readlink(fd)[8:-1]
            for fd in (Path("/proc") / str(pid) / "fd").iterdir()
            if os.readlink(fd).startswith("socket:[")
        }
    except OSError:
        return 0
    n = 0
    for line in (Path("/proc") / str(pid) / "net" / "tcp").read_text().splitlines()[1:]:
        cols = line.split()
        remote, state, inode = cols[2], cols[3], cols[9]
        if state == "01" and int(remote.split(":")[1], 16) == db_port and inode in inodes:
            n += 1
    return n
