"""``geogrid db``: the private PostGIS cluster and the schema."""

from __future__ import annotations

import typer
from rich.console import Console

from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)

db_app = typer.Typer(help="The PostGIS database: private cluster and migrations.",
                     no_args_is_help=True)  # fmt: skip


@db_app.command("up")
def up(
    no_wal_archive: bool = typer.Option(
        False, "--no-wal-archive", help="Leave continuous WAL archiving off (no `--until`)."
    ),
) -> None:
    """Create (once) and start the private cluster, enable PostGIS, apply all migrations,
    and archive the WAL continuously (GEOGRID_HOME/wal; a first base backup) so that
    `geogrid db restore --until TIME` works.

    With GEOGRID_DATABASE_URL set, start nothing: migrate that database instead.
    """
    settings = Settings()
    if settings.database_url:
        url = store.database_url(settings)
        with console.status("applying migrations"):
            store.upgrade(url)
        console.print(f"using GEOGRID_DATABASE_URL {store.mask_url(url)}: schema up to date")
        return
    cluster = PrivateCluster(settings)
    with console.status(f"starting the private PostGIS cluster in {cluster.home}"):
        state = cluster.start()
    with console.status("applying migrations"):
        store.upgrade(state.url())
    if not no_wal_archive:
        from geogrid.ops import wal

        with console.status("turning on WAL archiving"):
            base = wal.ensure(settings)
        if base is not None:
            console.print(f"WAL archiving on into {wal.wal_dir(settings)}; "
                          f"base backup {base.path.name}")  # fmt: skip
    state = cluster.load_state() or state  # (archiving restarts it on the same port)
    console.print(
        f"private PostGIS running on 127.0.0.1:{state.port} "
        f"(data: {cluster.datadir}); schema up to date"
    )


@db_app.command("status")
def status() -> None:
    """Say whether the database is running, where, and at which schema revision.

    Exit status 0 when it is reachable, 3 when it is stopped or absent.
    """
    settings = Settings()
    if settings.database_url:
        url = store.database_url(settings)
        version = store.check_connection(url)
        _print_schema(url, f"external database {store.mask_url(url)} (PostgreSQL {version})")
        return
    cluster = PrivateCluster(settings)
    st = cluster.status()
    if not st.initialised:
        console.print(f"no private cluster in {cluster.home} (run `geogrid db up`)")
        raise typer.Exit(3)
    if not st.running:
        console.print(f"private cluster stopped (data: {st.datadir}, port {st.port})")
        raise typer.Exit(3)
    _print_schema(
        cluster.url(),
        f"private cluster running on 127.0.0.1:{st.port} "
        f"(PostgreSQL {st.pg_version}, data: {st.datadir})",
    )


def _print_schema(url: str, where: str) -> None:
    engine = store.make_engine(url)
    try:
        rev, postgis = store.current_revision(engine), store.postgis_version(engine)
    finally:
        engine.dispose()
    head = store.head_revision()
    state = "up to date" if rev == head else f"behind (head is {head}; run `geogrid db up`)"
    console.print(where)
    console.print(f"PostGIS {postgis or 'not enabled'}; schema revision {rev or 'none'}: {state}")


@db_app.command("url")
def url() -> None:
    """Print the database URL (for psql, QGIS, notebooks)."""
    settings = Settings()
    if settings.database_url:
        typer.echo(store.database_url(settings))
        return
    typer.echo(PrivateCluster(settings).url())


@db_app.command("down")
def down() -> None:
    """Stop the private cluster (its data stays)."""
    settings = Settings()
    if settings.database_url:
        console.print("GEOGRID_DATABASE_URL is set: geogrid started nothing, so stops nothing")
        return
    stopped = PrivateCluster(settings).stop()
    console.print("private cluster stopped" if stopped else "private cluster was not running")


@db_app.command("migrate")
def migrate(
    revision: str = typer.Option("head", help="Target revision ('head', or an id)."),
) -> None:
    """Apply migrations up to a revision."""
    url = store.database_url(Settings())
    store.upgrade(url, revision)
    console.print(f"schema at {revision}")


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision ('base': empty).")) -> None:
    """Revert migrations down to a revision."""
    url = store.database_url(Settings())
    store.downgrade(url, revision)
    console.print(f"schema at {revision}")


def register(app: typer.Typer) -> None:
    from geogrid.cli import dbops  # backup, restore, upgrade, check, wal

    dbops.register(db_app)
    app.add_typer(db_app, name="db")
