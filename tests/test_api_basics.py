"""The app factory, lifespan and error table, through a real HTTP client."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api import create_app
from api.errors import status_for
from geogrid.errors import Conflict, IllegalTransition, InvalidInput, NotFound
from geogrid.settings import Settings


def test_health_reaches_postgis(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(Settings(home=tmp_path), database_url=db_url)
    with TestClient(app) as client:
        body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["postgis"].startswith("3.")


def test_domain_errors_map_to_4xx() -> None:
    assert status_for(InvalidInput("x")) == 400
    assert status_for(NotFound("x")) == 404
    assert status_for(Conflict("x")) == 409
    assert status_for(IllegalTransition("x")) == 409
