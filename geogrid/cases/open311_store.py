"""Open311 against the store: services from the category dictionary, submissions through
the case service, public reads, resident tokens and the per-client rate limit.

Cases are created and read only through :mod:`geogrid.cases.service` (anonymous
``principal=None`` for residents, public readers without any personal data); this module
writes only its own tables (migration 0016): ``open311_requests`` (token hash, address id,
attribute answers) and ``open311_rate``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from geogrid.cases import machine, queries, service
from geogrid.cases.open311 import (
    Attribute,
    RequestRecord,
    Service,
    format_datetime,
    hash_token,
    service_notice,
)
from geogrid.cases.open311_input import Open311Invalid, Problem, Query, Submission
from geogrid.errors import Forbidden, GeogridError, InvalidInput, NotFound
from geogrid.files import IMAGE_TYPES, sniff_type
from geogrid.ingest.address import normalise_address

__all__ = [
    "RateLimited",
    "Submitted",
    "case_id_of",
    "check_rate",
    "get_request",
    "list_requests",
    "load_services",
    "public_case",
    "request_for_token",
    "services_changed_at",
    "submit",
]

#: Category classes not offered to the public: 特殊人群 (special populations) are sensitive
#: personal information (PIPL); residents raise them by the hotline or with their grid worker.
PRIVATE_CLASSES = ("05",)
#: Sources whose cases are public service requests: residents' own reports (Open311, the
#: hotline); the staff's patrol and inspection reports stay internal.
PUBLIC_SOURCES = ("open311", "hotline")
#: Submissions one client may make per window (``open311.submit``), and the window.
SUBMIT_LIMIT = 20
SUBMIT_WINDOW_S = 3600
#: Largest photo a resident may upload (the request body is capped at 1 MiB before that).
MAX_MEDIA_BYTES = 1024 * 1024
#: Public media: the resident's photos only, as thumbnails.
MEDIA_PATH = "/open311/v2/media/{id}/{sha}.jpg"


#: The ``layer_versions`` row bumped when a category, time limit or attribute changes (when
#: the schema has it).
SERVICES_VERSION = "open311"


def services_changed_at(conn: Connection) -> datetime:
    """When the service list or a service definition last changed (discovery's changeset).

    The ``layer_versions`` row :data:`SERVICES_VERSION` when the schema keeps one (statement
    triggers on the dictionary tables bump it); otherwise the last audited edit of the
    category dictionary (``case.admin`` on a ``case_category``: names, activity, time
    limits), and with no edit at all the oldest data-version change standing (a stable time
    that only ever moves forward). Every value is a time, so changesets sort.
    """
    own, edited, installed = conn.execute(
        text(
            """
            SELECT (SELECT changed_at FROM layer_versions WHERE layer = :layer),
                   (SELECT max(a.at) FROM audit_log a WHERE a.action = 'case.admin'
                     AND a.target_type = 'case_category' AND a.outcome = 'ok'),
                   (SELECT min(changed_at) FROM layer_versions)
            """
        ),
        {"layer": SERVICES_VERSION},
    ).one()
    found = own or max((t for t in (edited, installed) if t is not None), default=None)
    return found if isinstance(found, datetime) else datetime(1970, 1, 1, tzinfo=UTC)


class RateLimited(GeogridError):
    """Too many submissions from one client in the window (HTTP 429)."""


# --------------------------------------------------------------------------- services


def _attributes(conn: Connection) -> dict[str | None, list[Attribute]]:
    rows = conn.execute(
        text(
            "SELECT service_code, code, datatype, description, required, sort, values "
            "FROM open311_attributes WHERE active ORDER BY sort, code"
        )
    )
    found: dict[str | None, list[Attribute]] = {}
    for r in rows:
        values = tuple((str(v["key"]), str(v["name"])) for v in (r.values or []))
        found.setdefault(r.service_code, []).append(
            Attribute(
                code=r.code,
                datatype=r.datatype,
                description=r.description,
                required=bool(r.required),
                order=int(r.sort),
                values=values,
            )
        )
    return found


def load_services(conn: Connection) -> dict[str, Service]:
    """Every active case category as a service, keyed by code, in code order (except the
    :data:`PRIVATE_CLASSES`).

    A class (2-digit code) is its own group; a subclass belongs to its class's group.
    Attributes with no service code are asked by every service.
    """
    cats = service.list_categories(conn)
    names = {c.code: c.name for c in cats}
    subs: dict[str, list[str]] = {}
    for c in cats:
        if c.parent_code:
            subs.setdefault(c.parent_code, []).append(c.name)
    attrs = _attributes(conn)
    common = attrs.get(None, [])
    out: dict[str, Service] = {}
    for c in sorted(cats, key=lambda c: c.code):
        if not c.active or c.code.startswith(PRIVATE_CLASSES):
            continue
        group = names.get(c.parent_code or "", c.name) if c.parent_code else c.name
        own = attrs.get(c.code, [])
        mine = {a.code for a in own}
        out[c.code] = Service(
            code=c.code,
            name=c.name,
            description=_describe(c, subs.get(c.code, [])),
            group=group,
            keywords=tuple(subs.get(c.code, [])),
            attributes=(*own, *(a for a in common if a.code not in mine)),
        )
    return out


def _describe(cat: Any, subclasses: list[str]) -> str:
    en = getattr(cat, "name_en", None)
    base = f"{cat.name}（{en}）" if en else str(cat.name)
    return base + (f"：{'、'.join(subclasses)}" if subclasses else "")


# --------------------------------------------------------------------------- rate limit


def check_rate(
    conn: Connection,
    key: str,
    *,
    limit: int = SUBMIT_LIMIT,
    window_s: int = SUBMIT_WINDOW_S,
    now: datetime | None = None,
) -> int:
    """Count one submission of client ``key`` in the current window; raise past ``limit``.

    Commits nothing itself: the caller's transaction holds the count (a refused request
    still counts, so hammering does not help). Windows older than a day are dropped.

    Raises
    ------
    RateLimited
        When this is submission ``limit + 1`` (or later) of the window.
    """
    now = now or datetime.now(UTC)
    start = datetime.fromtimestamp(now.timestamp() // window_s * window_s, UTC)
    n = conn.execute(
        text(
            "INSERT INTO open311_rate (key, window_start, n) VALUES (:k, :w, 1) "
            "ON CONFLICT (key, window_start) DO UPDATE SET n = open311_rate.n + 1 RETURNING n"
        ),
        {"k": key, "w": start},
    ).scalar_one()
    conn.execute(
        text("DELETE FROM open311_rate WHERE window_start < :w - interval '1 day'"), {"w": start}
    )
    if n > limit:
        raise RateLimited(
            f"at most {limit} submissions per {window_s // 60} minutes from one client; "
            "try again later"
        )
    return int(n)


# --------------------------------------------------------------------------- submissions


@dataclass(frozen=True)
class Submitted:
    """A stored submission: the request id, the token (shown once) and the deadline."""

    service_request_id: str
    token: str
    expected: datetime | None
    service_notice: str | None


def _locate(conn: Connection, sub: Submission) -> tuple[float, float]:
    """The point of a submission: lat/long, else the address point of ``address_id`` or of
    ``address_string`` (normalised as the household importer does); inside a village."""
    if sub.lon is not None and sub.lat is not None:
        lon, lat = sub.lon, sub.lat
    else:
        row = None
        if sub.address_id is not None:
            row = conn.execute(
                text("SELECT ST_X(geom) AS x, ST_Y(geom) AS y FROM address_points WHERE id = :i"),
                {"i": sub.address_id},
            ).one_or_none()
            if row is None:
                raise Open311Invalid([Problem("address_id_invalid", "no such address_id")])
        elif sub.address_string:
            row = conn.execute(
                text(
                    "SELECT ST_X(geom) AS x, ST_Y(geom) AS y FROM address_points "
                    "WHERE address_norm = :a"
                ),
                {"a": normalise_address(sub.address_string)},
            ).one_or_none()
        if row is None:
            raise Open311Invalid(
                [Problem("location_unresolved", "address not found: give lat and long")]
            )
        lon, lat = float(row.x), float(row.y)
    inside = conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM admin_areas WHERE level = 'village' "
            "AND ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326)))"
        ),
        {"x": lon, "y": lat},
    ).scalar_one()
    if not inside:
        raise Open311Invalid(
            [Problem("location_outside", "the point is outside every village of the township")]
        )
    return lon, lat


def submit(
    conn: Connection,
    sub: Submission,
    *,
    secret: bytes,
    token: str,
    home: Path,
    media: Sequence[tuple[str, bytes]] = (),
    ip: str | None = None,
) -> Submitted:
    """Create the case of a validated submission and remember its token's hash.

    Parameters
    ----------
    conn
        A connection in a transaction (the caller commits).
    sub
        What :func:`geogrid.cases.open311_input.parse_submission` returned.
    secret
        The server secret the token is hashed under.
    token
        The resident's new token (:func:`geogrid.cases.open311.new_token`).
    home
        ``GEOGRID_HOME``: uploaded photos go to its file store.
    media
        ``(file name, bytes)`` of uploaded photos.
    ip
        The client's address, for the case service's audit entry.

    Raises
    ------
    Open311Invalid
        For a point that cannot be placed (``location_*``) or a photo the store refuses
        (``media_invalid``).
    """
    lon, lat = _locate(conn, sub)
    shas = []
    for name, data in media:
        if sniff_type(data) not in IMAGE_TYPES:
            raise Open311Invalid(
                [Problem("media_invalid", "media must be a JPEG, PNG or WebP photo")]
            )
        try:
            stored = service.upload_file(
                conn, principal=None, home=home, data=data, filename=name or "photo.jpg",
                max_bytes=MAX_MEDIA_BYTES,
            )  # fmt: skip
        except InvalidInput as exc:
            raise Open311Invalid([Problem("media_invalid", f"media: {exc.message}")]) from None
        shas.append(stored.sha256)
    reporter = sub.reporter
    created = service.create_case(
        conn,
        principal=None,
        category=sub.service_code,
        lon=lon,
        lat=lat,
        description=sub.description,
        source="open311",
        reporter=service.Reporter(name=reporter.get("name"), phone=reporter.get("phone"))
        if reporter.get("name") or reporter.get("phone")
        else None,
        attachments=shas,
        address=sub.address_string,
        ip=ip,
    )
    case = created.case
    conn.execute(
        text(
            "INSERT INTO open311_requests (case_id, token_hash, address_id, attributes) "
            "VALUES (:c, :t, :a, CAST(:attrs AS jsonb))"
        ),
        {
            "c": case.id,
            "t": hash_token(secret, token),
            "a": sub.address_id,
            "attrs": _json(sub.attributes),
        },
    )
    due = _parse_time(getattr(case, "due_at", None))
    return Submitted(str(case.id), token, due, service_notice(due))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


# --------------------------------------------------------------------------- reads


def _record(
    pc: Any,
    services: Mapping[str, Service],
    base_url: str,
    extra: Any = None,
    agency: str | None = None,
    closed_at: datetime | None = None,
) -> RequestRecord:
    code = pc.category_code or ""
    svc = services.get(code)
    media = [MEDIA_PATH.format(id=pc.id, sha=s) for s in (pc.media or [])]
    closed = pc.status in machine.CLOSED_STATUSES
    return RequestRecord(
        service_request_id=str(pc.id),
        service_code=code,
        service_name=svc.name if svc else pc.category,
        closed=closed,
        description=pc.description,
        requested=pc.reported_at,
        # GeoReport: "for requests with status=closed, this will be the date the request
        # was closed" (not a later archiving or comment)
        updated=(closed_at if closed and closed_at else pc.updated_at),
        expected=pc.due_at,
        lon=pc.lon,
        lat=pc.lat,
        address=pc.address,
        address_id=None if extra is None else extra.address_id,
        agency=agency,
        status_notes=pc.last_public_note,
        media_url=base_url.rstrip("/") + media[0] if media else None,
        state=pc.status,
    )


def _agencies(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    """The name of the post each case is with (a grid, village, department or the town's
    centre; never a person), from the case service's own summary query."""
    if not ids:
        return {}
    rows = conn.execute(text(f"{queries.SUMMARY_SQL} WHERE c.id = ANY(:ids)"), {"ids": list(ids)})
    return {int(r.id): str(r.assignee_name) for r in rows if r.assignee_name}


def _extras(conn: Connection, ids: Sequence[int]) -> dict[int, Any]:
    if not ids:
        return {}
    rows = conn.execute(
        text(
            "SELECT case_id, address_id, attributes FROM open311_requests WHERE case_id = ANY(:ids)"
        ),
        {"ids": list(ids)},
    )
    return {int(r.case_id): r for r in rows}


def _closed_at(conn: Connection, ids: Sequence[int]) -> dict[int, datetime]:
    """When each of these cases was closed: its first step into a closed status (closed,
    rejected, voided, merged; an archiving comes later)."""
    if not ids:
        return {}
    rows = conn.execute(
        text(
            "SELECT case_id, min(at) AS at FROM case_events WHERE case_id = ANY(:ids) "
            "AND to_status = ANY(:closed) GROUP BY case_id"
        ),
        {"ids": list(ids), "closed": sorted(machine.CLOSED_STATUSES)},
    )
    return {int(r.case_id): r.at for r in rows}


def case_id_of(request_id: str) -> int:
    """The case id a request id names (:class:`NotFound` for anything but one)."""
    if not request_id.isdigit() or not 0 < int(request_id) < 2**63:
        raise NotFound(f"no service request {request_id!r}")
    return int(request_id)


#: The public events of a case (read-only use of the case service's table, as agreed).
_HISTORY_SQL = (
    "SELECT at, action, to_status, note FROM case_events WHERE case_id = :c AND public "
    "AND at >= (SELECT reported_at FROM cases WHERE id = :c) ORDER BY seq"  # months pruned
)


def get_request(
    conn: Connection,
    request_id: str,
    services: Mapping[str, Service],
    *,
    base_url: str,
    token_hash: str | None = None,
) -> tuple[RequestRecord, bool]:
    """One request, and whether ``token_hash`` proved it the caller's own.

    With a token hash, the record also carries the attribute answers and the public
    history; a wrong token is refused (never silently downgraded to the public view).

    Raises
    ------
    NotFound
        No such request.
    Forbidden
        ``token_hash`` given but not this request's.
    """
    case_id = case_id_of(request_id)
    pc = public_case(conn, case_id)
    extra = _extras(conn, [pc.id]).get(pc.id)
    record = _record(
        pc,
        services,
        base_url,
        extra,
        _agencies(conn, [pc.id]).get(pc.id),
        _closed_at(conn, [pc.id] if pc.status in machine.CLOSED_STATUSES else []).get(pc.id),
    )
    if token_hash is None:
        return record, False
    owned = conn.execute(
        text("SELECT 1 FROM open311_requests WHERE case_id = :c AND token_hash = :t"),
        {"c": case_id, "t": token_hash},
    ).first()
    if owned is None:
        raise Forbidden("wrong token for this request")
    media = [base_url.rstrip("/") + MEDIA_PATH.format(id=pc.id, sha=s) for s in pc.media or []]
    history = tuple(
        {"at": format_datetime(r.at), "status": r.to_status, "action": r.action, "note": r.note}
        for r in conn.execute(text(_HISTORY_SQL), {"c": pc.id})
    )
    return (
        replace(
            record,
            attributes=dict(extra.attributes) if extra is not None else {},
            history=history,
            media_urls=tuple(media),
        ),
        True,
    )


def request_for_token(conn: Connection, token_hash: str) -> str:
    """The request id a token belongs to.

    Raises
    ------
    Forbidden
        No request has this token.
    """
    case_id = conn.execute(
        text("SELECT case_id FROM open311_requests WHERE token_hash = :t"), {"t": token_hash}
    ).scalar_one_or_none()
    if case_id is None:
        raise Forbidden("wrong token")
    return str(case_id)


#: The case service's public view of a case (no personal data) — its own SELECT, reused
#: here with Open311's conditions (read-only use of the case tables, as agreed).
_LIST_SQL = queries._PUBLIC_SQL


def _public_where(query: Query) -> tuple[list[str], dict[str, Any]]:
    """Conditions of the public list: residents' requests of public services, reported in
    the period, of the statuses and services asked for."""
    where = [
        "c.status <> 'merged'",
        "c.source = ANY(:sources)",
        "NOT (coalesce(c.category_code, '') LIKE ANY(:private))",
        "c.reported_at >= :start",
        "c.reported_at < :end",
    ]
    params: dict[str, Any] = {
        "sources": list(PUBLIC_SOURCES),
        "private": [f"{p}%" for p in PRIVATE_CLASSES],
        "start": query.start,
        "end": query.end,
    }
    if query.statuses and set(query.statuses) != {"open", "closed"}:
        closed = "closed" in query.statuses
        where.append("c.status = ANY(:statuses)")
        params["statuses"] = sorted(machine.CLOSED_STATUSES if closed else machine.OPEN_STATUSES)
    if query.service_codes:
        where.append("c.category_code LIKE ANY(:codes)")
        params["codes"] = [f"{c}%" for c in query.service_codes]
    return where, params


def public_case(conn: Connection, case_id: int) -> Any:
    """The public view of a case that is a public request (else :class:`NotFound`, the same
    answer as for a case that does not exist)."""
    pc = service.public_case(conn, case_id=case_id)
    row = conn.execute(
        text("SELECT source, category_code FROM cases WHERE id = :i"), {"i": pc.id}
    ).one()
    if row.source not in PUBLIC_SOURCES or (row.category_code or "").startswith(PRIVATE_CLASSES):
        raise NotFound(f"no service request {case_id}")
    return pc


def list_requests(
    conn: Connection, query: Query, services: Mapping[str, Service], *, base_url: str
) -> list[RequestRecord]:
    """The public requests a validated query selects, newest first: residents' own reports
    (:data:`PUBLIC_SOURCES`) of public services; merged duplicates left out (asked for by
    id, a duplicate answers with its original)."""
    cases: list[Any] = []
    if query.ids:
        for i in dict.fromkeys(query.ids):
            try:
                cases.append(public_case(conn, case_id_of(i)))
            except NotFound:
                continue
    else:
        where, params = _public_where(query)
        params.update(lim=query.page_size, off=(query.page - 1) * query.page_size)
        rows = conn.execute(
            text(
                f"{_LIST_SQL} WHERE {' AND '.join(where)} "
                "ORDER BY c.reported_at DESC, c.id DESC LIMIT :lim OFFSET :off"
            ),
            params,
        )
        cases = [queries._public(r) for r in rows]
    ids = [c.id for c in cases]
    extras, agencies = _extras(conn, ids), _agencies(conn, ids)
    closed = _closed_at(conn, [c.id for c in cases if c.status in machine.CLOSED_STATUSES])
    return [
        _record(c, services, base_url, extras.get(c.id), agencies.get(c.id), closed.get(c.id))
        for c in cases
    ]
