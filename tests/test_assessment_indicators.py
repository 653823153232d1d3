"""Every indicator formula on the hand-made township of :mod:`tests.assessment_support`:
the expected values are counted by hand from the events listed there (not by the SQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine

from geogrid.access import rls
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.assessment import indicators
from geogrid.errors import Forbidden, InvalidInput
from tests.assessment_support import G1, G2, JUNE, TODAY, TOWN, V1, V2, township_db

ALL = Principal(0, "admin", Role.sysadmin, Scope("all"))


township = pytest.fixture(scope="module")(township_db)


def _rows(engine: Engine, level: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    with engine.begin() as conn:
        rls.apply(conn, ALL)
        rows = indicators.compute(
            conn, prefix=prefix, level=level, period=indicators.period_of(*JUNE), today=TODAY
        )
    return {r["code"]: r for r in rows}


def test_grid_one(township) -> None:  # type: ignore[no-untyped-def]
    """G1: cases 1, 2, 3 (suspended), 8 (accepted after the period); 4 households."""
    g = _rows(township[0], "grid")[G1]
    assert g["name"] == "东村一网格" and g["households"] == 4
    assert (g["reported"], g["registered"], g["closed"], g["overdue_pending"]) == (4, 3, 2, 1)
    assert g["valid_report_rate"] == 0.75  # 1, 2, 3 registered of 1, 2, 3, 8
    assert g["ontime_accept_rate"] == 0.6667  # 1 and 3 on time, 2 late; 8's is in July
    assert g["accurate_dispatch_rate"] == 0.75  # 1 return of 4 dispatches
    assert g["ontime_dispatch_rate"] == 0.75  # 2's second dispatch after its 17:00 deadline
    assert g["ontime_handle_rate"] == 1.0  # 3 handlings (2 twice, the extension counted)
    assert g["rework_rate"] == 0.3333  # 1 failed check of 3 handlings
    assert g["extension_rate"] == 0.25  # 1 approved extension of 4 dispatches
    assert g["overdue_pending_rate"] == 1.0  # 8 open and overdue; 3 suspended: excluded
    assert g["ontime_close_rate"] == 0.5  # 1 on time; 2 was late twice
    assert g["close_rate"] == 1.0  # 1, 2 closed; 3 suspended: excluded
    assert g["satisfaction_rate"] == 0.5  # satisfied (1), unsatisfied (2)
    assert g["reported_per_1000"] == 1000.0  # 4 ÷ 4 × 1000
    assert g["overdue_per_1000"] == 250.0  # 1 ÷ 4 × 1000
    assert g["visit_coverage"] == 0.25  # household 1 (twice); household 2 in May
    assert g["inspection_completion"] == 0.3333  # on time, late, missed
    assert g["filing_punctuality"] is None  # nothing due in G1


def test_grid_two(township) -> None:  # type: ignore[no-untyped-def]
    """G2: cases 4 (overdue), 5 (rejected), 6 (May, handled late in June); 2 households."""
    g = _rows(township[0], "grid")[G2]
    assert (g["reported"], g["registered"], g["closed"], g["overdue_pending"]) == (2, 1, 0, 2)
    assert g["valid_report_rate"] == 0.5
    assert g["ontime_accept_rate"] == 1.0
    assert g["accurate_dispatch_rate"] == 1.0 and g["ontime_dispatch_rate"] == 1.0
    assert g["ontime_handle_rate"] == 0.0  # 6 handled after its 31 May deadline
    assert g["rework_rate"] == 0.0 and g["extension_rate"] == 0.0
    assert g["overdue_pending_rate"] == 1.0  # 4 and 6
    assert g["ontime_close_rate"] is None  # nothing closed: null, not 0
    assert g["close_rate"] == 0.0  # 4 registered, not closed
    assert g["satisfaction_rate"] is None
    assert g["overdue_per_1000"] == 1000.0
    assert g["visit_coverage"] == 0.0
    assert g["inspection_completion"] is None
    assert g["filing_punctuality"] == 0.5  # filed on time; 25 June due missed


def test_villages_and_town(township) -> None:  # type: ignore[no-untyped-def]
    villages = _rows(township[0], "village")
    v1, v2 = villages[V1], villages[V2]
    assert v1["name"] == "东村" and v1["households"] == 6 and v1["reported"] == 6
    assert v1["valid_report_rate"] == 0.6667  # 4 of 6
    assert v1["ontime_handle_rate"] == 0.75  # 3 of 4 handlings
    assert v1["overdue_pending_rate"] == 1.0  # 8, 4, 6
    assert v1["close_rate"] == 0.6667  # 1, 2 of 1, 2, 4
    assert v1["visit_coverage"] == 0.1667  # 1 of 6
    assert v2["reported"] == 1 and v2["valid_report_rate"] == 1.0
    assert v2["accurate_dispatch_rate"] is None  # no dispatch
    assert v2["overdue_pending_rate"] == 1.0 and v2["visit_coverage"] == 1.0
    town = _rows(township[0], "town")[TOWN]
    assert town["name"] == "测试镇" and town["households"] == 7 and town["reported"] == 7
    assert town["overdue_pending"] == 4  # 8, 4, 6, 7
    assert town["ontime_accept_rate"] == 0.8  # 1, 3, 4, 7 of 1, 2, 3, 4, 7
    assert town["visit_coverage"] == 0.2857  # 2 of 7


def test_staff_by_last_handler(township) -> None:  # type: ignore[no-untyped-def]
    engine, ids = township
    staff = _rows(engine, "staff")
    w1, w2 = staff[str(ids["w1"])], staff[str(ids["w2"])]
    assert w1["name"] == "网格员1" and w1["households"] is None
    assert w1["ontime_handle_rate"] == 1.0  # case 1
    assert w2["ontime_handle_rate"] == 0.6667  # case 2 twice on time, case 6 late
    assert w2["visit_coverage"] is None  # no household count for a person
    assert w1["inspection_completion"] == 0.5  # recorded on time and late; missed: nobody's
    assert w2["filing_punctuality"] == 1.0


def test_area_filter_and_scope(township) -> None:  # type: ignore[no-untyped-def]
    assert set(_rows(township[0], "grid", prefix=G2)) == {G2}
    vl = Principal(9, "vl", Role.village_leader, Scope("village", V1))
    assert indicators.effective_prefix(vl, "grid", None) == V1
    assert indicators.effective_prefix(vl, "grid", G1) == G1
    with pytest.raises(Forbidden):
        indicators.effective_prefix(vl, "town", None)  # wider than the scope
    with pytest.raises(Forbidden):
        indicators.effective_prefix(vl, "grid", V2)  # another village
    with pytest.raises(InvalidInput):
        indicators.effective_prefix(vl, "county", None)


def test_period_guards() -> None:
    with pytest.raises(InvalidInput):
        indicators.period_of(dt.date(2026, 6, 2), dt.date(2026, 6, 1))
    with pytest.raises(InvalidInput):
        indicators.period_of(dt.date(2025, 1, 1), dt.date(2026, 1, 2))
    with pytest.raises(InvalidInput):
        indicators.area_prefix("12345")


def test_registry_is_complete() -> None:
    keys = [d["key"] for d in indicators.definitions()]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(indicators._values({}))
    assert all(d["name"] and d["formula"] for d in indicators.definitions())


def test_readme_renders_the_registry() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- indicators:begin -->\n")[1].split("\n<!-- indicators:end -->")[0]
    assert block == indicators.markdown()
