"""``geogrid coords``: convert coordinates between WGS84, CGCS2000, GCJ-02 and BD-09."""

from __future__ import annotations

import json

import typer

from geogrid.coords import CRS_NAMES, convert, normalize_crs


def register(app: typer.Typer) -> None:
    """Add the ``coords`` topic to the main application."""
    coords_app = typer.Typer(
        name="coords",
        help="Coordinate systems: WGS84, CGCS2000 (EPSG:4490), GCJ-02 and BD-09.",
        no_args_is_help=True,
    )

    @coords_app.command("convert")
    def convert_cmd(
        lon: float = typer.Argument(..., help="Longitude in degrees."),
        lat: float = typer.Argument(..., help="Latitude in degrees."),
        src: str = typer.Option(
            ..., "--from", help=f"Source system ({', '.join(CRS_NAMES)} or an alias)."
        ),
        dst: str = typer.Option(
            ..., "--to", help=f"Target system ({', '.join(CRS_NAMES)} or an alias)."
        ),
        as_json: bool = typer.Option(False, "--json", help='Print {"lon": .., "lat": ..}.'),
    ) -> None:
        """Convert one point and print ``lon lat`` (8 decimals).

        Points outside China are unchanged by GCJ-02 (the standard out-of-China rule).
        """
        normalize_crs(src)  # raise InvalidInput early, before any arithmetic
        normalize_crs(dst)
        x, y = convert(lon, lat, src, dst)
        if as_json:
            typer.echo(json.dumps({"lon": round(x, 8), "lat": round(y, 8)}))
        else:
            typer.echo(f"{x:.8f} {y:.8f}")

    app.add_typer(coords_app)
