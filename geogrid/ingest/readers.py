"""Read household registers from the files townships really have.

:func:`read_register` reads CSV (UTF-8, UTF-8 with BOM, GBK/GB18030, UTF-16 — detected),
Excel ``.xlsx`` (sheet by name or index; the header may sit below title rows),
GeoPackage (layer by name or index), Shapefile (``.cpg`` honoured; without one, UTF-8 if
the text is valid UTF-8, else GBK) and GeoJSON, and returns a :class:`RegisterFrame`.

The frame
---------
- ``source_row`` (first column, int): the 1-based row number a user would look up in
  the source. CSV: the line number in a text editor, counting the header line (and
  any title lines above it) and blank lines, so the first data row under a header on
  line 1 is row 2 — which is also the row number Excel shows when it opens the CSV.
  (Strictly it counts records: after a quoted field that spans lines, editor lines run
  ahead of it.) Excel: the worksheet row number as Excel shows it. GeoPackage,
  Shapefile, GeoJSON: the feature's 1-based position in the layer.
- Canonical columns (:data:`geogrid.ingest.columns.CANONICAL_FIELDS`) for the
  recognised headers, then every other column under its original header.
- Values are the source's text, unconverted (``str`` dtype, missing as NaN), so that
  leading zeros of 户号 survive and reject files can show exactly what was read;
  numbers from Excel or GIS attribute tables are written as a spreadsheet shows them
  (``12``, not ``12.0``). Typing and validation are the next stage's job.
- ``geometry`` (a :class:`geopandas.GeoDataFrame`) when the source has geometry.

Cells holding only whitespace count as empty. Rows in which every cell is empty are
dropped (their row numbers are skipped, never reused).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import logging
import math
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from geogrid.errors import InvalidInput
from geogrid.ingest.columns import (
    CANONICAL_FIELDS,
    FIELD_ALIASES,
    header_key,
    map_columns,
    match_header,
)

__all__ = [
    "HEADER_SCAN_ROWS",
    "RegisterFrame",
    "cell_text",
    "detect_encoding",
    "find_header_row",
    "header_names",
    "read_register",
]

log = logging.getLogger(__name__)

#: How many rows from the top are searched for the header row (title rows above it).
HEADER_SCAN_ROWS = 30

Format = Literal["csv", "xlsx", "gpkg", "shp", "geojson"]
_SUFFIX_FORMAT: dict[str, Format] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".gpkg": "gpkg",
    ".shp": "shp",
    ".geojson": "geojson",
    ".json": "geojson",
}
_RESERVED = ("source_row", "geometry")
_REQUIRED_ANY = ("register_no", "address")


@dataclass
class RegisterFrame:
    """A register as read: the frame plus what was detected while reading it.

    Attributes
    ----------
    frame
        ``source_row``, canonical columns, other columns; a GeoDataFrame when the source
        has geometry (see the module docstring).
    path
        The file read.
    format
        ``"csv"``, ``"xlsx"``, ``"gpkg"``, ``"shp"`` or ``"geojson"``.
    encoding
        Detected (or given) text encoding: ``"utf-8"``, ``"utf-8-sig"``, ``"gb18030"``,
        ``"utf-16"`` for CSV; the shapefile's encoding; ``None`` where the format fixes it.
    sheet, layer
        The Excel sheet or GIS layer read.
    header_row
        1-based row of the header (CSV and Excel), ``None`` for GIS formats.
    column_mapping
        ``{original header: canonical field}`` for the recognised columns.
    original_columns
        ``{frame column: original header}`` for every data column of the frame.
    crs
        The geometry's CRS (e.g. ``"EPSG:4326"``) when the source has one.
    """

    frame: pd.DataFrame
    path: Path
    format: Format
    encoding: str | None = None
    sheet: str | None = None
    layer: str | None = None
    header_row: int | None = None
    column_mapping: dict[str, str] = field(default_factory=dict)
    original_columns: dict[str, str] = field(default_factory=dict)
    crs: str | None = None

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def has_geometry(self) -> bool:
        """Whether the frame carries a geometry column."""
        return "geometry" in self.frame.columns

    @property
    def unmapped_columns(self) -> list[str]:
        """Original headers that matched no canonical field."""
        return [orig for orig in self.original_columns.values() if orig not in self.column_mapping]

    def originals(self, rows: Any = None) -> pd.DataFrame:
        """The rows under their original headers, ``source_row`` first (for reject files).

        Parameters
        ----------
        rows
            Optional boolean mask or index labels selecting rows of :attr:`frame`.
        """
        frame = self.frame if rows is None else self.frame.loc[rows]
        columns = ["source_row", *self.original_columns]
        out = pd.DataFrame(frame[columns])
        return out.rename(columns=self.original_columns)

    def describe(self) -> str:
        """One line saying what was read, e.g. for a CLI summary."""
        where = self.sheet or self.layer
        parts = [f"{self.path.name}: {len(self.frame):,} rows", self.format]
        if where is not None:
            parts.append(f"{'sheet' if self.sheet else 'layer'} {where!r}")
        if self.encoding:
            parts.append(self.encoding)
        if self.header_row:
            parts.append(f"header on row {self.header_row}")
        mapped = ", ".join(f"{k}→{v}" for k, v in self.column_mapping.items())
        return "; ".join(parts) + f"; columns {mapped}"


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------

_CHUNK = 1 << 22


def _decodes(path: Path, encoding: str, *, skip: int = 0) -> tuple[bool, int]:
    """Whether the whole file decodes strictly; the failing byte offset if not."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    with path.open("rb") as fh:
        fh.seek(skip)
        while True:
            chunk = fh.read(_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                return False, skip + offset + exc.start
            if not chunk:
                return True, -1
            offset += len(chunk)


def detect_encoding(path: str | Path) -> str:
    """Detect a text file's encoding: UTF-8 (with or without BOM), UTF-16 or GB18030.

    UTF-8 is tried strictly first (the whole file must decode), then GB18030 (a superset
    of GBK and GB2312, which Chinese Excel and WPS write as "ANSI" CSV).

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    str
        ``"utf-8-sig"``, ``"utf-8"``, ``"utf-16"`` or ``"gb18030"``.

    Raises
    ------
    geogrid.errors.InvalidInput
        If the file is in none of these encodings.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> _ = path.write_bytes("户号,地址".encode("gbk"))
    >>> detect_encoding(path)
    'gb18030'
    >>> _ = path.write_bytes("户号,地址".encode("utf-8-sig"))
    >>> detect_encoding(path)
    'utf-8-sig'
    """
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        ok, bad = _decodes(path, "utf-8", skip=3)
        if ok:
            return "utf-8-sig"
        raise InvalidInput(
            f"{path}: starts with a UTF-8 byte-order mark but byte {bad} is not valid UTF-8; "
            "re-save the file as UTF-8 or GBK",
            detail={"path": str(path), "offset": bad},
        )
    ok, bad_utf8 = _decodes(path, "utf-8")
    if ok:
        return "utf-8"
    ok, bad = _decodes(path, "gb18030")
    if ok:
        return "gb18030"
    raise InvalidInput(
        f"{path}: unreadable text encoding: expected UTF-8 or GBK/GB18030, but byte "
        f"{bad_utf8} is not UTF-8 and byte {bad} is not GB18030; re-save the file as "
        "UTF-8 CSV or .xlsx",
        detail={"path": str(path), "utf8_offset": bad_utf8, "gb18030_offset": bad},
    )


def _check_encoding(path: Path, encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InvalidInput(f"unknown encoding {encoding!r}", detail={"path": str(path)}) from None
    ok, bad = _decodes(path, encoding)
    if not ok:
        raise InvalidInput(
            f"{path}: byte {bad} is not valid {encoding}; omit the encoding to detect it",
            detail={"path": str(path), "offset": bad, "encoding": encoding},
        )
    return encoding


# ---------------------------------------------------------------------------
# Header detection and frame assembly
# ---------------------------------------------------------------------------


def cell_text(value: Any) -> str | None:
    """A cell as a spreadsheet shows it: ``12`` not ``12.0``; ``None`` when empty."""
    if value is None:
        return None
    if isinstance(value, str):
        return None if not value or value.isspace() else value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def header_names(cells: Sequence[Any]) -> list[str]:
    """Header texts; blanks become ``column_N``, duplicates get ``.1``, ``.2``…"""
    names: list[str] = []
    seen: dict[str, int] = {}
    for j, cell in enumerate(cells):
        text = cell_text(cell)
        name = text.strip() if text else f"column_{j + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        names.append(name)
    return names


def _recognised(cells: Sequence[Any], overrides: Mapping[str, str]) -> set[str]:
    fields: set[str] = set()
    keys = {header_key(column): field for column, field in overrides.items()}
    for cell in cells:
        text = cell_text(cell)
        if text is None:
            continue
        if header_key(text) in keys:
            fields.add(keys[header_key(text)])
        else:
            hit = match_header(text)
            if hit is not None:
                fields.add(hit)
    return fields


def find_header_row(
    rows: Sequence[Sequence[Any]], is_header: Callable[[Sequence[Any]], bool]
) -> int | None:
    """Index of the first of the top :data:`HEADER_SCAN_ROWS` rows that ``is_header``
    accepts (a register's or an overlay's header under title rows), ``None`` if none.

    >>> find_header_row([["户籍登记表"], [], ["户号", "地址"]], lambda r: "户号" in r)
    2
    """
    for i, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        if is_header(row):
            return i
    return None


def _find_header(rows: Sequence[Sequence[Any]], overrides: Mapping[str, str]) -> int | None:
    """Index of the first row that names a register-number or an address column."""
    return find_header_row(
        rows, lambda row: bool(_recognised(row, overrides).intersection(_REQUIRED_ANY))
    )


def _expected() -> str:
    reg = "/".join(FIELD_ALIASES["register_no"][:3])
    addr = "/".join(FIELD_ALIASES["address"][:4])
    return f"a household-number column ({reg}…) or an address column ({addr}…)"


def _no_header_error(path: Path, rows: Sequence[Sequence[Any]], where: str = "") -> InvalidInput:
    first = next((r for r in rows if any(cell_text(c) for c in r)), None)
    found = ", ".join(repr(t) for t in (cell_text(c) for c in first or ()) if t) or "nothing"
    scope = f" {where}" if where else ""
    return InvalidInput(
        f"{path}{scope}: no recognisable header in the first {HEADER_SCAN_ROWS} rows: expected "
        f"{_expected()}; first non-empty row has {found}. Name the columns with "
        "--map COLUMN=FIELD (e.g. --map 门牌地址=address)",
        detail={"path": str(path), "found": found},
    )


def _finish(
    frame: pd.DataFrame,
    source_row: np.ndarray,
    *,
    path: Path,
    overrides: Mapping[str, str],
    where: str = "",
) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
    """Drop empty rows, rename to canonical fields, put ``source_row`` first."""
    headers = [str(c) for c in frame.columns if c != "geometry"]
    mapping = map_columns(headers, overrides, source=f"{path}{' ' + where if where else ''}")
    if not set(mapping.values()).intersection(_REQUIRED_ANY):
        raise InvalidInput(
            f"{path}{' ' + where if where else ''}: no recognisable header: expected "
            f"{_expected()}; found {', '.join(map(repr, headers)) or 'no columns'}. "
            "Name the columns with --map COLUMN=FIELD (e.g. --map 门牌地址=address)",
            detail={"path": str(path), "found": headers},
        )
    data_cols = [c for c in frame.columns if c != "geometry"]
    if len(frame) and data_cols:
        empty = np.array(frame[data_cols[0]].isna(), dtype=bool)
        for column in data_cols[1:]:  # usually stops at once: few rows are blank
            if not empty.any():
                break
            empty &= frame[column].isna().to_numpy()
        if empty.any():
            frame = frame.loc[~empty]
            source_row = source_row[~empty]
    rename: dict[str, str] = {}
    taken = set(mapping.values()) | set(_RESERVED)
    for header in headers:
        if header in mapping:
            rename[header] = mapping[header]
        elif header in taken or header in CANONICAL_FIELDS:
            new = f"{header}_original"
            while new in taken:
                new += "_"
            rename[header] = new
            taken.add(new)
    frame = frame.rename(columns=rename)
    original_columns = {rename.get(h, h): h for h in headers}
    canonical = [f for f in CANONICAL_FIELDS if f in mapping.values()]
    others = [rename.get(h, h) for h in headers if h not in mapping]
    order = [*canonical, *others]
    if "geometry" in frame.columns:
        order.append("geometry")
    frame = frame[order]
    frame.insert(0, "source_row", np.asarray(source_row, dtype=np.int64))
    frame.index = pd.RangeIndex(len(frame))
    return frame, mapping, original_columns


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def _sniff_delimiter(lines: Sequence[str]) -> str:
    best, best_count = ",", 0
    for delim in (",", "\t", ";", "|"):
        count = sum(line.count(delim) for line in lines)
        if count > best_count:
            best, best_count = delim, count
    return best


def _head_lines(path: Path, encoding: str, n: int) -> list[str]:
    lines: list[str] = []
    with path.open("r", encoding=encoding, newline="") as fh:
        for line in fh:
            lines.append(line)
            if len(lines) >= n:
                break
    return lines


def _read_csv(
    path: Path, encoding: str | None, overrides: Mapping[str, str]
) -> tuple[pd.DataFrame, str, int, dict[str, str], dict[str, str]]:
    enc = _check_encoding(path, encoding) if encoding else detect_encoding(path)
    head = _head_lines(path, enc, HEADER_SCAN_ROWS)
    delim = _sniff_delimiter(head)
    rows = list(csv.reader(io.StringIO("".join(head)), delimiter=delim))
    header_idx = _find_header(rows, overrides)
    if header_idx is None:
        raise _no_header_error(path, rows)
    # Lines above the header (title lines) are skipped; the header's line number is
    # counted on the raw text so that quoted newlines in titles do not shift it.
    header_line = _line_index(head, delim, header_idx) + 1
    try:
        frame = pd.read_csv(
            path,
            sep=delim,
            encoding=enc,
            skiprows=header_line - 1,
            header=0,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,  # keep blank lines so that row numbers stay true
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(
            f"{path}: cannot read as {enc} CSV: {exc}", detail={"path": str(path)}
        ) from None
    frame.columns = header_names(list(frame.columns))
    for column in frame.columns:  # whitespace-only cells are empty, as in Excel
        blank = frame[column].str.isspace().to_numpy(dtype=bool, na_value=False)
        if blank.any():
            frame.loc[blank, column] = np.nan
    source_row = np.arange(header_line + 1, header_line + 1 + len(frame), dtype=np.int64)
    frame, mapping, originals = _finish(frame, source_row, path=path, overrides=overrides)
    return frame, enc, header_line, mapping, originals


def _line_index(head: Sequence[str], delim: str, row_idx: int) -> int:
    """Number of physical lines that hold the first ``row_idx`` CSV records."""
    reader = csv.reader(io.StringIO("".join(head)), delimiter=delim)
    lines_used = 0
    for _ in range(row_idx):
        next(reader)
        lines_used = reader.line_num
    return lines_used


# ---------------------------------------------------------------------------
# Excel
# ---------------------------------------------------------------------------


def _read_xlsx(
    path: Path, sheet: str | int | None, overrides: Mapping[str, str]
) -> tuple[pd.DataFrame, str, int, dict[str, str], dict[str, str]]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise InvalidInput(f"{path}: not a readable .xlsx workbook: {exc}") from None
    try:
        names = list(wb.sheetnames)
        if sheet is None:
            candidates = names
        elif isinstance(sheet, int) or (isinstance(sheet, str) and sheet.isdigit()):
            index = int(sheet)
            if sheet not in names and not 0 <= index < len(names):
                raise InvalidInput(
                    f"{path}: no sheet {sheet!r}; sheets are {', '.join(map(repr, names))} "
                    "(index from 0)",
                    detail={"sheets": names},
                )
            candidates = [sheet if isinstance(sheet, str) and sheet in names else names[index]]
        elif sheet in names:
            candidates = [sheet]
        else:
            raise InvalidInput(
                f"{path}: no sheet {sheet!r}; sheets are {', '.join(map(repr, names))}",
                detail={"sheets": names},
            )
        first_rows: list[list[Any]] = []
        for name in candidates:
            ws = wb[name]
            rows_iter: Iterator[tuple[Any, ...]] = ws.iter_rows(min_row=1, values_only=True)
            top = [list(r) for _, r in zip(range(HEADER_SCAN_ROWS), rows_iter, strict=False)]
            header_idx = _find_header(top, overrides)
            if header_idx is None:
                first_rows = first_rows or top
                continue
            header_cells = top[header_idx]
            header_rows = 1
            below = top[header_idx + 1] if header_idx + 1 < len(top) else None
            merged = _merge_subheader(header_cells, below, overrides)
            if merged is not None:  # a two-row header: 坐标 merged over 经度 | 纬度
                header_cells, header_rows = merged, 2
            header = header_names(header_cells)
            width = len(header)
            data = [_pad(r, width) for r in top[header_idx + header_rows :]]
            data.extend(_pad(r, width) for r in rows_iter)
            # Trailing columns with no header and no data are formatting artefacts.
            while (
                width
                and header[width - 1].startswith("column_")
                and all(r[width - 1] is None for r in data)
            ):
                width -= 1
            header = header[:width]
            cells = [[cell_text(v) for v in r[:width]] for r in data]
            frame = pd.DataFrame(cells, columns=header, dtype=object).astype("str")
            start = header_idx + header_rows + 1
            source_row = np.arange(start, start + len(frame), dtype=np.int64)
            where = f"sheet {name!r}"
            frame, mapping, originals = _finish(
                frame, source_row, path=path, overrides=overrides, where=where
            )
            return frame, name, header_idx + 1, mapping, originals
        where = f"sheet {candidates[0]!r}" if len(candidates) == 1 else "(no sheet)"
        raise _no_header_error(path, first_rows, where)
    finally:
        wb.close()


def _merge_subheader(
    header: Sequence[Any], below: Sequence[Any] | None, overrides: Mapping[str, str]
) -> list[Any] | None:
    """Combine a header with the row below when that row is a sub-header.

    Township workbooks often merge a group title over several columns (``坐标`` over
    ``经度`` and ``纬度``). The row below is a sub-header when every filled cell in it
    is a recognisable header; its cells then replace the ones above them.
    """
    if below is None:
        return None
    texts = [cell_text(c) for c in below]
    filled = [t for t in texts if t is not None]
    if not filled:
        return None
    keys = {header_key(column) for column in overrides}
    if any(match_header(t) is None and header_key(t) not in keys for t in filled):
        return None
    width = max(len(header), len(texts))
    top = _pad(header, width)
    return [texts[j] if j < len(texts) and texts[j] is not None else top[j] for j in range(width)]


def _pad(row: Sequence[Any], width: int) -> list[Any]:
    row = list(row[:width])
    if len(row) < width:
        row.extend([None] * (width - len(row)))
    return row


# ---------------------------------------------------------------------------
# GIS formats
# ---------------------------------------------------------------------------


def _sidecar(path: Path, suffix: str) -> Path | None:
    for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
        if candidate.exists():
            return candidate
    return None


def _shapefile_encoding(path: Path) -> tuple[str | None, str]:
    """(encoding to pass to GDAL, encoding to report) for a shapefile."""
    cpg = _sidecar(path, ".cpg")
    if cpg is not None:
        declared = cpg.read_text(encoding="ascii", errors="replace").strip()
        return None, declared or "cpg"
    dbf = _sidecar(path, ".dbf")
    if dbf is None:
        return None, "utf-8"
    with dbf.open("rb") as fh:
        head = fh.read(32)
        header_len = int.from_bytes(head[8:10], "little") if len(head) >= 10 else 32
        descriptors = fh.read(max(header_len - 32, 0))
    # Field names (11 bytes at the start of each 32-byte descriptor) are in the same
    # encoding as the records, so both must be valid UTF-8.
    names = b""
    for i in range(0, len(descriptors) - 31, 32):
        if descriptors[i] == 0x0D:  # end of the field descriptors
            break
        names += descriptors[i : i + 11].split(b"\0", 1)[0]
    try:
        names.decode("utf-8")
    except UnicodeDecodeError:
        return "GBK", "gbk"
    ok, _ = _decodes(dbf, "utf-8", skip=header_len)
    return ("UTF-8", "utf-8") if ok else ("GBK", "gbk")


def _attribute_text(col: pd.Series) -> pd.Series:
    if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
        values = [cell_text(v) for v in col.tolist()]
    elif pd.api.types.is_float_dtype(col.dtype):
        values = [cell_text(float(v)) for v in col.tolist()]
    elif pd.api.types.is_bool_dtype(col.dtype):
        values = [cell_text(bool(v)) for v in col.tolist()]
    else:
        values = [None if pd.isna(v) else cell_text(v) for v in col.tolist()]
    return pd.Series(values, index=col.index, dtype="str")


def _read_gis(
    path: Path,
    fmt: Format,
    layer: str | int | None,
    overrides: Mapping[str, str],
) -> tuple[pd.DataFrame, str, str | None, dict[str, str], dict[str, str], str | None]:
    import pyogrio

    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise InvalidInput(f"{path}: not a readable {fmt} file: {exc}") from None
    if not layers:
        raise InvalidInput(f"{path}: the file has no layers")
    if layer is None:
        recognisable = (
            name
            for name in layers
            if _recognised(
                list(pyogrio.read_info(path, layer=name)["fields"]), overrides
            ).intersection(_REQUIRED_ANY)
        )
        chosen = next(recognisable, layers[0])
    elif isinstance(layer, int) or (layer not in layers and str(layer).isdigit()):
        index = int(layer)
        if not 0 <= index < len(layers):
            raise InvalidInput(f"{path}: no layer {layer!r}; layers are {layers} (index from 0)")
        chosen = layers[index]
    elif layer in layers:
        chosen = layer
    else:
        raise InvalidInput(f"{path}: no layer {layer!r}; layers are {layers}")
    gdal_encoding, reported = _shapefile_encoding(path) if fmt == "shp" else (None, None)
    try:
        frame = pyogrio.read_dataframe(path, layer=chosen, encoding=gdal_encoding)
    except Exception as exc:
        raise InvalidInput(f"{path}: cannot read layer {chosen!r}: {exc}") from None
    frame.columns = [str(c) for c in frame.columns]
    for column in frame.columns:
        if column != "geometry":
            frame[column] = _attribute_text(frame[column])
    crs = None
    if "geometry" in frame.columns and getattr(frame, "crs", None) is not None:
        auth = frame.crs.to_authority()
        crs = f"{auth[0]}:{auth[1]}" if auth else frame.crs.to_string()
    source_row = np.arange(1, len(frame) + 1, dtype=np.int64)
    where = f"layer {chosen!r}"
    out, mapping, originals = _finish(
        frame, source_row, path=path, overrides=overrides, where=where
    )
    if "geometry" in out.columns:
        import geopandas as gpd

        out = gpd.GeoDataFrame(out, geometry="geometry", crs=frame.crs)
    return out, chosen, reported, mapping, originals, crs


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def read_register(
    path: str | Path,
    *,
    sheet: str | int | None = None,
    encoding: str | None = None,
    column_map: Mapping[str, str] | None = None,
    layer: str | int | None = None,
) -> RegisterFrame:
    """Read a household register into a frame with canonical column names.

    Parameters
    ----------
    path
        ``.csv``/``.txt``/``.tsv``, ``.xlsx``, ``.gpkg``, ``.shp``, ``.geojson``/``.json``.
    sheet
        Excel sheet by name or 0-based index. Default: the first sheet with a
        recognisable header. For GeoPackage it is accepted as the layer.
    encoding
        Force a text encoding for CSV (checked strictly) instead of detecting it.
    column_map
        ``{original header: canonical field}`` overrides, e.g. from
        :func:`geogrid.ingest.columns.parse_column_maps`.
    layer
        GeoPackage/GeoJSON layer by name or 0-based index. Default: the first layer with
        a recognisable header.

    Returns
    -------
    RegisterFrame
        The frame (see the module docstring for ``source_row`` and the columns) and
        the detected encoding, sheet/layer, header row and column mapping.

    Raises
    ------
    geogrid.errors.InvalidInput
        Unknown format, unreadable encoding, no recognisable header (no register-number
        and no address column), a missing sheet or layer, or a ``column_map`` naming a
        column that is not there. The message names the file and what was expected.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp()) / "hh.csv"
    >>> _ = tmp.write_text("户号,户主,地址\\n0001,王一,王家湾村3组12号\\n", encoding="gbk")
    >>> reg = read_register(tmp)
    >>> reg.encoding, list(reg.frame.columns), reg.frame["register_no"].tolist()
    ('gb18030', ['source_row', 'register_no', 'head_name', 'address'], ['0001'])
    >>> int(reg.frame["source_row"][0])
    2
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInput(f"{p}: no such file", detail={"path": str(p)})
    fmt = _SUFFIX_FORMAT.get(p.suffix.lower())
    if fmt is None:
        if p.suffix.lower() == ".xls":
            raise InvalidInput(f"{p}: old .xls workbooks are not read; save it as .xlsx")
        known = ", ".join(sorted(_SUFFIX_FORMAT))
        raise InvalidInput(f"{p}: unknown register format {p.suffix!r}; expected one of {known}")
    overrides = dict(column_map or {})
    if fmt == "csv":
        frame, enc, header_row, mapping, originals = _read_csv(p, encoding, overrides)
        log.info("read %s: %d rows, encoding %s", p, len(frame), enc)
        return RegisterFrame(
            frame,
            p,
            fmt,
            encoding=enc,
            header_row=header_row,
            column_mapping=mapping,
            original_columns=originals,
        )
    if fmt == "xlsx":
        frame, name, header_row, mapping, originals = _read_xlsx(p, sheet, overrides)
        return RegisterFrame(
            frame,
            p,
            fmt,
            sheet=name,
            header_row=header_row,
            column_mapping=mapping,
            original_columns=originals,
        )
    frame, chosen, gis_enc, mapping, originals, crs = _read_gis(
        p, fmt, layer if layer is not None else sheet, overrides
    )
    return RegisterFrame(
        frame,
        p,
        fmt,
        encoding=gis_enc,
        layer=chosen,
        column_mapping=mapping,
        original_columns=originals,
        crs=crs,
    )
