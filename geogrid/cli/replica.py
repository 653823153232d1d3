"""``geogrid db replica add|list|urls|stop|start|remove``: streaming standbys of the private
cluster (:mod:`geogrid.ops.replica`). Registered on ``geogrid db`` by :mod:`geogrid.cli.dbops`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)

replica_app = typer.Typer(
    help="Read replicas: PostgreSQL streaming standbys of the private cluster.",
    no_args_is_help=True,
)


@replica_app.command("add")
def add(
    name: str | None = typer.Option(None, "--name", help="Its name (default r1, r2...)."),
    datadir: Path | None = typer.Option(
        None, "--datadir", help="Data directory (default GEOGRID_HOME/replicas/NAME/pgdata)."
    ),
    port: int | None = typer.Option(None, "--port", help="Port on 127.0.0.1 (default: free)."),
    allow: list[str] = typer.Option(
        [], "--allow", help="Further address (CIDR) allowed to replicate (another machine)."
    ),
) -> None:
    """Create and start a hot standby (pg_basebackup -R, streaming replication)."""
    from geogrid.ops import replica

    settings = Settings()
    with console.status("copying the cluster (pg_basebackup)"):
        rep = replica.add(settings, name=name, datadir=datadir, port=port, allow=allow)
    console.print(f"replica {rep.name} streaming on 127.0.0.1:{rep.port} ({rep.datadir}); "
                  "`geogrid db replica urls` prints GEOGRID_REPLICA_URLS")  # fmt: skip


@replica_app.command("list")
def list_() -> None:
    """Each standby: running, state, lag (bytes behind the primary, seconds of replay)."""
    from geogrid.ops import replica

    rows = replica.status(Settings())
    if not rows:
        console.print("no replicas (geogrid db replica add)")
        return
    console.print("name\tport\tstate\tstandby\tlag_bytes\tlag_seconds")
    for r in rows:
        standby = "-" if r.standby is None else ("yes" if r.standby else "NO")
        lag_b = "-" if r.lag_bytes is None else str(r.lag_bytes)
        lag_s = "-" if r.lag_seconds is None else f"{r.lag_seconds:.1f}"
        console.print(f"{r.name}\t{r.port}\t{r.state}\t{standby}\t{lag_b}\t{lag_s}")


@replica_app.command("urls")
def urls() -> None:
    """The value for GEOGRID_REPLICA_URLS (holds the database password: keep it private)."""
    from geogrid.ops import replica

    settings = Settings()
    typer.echo(",".join(replica.url(settings, r.name) for r in replica.load(settings)))


@replica_app.command("stop")
def stop(name: str = typer.Argument(..., help="The replica's name.")) -> None:
    """Stop a standby (the web server takes it out of rotation)."""
    from geogrid.ops import replica

    was = replica.stop(Settings(), name)
    console.print(f"replica {name} stopped" if was else f"replica {name} was not running")


@replica_app.command("start")
def start(name: str = typer.Argument(..., help="The replica's name.")) -> None:
    """Start a standby again; it catches up by streaming, then returns to rotation."""
    from geogrid.ops import replica

    rep = replica.start(Settings(), name)
    console.print(f"replica {rep.name} running on 127.0.0.1:{rep.port}")


@replica_app.command("remove")
def remove(name: str = typer.Argument(..., help="The replica's name.")) -> None:
    """Stop a standby and delete its data directory."""
    from geogrid.ops import replica

    rep = replica.remove(Settings(), name)
    console.print(f"replica {rep.name} removed ({rep.datadir} deleted)")
