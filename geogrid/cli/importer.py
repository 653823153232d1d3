"""``geogrid import``: boundaries, households, address points and overlay layers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from geogrid import store
from geogrid.cli.progress import stage_progress
from geogrid.ingest.boundaries import Level, import_boundaries
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)
import_app = typer.Typer(help="Load township data into PostGIS.", no_args_is_help=True)

# Options shared by the table imports (households, address points, overlays).
InputFile = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, help="CSV, Excel or GIS file.")
]
CrsOpt = Annotated[
    str, typer.Option(help="CRS of rows without a 坐标系 column: wgs84, cgcs2000, gcj02, bd09.")
]
MapOpt = Annotated[
    list[str], typer.Option("--map", help="Override a column: --map 原列名=field (repeatable).")
]
SheetOpt = Annotated[str | None, typer.Option(help="Excel sheet (name or 0-based index).")]
LayerOpt = Annotated[str | None, typer.Option(help="GeoPackage/GeoJSON layer.")]
EncodingOpt = Annotated[str | None, typer.Option(help="Force the CSV encoding (else detected).")]
RejectsOpt = Annotated[
    Path | None,
    typer.Option(help="Reject file (default: FILE.rejects.csv next to the input, "
                 "e.g. x.xlsx.rejects.csv)."),
]  # fmt: skip
TownOpt = Annotated[str | None, typer.Option(help="Match village names within this town only.")]
NewGroupsOpt = Annotated[
    bool,
    typer.Option(
        "--new-groups",
        help="Accept group numbers a village does not have yet (else rejected: unknown group).",
    ),
]


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
        f"{level}: read {report.read}, inserted {report.inserted}, updated {report.updated}, "
        f"unchanged {report.unchanged}{repaired}"
    )


@import_app.command("households")
def households(
    file: InputFile,
    crs: CrsOpt = "wgs84",
    town: TownOpt = None,
    map_: MapOpt = [],  # noqa: B006 - typer copies option defaults
    sheet: SheetOpt = None,
    layer: LayerOpt = None,
    encoding: EncodingOpt = None,
    rejects: RejectsOpt = None,
    new_groups: NewGroupsOpt = False,
) -> None:
    """Read, validate, geocode and load a household register (upsert by village + 户号)."""
    from geogrid.ingest.columns import parse_column_maps
    from geogrid.ingest.load import import_households

    column_map = parse_column_maps(map_)
    engine = store.make_engine(store.database_url(Settings()))
    try:
        with stage_progress(console) as progress:
            report = import_households(
                engine,
                file,
                crs=crs,
                town=town,
                column_map=column_map,
                sheet=_index_or_name(sheet),
                layer=_index_or_name(layer),
                encoding=encoding,
                rejects_path=rejects,
                progress=progress,
                new_groups=new_groups,
            )
        _audited(engine, "import.households", file, report)
    finally:
        engine.dispose()
    table = Table(title=f"{file.name}" + (f" ({report.encoding})" if report.encoding else ""))
    table.add_column("rows")
    table.add_column("count", justify="right")
    for label, value in (
        ("read", report.read),
        ("inserted", report.inserted),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
        ("rejected", report.rejected),
    ):
        table.add_row(label, f"{value:,}")
    for precision, count in report.by_precision.items():
        table.add_row(f"precision {precision}", f"{count:,}")
    for why, count in report.rejects_by_reason.items():
        table.add_row(f"rejected: {why}", f"{count:,}")
    console.print(table)
    if report.rejects_file:
        console.print(f"rejected rows with their reasons: {report.rejects_file}")


@import_app.command("address-points")
def address_points(
    file: InputFile,
    crs: CrsOpt = "wgs84",
    town: TownOpt = None,
    map_: MapOpt = [],  # noqa: B006 - typer copies option defaults
) -> None:
    """Load known address points (门牌) into the offline geocoding gazetteer."""
    from geogrid.ingest.columns import parse_column_maps
    from geogrid.ingest.load import import_address_points

    engine = store.make_engine(store.database_url(Settings()))
    try:
        report = import_address_points(
            engine, file, crs=crs, town=town, column_map=parse_column_maps(map_)
        )
    finally:
        engine.dispose()
    console.print(
        f"address points: read {report.read:,}, inserted {report.inserted:,}, updated "
        f"{report.updated:,}, unchanged {report.unchanged:,}, rejected {report.rejected:,}"
    )
    if report.rejects_file:
        console.print(f"rejected rows with their reasons: {report.rejects_file}")


def _import_overlay(
    kind: str,
    file: Path,
    crs: str,
    map_: list[str],
    sheet: str | None,
    layer: str | None,
    encoding: str | None,
    rejects: Path | None,
) -> None:
    """Run :func:`geogrid.overlays.import_overlay` with a progress bar and print the summary."""
    from geogrid.overlays import KINDS, import_overlay, parse_overlay_maps

    overlay = next(k for k in KINDS if k == kind)
    column_map = parse_overlay_maps(overlay, map_)
    engine = store.make_engine(store.database_url(Settings()))
    try:
        with stage_progress(console) as progress:
            report = import_overlay(
                engine,
                file,
                overlay,
                crs=crs,
                column_map=column_map,
                sheet=_index_or_name(sheet),
                layer=_index_or_name(layer),
                encoding=encoding,
                rejects_path=rejects,
                progress=progress,
            )
        _audited(engine, f"import.{kind}", file, report)
    finally:
        engine.dispose()
    title = f"{file.name}: {kind.replace('_', ' ')}"
    table = Table(title=title + (f" ({report.encoding})" if report.encoding else ""))
    table.add_column("rows")
    table.add_column("count", justify="right")
    for label, value in (
        ("read", report.read),
        ("inserted", report.inserted),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
        ("rejected", report.rejected),
        ("in a grid of an active plan", report.in_grid),
        ("villages", len(report.by_village)),
    ):
        table.add_row(label, f"{value:,}")
    for why, count in report.rejects_by_reason.items():
        table.add_row(f"rejected: {why}", f"{count:,}")
    console.print(table)
    if report.rejects_file:
        console.print(f"rejected rows with their reasons: {report.rejects_file}")


@import_app.command("cases")
def cases(
    file: InputFile,
    crs: CrsOpt = "wgs84",
    map_: MapOpt = [],  # noqa: B006 - typer copies option defaults
    sheet: SheetOpt = None,
    layer: LayerOpt = None,
    encoding: EncodingOpt = None,
    rejects: RejectsOpt = None,
) -> None:
    """Load cases (事件): upsert by 事件编号, placed in a village and a grid of the active plan.

    Fields: 事件编号/case_id, 类别/category, 上报时间/reported_at, 描述/description,
    状态/status (optional), 经度/lon, 纬度/lat, 坐标系/crs (optional).
    """
    _import_overlay("cases", file, crs, map_, sheet, layer, encoding, rejects)


@import_app.command("key-units")
def key_units(
    file: InputFile,
    crs: CrsOpt = "wgs84",
    map_: MapOpt = [],  # noqa: B006 - typer copies option defaults
    sheet: SheetOpt = None,
    layer: LayerOpt = None,
    encoding: EncodingOpt = None,
    rejects: RejectsOpt = None,
) -> None:
    """Load key units (重点单位): upsert by 单位编号.

    Fields: 单位编号/unit_id, 单位名称/name, 类型/type, 风险等级/risk_level (1–3 or 高/中/低),
    地址/address, 经度/lon, 纬度/lat, 坐标系/crs (optional).
    """
    _import_overlay("key_units", file, crs, map_, sheet, layer, encoding, rejects)


@import_app.command("inspection-points")
def inspection_points(
    file: InputFile,
    crs: CrsOpt = "wgs84",
    map_: MapOpt = [],  # noqa: B006 - typer copies option defaults
    sheet: SheetOpt = None,
    layer: LayerOpt = None,
    encoding: EncodingOpt = None,
    rejects: RejectsOpt = None,
) -> None:
    """Load fire inspection points (消防检查点): upsert by 检查点编号.

    Fields: 检查点编号/point_id, 名称/name, 检查周期/schedule (每周/每月/每季度/每半年/每年),
    最近检查/last_inspected, 单位编号/unit_no (optional link to a key unit), 经度/lon,
    纬度/lat, 坐标系/crs (optional). Import key units first to link points to them.
    """
    _import_overlay("inspection_points", file, crs, map_, sheet, layer, encoding, rejects)


def _index_or_name(value: str | None) -> str | int | None:
    return int(value) if value is not None and value.isdigit() else value


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")


def _audited(engine: Engine, action: str, file: Path, report: object) -> None:
    """Write the import to the audit log: file name and counts, never values."""
    from geogrid.cli.access import audit_write

    counts = {k: getattr(report, k, None) for k in ("read", "inserted", "updated", "rejected")}
    audit_write(engine, action, target_type="file", target_ids=[file.name], detail=counts)
