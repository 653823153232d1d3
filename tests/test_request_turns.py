"""Requests run in turns per process (api.routes.metrics.Observe): at most ``turns`` at
once, and a long one gives its turn back after ``turn_s`` seconds."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.routes.metrics import Observe
from geogrid.ops.metrics import Metrics
from geogrid.settings import Settings


def _app(turns: int, turn_s: float) -> tuple[Observe, dict[str, int]]:
    seen = {"now": 0, "most": 0}

    async def work(request: Request) -> JSONResponse:
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        try:
            await asyncio.sleep(float(request.query_params.get("s", "0")))
        finally:
            seen["now"] -= 1
        return JSONResponse({"ok": True})

    inner = Starlette(routes=[Route("/work", work)])
    return Observe(inner, metrics=Metrics(), turns=turns, turn_s=turn_s), seen


def _client(app: Observe) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_no_more_requests_run_at_once_than_turns() -> None:
    app, seen = _app(turns=2, turn_s=5)

    async def main() -> list[int]:
        async with _client(app) as c:
            answers = await asyncio.gather(*(c.get("/work?s=0.2") for _ in range(6)))
        return [a.status_code for a in answers]

    t = time.monotonic()
    assert asyncio.run(main()) == [200] * 6
    assert seen["most"] == 2  # six at once without the turns
    assert time.monotonic() - t >= 0.55  # three rounds of two


def test_a_long_request_gives_its_turn_back() -> None:
    app, seen = _app(turns=1, turn_s=0.2)

    async def main() -> float:
        async with _client(app) as c:
            slow = asyncio.create_task(c.get("/work?s=1.5"))
            await asyncio.sleep(0.4)  # the slow one has run past turn_s
            t = time.monotonic()
            quick = await c.get("/work")
            took = time.monotonic() - t
            assert quick.status_code == 200 and (await slow).status_code == 200
            return took

    assert asyncio.run(main()) < 0.5  # it waited ~1.1 s more for the slow one's end before
    assert seen["most"] == 2


def test_a_short_request_keeps_its_turn() -> None:
    app, seen = _app(turns=1, turn_s=5)

    async def main() -> float:
        async with _client(app) as c:
            slow = asyncio.create_task(c.get("/work?s=0.6"))
            await asyncio.sleep(0.1)
            t = time.monotonic()
            await c.get("/work")
            took = time.monotonic() - t
            await slow
            return took

    assert asyncio.run(main()) >= 0.4  # waited for the first one's end
    assert seen["most"] == 1


@pytest.mark.parametrize(
    "bad", [{"request_turns": 0}, {"request_turns": 65}, {"request_turn_s": 0}]
)
def test_request_turn_settings_are_checked(bad: dict[str, float], tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError):
        Settings(home=tmp_path, **bad)  # type: ignore[arg-type]
