"""``geogrid map``: offline map files, printed 网格化图谱 posters and contact cards."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from sqlalchemy import Connection

from geogrid import store
from geogrid.settings import Settings

if TYPE_CHECKING:
    from geogrid.printing import Printed

map_app = typer.Typer(
    help="Offline map files (all assets inlined), printed posters and contact cards.",
    no_args_is_help=True,
)
console = Console()


@map_app.command("export")
def export(
    plan: int = typer.Option(..., "--plan", min=1, help="Plan id (see `geogrid plan list`)."),
    out: Path = typer.Option(..., "-o", "--out", help="HTML file to write.", dir_okay=False),
    node_modules: Path | None = typer.Option(
        None, "--node-modules", help="Where Leaflet is installed (default: found automatically)."
    ),
    lang: str = typer.Option("zh", "--lang", help="zh (default) or en."),
) -> None:
    """Write one self-contained HTML map of a plan: a title, named grids coloured by the plan's
    band, a legend, a metric scale bar and popups with each grid's metrics."""
    from geogrid.mapexport import export_plan_map  # folium is imported only when needed

    settings = Settings()
    engine = store.make_engine(store.database_url(settings))
    try:
        assets = node_modules or settings.node_modules
        path = export_plan_map(engine, plan, out, node_modules=assets, lang=lang)
    finally:
        engine.dispose()
    size = path.stat().st_size / 1024
    console.print(f"wrote {path} ({size:,.0f} KiB, no network links)", highlight=False)


LangOpt = Annotated[str, typer.Option("--lang", help="zh (default) or en.")]
OutOpt = Annotated[Path, typer.Option("-o", "--out", help="PDF file to write.", dir_okay=False)]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="Where residents reach geogrid (QR codes); default GEOGRID_PUBLIC_BASE_URL, "
        "else http://<GEOGRID_HOST>:<GEOGRID_PORT>.",
    ),
]


def _print(out: Path, render: Callable[[Connection, Settings, str], Printed]) -> None:
    settings = Settings()
    base = settings.public_base_url or f"http://{settings.host}:{settings.port}"
    engine = store.make_engine(store.database_url(settings))
    try:
        t0 = time.perf_counter()
        with engine.connect() as conn:
            printed = render(conn, settings, base)
    finally:
        engine.dispose()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(printed.pdf)
    console.print(
        f"wrote {out} ({len(printed.pdf) / 1024:,.0f} KiB in {time.perf_counter() - t0:.1f} s; "
        f"QR code: {printed.url})",
        highlight=False,
    )


@map_app.command("poster")
def poster(
    code: str = typer.Argument(..., help="15-digit grid, 12-digit village or town code."),
    out: OutOpt = Path("poster.pdf"),
    paper: str = typer.Option("A3", "--paper", help="A3 (default) or A4."),
    lang: LangOpt = "zh",
    plan: int | None = typer.Option(None, "--plan", min=1, help="Plan id (default: active)."),
    base_url: BaseUrlOpt = None,
) -> None:
    """Print the 网格化图谱 poster of a grid, village or town (PDF): map, legend, scale, staff
    with photos, phones and duties, and a QR code to the grid's public page."""
    from geogrid.printing import render_poster

    _print(out, lambda conn, settings, base: render_poster(
        conn, code, paper=paper, lang=lang, plan_id=plan, base_url=base_url or base,
        settings=settings))  # fmt: skip


@map_app.command("cards")
def cards(
    grid: str = typer.Argument(..., help="15-digit grid code (active plan)."),
    out: OutOpt = Path("cards.pdf"),
    lang: LangOpt = "zh",
    base_url: BaseUrlOpt = None,
) -> None:
    """Print a contact card for every household of a grid (PDF, ten per A4 page): the grid's
    staff, their phones, a QR code and the house number; nothing else about the household."""
    from geogrid.printing import render_cards

    _print(out, lambda conn, settings, base: render_cards(
        conn, grid, lang=lang, base_url=base_url or base))  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``geogrid map`` to the command line."""
    app.add_typer(map_app, name="map")
