"""ID numbers (GB 11643): one input per rule that must be rejected, and the valid forms."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from geogrid.errors import InvalidInput
from geogrid.people.idcard import check_character, id_problem, make_id, parse_id

TODAY = dt.date(2026, 6, 30)
VALID = "11010519491231002X"  # the standard's own example


def _with_check(first17: str) -> str:
    return first17 + check_character(first17)


#: (input, the rule it breaks) — one per rule.
ZOO = [
    (None, "missing"),
    ("", "missing"),
    ("   ", "missing"),
    ("110105491231002", "15-digit"),
    ("11010519491231002", "17 characters"),
    ("11010519491231002XX", "19 characters"),
    ("1101051949123100A2", "only digits"),
    ("11010519491231002Y", "last character"),
    ("１１０１０５１９４９１２３１００２Ｙ", "last character"),  # full width, normalised first
    ("١١٠١٠٥١٩٤٩١٢٣١٠٠٢٣", "only digits"),  # Arabic-Indic digits are digits, but not ASCII
    (_with_check("99010519491231002"), "province"),
    (_with_check("11010519490230002"), "not a real date"),  # 30 February
    (_with_check("11010519491301002"), "not a real date"),  # month 13
    (_with_check("11010518991231002"), "before 1900"),
    (_with_check("11010520300101002"), "in the future"),
    ("110105194912310021", "check character"),
]


@pytest.mark.parametrize(("value", "rule"), ZOO)
def test_rejected_with_its_reason(value: object, rule: str) -> None:
    problem = id_problem(value, today=TODAY)
    assert problem is not None and problem.startswith("bad ID number: ")
    assert rule in problem
    with pytest.raises(InvalidInput, match="bad ID number"):
        parse_id(value, today=TODAY)


@pytest.mark.parametrize(("value", "_rule"), ZOO[3:])
def test_reason_never_repeats_the_number(value: str, _rule: str) -> None:
    problem = id_problem(value, today=TODAY) or ""
    digits = "".join(c for c in value if c.isdigit())
    assert digits[:6] not in problem and digits[6:14] not in problem


def test_valid_forms() -> None:
    for form in (VALID, VALID.lower(), f" {VALID} ", "１１０１０５１９４９１２３１００２Ｘ"):
        card = parse_id(form, today=TODAY)
        assert card.number == VALID
        assert card.birth_date == dt.date(1949, 12, 31)
        assert card.sex == "女" and card.region == "110105" and card.tail == "002X"


def test_leap_day_and_today_are_real_dates() -> None:
    assert id_problem(_with_check("42011719800229001"), today=TODAY) is None
    assert id_problem(_with_check(f"420117{TODAY:%Y%m%d}001"), today=TODAY) is None


def test_synthetic_numbers_are_valid_and_match_sex() -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        born = dt.date(1930, 1, 1) + dt.timedelta(days=int(rng.integers(0, 34000)))
        sex = "男" if rng.random() < 0.5 else "女"
        number = make_id("420117", born, int(rng.integers(0, 1000)), sex)
        card = parse_id(number, today=TODAY)
        assert (card.birth_date, card.sex, card.region) == (born, sex, "420117")


def test_make_id_refuses_a_bad_region() -> None:
    with pytest.raises(InvalidInput):
        make_id("4201", dt.date(2000, 1, 1), 1, "男")
