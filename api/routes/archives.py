"""Routes: archive bundles (一户一档、一组一本、一格一盒) as zip downloads, ``/api/archives``.

``GET /api/archives/{kind}/{code}`` answers the masked bundle; ``POST …/unmasked`` the
bundle with full personal data (the ``unmask`` permission and a reason, audited). Reads run
on the request's scoped connection (row-level security) with the scope bound into the SQL;
a household outside the scope is not found, like one that does not exist. What a bundle
holds: :mod:`geogrid.archives.bundle`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.auth import ScopedConnDep, allow, client_ip, require
from api.routes.people import KeysDep
from geogrid.access.policy import Principal, check
from geogrid.archives import bundle, data
from geogrid.people.crypto import KeyProvider

router = APIRouter(prefix="/api/archives", tags=["archives"])

ExportDep = Annotated[Principal | None, Depends(allow("archive.export"))]
UnmaskDep = Annotated[Principal | None, Depends(allow("archive.unmask"))]
Kind = Annotated[
    str,
    PathParam(pattern=r"^(household|group|grid)$", description="一户一档 / 一组一本 / 一格一盒"),
]
Code = Annotated[
    str,
    PathParam(
        pattern=r"^(\d{1,18}|\d{12}-\d{1,3})$",
        description="household id, village code-group number (420117105201-3) or grid code",
    ),
]
ZIP_200: dict[int | str, dict[str, Any]] = {
    200: {"description": "The bundle (zip).", "content": {"application/zip": {}}}
}


class UnmaskBody(BaseModel):
    reason: str = Field(min_length=2, max_length=500, description="事由: why full personal data")


def _download(
    request: Request,
    conn: Any,
    principal: Principal,
    action: str,
    kind: str,
    code: str,
    provider: KeyProvider | None = None,
    reason: str | None = None,
) -> Response:
    unit = data.resolve(conn, kind, code)
    if unit.kind != "household":  # a household out of scope is simply not found
        check(principal, action, unit.scope_code)
    with tempfile.TemporaryDirectory(prefix="geogrid-archive-") as tmp:
        b = bundle.export_unit(
            conn, kind, code, Path(tmp), actor=principal, prefix=principal.scope.prefix,
            provider=provider, reason=reason, ip=client_ip(request),
        )  # fmt: skip
        body = bundle.zip_bundle(b)
    conn.commit()  # the audit entries
    return Response(
        body,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{b.path.name}.zip"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/{kind}/{code}", responses=ZIP_200, response_class=Response, summary="Archive bundle")
def archive(
    request: Request, principal: ExportDep, conn: ScopedConnDep, kind: Kind, code: Code
) -> Response:
    """A household's file, a group's book or a grid's box: PDF, Excel, GeoPackage, manifest
    (personal data masked), as a zip."""
    return _download(request, conn, require(principal), "archive.export", kind, code)


@router.post(
    "/{kind}/{code}/unmasked",
    responses=ZIP_200,
    response_class=Response,
    summary="Archive bundle with full personal data",
)
def archive_unmasked(
    request: Request,
    principal: UnmaskDep,
    conn: ScopedConnDep,
    keys: KeysDep,
    kind: Kind,
    code: Code,
    body: UnmaskBody,
) -> Response:
    """The bundle with members' full names, ID numbers and phones (audited with the reason)."""
    return _download(
        request, conn, require(principal), "archive.unmask", kind, code, keys, body.reason
    )
