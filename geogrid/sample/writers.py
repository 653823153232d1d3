"""Byte-reproducible writers: GeoPackage, Excel and CSV.

* GeoPackage: GDAL stamps ``gpkg_contents.last_change`` with the current time unless the
  ``OGR_CURRENT_DATE`` configuration option is set; we set it for the duration of a write.
* Excel: openpyxl writes the current time into ``docProps/core.xml`` and into every zip
  entry; we fix the document properties and rewrite the archive with fixed timestamps.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

__all__ = ["FIXED_TIME", "write_csv", "write_gpkg", "write_xlsx"]

#: Timestamp written wherever a file format insists on one.
FIXED_TIME = dt.datetime(2025, 1, 1, 0, 0, 0)


@contextmanager
def _gdal_fixed_date() -> Iterator[None]:
    old = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options(
        {"OGR_CURRENT_DATE": FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    )
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": old})


def write_gpkg(path: Path, layers: Sequence[tuple[str, gpd.GeoDataFrame]]) -> None:
    """Write one or more layers into a fresh GeoPackage, reproducibly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with _gdal_fixed_date():
        for name, gdf in layers:
            pyogrio.write_dataframe(gdf, path, layer=name, driver="GPKG")


def write_csv(path: Path, df: pd.DataFrame, *, encoding: str = "utf-8", crlf: bool = False) -> None:
    """Write a CSV (``encoding`` may be ``gbk`` or ``utf-8-sig``); missing values are empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, encoding=encoding, lineterminator="\r\n" if crlf else "\n")


def write_xlsx(
    path: Path,
    sheets: Sequence[tuple[str, Sequence[str], Sequence[Sequence[object]]]],
    *,
    widths: dict[str, Sequence[float]] | None = None,
) -> None:
    """Write sheets ``(title, header, rows)`` to an .xlsx file with fixed timestamps."""
    from openpyxl import Workbook

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook(write_only=True)
    wb.properties.creator = "geogrid sample generator"
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    for title, header, rows in sheets:
        ws = wb.create_sheet(title)
        for i, w in enumerate((widths or {}).get(title, ())):
            ws.column_dimensions[chr(ord("A") + i)].width = w
        ws.append(list(header))
        for row in rows:
            ws.append(list(row))
    tmp = path.with_suffix(".tmp.xlsx")
    wb.save(tmp)
    _normalise_zip(tmp, path)
    tmp.unlink()


def _normalise_zip(src: Path, dst: Path) -> None:
    """Copy a zip archive with every entry's timestamp and attributes fixed."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                # openpyxl stamps "modified" with the save time, whatever we set
                stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                data = re.sub(
                    rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                    rb"\g<1>" + stamp + rb"\g<2>",
                    data,
                )
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            zout.writestr(fixed, data)
