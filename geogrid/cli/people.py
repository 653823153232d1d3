"""``geogrid import members|special`` and ``geogrid people rotate-key``.

The imports need the data key: ``GEOGRID_DATA_KEY`` or ``GEOGRID_HOME/data.key``, which the
first import creates (mode 0600). Back the key file up: without it the stored ID numbers
and phones cannot be read again.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from geogrid import store
from geogrid.cli.importer import (
    EncodingOpt,
    InputFile,
    MapOpt,
    RejectsOpt,
    SheetOpt,
    TownOpt,
    _index_or_name,
    console,
    import_app,
)
from geogrid.ingest.load import ImportReport
from geogrid.settings import Settings

people_app = typer.Typer(help="People's personal data: keys.", no_args_is_help=True)


def _run(kind: str, file: Path, town: str | None, sheet: str | None, encoding: str | None,
         rejects: Path | None, map_: list[str]) -> None:  # fmt: skip
    from geogrid.people.crypto import key_provider
    from geogrid.people.load import (
        MEMBER_FIELDS,
        SPECIAL_FIELDS,
        import_members,
        import_special,
        parse_people_maps,
    )

    column_map = parse_people_maps(map_, MEMBER_FIELDS if kind == "members" else SPECIAL_FIELDS)
    settings = Settings()
    provider = key_provider(settings.home, create=True)
    engine = store.make_engine(store.database_url(settings))
    run = import_members if kind == "members" else import_special
    try:
        report = run(engine, file, provider, town=town, sheet=_index_or_name(sheet),
                     encoding=encoding, rejects_path=rejects, column_map=column_map)  # fmt: skip
    finally:
        engine.dispose()
    _print(f"{file.name}: {kind}", report)


def _print(title: str, report: ImportReport) -> None:
    table = Table(title=title + (f" ({report.encoding})" if report.encoding else ""))
    table.add_column("rows")
    table.add_column("count", justify="right")
    for label in ("read", "inserted", "updated", "unchanged", "rejected"):
        table.add_row(label, f"{getattr(report, label):,}")
    for why, count in report.rejects_by_reason.items():
        table.add_row(f"rejected: {why}", f"{count:,}")
    console.print(table)
    if report.rejects_file:
        console.print(f"rejected rows with their reasons (personal data, mode 0600): "
                      f"{report.rejects_file}")  # fmt: skip


@import_app.command("members")
def members(
    file: InputFile,
    town: TownOpt = None,
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    rejects: RejectsOpt = None,
    map_: MapOpt = [],  # noqa: B006 - typer copies option defaults
) -> None:
    """Load household members (家庭成员): 户号, 村, 姓名, 公民身份号码 and optional 性别,
    出生日期, 与户主关系, 联系电话, 户籍状态. ID numbers and phones are stored encrypted."""
    _run("members", file, town, sheet, encoding, rejects, map_)


@import_app.command("special")
def special(
    file: InputFile,
    town: TownOpt = None,
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    rejects: RejectsOpt = None,
    map_: MapOpt = [],  # noqa: B006 - typer copies option defaults
) -> None:
    """Load special-population records (特殊人群): 公民身份号码, 人员类别 and optional 姓名,
    列管日期, 风险等级 (低/中/高), 责任人, 备注. Import the members first."""
    _run("special", file, town, sheet, encoding, rejects, map_)


@people_app.command("rotate-key")
def rotate_key() -> None:
    """Add a new data key to GEOGRID_HOME/data.key; new ciphertexts use it, old ones still
    decrypt (each names its key)."""
    from geogrid.people.crypto import rotate_key_file

    key_id = rotate_key_file(Settings().home)
    console.print(f"new data key {key_id} is current; back up the key file")


def register(app: typer.Typer) -> None:
    """The import commands join ``geogrid import``; key management is ``geogrid people``."""
    app.add_typer(people_app, name="people")
