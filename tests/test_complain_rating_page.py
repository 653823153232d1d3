"""The resident rates an ended request on the complaint status page (phone, real Chromium).

A request is submitted over Open311 and rejected by the town leader; the status page,
opened with the request id and token, offers the rating only once the request has ended,
refuses a send without a choice (in Chinese), sends the rating and shows it again on the
next visit; the server holds exactly one rating, from Open311, with the comment.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from geogrid import store
from tests.test_desk_pages import (  # noqa: F401 - the fixtures
    PHONE,
    Live,
    browser,
    check_page,
    live,
    open_page,
    wait_for,
)


def _submit(live: Live) -> tuple[str, str]:  # noqa: F811
    with httpx.Client(base_url=live.base, timeout=30) as client:
        services = client.get("/open311/v2/services.json").json()
        body = {"service_code": services[0]["service_code"], "description": "垃圾桶三天没人清运",
                "lat": live.lat, "long": live.lon}  # fmt: skip
        r = client.post("/open311/v2/requests.json", json=body)
        assert r.status_code == 200, r.text
        created = r.json()[0]
    return created["service_request_id"], created["token"]


def _reject(live: Live, rid: str, account_maker: Any) -> None:  # noqa: F811
    leader = account_maker(live.url, "town_leader", live.grid[:9] + "000")
    with httpx.Client(base_url=live.base, timeout=30) as client:
        headers = leader.headers(client)
        etag = client.get(f"/api/cases/{rid}", headers=headers).headers["ETag"]
        r = client.post(
            f"/api/cases/{rid}/transitions",
            headers={**headers, "If-Match": etag},
            json={"action": "reject", "note": "已转交环卫所处理", "public": True},
        )
        assert r.status_code == 200, r.text


def _status_page(browser: Any, live: Live, rid: str, token: str) -> Any:  # noqa: F811
    page = open_page(browser, f"{live.base}/complain/status?id={rid}", viewport=PHONE)
    page.fill("#gg-s-token", token)
    page.click("#gg-s-form button[type=submit]")
    wait_for(page, "document.body.dataset.found !== undefined")
    assert page.evaluate("document.body.dataset.found") == rid
    return page


def test_resident_rates_an_ended_request(live: Live, browser: Any, account_maker) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    rid, token = _submit(live)
    page = _status_page(browser, live, rid, token)
    assert page.is_hidden("#gg-r-form")  # not ended yet: nothing to rate
    page.context.close()

    _reject(live, rid, account_maker)
    page = _status_page(browser, live, rid, token)
    assert page.is_visible("#gg-r-form") and "满意" in page.inner_text("#gg-r-form")
    page.click("#gg-r-send")  # no choice made: refused by the page, in Chinese
    assert "请选择满意程度" in page.inner_text("#gg-r-error")
    page.check("input[name=rating][value=basic]")
    page.fill("#gg-r-comment", "处理了，但希望更快一些")
    with page.expect_response(lambda r: "/feedback.json" in r.url) as sent:
        page.click("#gg-r-send")
    assert sent.value.status == 200, sent.value.text()
    wait_for(page, "document.body.dataset.rated === 'basic'")
    assert page.is_visible("#gg-r-done") and "感谢" in page.inner_text("#gg-r-done")
    check_page(page, live.shots / "complain-rating-phone.png")
    page.context.close()

    # the next visit shows the rating given
    page = _status_page(browser, live, rid, token)
    assert page.is_checked("input[name=rating][value=basic]")
    assert page.input_value("#gg-r-comment") == "处理了，但希望更快一些"
    page.context.close()
    engine = store.make_engine(live.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT source, rating, comment FROM case_feedback WHERE case_id = :c"),
                {"c": int(rid)},
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("open311", "basic", "处理了，但希望更快一些")]
