"""Register readers: each encoding and format, header detection, column mapping, errors."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import openpyxl
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import Point

from geogrid.errors import InvalidInput
from geogrid.ingest.address import parse_addresses, parse_group
from geogrid.ingest.columns import (
    CANONICAL_FIELDS,
    header_key,
    map_columns,
    match_header,
    parse_column_maps,
)
from geogrid.ingest.readers import RegisterFrame, detect_encoding, read_register

HEADER = [
    "序号", "村", "组", "户号", "户主姓名", "联系电话", "家庭人口", "家庭住址", "经度", "纬度",
]  # fmt: skip
ROWS = [
    ["1", "王家湾村", "3", "0010", "王建国", "13800000001", "4", "石门镇王家湾村三组12号",
     "114.51", "30.81"],
    ["2", "王家湾村", "2", "0020", "李秀英", "13800000002", "3", "王家湾村二组李家畈18号",
     "114.52", "30.82"],
    ["3", "东风社区", "7", "0030", "张三", "", "1", "新洲区石门镇东风社区居委会七组",
     "114.53", "30.83"],
]  # fmt: skip
# The frame puts canonical columns in CANONICAL_FIELDS order, whatever the file's order.
CANONICAL = [
    "register_no", "head_name", "phone", "address", "village", "group", "population", "lon",
    "lat", "seq",
]  # fmt: skip


def write_csv(path: Path, encoding: str, *, title: bool = False, sep: str = ",") -> Path:
    lines = []
    if title:
        lines += ["石门镇户籍登记表" + sep * (len(HEADER) - 1), "填报单位：石门镇人民政府"]
    lines += [sep.join(HEADER), *(sep.join(r) for r in ROWS)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def points() -> list[Point]:
    return [Point(float(r[8]), float(r[9])) for r in ROWS]


def gis_frame() -> gpd.GeoDataFrame:
    data = {"户号": [r[3] for r in ROWS], "户主": [r[4] for r in ROWS]}
    data["地址"] = [r[7] for r in ROWS]
    data["人口"] = [int(r[6]) for r in ROWS]
    return gpd.GeoDataFrame(data, geometry=points(), crs="EPSG:4326")


def check_rows(reg: RegisterFrame) -> None:
    frame = reg.frame
    assert frame["register_no"].tolist() == ["0010", "0020", "0030"]  # leading zeros kept
    assert frame["address"].tolist() == [r[7] for r in ROWS]


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("gbk", "gb18030"),
        ("gb18030", "gb18030"),
        ("utf-16", "utf-16"),
    ],
)
def test_csv_encodings(tmp_path: Path, encoding: str, detected: str) -> None:
    path = write_csv(tmp_path / "hh.csv", encoding)
    assert detect_encoding(path) == detected
    reg = read_register(path)
    assert reg.encoding == detected
    assert reg.format == "csv"
    assert reg.header_row == 1
    assert list(reg.frame.columns) == ["source_row", *CANONICAL]
    assert reg.frame["source_row"].tolist() == [2, 3, 4]
    check_rows(reg)
    assert reg.frame["phone"].isna().tolist() == [False, False, True]


def test_csv_title_rows_tabs_and_blank_lines(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "hh.txt", "gbk", title=True, sep="\t")
    text = path.read_bytes().decode("gbk").replace("\r\n3\t", "\r\n\r\n  \t \r\n3\t")
    path.write_bytes(text.encode("gbk"))
    reg = read_register(path)
    assert reg.header_row == 3
    # Blank lines are skipped but still counted, so row numbers match a text editor.
    assert reg.frame["source_row"].tolist() == [4, 5, 8]
    check_rows(reg)


def test_csv_keeps_unmapped_columns_and_originals(tmp_path: Path) -> None:
    path = tmp_path / "hh.csv"
    path.write_text("户号,地址,备注,address\n001,王家湾村3组,空房,x\n", encoding="utf-8")
    reg = read_register(path)
    assert reg.column_mapping == {"户号": "register_no", "地址": "address"}
    assert list(reg.frame.columns) == [
        "source_row",
        "register_no",
        "address",
        "备注",
        "address_original",
    ]
    assert reg.unmapped_columns == ["备注", "address"]
    orig = reg.originals()
    assert list(orig.columns) == ["source_row", "户号", "地址", "备注", "address"]
    assert orig.iloc[0].tolist() == [2, "001", "王家湾村3组", "空房", "x"]


def test_csv_forced_encoding(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "hh.csv", "gbk")
    assert read_register(path, encoding="gbk").encoding == "gbk"
    with pytest.raises(InvalidInput, match="not valid utf-8"):
        read_register(path, encoding="utf-8")


def test_csv_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes("户号,地址\n1,".encode() + b"\xff\xfe\xff\x80\x80\n")
    with pytest.raises(InvalidInput, match=r"bad\.csv: unreadable text encoding") as info:
        read_register(path)
    assert "UTF-8 or GBK" in info.value.message


def test_csv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "noheader.csv"
    path.write_text("name,value\nfoo,1\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="no recognisable header") as info:
        read_register(path)
    message = info.value.message
    assert "noheader.csv" in message
    assert "户号" in message
    assert "'name', 'value'" in message


def test_csv_ragged_row_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("户号,地址\n1,王家湾村3组\n2,王家湾村4组,多余,字段\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"ragged\.csv: cannot read"):
        read_register(path)


def test_csv_header_only_and_duplicate_headers(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("户号,地址,备注,备注\n", encoding="utf-8")
    reg = read_register(path)
    assert len(reg) == 0
    assert list(reg.frame.columns) == ["source_row", "register_no", "address", "备注", "备注.1"]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InvalidInput, match="no recognisable header"):
        read_register(path)


def test_column_map_override(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("门牌地址,户主,姓名\n王家湾村3组12号,王一,王小一\n", encoding="utf-8")
    reg = read_register(path, column_map=parse_column_maps(["门牌地址=address", "姓名=head_name"]))
    assert reg.column_mapping == {"门牌地址": "address", "姓名": "head_name"}
    assert reg.frame["head_name"].tolist() == ["王小一"]
    assert reg.frame["户主"].tolist() == ["王一"]
    with pytest.raises(InvalidInput, match="not in the header"):
        read_register(path, column_map={"门牌地址": "address", "电话号": "phone"})


# ---------------------------------------------------------------------------
# Column mapping
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("户号", "register_no"),
        ("户编号", "register_no"),
        ("Household_ID", "register_no"),
        ("hh_id", "register_no"),
        ("户 主", "head_name"),
        ("手机号", "phone"),
        ("TEL", "phone"),
        ("联系电话（手机）", "phone"),
        ("详细地址", "address"),
        ("Addr", "address"),
        ("村（社区）", "village"),
        ("行政村", "village"),
        ("区划代码", "village_code"),
        ("村民小组", "group"),
        ("组别", "group"),
        ("Members", "population"),
        ("经度(°)", "lon"),
        ("X", "lon"),
        ("lng", "lon"),
        ("y", "lat"),
        ("坐标系", "crs"),
        ("No.", "seq"),
        ("备注", None),
        ("", None),
    ],
)
def test_match_header(header: str, field: str | None) -> None:
    assert match_header(header) == field


def test_map_columns_prefers_specific_alias() -> None:
    assert map_columns(["姓名", "户主姓名", "地址", "住址"]) == {
        "户主姓名": "head_name",
        "住址": "address",
    }
    assert header_key("Ｘ ") == "x"


def test_parse_column_maps_errors() -> None:
    assert parse_column_maps([]) == {}
    assert parse_column_maps(["a=b=address"]) == {"a=b": "address"}
    with pytest.raises(InvalidInput, match="unknown field 'householder'") as info:
        parse_column_maps(["户主=householder"])
    assert all(f in info.value.message for f in CANONICAL_FIELDS)
    with pytest.raises(InvalidInput, match="expected COLUMN=FIELD"):
        parse_column_maps(["户主"])
    with pytest.raises(InvalidInput, match="expected COLUMN=FIELD"):
        parse_column_maps(["=address"])
    with pytest.raises(InvalidInput, match="mapped twice"):
        parse_column_maps(["户主=head_name", "户主=phone"])


# ---------------------------------------------------------------------------
# Excel
# ---------------------------------------------------------------------------


def write_xlsx(path: Path) -> Path:
    wb = openpyxl.Workbook()
    notes = wb.active
    assert notes is not None
    notes.title = "说明"
    notes.append(["本表由石门镇网格办填报"])
    notes.append(["联系人", "王主任"])
    ws = wb.create_sheet("户籍登记")
    ws.append(["石门镇户籍登记表"])
    ws.append([])
    ws.append(HEADER)
    for row in ROWS:
        values: list[object] = list(row)
        values[0] = int(row[0])  # numbers stored as numbers, as Excel users do
        values[6] = float(row[6])
        values[8] = float(row[8])
        ws.append(values)
    ws.append([None] * len(HEADER))  # a formatted but empty row at the end
    other = wb.create_sheet("外出人员")
    other.append(["户号", "地址"])
    other.append(["0099", "李家畈3组"])
    wb.save(path)
    return path


def test_xlsx_header_below_title_rows(tmp_path: Path) -> None:
    reg = read_register(write_xlsx(tmp_path / "hh.xlsx"))
    assert reg.format == "xlsx"
    assert reg.sheet == "户籍登记"  # the first sheet with a recognisable header
    assert reg.header_row == 3
    assert reg.frame["source_row"].tolist() == [4, 5, 6]
    assert list(reg.frame.columns) == ["source_row", *CANONICAL]
    check_rows(reg)
    assert reg.frame["seq"].tolist() == ["1", "2", "3"]  # 1, not 1.0
    assert reg.frame["population"].tolist() == ["4", "3", "1"]
    assert reg.frame["lon"].tolist() == ["114.51", "114.52", "114.53"]
    assert reg.frame["phone"].isna().tolist() == [False, False, True]


def test_xlsx_sheet_choice(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "hh.xlsx")
    by_name = read_register(path, sheet="外出人员")
    assert by_name.frame["register_no"].tolist() == ["0099"]
    assert by_name.frame["source_row"].tolist() == [2]
    assert read_register(path, sheet=2).sheet == "外出人员"
    assert read_register(path, sheet="1").sheet == "户籍登记"
    with pytest.raises(InvalidInput, match=r"no sheet '人口'.*户籍登记"):
        read_register(path, sheet="人口")
    with pytest.raises(InvalidInput, match="no recognisable header"):
        read_register(path, sheet="说明")


def test_xlsx_without_any_header(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["甲", "乙"])
    ws.append(["1", "2"])
    path = tmp_path / "x.xlsx"
    wb.save(path)
    with pytest.raises(InvalidInput, match=r"x\.xlsx.*no recognisable header.*'甲', '乙'"):
        read_register(path)


def test_xlsx_two_row_header(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["石门镇户籍登记表"])
    ws.append(["户号", "户主", "家庭住址", "坐标", None])
    ws.append([None, None, None, "经度", "纬度"])
    ws.merge_cells("D2:E2")
    ws.append(["0010", "王建国", "王家湾村三组12号", 114.51, 30.81])
    path = tmp_path / "two.xlsx"
    wb.save(path)
    reg = read_register(path)
    assert reg.header_row == 2
    assert reg.column_mapping == {
        "户号": "register_no",
        "户主": "head_name",
        "家庭住址": "address",
        "经度": "lon",
        "纬度": "lat",
    }
    assert reg.frame["source_row"].tolist() == [4]
    assert reg.frame[["lon", "lat"]].iloc[0].tolist() == ["114.51", "30.81"]


def test_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_text("not a zip", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"fake\.xlsx"):
        read_register(path)


# ---------------------------------------------------------------------------
# GIS formats
# ---------------------------------------------------------------------------


def test_geopackage_layers(tmp_path: Path) -> None:
    path = tmp_path / "hh.gpkg"
    other = gpd.GeoDataFrame({"名称": ["石门镇"]}, geometry=[Point(114.5, 30.8)], crs=4326)
    pyogrio.write_dataframe(other, path, layer="town")
    pyogrio.write_dataframe(gis_frame(), path, layer="households", append=False)
    reg = read_register(path)
    assert reg.layer == "households"  # the first layer with a recognisable header
    assert reg.format == "gpkg"
    assert isinstance(reg.frame, gpd.GeoDataFrame)
    assert reg.has_geometry
    assert reg.crs == "EPSG:4326"
    assert reg.frame["source_row"].tolist() == [1, 2, 3]
    assert reg.frame["population"].tolist() == ["4", "3", "1"]
    check_rows(reg)
    assert read_register(path, layer=1).layer == "households"
    with pytest.raises(InvalidInput, match="no recognisable header"):
        read_register(path, layer="town")
    with pytest.raises(InvalidInput, match="no layer 'groups'"):
        read_register(path, layer="groups")


def test_shapefile_with_cpg(tmp_path: Path) -> None:
    path = tmp_path / "hh.shp"
    pyogrio.write_dataframe(gis_frame(), path, encoding="UTF-8")
    assert path.with_suffix(".cpg").exists()
    reg = read_register(path)
    assert reg.format == "shp"
    assert reg.encoding is not None
    assert reg.encoding.upper().replace("-", "") == "UTF8"
    check_rows(reg)


def test_shapefile_gbk_cpg(tmp_path: Path) -> None:
    path = tmp_path / "hh.shp"
    pyogrio.write_dataframe(gis_frame(), path, encoding="GBK")
    assert path.with_suffix(".cpg").read_text().strip().upper() == "GBK"
    reg = read_register(path)
    check_rows(reg)


def _strip_encoding_marks(path: Path) -> None:
    path.with_suffix(".cpg").unlink()
    dbf = path.with_suffix(".dbf")
    raw = bytearray(dbf.read_bytes())
    raw[29] = 0  # no language driver id either: nothing says what the encoding is
    dbf.write_bytes(bytes(raw))


def test_shapefile_gbk_without_cpg(tmp_path: Path) -> None:
    path = tmp_path / "hh.shp"
    pyogrio.write_dataframe(gis_frame(), path, encoding="GBK")
    _strip_encoding_marks(path)
    reg = read_register(path)
    assert reg.encoding == "gbk"
    assert reg.column_mapping == {
        "户号": "register_no",
        "户主": "head_name",
        "地址": "address",
        "人口": "population",
    }
    check_rows(reg)
    assert reg.crs == "EPSG:4326"


def test_shapefile_utf8_without_cpg(tmp_path: Path) -> None:
    path = tmp_path / "hh.shp"
    pyogrio.write_dataframe(gis_frame(), path, encoding="UTF-8")
    _strip_encoding_marks(path)
    reg = read_register(path)
    assert reg.encoding == "utf-8"
    check_rows(reg)


def test_geojson(tmp_path: Path) -> None:
    path = tmp_path / "hh.geojson"
    pyogrio.write_dataframe(gis_frame(), path, driver="GeoJSON")
    reg = read_register(path)
    assert reg.format == "geojson"
    assert reg.has_geometry
    assert reg.frame.geometry.iloc[0].equals(points()[0])
    check_rows(reg)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        read_register(tmp_path / "missing.csv")
    path = tmp_path / "hh.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(InvalidInput, match=r"save it as \.xlsx"):
        read_register(path)
    other = tmp_path / "hh.dat"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(InvalidInput, match="unknown register format"):
        read_register(other)


def test_originals_subset_for_rejects(tmp_path: Path) -> None:
    reg = read_register(write_csv(tmp_path / "hh.csv", "gbk"))
    rejects = reg.originals(reg.frame["phone"].isna())
    assert list(rejects.columns) == ["source_row", *HEADER]
    assert rejects["source_row"].tolist() == [4]
    assert rejects["户号"].tolist() == ["0030"]
    assert isinstance(rejects, pd.DataFrame)
    assert "4 rows" not in reg.describe()
    assert "gb18030" in reg.describe()


# ---------------------------------------------------------------------------
# The sample town (geogrid.sample), when it is installed
# ---------------------------------------------------------------------------


def test_sample_town_registers(sample_town) -> None:  # type: ignore[no-untyped-def]
    """Every register format of the sample town reads to the same rows, and the
    addresses parse to the village and group the register's own columns give."""
    paths = [
        sample_town.households_csv,
        sample_town.households_utf8_csv,
        sample_town.households_xlsx,
    ]
    frames = {}
    for path in paths:
        if path is None:
            continue
        reg = read_register(path)
        assert {"register_no", "head_name", "address", "village", "group", "lon", "lat"} <= set(
            reg.column_mapping.values()
        )
        assert reg.frame["register_no"].notna().all()
        frames[path.name] = reg
    assert frames["households.csv"].encoding == "gb18030"
    assert frames["households_utf8.csv"].encoding == "utf-8-sig"
    if "households.xlsx" in frames:
        assert frames["households.xlsx"].sheet == "户籍登记"
    reference = frames["households_utf8.csv"].frame
    assert len(reference) == sample_town.n_households
    for reg in frames.values():
        assert reg.frame["register_no"].tolist() == reference["register_no"].tolist()
        assert reg.frame["address"].tolist() == reference["address"].tolist()
    parsed = parse_addresses(reference["address"])
    assert (parsed["village"] == reference["village"]).all()
    groups = reference["group"].map(parse_group).astype("Int64")
    assert (parsed["group"] == groups).all()
