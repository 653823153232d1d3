"""Schemes, rounds and grades on the hand-made township: composite scores worked out by
hand, grade thresholds at their edges, a published round frozen against later events,
the ranking's change since the previous round, and one test per guard."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from geogrid.access import rls
from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.assessment import rounds, scheme
from geogrid.errors import Conflict, Forbidden, InvalidInput
from tests.assessment_support import G1, G2, TOWN, add_case, lt, township_db

township = pytest.fixture(scope="module")(township_db)
LEADER = Principal(1, "leader", Role.town_leader, Scope.parse(TOWN))
ADMIN = Principal(2, "admin", Role.sysadmin, Scope("all"))
THRESHOLDS = {"A": 90, "B": 80, "C": 70, "D": 60}
ITEMS = [
    {"key": "close_rate", "weight": 30},
    {"key": "satisfaction_rate", "weight": 20},
    {"key": "rework_rate", "weight": 20},
    {"key": "spot_check", "kind": "spot", "weight": 30},
]


def _scheme(**over: Any) -> scheme.SchemeIn:
    data = {"name": "网格月度考核", "level": "grid", "area_code": TOWN, "thresholds": THRESHOLDS,
            "items": ITEMS, **over}  # fmt: skip
    return scheme.SchemeIn.model_validate(data)


def _run(engine: Engine, fn: Any, who: Principal = LEADER, **kw: Any) -> Any:
    with engine.begin() as conn:
        rls.apply(conn, who)
        return fn(conn, principal=who, **kw)


@pytest.fixture(scope="module")
def published(township) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """May and June rounds of one scheme, a spot-check score for G1 in June; both published."""
    engine = township[0]
    sch = _run(engine, scheme.create_scheme, scheme=_scheme())
    may = _run(engine, rounds.create_round, body=rounds.RoundIn(scheme_id=sch.id, label="2026-05"))
    _run(engine, rounds.publish, round_id=may["id"])
    june = _run(engine, rounds.create_round, body=rounds.RoundIn(scheme_id=sch.id, label="2026-06"))
    score = rounds.ManualScoreIn(item_key="spot_check", target_code=G1, score=80,
                                 checker="张检查", note="台账齐全")  # fmt: skip
    _run(engine, rounds.set_manual_score, round_id=june["id"], body=score)
    preview = _run(engine, rounds.results, round_id=june["id"])
    _run(engine, rounds.publish, round_id=june["id"])
    return {"scheme": sch, "may": may, "june": june, "preview": preview}


def test_composite_grade_and_rank(township, published) -> None:  # type: ignore[no-untyped-def]
    out = _run(township[0], rounds.results, round_id=published["june"]["id"])
    assert out["round"]["status"] == "published" and out["round"]["kind"] == "monthly"
    res = {r["target_code"]: r for r in out["results"]}
    g1, g2 = res[G1], res[G2]
    # G1: close 1.0 → 100, satisfaction 0.5 → 50, rework 0.3333 → 66.67, spot check 80
    assert g1["item_scores"] == {"close_rate": 100.0, "satisfaction_rate": 50.0,
                                 "rework_rate": 66.67, "spot_check": 80.0}  # fmt: skip
    assert g1["score"] == 77.33  # (30·100 + 20·50 + 20·66.67 + 30·80) ÷ 100
    assert (g1["grade"], g1["rank"]) == ("C", 1)
    # G2: close 0 → 0, rework 0 → 100; no satisfaction, no spot check: weights 30 + 20
    assert g2["score"] == 40.0 and (g2["grade"], g2["rank"]) == ("E", 2)
    assert g1["values"]["valid_report_rate"] == 0.75
    # the preview before publishing showed the same
    prev = {r["target_code"]: r for r in published["preview"]["results"]}
    assert prev[G1]["score"] == 77.33 and prev[G2]["grade"] == "E"


def test_ranking_change_since_previous_round(township, published) -> None:  # type: ignore[no-untyped-def]
    out = _run(township[0], rounds.ranking, round_id=published["june"]["id"])
    assert out["previous"]["label"] == "2026-05"
    res = {r["target_code"]: r for r in out["results"]}
    # May: G2 (case 6 registered, not closed: close 0 → score 0) ranked 1; G1 no data, no rank
    assert (res[G2]["previous_rank"], res[G2]["change"]) == (1, -1)
    assert res[G2]["previous_grade"] == "E"
    assert (res[G1]["previous_rank"], res[G1]["change"]) == (None, None)


def test_published_round_is_frozen(township, published) -> None:  # type: ignore[no-untyped-def]
    engine = township[0]
    june = published["june"]["id"]
    before = _run(engine, rounds.results, round_id=june)
    with engine.begin() as conn:  # a late case closed in June, on time, satisfied, in G2
        add_case(conn, "LATE", G2, TOWN[:9] + "201", [
            ("report", "reported", lt(25, 9), lt(25, 11), None),
            ("accept", "accepted", lt(25, 10), lt(26, 10), None),
            ("register", "registered", lt(25, 11), lt(25, 13), None),
            ("dispatch", "dispatched", lt(25, 12), lt(28, 12), None),
            ("start", "in_progress", lt(25, 13), None, None),
            ("handle", "handled", lt(25, 14), lt(26, 14), None),
            ("check_pass", "checked", lt(25, 15), lt(26, 15), None),
            ("evaluate", "evaluated", lt(25, 16), lt(26, 16), None, "satisfied"),
            ("close", "closed", lt(25, 17), "clear", None),
        ])  # fmt: skip
    # the scheme changes too
    sch = published["scheme"]
    _run(engine, scheme.update_scheme, scheme_id=sch.id, version=sch.version,
         scheme=_scheme(thresholds={"A": 50, "B": 40, "C": 30, "D": 20}))  # fmt: skip
    after = _run(engine, rounds.results, round_id=june)
    assert after["results"] == before["results"]
    assert after["scheme"]["thresholds"] == THRESHOLDS
    # a draft of another scheme for the same month sees the new case
    other = _run(engine, scheme.create_scheme, scheme=_scheme(name="对照"))
    draft = _run(engine, rounds.create_round,
                 body=rounds.RoundIn(scheme_id=other.id, label="2026-06"))  # fmt: skip
    live = {
        r["target_code"]: r for r in _run(engine, rounds.results, round_id=draft["id"])["results"]
    }
    assert live[G2]["values"]["satisfaction_rate"] == 1.0
    assert live[G2]["score"] != before["results"][1]["score"]


@pytest.mark.parametrize(
    ("score", "expected"),
    [(100, "A"), (90, "A"), (89.99, "B"), (80, "B"), (79.99, "C"), (70, "C"), (69.99, "D"),
     (60, "D"), (59.99, "E"), (0, "E"), (None, None)],
)  # fmt: skip
def test_grade_edges(score: float | None, expected: str | None) -> None:
    assert scheme.grade(score, THRESHOLDS) == expected


# --------------------------------------------------------------------------- guards


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"items": [{"key": "no_such_rate", "weight": 100}]}, "unknown indicator"),
        ({"items": [{"key": "reported", "weight": 100}]}, "not scorable"),
        ({"items": [{"key": "close_rate", "weight": 50}] * 2}, "appears twice"),
        ({"items": [{"key": "Bad-Key", "kind": "self", "weight": 100}]}, "manual item key"),
        ({"items": [{"key": "close_rate", "kind": "self", "weight": 100}]}, "manual item key"),
        ({"items": [{"key": "close_rate", "weight": 60}, {"key": "rework_rate", "weight": 30}]},
         "sum to 90"),
        ({"items": [{"key": "close_rate", "weight": 33.335}, {"key": "rework_rate",
                                                             "weight": 66.665}]}, "two decimals"),
        ({"thresholds": {"A": 90, "B": 80, "C": 70}}, "exactly A, B, C and D"),
        ({"thresholds": {"A": 120, "B": 80, "C": 70, "D": 60}}, "(0, 100]"),
        ({"thresholds": {"A": 90, "B": 80, "C": 80, "D": 60}}, "decrease strictly"),
        ({"thresholds": {"A": 70, "B": 80, "C": 60, "D": 50}}, "decrease strictly"),
    ],
)  # fmt: skip
def test_scheme_guards(over: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace("]", r"\]")):
        scheme.validate(_scheme(**over))


def test_scheme_area_outside_scope(township) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Forbidden):
        _run(township[0], scheme.create_scheme, scheme=_scheme(area_code=""))
    with pytest.raises(Forbidden):
        _run(township[0], scheme.create_scheme, scheme=_scheme(area_code="420117999000"))


def test_scheme_stale_version_and_used_scheme(township, published) -> None:  # type: ignore[no-untyped-def]
    sch = published["scheme"]
    with pytest.raises(Conflict):
        _run(township[0], scheme.update_scheme, scheme_id=sch.id, version=sch.version + 99,
             scheme=_scheme())  # fmt: skip
    with pytest.raises(Conflict):
        _run(township[0], scheme.delete_scheme, scheme_id=sch.id)


def test_round_guards(township, published) -> None:  # type: ignore[no-untyped-def]
    engine, sid, june = township[0], published["scheme"].id, published["june"]["id"]
    with pytest.raises(InvalidInput):
        rounds.parse_label("2026-13")
    with pytest.raises(InvalidInput):  # year 0 (no date)
        rounds.parse_label("0000-Q1")
    with pytest.raises(Conflict):  # the same month twice
        _run(engine, rounds.create_round, body=rounds.RoundIn(scheme_id=sid, label="2026-06"))
    with pytest.raises(Conflict):  # publishing twice
        _run(engine, rounds.publish, round_id=june)
    score = {"item_key": "spot_check", "target_code": G1, "score": 90, "checker": "李"}
    with pytest.raises(Conflict):  # a published round's scores are frozen
        _run(engine, rounds.set_manual_score, round_id=june,
             body=rounds.ManualScoreIn(**score))  # fmt: skip
    draft = _run(engine, rounds.create_round, body=rounds.RoundIn(scheme_id=sid, label="2026-Q3"))
    assert draft["kind"] == "quarterly" and str(draft["period_end"]) == "2026-09-30"
    for bad, error in (
        ({"item_key": "close_rate"}, InvalidInput),  # not a manual item
        ({"target_code": TOWN}, InvalidInput),  # not a grid code
        ({"target_code": "420117999201001"}, InvalidInput),  # outside the round's area
    ):
        with pytest.raises(error):
            _run(engine, rounds.set_manual_score, round_id=draft["id"],
                 body=rounds.ManualScoreIn(**{**score, **bad}))  # fmt: skip
    body = rounds.RoundIn(scheme_id=sid, label="2026-07", area_code="420117999000")
    with pytest.raises(InvalidInput):  # a round in another town than its scheme's
        _run(engine, rounds.create_round, who=ADMIN, body=body)
