"""Household register → PostGIS: validate, convert, geocode, bulk upsert, reject file.

The pipeline of ``geogrid import households``:

1. **read** the register (:mod:`geogrid.ingest.readers`) into canonical columns;
2. **prepare** (:func:`prepare_households`): resolve each row's village, villager group
   and normalised address, convert its coordinates to EPSG:4326, detect swapped or
   out-of-county points, and reject what cannot be stored — each rejected row keeps its
   original values, row number and reason;
3. **geocode** rows without coordinates against the gazetteer
   (:mod:`geogrid.ingest.geocode`);
4. **load** through ``COPY`` into a staging table and one ``INSERT … ON CONFLICT`` upsert
   by (village, register number), in one transaction per file. A row whose content hash
   is unchanged is not touched, so re-importing the same file changes nothing.
"""

from __future__ import annotations

import csv
import io
import itertools
import multiprocessing as mp
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import wkb
from sqlalchemy import Connection, Engine, text

from geogrid import coords
from geogrid.errors import InvalidInput
from geogrid.ingest.address import parse_addresses, parse_group
from geogrid.ingest.geocode import Gazetteer, geocode
from geogrid.ingest.readers import RegisterFrame, read_register

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)`` — the CLI draws a rich progress bar from it."""

#: Degrees of slack around the county when checking that points are inside it.
COUNTY_SLACK_DEG = 0.02

REJECT_REASONS = (
    "missing register number",
    "unknown village",
    "unparseable address",
    "bad coordinates",
    "coordinates swapped",
    "outside county",
    "unknown coordinate system",
    "bad member count",
    "duplicate in file",
    "unknown group",
)


@dataclass
class ImportReport:
    """The summary printed at the end of an import."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    by_precision: dict[str, int] = field(default_factory=dict)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    rejects_file: Path | None = None
    encoding: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["rejects_file"] = str(self.rejects_file) if self.rejects_file else None
        return out


def _variants(name: str, suffixes: str, committee: dict[str, str]) -> set[str]:
    base = name.strip()
    for long, short in committee.items():
        if base.endswith(long):
            base = base[: -len(long)] + short
    stem = re.sub(f"({suffixes})$", "", base)
    out = {name.strip(), base, stem}
    for long, short in committee.items():
        if base.endswith(short):
            out.add(base[: -len(short)] + long)
    return {v for v in out if v}


def village_name_variants(name: str) -> set[str]:
    """Ways a register writes a village's name.

    >>> sorted(village_name_variants("王家湾村"))
    ['王家湾', '王家湾村', '王家湾村委会', '王家湾村民委员会']
    >>> sorted(village_name_variants("东风社区"))
    ['东风', '东风居委会', '东风居民委员会', '东风社区']
    """
    return _variants(
        name,
        "村|社区",
        {"村民委员会": "村", "村委会": "村", "居民委员会": "社区", "居委会": "社区"},
    )


def town_name_variants(name: str) -> set[str]:
    """Ways a register writes a town's name.

    >>> sorted(town_name_variants("石门镇"))
    ['石门', '石门镇']
    """
    return _variants(name, "镇|乡|街道|街道办事处", {"街道办事处": "街道"})


@dataclass(frozen=True)
class VillageIndex:
    """The villages a register may name: codes, names (with variants), towns, polygons.

    Village names repeat across the towns of a county, so a name may have several codes;
    the row's town (a 乡镇 column, or the town in its address) then decides.
    """

    codes: frozenset[str]
    by_name: dict[str, tuple[str, ...]]
    town_of: dict[str, str]  # village code → town code
    town_by_name: dict[str, str]  # town name variant → town code
    names: dict[str, tuple[str, str]]  # village code → (official town name, village name)
    polygons: dict[str, Any]
    county: Any  # union of the villages of the county (or counties) concerned
    #: village code → its registered group numbers (villages with none are absent)
    groups: Mapping[str, frozenset[int]] = field(default_factory=dict)

    def resolve(
        self, code: str | None, names: tuple[str | None, ...], towns: tuple[str | None, ...]
    ) -> tuple[str | None, str | None]:
        """(village code, None) or (None, reason) for one combination of row values."""
        if code and code in self.codes:
            return code, None
        town_codes = {self.town_by_name[t] for t in towns if t and t in self.town_by_name}
        asked = next((n for n in names if n), None)
        for name in names:
            if not name:
                continue
            found = self.by_name.get(name, ())
            if len(found) > 1 and town_codes:
                found = tuple(c for c in found if self.town_of[c] in town_codes)
            if len(found) == 1:
                return found[0], None
            if len(found) > 1:
                towns_txt = "、".join(sorted({self.names[c][0] for c in found}))
                return None, (
                    f"unknown village {name!r}: ambiguous, it exists in {towns_txt}; "
                    "give the town (乡镇 column or --town) or a village code"
                )
        if asked is None and code:
            return None, f"unknown village code {code!r}"
        return None, f"unknown village {asked!r}" if asked else "unknown village (none given)"


def load_villages(conn: Connection, town: str | None = None) -> VillageIndex:
    """Villages known to the store (optionally of one town)."""
    rows = conn.execute(
        text(
            "SELECT v.code, v.name, v.parent_code, t.name, ST_AsBinary(v.geom) "
            "FROM admin_areas v LEFT JOIN admin_areas t ON t.code = v.parent_code "
            "WHERE v.level = 'village' AND (CAST(:t AS text) IS NULL OR v.parent_code = :t)"
        ),
        {"t": town},
    ).all()
    if not rows:
        where = f"town {town}" if town else "the database"
        raise InvalidInput(
            f"no villages in {where}: import the boundaries first "
            "(geogrid import boundaries FILE --level town, then --level village)"
        )
    by_name: dict[str, set[str]] = {}
    town_by_name: dict[str, str] = {}
    polygons: dict[str, Any] = {}
    for code, name, tcode, tname, geom in rows:
        for variant in village_name_variants(name):
            by_name.setdefault(variant, set()).add(code)
        for variant in town_name_variants(tname or ""):
            town_by_name.setdefault(variant, tcode)
        if geom is not None:
            polygons[code] = wkb.loads(bytes(geom))
    known: dict[str, set[int]] = {}
    for vcode, gno in conn.execute(
        text(
            "SELECT g.village_code, g.group_no FROM villager_groups g "
            "JOIN admin_areas v ON v.code = g.village_code "
            "WHERE v.level = 'village' AND (CAST(:t AS text) IS NULL OR v.parent_code = :t)"
        ),
        {"t": town},
    ):
        known.setdefault(str(vcode), set()).add(int(gno))
    counties = sorted({r[0][:6] for r in rows})
    county = conn.execute(
        text(
            "SELECT ST_AsBinary(ST_Union(geom)) FROM admin_areas "
            "WHERE level = 'village' AND left(code, 6) = ANY(:c)"
        ),
        {"c": counties},
    ).scalar_one()
    county_geom = wkb.loads(bytes(county)) if county else None
    if county_geom is not None:
        shapely.prepare(county_geom)
    return VillageIndex(
        codes=frozenset(r[0] for r in rows),
        by_name={k: tuple(sorted(v)) for k, v in by_name.items()},
        town_of={r[0]: r[2] for r in rows},
        town_by_name=town_by_name,
        names={r[0]: (r[3] or "", r[1]) for r in rows},
        polygons=polygons,
        county=county_geom,
        groups={k: frozenset(v) for k, v in known.items()},
    )


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    if name in df.columns:
        s = df[name]
        text_ = s.astype("str").str.strip()
        text_ = text_.where(s.notna() & (text_ != ""), None)
        return text_.astype(object).where(text_.notna(), None)
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _address_norm(
    village_code: pd.Series, group_no: pd.Series, parsed: pd.DataFrame, villages: VillageIndex
) -> pd.Series:
    """The canonical address from the resolved village (official names) and parsed parts.

    ``{town}{village}{group}组{natural village}{house}号`` — the same household written
    in any form (with or without province and town, 三组 or 第3村民小组) gets the same
    text, which is what the gazetteer of address points is keyed by.
    """
    names = village_code.map(lambda c: "".join(villages.names[c]) if c in villages.names else None)
    group = group_no.astype("Int64").astype(str).where(group_no.notna(), "")
    group = (group + "组").where(group != "", "")
    natural = parsed["natural_village"].astype(object).fillna("").astype(str)
    house = parsed["house_number"].astype(object).fillna("").astype(str)
    house = (house + "号").where(house != "", "")
    out = names.fillna("").astype(str) + group + natural + house
    return out.where(names.notna(), None).astype(object)


def _none(values: pd.Series) -> pd.Series:
    """A parsed column as objects, ``None`` where missing."""
    out = values.astype(object)
    return out.where(values.notna(), None)


def prepare_households(
    raw: pd.DataFrame,
    villages: VillageIndex,
    *,
    default_crs: str = "wgs84",
    new_groups: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate and convert a register in canonical columns.

    Parameters
    ----------
    raw
        Canonical columns (any may be absent): ``register_no``, ``village``,
        ``village_code``, ``group``, ``address``, ``head_name``, ``phone``,
        ``population``, ``lon``, ``lat``, ``crs``; plus ``source_row``.
    villages
        The villages the register may name.
    default_crs
        Coordinate system of rows whose ``crs`` column is empty or absent.
    new_groups
        Accept group numbers a village does not know yet (they are created, without
        territory). Otherwise a row naming a group its village does not have is
        rejected as ``unknown group`` — in villages whose groups are registered (by
        group polygons or an earlier register); a village with no group at all takes
        its groups from its first register.

    Returns
    -------
    (good, rejects)
        ``good`` has the columns to store (``lon``/``lat`` in EPSG:4326, NaN where the
        row must be geocoded); ``rejects`` has ``source_row``, ``reason`` and the row's
        original values.
    """
    n = len(raw)
    reason = pd.Series([None] * n, index=raw.index, dtype=object)

    def reject(mask: pd.Series | np.ndarray, why: str | pd.Series) -> None:
        m = np.asarray(mask, dtype=bool) & reason.isna().to_numpy()
        if isinstance(why, pd.Series):
            reason[m] = why[m]
        else:
            reason[m] = why

    register_no = _col(raw, "register_no")
    reject(register_no.isna(), "missing register number")

    address = _col(raw, "address")
    parsed = parse_addresses(address)

    # village: code column, else name column, else the address (the town disambiguates)
    combos = pd.DataFrame(
        {
            "code": _col(raw, "village_code"),
            "name": _col(raw, "village"),
            "addr": _none(parsed["village"]),
            "town": _col(raw, "town"),
            "addr_town": _none(parsed["town"]),
        }
    )
    codes = (
        combos.groupby(list(combos.columns), dropna=False, sort=False).ngroup().to_numpy()
        if n
        else np.zeros(0, dtype=int)
    )
    first = combos.iloc[pd.Series(np.arange(n)).groupby(codes).first().to_numpy()] if n else combos
    resolved = [
        villages.resolve(code_, (name_, addr_), (town_, addr_town_))
        for code_, name_, addr_, town_, addr_town_ in first.itertuples(index=False, name=None)
    ]
    village_code = pd.Series(
        np.asarray([c for c, _ in resolved] or [None], dtype=object)[codes] if n else [],
        index=raw.index,
        dtype=object,
    )
    village_why = pd.Series(
        np.asarray([w for _, w in resolved] or [None], dtype=object)[codes] if n else [],
        index=raw.index,
        dtype=object,
    )
    reject(village_code.isna(), village_why)

    # villager group: group column, else the address
    group_text = _col(raw, "group")
    uniq = {v: parse_group(v) for v in pd.unique(group_text.dropna())}
    group_no = group_text.map(lambda v: uniq.get(v) if v is not None else None)
    from_addr = parsed["group"].astype(object).where(parsed["group"].notna(), None)
    group_no = group_no.where(group_no.notna(), from_addr)
    reject(
        group_no.isna(),
        address.map(
            lambda a: (
                f"unparseable address: no villager group in {a!r}"
                if a
                else "unparseable address: no address and no group"
            )
        ),
    )

    if not new_groups and villages.groups:
        known = [villages.groups.get(v) if v is not None else None for v in village_code.tolist()]
        unknown = pd.Series(
            [
                k is not None and g is not None and int(g) not in k
                for k, g in zip(known, group_no.tolist(), strict=True)
            ],
            index=raw.index,
        )
        if unknown.any():
            reject(
                unknown,
                pd.Series(
                    [
                        _unknown_group(v, g, k, villages) if u and k is not None else None
                        for u, v, g, k in zip(unknown, village_code, group_no, known, strict=True)
                    ],
                    index=raw.index,
                    dtype=object,
                ),
            )

    members_text = _col(raw, "population")
    members = pd.to_numeric(members_text, errors="coerce")
    bad_members = members_text.notna() & (members.isna() | (members < 0) | (members % 1 != 0))
    reject(bad_members, "bad member count")
    members = members.fillna(1).astype("int64")

    # coordinates
    lon_t, lat_t = _col(raw, "lon"), _col(raw, "lat")
    lon = pd.to_numeric(lon_t, errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(lat_t, errors="coerce").to_numpy(dtype=float)
    given = (lon_t.notna() | lat_t.notna()).to_numpy()
    unreadable = given & (np.isnan(lon) | np.isnan(lat))
    reject(unreadable, "bad coordinates: not a number or only one of lon/lat")
    crs_text = _col(raw, "crs").fillna(default_crs)
    crs_names: dict[str, str | None] = {}
    for value in pd.unique(crs_text):
        try:
            crs_names[value] = coords.normalize_crs(value)
        except InvalidInput:
            crs_names[value] = None
    crs_norm = crs_text.map(crs_names)
    reject(
        given & crs_norm.isna().to_numpy(),
        crs_text.map(
            {c: f"unknown coordinate system {c!r}" for c, v in crs_names.items() if not v}
        ),
    )
    ok = given & ~np.isnan(lon) & ~np.isnan(lat)
    zero = ok & (np.abs(lon) < 1e-9) & (np.abs(lat) < 1e-9)
    reject(zero, "bad coordinates: (0, 0)")
    ok &= ~zero
    x, y = lon.copy(), lat.copy()
    for name in {v for v in crs_names.values() if v and v not in ("wgs84", "cgcs2000")}:
        m = ok & (crs_norm == name).to_numpy()
        if m.any():
            x[m], y[m] = coords.convert(lon[m], lat[m], name, "wgs84")
    out_of_range = ok & ((np.abs(x) > 180) | (np.abs(y) > 90))
    if villages.county is not None and ok.any():
        inside = np.zeros(n, dtype=bool)
        inside[ok] = shapely.contains_xy(villages.county, x[ok], y[ok])
        near = ok & ~inside  # on or just outside the border: allow GPS slack
        if near.any():
            inside[near] = shapely.dwithin(
                villages.county, shapely.points(x[near], y[near]), COUNTY_SLACK_DEG
            )
        swapped = np.zeros(n, dtype=bool)
        check = ok & ~inside
        swapped[check] = shapely.contains_xy(villages.county, y[check], x[check])
        reject(swapped, "coordinates swapped: latitude and longitude in each other's column")
        reject(out_of_range, "bad coordinates: out of range")
        reject(ok & ~inside, "outside county: the point is not in the villages' county")
        ok &= inside
    else:
        reject(out_of_range, "bad coordinates: out of range")
        ok &= ~out_of_range

    frame = pd.DataFrame(
        {
            "source_row": raw["source_row"].to_numpy() if "source_row" in raw else np.arange(n) + 2,
            "village_code": village_code,
            "register_no": register_no,
            "group_no": group_no,
            "address_raw": address,
            "address_norm": _address_norm(village_code, group_no, parsed, villages),
            "natural_village": parsed["natural_village"]
            .astype(object)
            .where(parsed["natural_village"].notna(), None),
            "has_house_number": parsed["house_number"].notna().to_numpy(),
            "head_name": _col(raw, "head_name"),
            "phone": _col(raw, "phone"),
            "members": members,
            "lon": np.where(ok, x, np.nan),
            "lat": np.where(ok, y, np.nan),
            "crs": crs_norm,
        },
        index=raw.index,
    )
    good = frame[reason.isna()].copy()
    good["key"] = good["village_code"].astype(str) + "/" + good["register_no"].astype(str)
    rejects = raw[reason.notna()].copy()
    rejects.insert(0, "reason", reason[reason.notna()])
    if "source_row" not in rejects.columns:
        rejects.insert(0, "source_row", frame.loc[reason.notna(), "source_row"])
    return good, rejects


def _unknown_group(
    village: str, group: object, known: frozenset[int], villages: VillageIndex
) -> str:
    name = villages.names.get(village, ("", village))[1]
    listed = "、".join(str(g) for g in sorted(known)[:30])
    return (
        f"unknown group: {name} has no group {group} (its groups: {listed}); "
        "import with --new-groups if new groups are expected"
    )


def reject_duplicates(
    good: pd.DataFrame, rejects: pd.DataFrame, raw: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Duplicates in the file (same village and register number): the first occurrence
    wins, later ones go to the rejects naming the row they repeat."""
    dup = good["key"].duplicated(keep="first")
    if not dup.any():
        return good, rejects
    first_row = good.loc[~dup].set_index("key")["source_row"]
    first_of = good.loc[dup, "key"].map(first_row).astype("Int64").astype(str)
    extra = raw.loc[good.index[dup.to_numpy()]].copy()
    extra.insert(
        0, "reason", ("duplicate in file: same register number as row " + first_of).to_numpy()
    )
    if "source_row" not in extra.columns:
        extra.insert(0, "source_row", good.loc[dup, "source_row"].to_numpy())
    return good.loc[~dup], pd.concat([rejects, extra])


#: Registers with at least this many rows are validated in two processes.
PARALLEL_ROWS = 200_000


#: What forked workers read (inherited copy-on-write, so the frame is never pickled).
_FORK_INPUT: tuple[pd.DataFrame, VillageIndex, str, bool] | None = None


def _prepare_chunk(bounds: tuple[int, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    assert _FORK_INPUT is not None
    raw, villages, default_crs, new_groups = _FORK_INPUT
    return prepare_households(
        raw.iloc[bounds[0] : bounds[1]], villages, default_crs=default_crs, new_groups=new_groups
    )


def fork_pool(jobs: int) -> ProcessPoolExecutor:
    """A pool of ``jobs`` forked workers that die with this process (a server worker killed
    while it imports must leave no worker holding its port: see
    ``partition.plan._die_with_parent``, the same guard as the village pool's)."""
    from partition.plan import _die_with_parent

    return ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))  # fmt: skip


def prepare_parallel(
    raw: pd.DataFrame,
    villages: VillageIndex,
    *,
    default_crs: str = "wgs84",
    jobs: int = 2,
    new_groups: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`prepare_households` on row chunks in ``jobs`` forked processes (large files),
    then the file-wide duplicate check."""
    if jobs > 1 and len(raw) >= PARALLEL_ROWS and "fork" in mp.get_all_start_methods():
        global _FORK_INPUT
        cuts = np.linspace(0, len(raw), jobs + 1).astype(int).tolist()
        _FORK_INPUT = (raw, villages, default_crs, new_groups)
        try:
            with fork_pool(jobs) as pool:
                parts = list(pool.map(_prepare_chunk, itertools.pairwise(cuts)))
        finally:
            _FORK_INPUT = None
        good = pd.concat([g for g, _ in parts])
        rejects = pd.concat([r for _, r in parts])
    else:
        good, rejects = prepare_households(
            raw, villages, default_crs=default_crs, new_groups=new_groups
        )
    return reject_duplicates(good, rejects, raw)


def load_gazetteer(conn: Connection, good: pd.DataFrame) -> Gazetteer:
    """Address points, group and village polygons relevant to ``good``."""
    wanted = good.loc[good["lon"].isna(), "address_norm"].dropna().unique().tolist()
    points: dict[str, tuple[float, float]] = {}
    if wanted:
        # known address points: a points file, or households stored with exact coordinates
        # (the oldest such household of each address wins, so results are stable)
        for addr, x, y in conn.execute(
            text(
                "SELECT DISTINCT ON (a) a, ST_X(geom), ST_Y(geom) FROM ("
                "  SELECT p.address_norm AS a, p.geom, 0 AS pref, p.id FROM address_points p"
                "  WHERE p.address_norm = ANY(:a)"
                "  UNION ALL"
                "  SELECT h.address_norm, h.geom, 1, h.id FROM households h"
                "  WHERE h.geocode_precision = 'exact' AND h.address_norm = ANY(:a)"
                "    AND h.address_norm ~ '号$'"
                ") s ORDER BY a, pref, id"
            ),
            {"a": wanted},
        ):
            points[addr] = (x, y)
    villages = sorted(good["village_code"].unique().tolist())
    # only supplied group polygons: territories derived by a plan come from the households
    # themselves, and geocoding against them would make re-imports drift
    groups = {
        (v, int(g)): wkb.loads(bytes(geom))
        for v, g, geom in conn.execute(
            text(
                "SELECT village_code, group_no, ST_AsBinary(geom) FROM villager_groups "
                "WHERE geom IS NOT NULL AND territory_source = 'supplied' "
                "AND village_code = ANY(:v)"
            ),
            {"v": villages},
        )
    }
    polys = {
        c: wkb.loads(bytes(geom))
        for c, geom in conn.execute(
            text("SELECT code, ST_AsBinary(geom) FROM admin_areas WHERE code = ANY(:v)"),
            {"v": villages},
        )
        if geom is not None
    }
    return Gazetteer(points, groups, polys)


_STAGE_COLUMNS = (
    "village_code", "register_no", "group_no", "address_raw", "address_norm",
    "natural_village", "head_name", "phone", "members", "lon", "lat",
    "geocode_precision", "geocode_source",
)  # fmt: skip


_COPY_CHUNK = 100_000
_FORK_FRAME: pd.DataFrame | None = None


def _to_csv(frame: pd.DataFrame, bounds: tuple[int, int]) -> bytes:
    buf = io.StringIO()
    frame.iloc[bounds[0] : bounds[1]].to_csv(
        buf, header=False, index=False, quoting=csv.QUOTE_MINIMAL, na_rep=""
    )
    return buf.getvalue().encode()


def _csv_chunk(bounds: tuple[int, int]) -> bytes:
    assert _FORK_FRAME is not None  # set by the parent before forking
    return _to_csv(_FORK_FRAME, bounds)


def _copy_frame(conn: Connection, table: str, df: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """COPY ``df[columns]`` into ``table`` in CSV chunks (the bulk path).

    Large frames are serialised by two forked processes while this one streams the
    chunks to the server, so CSV writing and COPY parsing overlap.
    """
    global _FORK_FRAME
    raw = conn.connection.driver_connection
    assert raw is not None
    cols = ", ".join(columns)
    cuts = [*range(0, len(df), _COPY_CHUNK), len(df)]
    spans = list(itertools.pairwise(cuts))
    frame = df[list(columns)]
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as cp:
        if len(spans) > 2 and "fork" in mp.get_all_start_methods():
            _FORK_FRAME = frame
            try:
                with fork_pool(2) as pool:
                    for data in pool.map(_csv_chunk, spans):
                        cp.write(data)
            finally:
                _FORK_FRAME = None
        else:
            for span in spans:
                cp.write(_to_csv(frame, span))


def load_households(conn: Connection, good: pd.DataFrame) -> tuple[int, int]:
    """Upsert prepared, geocoded rows; returns (inserted, updated)."""
    conn.execute(
        text(
            "CREATE TEMP TABLE stage_households (village_code text, register_no text, "
            "group_no int, address_raw text, address_norm text, natural_village text, "
            "head_name text, phone text, members int, lon float8, lat float8, "
            "geocode_precision text, geocode_source text) ON COMMIT DROP"
        )
    )
    # text columns hold None, never "" (prepare_households reads blanks as missing), so
    # CSV's empty field means NULL without ambiguity
    stage = good[list(_STAGE_COLUMNS)].assign(group_no=good["group_no"].astype("Int64"))
    _copy_frame(conn, "stage_households", stage, _STAGE_COLUMNS)
    conn.execute(
        text(
            "INSERT INTO villager_groups (village_code, group_no, name) "
            "SELECT DISTINCT village_code, group_no, group_no || '组' FROM stage_households "
            "WHERE group_no IS NOT NULL ON CONFLICT (village_code, group_no) DO NOTHING"
        )
    )
    bulk = _bulk_mode(conn, len(stage))
    if bulk:
        # Bulk path for large files: referential integrity is checked once, set-based, and
        # the referenced rows are locked as the per-row FK triggers would lock them; then
        # the per-row triggers are skipped for the upsert (as pg_restore does).
        missing = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT DISTINCT village_code FROM stage_households) s "
                "WHERE NOT EXISTS (SELECT 1 FROM admin_areas a WHERE a.code = s.village_code)"
            )
        ).scalar_one()
        if missing:
            raise InvalidInput(f"{missing} village codes of the file are not in the database")
        conn.execute(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM admin_areas a WHERE a.code IN "
                "(SELECT DISTINCT village_code FROM stage_households) FOR KEY SHARE) s"
            )
        )
        conn.execute(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM villager_groups g WHERE g.village_code IN "
                "(SELECT DISTINCT village_code FROM stage_households) FOR KEY SHARE) s"
            )
        )
        conn.execute(text("SET LOCAL session_replication_role = replica"))
    row = conn.execute(
        text(
            """
            WITH up AS (
                INSERT INTO households AS h (
                    village_code, register_no, group_id, address_raw, address_norm,
                    natural_village, head_name, phone, members, geom,
                    geocode_precision, geocode_source, row_hash)
                SELECT s.village_code, s.register_no, g.id, s.address_raw, s.address_norm,
                       s.natural_village, s.head_name, s.phone, s.members,
                       CASE WHEN s.lon IS NULL THEN NULL
                            ELSE ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326) END,
                       s.geocode_precision, s.geocode_source,
                       -- content hash: an unchanged row is not touched on re-import
                       md5(concat_ws('|', s.group_no, s.address_raw, s.address_norm,
                           s.natural_village, s.head_name, s.phone, s.members,
                           round(s.lon::numeric, 7), round(s.lat::numeric, 7),
                           s.geocode_precision, s.geocode_source))
                FROM stage_households s
                LEFT JOIN villager_groups g
                       ON g.village_code = s.village_code AND g.group_no = s.group_no
                ON CONFLICT (village_code, register_no) DO UPDATE SET
                    group_id = EXCLUDED.group_id, address_raw = EXCLUDED.address_raw,
                    address_norm = EXCLUDED.address_norm,
                    natural_village = EXCLUDED.natural_village,
                    head_name = EXCLUDED.head_name, phone = EXCLUDED.phone,
                    members = EXCLUDED.members, geom = EXCLUDED.geom,
                    geocode_precision = EXCLUDED.geocode_precision,
                    geocode_source = EXCLUDED.geocode_source, row_hash = EXCLUDED.row_hash,
                    updated_at = now()
                WHERE h.row_hash IS DISTINCT FROM EXCLUDED.row_hash
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
            FROM up
            """
        )
    ).one()
    if bulk:
        conn.execute(text("SET LOCAL session_replication_role = origin"))
        if row[0] or row[1]:  # the statement trigger was skipped too
            conn.execute(
                text(
                    "UPDATE layer_versions SET version = version + 1, changed_at = now() "
                    "WHERE layer = 'households'"
                )
            )
    if row[0] or row[1]:  # new or changed households take their grid of the active plan
        from geogrid.placement import assign_household_grids

        assign_household_grids(conn)
    return int(row[0]), int(row[1])


#: Files with at least this many rows take the bulk path of :func:`load_households`.
BULK_ROWS = 50_000


def _bulk_mode(conn: Connection, n: int) -> bool:
    """Large loads skip per-row FK triggers when the role may (superuser, e.g. the private
    cluster); elsewhere the ordinary path runs."""
    if n < BULK_ROWS:
        return False
    return bool(
        conn.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar_one()
    )


def with_originals(reg: RegisterFrame, rejects: pd.DataFrame) -> pd.DataFrame:
    """Rejected rows under the file's own headers: ``source_row``, ``reason``, values."""
    originals = reg.originals(rejects.index)
    originals.insert(1, "reason", rejects["reason"].to_numpy())
    return originals


def save_rejects(
    report: ImportReport, rejected: pd.DataFrame, path: Path, rejects_path: Path | None
) -> None:
    """Write the reject file of an import of ``path`` (rows under their original headers).

    Default place: ``<file name>.rejects.csv`` next to the input; with no rejected row, a
    stale default reject file from an earlier run of the same file is removed.
    """
    target = rejects_path or path.with_name(path.name + ".rejects.csv")
    if len(rejected):
        write_rejects(rejected, target)
        report.rejects_file = target
    elif rejects_path is None and target.exists():
        target.unlink()


def write_rejects(rejects: pd.DataFrame, path: Path) -> None:
    """The reject file: UTF-8 with BOM (opens in Excel), row number, reason, original values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rejects.to_csv(path, index=False, encoding="utf-8-sig")


def file_address_points(good: pd.DataFrame) -> pd.DataFrame:
    """Rows with exact coordinates and a house number: address points of this file."""
    return good[
        (good["geocode_precision"] == "exact")
        & good["has_house_number"]
        & good["address_norm"].notna()
    ].drop_duplicates("address_norm")


def geocode_households(
    conn: Connection,
    raw: pd.DataFrame,
    *,
    town: str | None = None,
    default_crs: str = "wgs84",
    progress: Progress | None = None,
    as_geodataframe: bool = True,
    new_groups: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate, convert and geocode a register (reads the store, writes nothing).

    Parameters
    ----------
    conn
        A connection to the store (villages, group polygons, address points).
    raw
        The register in canonical columns (see :func:`prepare_households`).
    town
        Restrict village names to this town's villages.
    default_crs
        Coordinate system of rows that do not name one.

    Returns
    -------
    (households, rejects)
        A GeoDataFrame in EPSG:4326 with ``geocode_precision`` and ``geocode_source``
        (point geometry; empty where geocoding failed), and the rejected rows. With
        ``as_geodataframe=False`` a plain frame with ``lon``/``lat`` (the bulk load path,
        which needs no geometry objects).
    """
    step = progress or (lambda stage, done, total: None)
    villages = load_villages(conn, town)
    step("validate", 0, len(raw))
    good, rejects = prepare_parallel(raw, villages, default_crs=default_crs, new_groups=new_groups)
    step("validate", len(raw), len(raw))
    has_xy = good["lon"].notna()
    good["geocode_precision"] = has_xy.map({True: "exact", False: None})
    good["geocode_source"] = ("register:" + good["crs"].fillna("wgs84").astype(str)).where(
        has_xy, None
    )
    todo = ~has_xy
    step("geocode", 0, int(todo.sum()))
    gaz = load_gazetteer(conn, good)
    # exact points of this file are part of the gazetteer for its other rows
    own = file_address_points(good)
    gaz = Gazetteer(
        {**dict(zip(own["address_norm"], zip(own["lon"], own["lat"], strict=True), strict=True)),
         **gaz.address_points},
        gaz.groups,
        gaz.villages,
    )  # fmt: skip
    placed = geocode(good.loc[todo], gaz)
    good.loc[todo, ["lon", "lat"]] = placed[["lon", "lat"]].to_numpy()
    good.loc[todo, "geocode_precision"] = placed["precision"].to_numpy()
    good.loc[todo, "geocode_source"] = placed["source"].to_numpy()
    # a household that cannot be placed is still stored (its group counts it), with
    # precision 'failed' and the reason as its source
    failed = (good["geocode_precision"] == "failed").to_numpy()
    if failed.any():
        why = placed["reason"].reindex(good.index[failed]).fillna("no polygon to place in")
        good.loc[failed, "geocode_source"] = ("failed: " + why).to_numpy()
    step("geocode", int(todo.sum()), int(todo.sum()))
    rejects = rejects.sort_values("source_row") if len(rejects) else rejects
    if not as_geodataframe:
        return good, rejects
    geometry = gpd.points_from_xy(good["lon"], good["lat"], crs=4326)
    return gpd.GeoDataFrame(good, geometry=geometry, crs=4326), rejects


def import_frame(
    engine: Engine,
    raw: pd.DataFrame,
    *,
    town: str | None = None,
    default_crs: str = "wgs84",
    progress: Progress | None = None,
    new_groups: bool = False,
) -> tuple[ImportReport, pd.DataFrame]:
    """Validate, geocode and load a register already read into canonical columns.

    One transaction: either every good row is stored or none is. Returns the report
    (without a reject file) and the rejected rows.
    """
    step = progress or (lambda stage, done, total: None)
    with engine.begin() as conn:
        good, rejects = geocode_households(
            conn, raw, town=town, default_crs=default_crs, progress=progress,
            as_geodataframe=False, new_groups=new_groups,
        )  # fmt: skip
        step("load", 0, len(good))
        report = load_geocoded(conn, good)
        step("load", len(good), len(good))
    report.read = len(raw)
    report.rejected = len(rejects)
    report.rejects_by_reason = {
        str(k): int(v)
        for k, v in rejects["reason"].str.split(":").str[0].value_counts().sort_index().items()
    }
    return report, rejects


def load_geocoded(conn: Connection, households: pd.DataFrame) -> ImportReport:
    """Store geocoded households (from :func:`geocode_households`) and their address points."""
    good = pd.DataFrame(households.drop(columns="geometry", errors="ignore"))
    report = ImportReport(read=len(good))
    report.inserted, report.updated = load_households(conn, good)
    report.unchanged = len(good) - report.inserted - report.updated
    report.by_precision = {
        str(k): int(v) for k, v in good["geocode_precision"].value_counts().sort_index().items()
    }
    return report


def register_coordinates(reg: RegisterFrame) -> pd.DataFrame:
    """The register's frame with ``lon``/``lat`` taken from its geometry when it has one."""
    frame = reg.frame
    if not reg.has_geometry:
        return frame
    gdf = gpd.GeoDataFrame(frame, geometry="geometry")
    if gdf.crs is None:
        raise InvalidInput(f"{reg.path}: the layer has no coordinate reference system")
    pts = gdf.geometry
    if gdf.crs.to_epsg() not in (4326, 4490):
        pts = pts.to_crs(4326)
    rep = pts.representative_point().values
    x, y = shapely.get_x(rep), shapely.get_y(rep)  # NaN for empty or missing geometry
    out = pd.DataFrame(frame.drop(columns="geometry"))
    empty = np.isnan(x)
    if "lon" not in out.columns:
        lon = pd.Series(np.round(x, 8), index=out.index).astype(str)
        lat = pd.Series(np.round(y, 8), index=out.index).astype(str)
        out["lon"] = lon.where(~empty, None)
        out["lat"] = lat.where(~empty, None)
    return out


def import_households(
    engine: Engine,
    path: Path,
    *,
    crs: str = "wgs84",
    town: str | None = None,
    column_map: dict[str, str] | None = None,
    sheet: str | int | None = None,
    layer: str | int | None = None,
    encoding: str | None = None,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
    new_groups: bool = False,
) -> ImportReport:
    """``geogrid import households``: read, validate, geocode and load one register file.

    Parameters
    ----------
    engine
        The PostGIS store.
    path
        CSV (UTF-8, UTF-8 with BOM, GBK/GB18030), Excel, GeoPackage, Shapefile, GeoJSON.
    crs
        Coordinate system of rows that do not name one in a 坐标系/crs column:
        ``wgs84``, ``cgcs2000``, ``gcj02`` or ``bd09``.
    town
        Only match village names within this town (12-digit code).
    column_map
        ``{original header: canonical field}`` overrides (``--map``).
    rejects_path
        Where the reject file goes; default ``<file name>.rejects.csv`` next to the input
        (e.g. ``households.xlsx.rejects.csv``).
        Written only when rows were rejected (an old one is removed otherwise).
    new_groups
        Accept group numbers a village does not have yet (``--new-groups``); otherwise
        such rows are rejected as ``unknown group`` (see :func:`prepare_households`).

    Returns
    -------
    ImportReport
        Counts read / inserted / updated / unchanged / rejected, by precision and reason.
    """
    from geogrid import coords as _coords

    default_crs = _coords.normalize_crs(crs)
    step = progress or (lambda stage, done, total: None)
    step("read", 0, 1)
    reg = read_register(path, sheet=sheet, encoding=encoding, column_map=column_map, layer=layer)
    step("read", 1, 1)
    raw = register_coordinates(reg)
    report, rejects = import_frame(
        engine, raw, town=town, default_crs=default_crs, progress=progress, new_groups=new_groups
    )
    report.encoding = reg.encoding
    save_rejects(report, with_originals(reg, rejects), path, rejects_path)
    return report


def import_address_points(
    engine: Engine,
    path: Path,
    *,
    crs: str = "wgs84",
    town: str | None = None,
    column_map: dict[str, str] | None = None,
    rejects_path: Path | None = None,
) -> ImportReport:
    """Load a file of known address points (门牌 points) into the geocoding gazetteer.

    The file needs an address column and coordinates (columns or point geometry). Each
    address is normalised exactly as household addresses are, so a later register row
    with the same address but no coordinates is placed on that point (precision
    ``house``). Upsert by normalised address; one transaction; a reject file as for
    households.
    """
    from geogrid import coords as _coords

    reg = read_register(path, column_map=column_map)
    raw = register_coordinates(reg).copy()
    if "register_no" not in raw.columns:
        raw["register_no"] = raw["source_row"].astype(str)
    report = ImportReport(read=len(raw), encoding=reg.encoding)
    with engine.begin() as conn:
        villages = load_villages(conn, town)
        good, rejects = prepare_parallel(  # a points file names no groups of its own
            raw, villages, default_crs=_coords.normalize_crs(crs), new_groups=True
        )
        no_xy = good["lon"].isna() | ~good["has_house_number"]
        if no_xy.any():
            extra = raw.loc[good.index[no_xy]].copy()
            extra.insert(0, "reason", "bad coordinates: an address point needs a house number "
                         "and coordinates")  # fmt: skip
            rejects = pd.concat([rejects, extra])
            good = good[~no_xy]
        good = good.drop_duplicates("address_norm", keep="last")
        conn.execute(
            text(
                "CREATE TEMP TABLE stage_points (address_norm text, village_code text, "
                "lon float8, lat float8) ON COMMIT DROP"
            )
        )
        _copy_frame(conn, "stage_points", good, ("address_norm", "village_code", "lon", "lat"))
        row = conn.execute(
            text(
                "WITH up AS (INSERT INTO address_points AS p (address_norm, village_code, geom, "
                "source) SELECT address_norm, village_code, "
                "ST_SetSRID(ST_MakePoint(lon, lat), 4326), :src FROM stage_points "
                "ON CONFLICT (address_norm) DO UPDATE SET geom = EXCLUDED.geom, "
                "village_code = EXCLUDED.village_code, source = EXCLUDED.source "
                "WHERE NOT ST_Equals(p.geom, EXCLUDED.geom) RETURNING (xmax = 0) AS ins) "
                "SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM up"
            ),
            {"src": f"points file {path.name}"},
        ).one()
    report.inserted, report.updated = int(row[0]), int(row[1])
    report.unchanged = len(good) - report.inserted - report.updated
    report.rejected = len(rejects)
    save_rejects(report, with_originals(reg, rejects), path, rejects_path)
    return report


def geocode_register(
    engine: Engine,
    path: Path,
    *,
    crs: str = "wgs84",
    town: str | None = None,
    column_map: dict[str, str] | None = None,
    sheet: str | int | None = None,
    layer: str | int | None = None,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Notebook API: read a register and geocode it, writing nothing.

    Returns the households as a GeoDataFrame (EPSG:4326, ``geocode_precision`` and
    ``geocode_source`` per row) and the rejected rows under their original headers,
    with ``source_row`` and ``reason``. Pass the GeoDataFrame (possibly edited) to
    :func:`load_register`.
    """
    from geogrid import coords as _coords

    reg = read_register(path, sheet=sheet, column_map=column_map, layer=layer)
    with engine.connect() as conn:
        households, rejects = geocode_households(
            conn, register_coordinates(reg), town=town, default_crs=_coords.normalize_crs(crs)
        )
    return households, with_originals(reg, rejects)


def load_register(engine: Engine, households: gpd.GeoDataFrame) -> ImportReport:
    """Notebook API: store geocoded households (one transaction, upsert, unchanged rows
    untouched)."""
    with engine.begin() as conn:
        return load_geocoded(conn, households)
