"""``geogrid import``: boundaries (and, as they land, households and overlay layers)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from geogrid import store
from geogrid.ingest.boundaries import Level, import_boundaries
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)
import_app = typer.Typer(help="Load township data into PostGIS.", no_args_is_help=True)


@import_app.command("boundaries")
def boundaries(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="GPKG, SHP or GeoJSON."),
    level: str = typer.Option(..., "--level", help="town | village | group"),
    layer: str | None = typer.Option(None, help="Layer inside a multi-layer file."),
    crs: str | None = typer.Option(None, help="CRS of a file that declares none."),
    town: str | None = typer.Option(None, help="Town code for villages without one."),
) -> None:
    """Validate, repair and load admin boundaries or villager-group polygons."""
    if level not in ("town", "village", "group"):
        raise typer.BadParameter("must be town, village or group", param_hint="--level")
    lvl: Level = level  # type: ignore[assignment]
    engine = store.make_engine(store.database_url(Settings()))
    try:
        report = import_boundaries(engine, file, level=lvl, layer=layer, crs=crs, parent_code=town)
    finally:
        engine.dispose()
    repaired = f", repaired {len(report.repaired)}" if report.repaired else ""
    console.print(
        f"{level}: read {report.read}, inserted {report.inserted}, updated {report.updated}"
        f"{repaired}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
