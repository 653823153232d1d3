"""Open311 GeoReport v2 over the case workflow: services, requests, resident tokens.

The township's case categories are GeoReport *services* (``service_code`` = the category
code, ``group`` = its top class); every case is a *service request* whose
``service_request_id`` is the case number. Residents submit requests anonymously; each
submission returns a secret **token** (shown once, stored only as a keyed hash) with which
the resident sees more of their own request than the public: their contact details as they
gave them, the answers to the service's attributes and the public history.

What the public sees of a request is fixed here, in :data:`PUBLIC_FIELDS`: nothing about
the reporter, and of the workflow only ``open``/``closed``, the note of the last *public*
event (``status_notes``) and the deadline (``expected_datetime``).

Input validation is in :mod:`geogrid.cases.open311_input`; the store (tokens, rate
limits, reads of cases) in :mod:`geogrid.cases.open311_store`.

This module imports no web framework; :mod:`api.routes.open311` serves it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from xml.etree import ElementTree as ET

from geogrid.errors import Forbidden, NotFound

__all__ = [
    "CHINA_TZ",
    "DISCOVERY_FORMATS",
    "PUBLIC_FIELDS",
    "SPECIFICATION",
    "Attribute",
    "RequestRecord",
    "Service",
    "discovery_document",
    "format_datetime",
    "hash_token",
    "new_token",
    "normalise_token",
    "request_private",
    "request_public",
    "service_definition",
    "service_entry",
    "to_xml",
]

#: Times are written in China Standard Time (no daylight saving): ``+08:00``.
CHINA_TZ = timezone(timedelta(hours=8))
DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
#: Token alphabet (Crockford base32: no I, L, O, U, easy to read out and type).
_TOKEN_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TOKEN_LENGTH = 12  # 60 bits

#: Fields of a public service request, in GeoReport v2 order.
PUBLIC_FIELDS = (
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
)


# --------------------------------------------------------------------------- tokens


def new_token() -> str:
    """A new resident token: 12 characters of Crockford base32 in groups of four.

    >>> t = new_token(); len(t), t.count("-")
    (14, 2)
    """
    raw = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, TOKEN_LENGTH, 4))


def normalise_token(token: str) -> str:
    """The token as typed, upper-cased, without spaces or dashes, O→0 and I/L→1.

    Raises
    ------
    Forbidden
        When it cannot be a token (wrong length or letters): the same answer as a wrong one.

    >>> normalise_token(" abcd-efgh-jk0o ")
    'ABCDEFGHJK00'
    """
    t = re.sub(r"[\s-]", "", token or "").upper().translate(str.maketrans("OIL", "011"))
    if len(t) != TOKEN_LENGTH or any(c not in _TOKEN_ALPHABET for c in t):
        raise Forbidden("wrong token for this request")
    return t


def hash_token(secret: bytes, token: str) -> str:
    """The stored form of a token: HMAC-SHA256 under the server secret, hex.

    >>> hash_token(b"k", "abcd-efgh-jk00") == hash_token(b"k", "ABCDEFGHJK00")
    True
    """
    return hmac.new(secret, normalise_token(token).encode(), hashlib.sha256).hexdigest()


def rate_key(secret: bytes, client: str | None) -> str:
    """The key a client's submissions are counted under (its address is not stored)."""
    return hmac.new(secret, f"ip:{client or '?'}".encode(), hashlib.sha256).hexdigest()[:32]


# --------------------------------------------------------------------------- services


@dataclass(frozen=True)
class Attribute:
    """A question a service asks (GeoReport ``attributes``)."""

    code: str
    datatype: str
    description: str
    required: bool = False
    order: int = 0
    values: tuple[tuple[str, str], ...] = ()
    datatype_description: str | None = None
    variable: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "variable": self.variable,
            "code": self.code,
            "datatype": self.datatype,
            "required": self.required,
            "datatype_description": self.datatype_description,
            "order": self.order,
            "description": self.description,
            "values": [{"key": k, "name": n} for k, n in self.values],
        }


@dataclass(frozen=True)
class Service:
    """A case category as a GeoReport service."""

    code: str
    name: str
    description: str = ""
    group: str | None = None
    keywords: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    days: int | None = None  # handling time limit, for the service notice
    type: str = "realtime"


def service_entry(s: Service) -> dict[str, Any]:
    """One element of ``GET services`` (GeoReport v2 field order)."""
    return {
        "service_code": s.code,
        "service_name": s.name,
        "description": s.description,
        "metadata": bool(s.attributes),
        "type": s.type,
        "keywords": ",".join(s.keywords),
        "group": s.group or "",
    }


def service_definition(s: Service) -> dict[str, Any]:
    """``GET services/{code}``: the service's attributes in their order."""
    attrs = sorted(s.attributes, key=lambda a: (a.order, a.code))
    return {"service_code": s.code, "attributes": [a.as_dict() for a in attrs]}


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestRecord:
    """What :mod:`geogrid.cases.open311_store` reads of one case for Open311."""

    service_request_id: str
    service_code: str
    service_name: str
    closed: bool
    description: str | None
    requested: datetime
    updated: datetime | None
    expected: datetime | None
    lon: float | None
    lat: float | None
    address: str | None = None
    address_id: int | None = None
    agency: str | None = None
    status_notes: str | None = None
    media_url: str | None = None
    # the resident's own view (token holders only)
    media_urls: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    state: str | None = None


def format_datetime(value: datetime | None) -> str | None:
    """ISO 8601 in China time, seconds precision: ``2026-11-30T15:04:05+08:00``.

    >>> format_datetime(datetime(2026, 11, 30, 7, 4, 5, tzinfo=UTC))
    '2026-11-30T15:04:05+08:00'
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(CHINA_TZ).replace(microsecond=0).isoformat()


def service_notice(expected: datetime | None) -> str | None:
    """What the resident is told to expect, from the deadline."""
    if expected is None:
        return None
    return f"限时办结：预计 {expected.astimezone(CHINA_TZ):%Y-%m-%d %H:%M} 前处理完毕"


def request_public(r: RequestRecord) -> dict[str, Any]:
    """The public GeoReport v2 view of a request: :data:`PUBLIC_FIELDS`, nothing more."""
    return {
        "service_request_id": r.service_request_id,
        "status": "closed" if r.closed else "open",
        "status_notes": r.status_notes,
        "service_name": r.service_name,
        "service_code": r.service_code,
        "description": r.description,
        "agency_responsible": r.agency,
        "service_notice": None if r.closed else service_notice(r.expected),
        "requested_datetime": format_datetime(r.requested),
        "updated_datetime": format_datetime(r.updated or r.requested),
        "expected_datetime": format_datetime(r.expected),
        "address": r.address,
        "address_id": r.address_id,
        "zipcode": None,
        "lat": None if r.lat is None else round(r.lat, 6),
        "long": None if r.lon is None else round(r.lon, 6),
        "media_url": r.media_url,
    }


def request_private(r: RequestRecord) -> dict[str, Any]:
    """The token holder's view: the public fields plus ``workflow_status`` (the case's
    step), ``attributes`` (the answers given), ``media_urls`` (every public photo) and
    ``history`` (the public events). Still nothing of the reporter's contact details."""
    return {
        **request_public(r),
        "workflow_status": r.state,
        "media_urls": list(r.media_urls),
        "attributes": dict(r.attributes),
        "history": [dict(h) for h in r.history],
    }


def not_found(request_id: str) -> NotFound:
    return NotFound(f"no service request {request_id!r}")


# --------------------------------------------------------------------------- discovery

#: The token of the GeoReport v2 specification in a discovery document.
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
#: MIME types every endpoint answers in (``.xml`` and ``.json``), XML first as the spec
#: requires XML and offers JSON.
DISCOVERY_FORMATS = ("text/xml", "application/json")


def discovery_document(
    *, endpoint_url: str, changeset: datetime, contact: str, key_service: str
) -> dict[str, Any]:
    """The Open311 Service Discovery document (``discovery.json`` / ``.xml``).

    Every field the discovery specification requires: ``changeset`` (when the service list
    or definitions last changed: a sortable ISO 8601 time, always written in China time),
    ``contact``, ``key_service`` and one ``production`` GeoReport v2 endpoint with its
    formats (the Spark convention: the XML ``endpoints/endpoint`` and ``formats/format``
    lists are JSON arrays).

    >>> at = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    >>> doc = discovery_document(endpoint_url="https://x.example/open311/v2", changeset=at,
    ...                          contact="c", key_service="k")
    >>> list(doc), doc["changeset"]
    (['changeset', 'contact', 'key_service', 'endpoints'], '2026-11-30T11:00:00+08:00')
    >>> list(doc["endpoints"][0])
    ['specification', 'url', 'changeset', 'type', 'formats']
    """
    stamp = format_datetime(changeset)
    return {
        "changeset": stamp,
        "contact": contact,
        "key_service": key_service,
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": endpoint_url,
                "changeset": stamp,
                "type": "production",
                "formats": list(DISCOVERY_FORMATS),
            }
        ],
    }


# --------------------------------------------------------------------------- XML


_XML_LISTS = {"services": "service", "service_requests": "request", "errors": "error"}
#: Singular element names of nested lists (GeoReport and the discovery document).
_XML_ITEMS = {
    "attributes": "attribute",
    "values": "value",
    "history": "event",
    "endpoints": "endpoint",
    "formats": "format",
}


def to_xml(root: str, items: Any) -> bytes:
    """GeoReport XML: ``<services><service>…</service></services>`` and so on.

    ``root`` is ``services``, ``service_requests``, ``errors``, ``service_definition`` or
    ``discovery`` (a dict); nested lists become repeated elements of the singular name. The
    root element follows the XML declaration with ``encoding="UTF-8"``, as GeoReport asks.

    >>> xml = to_xml("services", [{"service_code": "a", "metadata": False}])
    >>> xml.split(b"?>")[0] + b"?>"
    b'<?xml version="1.0" encoding="UTF-8"?>'
    >>> xml.split(b"?>")[1].strip()
    b'<services><service><service_code>a</service_code><metadata>false</metadata></service></services>'
    """
    el = ET.Element(root)
    if isinstance(items, dict):
        _xml_fill(el, items)
    else:
        for item in items:
            _xml_fill(ET.SubElement(el, _XML_LISTS.get(root, "item")), item)
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(el, encoding="unicode").encode()
    )


def _xml_fill(el: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, list):
                holder = ET.SubElement(el, k)
                for item in v:
                    _xml_fill(ET.SubElement(holder, _XML_ITEMS.get(k, "item")), item)
            else:
                _xml_fill(ET.SubElement(el, k), v)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    elif value is not None:
        el.text = str(value)
