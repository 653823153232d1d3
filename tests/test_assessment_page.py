"""The public grid map shows a grid's published assessment figures (工作绩效公示), in headless
Chromium on desktop and phone: the closure rate and satisfaction of the last published
round, nothing from a draft, no outside request, no console error."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from geogrid import store
from tests.pages_support import Live, assert_local_only, open_page


def _publish(url: str, label: str, status: str, close: float, satisfaction: float) -> str:
    """A round of a grid-level scheme with a result row for the first grid; its grid code."""
    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            code = conn.execute(
                text(
                    "SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id "
                    "AND p.status = 'active' WHERE g.level = 3 ORDER BY g.code LIMIT 1"
                )
            ).scalar_one()
            sid = conn.execute(
                text(
                    "INSERT INTO assessment_schemes (name, level, thresholds) VALUES "
                    '(\'公示\', \'grid\', \'{"A": 90, "B": 80, "C": 70, "D": 60}\') RETURNING id'
                )
            ).scalar_one()
            published = "now()" if status == "published" else "NULL"
            rid = conn.execute(
                text(
                    "INSERT INTO assessment_rounds (scheme_id, kind, label, period_start, "
                    f"period_end, status, published_at) VALUES (:s, 'monthly', :l, '2026-06-01', "
                    f"'2026-06-30', :st, {published}) RETURNING id"
                ),
                {"s": sid, "l": label, "st": status},
            ).scalar_one()
            values = {"close_rate": close, "satisfaction_rate": satisfaction}
            conn.execute(
                text(
                    "INSERT INTO assessment_results (round_id, target_code, level, name, "
                    "indicator_values, item_scores, score, grade, rank) VALUES (:r, :c, 'grid', "
                    "'g', CAST(:v AS jsonb), '{}', 90, 'A', 1)"
                ),
                {"r": rid, "c": code, "v": json.dumps(values)},
            )
    finally:
        engine.dispose()
    return str(code)


def test_public_grid_shows_published_figures(live: Live, browser: Any) -> None:
    code = _publish(live.url, "2026-06", "published", 0.9, 0.855)
    _publish(live.url, "2026-07", "draft", 0.1, 0.1)  # a draft: never public
    for viewport in ((1366, 768), (390, 844)):
        page = open_page(browser, f"{live.base}/public/grid/{code}", viewport=viewport)
        page.wait_for_selector("#gg-figures")
        figures = page.inner_text("#gg-figures")
        assert "考核公示" in figures and "2026-06" in figures, figures
        assert "结案率：90.0%" in figures.replace(" ", "") and "85.5%" in figures, figures
        assert "2026-07" not in figures and "10.0%" not in figures
        page.wait_for_load_state("networkidle")
        assert_local_only(page.visit)
        assert not page.visit.errors, page.visit.errors
        page.context.close()
