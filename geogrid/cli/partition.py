"""``geogrid partition``: partition households into basic grids from files (no database)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import geopandas as gpd
import pandas as pd
import pyogrio
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# the register-reading options are those of `geogrid import households`
from geogrid.cli.importer import (
    CrsOpt,
    EncodingOpt,
    LayerOpt,
    MapOpt,
    NewGroupsOpt,
    RejectsOpt,
    SheetOpt,
    _index_or_name,
)
from geogrid.errors import InvalidInput

console = Console(highlight=False, soft_wrap=True)
log = logging.getLogger(__name__)

# The partitioning options `geogrid partition` and `geogrid plan create` share.
TargetOpt = Annotated[int, typer.Option("--target", help="Target households per grid.")]
MinOpt = Annotated[int, typer.Option("--min", help="Lower bound of the band.")]
MaxOpt = Annotated[int, typer.Option("--max", help="Upper bound of the band.")]
CadresOpt = Annotated[
    Path | None,
    typer.Option("--cadres", exists=True, dir_okay=False,
                 help="CSV village_code,cadres: exact number of grids per listed village."),
]  # fmt: skip
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Random seed (same inputs + seed = same plan).")
]
JobsOpt = Annotated[
    int | None, typer.Option("--jobs", min=1, help="Worker processes (default: CPUs).")
]
SplitLargeOpt = Annotated[
    bool, typer.Option("--split-large", help="Split groups above --max into contiguous parts.")
]
ExactOpt = Annotated[
    float | None,
    typer.Option("--exact", min=0, metavar="SECONDS",
                 help="CP-SAT budget per village to prove (or improve) the balance optimum; "
                 "default a small budget, 0 = heuristic only."),
]  # fmt: skip


def village_bar(out: Console) -> Progress:
    """The progress bar of a partitioning run: one step per village."""
    return Progress(
        TextColumn("[bold]partition"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=out,
    )


def _read_layer(path: Path, preferred: str, what: str) -> gpd.GeoDataFrame:
    """Read ``preferred`` layer if the file has it, else its only/first layer."""
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise InvalidInput(f"cannot read {what} file {path}: {exc}") from exc
    layer = preferred if preferred in layers else (layers[0] if layers else None)
    if layer is None:
        raise InvalidInput(f"{what} file {path} has no layers.")
    frame = gpd.read_file(path, layer=layer)
    if frame.crs is None:
        raise InvalidInput(f"{what} file {path} declares no CRS.")
    return frame


def report_assets(asset_base_url: str | None) -> dict[str, Any]:
    """Inline Leaflet from the npm install (a self-contained offline report), unless the
    user names where the page should load it from."""
    if asset_base_url is not None:
        return {"asset_base_url": asset_base_url}
    from geogrid.assets import find_node_modules
    from geogrid.settings import Settings

    return {"inline_assets": find_node_modules(Settings().node_modules) / "leaflet" / "dist"}


def read_cadres(path: Path) -> dict[str, int]:
    """Read ``village_code, cadres`` from a CSV (UTF-8 or GBK) into a mapping."""
    try:
        frame = pd.read_csv(path, dtype={"village_code": str}, encoding="utf-8-sig")
    except UnicodeDecodeError:
        frame = pd.read_csv(path, dtype={"village_code": str}, encoding="gbk")
    for col in ("village_code", "cadres"):
        if col not in frame.columns:
            raise InvalidInput(f"cadres file {path} lacks the column {col!r}.")
    bad = frame[pd.to_numeric(frame["cadres"], errors="coerce").isna()]
    if len(bad):
        raise InvalidInput(
            f"cadres file {path}: non-numeric cadres on row {int(bad.index[0]) + 2}."
        )
    return {str(c): int(k) for c, k in zip(frame["village_code"], frame["cadres"], strict=True)}


def partition_command(
    households: Path = typer.Option(
        ...,
        "--households",
        exists=True,
        dir_okay=False,
        help="Household register: CSV, Excel, GeoPackage, Shapefile or GeoJSON, read as "
        "`geogrid import households` reads it (headers, --map, coordinates in any --crs).",
    ),
    villages: Path = typer.Option(
        ..., "--villages", exists=True, dir_okay=False, help="Village polygons (layer 'villages')."
    ),
    groups: Path | None = typer.Option(
        None,
        "--groups",
        exists=True,
        dir_okay=False,
        help="Villager-group polygons for some villages.",
    ),
    crs: CrsOpt = "wgs84",
    map_: MapOpt = [],  # noqa: B006 - typer copies option defaults
    sheet: SheetOpt = None,
    layer: LayerOpt = None,
    encoding: EncodingOpt = None,
    rejects: RejectsOpt = None,
    new_groups: NewGroupsOpt = False,
    target: TargetOpt = 150,
    lo: MinOpt = 100,
    hi: MaxOpt = 200,
    cadres: CadresOpt = None,
    existing: Path | None = typer.Option(
        None,
        "--existing",
        exists=True,
        dir_okay=False,
        help="Current grids: redraw with minimal change.",
    ),
    split_large: SplitLargeOpt = False,
    exact: ExactOpt = None,
    group_pieces: str = typer.Option(
        "refuse",
        "--group-pieces",
        help="A supplied group living in separate pieces, or given several polygons: "
        "refuse (stop and say which) or keep (one unit in pieces, flagged).",
    ),
    accept_imbalance: bool = typer.Option(
        False,
        "--accept-imbalance",
        help="Write the plan even where the band or a fixed grid count cannot be met.",
    ),
    seed: SeedOpt = 0,
    jobs: JobsOpt = None,
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler address, e.g. tcp://host:8786."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", dir_okay=False, help="Output GeoPackage (layers grids, assignment)."
    ),
    report: Path | None = typer.Option(
        None, "--report", dir_okay=False, help="HTML quality report with map."
    ),
    report_json: Path | None = typer.Option(
        None, "--json", dir_okay=False, help="Quality report as JSON."
    ),
    asset_base_url: str | None = typer.Option(
        None,
        "--asset-base-url",
        help="Load leaflet.js/css from this URL instead of inlining them into the report.",
    ),
    lang: str = typer.Option("zh", "--lang", help="Language of the HTML report: zh or en."),
) -> None:
    """Partition households into contiguous grids of whole villager groups (files only).

    Every plan is checked by the independent rules validator before it is written: a
    plan breaking a rule is not written (exit 2, each violation with its rule, grid and
    place); villages whose band or fixed grid count cannot be met are explained (which,
    why, the best achievable) and stop the command (exit 3) unless --accept-imbalance.
    """
    from geogrid.ingest.columns import parse_column_maps
    from geogrid.ingest.load import write_rejects
    from geogrid.ingest.offline import read_households_file
    from partition import PartitionParams, quality_report, write_html_report
    from partition.infeasible import explain_imbalance
    from partition.plan import assemble_plan, run_villages, village_work
    from partition.validate import BALANCE_RULES, stray_households, validate_plan

    if group_pieces not in ("refuse", "keep"):
        raise typer.BadParameter("must be refuse or keep", param_hint="--group-pieces")
    if lang not in ("zh", "en"):
        raise typer.BadParameter("must be zh or en", param_hint="--lang")
    params = PartitionParams(
        target=target, lo=lo, hi=hi, seed=seed, split_large=split_large,
        group_pieces=group_pieces,  # type: ignore[arg-type]
    )  # fmt: skip
    if exact is not None:
        params = replace(params, exact_seconds=exact)
    vv = _read_layer(villages, "villages", "villages")
    towns = _optional_layer(villages, "town")
    gg = _read_layer(groups, "groups", "groups") if groups else None
    ex = _read_layer(existing, "grids", "existing grids") if existing else None
    cd = read_cadres(cadres) if cadres else None
    if "code" not in vv.columns:
        raise InvalidInput(f"villages file {villages} lacks the column 'code' (12 digits).")
    reg = read_households_file(
        households, vv, gg, towns=towns, crs=crs, column_map=parse_column_maps(map_),
        sheet=_index_or_name(sheet), layer=_index_or_name(layer), encoding=encoding,
        new_groups=new_groups,
    )  # fmt: skip
    console.print(reg.description)
    rejects_file = rejects or households.with_name(households.name + ".rejects.csv")
    if len(reg.rejects):
        write_rejects(reg.rejects, rejects_file)
        console.print(
            f"[yellow]{len(reg.rejects)} rows rejected[/] (reasons in {rejects_file}); "
            f"first: row {reg.rejects['source_row'].iloc[0]}: {reg.rejects['reason'].iloc[0]}"
        )
    hh = reg.households
    t0 = time.perf_counter()  # partition_plan's steps, run one by one to drive the bar
    work, unassigned = village_work(
        hh, vv, gg, cadres=cd, existing=ex, group_pieces=params.group_pieces
    )
    with village_bar(console) as progress:
        task = progress.add_task("", total=len(work))

        def step(code: str) -> None:
            progress.update(task, advance=1, description=f"village {code}")

        results = run_villages(work, params, jobs=jobs, scheduler=scheduler, progress=step)
    plan = assemble_plan(work, results, unassigned, params, redraw=ex is not None)
    elapsed = time.perf_counter() - t0
    problems = validate_plan(plan, hh, balance=True)
    hard = [p for p in problems if p.rule not in BALANCE_RULES]
    imbalance = explain_imbalance(plan, problems)
    strays = stray_households(plan, hh)
    rep: dict[str, Any] = quality_report(plan)
    rep["totals"]["runtime_s"] = round(elapsed, 3)
    rep["totals"]["rejected_rows"] = len(reg.rejects)
    rep["totals"]["stray_households"] = len(strays)
    rep["violations"] = [str(p) for p in problems]
    rep["violation_details"] = [p.as_dict() for p in problems]
    rep["imbalance"] = [v.as_dict() for v in imbalance]
    rep["unassigned"] = plan.unassigned.to_dict(orient="records")
    if report_json:
        report_json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write_text(
            json.dumps(rep, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
        )
    if hard:
        _refuse(hard, output)
        raise typer.Exit(2)
    if imbalance and not accept_imbalance:
        _explain(imbalance, accepted=False)
        raise typer.Exit(3)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        output.unlink()
    plan.grids.to_file(output, layer="grids", driver="GPKG")
    plan.assignment.to_file(output, layer="assignment", driver="GPKG")
    if report:
        write_html_report(plan, report, lang=lang, **report_assets(asset_base_url))
    _summary(rep, output, problems)
    if imbalance:
        _explain(imbalance, accepted=True)


def _optional_layer(path: Path, name: str) -> gpd.GeoDataFrame | None:
    """The layer ``name`` of ``path`` if the file has it (e.g. the towns of a boundaries file)."""
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception:  # pyogrio raises DataSourceError and friends; _read_layer reports it
        return None
    return gpd.read_file(path, layer=name) if name in layers else None


def _refuse(violations: list[Any], output: Path) -> None:
    """Say that the plan breaks rules and is not written, one violation per line."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(
        f"[bold red]error:[/] the plan breaks {len(violations)} grid rule(s); "
        f"{output} was not written:"
    )
    for v in violations[:20]:
        err.print(f"  {escape(str(v))}")
    if len(violations) > 20:
        err.print(f"  … and {len(violations) - 20} more (all in the --json report)")


def _explain(imbalance: list[Any], *, accepted: bool) -> None:
    """Say which villages miss the band or their grid count, why, and the best possible."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    head = (
        "[yellow]accepted imbalance[/]"
        if accepted
        else "[bold red]error:[/] the band or the fixed grid count cannot be met"
    )
    err.print(f"{head} in {len(imbalance)} village(s):")
    for item in imbalance:
        err.print(f"  {escape(str(item))}")
    if not accepted:
        err.print("nothing written; rerun with --accept-imbalance to write this plan anyway")


def _summary(rep: dict[str, Any], output: Path, problems: list[Any]) -> None:
    t = rep["totals"]

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f}%"

    def num(x: float | None, nd: int = 1) -> str:
        return "–" if x is None else f"{x:.{nd}f}"

    table = Table(title="grid plan", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("villages", str(t["villages"])),
        ("grids", str(t["grids"])),
        ("households", str(t["households"])),
        ("grids within band", pct(t["share_in_band"])),
        ("best the group sizes allow", pct(t["bound_share_in_band"])),
        ("mean |deviation|", num(t["mean_abs_deviation"])),
        ("max |deviation|", num(t["max_abs_deviation"], 0)),
        ("mean Polsby–Popper", num(t["mean_polsby_popper"], 3)),
        ("oversized-group grids", str(t["oversized_grids"])),
        ("unassigned households", str(t["unassigned_households"])),
        ("rejected register rows", str(t.get("rejected_rows", 0))),
        ("households lying in another grid", str(t.get("stray_households", 0))),
        ("households moved", "–" if t["households_moved"] is None else str(t["households_moved"])),
        ("rule violations", str(len(problems))),
        ("seconds", num(t["runtime_s"], 2)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if t["unassigned_households"]:
        console.print(
            f"[yellow]{t['unassigned_households']} households lie outside every village "
            "(listed in the JSON report)."
        )
    if problems:
        console.print(f"[red]{len(problems)} rule violations[/]; first: {escape(str(problems[0]))}")
    console.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add the ``partition`` command to the geogrid CLI."""
    app.command("partition")(partition_command)
