"""Overlay layers: cases, key units and fire inspection points — import and grid assignment.

``geogrid import cases|key-units|inspection-points FILE`` runs :func:`import_overlay`:

1. **read** the file (:func:`read_overlay`): CSV in any encoding
   :func:`geogrid.ingest.readers.detect_encoding` recognises, Excel ``.xlsx``,
   GeoPackage, Shapefile or GeoJSON; headers in Chinese or English are mapped onto the
   kind's canonical fields (:data:`FIELDS`), ``--map`` overrides them;
2. **validate** (:func:`prepare_overlay`, vectorised): id, required text, time, risk
   level, schedule, coordinates (WGS84, CGCS2000, GCJ-02 or BD-09 → EPSG:4326),
   duplicates in the file. Each rejected row keeps its original values, its row number
   (``source_row``) and a reason whose text before ``:`` is one of
   :data:`REJECT_REASONS`;
3. **load**: ``COPY`` into a staging table, then set-based SQL places every point in a
   village (point in polygon against subdivided village polygons; a point just outside
   the villages — GPS slack — goes to the nearest one; farther is *outside county*,
   or *coordinates swapped* when the swapped point is inside) and in a level-3 grid of
   its town's active plan, and one ``INSERT … ON CONFLICT`` upserts by the external id.
   A row whose values are unchanged is not touched, so re-importing a file changes
   nothing and a corrected file updates only the corrected rows. One transaction per
   file.

:func:`assign_grids` recomputes the grid codes of stored overlays (after a plan is
activated).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, text

from geogrid import coords
from geogrid.errors import InvalidInput
from geogrid.ingest.load import ImportReport, _copy_frame, save_rejects
from geogrid.ingest.readers import (
    HEADER_SCAN_ROWS,
    cell_text,
    detect_encoding,
    find_header_row,
    header_names,
)

__all__ = [
    "FIELDS",
    "KINDS",
    "REJECT_REASONS",
    "OverlayFrame",
    "OverlayKind",
    "OverlayReport",
    "assign_grids",
    "import_overlay",
    "parse_overlay_maps",
    "parse_risk_level",
    "parse_schedule",
    "prepare_overlay",
    "read_overlay",
]

log = logging.getLogger(__name__)

OverlayKind = Literal["cases", "key_units", "inspection_points"]

#: The overlay kinds (also their table names).
KINDS: Final[tuple[OverlayKind, ...]] = ("cases", "key_units", "inspection_points")

#: Degrees of slack around the villages for points on or just outside the county border.
SLACK_DEG: Final = 0.02

#: Time zone of times written without an offset (China Standard Time, no DST).
LOCAL_TZ: Final = "Asia/Shanghai"

_COMMON: dict[str, tuple[str, ...]] = {
    "lon": ("经度", "lon", "lng", "long", "longitude", "x", "x坐标"),
    "lat": ("纬度", "lat", "latitude", "y", "y坐标"),
    "crs": ("坐标系", "坐标系统", "crs", "srs", "epsg"),
}

#: Kind → canonical field → accepted headers (most specific first). The first field is
#: the external id the kind is upserted by.
FIELDS: Final[dict[OverlayKind, dict[str, tuple[str, ...]]]] = {
    "cases": {
        "case_no": ("事件编号", "案件编号", "事件号", "案件号", "编号", "case_id", "case_no", "id"),
        "category": ("类别", "事件类型", "事件类别", "案件类型", "案件类别", "类型", "category"),
        "reported_at": ("上报时间", "报告时间", "发生时间", "时间", "reported_at", "time"),
        "description": ("描述", "事件描述", "事件内容", "内容", "description", "desc"),
        "status": ("状态", "事件状态", "办理状态", "status"),
        **_COMMON,
    },
    "key_units": {
        "unit_no": ("单位编号", "编号", "unit_id", "unit_no", "id"),
        "name": ("单位名称", "名称", "name"),
        "unit_type": ("类型", "单位类型", "单位类别", "类别", "unit_type", "type"),
        "risk_level": ("风险等级", "风险级别", "风险", "risk_level", "risk"),
        "address": ("地址", "详细地址", "单位地址", "address", "addr"),
        **_COMMON,
    },
    "inspection_points": {
        "point_no": ("检查点编号", "点位编号", "巡查点编号", "编号", "point_id", "point_no", "id"),
        "name": ("名称", "检查点名称", "点位名称", "name"),
        "schedule": ("检查周期", "巡查周期", "周期", "频次", "schedule", "frequency"),
        "last_inspected": (
            "最近检查",
            "最近检查日期",
            "最近检查时间",
            "上次检查",
            "last_inspected",
        ),
        "unit_no": ("单位编号", "重点单位编号", "unit_id", "unit_no"),
        **_COMMON,
    },
}

_REQUIRED_TEXT: dict[OverlayKind, tuple[str, ...]] = {
    "cases": ("category",),
    "key_units": ("name", "unit_type"),
    "inspection_points": ("name",),
}

REJECT_REASONS: Final = (
    "missing id",
    "missing category",
    "missing name",
    "missing type",
    "unparseable time",
    "bad date",
    "bad status",
    "bad risk level",
    "bad schedule",
    "bad coordinates",
    "unknown coordinate system",
    "coordinates swapped",
    "outside county",
    "duplicate in file",
)

_RISK: dict[str, int] = {
    "1": 1, "2": 2, "3": 3,
    "低": 1, "低风险": 1, "较低": 1, "low": 1,
    "中": 2, "中等": 2, "中风险": 2, "一般": 2, "medium": 2,
    "高": 3, "高风险": 3, "较高": 3, "high": 3,
}  # fmt: skip

_SCHEDULE: dict[str, str] = {
    "weekly": "weekly", "每周": "weekly", "周": "weekly", "每星期": "weekly",
    "monthly": "monthly", "每月": "monthly", "月": "monthly",
    "quarterly": "quarterly", "每季度": "quarterly", "每季": "quarterly", "季度": "quarterly",
    "halfyearly": "halfyearly", "half-yearly": "halfyearly", "semiannual": "halfyearly",
    "每半年": "halfyearly", "半年": "halfyearly",
    "yearly": "yearly", "annual": "yearly", "annually": "yearly", "每年": "yearly",
    "年": "yearly", "每年度": "yearly",
}  # fmt: skip

#: Workflow statuses as files write them (Chinese or the machine's names, migration 0014).
_STATUS: dict[str, str] = {
    "reported": "reported", "上报": "reported", "已上报": "reported", "待受理": "reported",
    "accepted": "accepted", "受理": "accepted", "已受理": "accepted",
    "rejected": "rejected", "不予受理": "rejected", "无效": "rejected",
    "verified": "verified", "核实": "verified", "已核实": "verified",
    "registered": "registered", "立案": "registered", "已立案": "registered",
    "待派遣": "registered",
    "voided": "voided", "不予立案": "voided", "作废": "voided",
    "dispatched": "dispatched", "派遣": "dispatched", "已派遣": "dispatched",
    "待处置": "dispatched",
    "in_progress": "in_progress", "inprogress": "in_progress", "处置中": "in_progress",
    "办理中": "in_progress", "处理中": "in_progress",
    "suspended": "suspended", "挂账": "suspended", "已挂账": "suspended",
    "handled": "handled", "处置": "handled", "已处置": "handled", "待核查": "handled",
    "checked": "checked", "核查": "checked", "已核查": "checked", "核查通过": "checked",
    "evaluated": "evaluated", "评价": "evaluated", "已评价": "evaluated",
    "closed": "closed", "结案": "closed", "已结案": "closed", "办结": "closed",
    "已办结": "closed",
    "archived": "archived", "归档": "archived", "已归档": "archived",
}  # fmt: skip

_NOTE = re.compile(r"\([^()]*\)$")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


def _key(value: object) -> str:
    """A header or code word normalised for matching (NFKC, no spaces, lower case)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(value))).lower()


def parse_risk_level(value: object) -> int | None:
    """A risk level 1 (low) – 3 (high) from a cell, or ``None`` when unreadable.

    >>> [parse_risk_level(v) for v in ("3", "高", "中风险", "低", "3级", "2.0", "4", "")]
    [3, 3, 2, 1, 3, 2, None, None]
    """
    if value is None:
        return None
    key = _key(value)
    key = re.sub(r"(\.0+|级)$", "", key)
    return _RISK.get(key)


def parse_schedule(value: object) -> str | None:
    """An inspection schedule (``weekly`` … ``yearly``) from a cell, or ``None``.

    >>> [parse_schedule(v) for v in ("每月", "每季度", "Half-Yearly", "每半年", "daily")]
    ['monthly', 'quarterly', 'halfyearly', 'halfyearly', None]
    """
    if value is None:
        return None
    key = _key(value)
    return _SCHEDULE.get(key) or _SCHEDULE.get(key.replace("一次", "").replace("1次", ""))


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


@dataclass
class OverlayFrame:
    """An overlay file as read.

    Attributes
    ----------
    frame
        ``source_row`` (1-based row as a spreadsheet or text editor shows it; feature
        position for GIS formats), the canonical fields found, and every other column
        under its original header; values are the source's text (missing as ``None``).
    original_columns
        ``{frame column: original header}`` for every data column.
    column_mapping
        ``{original header: canonical field}``.
    encoding
        The CSV's detected encoding (``None`` for other formats).
    """

    frame: pd.DataFrame
    path: Path
    original_columns: dict[str, str]
    column_mapping: dict[str, str]
    encoding: str | None = None

    def originals(self, index: pd.Index) -> pd.DataFrame:
        """The given rows under their original headers, ``source_row`` first."""
        cols = ["source_row", *self.original_columns]
        out = pd.DataFrame(self.frame.loc[index, cols])
        return out.rename(columns=self.original_columns)


def parse_overlay_maps(kind: OverlayKind, items: list[str]) -> dict[str, str]:
    """Parse ``--map COLUMN=FIELD`` overrides for one overlay kind.

    >>> parse_overlay_maps("cases", ["编码=case_no", "分类 = category"])
    {'编码': 'case_no', '分类': 'category'}
    """
    fields = FIELDS[kind]
    out: dict[str, str] = {}
    for item in items:
        column, sep, name = item.rpartition("=")
        column, name = column.strip(), name.strip()
        if not sep or not column or not name:
            raise InvalidInput(f"--map {item!r}: expected COLUMN=FIELD, e.g. 编码=case_no")
        if name not in fields:
            raise InvalidInput(
                f"--map {item!r}: unknown field {name!r} for {kind}; "
                f"known fields are {', '.join(fields)}"
            )
        out[column] = name
    return out


def _map_headers(
    kind: OverlayKind, headers: list[str], overrides: Mapping[str, str]
) -> dict[str, str]:
    """``{header: field}``: overrides first, then the most specific alias, then leftmost."""
    fields = FIELDS[kind]
    alias: dict[str, tuple[str, int]] = {}
    for name, names in fields.items():
        for rank, a in enumerate(names):
            alias.setdefault(_key(a), (name, rank))
    chosen: dict[str, tuple[str, tuple[int, int]]] = {}
    keys = {_key(h): h for h in headers}
    for column, name in overrides.items():
        header = column if column in headers else keys.get(_key(column))
        if header is None:
            raise InvalidInput(
                f"--map names column {column!r}, which is not in the header ({', '.join(headers)})"
            )
        chosen[name] = (header, (-1, 0))
    taken = {h for h, _ in chosen.values()}
    for pos, header in enumerate(headers):
        if header in taken:
            continue
        k = _key(header)
        hit = alias.get(k) or alias.get(_NOTE.sub("", k))
        if hit is None:
            continue
        name, rank = hit
        if name not in chosen or (rank, pos) < chosen[name][1]:
            chosen[name] = (header, (rank, pos))
    return {h: name for name, (h, _) in chosen.items()}


def _label(kind: OverlayKind, name: str) -> str:
    """A field as a user knows it: its Chinese header and the canonical name.

    >>> _label("cases", "case_no")
    '事件编号/case_no'
    """
    return f"{FIELDS[kind][name][0]}/{name}"


def _expected(kind: OverlayKind) -> str:
    id_field = next(iter(FIELDS[kind]))
    return f"an id column ({'/'.join(FIELDS[kind][id_field][:4])}…)"


def _header_index(kind: OverlayKind, rows: list[list[Any]], overrides: Mapping[str, str]) -> int:
    id_field = next(iter(FIELDS[kind]))

    def names_the_id(row: Sequence[Any]) -> bool:
        headers = [t.strip() for t in (cell_text(c) for c in row) if t]
        try:
            return bool(headers) and id_field in _map_headers(kind, headers, overrides).values()
        except InvalidInput:  # an --map column missing from this row: not the header
            return False

    found = find_header_row(rows, names_the_id)
    if found is None:
        raise InvalidInput(
            f"no recognisable header in the first {HEADER_SCAN_ROWS} rows: expected "
            f"{_expected(kind)}; name the columns with --map COLUMN=FIELD"
        )
    return found


def read_overlay(
    path: str | Path,
    kind: OverlayKind,
    *,
    column_map: Mapping[str, str] | None = None,
    sheet: str | int | None = None,
    layer: str | int | None = None,
    encoding: str | None = None,
) -> OverlayFrame:
    """Read an overlay file into canonical columns.

    Parameters
    ----------
    path
        ``.csv``/``.txt``/``.tsv`` (UTF-8 with or without BOM, GBK/GB18030, UTF-16),
        ``.xlsx``, ``.gpkg``, ``.shp``, ``.geojson``/``.json`` (point geometry gives
        ``lon``/``lat`` in EPSG:4326 when the file has no coordinate columns).
    kind
        ``"cases"``, ``"key_units"`` or ``"inspection_points"``.
    column_map
        ``{original header: canonical field}`` overrides.
    sheet, layer
        Excel sheet or GIS layer (name or 0-based index); default the first.
    encoding
        Force the CSV encoding instead of detecting it.

    Returns
    -------
    OverlayFrame

    Raises
    ------
    geogrid.errors.InvalidInput
        Unknown format, unreadable file, or no header naming the id column.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInput(f"{p}: no such file")
    overrides = dict(column_map or {})
    suffix = p.suffix.lower()
    enc: str | None = None
    geo: Any = None
    try:
        if suffix in (".csv", ".txt", ".tsv"):
            header, frame, first_row, enc = _read_csv(p, kind, encoding, overrides)
            source_row = np.arange(first_row, first_row + len(frame))
        elif suffix in (".xlsx", ".xlsm"):
            header, rows, first_row = _read_xlsx(p, kind, sheet, overrides)
            frame = pd.DataFrame(rows, columns=header, dtype=object)
            source_row = np.arange(first_row, first_row + len(frame))
        elif suffix in (".gpkg", ".shp", ".geojson", ".json"):
            frame, geo = _read_gis(p, layer if layer is not None else sheet)
            header = [str(c) for c in frame.columns]
            source_row = np.arange(1, len(frame) + 1)
        else:
            raise InvalidInput(
                f"{p}: unknown file format {p.suffix!r}; expected .csv, .xlsx, .gpkg, .shp "
                "or .geojson"
            )
    except InvalidInput as exc:
        if str(exc).startswith(str(p)):
            raise
        raise InvalidInput(f"{p}: {exc.message}") from None
    mapping = _map_headers(kind, header, overrides)
    id_field = next(iter(FIELDS[kind]))
    if id_field not in mapping.values():
        raise InvalidInput(
            f"{p}: no recognisable header: expected {_expected(kind)}; found "
            f"{', '.join(map(repr, header))}. Name the columns with --map COLUMN=FIELD"
        )
    frame = frame.astype(object).where(frame.notna(), None)
    for column in frame.columns:  # whitespace-only cells are empty
        blank = frame[column].astype(str).str.strip().eq("").to_numpy()
        if blank.any():
            frame.loc[blank, column] = None
    frame.insert(0, "source_row", source_row.astype(np.int64))
    if geo is not None and not {"lon", "lat"} & set(mapping.values()):
        frame["lon"], frame["lat"] = geo
        header = [*header, "lon", "lat"]
        mapping = {**mapping, "lon": "lon", "lat": "lat"}
    data_cols = [c for c in frame.columns if c != "source_row"]
    empty = frame[data_cols].isna().all(axis=1).to_numpy() if data_cols else np.zeros(0, bool)
    frame = frame.loc[~empty].reset_index(drop=True)
    rename: dict[str, str] = {}
    taken = set(mapping.values()) | {"source_row"}
    for h in header:
        if h in mapping:
            rename[h] = mapping[h]
        elif h in taken:
            new = f"{h}_original"
            while new in taken:
                new += "_"
            rename[h] = new
            taken.add(new)
    original_columns = {rename.get(h, h): h for h in header}
    frame = frame.rename(columns=rename)
    return OverlayFrame(frame, p, original_columns, mapping, enc)


def _read_csv(
    path: Path, kind: OverlayKind, encoding: str | None, overrides: Mapping[str, str]
) -> tuple[list[str], pd.DataFrame, int, str]:
    import csv
    import io

    enc = encoding or detect_encoding(path)
    with path.open("r", encoding=enc, newline="") as fh:
        head = [line for _, line in zip(range(HEADER_SCAN_ROWS), fh, strict=False)]
    delim = max((",", "\t", ";", "|"), key=lambda d: sum(line.count(d) for line in head))
    rows = list(csv.reader(io.StringIO("".join(head)), delimiter=delim))
    idx = _header_index(kind, rows, overrides)
    reader = csv.reader(io.StringIO("".join(head)), delimiter=delim)
    lines = 0
    for _ in range(idx):
        next(reader)
        lines = reader.line_num
    try:
        frame = pd.read_csv(
            path,
            sep=delim,
            encoding=enc,
            skiprows=lines,
            header=0,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"cannot read as {enc} CSV: {exc}") from None
    header = header_names(list(frame.columns))
    frame.columns = pd.Index(header)
    return header, frame, lines + 2, enc


def _read_xlsx(
    path: Path, kind: OverlayKind, sheet: str | int | None, overrides: Mapping[str, str]
) -> tuple[list[str], list[list[Any]], int]:
    import zipfile

    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise InvalidInput(f"not a readable .xlsx workbook: {exc}") from None
    try:
        names = list(wb.sheetnames)
        if sheet is None:
            name = names[0]
        elif isinstance(sheet, int) or (str(sheet).isdigit() and sheet not in names):
            i = int(sheet)
            if not 0 <= i < len(names):
                raise InvalidInput(f"no sheet {sheet!r}; sheets are {names} (index from 0)")
            name = names[i]
        elif sheet in names:
            name = str(sheet)
        else:
            raise InvalidInput(f"no sheet {sheet!r}; sheets are {names}")
        rows = [list(r) for r in wb[name].iter_rows(values_only=True)]
    finally:
        wb.close()
    idx = _header_index(kind, rows, overrides)
    header = header_names(rows[idx])
    width = len(header)
    data = [[cell_text(v) for v in (list(r[:width]) + [None] * (width - len(r)))]
            for r in rows[idx + 1 :]]  # fmt: skip
    return header, data, idx + 2


def _read_gis(path: Path, layer: str | int | None) -> tuple[pd.DataFrame, Any]:
    import pyogrio

    try:
        gdf = pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise InvalidInput(f"not a readable GIS file: {exc}") from None
    frame = pd.DataFrame({str(c): gdf[c] for c in gdf.columns if c != "geometry"})
    for c in frame.columns:
        col = frame[c]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            frame[c] = [None if pd.isna(v) else v.isoformat() for v in col]
        else:
            frame[c] = [cell_text(v.item() if hasattr(v, "item") else v) for v in col]
    geo = None
    if "geometry" in gdf.columns and gdf.geometry.notna().any():
        import shapely

        g = gdf.geometry
        if g.crs is not None and g.crs.to_epsg() not in (4326, 4490):
            g = g.to_crs(4326)
        pts = g.representative_point().values
        x, y = shapely.get_x(pts), shapely.get_y(pts)
        geo = (
            [None if np.isnan(v) else repr(float(v)) for v in x],
            [None if np.isnan(v) else repr(float(v)) for v in y],
        )
    return frame, geo


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _text(df: pd.DataFrame, name: str) -> pd.Series:
    """A column as stripped text (object dtype), ``None`` where missing or blank."""
    if name not in df.columns:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    out = []
    for v in df[name].tolist():
        t = str(v).strip() if v is not None and v == v else ""
        out.append(t or None)
    return pd.Series(out, index=df.index, dtype=object)


def _parse_times(values: pd.Series) -> pd.Series:
    """Timestamps (UTC) from text; times without an offset are China Standard Time."""
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    given = values.notna()
    if not given.any():
        return out
    s = values[given].astype(str)
    s = s.str.replace(r"[年/.]", "-", regex=True).str.replace("月", "-").str.replace("日", " ")
    s = s.str.strip()
    aware = s.str.contains(_OFFSET)
    if aware.any():
        out[s.index[aware]] = pd.to_datetime(
            s[aware], format="ISO8601", utc=True, errors="coerce"
        ).to_numpy()
    naive = ~aware
    if naive.any():
        t = pd.to_datetime(s[naive], format="ISO8601", errors="coerce")
        retry = t.isna()
        if retry.any():  # odd forms (2025-1-1 8:05): parse the few unique values one by one
            uniq = pd.unique(s[naive][retry])
            parsed = {u: pd.to_datetime(u, errors="coerce") for u in uniq}
            t[retry] = s[naive][retry].map(parsed)
        t = pd.to_datetime(t, errors="coerce")
        if getattr(t.dt, "tz", None) is None:
            t = t.dt.tz_localize(LOCAL_TZ, ambiguous="NaT", nonexistent="NaT")
        out[s.index[naive]] = t.dt.tz_convert("UTC").to_numpy()
    return out


def prepare_overlay(
    raw: pd.DataFrame, kind: OverlayKind, *, default_crs: str = "wgs84"
) -> tuple[pd.DataFrame, pd.Series]:
    """Validate and convert an overlay file's canonical columns.

    Parameters
    ----------
    raw
        The frame of :func:`read_overlay` (``source_row`` plus canonical fields).
    kind
        The overlay kind.
    default_crs
        Coordinate system of rows whose ``crs`` cell is empty or absent.

    Returns
    -------
    (good, reasons)
        ``good``: ``source_row``, the kind's stored fields, ``lon``/``lat`` in EPSG:4326;
        ``reasons``: the reject reason of each rejected row (indexed like ``raw``).

    Examples
    --------
    >>> raw = pd.DataFrame({"source_row": [2, 3, 4], "case_no": ["C1", None, "C1"],
    ...     "category": ["环境卫生", "其他", "其他"],
    ...     "reported_at": ["2025-03-01 08:00", "2025-03-01", "2025-03-02"],
    ...     "lon": ["114.3", "114.3", "114.3"], "lat": ["30.4", "30.4", "30.4"]})
    >>> good, why = prepare_overlay(raw, "cases")
    >>> good["case_no"].tolist(), str(good["reported_at"].iloc[0])
    (['C1'], '2025-03-01 00:00:00+00:00')
    >>> why.tolist()
    ['missing id: empty 事件编号/case_no', 'duplicate in file: same id as row 2']
    """
    n = len(raw)
    reason = pd.Series([None] * n, index=raw.index, dtype=object)

    def reject(mask: Any, why: str | pd.Series) -> None:
        m = np.asarray(mask, dtype=bool) & reason.isna().to_numpy()
        if not m.any():
            return
        reason[m] = why[m] if isinstance(why, pd.Series) else why

    fields = FIELDS[kind]
    id_field = next(iter(fields))
    out = pd.DataFrame({"source_row": raw["source_row"].to_numpy()}, index=raw.index)
    ident = _text(raw, id_field)
    reject(ident.isna(), f"missing id: empty {_label(kind, id_field)}")
    out[id_field] = ident
    for name in _REQUIRED_TEXT[kind]:
        values = _text(raw, name)
        label = {"category": "category", "name": "name", "unit_type": "type"}[name]
        reject(values.isna(), f"missing {label}: empty {_label(kind, name)}")
        out[name] = values

    if kind == "cases":
        t_text = _text(raw, "reported_at")
        times = _parse_times(t_text)
        reject(t_text.isna(), f"unparseable time: empty {_label(kind, 'reported_at')}")
        reject(times.isna(), "unparseable time: " + t_text.astype(str).map(repr))
        out["reported_at"] = times
        out["description"] = _text(raw, "description")
        st_text = _text(raw, "status")
        status = st_text.map(lambda v: _STATUS.get(_key(v)) if v is not None else None)
        reject(
            st_text.notna() & status.isna(),
            "bad status: " + st_text.astype(str).map(repr) + f" (one of {', '.join(_STATUS)})",
        )
        out["status"] = status
    elif kind == "key_units":
        r_text = _text(raw, "risk_level")
        uniq = {v: parse_risk_level(v) for v in pd.unique(r_text.dropna())}
        risk = r_text.map(lambda v: uniq.get(v) if v is not None else None)
        reject(
            risk.isna(), "bad risk level: " + r_text.astype(str).map(repr) + " (1–3 or 高/中/低)"
        )
        out["risk_level"] = risk.astype("Int64")
        out["address"] = _text(raw, "address")
    else:
        s_text = _text(raw, "schedule")
        uniq_s = {v: parse_schedule(v) for v in pd.unique(s_text.dropna())}
        schedule = s_text.map(lambda v: uniq_s.get(v) if v is not None else None)
        reject(
            schedule.isna(),
            "bad schedule: " + s_text.astype(str).map(repr) + " (每周/每月/每季度/每半年/每年)",
        )
        out["schedule"] = schedule
        d_text = _text(raw, "last_inspected")
        dates = _parse_times(d_text.map(lambda v: v[:10] if v and len(v) >= 10 else v))
        reject(d_text.notna() & dates.isna(), "bad date: " + d_text.astype(str).map(repr))
        local = dates.dt.tz_convert(LOCAL_TZ)
        out["last_inspected"] = local.dt.strftime("%Y-%m-%d").where(dates.notna(), None)
        out["unit_no"] = _text(raw, "unit_no")

    # coordinates
    lon_t, lat_t = _text(raw, "lon"), _text(raw, "lat")
    lon = pd.to_numeric(lon_t, errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(lat_t, errors="coerce").to_numpy(dtype=float)
    reject(lon_t.isna() | lat_t.isna(), "bad coordinates: missing lon/lat (经度/纬度)")
    reject(np.isnan(lon) | np.isnan(lat), "bad coordinates: not a number")
    ok = reason.isna().to_numpy() & ~np.isnan(lon) & ~np.isnan(lat)
    crs_text = _text(raw, "crs").fillna(default_crs)
    names: dict[str, str | None] = {}
    for value in pd.unique(crs_text):
        try:
            names[value] = coords.normalize_crs(value)
        except InvalidInput:
            names[value] = None
    crs = crs_text.map(names)
    reject(crs.isna(), "unknown coordinate system: " + crs_text.astype(str).map(repr))
    zero = (np.abs(lon) < 1e-9) & (np.abs(lat) < 1e-9)
    reject(zero, "bad coordinates: (0, 0)")
    x, y = lon.copy(), lat.copy()
    for name in {v for v in names.values() if v and v not in ("wgs84", "cgcs2000")}:
        m = ok & (crs == name).to_numpy()
        if m.any():
            x[m], y[m] = coords.convert(lon[m], lat[m], name, "wgs84")
    # out of range, unless swapped (lat, lon) is in range: the database says which
    outside = (np.abs(x) > 180) | (np.abs(y) > 90)
    reject(outside & ((np.abs(y) > 180) | (np.abs(x) > 90)), "bad coordinates: out of range")
    out["lon"], out["lat"] = x, y

    # duplicates: the first good occurrence wins
    good_mask = reason.isna()
    dup = good_mask & ident.where(good_mask).duplicated(keep="first") & ident.notna()
    if dup.any():
        first = out[good_mask & ~dup].drop_duplicates(id_field).set_index(id_field)["source_row"]
        rows = ident[dup].map(first).astype("int64").astype(str)
        reject(dup, ("duplicate in file: same id as row " + rows).reindex(ident.index))
    good = out[reason.isna()].copy()
    return good, reason[reason.notna()]


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


@dataclass
class OverlayReport(ImportReport):
    """The import summary: counts as for households, plus placement."""

    kind: str = ""
    in_grid: int = 0
    by_village: dict[str, int] = field(default_factory=dict)


_STORED: dict[OverlayKind, tuple[str, ...]] = {
    "cases": ("case_no", "category", "reported_at", "description", "status"),
    "key_units": ("unit_no", "name", "unit_type", "risk_level", "address"),
    "inspection_points": ("point_no", "name", "schedule", "last_inspected", "unit_no"),
}
_STAGE_TYPES: dict[str, str] = {
    "case_no": "text", "category": "text", "reported_at": "timestamptz", "description": "text",
    "status": "text", "unit_no": "text", "name": "text", "unit_type": "text",
    "risk_level": "smallint", "address": "text", "point_no": "text", "schedule": "text",
    "last_inspected": "date",
}  # fmt: skip


def _place_sql(stage: str) -> str:
    """SQL creating ``overlay_placed`` from a staging table: village and grid of each point.

    Subdivided village and active-grid polygons (temporary, GiST-indexed, limited to the
    points' extent) keep each point-in-polygon test small; ``COALESCE`` only runs the
    nearest-village search for points inside no village.
    """
    return f"""
    CREATE TEMP TABLE overlay_placed ON COMMIT DROP AS
    SELECT s.*, p.pt,
           COALESCE(
               (SELECT vp.code FROM overlay_village_parts vp
                WHERE ST_Intersects(vp.geom, p.pt) ORDER BY vp.code LIMIT 1),
               (SELECT vp.code FROM overlay_village_parts vp
                WHERE ST_DWithin(vp.geom, p.pt, {SLACK_DEG})
                ORDER BY vp.geom <-> p.pt, vp.code LIMIT 1)
           ) AS village_code,
           NULL::varchar(15) AS grid_code
    FROM {stage} s
    CROSS JOIN LATERAL (SELECT ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326) AS pt) p
    """


_PARTS_SQL = """
DROP TABLE IF EXISTS pg_temp.overlay_village_parts;
DROP TABLE IF EXISTS pg_temp.overlay_grid_parts;
CREATE TEMP TABLE overlay_village_parts ON COMMIT DROP AS
    SELECT v.code, ST_Subdivide(v.geom, 64) AS geom
    FROM admin_areas v
    WHERE v.level = 'village' AND v.geom IS NOT NULL
      AND (CAST(:xmin AS float8) IS NULL
           OR v.geom && ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 4326));
CREATE INDEX ON overlay_village_parts USING gist (geom);
ANALYZE overlay_village_parts;
CREATE TEMP TABLE overlay_grid_parts ON COMMIT DROP AS
    SELECT g.code, g.village_code, ST_Subdivide(g.geom, 64) AS geom
    FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active'
    WHERE g.level = 3 AND g.geom IS NOT NULL
      AND (CAST(:town AS text) IS NULL OR p.town_code = :town)
      AND (CAST(:xmin AS float8) IS NULL
           OR g.geom && ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 4326));
CREATE INDEX ON overlay_grid_parts USING gist (geom);
ANALYZE overlay_grid_parts;
"""

#: The level-3 grid of the active plan containing point ``{pt}`` among the grids of its
#: village ``{village}`` (found through the GiST index: there is deliberately no b-tree
#: on ``village_code``, which would make PostgreSQL test every part of the village).
_GRID_EXPR = """(SELECT gp.code FROM overlay_grid_parts gp
    WHERE ST_Intersects(gp.geom, {pt}) AND gp.village_code = {village}
    ORDER BY gp.code LIMIT 1)"""

#: Points in a gap between the grid polygons of their village go to that village's
#: nearest grid (only villages that have grids are searched).
_GRID_GAPS_SQL = """
UPDATE {table} r SET grid_code = (
    SELECT gp.code FROM overlay_grid_parts gp WHERE gp.village_code = r.village_code
    ORDER BY gp.geom <-> r.{pt}, gp.code LIMIT 1)
WHERE r.grid_code IS NULL
  AND r.village_code IN (SELECT DISTINCT village_code FROM overlay_grid_parts)
"""


def _exec_script(conn: Connection, script: str, params: dict[str, Any]) -> None:
    for statement in (s.strip() for s in script.split(";")):
        if statement:
            used = {k: v for k, v in params.items() if f":{k}" in statement}
            conn.execute(text(statement), used)


def _build_parts(
    conn: Connection,
    extent: tuple[float, float, float, float] | None,
    town: str | None = None,
) -> None:
    xmin, ymin, xmax, ymax = (
        (extent[0] - SLACK_DEG, extent[1] - SLACK_DEG, extent[2] + SLACK_DEG, extent[3] + SLACK_DEG)
        if extent
        else (None, None, None, None)
    )
    _exec_script(
        conn, _PARTS_SQL, {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax, "town": town}
    )


#: The dictionary code of an imported case's category (name or alias; else 其他).
_CATEGORY_CODE_SQL = (
    "coalesce((SELECT k.code FROM case_categories k WHERE k.name = s.category "
    "OR s.category = ANY (k.aliases) ORDER BY length(k.code), k.code LIMIT 1), '09')"
)


def _upsert_sql(kind: OverlayKind, *, with_status: bool) -> tuple[str, str]:
    """SQL for the upsert from ``overlay_placed``: (changed rows, insert).

    The first statement keeps, in ``overlay_changed``, the rows that are new or differ
    from the stored ones; the second (run only when there are any, so that a no-op
    re-import does not even bump the layer's data version) upserts them by the id. A
    cases file without a status column neither sets nor resets the workflow status of
    stored cases (new ones start as ``reported``).
    """
    id_col = _STORED[kind][0]
    values = [c for c in _STORED[kind][1:] if c != "unit_no"]
    if kind == "cases" and not with_status:
        values.remove("status")
    select = [f"s.{c}" for c in (id_col, *values)]
    if "status" in values:
        select[1 + values.index("status")] = "COALESCE(s.status, 'reported')"
    if kind == "inspection_points":
        # the key unit: named by its number, else the unit at the same place with the name
        values.append("key_unit_id")
        select.append(
            "COALESCE((SELECT k.id FROM key_units k WHERE k.unit_no = s.unit_no), "
            "(SELECT k.id FROM key_units k WHERE k.name = s.name "
            "AND ST_DWithin(k.geom, s.pt, 1e-5) ORDER BY k.id LIMIT 1))"
        )
    cols = [id_col, *values, "geom", "village_code", "grid_code"]
    select += ["s.pt", "s.village_code", "s.grid_code"]
    updated = cols[1:]
    if kind == "cases":
        # a case keeps the village and grid it was reported in (a re-import after a new
        # plan does not move it); its category code comes from the dictionary
        updated = [c for c in updated if c not in ("village_code", "grid_code")]
        cols.append("category_code")
        select.append(_CATEGORY_CODE_SQL)
        updated.append("category_code")
    old = ", ".join("t.geom::bytea" if c == "geom" else f"t.{c}" for c in updated)
    new = ", ".join("r.geom::bytea" if c == "geom" else f"r.{c}" for c in updated)
    changed = f"""
    CREATE TEMP TABLE overlay_changed ON COMMIT DROP AS
    SELECT r.* FROM (
        SELECT {", ".join(f"{e} AS {c}" for e, c in zip(select, cols, strict=True))}
        FROM overlay_placed s WHERE s.village_code IS NOT NULL
    ) r
    LEFT JOIN {kind} t ON t.{id_col} = r.{id_col}
    WHERE t.id IS NULL OR ({old}) IS DISTINCT FROM ({new})
    """
    current = ("current_grid_code", "grid_code") if kind == "cases" else ()
    insert = f"""
    WITH up AS (
        INSERT INTO {kind} AS t ({", ".join((*cols, *current[:1]))})
        SELECT {", ".join((*cols, *current[1:]))} FROM overlay_changed
        ON CONFLICT ({id_col}) DO UPDATE SET
            {", ".join(f"{c} = EXCLUDED.{c}" for c in updated)}, updated_at = now()
        RETURNING (xmax = 0) AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
    """
    return changed, insert


def load_overlay(
    conn: Connection, kind: OverlayKind, good: pd.DataFrame, *, with_status: bool = False
) -> tuple[int, int, pd.Series]:
    """Stage, place and upsert validated rows (:func:`prepare_overlay`).

    Returns
    -------
    (inserted, updated, reasons)
        Counts of rows written and the reject reasons of rows that could not be placed
        (outside the county, swapped coordinates), indexed by ``source_row``.
    """
    has_villages = text(
        "SELECT EXISTS (SELECT 1 FROM admin_areas WHERE level = 'village' AND geom IS NOT NULL)"
    )
    if not conn.execute(has_villages).scalar_one():
        raise InvalidInput(
            "no village polygons in the database: import the boundaries first "
            "(geogrid import boundaries FILE --level town, then --level village)"
        )
    columns = ("source_row", *_STORED[kind], "lon", "lat")
    types = ", ".join(
        f"{c} {_STAGE_TYPES.get(c, 'float8' if c in ('lon', 'lat') else 'bigint')}" for c in columns
    )
    conn.execute(text("DROP TABLE IF EXISTS pg_temp.overlay_stage"))
    conn.execute(text("DROP TABLE IF EXISTS pg_temp.overlay_placed"))
    conn.execute(text(f"CREATE TEMP TABLE overlay_stage ({types}) ON COMMIT DROP"))
    stage = good.copy()
    if "reported_at" in stage:
        stage["reported_at"] = stage["reported_at"].map(
            lambda t: t.isoformat() if not pd.isna(t) else None
        )
    _copy_frame(conn, "overlay_stage", stage, columns)
    # the points' extent; a point with |lat| > 90 counts swapped (it may be)
    odd = good["lat"].abs() > 90
    xs = pd.concat([good.loc[~odd, "lon"], good.loc[odd, "lat"]])
    ys = pd.concat([good.loc[~odd, "lat"], good.loc[odd, "lon"]])
    extent = (
        (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())) if len(good) else None
    )
    _build_parts(conn, extent)
    conn.execute(text(_place_sql("overlay_stage")))
    conn.execute(
        text(
            "UPDATE overlay_placed s SET grid_code = "
            + _GRID_EXPR.format(village="s.village_code", pt="s.pt")
            + " WHERE s.village_code IN (SELECT DISTINCT village_code FROM overlay_grid_parts)"
        )
    )
    conn.execute(text(_GRID_GAPS_SQL.format(table="overlay_placed", pt="pt")))
    conn.execute(text("ANALYZE overlay_placed"))
    # unplaced points: swapped lon/lat, or outside the county
    rows = conn.execute(
        text(
            "SELECT s.source_row, EXISTS (SELECT 1 FROM overlay_village_parts vp "
            "WHERE ST_Intersects(vp.geom, ST_SetSRID(ST_MakePoint(s.lat, s.lon), 4326))) "
            "FROM overlay_placed s WHERE s.village_code IS NULL"
        )
    ).all()
    reasons = pd.Series(
        {
            int(r): (
                "coordinates swapped: latitude and longitude in each other's column"
                if swapped
                else "outside county: the point is in no village of the database"
            )
            for r, swapped in rows
        },
        dtype=object,
    )
    changed, insert = _upsert_sql(kind, with_status=with_status)
    conn.execute(text("DROP TABLE IF EXISTS pg_temp.overlay_changed"))
    conn.execute(text(changed))
    inserted = updated = 0
    before: Any = []
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM overlay_changed)")).scalar_one():
        if kind == "cases":
            before = conn.execute(
                text(
                    "SELECT t.id, t.status FROM cases t JOIN overlay_changed r "
                    "ON r.case_no = t.case_no"
                )
            ).all()
        inserted, updated = conn.execute(text(insert)).one()
        if kind == "cases":
            _case_histories(conn, dict(before))
    return int(inserted), int(updated), reasons


def _case_histories(conn: Connection, before: dict[Any, Any]) -> None:
    """Event histories for new cases; an ``import`` event for a status a re-import changed."""
    from geogrid.cases import history

    history.synthesise(
        conn, "SELECT t.id FROM cases t JOIN overlay_changed r ON r.case_no = t.case_no"
    )
    if before:
        now = conn.execute(
            text("SELECT id, status FROM cases WHERE id = ANY(:ids)"), {"ids": list(before)}
        ).all()
        moved = [(int(i), before[i], st) for i, st in now if before[i] != st]
        history.append_status_change(conn, moved)


def import_overlay(
    engine: Engine,
    path: Path,
    kind: OverlayKind,
    *,
    crs: str = "wgs84",
    column_map: Mapping[str, str] | None = None,
    sheet: str | int | None = None,
    layer: str | int | None = None,
    encoding: str | None = None,
    rejects_path: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> OverlayReport:
    """``geogrid import cases|key-units|inspection-points``: read, validate, place, upsert.

    Parameters
    ----------
    engine
        The PostGIS store (boundaries must be loaded).
    path
        The overlay file (see :func:`read_overlay`).
    kind
        ``"cases"``, ``"key_units"`` or ``"inspection_points"``.
    crs
        Coordinate system of rows without a 坐标系/crs cell: ``wgs84``, ``cgcs2000``,
        ``gcj02`` or ``bd09``.
    column_map
        ``{original header: canonical field}`` overrides (``--map``).
    rejects_path
        The reject file; default ``<file name>.rejects.csv`` next to the input. Written
        only when rows are rejected (a stale default one is removed otherwise).

    Returns
    -------
    OverlayReport
        Read / inserted / updated / unchanged / rejected counts, rejects by reason,
        features placed in a grid, features per village.
    """
    if kind not in KINDS:
        raise InvalidInput(f"unknown overlay kind {kind!r}; expected one of {', '.join(KINDS)}")
    step = progress or (lambda stage, done, total: None)
    default_crs = coords.normalize_crs(crs)
    step("read", 0, 1)
    frame = read_overlay(
        path, kind, column_map=column_map, sheet=sheet, layer=layer, encoding=encoding
    )
    step("read", 1, 1)
    raw = frame.frame
    step("validate", 0, len(raw))
    good, reasons = prepare_overlay(raw, kind, default_crs=default_crs)
    step("validate", len(raw), len(raw))
    report = OverlayReport(read=len(raw), encoding=frame.encoding, kind=kind)
    step("load", 0, len(good))
    with engine.begin() as conn:
        inserted, updated, unplaced = load_overlay(
            conn, kind, good, with_status="status" in raw.columns
        )
        if kind == "cases":  # imported history: its months get partitions of their own
            from geogrid.ops.partitions import ensure

            ensure(conn, tables=("case_events",))
        id_col = _STORED[kind][0]
        stats = conn.execute(
            text(
                f"SELECT t.village_code, count(*), count(t.grid_code) FROM {kind} t "
                f"JOIN overlay_placed s ON s.{id_col} = t.{id_col} GROUP BY 1 ORDER BY 1"
            )
        ).all()
    step("load", len(good), len(good))
    if len(unplaced):
        by_row = pd.Series(raw.index, index=raw["source_row"].to_numpy())
        extra = pd.Series(unplaced.to_numpy(), index=by_row.loc[unplaced.index].to_numpy())
        reasons = pd.concat([reasons, extra])
    report.inserted, report.updated = inserted, updated
    report.rejected = len(reasons)
    report.unchanged = len(good) - len(unplaced) - inserted - updated
    report.in_grid = int(sum(r[2] for r in stats))
    report.by_village = {str(r[0]): int(r[1]) for r in stats}
    report.rejects_by_reason = {
        str(k): int(v)
        for k, v in reasons.astype(str).str.split(":").str[0].value_counts().sort_index().items()
    }
    order = raw.loc[reasons.index, "source_row"].sort_values().index
    originals = frame.originals(order)
    originals.insert(1, "reason", reasons.loc[order].to_numpy())
    save_rejects(report, originals, path, rejects_path)
    log.info("%s: %s", kind, report.as_dict())
    return report


def assign_grids(
    conn: Connection, town_code: str | None = None, *, kinds: tuple[OverlayKind, ...] = KINDS
) -> dict[str, int]:
    """Recompute the grid codes of stored overlays from the active plans.

    Call after a plan is activated (in the same transaction): every key unit and
    inspection point of the town (all towns when ``town_code`` is ``None``) gets the
    level-3 grid of its town's active plan that contains it (or ``NULL`` when the town
    has no active plan). Cases keep the grid they were reported in (``grid_code``, their
    history and scope; set here only for cases never placed in a grid before); their
    ``current_grid_code`` follows the plan. Set-based: one
    ``UPDATE`` per table; rows whose code does not change are not written.

    Parameters
    ----------
    conn
        A connection in a transaction.
    town_code
        The 12-digit town code, or ``None`` for all towns.
    kinds
        The overlay tables to update.

    Returns
    -------
    dict
        Rows changed per table.
    """
    _build_parts(conn, None, town_code)
    changed: dict[str, int] = {}
    for kind in kinds:
        if kind not in KINDS:
            raise InvalidInput(f"unknown overlay kind {kind!r}")
        # a case keeps the grid it was reported in; only its current grid follows the plan
        column = "current_grid_code" if kind == "cases" else "grid_code"
        conn.execute(text("DROP TABLE IF EXISTS pg_temp.overlay_regrid"))
        conn.execute(
            text(
                f"""
                CREATE TEMP TABLE overlay_regrid ON COMMIT DROP AS
                SELECT t.id, t.geom, t.village_code, t.{column} AS old_code,
                       {_GRID_EXPR.format(village="t.village_code", pt="t.geom")} AS grid_code
                FROM {kind} t
                WHERE CAST(:town AS text) IS NULL OR t.village_code IN (
                    SELECT code FROM admin_areas WHERE parent_code = :town)
                """
            ),
            {"town": town_code},
        )
        conn.execute(text(_GRID_GAPS_SQL.format(table="overlay_regrid", pt="geom")))
        conn.execute(
            text("DELETE FROM overlay_regrid WHERE grid_code IS NOT DISTINCT FROM old_code")
        )
        n = int(conn.execute(text("SELECT count(*) FROM overlay_regrid")).scalar_one())
        if n:  # no statement at all when nothing moves: the layer version stays
            conn.execute(
                text(
                    f"UPDATE {kind} u SET {column} = r.grid_code, updated_at = now() "
                    "FROM overlay_regrid r WHERE u.id = r.id"
                )
            )
            if kind == "cases":  # placed in a grid for the first time: that is its grid
                conn.execute(
                    text(
                        "UPDATE cases u SET grid_code = r.grid_code FROM overlay_regrid r "
                        "WHERE u.id = r.id AND u.grid_code IS NULL AND r.grid_code IS NOT NULL"
                    )
                )
        changed[kind] = n
    conn.execute(text("DROP TABLE IF EXISTS pg_temp.overlay_regrid"))
    conn.execute(text("DROP TABLE IF EXISTS pg_temp.overlay_village_parts"))
    conn.execute(text("DROP TABLE IF EXISTS pg_temp.overlay_grid_parts"))
    return changed
