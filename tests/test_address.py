"""Address parsing: the register's forms, edge cases, properties, bulk path and CLI."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from geogrid.cli import build_app
from geogrid.ingest.address import (
    ADDRESS_FIELDS,
    ParsedAddress,
    clean_address,
    cn_to_int,
    normalise_address,
    parse_address,
    parse_addresses,
    parse_group,
)

P = ParsedAddress

REGISTER_FORMS = [
    ("石门镇王家湾村三组12号", P("石门镇", "王家湾村", None, 3, "12")),
    (
        "湖北省武汉市新洲区石门镇王家湾村第3村民小组045号",
        P("石门镇", "王家湾村", None, 3, "45"),
    ),
    ("王家湾村二组李家畈18号", P(None, "王家湾村", "李家畈", 2, "18")),
    ("王家湾村十二组廿三号", P(None, "王家湾村", None, 12, "23")),
    ("王家湾村３组 ７号", P(None, "王家湾村", None, 3, "7")),
    ("王家湾村3队", P(None, "王家湾村", None, 3, None)),
    ("王家湾村5社李家畈", P(None, "王家湾村", "李家畈", 5, None)),
    ("石门镇  王家湾村，两组、 8号", P("石门镇", "王家湾村", None, 2, "8")),
    ("石门镇王家湾村李家畈自然村4组6号", P("石门镇", "王家湾村", "李家畈", 4, "6")),
    ("新洲区石门镇东风社区居委会七组", P("石门镇", "东风社区", None, 7, None)),
]


@pytest.mark.parametrize(("text", "expected"), REGISTER_FORMS)
def test_register_forms(text: str, expected: ParsedAddress) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # group forms
        ("王家湾村一组", 1),
        ("王家湾村第一组", 1),
        ("王家湾村1组", 1),
        ("王家湾村十组", 10),
        ("王家湾村二十组", 20),
        ("王家湾村二十一组", 21),
        ("王家湾村廿三组", 23),
        ("王家湾村卅组", 30),
        ("王家湾村第3村民小组", 3),
        ("王家湾村3村民小组", 3),
        ("王家湾村3小组", 3),
        ("王家湾村三队", 3),
        ("王家湾村三生产队", 3),
        ("王家湾村4社", 4),
        ("王家湾村（３）组", 3),
        ("王家湾村", None),
    ],
)
def test_group_forms(text: str, expected: int | None) -> None:
    assert parse_address(text).group == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("王家湾村3组一百零五号", "105"),
        ("王家湾村3组12-1号", "12-1"),
        ("王家湾村3组12—1号", "12-1"),
        ("王家湾村3组〇〇7号", "7"),
        ("王家湾村3组 12", "12"),
        ("王家湾村3组第8号", "8"),
        ("王家湾村3组", None),
    ],
)
def test_house_numbers(text: str, expected: str | None) -> None:
    assert parse_address(text).house_number == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", P()),
        ("   ", P()),
        ("，、。", P()),
        (None, P()),
        (float("nan"), P()),
        (pd.NA, P()),
        ("王家湾村", P(None, "王家湾村")),
        ("12号", P(house_number="12")),
        ("廿三号", P(house_number="23")),
        ("一百零五号", P(house_number="105")),
        ("hello world", P()),
        # Chinese numerals inside natural-village names are not groups or house numbers.
        ("王家湾村三里岗5组", P(None, "王家湾村", "三里岗", 5, None)),
        ("王家湾村十里铺12号", P(None, "王家湾村", "十里铺", None, "12")),
        ("王家湾村三号桥5号", P(None, "王家湾村", "三号桥", None, "5")),
        ("王家湾村二组五一湾3号", P(None, "王家湾村", "五一湾", 2, "3")),
        # administrative levels
        ("湖北省黄冈市麻城市石门镇王家湾村", P("石门镇", "王家湾村")),
        ("广西壮族自治区南宁市武鸣区双桥镇平福村3组", P("双桥镇", "平福村", None, 3)),
        ("新洲区石门街道东风社区2组", P("石门街道", "东风社区", None, 2)),
        ("石门乡新村3组", P("石门乡", "新村", None, 3)),
        ("石门镇新镇村2组", P("石门镇", "新镇村", None, 2)),
        ("王家湾村委会3组", P(None, "王家湾村", None, 3)),
        ("东风居委会二组", P(None, "东风社区", None, 2)),
        ("王家湾村村委会3组", P(None, "王家湾村", None, 3)),
        # no village marker: a natural-village-looking name is a natural village
        ("石门镇王家湾3组12号", P("石门镇", None, "王家湾", 3, "12")),
        ("红星3组", P(None, "红星", None, 3)),
    ],
)
def test_edge_cases(text: object, expected: ParsedAddress) -> None:
    assert parse_address(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("二十一", 21),
        ("廿三", 23),
        ("两", 2),
        ("一百零五", 105),
        ("十", 10),
        ("十二", 12),
        ("二十", 20),
        ("卅一", 31),
        ("〇", 0),
        ("零", 0),
        ("二〇三", 203),
        ("三百", 300),
        ("两千零一十", 2010),
        ("３", 3),
        ("１２", 12),
        ("045", 45),
    ],
)
def test_cn_to_int(text: str, value: int) -> None:
    assert cn_to_int(text) == value


@pytest.mark.parametrize("text", ["", "  ", "三组", "abc", "1二"])
def test_cn_to_int_rejects(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by input
        cn_to_int(text)


@pytest.mark.parametrize(
    ("value", "group"),
    [
        ("3", 3),
        (3, 3),
        (3.0, 3),
        ("三组", 3),
        ("第五村民小组", 5),
        ("8队", 8),
        ("2社", 2),
        ("第12组", 12),
        ("二十一", 21),
        ("３", 3),
        ("", None),
        (None, None),
        (float("nan"), None),
        ("王家湾", None),
        ("3组12号", None),
    ],
)
def test_parse_group(value: object, group: int | None) -> None:
    assert parse_group(value) == group


def test_clean_address_keeps_dash_between_digits_only() -> None:
    assert clean_address("王家湾村-3组 12-1号—") == "王家湾村3组12-1号"
    assert clean_address("（王家湾村）·3组") == "王家湾村3组"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("石门镇王家湾村三组12号", "石门镇王家湾村3组12号"),
        ("湖北省武汉市新洲区石门镇王家湾村第3村民小组012号", "石门镇王家湾村3组12号"),
        ("石门镇 王家湾村，第三组，12号", "石门镇王家湾村3组12号"),
        ("石门镇王家湾村李家畈自然村4组6号", "石门镇王家湾村4组李家畈6号"),
        ("王家湾村二组李家畈18号", "王家湾村2组李家畈18号"),
        ("王家湾村3队", "王家湾村3组"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalise(text: str | None, canonical: str) -> None:
    assert normalise_address(text) == canonical


def test_normalise_matches_duplicates() -> None:
    forms = [
        "石门镇王家湾村三组12号",
        "湖北省武汉市新洲区石门镇王家湾村第3村民小组012号",
        "石门镇王家湾村３组 １２号",
        "石门镇  王家湾村，三队、12",
    ]
    assert len({normalise_address(f) for f in forms}) == 1


ADDRESS_ALPHABET = (
    "省市区县旗镇乡村组号队社自然委会居民小生产第街道苏木嘎查湾畈冲台王家李新东风红星石门"
    "一二两三十廿卅百零〇0123456789-—，、 ３（）"
)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_parse_never_raises(text: str) -> None:
    parsed = parse_address(text)
    assert isinstance(parsed, ParsedAddress)
    assert parsed.group is None or isinstance(parsed.group, int)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_normalise_idempotent_on_any_text(text: str) -> None:
    once = normalise_address(text)
    assert normalise_address(once) == once


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=ADDRESS_ALPHABET, max_size=30))
def test_normalise_idempotent_on_address_like_text(text: str) -> None:
    once = normalise_address(text)
    assert normalise_address(once) == once
    assert parse_address(once) == parse_address(normalise_address(once))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=ADDRESS_ALPHABET, max_size=20))))
def test_bulk_path_agrees_with_single(texts: list[str | None]) -> None:
    frame = parse_addresses(pd.Series(texts, dtype=object))
    assert list(frame.columns) == list(ADDRESS_FIELDS)
    for row, text in zip(frame.itertuples(index=False), texts, strict=True):
        got = tuple(
            None if (v is pd.NA or (isinstance(v, float) and math.isnan(v))) else v for v in row
        )
        assert got == tuple(parse_address(text))


def test_parse_addresses_dtypes_and_index() -> None:
    series = pd.Series(
        ["王家湾村3队", "石门镇王家湾村十二组廿三号", None, "王家湾村3队"], index=[10, 11, 12, 13]
    )
    frame = parse_addresses(series)
    assert list(frame.index) == [10, 11, 12, 13]
    assert str(frame["group"].dtype) == "Int64"
    assert frame["group"].tolist() == [3, 12, pd.NA, 3]
    assert frame.loc[11, "house_number"] == "23"
    assert frame["village"].isna().tolist() == [False, False, True, False]
    assert parse_addresses([]).shape == (0, 5)


def test_cli_parse_json() -> None:
    result = CliRunner().invoke(
        build_app(), ["address", "parse", "石门镇王家湾村三组12号", "王家湾村5社李家畈", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [list(d) for d in data] == [list(ADDRESS_FIELDS)] * 2
    assert data[0] == {
        "town": "石门镇",
        "village": "王家湾村",
        "natural_village": None,
        "group": 3,
        "house_number": "12",
    }
    assert data[1]["natural_village"] == "李家畈"


def test_cli_parse_table() -> None:
    result = CliRunner().invoke(build_app(), ["address", "parse", "王家湾村十二组廿三号"])
    assert result.exit_code == 0, result.output
    assert "王家湾村" in result.output
    assert "23" in result.output
