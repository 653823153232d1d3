"""``geogrid serve``: the API and map pages with uvicorn."""

from __future__ import annotations

import logging.config
import os
import socket
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from geogrid import store
from geogrid.errors import InvalidInput
from geogrid.ops.logs import log_config
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)

#: Seconds a worker may leave the supervisor's ping unanswered (starting, or hung) before
#: it is replaced.
WORKER_HEALTHCHECK_S = 60


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when it is free on ``host``, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise typer.BadParameter(f"no free port on {host}")


def run_server(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int = 1,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> None:
    """Start the database if needed, then serve until interrupted.

    ``workers`` > 1 runs that many server processes (each builds its app from the
    environment; what is shared between them and what each keeps: README, "Several
    workers"); ``certfile``/``keyfile`` serve HTTPS, for intranets with their own CA.
    """
    # every line of the command in the configured format (imports and migrations too)
    logging.config.dictConfig(log_config(settings.log_level, settings.log_format))
    import uvicorn  # local: the core package does not depend on the web stack

    from api import create_app
    from api.balance import prepare_dir
    from geogrid.access.keys import server_secret
    from geogrid.ops.metrics import prepare_multiprocess_dir

    if (certfile is None) != (keyfile is None):
        raise InvalidInput("give both --certfile and --keyfile, or neither")
    for path in (certfile, keyfile):
        if path is not None and not path.is_file():
            raise InvalidInput(f"no such file: {path}")
    url = store.database_url(settings)  # starts the private cluster when it is the default
    store.upgrade(url)  # also creates the audit log's monthly partitions ahead
    server_secret(settings)  # created once here, not raced by several workers
    chosen = free_port(host, port)
    if chosen != port:
        console.print(f"port {port} is in use; serving on {chosen}")
    scheme = "https" if certfile else "http"
    console.print(f"geogrid is serving on {scheme}://{host}:{chosen}/  (Ctrl+C to stop)")
    common: dict[str, Any] = {
        "host": host, "port": chosen, "log_level": settings.log_level.lower(),
        # one access line per request by route template (geogrid.ops.logs), not uvicorn's
        # (raw paths and query strings: tokens, search words)
        "access_log": False,
        "log_config": log_config(settings.log_level, settings.log_format),
        # a worker answers the supervisor's pings only once it has imported the app: on a
        # busy machine that takes longer than uvicorn's 5 s, which killed and restarted
        # starting workers for ever
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_S,
        "ssl_certfile": str(certfile) if certfile else None,
        "ssl_keyfile": str(keyfile) if keyfile else None,
    }  # fmt: skip
    if workers > 1:
        # each worker process builds its own app (and pool) from the environment; plan
        # jobs live in the database; metrics go to files summed by whichever worker is
        # scraped (the folder is emptied first: the environment names it to the workers);
        # kept-alive connections are spread evenly over the workers (api.balance)
        os.environ["GEOGRID_DATABASE_URL"] = url
        prepare_multiprocess_dir(settings.home)
        prepare_dir(settings.home)
        uvicorn.run("api.app:create_app_from_env", factory=True, workers=workers, **common)
        return
    uvicorn.run(create_app(settings, database_url=url), **common)


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000; another if busy)."),
    workers: int = typer.Option(1, min=1, max=64, help="Server processes (one per core)."),
    certfile: Path | None = typer.Option(None, help="TLS certificate (PEM) for HTTPS."),
    keyfile: Path | None = typer.Option(None, help="TLS private key (PEM) for HTTPS."),
) -> None:
    """Serve the API, OGC API Features, vector tiles and the map pages."""
    settings = Settings()
    run_server(
        settings, host=host or settings.host, port=port or settings.port, workers=workers,
        certfile=certfile, keyfile=keyfile,
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
