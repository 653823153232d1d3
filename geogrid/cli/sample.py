"""``geogrid sample``: generate the deterministic sample town or county."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from geogrid.sample import FORMATS, SampleFiles, generate_county, generate_town

console = Console()


def _formats(xlsx: bool) -> tuple[str, ...]:
    return FORMATS if xlsx else ("csv",)


def _summary(title: str, files: SampleFiles, extra: dict[str, str]) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("item")
    table.add_column("value", justify="right")
    for key, value in {**extra, **{k: str(v) for k, v in files.summary().items()}}.items():
        table.add_row(key, value)
    table.add_row("seconds", f"{files.seconds:.1f}")
    table.add_row("folder", str(files.out))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``sample`` topic to the main application."""
    sample_app = typer.Typer(
        name="sample",
        help="Generate deterministic sample data (a fictional town or county).",
        no_args_is_help=True,
    )

    @sample_app.command("town")
    def town_cmd(
        seed: int = typer.Option(7, "--seed", help="Random seed; same seed, same bytes."),
        out: Path = typer.Option(..., "--out", help="Output folder (created if needed)."),
        xlsx: bool = typer.Option(True, "--xlsx/--no-xlsx", help="Also write households.xlsx."),
    ) -> None:
        """Generate one township: boundaries, groups, register, cases, key units."""
        with console.status("generating the sample town...") as status:
            result = generate_town(
                seed, out, formats=_formats(xlsx), step=lambda msg: status.update(f"{msg}...")
            )
        _summary(
            f"sample town {result.town_name} ({result.town_code})",
            result,
            {
                "seed": str(seed),
                "hole village": result.hole_village_code,
                "two-part village": result.multipart_village_code,
            },
        )

    @sample_app.command("county")
    def county_cmd(
        seed: int = typer.Option(7, "--seed", help="Random seed; same seed, same bytes."),
        out: Path = typer.Option(..., "--out", help="Output folder (created if needed)."),
        villages: int = typer.Option(250, "--villages", help="Number of villages (~12 per town)."),
        households: int = typer.Option(300_000, "--households", help="Approximate households."),
        xlsx: bool = typer.Option(
            False, "--xlsx/--no-xlsx", help="Also write households.xlsx (slow at county scale)."
        ),
    ) -> None:
        """Generate a county of several towns (for benchmarks)."""
        with console.status("generating the sample county...") as status:
            result = generate_county(
                seed,
                out,
                villages=villages,
                households=households,
                formats=_formats(xlsx),
                step=lambda msg: status.update(f"{msg}..."),
            )
        _summary(
            f"sample county {result.county_name} ({result.county_code})",
            result,
            {"seed": str(seed), "towns": str(len(result.town_codes))},
        )

    app.add_typer(sample_app)
