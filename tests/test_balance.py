"""Kept-alive connections spread over the workers (api.balance): the rules of
:class:`Balancer` on fake clocks, then ``Connection: close`` through the real app."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api import balance, create_app
from api.balance import ENV, STALE_S, WINDOW_S, Balancer, prepare_dir
from api.routes.metrics import Observe
from geogrid.settings import Settings


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _balancer(folder: Path, clock: Clock | None = None, wall: Clock | None = None) -> Balancer:
    return Balancer(folder, name="me", clock=clock or Clock(100.0), wall=wall or Clock(1e9))


def _peer(folder: Path, count: object, name: str = "4242", mtime: float | None = None) -> Path:
    path = folder / f"conns-{name}"
    path.write_text(str(count), encoding="ascii")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _seen(b: Balancer, clients: list[Any]) -> None:
    for client in clients:
        assert b.close_after(client) is False  # the first request of each


def _closed(b: Balancer, clients: list[Any]) -> list[bool]:
    return [b.close_after(client) for client in clients]


CLIENTS = [("10.0.0.1", port) for port in range(5001, 5007)]  # six connections


@pytest.mark.parametrize(("peer", "closes"), [(6, 0), (5, 0), (4, 1), (2, 2), (0, 3)])
def test_a_worker_closes_what_it_holds_above_its_share(
    tmp_path: Path, peer: int, closes: int
) -> None:
    _peer(tmp_path, peer)
    b = _balancer(tmp_path)
    _seen(b, CLIENTS)
    b.look()
    assert closes == max(0, len(CLIENTS) - math.ceil((len(CLIENTS) + peer) / 2))
    assert b.last == (len(CLIENTS), len(CLIENTS) + peer, 2) and b.excess == closes
    answers = _closed(b, CLIENTS)
    assert answers == [True] * closes + [False] * (len(CLIENTS) - closes)
    assert b.closed == closes and b.excess == 0
    assert _closed(b, CLIENTS) == [False] * len(CLIENTS)  # then none until the next look


def test_a_connection_seen_for_the_first_time_is_not_closed(tmp_path: Path) -> None:
    _peer(tmp_path, 0)
    b = _balancer(tmp_path)
    _seen(b, CLIENTS[:4])
    b.look()
    assert b.excess == 2
    assert b.close_after(("10.0.0.9", 1)) is False  # new: may have just moved here
    assert b.excess == 2
    assert b.close_after(CLIENTS[0]) is True
    assert b.close_after(CLIENTS[0]) is False  # its next one is a new connection's


def test_an_idle_connection_stops_counting_after_the_window(tmp_path: Path) -> None:
    _peer(tmp_path, 0)
    clock = Clock(100.0)
    b = _balancer(tmp_path, clock=clock)
    _seen(b, CLIENTS[:2])
    clock.now += WINDOW_S + 0.5
    _seen(b, CLIENTS[2:4])
    b.look()
    assert b.last == (2, 2, 2) and b.excess == 1  # four connections would make 2
    assert b.close_after(CLIENTS[0]) is False  # forgotten, so new again
    clock.now += WINDOW_S  # exactly the window: still counts
    b.look()
    assert b.last[0] == 3


def test_a_stale_peer_is_left_out_of_the_share(tmp_path: Path) -> None:
    wall = Clock(1e9)
    _peer(tmp_path, 0, name="1", mtime=wall.now - STALE_S - 1)  # gone: would halve the share
    _peer(tmp_path, 0, name="2", mtime=wall.now - STALE_S + 1)  # live
    b = _balancer(tmp_path, wall=wall)
    _seen(b, CLIENTS[:4])
    b.look()
    assert b.last == (4, 4, 2) and b.excess == 2
    wall.now += 2  # now the second one is stale too
    b.look()
    assert b.last == (4, 4, 1) and b.excess == 0


@pytest.mark.parametrize(
    ("garbage", "live"),
    [("1.5", 2), ("seven", 2), ("\x00\x00", 2), ("\xe9t\xe9", 2), ("9" * 5000 + "x", 2),
     ("", 3), ("-3", 3)],  # empty or negative: a live worker with no connections
)  # fmt: skip
def test_a_garbled_peer_file_is_ignored(tmp_path: Path, garbage: str, live: int) -> None:
    _peer(tmp_path, 0, name="1")
    (tmp_path / "conns-2").write_bytes(garbage.encode("latin-1"))
    (tmp_path / "conns-3").mkdir()  # not even a file
    (tmp_path / "other").write_text("100", encoding="ascii")  # not a count
    b = _balancer(tmp_path)
    _seen(b, CLIENTS[:4])
    b.look()
    assert b.last == (4, 4, live)


def test_a_peer_mid_publication_is_counted_once(tmp_path: Path) -> None:
    _peer(tmp_path, 0, name="1")
    writer = Balancer(tmp_path, name="1")
    # worker 1 between its write and its rename: the file it writes first
    writer.path.with_name(f".{writer.path.name}.tmp").write_text("0", encoding="ascii")
    _peer(tmp_path, 2, name="2")
    b = _balancer(tmp_path)
    _seen(b, CLIENTS[:2])
    b.look()
    assert b.last == (2, 4, 3) and b.excess == 0  # at its share, ceil(4 / 3) = 2


def test_a_lone_worker_closes_nothing(tmp_path: Path) -> None:
    b = _balancer(tmp_path)
    _seen(b, CLIENTS)
    b.look()
    assert b.last == (len(CLIENTS), len(CLIENTS), 1) and b.excess == 0
    assert _closed(b, CLIENTS) == [False] * len(CLIENTS)


@pytest.mark.parametrize("client", [None, ("10.0.0.9", 0), ["10.0.0.9", 0]])
def test_no_client_address_is_never_closed(tmp_path: Path, client: Any) -> None:
    """No address, or one a proxy named (X-Forwarded-For: port 0): not a connection."""
    _peer(tmp_path, 0)
    b = _balancer(tmp_path)
    _seen(b, CLIENTS[:4])
    b.look()
    assert b.excess == 2
    assert b.close_after(client) is False and b.close_after(client) is False
    assert b.excess == 2 and b.closed == 0


def test_look_publishes_and_forget_withdraws(tmp_path: Path) -> None:
    b = _balancer(tmp_path)
    _seen(b, CLIENTS[:3])
    b.look()
    assert (tmp_path / "conns-me").read_text(encoding="ascii") == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conns-me"]  # no .tmp left
    other = Balancer(tmp_path, name="other", clock=Clock(100.0), wall=Clock(1e9))
    other.look()
    assert other.last == (0, 3, 2)  # reads the first one's count
    b.forget()
    assert not b.path.exists()
    b.forget()  # twice is fine


def test_prepare_dir_empties_old_counts_and_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    folder = tmp_path / "run" / "balance"
    folder.mkdir(parents=True)
    _peer(folder, 7, name="1")
    keep = folder / "notes"
    keep.write_text("x", encoding="ascii")
    assert prepare_dir(tmp_path) == folder
    assert os.environ[ENV] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes"]
    assert prepare_dir(tmp_path / "fresh").is_dir()  # created when missing


def test_from_env_needs_an_existing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert Balancer.from_env() is None
    monkeypatch.setenv(ENV, "")
    assert Balancer.from_env() is None
    monkeypatch.setenv(ENV, str(tmp_path / "missing"))
    assert Balancer.from_env() is None
    monkeypatch.setenv(ENV, str(tmp_path))
    found = Balancer.from_env()
    assert found is not None and found.path == tmp_path / f"conns-{os.getpid()}"


def _observe(app: Any) -> Observe:
    layer = app.middleware_stack
    while not isinstance(layer, Observe):
        layer = layer.app
    return layer


def _rounds(client: TestClient, app: Any, ports: list[int], look: bool) -> list[list[bool]]:
    """Two rounds of ``/health`` from each port (a kept-alive connection each), with a look
    in between; per round, which answers carried ``Connection: close``."""

    async def run() -> list[list[bool]]:
        rounds: list[list[bool]] = []
        for n in range(2):
            if n and look:
                balancer = _observe(app).balancer
                assert balancer is not None
                balancer.look()
            closes = []
            for port in ports:
                transport = httpx.ASGITransport(app=app, client=("127.0.0.1", port))
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    r = await c.get("/health")
                assert r.status_code == 200, r.text
                closes.append(r.headers.get("connection") == "close")
            rounds.append(closes)
        return rounds

    assert client.portal is not None
    return client.portal.call(run)  # on the app's event loop, after its lifespan start


def test_an_over_share_worker_answers_connection_close(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "balance"
    folder.mkdir()
    _peer(folder, 0, name="999999")  # an idle peer: this worker holds more than its share
    monkeypatch.setenv(ENV, str(folder))
    monkeypatch.setattr(balance, "PERIOD_S", 3600.0)  # only the looks the test makes
    app = create_app(Settings(home=tmp_path / "home"), database_url=db_url)
    mine = folder / f"conns-{os.getpid()}"
    with TestClient(app) as client:
        assert mine.read_text(encoding="ascii") == "0"  # started with the lifespan
        first, second = _rounds(client, app, [6001, 6002, 6003, 6004], look=True)
    assert not mine.exists()  # withdrawn at shutdown
    assert first == [False] * 4  # nothing seen before the look
    assert second == [True, True, False, False]  # 4 held, share ceil(4 / 2) = 2


def test_a_single_worker_never_answers_connection_close(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    app = create_app(Settings(home=tmp_path / "home"), database_url=db_url)
    with TestClient(app) as client:
        assert _observe(app).balancer is None
        rounds = _rounds(client, app, [6001, 6002, 6003, 6004], look=False)
        assert client.get("/health").headers.get("connection") != "close"
    assert rounds == [[False] * 4, [False] * 4]
