"""``geogrid demo``: the main job — a demo town in the private PostGIS, end to end."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from geogrid import store
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)


def demo(
    out: Path = typer.Option(Path("data/generated/town"), help="Where the sample town goes."),
    seed: int = typer.Option(1, help="Seed of the sample town."),
) -> None:
    """Start the private PostGIS, generate and load the sample town, report what is there."""
    from geogrid.ingest.boundaries import import_boundaries
    from geogrid.sample import generate_town

    settings = Settings()
    with console.status("starting PostGIS and applying migrations"):
        url = store.database_url(settings)
        store.upgrade(url)
    console.print(f"PostGIS ready: {store.mask_url(url)}")
    with console.status(f"generating the sample town (seed {seed}) in {out}"):
        town = generate_town(seed=seed, out=out)
    console.print(f"sample town written to {out}")
    engine = store.make_engine(url)
    try:
        with console.status("loading boundaries"):
            reports = [
                import_boundaries(engine, town.boundaries, level="town"),
                import_boundaries(engine, town.boundaries, level="village"),
                import_boundaries(engine, town.groups, level="group"),
            ]
    finally:
        engine.dispose()
    table = Table(title="loaded")
    for col in ("layer", "read", "inserted", "updated"):
        table.add_column(col)
    for rep in reports:
        table.add_row(rep.level, str(rep.read), str(rep.inserted), str(rep.updated))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
