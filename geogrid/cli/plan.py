"""``geogrid plan``: partition a town from the database and manage its plans."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from geogrid import plans, store
from geogrid.cli.access import audit_write
from geogrid.cli.partition import (
    CadresOpt,
    ExactOpt,
    JobsOpt,
    MaxOpt,
    MinOpt,
    SeedOpt,
    SplitLargeOpt,
    TargetOpt,
    read_cadres,
    village_bar,
)
from geogrid.errors import InvalidInput
from geogrid.settings import Settings

console = Console(highlight=False, soft_wrap=True)

plan_app = typer.Typer(help="Grid plans in the database: create, list, diff, edit, activate.",
                       no_args_is_help=True)  # fmt: skip


@contextmanager
def _engine() -> Iterator[Engine]:
    engine = store.make_engine(store.database_url(Settings()))
    try:
        yield engine
    finally:
        engine.dispose()


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, nd: int = 1) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


@plan_app.command("create")
def create(
    town: str = typer.Option(..., "--town", help="12-digit town code."),
    name: str | None = typer.Option(None, "--name", help="Plan name (default: town + time)."),
    target: TargetOpt = 150,
    lo: MinOpt = 100,
    hi: MaxOpt = 200,
    cadres: CadresOpt = None,
    seed: SeedOpt = 0,
    jobs: JobsOpt = None,
    split_large: SplitLargeOpt = False,
    exact: ExactOpt = None,
    redraw_from: int | None = typer.Option(
        None, "--redraw-from", help="Redraw from this plan, moving as few households as it can."
    ),
    author: str | None = typer.Option(None, "--author", help="Recorded with the plan."),
) -> None:
    """Partition a town's villages into basic grids and store them as a draft plan."""
    params = plans.params_from_options(
        target=target, lo=lo, hi=hi, seed=seed, split_large=split_large, exact_seconds=exact
    )
    k = read_cadres(cadres) if cadres else None
    with _engine() as engine, village_bar(console) as bar:
        task = bar.add_task("reading inputs", total=None)

        def step(done: int, total: int, code: str | None) -> None:
            bar.update(
                task, completed=done, total=total, description=f"village {code}" if code else ""
            )

        plan_id = plans.create_plan(
            engine,
            town,
            params=params,
            cadres=k,
            name=name,
            author=author,
            redraw_from=redraw_from,
            jobs=jobs,
            progress=step,
        )
        bar.update(task, description="stored")
        audit_write(engine, "plan.create", target_type="town", target_ids=[town],
                    detail={"plan": plan_id})  # fmt: skip
        with engine.connect() as conn:
            info = plans.get_plan(conn, plan_id)
    _summary(info)


def _summary(info: plans.PlanInfo) -> None:
    t = info.metrics.get("totals", {})
    table = Table(title=f"plan {info.id} ({info.status}): {info.name}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    moved = t.get("households_moved")
    for label, value in (
        ("villages", str(t.get("villages", "–"))),
        ("grids", str(t.get("grids", "–"))),
        ("households", str(t.get("households", "–"))),
        ("grids within band", _pct(t.get("share_in_band"))),
        ("best the group sizes allow", _pct(t.get("bound_share_in_band"))),
        ("max |deviation|", _num(t.get("max_abs_deviation"), 0)),
        ("mean |deviation|", _num(t.get("mean_abs_deviation"))),
        ("mean Polsby–Popper", _num(t.get("mean_polsby_popper"), 3)),
        ("unassigned households", str(t.get("unassigned_households", 0))),
        ("households moved", "–" if moved is None else str(moved)),
    ):
        table.add_row(label, value)
    console.print(table)
    console.print(f"plan id: {info.id}")


@plan_app.command("list")
def list_(
    town: str | None = typer.Option(None, "--town", help="Only plans of this town."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List plans, newest first."""
    with _engine() as engine, engine.connect() as conn:
        rows = plans.list_plans(conn, town_code=town)
    if as_json:
        console.print_json(json.dumps([_plan_row(p) for p in rows], ensure_ascii=False))
        return
    table = Table(title="plans")
    for col in (
        "id",
        "town",
        "name",
        "status",
        "grids",
        "in band",
        "max |dev|",
        "moved",
        "created",
    ):
        table.add_column(col, justify="right" if col in ("id", "grids") else "left")
    for p in rows:
        t = p.metrics.get("totals", {})
        moved = t.get("households_moved")
        table.add_row(
            str(p.id),
            p.town_code,
            p.name,
            p.status,
            str(p.grids),
            _pct(t.get("share_in_band")),
            _num(t.get("max_abs_deviation"), 0),
            "–" if moved is None else str(moved),
            f"{p.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


def _plan_row(p: plans.PlanInfo) -> dict[str, Any]:
    return {
        "id": p.id,
        "town_code": p.town_code,
        "name": p.name,
        "status": p.status,
        "version": p.version,
        "grids": p.grids,
        "parent_id": p.parent_id,
        "totals": p.metrics.get("totals", {}),
        "created_at": p.created_at.isoformat(),
        "activated_at": p.activated_at.isoformat() if p.activated_at else None,
    }


@plan_app.command("activate")
def activate(plan_id: int = typer.Argument(..., help="Id of a draft plan.")) -> None:
    """Activate a draft plan; the town's previous active plan is archived."""
    with _engine() as engine:
        info = plans.activate_plan(engine, plan_id)
        audit_write(engine, "plan.activate", target_type="town", target_ids=[info.town_code],
                    detail={"plan": plan_id})  # fmt: skip
    console.print(f"plan {info.id} is now the active plan of town {info.town_code}")


@plan_app.command("diff")
def diff(
    a: int = typer.Argument(..., help="Earlier plan."),
    b: int = typer.Argument(..., help="Later plan."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Which groups changed grid from plan A to plan B, and how many households moved."""
    with _engine() as engine, engine.connect() as conn:
        d = plans.diff_plans(conn, a, b)
    if as_json:
        body = {
            "a": d.a,
            "b": d.b,
            "town_code": d.town_code,
            "households_moved": d.households_moved,
            "changes": [asdict(c) for c in d.changes],
        }
        console.print_json(json.dumps(body, ensure_ascii=False))
        return
    table = Table(title=f"plan {a} → plan {b}")
    for col in ("village", "group", "from grid", "to grid", "households"):
        table.add_column(col, justify="right" if col == "households" else "left")
    for c in d.changes:
        table.add_row(
            c.village_code, c.unit, c.from_grid or "–", c.to_grid or "–", str(c.households)
        )
    console.print(table)
    console.print(
        f"{len(d.changes)} groups changed grid of {d.groups_compared} in both plans; "
        f"households moved: {d.households_moved}"
    )


@plan_app.command("report")
def report(
    plan_id: int = typer.Argument(..., help="Plan id."),
    output: Path = typer.Option(
        ..., "-o", "--output", dir_okay=False, help="report.html (map) or report.json."
    ),
    asset_base_url: str | None = typer.Option(
        None,
        "--asset-base-url",
        help="Load leaflet.js/css from this URL instead of inlining them into the report.",
    ),
    lang: str = typer.Option("zh", "--lang", help="Language of the HTML report: zh or en."),
) -> None:
    """Write a plan's quality report as JSON or as an offline HTML page with a map (Chinese
    by default: title, named grids, a legend of the band, a metric scale bar)."""
    from geogrid.cli.partition import report_assets
    from geogrid.mapexport import plan_label
    from geogrid.printing.i18n import messages
    from partition import quality_report, write_html_report

    suffix = output.suffix.lower()
    if suffix not in (".html", ".htm", ".json"):
        raise InvalidInput(f"report file must end in .html or .json, not {output.name!r}.")
    catalogue = messages(lang)
    with _engine() as engine, engine.connect() as conn:
        plan = plans.load_plan(conn, plan_id)
        label = plan_label(conn, plan_id, catalogue)
    output.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        rep = quality_report(plan) | {"plan_id": plan_id}
        output.write_text(json.dumps(rep, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        write_html_report(plan, output, lang=lang, messages=catalogue, names=label.names,
                          title=label.title, **report_assets(asset_base_url))  # fmt: skip
    console.print(f"wrote {output}")


@plan_app.command("move")
def move(
    plan_id: int = typer.Argument(..., help="Id of a draft plan."),
    group: str = typer.Option(
        ..., "--group", help="VILLAGECODE/GROUPNO (or VILLAGECODE/3.2 for a split part)."
    ),
    to: str = typer.Option(..., "--to", help="15-digit code of the receiving grid."),
    author: str | None = typer.Option(None, "--author", help="Recorded in the edit log."),
) -> None:
    """Move a villager group of a draft plan to an adjacent grid (re-validated)."""
    with _engine() as engine:
        r = plans.move_group_in_plan(engine, plan_id, group=group, to_grid_code=to, author=author)
        audit_write(engine, "plan.move", target_type="plan", target_ids=[str(plan_id)],
                    detail={"group": group, "to": to})  # fmt: skip
    console.print(
        f"moved group {r.village_code}/{r.unit} ({r.households} households) "
        f"from {r.from_grid} to {r.to_grid}; plan {r.plan_id} is at version {r.version}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``plan`` commands to the geogrid CLI."""
    app.add_typer(plan_app, name="plan")
