"""Open311's pure parts without a database: tokens, JSON bodies as fields, the query's
defaults, attribute datatypes, XML, and the public view's fields."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from geogrid.cases.open311 import (
    PUBLIC_FIELDS,
    Attribute,
    RequestRecord,
    Service,
    hash_token,
    new_token,
    normalise_token,
    request_private,
    request_public,
    service_entry,
    to_xml,
)
from geogrid.cases.open311_input import (
    DEFAULT_DAYS,
    Open311Invalid,
    fields_from_json,
    parse_query,
    parse_submission,
)
from geogrid.errors import Forbidden

LIST = Attribute("kind", "multivaluelist", "种类", values=(("a", "甲"), ("b", "乙")))
SERVICES = {"0401": Service("0401", "垃圾堆放", group="环境卫生", attributes=(LIST,))}
BASE = {
    "service_code": ["0401"],
    "description": ["垃圾堆在路口"],
    "lat": ["30.5"],
    "long": ["114.3"],
}


def test_tokens_are_random_readable_and_hashed() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    t = tokens.pop()
    assert normalise_token(t.lower()) == t.replace("-", "")
    assert hash_token(b"k1", t) != hash_token(b"k2", t)  # keyed
    assert len(hash_token(b"k1", t)) == 64 and t not in hash_token(b"k1", t)


@pytest.mark.parametrize("bad", ["", "ABCD", "ABCD-EFGH-JKLMN", "ABCD-EFGH-JKU!", "ÄBCD-EFGH-JKLM"])
def test_malformed_tokens_are_refused_like_wrong_ones(bad: str) -> None:
    with pytest.raises(Forbidden, match="wrong token"):
        normalise_token(bad)


def test_json_bodies_become_fields() -> None:
    fields = fields_from_json(
        {
            "service_code": "0401",
            "lat": 30.5,
            "attribute": {"kind": ["a", "b"]},
            "email": None,
            "anonymous": True,
        }
    )
    assert fields == {
        "service_code": ["0401"],
        "lat": ["30.5"],
        "attribute[kind]": ["a", "b"],
        "anonymous": ["true"],
    }
    for bad in ([1], "x", {"description": {"nested": 1}}, {"attribute": {"kind": {"x": 1}}}):
        with pytest.raises(Open311Invalid) as caught:
            fields_from_json(bad)
        assert {p.rule for p in caught.value.problems} == {"body_invalid"}


def test_multivaluelist_and_every_problem_at_once() -> None:
    ok = parse_submission({**BASE, "attribute[kind][]": ["b", "a", "b"]}, SERVICES)
    assert ok.attributes == {"kind": ["a", "b"]}
    with pytest.raises(Open311Invalid) as caught:
        parse_submission(
            {"description": ["坏"], "lat": ["91"], "long": ["0"], "email": ["x"]}, SERVICES
        )
    assert {p.rule for p in caught.value.problems} == {
        "service_code_missing",
        "location_invalid",
        "description_too_short",
        "email_invalid",
    }


def test_query_defaults_and_limits() -> None:
    now = datetime(2026, 11, 30, 8, tzinfo=UTC)
    q = parse_query({}, ["0401"], now=now)
    assert q.end == now and q.start == now - timedelta(days=DEFAULT_DAYS)
    assert (q.page, q.page_size, q.statuses, q.service_codes) == (1, 100, (), ())
    later = parse_query({"start_date": ["2026-12-05"]}, [], now=now)
    assert later.start == later.end  # starting after now: an empty period
    assert parse_query({"start_date": ["2026-11-01"]}, [], now=now).start.utcoffset() == timedelta(
        hours=8
    )  # a date alone is China time


def _record(**over: object) -> RequestRecord:
    base: dict[str, object] = {
        "service_request_id": "7",
        "service_code": "0401",
        "service_name": "垃圾堆放",
        "closed": False,
        "description": "垃圾",
        "requested": datetime(2026, 11, 30, 1, tzinfo=UTC),
        "updated": None,
        "expected": datetime(2026, 12, 1, 1, tzinfo=UTC),
        "lon": 114.123456789,
        "lat": 30.5,
    }
    base.update(over)
    return RequestRecord(**base)  # type: ignore[arg-type]


def test_public_view_fields_and_private_extras() -> None:
    pub = request_public(_record())
    assert tuple(pub) == PUBLIC_FIELDS
    assert pub["status"] == "open" and pub["long"] == 114.123457
    assert pub["requested_datetime"] == "2026-11-30T09:00:00+08:00"
    assert pub["updated_datetime"] == pub["requested_datetime"]  # never updated: the request
    assert pub["expected_datetime"] == "2026-12-01T09:00:00+08:00"
    assert "2026-12-01 09:00" in pub["service_notice"]
    closed = request_public(_record(closed=True))
    assert closed["status"] == "closed" and closed["service_notice"] is None
    own = request_private(_record(state="accepted", attributes={"kind": ["a"]}))
    assert list(own)[len(PUBLIC_FIELDS) :] == [
        "workflow_status",
        "media_urls",
        "attributes",
        "history",
    ]


def test_xml_nests_lists_by_singular_names() -> None:
    services = to_xml("services", [service_entry(SERVICES["0401"])])
    root = ET.fromstring(services)
    assert (
        root.findtext("service/metadata") == "true" and root.findtext("service/group") == "环境卫生"
    )
    definition = ET.fromstring(
        to_xml("service_definition", {"service_code": "0401", "attributes": [LIST.as_dict()]})
    )
    assert [v.findtext("key") for v in definition.findall("attributes/attribute/values/value")] == [
        "a",
        "b",
    ]
    empty = ET.fromstring(to_xml("service_requests", [request_public(_record(description=None))]))
    assert (
        empty.find("request/description") is not None
        and empty.find("request/description").text is None  # type: ignore[union-attr]
    )
