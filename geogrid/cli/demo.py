"""``geogrid demo``: the main job — a demo town in the private PostGIS, end to end.

Start the private PostGIS (or use GEOGRID_DATABASE_URL), generate the sample town once,
load its boundaries, register and overlay layers (idempotent upserts), partition it into
an active plan (once), and serve the API and maps, printing the URL.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text

from geogrid import store
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)


def _sample(out: Path, seed: int) -> None:
    """The sample town, generated once per seed (a marker file remembers the seed)."""
    from geogrid.sample import generate_town

    marker = out / ".geogrid-sample.json"
    if marker.exists() and json.loads(marker.read_text()).get("seed") == seed:
        console.print(f"sample town (seed {seed}) already in {out}")
    else:
        with console.status(f"generating the sample town (seed {seed}) in {out}"):
            generate_town(seed=seed, out=out)
        marker.write_text(json.dumps({"seed": seed}))
        console.print(f"sample town written to {out}")


def load_town(engine: Engine, out: Path) -> list[tuple[str, int, int, int, int]]:
    """Load every file of a sample-town folder; returns (layer, read, new, changed, rejected)."""
    from geogrid.ingest.boundaries import import_boundaries
    from geogrid.ingest.load import import_households

    rows: list[tuple[str, int, int, int, int]] = []
    for level, file in (("town", "boundaries"), ("village", "boundaries"), ("group", "groups")):
        rep = import_boundaries(engine, out / f"{file}.gpkg", level=level)  # type: ignore[arg-type]
        rows.append((f"{level} boundaries", rep.read, rep.inserted, rep.updated, 0))
    hh = import_households(engine, out / "households.xlsx")
    rows.append(("households", hh.read, hh.inserted, hh.updated, hh.rejected))
    if (out / "members.csv").exists():  # synthetic people (older sample folders have none)
        from geogrid.people.crypto import key_provider
        from geogrid.people.load import import_members, import_special

        keys = key_provider(Settings().home, create=True)  # GEOGRID_HOME/data.key, 0600
        for name, run in (("members", import_members), ("special", import_special)):
            got = run(engine, out / f"{name}.csv", keys)
            rows.append((f"people: {name}", got.read, got.inserted, got.updated, got.rejected))
    from geogrid import overlays

    for layer, file in (
        ("cases", "cases.csv"),
        ("key_units", "key_units.csv"),
        ("inspection_points", "inspection_points.csv"),
    ):
        ov = overlays.import_overlay(engine, out / file, layer)  # type: ignore[arg-type]
        rows.append((layer, ov.read, ov.inserted, ov.updated, ov.rejected))
    return rows


def ensure_active_plan(engine: Engine, town_code: str, cadres: Path | None) -> int:
    """The town's active plan, partitioning and activating one if there is none."""
    from geogrid.cli.partition import read_cadres
    from geogrid.plans import activate_plan, create_plan

    with engine.connect() as conn:
        active = conn.execute(
            text("SELECT id FROM plans WHERE town_code = :t AND status = 'active'"),
            {"t": town_code},
        ).scalar()
    if active is not None:
        console.print(f"town {town_code} already has an active plan ({active})")
        return int(active)
    with console.status("partitioning the town into basic grids"):
        plan_id = create_plan(
            engine,
            town_code,
            cadres=read_cadres(cadres) if cadres else None,
            name="demo plan",
            author="geogrid demo",
            jobs=2,
        )
        activate_plan(engine, plan_id)  # also places the overlays in the new grids
    console.print(f"plan {plan_id} partitioned and activated")
    return plan_id


def _demo_users(engine: Engine, town_code: str) -> None:
    """Create (or reset) one user per role and print their generated passwords once."""
    from geogrid.cli.access import ensure_demo_users

    with engine.begin() as conn:
        rows = ensure_demo_users(conn, town_code=town_code)
    table = Table(title="demo users (passwords generated now, shown once; not stored in clear)")
    for col in ("user", "role", "scope", "password"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def demo(
    out: Path = typer.Option(Path("data/generated/town"), help="Where the sample town goes."),
    seed: int = typer.Option(1, help="Seed of the sample town."),
    host: str | None = typer.Option(None, help="Address to serve on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to serve on (default 8000)."),
    serve: bool = typer.Option(True, help="Serve the API and maps at the end."),
    cadres: bool = typer.Option(
        False, help="Fix each village's grid count by its number of cadres (cadres.csv)."
    ),
) -> None:
    """Start the private PostGIS, load and partition the sample town, serve it."""
    from geogrid.cli.serve import run_server

    settings = Settings()
    with console.status("starting PostGIS and applying migrations"):
        url = store.database_url(settings)
        store.upgrade(url)
    console.print(f"PostGIS ready: {store.mask_url(url)}")
    _sample(out, seed)
    engine = store.make_engine(url)
    try:
        with console.status("loading the sample town"):
            rows = load_town(engine, out)
        table = Table(title="sample town loaded")
        for col in ("layer", "read", "new", "changed", "rejected"):
            table.add_column(col, justify="left" if col == "layer" else "right")
        for layer, *counts in rows:
            table.add_row(layer, *(f"{c:,}" for c in counts))
        console.print(table)
        with engine.connect() as conn:
            town_code = conn.execute(
                text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
            ).scalar_one()
        ensure_active_plan(engine, town_code, out / "cadres.csv" if cadres else None)
        _demo_users(engine, town_code)
    finally:
        engine.dispose()
    if serve:
        run_server(settings, host=host or settings.host, port=port or settings.port)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
