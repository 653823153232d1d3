"""Test fixtures: a throwaway private PostGIS cluster for the whole session.

The cluster is started by geogrid's own cluster manager in a temporary GEOGRID_HOME
(fsync off for speed). A template database carries the migrated schema; tests that
commit get a fresh database cloned from it (``db_url``), tests that only need a
connection get one inside a transaction that is rolled back (``db_conn``).

In CI (``CI`` set) a skipped test fails the run: every service the tests need is
installed and started by the suite itself.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, Engine

from geogrid import store
from geogrid.cluster import ClusterState, PrivateCluster
from geogrid.settings import Settings

TEMPLATE_DB = "geogrid_template"


def make_home(prefix: str = "geogrid-test-") -> Path:
    """A temporary GEOGRID_HOME the unprivileged server user can enter (also as root)."""
    home = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("GEOGRID_TEST_TMP", "/tmp")))
    home.chmod(0o755)
    return home


@dataclass
class TestCluster:
    settings: Settings
    cluster: PrivateCluster
    state: ClusterState
    _counter: itertools.count[int]

    def url(self, database: str) -> str:
        s = self.state
        return f"postgresql+psycopg://{s.user}:{s.password}@127.0.0.1:{s.port}/{database}"

    def admin(self) -> psycopg.Connection:
        s = self.state
        return psycopg.connect(
            f"host=127.0.0.1 port={s.port} user={s.user} password={s.password} dbname=postgres",
            autocommit=True,
        )

    def create_database(self, template: str = TEMPLATE_DB) -> str:
        name = f"geogrid_t{os.getpid()}_{next(self._counter)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg() -> Iterator[TestCluster]:
    """The session's private PostGIS cluster, with a migrated template database."""
    home = make_home()
    settings = Settings(home=home, database_url=None, cluster_fsync=False)
    cluster = PrivateCluster(settings)
    state = cluster.start()
    tc = TestCluster(settings, cluster, state, itertools.count())
    with tc.admin() as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    store.upgrade(tc.url(TEMPLATE_DB))
    try:
        yield tc
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def db_url(pg: TestCluster) -> Iterator[str]:
    """URL of a fresh database with the full schema, dropped after the test."""
    name = pg.create_database()
    try:
        yield pg.url(name)
    finally:
        pg.drop_database(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = store.make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def _shared_engine(pg: TestCluster) -> Iterator[Engine]:
    name = pg.create_database()
    eng = store.make_engine(pg.url(name))
    try:
        yield eng
    finally:
        eng.dispose()
        pg.drop_database(name)


@pytest.fixture
def db_conn(_shared_engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back after the test."""
    with _shared_engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        finally:
            trans.rollback()


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where page tests keep screenshots: ``GEOGRID_ARTIFACTS`` (CI keeps that folder as its
    artefacts; ``scripts/test.sh`` sets it to ``artifacts/``), else a temporary folder."""
    env = os.environ.get("GEOGRID_ARTIFACTS")
    path = Path(env) if env else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def sample_town(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The deterministic sample town (seed 7), generated once per session."""
    from geogrid.sample import generate_town

    return generate_town(seed=7, out=tmp_path_factory.mktemp("sample-town"))


@pytest.fixture
def town_db(engine: Engine, sample_town) -> Engine:  # type: ignore[no-untyped-def]
    """A fresh database with the sample town's boundaries and supplied group polygons."""
    from geogrid.ingest.boundaries import import_boundaries

    import_boundaries(engine, sample_town.boundaries, level="town")
    import_boundaries(engine, sample_town.boundaries, level="village")
    import_boundaries(engine, sample_town.groups, level="group")
    return engine


@pytest.fixture(scope="session")
def _town_template(pg: TestCluster, sample_town) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A database holding the sample town's boundaries, groups and households."""
    from geogrid.ingest.boundaries import import_boundaries
    from geogrid.ingest.load import import_households

    name = pg.create_database()
    engine = store.make_engine(pg.url(name))
    try:
        import_boundaries(engine, sample_town.boundaries, level="town")
        import_boundaries(engine, sample_town.boundaries, level="village")
        import_boundaries(engine, sample_town.groups, level="group")
        import_households(
            engine, sample_town.households_xlsx, rejects_path=sample_town.out / "rejects.csv"
        )
    finally:
        engine.dispose()
    try:
        yield name
    finally:
        pg.drop_database(name)


@pytest.fixture
def town_url(pg: TestCluster, _town_template: str) -> Iterator[str]:
    """URL of a fresh copy of the loaded sample town (boundaries, groups, households)."""
    name = pg.create_database(template=_town_template)
    try:
        yield pg.url(name)
    finally:
        pg.drop_database(name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a skipped test is a failure: the suite must provide every service."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        if reporter:
            reporter.write_line(f"CI: {skipped} test(s) skipped; a skip in CI is a failure")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --------------------------------------------------------------------------- accounts


@dataclass
class Account:
    """A user made for a test, with the password it signs in with."""

    username: str
    password: str
    role: str
    scope: str

    def headers(self, client) -> dict[str, str]:  # type: ignore[no-untyped-def]
        """``Authorization`` for ``client`` (signs in through the OAuth2 password flow)."""
        r = client.post(
            "/api/auth/token", data={"username": self.username, "password": self.password}
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


_account_no = itertools.count()


@pytest.fixture
def make_account(account_maker):  # type: ignore[no-untyped-def]
    """``make_account(url, role, scope="all", permissions=(), must_change=False)``: a user
    in the database at ``url`` (created with the owner's rights, as the CLI does)."""
    return account_maker


@pytest.fixture(scope="session")
def account_maker():  # type: ignore[no-untyped-def]
    """:func:`make_account` for module-scoped fixtures."""
    from geogrid.access import users
    from geogrid.access.scope import Scope

    def make(
        url: str,
        role: str,
        scope: str = "all",
        permissions: tuple[str, ...] = (),
        *,
        must_change: bool = False,
    ) -> Account:
        name = f"{role.replace('_', '-')}-{next(_account_no)}"
        eng = store.make_engine(url)
        try:
            with eng.begin() as conn:
                _, password = users.add_user(
                    conn, username=name, role=role, scope=Scope.parse(scope),
                    must_change_password=must_change,
                )  # fmt: skip
                if permissions:
                    users.set_permissions(conn, username=name, grant=list(permissions), revoke=[])
        finally:
            eng.dispose()
        return Account(name, password, role, scope)

    return make


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``cli(*args, code=0) -> output``: the ``geogrid`` command run in process (typer's
    runner) against a fresh database (:func:`db_url`), GEOGRID_HOME a temporary folder."""
    from typer.testing import CliRunner

    from geogrid.cli import build_app

    monkeypatch.setenv("GEOGRID_DATABASE_URL", db_url)
    monkeypatch.setenv("GEOGRID_HOME", str(tmp_path))
    app = build_app()

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == code, (args, result.output, result.exception)
        return str(result.output)

    return run


@pytest.fixture(scope="module")
def live(pg, _town_template, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The page tests' server: the real app with uvicorn on a free 127.0.0.1 port against a
    seeded copy of the sample town (see tests/pages_support.py; a module may override it)."""
    from tests.pages_support import live_server

    yield from live_server(pg, _town_template, tmp_path_factory)


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    """Headless Debian Chromium driven by Playwright (a module may override it)."""
    from tests.pages_support import chromium

    yield from chromium()
