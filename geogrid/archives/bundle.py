"""Archive bundles: one folder (or zip) per household, villager group or grid.

A bundle holds ``archive.pdf`` (for printing), ``records.xlsx`` (the records),
``map.gpkg`` (the map data, CGCS2000), ``manifest.json`` (what the bundle is, who made it,
masked or not, counts, and every file's size and SHA-256) and ``SHA256SUMS`` (the same
hashes, plus the manifest's, in the format ``sha256sum -c`` reads). :func:`verify_bundle`
checks a bundle against both.

Every export is audited in the caller's transaction (``archive.export``, the unit as
target); an unmasked one also names the members whose data was decrypted
(``archive.unmask``, with the reason). Area exports (:func:`export_area`) write one grid's
box per grid of a village or town, each in its own transaction, and report progress.

This module imports no FastAPI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.archives import data
from geogrid.archives.gpkg import CRS, write_gpkg
from geogrid.archives.pdf import archive_pdf
from geogrid.archives.workbook import workbook_bytes
from geogrid.errors import InvalidInput, NotFound
from geogrid.people.crypto import KeyProvider

__all__ = [
    "FILES",
    "Bundle",
    "area_grids",
    "export_area",
    "export_unit",
    "finish",
    "verify_bundle",
    "write_files",
    "zip_bundle",
]

FILES = ("archive.pdf", "records.xlsx", "map.gpkg")
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Bundle:
    """A written bundle: its folder, the unit and the manifest."""

    path: Path
    unit: data.Unit
    manifest: dict[str, Any]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_reason(reason: str | None) -> str:
    why = (reason or "").strip()
    if len(why) < 2 or len(why) > 500:
        raise InvalidInput(
            "give the reason for exporting full personal data (事由, 2–500 characters)",
            detail={"field": "reason"},
        )
    return why


def export_unit(
    conn: Connection,
    kind: str,
    code: str,
    out: Path,
    *,
    actor: Principal | None,
    prefix: str,
    provider: KeyProvider | None = None,
    reason: str | None = None,
    ip: str | None = None,
    now: dt.datetime | None = None,
) -> Bundle:
    """Write the bundle of one unit into ``out/<kind>-<code>/`` and audit it in ``conn``.

    Parameters
    ----------
    actor
        Who exports (the audit log's actor; ``None``: the operator at the console).
    prefix
        The scope prefix bound into every read (the caller checked the policy).
    provider, reason
        Both for an unmasked export (full personal data): the data keys and the reason.

    Raises
    ------
    InvalidInput
        A bad kind or code, or an unmasked export without a reason.
    NotFound
        No such unit (a household outside the scope is not found either).
    """
    why = _check_reason(reason) if provider is not None else None
    unit = data.resolve(conn, kind, code)
    rec = data.collect(conn, unit, prefix=prefix, provider=provider)
    when = (now or dt.datetime.now(dt.UTC)).astimezone()
    by = actor.username if actor else "command line"
    layers = write_files(rec, out / unit.slug, by, when)
    return finish(conn, rec, out / unit.slug, layers, actor=actor, by=by, when=when,
                  reason=why, ip=ip)  # fmt: skip


def write_files(rec: data.Records, folder: Path, by: str, when: dt.datetime) -> list[str]:
    """Write the PDF, the workbook and the GeoPackage of ``rec`` into ``folder`` (no
    database: a worker process may run it); returns the GeoPackage's layers."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "archive.pdf").write_bytes(archive_pdf(rec, by=by, now=when))
    (folder / "records.xlsx").write_bytes(workbook_bytes(rec))
    return write_gpkg(rec, folder / "map.gpkg")


def finish(
    conn: Connection,
    rec: data.Records,
    folder: Path,
    layers: list[str],
    *,
    actor: Principal | None,
    by: str,
    when: dt.datetime,
    reason: str | None = None,
    ip: str | None = None,
) -> Bundle:
    """Hash the files, write the manifest and SHA256SUMS, audit the export in ``conn``."""
    unit = rec.unit
    files = [
        {"name": name, "bytes": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
        for name in FILES
        if (folder / name).exists()
    ]
    manifest: dict[str, Any] = {
        "archive": unit.title, "kind": unit.kind, "code": unit.code, "name": unit.name,
        "village_code": unit.village_code, "village": unit.village, "town": unit.town,
        "generated_at": when.isoformat(timespec="seconds"), "generated_by": by,
        "personal_data": "full" if rec.unmasked else "masked",
        "counts": {"households": len(rec.households), "members": len(rec.members),
                   "visits": len(rec.visits), "cases": len(rec.cases)},
        "map": {"crs": f"EPSG:{CRS}", "layers": layers},
        "files": files,
    }  # fmt: skip
    body = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
    (folder / MANIFEST).write_bytes(body)
    sums = [(f["sha256"], f["name"]) for f in files]
    sums.append((hashlib.sha256(body).hexdigest(), MANIFEST))
    (folder / SUMS).write_text("".join(f"{h}  {n}\n" for h, n in sums), encoding="utf-8")
    audit.record(
        conn, actor=actor, action="archive.export", target_type="archive",
        target_ids=[unit.slug], ip=ip,
        detail={"personal_data": manifest["personal_data"], **manifest["counts"],
                **({"os_user": _os_user()} if actor is None else {})},
    )  # fmt: skip
    if rec.unmasked and rec.members:
        audit.record(
            conn, actor=actor, action="archive.unmask", target_type="household_member",
            target_ids=[str(m["id"]) for m in rec.members], ip=ip,
            detail={"reason": reason, "archive": unit.slug,
                    "fields": ["name", "id_number", "phone", "birth_date"]},
        )  # fmt: skip
    return Bundle(folder, unit, manifest)


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def verify_bundle(folder: Path) -> list[str]:
    """What is wrong with the bundle in ``folder`` (empty: every hash matches).

    Checks each file the manifest lists (present, size, SHA-256), that the folder holds no
    data file the manifest omits, and ``SHA256SUMS`` (the manifest's own hash included).
    """
    problems: list[str] = []
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{MANIFEST}: unreadable ({type(exc).__name__})"]
    listed = {f["name"] for f in manifest.get("files", [])}
    for f in manifest.get("files", []):
        p = folder / f["name"]
        if not p.is_file():
            problems.append(f"{f['name']}: missing")
        elif p.stat().st_size != f["bytes"] or _sha256(p) != f["sha256"]:
            problems.append(f"{f['name']}: changed (size or SHA-256 differs)")
    extra = sorted(p.name for p in folder.iterdir() if p.name not in listed | {MANIFEST, SUMS})
    problems += [f"{name}: not in the manifest" for name in extra]
    try:
        lines = (folder / SUMS).read_text(encoding="utf-8").splitlines()
    except OSError:
        return [*problems, f"{SUMS}: missing"]
    for line in lines:
        m = re.fullmatch(r"([0-9a-f]{64})  (\S+)", line)
        if not m:
            problems.append(f"{SUMS}: bad line {line[:40]!r}")
        elif not (folder / m[2]).is_file() or _sha256(folder / m[2]) != m[1]:
            problems.append(f"{m[2]}: does not match {SUMS}")
    return problems


def zip_bundle(bundle: Bundle) -> bytes:
    """The bundle's folder as a zip (one top folder named after the unit)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(bundle.path.iterdir()):
            z.write(p, f"{bundle.path.name}/{p.name}")
    return buf.getvalue()


def area_grids(conn: Connection, code: str, prefix: str = "") -> list[str]:
    """The basic grids of the active plan in village or town ``code`` (and the scope)."""
    if not re.fullmatch(r"\d{12}", code or ""):
        raise InvalidInput("a village or town code has 12 digits", detail={"field": "code"})
    area = code[:9] if code.endswith("000") else code
    grids = list(
        conn.execute(
            text(
                "SELECT DISTINCT g.code FROM grids g JOIN plans p ON p.id = g.plan_id "
                "AND p.status = 'active' WHERE g.level = 3 AND g.code LIKE :a || '%' "
                "AND g.code LIKE :s || '%' ORDER BY g.code"
            ),
            {"a": area, "s": prefix},
        ).scalars()
    )
    if not grids:
        raise NotFound(f"no grid of an active plan in {code}", detail={"code": code})
    return grids


def _sizes(engine: Engine, grids: list[str], all_scopes: bool) -> dict[str, int]:
    """Households a grid (the work of its box: listings grow with them)."""
    with engine.begin() as conn:
        if all_scopes:
            from geogrid.people.load import open_all_scopes

            open_all_scopes(conn)
        rows = conn.execute(
            text("SELECT grid_code, count(*) FROM households WHERE grid_code = ANY(:g) "
                 "GROUP BY grid_code"),
            {"g": grids},
        ).all()  # fmt: skip
    return {code: int(n) for code, n in rows}


def export_area(
    engine: Engine,
    code: str,
    out: Path,
    *,
    actor: Principal | None = None,
    prefix: str = "",
    provider: KeyProvider | None = None,
    reason: str | None = None,
    progress: Progress | None = None,
    all_scopes: bool = True,
    jobs: int | None = None,
) -> list[Bundle]:
    """Write a grid's box for every grid of village or town ``code`` into ``out``.

    The records are read here, grid by grid, the largest grids first (so that no long box
    is left running alone at the end); the files (PDF, workbook, GeoPackage) are written
    by ``jobs`` forked worker processes (default: one a core; 1: in this process), which
    die with this one. Each box is hashed and audited in its own transaction as soon as
    its files are written (a failure keeps the boxes finished before it). ``all_scopes``:
    the command line runs as the table owner, under forced row-level security, and opens
    every scope for its reads.
    """
    why = _check_reason(reason) if provider is not None else None
    with engine.connect() as conn:
        grids = area_grids(conn, code, prefix)
    sizes = _sizes(engine, grids, all_scopes)
    grids.sort(key=lambda g: (-sizes.get(g, 0), g))
    out.mkdir(parents=True, exist_ok=True)
    by = actor.username if actor else "command line"
    when = dt.datetime.now(dt.UTC).astimezone()
    done: list[Bundle] = []
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(grids)))

    def read(grid: str) -> data.Records:
        with engine.begin() as conn:
            if all_scopes:
                from geogrid.people.load import open_all_scopes

                open_all_scopes(conn)
            return data.collect(conn, data.resolve(conn, "grid", grid), prefix=prefix,
                                provider=provider)  # fmt: skip

    def close(rec: data.Records, layers: list[str]) -> None:
        with engine.begin() as conn:
            done.append(finish(conn, rec, out / rec.unit.slug, layers, actor=actor, by=by,
                               when=when, reason=why))  # fmt: skip
        if progress:
            progress(len(done), len(grids), rec.unit.code)

    if progress:
        progress(0, len(grids), "")
    if jobs <= 1:
        for grid in grids:
            rec = read(grid)
            close(rec, write_files(rec, out / rec.unit.slug, by, when))
    else:
        import multiprocessing
        import sys
        from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

        import weasyprint  # noqa: F401 - imported once here, inherited by the workers

        from partition.plan import _die_with_parent  # imports geopandas (the GeoPackages')

        # fork: the workers inherit the imported modules (spawn re-imports WeasyPrint and
        # geopandas in each, seconds); they use no database connection
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                                 initializer=_die_with_parent,
                                 initargs=(os.getpid(),)) as pool:  # fmt: skip
            pending: dict[Future[list[str]], data.Records] = {}
            queue = list(reversed(grids))
            while queue or pending:
                # two boxes a worker in flight: the next one is read while they write
                while queue and len(pending) < 2 * jobs:
                    rec = read(queue.pop())
                    pending[pool.submit(write_files, rec, out / rec.unit.slug, by, when)] = rec
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: pending[f].unit.code):
                    close(pending.pop(future), future.result())
    done.sort(key=lambda b: b.unit.code)
    index = [
        {"code": b.unit.code, "name": b.unit.name, "folder": b.path.name, **b.manifest["counts"]}
        for b in done
    ]
    (out / "index.json").write_text(
        json.dumps({"area": code, "boxes": index}, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return done


def remove_bundle(bundle: Bundle) -> None:
    """Delete a bundle's folder (after it was zipped for a download)."""
    shutil.rmtree(bundle.path, ignore_errors=True)
