"""``geogrid map``: offline map files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from geogrid import store
from geogrid.settings import Settings

map_app = typer.Typer(help="Offline map files (folium, all assets inlined).", no_args_is_help=True)
console = Console()


@map_app.command("export")
def export(
    plan: int = typer.Option(..., "--plan", min=1, help="Plan id (see `geogrid plan list`)."),
    out: Path = typer.Option(..., "-o", "--out", help="HTML file to write.", dir_okay=False),
    node_modules: Path | None = typer.Option(
        None, "--node-modules", help="Where Leaflet is installed (default: found automatically)."
    ),
) -> None:
    """Write one self-contained HTML map of a plan: grids coloured by deviation, metrics popups."""
    from geogrid.mapexport import export_plan_map  # folium is imported only when needed

    settings = Settings()
    engine = store.make_engine(store.database_url(settings))
    try:
        assets = node_modules or settings.node_modules
        path = export_plan_map(engine, plan, out, node_modules=assets)
    finally:
        engine.dispose()
    size = path.stat().st_size / 1024
    console.print(f"wrote {path} ({size:,.0f} KiB, no network links)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``geogrid map`` to the command line."""
    app.add_typer(map_app, name="map")
