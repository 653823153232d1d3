"""Open311 GeoReport v2 input: validation of submissions (``POST requests``) and queries
(``GET requests``).

Validation collects every problem as a GeoReport error (``{"code": 400, "description":
..., "rule": ...}``; ``rule`` names the broken rule, which the complaint page translates)
and raises :class:`Open311Invalid` with all of them. Each rule is listed in the docstring
of the function that checks it, and the tests feed one input per rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from geogrid.cases.open311 import CHINA_TZ, Attribute, Service, format_datetime
from geogrid.errors import InvalidInput

__all__ = [
    "Fields",
    "Open311Invalid",
    "Problem",
    "Query",
    "Submission",
    "fields_from_json",
    "parse_query",
    "parse_submission",
]

#: Limits of a submission's text fields (characters).
MAX_DESCRIPTION = 2000
MIN_DESCRIPTION = 4
MAX_ADDRESS = 200
MAX_NAME = 50
MAX_ATTRIBUTE = 500
#: Paging of the request list: default and largest page size; default period (GeoReport:
#: 90 days); the longest period one query may span; most ids in one query.
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_DAYS = 90
MAX_DAYS = 366
MAX_IDS = 50

_EMAIL = re.compile(r"[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")
_PHONE = re.compile(r"\+?[0-9][0-9 -]{5,18}[0-9]")
_ATTR_KEY = re.compile(r"attribute\[([A-Za-z0-9_.-]{1,64})\](?:\[\])?")


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One GeoReport error: HTTP-like ``code``, English ``description``, our ``rule`` name."""

    rule: str
    description: str
    code: int = 400

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "description": self.description, "rule": self.rule}


class Open311Invalid(InvalidInput):
    """A submission or query broke one or more rules (all of them are in ``problems``)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.description for p in problems))
        self.problems = tuple(problems)


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise Open311Invalid(problems)


# --------------------------------------------------------------------------- submissions


@dataclass(frozen=True)
class Submission:
    """A validated ``POST requests``."""

    service_code: str
    description: str
    lon: float | None
    lat: float | None
    address_string: str | None
    address_id: int | None
    attributes: dict[str, Any] = field(default_factory=dict)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    jurisdiction_id: str | None = None

    @property
    def reporter(self) -> dict[str, str]:
        """The reporter's contact details as given (personal data; never public)."""
        name = "".join(x for x in (self.last_name, self.first_name) if x) or None
        found = {"name": name, "phone": self.phone, "email": self.email}
        return {k: v for k, v in found.items() if v}


Fields = Mapping[str, Sequence[str]]


def fields_from_json(body: Any) -> dict[str, list[str]]:
    """A JSON body as form fields: nested ``{"attribute": {...}}`` becomes ``attribute[x]``.

    Raises
    ------
    Open311Invalid
        When the body is not a JSON object of scalars (and one ``attribute`` object).
    """
    if not isinstance(body, dict):
        raise Open311Invalid([Problem("body_invalid", "the body must be a JSON object")])
    out: dict[str, list[str]] = {}
    bad: list[str] = []

    def put(key: str, value: Any) -> None:
        if isinstance(value, list) and all(_scalar(v) for v in value):
            out.setdefault(key, []).extend(_text(v) for v in value)
        elif _scalar(value):
            if value is not None:
                out.setdefault(key, []).append(_text(value))
        else:
            bad.append(key)

    for key, value in body.items():
        if key == "attribute" and isinstance(value, dict):
            for code, v in value.items():
                put(f"attribute[{code}]", v)
        else:
            put(str(key), value)
    if bad:
        raise Open311Invalid(
            [Problem("body_invalid", f"field {k!r} must be a string or a number") for k in bad]
        )
    return out


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _one(fields: Fields, name: str) -> str | None:
    values = [v for v in fields.get(name, ()) if v is not None]
    value = values[-1].strip() if values else ""
    return value or None


def parse_submission(fields: Fields, services: Mapping[str, Service]) -> Submission:
    """Validate a ``POST requests`` (form fields or :func:`fields_from_json`).

    Rules (each a ``rule`` name of the errors raised): ``service_code_missing``,
    ``service_code_unknown``, ``location_missing``, ``location_partial``,
    ``location_invalid``, ``address_too_long``, ``address_id_invalid``,
    ``description_missing``, ``description_too_short``, ``description_too_long``,
    ``attribute_missing``, ``attribute_unknown``, ``attribute_value_invalid``,
    ``email_invalid``, ``phone_invalid``, ``name_too_long``, ``media_url_unsupported``,
    ``text_invalid``. Whether a point lies in the township is checked against the store
    later (``location_outside``).

    Raises
    ------
    Open311Invalid
        With every rule the submission breaks.
    """
    problems: list[Problem] = []
    for name, values in fields.items():
        if any(_bad_text(v) for v in values):
            problems.append(Problem("text_invalid", f"{name} holds control characters"))
    code = _one(fields, "service_code")
    service = None
    if code is None:
        problems.append(Problem("service_code_missing", "service_code is required"))
    else:
        service = services.get(code)
        if service is None:
            # GeoReport: "404 - service_code ... was not found"
            problems.append(
                Problem("service_code_unknown", f"no service {code!r}: see services", 404)
            )
    lon, lat = _location(fields, problems)
    address = _one(fields, "address_string")
    if address and len(address) > MAX_ADDRESS:
        problems.append(Problem("address_too_long", f"address_string over {MAX_ADDRESS} chars"))
    address_id = None
    raw_id = _one(fields, "address_id")
    if raw_id is not None:
        if raw_id.isdigit() and 0 < int(raw_id) < 2**63:
            address_id = int(raw_id)
        else:
            problems.append(Problem("address_id_invalid", "address_id must be a positive integer"))
    located = lon is not None or address or raw_id is not None
    if not located and not any(p.rule.startswith("location") for p in problems):
        problems.append(
            Problem("location_missing", "give lat and long, an address_string or address_id")
        )
    description = _one(fields, "description") or ""
    if not description:
        problems.append(Problem("description_missing", "description is required"))
    elif len(description) < MIN_DESCRIPTION:
        problems.append(
            Problem("description_too_short", f"description needs {MIN_DESCRIPTION}+ characters")
        )
    elif len(description) > MAX_DESCRIPTION:
        problems.append(
            Problem("description_too_long", f"description over {MAX_DESCRIPTION} characters")
        )
    answers = _attributes(fields, service, problems)
    email = _one(fields, "email")
    if email and not _EMAIL.fullmatch(email):
        problems.append(Problem("email_invalid", "email is not an e-mail address"))
    phone = _one(fields, "phone")
    if phone and not _PHONE.fullmatch(phone):
        problems.append(Problem("phone_invalid", "phone must be 7 to 20 digits"))
    names = {n: _one(fields, n) for n in ("first_name", "last_name", "device_id", "account_id")}
    for n, v in names.items():
        if v and len(v) > MAX_NAME:
            problems.append(Problem("name_too_long", f"{n} over {MAX_NAME} characters"))
    if _one(fields, "media_url"):
        problems.append(
            Problem(
                "media_url_unsupported",
                "media_url is not fetched: upload the photo as the multipart field 'media'",
            )
        )
    _raise_if(problems)
    return Submission(
        service_code=code or "",
        description=description,
        lon=lon,
        lat=lat,
        address_string=address,
        address_id=address_id,
        attributes=answers,
        first_name=names["first_name"],
        last_name=names["last_name"],
        email=email,
        phone=phone,
        device_id=names["device_id"],
        account_id=names["account_id"],
        jurisdiction_id=_one(fields, "jurisdiction_id"),
    )


def _bad_text(value: str) -> bool:
    return any(ord(c) < 32 and c not in "\n\r\t" for c in value)


def _location(fields: Fields, problems: list[Problem]) -> tuple[float | None, float | None]:
    raw_lat, raw_lon = _one(fields, "lat"), _one(fields, "long")
    if raw_lat is None and raw_lon is None:
        return None, None
    if raw_lat is None or raw_lon is None:
        problems.append(Problem("location_partial", "lat and long go together"))
        return None, None
    try:
        lat, lon = float(raw_lat), float(raw_lon)
    except ValueError:
        problems.append(Problem("location_invalid", "lat and long must be decimal degrees"))
        return None, None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        problems.append(
            Problem("location_invalid", "lat must be in [-90, 90], long in [-180, 180]")
        )
        return None, None
    return lon, lat


def _attributes(fields: Fields, service: Service | None, problems: list[Problem]) -> dict[str, Any]:
    given: dict[str, list[str]] = {}
    for key, values in fields.items():
        m = _ATTR_KEY.fullmatch(key)
        if m:
            given.setdefault(m.group(1), []).extend(v.strip() for v in values if v.strip())
        elif key.startswith("attribute"):
            problems.append(Problem("attribute_unknown", f"{key!r} is not attribute[code]"))
    if service is None:
        return {}
    known = {a.code: a for a in service.attributes}
    for code in given:
        if code not in known:
            problems.append(Problem("attribute_unknown", f"service has no attribute {code!r}"))
    answers: dict[str, Any] = {}
    for a in service.attributes:
        values = given.get(a.code, [])
        if not values:
            if a.required:
                problems.append(Problem("attribute_missing", f"attribute[{a.code}] is required"))
            continue
        value, why = _attribute_value(a, values)
        if why:
            problems.append(Problem("attribute_value_invalid", f"attribute[{a.code}]: {why}"))
        else:
            answers[a.code] = value
    return answers


def _attribute_value(a: Attribute, values: list[str]) -> tuple[Any, str | None]:
    keys = {k for k, _ in a.values}
    if a.datatype == "multivaluelist":
        wrong = [v for v in values if v not in keys]
        return sorted(set(values)), (f"not among the values: {wrong}" if wrong else None)
    if len(values) > 1:
        return None, "give one value"
    v = values[0]
    if len(v) > MAX_ATTRIBUTE:
        return None, f"over {MAX_ATTRIBUTE} characters"
    if a.datatype == "singlevaluelist":
        return v, (None if v in keys else f"{v!r} is not among the values")
    if a.datatype == "number":
        try:
            n = float(v)
        except ValueError:
            return None, "not a number"
        return (n, None) if math.isfinite(n) else (None, "not a number")
    if a.datatype == "datetime":
        try:
            return format_datetime(_parse_datetime(v)), None
        except ValueError:
            return None, "not an ISO 8601 date-time"
    return v, None


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Query:
    """A validated ``GET requests``."""

    start: datetime
    end: datetime
    statuses: tuple[str, ...] = ()
    service_codes: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    page: int = 1
    page_size: int = PAGE_SIZE


def _parse_datetime(value: str) -> datetime:
    """ISO 8601 date or date-time; without an offset, China time."""
    v = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        return datetime.combine(date.fromisoformat(v), time(), CHINA_TZ)
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    parsed = datetime.fromisoformat(v)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=CHINA_TZ)


def parse_query(params: Fields, services: Iterable[str], *, now: datetime | None = None) -> Query:
    """Validate the parameters of ``GET requests``.

    ``start_date``/``end_date`` (ISO 8601; default: the last :data:`DEFAULT_DAYS` days,
    at most :data:`MAX_DAYS` apart), ``status`` (``open``, ``closed`` or both,
    comma-separated), ``service_code`` (comma-separated), ``service_request_id``
    (comma-separated; the other filters are then ignored), ``page`` and ``page_size``.

    Rules: ``date_invalid``, ``date_range_invalid``, ``date_range_too_long``,
    ``status_invalid``, ``service_code_unknown``, ``paging_invalid``, ``ids_invalid``.
    """
    problems: list[Problem] = []
    now = now or datetime.now(UTC)
    parsed: dict[str, datetime | None] = {}
    for name in ("start_date", "end_date"):
        raw = _one(params, name)
        parsed[name] = None
        if raw is not None:
            try:
                parsed[name] = _parse_datetime(raw)
            except ValueError:
                problems.append(Problem("date_invalid", f"{name} is not an ISO 8601 date-time"))
    start, end = parsed["start_date"], parsed["end_date"]
    if end is None:  # up to now (an empty period when it starts later)
        end = now if start is None else max(now, start)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS)
    if start > end:
        problems.append(Problem("date_range_invalid", "start_date is after end_date"))
    elif end - start > timedelta(days=MAX_DAYS):
        problems.append(Problem("date_range_too_long", f"at most {MAX_DAYS} days per query"))
    statuses = _csv(params, "status")
    if any(s not in ("open", "closed") for s in statuses):
        problems.append(Problem("status_invalid", "status is open, closed or open,closed"))
    known = set(services)
    codes = _csv(params, "service_code")
    unknown = [c for c in codes if c not in known]
    if unknown:
        problems.append(Problem("service_code_unknown", f"no service {', '.join(unknown)}"))
    ids = _csv(params, "service_request_id")
    if len(ids) > MAX_IDS or any(len(i) > 40 for i in ids):
        problems.append(Problem("ids_invalid", f"at most {MAX_IDS} service_request_id values"))
    page = _int(params, "page", 1, 1, 10**6, problems)
    size = _int(params, "page_size", PAGE_SIZE, 1, MAX_PAGE_SIZE, problems)
    _raise_if(problems)
    return Query(start, end, tuple(statuses), tuple(codes), tuple(ids), page, size)


def _csv(params: Fields, name: str) -> list[str]:
    raw = _one(params, name)
    return [x.strip() for x in raw.split(",") if x.strip()] if raw else []


def _int(params: Fields, name: str, default: int, lo: int, hi: int, out: list[Problem]) -> int:
    raw = _one(params, name)
    if raw is None:
        return default
    if raw.isdigit() and lo <= int(raw) <= hi:
        return int(raw)
    out.append(Problem("paging_invalid", f"{name} must be an integer from {lo} to {hi}"))
    return default
