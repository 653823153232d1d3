"""A user's scope in the grid hierarchy and its relation to the code of a record.

Codes nest by prefix: a town is ``CCCCCCTTT000`` (12 digits; its villages share the first 9),
a village ``CCCCCCTTTVVV`` (12), a basic grid the village code plus 3 digits (15). A scope's
:attr:`Scope.prefix` is therefore all that SQL needs: a row whose
``coalesce(grid_code, village_code)`` starts with the prefix is inside the scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from geogrid.errors import InvalidInput

ScopeKind = Literal["all", "town", "village", "grid"]

#: The SQL condition, for a table aliased ``t`` with ``village_code`` and ``grid_code``.
SCOPE_SQL = "coalesce(t.grid_code, t.village_code) LIKE :scope_prefix || '%'"


@dataclass(frozen=True)
class Scope:
    """Where a user may act: everywhere, or one town, village or grid.

    >>> Scope.parse("420117105000")
    Scope(kind='town', code='420117105000')
    >>> Scope.parse("420117105201").prefix
    '420117105201'
    >>> Scope.parse("420117105201003").covers("420117105201")
    False
    >>> Scope.parse("420117105000").covers("420117105201003")
    True
    """

    kind: ScopeKind
    code: str = ""

    def __post_init__(self) -> None:
        ok = {
            "all": self.code == "",
            "town": re.fullmatch(r"\d{9}000", self.code) is not None,
            "village": re.fullmatch(r"\d{12}", self.code) is not None
            and not self.code.endswith("000"),
            "grid": re.fullmatch(r"\d{15}", self.code) is not None,
        }.get(self.kind, False)
        if not ok:
            raise InvalidInput(
                f"bad scope {self.kind}:{self.code!r}: expected 'all', a 12-digit town code "
                "ending in 000, a 12-digit village code or a 15-digit grid code"
            )

    @classmethod
    def parse(cls, text: str) -> Scope:
        """A scope from ``all`` or a town, village or grid code."""
        s = text.strip()
        if s in ("all", "*", ""):
            return cls("all")
        if re.fullmatch(r"\d{15}", s):
            return cls("grid", s)
        if re.fullmatch(r"\d{9}000", s):
            return cls("town", s)
        return cls("village", s)

    @property
    def prefix(self) -> str:
        """The code prefix of every record inside the scope (``""`` for all)."""
        return {"all": "", "town": self.code[:9], "village": self.code, "grid": self.code}[
            self.kind
        ]

    @property
    def sql_value(self) -> str:
        """The value of the ``geogrid.scope`` setting for row-level security."""
        return "*" if self.kind == "all" else self.prefix

    def covers(self, code: str | None) -> bool:
        """Is the town/village/grid ``code`` inside this scope?

        A town code is inside a town scope by its first 9 digits; ``None`` (no place)
        is inside only the ``all`` scope.
        """
        if self.kind == "all":
            return True
        if not code:
            return False
        key = code[:9] if re.fullmatch(r"\d{9}000", code) else code
        return key.startswith(self.prefix)

    def overlaps(self, code: str | None) -> bool:
        """Is ``code`` inside this scope, or this scope inside ``code`` (its parent)?"""
        if self.covers(code):
            return True
        if not code:
            return False
        key = code[:9] if re.fullmatch(r"\d{9}000", code) else code
        return self.prefix.startswith(key)

    def __str__(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}:{self.code}"
