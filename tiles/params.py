"""Query parameters of tile and heat requests, validated once and normalised.

The normalised form is part of the cache key and the ETag, so two requests that mean the
same thing (categories in another order, a repeated category) share one cache entry.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from geogrid.cases.machine import STATUSES
from geogrid.errors import InvalidInput

#: Local civil time in which case days are counted (China has one time zone).
TIMEZONE = "Asia/Shanghai"
TZ = ZoneInfo(TIMEZONE)

#: The whole time axis, when a request names no window.
EARLIEST = dt.date(1970, 1, 1)
LATEST = dt.date(2199, 12, 31)

MAX_CATEGORIES = 32


@dataclass(frozen=True)
class Window:
    """A closed window of local days ``[start, end]`` and an optional category set.

    >>> w = Window.parse("2025-03-01", "2025-03-31", "环境卫生,矛盾纠纷,环境卫生")
    >>> w.categories
    ('环境卫生', '矛盾纠纷')
    >>> w.key()
    '2025-03-01/2025-03-31/环境卫生,矛盾纠纷'
    >>> Window.parse(None, None, None).key()
    '*/*/*'
    """

    start: dt.date = EARLIEST
    end: dt.date = LATEST
    categories: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, start: str | None, end: str | None, category: str | None) -> Window:
        """Validate ``from``/``to`` (``YYYY-MM-DD``) and ``category`` (comma-separated).

        Raises
        ------
        geogrid.errors.InvalidInput
            A malformed date, ``from`` after ``to``, or too many categories.
        """
        d0 = _date(start, "from") if start else EARLIEST
        d1 = _date(end, "to") if end else LATEST
        if d0 > d1:
            raise InvalidInput(
                f"'from' ({d0}) is after 'to' ({d1})", detail={"from": str(d0), "to": str(d1)}
            )
        cats: tuple[str, ...] | None = None
        if category is not None and category.strip():
            cats = tuple(sorted({c.strip() for c in category.split(",") if c.strip()}))
            if len(cats) > MAX_CATEGORIES:
                raise InvalidInput(f"at most {MAX_CATEGORIES} categories may be named")
        return cls(max(d0, EARLIEST), min(d1, LATEST), cats)

    @property
    def t0(self) -> dt.datetime:
        """First instant of the window (local midnight of ``start``)."""
        return dt.datetime.combine(self.start, dt.time(), TZ)

    @property
    def t1(self) -> dt.datetime:
        """First instant after the window (local midnight after ``end``)."""
        return dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), TZ)

    def key(self) -> str:
        """Canonical text for cache keys and ETags."""
        a = "*" if self.start == EARLIEST else self.start.isoformat()
        b = "*" if self.end == LATEST else self.end.isoformat()
        c = "*" if self.categories is None else ",".join(self.categories)
        return f"{a}/{b}/{c}"


def _date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"'{name}' must be a date written YYYY-MM-DD, not {value!r}", detail={name: value}
        ) from None


#: Workflow statuses a case filter may name: the state machine's, in workflow order.
CASE_STATUSES: tuple[str, ...] = tuple(STATUSES)
#: Overdue filters are evaluated at a time rounded to this many seconds (cache key, SQL).
OVERDUE_BUCKET = 300


@dataclass(frozen=True)
class CaseStates:
    """Cases by workflow status and by overdue (``None``: no filter).

    >>> f = CaseStates.parse("dispatched,reported,dispatched", "true")
    >>> f.statuses, f.overdue, f.active
    (('dispatched', 'reported'), True, True)
    >>> CaseStates.parse(None, None).active
    False
    """

    statuses: tuple[str, ...] | None = None
    overdue: bool | None = None

    @classmethod
    def parse(cls, status: str | None, overdue: str | None) -> CaseStates:
        """Validate ``status`` (comma-separated) and ``overdue`` (``true``/``false``).

        The one parser of these filters: the tiles, ``/api/heat`` and
        ``/api/stats/cases-by-grid`` all take them through here.

        Raises
        ------
        geogrid.errors.InvalidInput
            A status the state machine does not have, or an ``overdue`` that is not
            ``true``/``false``/``1``/``0``.
        """
        statuses: tuple[str, ...] | None = None
        if status is not None and status.strip():
            statuses = tuple(sorted({s.strip() for s in status.split(",") if s.strip()}))
            bad = [s for s in statuses if s not in CASE_STATUSES]
            if bad:
                raise InvalidInput(f"unknown case status {bad[0]!r}; one of "
                                   f"{', '.join(CASE_STATUSES)}")  # fmt: skip
        flag: bool | None = None
        if overdue is not None and overdue.strip():
            word = overdue.strip().lower()
            if word not in ("true", "false", "1", "0"):
                raise InvalidInput("'overdue' must be true or false")
            flag = word in ("true", "1")
        return cls(statuses, flag)

    @property
    def active(self) -> bool:
        return self.statuses is not None or self.overdue is not None

    def key(self, now: dt.datetime) -> str:
        """Canonical text for cache keys (the overdue filter also names its time bucket)."""
        if not self.active:
            return ""
        st = ",".join(self.statuses) if self.statuses is not None else "*"
        od = "*" if self.overdue is None else f"{self.overdue}@{self.at(now).isoformat()}"
        return f"status={st};overdue={od}"

    @staticmethod
    def at(now: dt.datetime) -> dt.datetime:
        """``now`` rounded down to :data:`OVERDUE_BUCKET` seconds."""
        ts = int(now.timestamp()) // OVERDUE_BUCKET * OVERDUE_BUCKET
        return dt.datetime.fromtimestamp(ts, dt.UTC)


@dataclass(frozen=True)
class TileParams:
    """Everything besides ``layer/z/x/y`` that changes a tile's content."""

    plan: int | None = None
    window: Window = Window()
    scope: str = ""
    """Code prefix of the asking user's scope: cases' points outside it are left out."""
    states: CaseStates = CaseStates()
    """Cases by status and overdue (the cases and heat layers)."""

    def key(self) -> str:
        """Canonical text for cache keys and ETags (only what the layer uses)."""
        return f"plan={self.plan or '*'};{self.window.key()}"
