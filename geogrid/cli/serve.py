"""``geogrid serve``: the API and map pages with uvicorn."""

from __future__ import annotations

import socket

import typer
from rich.console import Console

from geogrid import store
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)


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


def run_server(settings: Settings, *, host: str, port: int) -> None:
    """Start the database if needed, then serve until interrupted."""
    import uvicorn  # local: the core package does not depend on the web stack

    from api import create_app

    url = store.database_url(settings)  # starts the private cluster when it is the default
    store.upgrade(url)
    chosen = free_port(host, port)
    if chosen != port:
        console.print(f"port {port} is in use; serving on {chosen}")
    console.print(f"geogrid is serving on http://{host}:{chosen}/  (Ctrl+C to stop)")
    uvicorn.run(
        create_app(settings, database_url=url), host=host, port=chosen,
        log_level=settings.log_level.lower(), access_log=settings.log_level in ("DEBUG", "INFO"),
    )  # fmt: skip


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000; another if busy)."),
) -> None:
    """Serve the API, OGC API Features, vector tiles and the map pages."""
    settings = Settings()
    run_server(settings, host=host or settings.host, port=port or settings.port)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
