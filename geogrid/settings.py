"""Typed settings (pydantic-settings, prefix ``GEOGRID_``).

Nothing reads the environment at import time: build a :class:`Settings` where it is
needed (the CLI does it once per command, tests build their own) and pass it on.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_home() -> Path:
    """Where geogrid keeps its private cluster and state when ``GEOGRID_HOME`` is unset.

    A normal user gets ``$XDG_DATA_HOME/geogrid`` (``~/.local/share/geogrid``). Root gets
    ``/var/lib/geogrid``: the PostgreSQL server must run as an unprivileged user, and that
    user cannot enter ``/root`` (mode 0700 on Debian).

    >>> default_home().name
    'geogrid'
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/geogrid")
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "geogrid"


#: Base maps: ``none`` (offline, boundaries only), a local or intranet XYZ source, Tianditu
#: (with a key), or a GCJ-02 provider (overlays are shifted to match).
#: ``mbtiles``: one MBTiles file (raster or vector), served at ``/basemap/mbtiles/``.
BasemapKind = Literal["none", "xyz", "tianditu", "gcj02", "mbtiles"]


class Settings(BaseSettings):
    """geogrid's configuration.

    >>> Settings(home="/tmp/gg", database_url=None).home.as_posix()
    '/tmp/gg'
    """

    model_config = SettingsConfigDict(env_prefix="GEOGRID_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    """Data folder: the private cluster, its credentials and logs."""

    database_url: str | None = None
    """Use this PostGIS database instead of the private cluster (nothing is started)."""

    server_user: str | None = None
    """Unprivileged system user that runs the private cluster when geogrid runs as root.
    Default: ``postgres`` if it exists, else a ``geogrid`` system user is created."""

    cluster_fsync: bool = True
    """Durable writes in the private cluster; the test suite turns this off for speed."""

    pg_bindir: Path | None = None
    """PostgreSQL binaries folder; default: the newest ``/usr/lib/postgresql/*/bin``."""

    host: str = "127.0.0.1"
    port: int = 8000
    """Where ``geogrid serve`` listens."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    """Log level of the ``geogrid`` command and of ``geogrid serve`` (``INFO`` adds one
    access line per request: method, route template, status, duration and request id;
    never the raw path, query string or body)."""

    log_format: Literal["text", "json"] = "text"
    """``geogrid serve``'s log lines: ``text``, or ``json`` (one JSON object per line: time,
    level, logger, message, request_id, route, status, duration_ms)."""

    metrics_allow: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=lambda: [IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")]  # type: ignore[arg-type]
    )
    """Addresses (CIDR, comma-separated) allowed to read ``/metrics``; others get 403.
    Default: this machine only. Behind a reverse proxy every client has the proxy's
    address: allow the Prometheus server's address, not the proxy's."""

    @field_validator("metrics_allow", mode="before")
    @classmethod
    def _network_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v for v in value.replace(" ", ",").split(",") if v]
        return value

    request_turns: int = Field(default=4, ge=1, le=64)
    """Requests a web server process runs at once; the others wait their turn on its event
    loop, holding nothing (see :mod:`api.routes.metrics`). A request that has run
    ``request_turn_s`` seconds gives its turn back."""

    request_turn_s: float = Field(default=1.0, gt=0, le=60)
    """Seconds after which a running request gives its turn back (long exports do not
    hold back short requests)."""

    # -- map pages -------------------------------------------------------------------

    basemap: BasemapKind = "none"
    """``none`` (offline, boundaries only), ``xyz``, ``tianditu``, ``gcj02`` or ``mbtiles``."""

    basemap_url: str | None = None
    """XYZ URL template (``{z}/{x}/{y}``, optional ``{s}``) for ``xyz`` or ``gcj02``."""

    basemap_dir: Path | None = None
    """Local XYZ tile folder (``{z}/{x}/{y}.png``) served at ``/basemap/``; used by ``xyz``."""

    basemap_mbtiles: Path | None = None
    """An MBTiles file (raster PNG/JPEG/WebP or vector PBF tiles) for ``mbtiles``."""

    basemap_attribution: str = ""
    basemap_max_zoom: int = Field(default=18, ge=1, le=22)

    tianditu_key: str | None = None
    """Tianditu key (天地图 tk), needed by ``tianditu``."""

    photo_dir: Path | None = None
    """Folder of staff photos (``staff.photo`` names a file there); placeholders otherwise."""

    public_base_url: str | None = None
    """Address residents reach geogrid at (``https://grid.example.gov.cn``): printed QR codes
    point to ``<it>/public/grid/<code>``. Default: the address of the request (web) or
    ``http://<host>:<port>`` (command line)."""

    node_modules: Path | None = None
    """Where ``npm ci`` installed the web assets; default: next to the geogrid sources."""

    # -- web security ----------------------------------------------------------------

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest request body accepted (bytes, counted as received, chunked too); more: 413."""

    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    """Largest ``multipart/form-data`` body (photos and files from phones, bytes); more: 413.
    Every other body keeps ``max_body_bytes``; each upload route also caps its own files."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins (``https://portal.example``) whose scripts may call the API across origins
    (CORS) and send unsafe requests; comma-separated in the environment. Default: none."""

    trusted_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Further origins whose POST/PUT/PATCH/DELETE are accepted (e.g. the public address of
    a reverse proxy that rewrites ``Host``); comma-separated. Requests from any other
    ``Origin`` (or ``Referer``) are refused 403."""

    @field_validator("cors_origins", "trusted_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", ",").split(",") if v]
        if isinstance(value, list):
            return [str(v).rstrip("/").lower() for v in value]
        return value

    # -- access --------------------------------------------------------------------------

    secret_key: str | None = None
    """Key that signs access and embed tokens and CSRF tokens (32+ characters); default: a
    random key kept in ``GEOGRID_HOME/secret.key`` (mode 0600), created on first use."""

    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    """Lifetime of an API access token."""

    refresh_token_days: int = Field(default=7, ge=1, le=90)
    """Lifetime of a refresh token (each use rotates it; a replayed one revokes its family)."""

    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_max_hours: int = Field(default=12, ge=1, le=24 * 7)
    """A page session ends after this idle time, and in any case after this many hours."""

    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lock_minutes: int = Field(default=15, ge=1, le=24 * 60)
    """After this many failed sign-ins in a row an account is locked for this long."""

    web_role: str | None = "geogrid_web"
    """PostgreSQL role the web server runs as (owns no table; subject to row-level security).
    Empty when ``GEOGRID_DATABASE_URL`` already signs in as such a role."""

    # -- operations: backups and WAL archiving -----------------------------------------

    backup_key: str | None = None
    """Key that encrypts ``geogrid db backup`` archives: base64 of 32 random bytes (make one
    with ``geogrid db backup-key``). Keep a copy away from the server: without it no
    encrypted archive can be restored. Takes precedence over ``backup_key_file``."""

    backup_key_file: Path | None = None
    """A file (mode 0600) holding the backup key as base64, instead of ``backup_key``."""

    backup_dir: Path | None = None
    """Where ``geogrid db backup`` writes archives; default ``GEOGRID_HOME/backups``."""

    wal_dir: Path | None = None
    """Where the private cluster archives its WAL and base backups for point-in-time
    recovery (``geogrid db wal enable``); default ``GEOGRID_HOME/wal``."""

    # -- operations: read replicas ---------------------------------------------------

    replica_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Streaming replicas (hot standbys; comma-separated PostgreSQL URLs) that serve tiles,
    heat answers and OGC API items; everything else stays on the primary. ``geogrid db
    replica urls`` prints those of the private cluster's standbys."""

    replica_max_lag_s: float = Field(default=5.0, gt=0)
    """A replica replaying further behind than this (seconds) leaves the rotation."""

    @field_validator("replica_urls", mode="before")
    @classmethod
    def _url_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value
