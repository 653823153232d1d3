"""``geogrid address``: split rural addresses into town, village, group and house number."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from geogrid.ingest.address import ADDRESS_FIELDS, parse_address


def register(app: typer.Typer) -> None:
    """Add the ``address`` topic to the main application."""
    address_app = typer.Typer(
        name="address",
        help="Rural addresses: parse into town, village, natural village, group, house number.",
        no_args_is_help=True,
    )

    @address_app.command("parse")
    def parse_cmd(
        texts: list[str] = typer.Argument(..., help="One or more addresses (quote spaces)."),
        as_json: bool = typer.Option(
            False,
            "--json",
            help="Print a JSON list of objects with keys town, village, natural_village, "
            "group, house_number (null when absent).",
        ),
    ) -> None:
        """Parse addresses, e.g. ``geogrid address parse 石门镇王家湾村三组12号``."""
        parsed = [parse_address(text) for text in texts]
        if as_json:
            typer.echo(json.dumps([p.as_dict() for p in parsed], ensure_ascii=False, indent=2))
            return
        table = Table()
        table.add_column("address", overflow="fold")
        for name in ADDRESS_FIELDS:
            table.add_column(name, justify="right" if name == "group" else "left")
        for text, p in zip(texts, parsed, strict=True):
            table.add_row(text, *("" if v is None else str(v) for v in p))
        Console().print(table)

    app.add_typer(address_app)
