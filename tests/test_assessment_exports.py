"""Excel and PDF exports of indicators and round results, opened and read back: cells
(openpyxl), text with Chinese characters (pypdf) and the embedded CJK font."""

from __future__ import annotations

import io
import re
from typing import Any

import openpyxl
import pytest
from pypdf import PdfReader
from sqlalchemy import Engine

from geogrid.access import rls
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.assessment import exports, indicators, rounds, scheme
from tests.assessment_support import G1, G2, JUNE, TODAY, TOWN, township_db
from tests.test_printing import fonts

township = pytest.fixture(scope="module")(township_db)
LEADER = Principal(1, "leader", Role.town_leader, Scope.parse(TOWN))


def _table(engine: Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        rls.apply(conn, LEADER)
        rows = indicators.compute(
            conn, prefix=TOWN[:9], level="grid", period=indicators.period_of(*JUNE), today=TODAY
        )
    return {"period": {"from": JUNE[0], "to": JUNE[1]}, "rows": rows}


def _text(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


def test_indicators_xlsx(township) -> None:  # type: ignore[no-untyped-def]
    book = openpyxl.load_workbook(io.BytesIO(exports.indicators_xlsx(_table(township[0]), "grid")))
    assert book.sheetnames == ["考核指标", "指标说明"]
    ws = book["考核指标"]
    header = [c.value for c in ws[1]]
    assert header[:3] == ["代码", "网格", "户数"] and "有效上报率（%）" in header
    rows = {r[0]: r for r in ws.iter_rows(min_row=2, values_only=True) if r[0] in (G1, G2)}
    col = header.index("有效上报率（%）")
    assert rows[G1][1] == "东村一网格" and rows[G1][2] == 4
    assert rows[G1][col] == 0.75 and ws.cell(2, col + 1).number_format == "0.0%"
    assert rows[G2][header.index("按期结案率（%）")] is None  # null stays empty, not 0
    notes = {r[1]: r[3] for r in book["指标说明"].iter_rows(min_row=2, values_only=True)}
    assert notes["accurate_dispatch_rate"] == "1 − 期内回退次数 ÷ 期内派遣次数"


def test_indicators_pdf(township) -> None:  # type: ignore[no-untyped-def]
    pdf = exports.indicators_pdf(_table(township[0]), "grid", TOWN)
    text = _text(pdf)
    assert "网格化服务管理考核指标" in text and "东村一网格" in text and "有效上报率" in text
    assert "75.0" in text  # 0.75 as a percentage
    used = fonts(pdf)
    assert used and all(used.values()), used
    assert all(re.search(r"Noto.?Sans.?CJK", name) for name in used), used


@pytest.fixture(scope="module")
def ranking(township) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    engine = township[0]
    with engine.begin() as conn:
        rls.apply(conn, LEADER)
        sch = scheme.create_scheme(
            conn, principal=LEADER,
            scheme=scheme.SchemeIn(
                name="网格月度考核", level="grid", area_code=TOWN,
                thresholds={"A": 90, "B": 80, "C": 70, "D": 60},
                items=[scheme.SchemeItem(key="close_rate", weight=70),
                       scheme.SchemeItem(key="spot", kind="spot", weight=30)],
            ),
        )  # fmt: skip
        rnd = rounds.create_round(
            conn, principal=LEADER, body=rounds.RoundIn(scheme_id=sch.id, label="2026-06")
        )
        rounds.publish(conn, principal=LEADER, round_id=rnd["id"])
        return rounds.ranking(conn, principal=LEADER, round_id=rnd["id"])


def test_round_xlsx(ranking) -> None:  # type: ignore[no-untyped-def]
    book = openpyxl.load_workbook(io.BytesIO(exports.round_xlsx(ranking)))
    assert book.sheetnames == ["考核结果", "指标值", "指标说明"]
    ws = book["考核结果"]
    assert [c.value for c in ws[1]][:5] == ["排名", "代码", "名称", "综合得分", "等级"]
    rows = list(ws.iter_rows(min_row=2, max_row=3, values_only=True))
    # G1: close rate 1.0 → 100 (spot check not entered) → A; G2: 0 → E
    assert rows[0][:5] == (1, G1, "东村一网格", 100, "A")
    assert rows[1][:5] == (2, G2, "东村二网格", 0, "E")


def test_round_pdf(ranking) -> None:  # type: ignore[no-untyped-def]
    pdf = exports.round_pdf(ranking)
    text = _text(pdf)
    assert "网格月度考核" in text and "月度考核结果" in text and "东村二网格" in text
    assert "结案率" in text and "抽查" in text
    used = fonts(pdf)
    assert used and all(used.values())
    assert all(re.search(r"Noto.?Sans.?CJK", name) for name in used), used
