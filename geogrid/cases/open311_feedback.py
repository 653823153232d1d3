"""Residents rate how their request was handled (群众满意度回访), through Open311.

An extension of GeoReport v2 (the specification has no rating): the token holder of a
request that has ended — closed, archived, or rejected/voided as not a case — may rate it
``satisfied`` (满意), ``basic`` (基本满意) or ``unsatisfied`` (不满意), the evaluation step's
scale (:data:`geogrid.cases.machine.RATINGS`), with an optional comment; rating again
replaces the earlier rating. The rating is kept in ``case_feedback`` (migration 0030, source
``open311``) and the assessment's satisfaction indicator counts it beside the evaluation
step's (:mod:`geogrid.assessment.indicators`). Audited without the comment (a resident may
write anything into it): the case, the rating, and that a comment was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.cases import machine
from geogrid.cases.open311_input import Open311Invalid, Problem
from geogrid.cases.open311_store import case_id_of, public_case
from geogrid.errors import Conflict, Forbidden

__all__ = ["MAX_COMMENT", "RATEABLE", "Feedback", "get_feedback", "rate"]

#: Statuses a resident may rate: the request has ended (a merged one: rate the case it
#: was merged into).
RATEABLE: Final = frozenset({"closed", "archived", "rejected", "voided"})
MAX_COMMENT: Final = 500
SOURCE: Final = "open311"


@dataclass(frozen=True)
class Feedback:
    """A resident's rating of a request."""

    rating: str
    comment: str | None
    at: datetime


def parse(fields: dict[str, list[str]]) -> tuple[str, str | None]:
    """The rating and comment of a form or JSON body (``rating``, ``comment``).

    >>> parse({"rating": ["basic"], "comment": [" 还行 "]})
    ('basic', '还行')
    >>> parse({"rating": ["great"]})
    Traceback (most recent call last):
    ...
    geogrid.cases.open311_input.Open311Invalid: rating must be one of satisfied, basic, unsatisfied
    """
    problems = []
    ratings = fields.get("rating") or []
    rating = ratings[0].strip() if len(ratings) == 1 else ""
    if rating not in machine.RATINGS:
        problems.append(
            Problem("rating_invalid", f"rating must be one of {', '.join(machine.RATINGS)}")
        )
    comments = fields.get("comment") or []
    comment = comments[0].strip() if comments else None
    if len(comments) > 1:
        problems.append(Problem("comment_invalid", "one comment at most"))
    elif comment is not None and len(comment) > MAX_COMMENT:
        problems.append(Problem("comment_invalid", f"comment: at most {MAX_COMMENT} characters"))
    elif comment is not None and any(ord(c) < 32 and c not in "\t\n\r" for c in comment):
        problems.append(Problem("comment_invalid", "comment: no control characters"))
    if problems:
        raise Open311Invalid(problems)
    return rating, comment or None


def _owned(conn: Connection, case_id: int, token_hash: str) -> None:
    owned = conn.execute(
        text("SELECT 1 FROM open311_requests WHERE case_id = :c AND token_hash = :t"),
        {"c": case_id, "t": token_hash},
    ).first()
    if owned is None:
        raise Forbidden("wrong token for this request", detail={"rule": "token_invalid"})


def rate(
    conn: Connection,
    request_id: str,
    *,
    token_hash: str,
    rating: str,
    comment: str | None,
    ip: str | None = None,
) -> Feedback:
    """Keep the token holder's rating of request ``request_id`` (replacing an earlier one).

    Raises
    ------
    NotFound
        No such public request.
    Forbidden
        The token is not this request's (rule ``token_invalid``).
    Conflict
        The request has not ended yet (rule ``not_ended``): it can be rated once it is
        closed (or rejected).
    """
    case_id = case_id_of(request_id)
    pc = public_case(conn, case_id)
    _owned(conn, case_id, token_hash)
    if pc.status not in RATEABLE:
        raise Conflict(
            "the request can be rated once it has been closed",
            detail={"rule": "not_ended", "status": pc.status},
        )
    row = conn.execute(
        text(
            "INSERT INTO case_feedback (case_id, source, rating, comment) "
            "VALUES (:c, :s, :r, :m) ON CONFLICT (case_id, source) DO UPDATE SET "
            "rating = EXCLUDED.rating, comment = EXCLUDED.comment, at = now() "
            "RETURNING rating, comment, at"
        ),
        {"c": case_id, "s": SOURCE, "r": rating, "m": comment},
    ).one()
    audit.record(
        conn, actor=None, action="open311.feedback", target_type="case",
        target_ids=[str(case_id)], ip=ip,
        detail={"rating": rating, "comment": comment is not None},
    )  # fmt: skip
    return Feedback(row.rating, row.comment, row.at)


def get_feedback(conn: Connection, case_id: int) -> Feedback | None:
    """The resident's rating of a case, if any (for the token holder's own view)."""
    row = conn.execute(
        text("SELECT rating, comment, at FROM case_feedback WHERE case_id = :c AND source = :s"),
        {"c": case_id, "s": SOURCE},
    ).first()
    return Feedback(row.rating, row.comment, row.at) if row else None
