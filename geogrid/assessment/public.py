"""Public transparency (工作绩效明晰、方便居民查询): a grid's published figures.

The public grid map shows, per grid, the closure rate (结案率) and resident satisfaction
(群众满意率) of the latest *published* round whose results hold that grid (grid-level
schemes): the frozen numbers of :mod:`geogrid.assessment.rounds`, nothing personal, nothing
live, nothing from draft rounds.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Connection, text

from geogrid.errors import InvalidInput

__all__ = ["PUBLIC_KEYS", "published_figures"]

#: the indicators shown to the public
PUBLIC_KEYS: Final = ("close_rate", "satisfaction_rate")

_SQL: Final = """
SELECT r.label, r.kind, r.period_start, r.period_end, r.published_at,
       x.indicator_values -> 'close_rate' AS close_rate,
       x.indicator_values -> 'satisfaction_rate' AS satisfaction_rate
FROM assessment_results x
JOIN assessment_rounds r ON r.id = x.round_id AND r.status = 'published'
WHERE x.target_code = :code AND x.level = 'grid'
ORDER BY r.period_end DESC, r.published_at DESC
LIMIT 1
"""


def published_figures(conn: Connection, code: str) -> dict[str, Any]:
    """``{"code", "published": {round label, kind, period, published_at, close_rate,
    satisfaction_rate} | None}`` for grid ``code`` (``None``: no published round yet)."""
    if not (len(code) == 15 and code.isdigit()):
        raise InvalidInput("a grid code has 15 digits")
    row = conn.execute(text(_SQL), {"code": code}).first()
    if row is None:
        return {"code": code, "published": None}
    return {
        "code": code,
        "published": {
            "label": row.label,
            "kind": row.kind,
            "period_start": row.period_start.isoformat(),
            "period_end": row.period_end.isoformat(),
            "published_at": row.published_at.isoformat(),
            "close_rate": row.close_rate,
            "satisfaction_rate": row.satisfaction_rate,
        },
    }
