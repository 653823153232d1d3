"""The server's signing key: ``GEOGRID_SECRET_KEY``, or a random key file in GEOGRID_HOME."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from geogrid.errors import ConfigurationError
from geogrid.settings import Settings

KEY_FILE = "secret.key"


def server_secret(settings: Settings) -> bytes:
    """The key that signs tokens, created (mode 0600) on first use when none is configured."""
    if settings.secret_key:
        if len(settings.secret_key) < 32:
            raise ConfigurationError("GEOGRID_SECRET_KEY must be at least 32 characters")
        return settings.secret_key.encode()
    path = Path(settings.home) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
