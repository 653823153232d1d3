"""Citizen ID numbers (公民身份号码, GB 11643-1999): validation and synthetic numbers.

An 18-character number is 6 digits of region (address code), 8 digits of birth date
(``YYYYMMDD``), 3 digits of sequence (odd for men, even for women) and a check
character computed over the first 17 digits (ISO 7064 MOD 11-2), ``0``–``9`` or ``X``.

Reasons never repeat the number or the birth date it holds: they end up in reject
files, logs and error bodies, where personal data must not appear.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

from geogrid.errors import InvalidInput

__all__ = [
    "IdCard",
    "check_character",
    "id_problem",
    "make_id",
    "normalize_id",
    "parse_id",
]

#: Weights of the 17 digits: 2^(17-i) mod 11.
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: Check character by (weighted sum mod 11).
CHECK_CHARS = "10X98765432"
#: First two digits: provinces, autonomous regions, municipalities, Taiwan, Hong Kong, Macao.
PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
     50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)  # fmt: skip
#: Earliest birth year accepted.
MIN_YEAR = 1900


@dataclass(frozen=True)
class IdCard:
    """A valid ID number and what it says."""

    number: str
    region: str
    birth_date: dt.date
    sex: str  # "男" or "女"

    @property
    def tail(self) -> str:
        """The last four characters (shown in masked form)."""
        return self.number[-4:]


def normalize_id(value: object) -> str:
    """Strip spaces, turn full-width characters half-width and ``x`` into ``X``.

    >>> normalize_id(" 1101０５19491231002x ")
    '11010519491231002X'
    """
    text = unicodedata.normalize("NFKC", str(value))
    return "".join(text.split()).upper()


def check_character(first17: str) -> str:
    """The GB 11643 check character of 17 digits.

    >>> check_character("11010519491231002")
    'X'
    """
    total = sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def id_problem(value: object, *, today: dt.date | None = None) -> str | None:
    """Why ``value`` is not a valid 18-character ID number, or ``None`` when it is.

    One reason per rule, checked in this order: missing, length (a 15-digit number
    from before 1999 is named as such), characters, province, birth date (a real date,
    not before 1900, not in the future), check character.

    >>> id_problem("11010519491231002X") is None
    True
    >>> id_problem("11010519491231002")
    'bad ID number: 17 characters, expected 18'
    >>> id_problem("110105194912310021")
    'bad ID number: check character does not match (GB 11643)'
    """
    if value is None or (isinstance(value, float) and value != value):
        return "bad ID number: missing"
    number = normalize_id(value)
    if not number:
        return "bad ID number: missing"
    if len(number) == 15 and number.isdigit():
        return "bad ID number: 15-digit number from before 1999, give the 18-digit number"
    if len(number) != 18:
        return f"bad ID number: {len(number)} characters, expected 18"
    if not number[:17].isascii() or not number[:17].isdigit():
        return "bad ID number: only digits are allowed in the first 17 characters"
    if not (number[17].isascii() and (number[17].isdigit() or number[17] == "X")):
        return "bad ID number: the last character must be a digit or X"
    if int(number[:2]) not in PROVINCES:
        return "bad ID number: unknown province code"
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return "bad ID number: the birth date in it is not a real date"
    if born.year < MIN_YEAR:
        return f"bad ID number: the birth date in it is before {MIN_YEAR}"
    if born > (today or dt.date.today()):
        return "bad ID number: the birth date in it is in the future"
    if check_character(number[:17]) != number[17]:
        return "bad ID number: check character does not match (GB 11643)"
    return None


def parse_id(value: object, *, today: dt.date | None = None) -> IdCard:
    """Validate an ID number and read its region, birth date and sex.

    Raises
    ------
    geogrid.errors.InvalidInput
        With the reason of :func:`id_problem` (never the number itself).

    Examples
    --------
    >>> card = parse_id("11010519491231002x")
    >>> card.number, card.birth_date.isoformat(), card.sex, card.tail
    ('11010519491231002X', '1949-12-31', '女', '002X')
    """
    problem = id_problem(value, today=today)
    if problem is not None:
        raise InvalidInput(problem)
    number = normalize_id(value)
    born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    return IdCard(number, number[:6], born, "男" if int(number[16]) % 2 else "女")


def make_id(region: str, birth_date: dt.date, sequence: int, sex: str) -> str:
    """A well-formed (synthetic) ID number: the sequence's last digit is made odd for
    men, even for women, and the check character is computed.

    >>> make_id("110105", dt.date(1949, 12, 31), 2, "女")
    '11010519491231002X'
    >>> parse_id(make_id("420117", dt.date(1980, 2, 29), 51, "男")).sex
    '男'
    """
    if len(region) != 6 or not region.isdigit():
        raise InvalidInput("region must be 6 digits")
    seq = sequence % 1000
    if (seq % 2 == 1) != (sex == "男"):
        seq = seq + 1 if seq < 999 else seq - 1
    first17 = f"{region}{birth_date:%Y%m%d}{seq:03d}"
    return first17 + check_character(first17)
