"""Web assets (page scripts, styles, npm packages) answered gzip-compressed when the client
accepts it: grid workers open the field app over poor village signal, and its first load
must stay small (issue 13: under 500 KB before map tiles).

Text assets of at least :data:`MIN_GZIP_BYTES` are compressed once per file version (its
path, modification time and size) and kept in a small per-process cache; they carry a
weak ETag of that version, answer ``If-None-Match`` with 304, and say
``Vary: Accept-Encoding``. Anything else (images, fonts, a client that does not accept
gzip) is the file itself, as :class:`~starlette.responses.FileResponse` serves it.
"""

from __future__ import annotations

import gzip
import mimetypes
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import Final

from fastapi import Request
from fastapi.responses import FileResponse, Response

__all__ = ["MIN_GZIP_BYTES", "asset_response"]

#: Types worth compressing (already-compressed images and fonts are not).
TEXT_SUFFIXES: Final = frozenset(
    {".js", ".mjs", ".css", ".json", ".map", ".svg", ".html", ".txt", ".webmanifest"}
)
#: Smaller files gain less than the header costs.
MIN_GZIP_BYTES: Final = 1024


@lru_cache(maxsize=128)
def _gzipped(path: str, mtime_ns: int, size: int) -> bytes:
    """The gzip bytes of one version of a file (fixed mtime: stable bytes)."""
    del mtime_ns, size  # the cache key: a changed file is compressed again
    return gzip.compress(Path(path).read_bytes(), compresslevel=6, mtime=0)


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        name, _, q = part.strip().partition(";")
        if name.strip() in ("gzip", "*") and q.strip().replace(" ", "") not in ("q=0", "q=0.0"):
            return True
    return False


def _media_type(path: Path) -> str:
    if path.suffix == ".webmanifest":
        return "application/manifest+json"
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return (
        f"{kind}; charset=utf-8"
        if kind.startswith("text/") or kind.endswith(("javascript", "json"))
        else kind
    )


def asset_response(request: Request, path: Path, cache_control: str) -> Response:
    """Answer ``path`` (resolved and checked by the caller) with ``Cache-Control``
    ``cache_control``; gzip-compressed when worth it and accepted."""
    st = path.stat()
    if (
        path.suffix.lower() not in TEXT_SUFFIXES
        or st.st_size < MIN_GZIP_BYTES
        or not _accepts_gzip(request)
    ):
        return FileResponse(path, headers={"Cache-Control": cache_control,
                                           "Vary": "Accept-Encoding"})  # fmt: skip
    etag = f'W/"{st.st_mtime_ns:x}-{st.st_size:x}-gz"'
    headers = {
        "Cache-Control": cache_control,
        "ETag": etag,
        "Last-Modified": formatdate(st.st_mtime, usegmt=True),
        "Vary": "Accept-Encoding",
    }
    wanted = {t.strip() for t in request.headers.get("if-none-match", "").split(",")}
    if etag in wanted or "*" in wanted:
        return Response(status_code=304, headers=headers)
    body = _gzipped(str(path), st.st_mtime_ns, st.st_size)
    return Response(
        body, media_type=_media_type(path), headers={**headers, "Content-Encoding": "gzip"}
    )
