"""A bounded schemathesis run over the whole OpenAPI document, against the real app.

Every operation of ``/openapi.json`` gets a fixed, small number of generated requests
(derandomised, so a run is reproducible) through schemathesis' ASGI transport, against a
copy of the loaded sample town with an active plan: valid and invalid requests signed in
as the town's leader (its planner for plan writes), and valid ones anonymously. Each answer
must be no 5xx, carry a documented status and content type, and match its documented
schema. Plan creation runs
in a worker thread (no process pool) so that a generated ``POST /api/plans`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from api import create_app
from api.routes.plans import get_plan_jobs
from geogrid import store
from geogrid.access import users
from geogrid.access.scope import Scope
from geogrid.people.crypto import key_provider
from geogrid.plans import PlanJobs
from geogrid.settings import Settings

#: Generated requests per operation and run: ~55 operations x 3 runs in about a minute.
MAX_EXAMPLES = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

_ACTIVE_PLAN_SQL = [
    """
    INSERT INTO plans (town_code, name, status, activated_at)
    SELECT code, '现行方案', 'active', now() FROM admin_areas WHERE level = 'town' LIMIT 1
    """,
    """
    INSERT INTO grids (plan_id, code, level, village_code, name, geom, households, population)
    SELECT p.id, v.code || '001', 3, v.code, v.name || '第1网格', v.geom,
           (SELECT count(*) FROM households h WHERE h.village_code = v.code), 0
      FROM plans p CROSS JOIN admin_areas v WHERE v.level = 'village'
    """,
]


@dataclass
class Fuzz:
    schema: Any
    auth: dict[str, dict[str, str]]

    def headers(self, operation: Any) -> dict[str, str]:
        """Plan writes as a planner of the town, everything else as its town leader."""
        writes = operation.method.upper() != "GET" and operation.path.startswith("/api/plans")
        return self.auth["planner" if writes else "town_leader"]


@pytest.fixture(scope="module")
def fuzz(pg, _town_template: str, sample_town, tmp_path_factory) -> Iterator[Fuzz]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    with engine.begin() as conn:
        for sql in _ACTIVE_PLAN_SQL:
            conn.execute(text(sql))
    home = tmp_path_factory.mktemp("fuzz")
    key_provider(home, create=True)  # the data key of personal fields (GEOGRID_HOME/data.key)
    app = create_app(Settings(home=home), database_url=url)
    runner = PlanJobs(engine, jobs=1)
    app.dependency_overrides[get_plan_jobs] = lambda: runner
    auth = {}
    for role in ("planner", "town_leader"):
        with engine.begin() as conn:
            _, password = users.add_user(
                conn, username=f"fuzz-{role}", role=role,
                scope=Scope.parse(sample_town.town_code), must_change_password=False,
            )  # fmt: skip
        with TestClient(app) as client:
            r = client.post("/api/auth/token", data={"username": f"fuzz-{role}",
                                                     "password": password})  # fmt: skip
        assert r.status_code == 200, r.text
        auth[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    try:
        yield Fuzz(schemathesis.openapi.from_asgi("/openapi.json", app), auth)
    finally:
        asgi.shutdown_lifespans()
        runner.shutdown(wait=False)
        engine.dispose()
        pg.drop_database(name)


def fuzz_operation(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> str | None:
    """Run the bounded examples of one operation; the failure, if any, as text."""

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # nothing in this operation can be made invalid (a page without parameters)
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
        return f"{operation.label}: {exc}"
    return None


@pytest.mark.parametrize(
    ("signed_in", "mode"),
    [
        (True, GenerationMode.POSITIVE),
        (True, GenerationMode.NEGATIVE),
        (False, GenerationMode.POSITIVE),  # anonymous: the 401/403 answers are documented too
    ],
)
def test_every_operation_keeps_its_documented_contract(
    fuzz: Fuzz, signed_in: bool, mode: GenerationMode
) -> None:
    """Valid requests (positive) and requests breaking the schema (negative): no 5xx."""
    operations = [result.ok() for result in fuzz.schema.get_all_operations()]
    assert len(operations) > 20
    failures = [
        fuzz_operation(op, mode, fuzz.headers(op) if signed_in else {}) for op in operations
    ]
    assert not any(failures), "\n\n".join(f for f in failures if f)
