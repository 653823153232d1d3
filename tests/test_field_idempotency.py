"""Idempotency keys (geogrid.fieldwork.idempotency.once) against a real PostGIS database:
a repeated key finds the first record, a key of another user or kind is refused, two
concurrent sends of one key create one record, and no key just creates."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, Engine, text

from geogrid.access import users
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.errors import Conflict, InvalidInput
from geogrid.fieldwork.idempotency import once

GRID = "420117105201001"


@pytest.fixture
def things(engine: Engine) -> Engine:
    """The fresh database with a table of test records to create."""
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE things (id bigint GENERATED ALWAYS AS IDENTITY, note text)")
        )
        conn.execute(text("GRANT SELECT, INSERT ON things TO geogrid_web"))
    return engine


def _principal(engine: Engine, name: str) -> Principal:
    with engine.begin() as conn:
        users.add_user(conn, username=name, role=Role.grid_worker, scope=Scope.parse(GRID))
        return users.get_user(conn, username=name).principal()


def _maker(conn: Connection, note: str = "x") -> Callable[[], int]:
    def create() -> int:
        return int(
            conn.execute(
                text("INSERT INTO things (note) VALUES (:n) RETURNING id"), {"n": note}
            ).scalar_one()
        )

    return create


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM things")).scalar_one())


def test_repeated_key_returns_first_record_and_creates_nothing(things: Engine) -> None:
    p = _principal(things, "worker-a")
    key = uuid.uuid4()
    with things.begin() as conn:
        conn.execute(text("SET LOCAL ROLE geogrid_web"))  # what the web server may do
        first, created = once(conn, principal=p, client_id=key, kind="visit", create=_maker(conn))
    assert created is True
    for _ in range(2):
        with things.begin() as conn:
            conn.execute(text("SET LOCAL ROLE geogrid_web"))
            again, created = once(
                conn, principal=p, client_id=key, kind="visit", create=_maker(conn)
            )
        assert (again, created) == (first, False)
    assert _count(things) == 1
    with things.connect() as conn:
        row = conn.execute(text("SELECT user_id, kind, record_id FROM client_records")).one()
    assert tuple(row) == (p.user_id, "visit", first)


@pytest.mark.parametrize("other", ["user", "kind"])
def test_key_reused_by_another_user_or_kind_is_refused(things: Engine, other: str) -> None:
    p = _principal(things, "worker-b")
    q = _principal(things, "worker-c") if other == "user" else p
    kind = "case" if other == "kind" else "visit"
    key = uuid.uuid4()
    with things.begin() as conn:
        once(conn, principal=p, client_id=key, kind="visit", create=_maker(conn))
    with things.begin() as conn, pytest.raises(Conflict, match="already used"):
        once(conn, principal=q, client_id=key, kind=kind, create=_maker(conn))
    assert _count(things) == 1


def test_none_key_runs_create_every_time(things: Engine) -> None:
    p = _principal(things, "worker-d")
    with things.begin() as conn:
        a = once(conn, principal=p, client_id=None, kind="case", create=_maker(conn))
        b = once(conn, principal=p, client_id=None, kind="case", create=_maker(conn))
    assert a[1] and b[1] and a[0] != b[0]
    assert _count(things) == 2
    with things.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM client_records")).scalar_one() == 0


@pytest.mark.parametrize(
    ("kind", "client_id", "reason"),
    [
        ("", uuid.uuid4(), "lower-case word"),
        ("Visit", uuid.uuid4(), "lower-case word"),
        ("visit; drop", uuid.uuid4(), "lower-case word"),
        ("v" * 33, uuid.uuid4(), "lower-case word"),
        ("visit", "6f1c2f8e-0000-4000-8000-000000000000", "must be a UUID"),
    ],
)
def test_bad_kind_or_key_is_refused(
    things: Engine, kind: str, client_id: object, reason: str
) -> None:
    p = _principal(things, "worker-e")
    with things.begin() as conn, pytest.raises(InvalidInput, match=reason):
        once(conn, principal=p, client_id=client_id, kind=kind, create=_maker(conn))  # type: ignore[arg-type]
    assert _count(things) == 0


def test_same_key_twice_in_one_transaction_is_refused(things: Engine) -> None:
    """create() sending the same key again (re-entrancy) must not create a second record."""
    p = _principal(things, "worker-f")
    key = uuid.uuid4()
    with things.begin() as conn:

        def nested() -> int:
            once(conn, principal=p, client_id=key, kind="case", create=_maker(conn))
            return 0

        with pytest.raises(Conflict, match="being created"):
            once(conn, principal=p, client_id=key, kind="case", create=nested)


def _waiting_on_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


@pytest.mark.parametrize("first_commits", [True, False])
def test_concurrent_sends_create_exactly_one_record(things: Engine, first_commits: bool) -> None:
    """Two connections send one key at once: the second waits for the first; if the first
    commits it finds that record, if the first rolls back it creates the record itself."""
    p = _principal(things, f"worker-g{int(first_commits)}")
    key = uuid.uuid4()
    inside = threading.Event()
    results: dict[str, tuple[int, bool]] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with things.connect() as conn:
                trans = conn.begin()
                make = _maker(conn, "first")

                def slow() -> int:
                    rid = make()
                    inside.set()
                    deadline = time.monotonic() + 10
                    while not _waiting_on_lock(things) and time.monotonic() < deadline:
                        time.sleep(0.02)
                    results["waited"] = (0, _waiting_on_lock(things))
                    return rid

                results["first"] = once(conn, principal=p, client_id=key, kind="case", create=slow)
                (trans.commit if first_commits else trans.rollback)()
        except BaseException as e:
            errors.append(e)

    def second() -> None:
        try:
            inside.wait(10)
            with things.begin() as conn:
                results["second"] = once(
                    conn, principal=p, client_id=key, kind="case", create=_maker(conn, "second")
                )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert results["first"][1] is True
    assert results["waited"] == (0, True)  # the second send really waited on the first
    with things.connect() as conn:
        notes = conn.execute(text("SELECT id, note FROM things")).all()
        record = conn.execute(text("SELECT record_id FROM client_records")).scalar_one()
    assert len(notes) == 1
    if first_commits:
        assert results["second"] == (results["first"][0], False)
        assert notes[0].note == "first"
    else:
        assert results["second"][1] is True
        assert notes[0].note == "second"
    assert record == notes[0].id
