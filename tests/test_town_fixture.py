"""The shared loaded-town fixture is what other tests assume it is."""

from __future__ import annotations

from sqlalchemy import text

from geogrid import store


def test_town_fixture_has_the_sample_town(town_url: str, sample_town) -> None:  # type: ignore[no-untyped-def]
    engine = store.make_engine(town_url)
    try:
        with engine.connect() as conn:
            villages = conn.execute(
                text("SELECT count(*) FROM admin_areas WHERE level = 'village'")
            ).scalar_one()
            households = conn.execute(text("SELECT count(*) FROM households")).scalar_one()
    finally:
        engine.dispose()
    assert villages == len(sample_town.village_codes)
    assert 0.99 * sample_town.n_households < households <= sample_town.n_households
