"""Residents rate how their ended Open311 request was handled (the satisfaction follow-up).

Over real HTTP against the sample town (the Open311 tests' world): a rating before the
request has ended is refused (409 ``not_ended``); after it, the token holder rates, sees the
rating in their own view and may replace it; one refusal per rule (token missing, wrong,
someone else's; rating missing or unknown; comment too long, with control characters, or
twice; photos; an unknown request); nothing of it in the public view; the per-client limit;
the audit entry holds the rating but never the comment.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.test_open311 import World, _act, _one, _submit, world  # noqa: F401 - the fixture


def _rate(w: World, rid: str, token: str | None, **body: Any) -> Any:
    headers = {"X-Open311-Token": token} if token else {}
    return w.client.post(f"/open311/v2/requests/{rid}/feedback.json", json=body, headers=headers)


def _rows(w: World, rid: str) -> list[Any]:
    with w.engine.connect() as conn:
        return conn.execute(
            text("SELECT source, rating, comment FROM case_feedback WHERE case_id = :c"),
            {"c": int(rid)},
        ).all()


def _rule(r: Any) -> tuple[int, str]:
    (problem,) = r.json()
    return r.status_code, problem["rule"]


@pytest.fixture
def ended(world: World) -> tuple[str, str]:  # noqa: F811 - the imported fixture
    created = _submit(world)
    rid, token = created["service_request_id"], created["token"]
    assert _rule(_rate(world, rid, token, rating="satisfied")) == (409, "not_ended")
    _act(world, rid, "reject", "经核实已由供电所修复", public=True)
    return rid, token


def test_rate_own_ended_request_and_replace_the_rating(world: World, ended) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    rid, token = ended
    r = _rate(world, rid, token, rating="satisfied")
    assert r.status_code == 200, r.text
    (answer,) = r.json()
    assert answer["service_request_id"] == rid and answer["rating"] == "satisfied"
    assert answer["comment"] is None and answer["rated_at"].endswith("+08:00")
    assert _one(world, rid, token=token)["feedback"]["rating"] == "satisfied"
    # rating again replaces it (one rating per request and source), form-encoded this time
    r = world.client.post(
        f"/open311/v2/requests/{rid}/feedback.json",
        data={"token": token, "rating": "unsatisfied", "comment": "灯修好了，但拖了一周"},
    )
    assert r.status_code == 200, r.text
    assert [tuple(x) for x in _rows(world, rid)] == [
        ("open311", "unsatisfied", "灯修好了，但拖了一周")
    ]
    own = _one(world, rid, token=token)["feedback"]
    assert own["rating"] == "unsatisfied" and own["comment"] == "灯修好了，但拖了一周"
    # nobody else sees it: not in the public view, not in the public list
    public = world.client.get(f"/open311/v2/requests/{rid}.json").text
    listed = world.client.get("/open311/v2/requests.json", params={"service_request_id": rid})
    assert "feedback" not in public and "拖了一周" not in public and "拖了一周" not in listed.text
    # audited: the rating, never the comment
    with world.engine.connect() as conn:
        detail = conn.execute(
            text(
                "SELECT detail FROM audit_log WHERE action = 'open311.feedback' "
                "AND target_ids = ARRAY[:c] ORDER BY id DESC LIMIT 1"
            ),
            {"c": rid},
        ).scalar_one()
    assert detail == {"rating": "unsatisfied", "comment": True}


def test_an_unrated_request_shows_no_rating(world: World) -> None:  # noqa: F811
    created = _submit(world)
    own = _one(world, created["service_request_id"], token=created["token"])
    assert own["feedback"] is None


def test_tokens_are_checked(world: World, ended) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    rid, _ = ended
    other = _submit(world)["token"]  # a real token, of another request
    assert _rule(_rate(world, rid, None, rating="basic")) == (403, "token_invalid")
    assert _rule(_rate(world, rid, "AAAA-BBBB-CCCC", rating="basic")) == (403, "token_invalid")
    assert _rule(_rate(world, rid, other, rating="basic")) == (403, "token_invalid")
    assert _rows(world, rid) == []


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({}, "rating_invalid"),
        ({"rating": "great"}, "rating_invalid"),
        ({"rating": "basic", "comment": "长" * 501}, "comment_invalid"),
        ({"rating": "basic", "comment": "bell\x07"}, "comment_invalid"),
    ],
)
def test_each_body_rule(world: World, ended, body: dict[str, Any], rule: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    rid, token = ended
    assert _rule(_rate(world, rid, token, **body)) == (400, rule)
    assert _rows(world, rid) == []


def test_two_comments_and_photos_are_refused(world: World, ended) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    rid, token = ended
    url = f"/open311/v2/requests/{rid}/feedback.json"
    twice = world.client.post(url, data={"token": token, "rating": "basic", "comment": ["a", "b"]})
    assert _rule(twice) == (400, "comment_invalid")
    photo = world.client.post(
        url, data={"token": token, "rating": "basic"}, files={"media": ("a.jpg", b"\xff\xd8")}
    )
    assert _rule(photo) == (400, "media_invalid")
    assert _rows(world, rid) == []


def test_unknown_and_internal_requests_are_not_found(world: World) -> None:  # noqa: F811
    token = _submit(world)["token"]
    assert _rule(_rate(world, "999999999", token, rating="basic")) == (404, "not_found")
    assert _rule(_rate(world, "x1", token, rating="basic")) == (404, "not_found")


def test_ratings_are_limited_per_client(world: World, ended) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    rid, token = ended
    world.app.state.open311_limits = (2, 3600)
    try:
        with TestClient(world.app, client=("198.51.100.9", 40000)) as other:
            codes = [
                other.post(
                    f"/open311/v2/requests/{rid}/feedback.json",
                    json={"rating": "basic"}, headers={"X-Open311-Token": token},
                ).status_code
                for _ in range(3)
            ]  # fmt: skip
    finally:
        world.app.state.open311_limits = (100_000, 3600)
    assert codes == [200, 200, 429]
