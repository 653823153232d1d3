"""``geogrid archive export|verify``: archive bundles (一户一档、一组一本、一格一盒).

``export`` writes one bundle (``--household``, ``--group``, ``--grid``) or a grid's box for
every grid of a village or town (``--village``, ``--town``) with a progress bar. Personal
data is masked unless ``--unmask --reason …`` is given (the data key is needed then); the
export is audited with the operator's login. ``verify`` checks bundles' hashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from geogrid import store
from geogrid.errors import InvalidInput
from geogrid.settings import Settings

console = Console()
archive_app = typer.Typer(
    help="Archives: 一户一档、一组一本、一格一盒 (PDF, Excel, GeoPackage, manifest).",
    no_args_is_help=True,
)


@archive_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="folder to write the bundles into")],
    household: Annotated[str | None, typer.Option(help="household id: 一户一档")] = None,
    group: Annotated[str | None, typer.Option(help="village code-group no.: 一组一本")] = None,
    grid: Annotated[str | None, typer.Option(help="15-digit grid code: 一格一盒")] = None,
    village: Annotated[str | None, typer.Option(help="village code: every grid's box")] = None,
    town: Annotated[str | None, typer.Option(help="town code: every grid's box")] = None,
    unmask: Annotated[bool, typer.Option("--unmask", help="full personal data")] = False,
    reason: Annotated[str | None, typer.Option(help="why (required with --unmask)")] = None,
    jobs: Annotated[
        int | None, typer.Option(min=1, max=64, help="box writers (default: one a core)")
    ] = None,
) -> None:  # fmt: skip
    """Export one household's file, group's book or grid's box, or a village's or town's
    grid boxes (one folder each, with index.json)."""
    from geogrid.archives.bundle import export_area, export_unit
    from geogrid.cli.access import cli_actor
    from geogrid.cli.progress import stage_progress
    from geogrid.people.crypto import key_provider
    from geogrid.people.load import open_all_scopes

    chosen = {k: v for k, v in {"household": household, "group": group, "grid": grid,
                                "village": village, "town": town}.items() if v}  # fmt: skip
    if len(chosen) != 1:
        raise InvalidInput("name exactly one of --household, --group, --grid, --village, --town")
    if unmask and not (reason and reason.strip()):
        raise InvalidInput("--unmask needs --reason (事由): it is kept in the audit log")
    ((kind, code),) = chosen.items()
    settings = Settings()
    provider = key_provider(settings.home) if unmask else None
    engine = store.make_engine(store.database_url(settings))
    actor = cli_actor()
    try:
        if kind in ("village", "town"):
            if kind == "town" and not code.endswith("000"):
                raise InvalidInput("a town code ends in 000")
            with stage_progress(console) as bar:
                bundles = export_area(
                    engine, code, out, actor=actor, provider=provider, reason=reason,
                    progress=lambda i, n, _g: bar("boxes", i, n), jobs=jobs,
                )  # fmt: skip
            console.print(f"{len(bundles)} grid boxes written to {out} (index.json lists them)")
            return
        with engine.begin() as conn:
            open_all_scopes(conn)
            b = export_unit(conn, kind, code, out, actor=actor, prefix="", provider=provider,
                            reason=reason)  # fmt: skip
        counts = ", ".join(f"{k} {v}" for k, v in b.manifest["counts"].items())
        console.print(f"{b.unit.title} {b.unit.name}: {b.path} ({counts})")
    finally:
        engine.dispose()


@archive_app.command("verify")
def verify(folders: Annotated[list[Path], typer.Argument(help="bundle folders")]) -> None:
    """Check bundles against their manifest and SHA256SUMS; exit 1 on any difference."""
    from geogrid.archives.bundle import verify_bundle

    bad = 0
    for folder in folders:
        problems = verify_bundle(folder)
        bad += bool(problems)
        console.print(f"{folder}: " + ("OK" if not problems else "; ".join(problems)))
    if bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``geogrid archive``."""
    app.add_typer(archive_app, name="archive")
