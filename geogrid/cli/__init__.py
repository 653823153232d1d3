"""The ``geogrid`` command line.

Each topic lives in its own module under :mod:`geogrid.cli` and exposes
``register(app)``; :func:`build_app` wires them together. Domain errors are printed
as one line (no traceback) and exit with status 1.
"""

from __future__ import annotations

import importlib
import logging
import logging.config
import sys
from typing import NoReturn

import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import DBAPIError, OperationalError

from geogrid.errors import GeogridError
from geogrid.ops.logs import log_config
from geogrid.settings import Settings

#: Topic modules, each with ``register(app: typer.Typer) -> None``.
TOPICS = (
    "db", "sample", "coords", "address", "importer", "partition", "plan", "serve", "demo",
    "mapcmd", "people", "access", "calendar", "archive",
)  # fmt: skip

err_console = Console(stderr=True)


def build_app() -> typer.Typer:
    """Build the Typer application with every topic registered."""
    app = typer.Typer(
        name="geogrid",
        help="geogrid: GIS mapping and grid partitioning for township grid management.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for topic in TOPICS:
        importlib.import_module(f"geogrid.cli.{topic}").register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``geogrid`` console command."""
    try:
        settings = Settings()  # a bad GEOGRID_* value stops every command alike
    except ValidationError as exc:
        _fail(settings_error(exc))
    level = settings.log_level
    if settings.log_format == "json":  # one JSON object per line from the first line on
        logging.config.dictConfig(log_config(level, "json"))
    else:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    app = build_app()
    try:
        app(args=argv, prog_name="geogrid", standalone_mode=True)
    except GeogridError as exc:
        _fail(exc.message)
    except (OperationalError, psycopg.OperationalError) as exc:
        # A database that went away mid-command: one line, never a traceback.
        text = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
        _fail(f"database error: {text[-1] if text else exc!r}")
    except DBAPIError as exc:
        # Anything else the database refused (a failing migration, a constraint): its
        # first line, without the statement and parameters SQLAlchemy appends.
        text = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
        _fail(f"database error: {text[0] if text else type(exc).__name__}")


def settings_error(exc: ValidationError) -> str:
    """One line naming each bad ``GEOGRID_*`` variable, its value and what it must be.

    >>> try:
    ...     Settings(port="abc")
    ... except ValidationError as e:
    ...     print(settings_error(e))
    GEOGRID_PORT='abc': Input should be a valid integer, unable to parse string as an integer
    """
    parts = []
    for err in exc.errors():
        name = "GEOGRID_" + "_".join(str(p) for p in err.get("loc", ())).upper()
        parts.append(f"{name}={err.get('input')!r}: {err.get('msg')}")
    return "; ".join(parts)


def _fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(1)
