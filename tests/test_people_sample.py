"""The sample town's synthetic people: valid, consistent, a few percent special."""

from __future__ import annotations

import pandas as pd

from geogrid.people.idcard import id_problem, parse_id
from geogrid.people.load import normalize_category


def test_members_match_the_register(sample_town) -> None:  # type: ignore[no-untyped-def]
    reg = pd.read_csv(sample_town.households_utf8_csv, dtype=str, keep_default_na=False)
    members = pd.read_csv(sample_town.members, dtype=str, keep_default_na=False)
    assert len(members) == sample_town.n_members == reg["家庭人口"].astype(int).sum()
    sizes = members.groupby(["村", "户号"]).size()
    expected = reg.set_index(["村", "户号"])["家庭人口"].astype(int)
    assert sizes.sort_index().equals(expected.sort_index())
    heads = members[members["与户主关系"] == "户主"].set_index(["村", "户号"])
    assert len(heads) == len(reg)
    assert (heads["姓名"] == reg.set_index(["村", "户号"])["户主姓名"].loc[heads.index]).all()
    assert members["公民身份号码"].is_unique


def test_id_numbers_are_valid_and_agree(sample_town) -> None:  # type: ignore[no-untyped-def]
    members = pd.read_csv(sample_town.members, dtype=str, keep_default_na=False)
    for number, sex, born in zip(
        members["公民身份号码"], members["性别"], members["出生日期"], strict=True
    ):
        assert id_problem(number) is None
        card = parse_id(number)
        assert (card.sex, card.birth_date.isoformat()) == (sex, born)
        assert card.region == sample_town.county_code


def test_special_population_is_a_few_percent(sample_town) -> None:  # type: ignore[no-untyped-def]
    members = pd.read_csv(sample_town.members, dtype=str, keep_default_na=False)
    special = pd.read_csv(sample_town.special, dtype=str, keep_default_na=False)
    assert len(special) == sample_town.n_special
    assert 0.01 * len(members) < len(special) < 0.05 * len(members)
    assert special["公民身份号码"].isin(members["公民身份号码"]).all()
    assert special["人员类别"].map(normalize_category).notna().all()
    assert set(special["风险等级"]) <= {"低", "中", "高"}
