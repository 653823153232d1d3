"""``geogrid serve --workers 2`` as real processes against a copy of the sample town: a plan
job started through one worker is answered by another after the first died; a job whose
worker died, or whose whole server was restarted, is reported failed (not lost); /metrics
sums every worker (and refuses other addresses); the JSON log lines parse and hold nothing
personal, even at DEBUG."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, Engine, text

from geogrid import store
from geogrid.people.crypto import key_provider
from geogrid.people.idcard import check_character
from geogrid.people.load import import_members
from tests.conftest import make_home

TOWN = "420117105000"
#: Seconds a server may take to start (imports, migrations, two workers; a busy machine).
START_TIMEOUT = 600.0
NAME, PHONE = "诸葛晓明", "13611112222"
ID_NUMBER = "42011719900909009" + check_character("42011719900909009")
CANARIES = [NAME, PHONE, ID_NUMBER]  # and the passwords of the accounts signing in


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(
    home: Path, url: str, port: int, log: Path, host: str = "127.0.0.1"
) -> Iterator[subprocess.Popen[bytes]]:
    """``geogrid serve --workers 2`` (JSON logs at DEBUG into ``log``), stopped at the end
    together with any worker it left behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOGRID_", "PROMETHEUS"))}
    env.update(
        GEOGRID_HOME=str(home), GEOGRID_DATABASE_URL=url, GEOGRID_PORT=str(port),
        GEOGRID_LOG_FORMAT="json", GEOGRID_LOG_LEVEL="DEBUG", GEOGRID_HOST=host,
    )  # fmt: skip
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "geogrid", "serve", "--workers", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        yield proc
    finally:
        workers = _workers(proc.pid)
        _kill(proc, signal.SIGTERM)
        for pid in workers:
            _kill_pid(pid)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def _kill(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _kill_pid(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _workers(pid: int) -> list[int]:
    """The server's worker processes (children of ``pid`` running uvicorn's spawn)."""
    out = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:  # not a process, or it ended meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmd:
            out.append(int(entry.name))
    return out


#: GETs retried after they may have reached a worker (sent, then the connection failed):
#: the server may have counted them, once or more, or not at all. Per path prefix.
RETRIED: dict[str, int] = {}


def _get(url: str, **kw: Any) -> httpx.Response:
    """GET on a fresh connection (either worker may take it), retried while a worker
    restarts or the server starts."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            return httpx.get(url, timeout=30, **kw)
        except httpx.TransportError as exc:
            if time.monotonic() > deadline:
                raise
            if not isinstance(exc, httpx.ConnectError):  # sent: perhaps answered and counted
                prefix = httpx.URL(url).path.rsplit("/", 1)[0]
                RETRIED[prefix] = RETRIED.get(prefix, 0) + 1
            time.sleep(0.3)


def _up(proc: subprocess.Popen[bytes], base: str, engine: Engine) -> list[int]:
    """Wait for /health and for two workers; return their pids."""
    assert _get(f"{base}/health").status_code == 200
    deadline = time.monotonic() + START_TIMEOUT
    while len(workers := _workers(proc.pid)) != 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert len(workers) == 2, workers
    return workers


def _job(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, done, total, worker FROM plan_jobs WHERE id = :i"), {"i": job_id}
        ).mappings()
        return dict(row.one())


def _until(check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _worker_pid(engine: Engine, job_id: str) -> int:
    return int(_job(engine, job_id)["worker"].split(":")[1])


@contextmanager
def _plans_locked(engine: Engine) -> Iterator[Connection]:
    """Plans cannot be written while this lasts: a job stops at storing its plan. (SHARE,
    not EXCLUSIVE: inserting a job checks its foreign key to plans with a ROW SHARE lock.)"""
    with engine.connect() as conn:
        conn.execute(text("LOCK TABLE plans IN SHARE MODE"))
        try:
            yield conn
        finally:
            conn.rollback()


def _seed_member(engine: Engine, home: Path) -> None:
    with engine.begin() as conn:
        village_name, reg = conn.execute(
            text(
                "SELECT a.name, h.register_no FROM households h "
                "JOIN admin_areas a ON a.code = h.village_code ORDER BY h.id LIMIT 1"
            )
        ).one()
    members = home / "members.csv"
    with members.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["村", "户号", "姓名", "与户主关系", "公民身份号码", "联系电话"])
        out.writerow([village_name, reg, NAME, "户主", ID_NUMBER, PHONE])
    assert import_members(engine, members, key_provider(home, env={}, create=True)).inserted
    members.unlink()


def _requests_total(body: str, route: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
        if s.name == "geogrid_http_request_duration_seconds_count" and s.labels["route"] == route
    )


def _gauge(body: str, name: str) -> float:
    return next(
        s.value for f in text_string_to_metric_families(body) for s in f.samples if s.name == name
    )


def test_two_workers_share_jobs_metrics_and_report_interrupted_jobs(
    town_url: str, make_account: Callable[..., Any]
) -> None:
    home = make_home("geogrid-workers-")
    log = home / "serve.log"
    engine = store.make_engine(town_url)
    _seed_member(engine, home)
    planner = make_account(town_url, "planner", "all")
    leader = make_account(town_url, "town_leader", "all", ("unmask",))
    secrets = [*CANARIES, planner.password, leader.password]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    asked = 0  # answered GET /api/jobs/{job_id} requests, whichever worker took them
    RETRIED.clear()

    def job(job_id: str, headers: dict[str, str]) -> dict[str, Any]:
        nonlocal asked
        r = _get(f"{base}/api/jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        asked += 1
        return dict(r.json())

    try:
        with _server(home, town_url, port, log) as proc:
            _up(proc, base, engine)
            with httpx.Client(base_url=base, timeout=60) as c:
                h = planner.headers(c)
                lh = leader.headers(c)
                # 1. a job started through one worker ...
                r = c.post("/api/plans", json={"town": TOWN, "name": "两个进程"}, headers=h)
                assert r.status_code == 202, r.text
                first = r.json()["id"]
                _until(lambda: job(first, h)["status"] in ("done", "failed"), "the first job")
                done = job(first, h)
                assert done["status"] == "done" and done["plan_id"], done
                # ... is answered by the other once the one that ran it is gone
                ran = _worker_pid(engine, first)
                time.sleep(0.5)  # its last answer's metrics are written after it is sent
                _kill_pid(ran)
                for _ in range(6):  # fresh connections: the survivor or ran's replacement
                    again = job(first, h)
                    assert again["status"] == "done" and again["plan_id"] == done["plan_id"]
                # 2. a job whose worker dies while it runs is reported failed, not lost
                with _plans_locked(engine):
                    r = c.post("/api/plans", json={"town": TOWN, "name": "中断"}, headers=h)
                    second = r.json()["id"]
                    _until(
                        lambda: (s := _job(engine, second))["status"] == "running"
                        and s["total"] > 0 and s["done"] == s["total"],
                        "the second job to wait on the lock",
                    )  # fmt: skip
                    time.sleep(0.5)
                    _kill_pid(_worker_pid(engine, second))
                    lost = job(second, h)
                assert lost["status"] == "failed" and lost["error_type"] == "JobInterrupted"
                assert lost["problem"]["code"] == "JobInterrupted"
                # 3. personal data passes through (search, unmask, a resident's report)
                r = c.post("/api/people/search", json={"name": NAME, "id_number": ID_NUMBER},
                           headers=lh)  # fmt: skip
                assert r.status_code == 200 and r.json()["items"], r.text
                member = r.json()["items"][0]["id"]
                r = c.post(f"/api/people/{member}/unmask", json={"reason": "核实"}, headers=lh)
                assert r.status_code == 200 and PHONE in r.text
                # 4. /metrics sums every worker, the dead ones' counts included
                # (the killed workers' replacements count once they have started)
                _until(
                    lambda: _gauge(_get(f"{base}/metrics").text, "geogrid_db_pool_size") == 2 * 10,
                    "two live pools (the replacement workers started)",
                )  # fmt: skip
                body = _get(f"{base}/metrics").text
                # every answered request counted once; one whose answer was lost with a
                # killed worker's connection (and was asked again) perhaps counted too
                counted = _requests_total(body, "/api/jobs/{job_id}")
                assert asked <= counted <= asked + RETRIED.get("/api/jobs", 0), (counted, RETRIED)
                assert _gauge(body, "geogrid_db_pool_size") == 2 * 10  # two live pools, no more
                assert _requests_total(body, "/api/people/{member_id}/unmask") == 1
                jobs = {
                    s.labels["status"]: s.value
                    for f in text_string_to_metric_families(body)
                    for s in f.samples
                    if s.name == "geogrid_plan_jobs"
                }
                assert jobs["done"] == 1 and jobs["failed"] == 1
                for canary in secrets:
                    assert canary not in body
                # 5. a job running when the whole server is stopped hard
                with _plans_locked(engine):
                    r = c.post("/api/plans", json={"town": TOWN, "name": "重启"}, headers=h)
                    third = r.json()["id"]
                    _until(lambda: _job(engine, third)["status"] == "running", "the third job")
                    time.sleep(0.5)
                    # the supervisor first, so that it starts no replacement for the
                    # workers killed next
                    workers = _workers(proc.pid)
                    _kill(proc, signal.SIGKILL)
                    for pid in workers:
                        _kill_pid(pid)
        # nothing of the old server holds the port (a killed worker's partitioning pool
        # dies with it), so the restarted one listens where the clients look
        _until(lambda: _port_free(port), "the old server to let go of its port", timeout=30)
        # ... is reported by the restarted server, not lost and not left running
        outside = _outside_address()  # reachable when listening on every address
        with _server(home, town_url, port, log, "0.0.0.0" if outside else "127.0.0.1") as proc:
            _up(proc, base, engine)
            with httpx.Client(base_url=base, timeout=60) as c:
                after = job(third, planner.headers(c))
            assert after["status"] == "failed" and after["error_type"] == "JobInterrupted"
            assert "start it again" in after["error"]
            # the restart emptied the metrics folder: counts start again
            assert _requests_total(_get(f"{base}/metrics").text, "/api/jobs/{job_id}") == 1
            # another address than the allowed ones gets 403 (this host's other address)
            if outside is not None:
                r = _get(f"http://{outside}:{port}/metrics")
                assert r.status_code == 403 and r.json()["code"] == "Forbidden"
        # 6. the log: one JSON object per line, request ids, nothing personal
        lines = [ln for ln in log.read_text(encoding="utf-8").splitlines() if ln.strip()]
        not_json = [ln for ln in lines if not ln.startswith("{")]
        assert not_json == [], not_json[:20]
        parsed = [json.loads(ln) for ln in lines]
        access = [p for p in parsed if p["logger"] == "geogrid.http"]
        assert len(access) >= asked
        assert all((p["request_id"] and p["route"].startswith("/")) or p["route"] == "unmatched"
                   for p in access)  # fmt: skip
        assert {"/api/jobs/{job_id}", "/api/plans", "/metrics"} <= {p["route"] for p in access}
        text_all = log.read_text(encoding="utf-8")
        for canary in secrets:
            assert canary not in text_all, canary
        assert first not in {p.get("route") for p in access}
    finally:
        engine.dispose()


def _outside_address() -> str | None:
    """An address of this host outside 127.0.0.0/8 (the default allow list), if any."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent (UDP connect picks a route)
            address = str(s.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address
