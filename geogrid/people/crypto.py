"""Protection of personal fields: a key provider with AEAD encryption and a keyed hash.

Personal fields that must be recoverable (ID numbers, phones) are stored encrypted with
AES-256-GCM; the associated data binds each ciphertext to its table, record id and field,
so a ciphertext copied to another row does not decrypt. Look-ups and duplicate checks use
a keyed hash (HMAC-SHA256), never the plain value: an ID number's space is small enough
that an unkeyed hash could be reversed by trying every birth date.

Everything goes through :class:`KeyProvider`, so a certified crypto device (密码机) can
replace :class:`LocalKeyProvider` without touching the callers. Keys come from
``GEOGRID_DATA_KEY`` (base64 of 32 bytes) or from the key file ``GEOGRID_HOME/data.key``
(created ``0600`` on first use by the CLI and the demo; never committed). The key file
may hold several encryption keys: the newest encrypts, every one still decrypts (each
ciphertext is stored with its key id), which is how keys are rotated.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from geogrid.errors import InvalidInput

__all__ = [
    "ENV_VAR",
    "KEY_FILE",
    "DecryptionError",
    "KeyProvider",
    "LocalKeyProvider",
    "aad",
    "key_provider",
    "lookup_hash",
    "rotate_key_file",
    "seal",
    "unseal",
]

log = logging.getLogger(__name__)

#: Environment variable holding a base64 data key (takes precedence over the key file).
ENV_VAR = "GEOGRID_DATA_KEY"
#: Key file name inside ``GEOGRID_HOME``.
KEY_FILE = "data.key"
_NONCE = 12


class DecryptionError(InvalidInput):
    """A ciphertext did not decrypt: wrong key, wrong record, or tampered with."""


@runtime_checkable
class KeyProvider(Protocol):
    """What geogrid needs from a key store; keys themselves never have to leave it."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """``(key id, ciphertext)``; the ciphertext carries its nonce and tag."""
        ...

    def decrypt(self, key_id: str, ciphertext: bytes, aad: bytes) -> bytes:
        """The plaintext; :class:`DecryptionError` if the key, data or aad do not match."""
        ...

    def keyed_hash(self, data: bytes) -> bytes:
        """A stable keyed hash (32 bytes) for look-ups and duplicate checks."""
        ...


def aad(table: str, record_id: int, field: str) -> bytes:
    """Associated data binding a ciphertext to one field of one record.

    >>> aad("household_members", 7, "id_number")
    b'geogrid:household_members:7:id_number'
    """
    return f"geogrid:{table}:{record_id}:{field}".encode()


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def _key_id(key: bytes) -> str:
    return "k" + hashlib.sha256(b"geogrid key id" + key).hexdigest()[:12]


@dataclass(frozen=True)
class LocalKeyProvider:
    """AES-256-GCM and HMAC-SHA256 with keys held in this process.

    Parameters
    ----------
    keys
        ``{key id: 32-byte AES key}``; every one decrypts.
    current
        The key id that encrypts.
    hash_key
        The HMAC key (kept across rotations so that stored hashes stay valid).

    Examples
    --------
    >>> p = LocalKeyProvider.from_master(bytes(32))
    >>> kid, blob = p.encrypt(b"13800001234", aad("t", 1, "phone"))
    >>> p.decrypt(kid, blob, aad("t", 1, "phone"))
    b'13800001234'
    >>> len(p.keyed_hash(b"x"))
    32
    """

    keys: Mapping[str, bytes]
    current: str
    hash_key: bytes

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise InvalidInput("the current data key is not among the keys")
        if any(len(k) != 32 for k in self.keys.values()) or len(self.hash_key) < 32:
            raise InvalidInput("data keys must be 32 bytes")

    def __repr__(self) -> str:  # never print key material
        return f"LocalKeyProvider(current={self.current!r}, keys={sorted(self.keys)!r})"

    @classmethod
    def from_master(cls, master: bytes) -> LocalKeyProvider:
        """Encryption and hash keys derived (HKDF-SHA256) from one 32-byte master key."""
        if len(master) != 32:
            raise InvalidInput(f"{ENV_VAR} must be the base64 of 32 bytes")
        enc = _derive(master, b"geogrid aead v1")
        return cls({_key_id(enc): enc}, _key_id(enc), _derive(master, b"geogrid hash v1"))

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(_NONCE)
        return self.current, nonce + AESGCM(self.keys[self.current]).encrypt(nonce, plaintext, aad)

    def decrypt(self, key_id: str, ciphertext: bytes, aad: bytes) -> bytes:
        key = self.keys.get(key_id)
        if key is None:
            raise DecryptionError("the data key of this record is not available")
        try:
            return AESGCM(key).decrypt(ciphertext[:_NONCE], ciphertext[_NONCE:], aad)
        except (InvalidTag, ValueError):
            raise DecryptionError("a protected field does not decrypt with this key") from None

    def keyed_hash(self, data: bytes) -> bytes:
        return hmac.new(self.hash_key, data, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _new_file_content() -> dict[str, object]:
    key = secrets.token_bytes(32)
    return {
        "version": 1,
        "hash_key": _b64(secrets.token_bytes(32)),
        "current": _key_id(key),
        "keys": [{"id": _key_id(key), "key": _b64(key), "created": dt.date.today().isoformat()}],
    }


def _write_new(path: Path, content: Mapping[str, object], *, replace: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".new") if replace else path
    if replace:
        target.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(content, fh, indent=1)
    if replace:
        os.replace(target, path)


def _read_file(path: Path) -> LocalKeyProvider:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"{path}: the data key file must be readable by its owner only (0600)")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        keys = {k["id"]: base64.b64decode(k["key"]) for k in content["keys"]}
        return LocalKeyProvider(keys, content["current"], base64.b64decode(content["hash_key"]))
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"{path}: not a geogrid data key file") from None


def key_provider(
    home: Path, *, env: Mapping[str, str] | None = None, create: bool = False
) -> LocalKeyProvider:
    """The data key provider: ``GEOGRID_DATA_KEY`` if set, else ``home/data.key``.

    Parameters
    ----------
    home
        ``GEOGRID_HOME``.
    env
        The environment (default ``os.environ``).
    create
        Create the key file (mode 0600) when it does not exist (the CLI and the demo do;
        the server does not, so that a missing key is an error rather than a new key).

    Raises
    ------
    geogrid.errors.InvalidInput
        A malformed key, a key file readable by others, or no key at all.
    """
    environ = os.environ if env is None else env
    value = environ.get(ENV_VAR)
    if value:
        try:
            master = base64.b64decode(value, validate=True)
        except ValueError:
            raise InvalidInput(f"{ENV_VAR} is not valid base64") from None
        return LocalKeyProvider.from_master(master)
    path = Path(home) / KEY_FILE
    if not path.exists():
        if not create:
            raise InvalidInput(
                f"no data key: set {ENV_VAR} or create {path} "
                "(any geogrid import of people creates it)"
            )
        _write_new(path, _new_file_content())
        log.info("created the data key file %s (mode 0600); back it up, never commit it", path)
    return _read_file(path)


def rotate_key_file(home: Path) -> str:
    """Add a new encryption key to ``home/data.key`` and make it current; returns its id.

    Records encrypted with older keys still decrypt; re-importing or re-saving them
    encrypts them with the new key. The hash key is kept.
    """
    path = Path(home) / KEY_FILE
    _read_file(path)  # refuses a malformed or world-readable file
    content = json.loads(path.read_text(encoding="utf-8"))
    key = secrets.token_bytes(32)
    content["keys"].append(
        {"id": _key_id(key), "key": _b64(key), "created": dt.date.today().isoformat()}
    )
    content["current"] = _key_id(key)
    _write_new(path, content, replace=True)
    return str(content["current"])


def lookup_hash(provider: KeyProvider, kind: str, value: str) -> bytes:
    """The keyed hash stored for look-ups of a normalised value (``kind`` separates uses).

    >>> p = LocalKeyProvider.from_master(bytes(32))
    >>> lookup_hash(p, "id", "11010519491231002X") == lookup_hash(p, "id", "11010519491231002X")
    True
    >>> lookup_hash(p, "id", "1") == lookup_hash(p, "phone", "1")
    False
    """
    return provider.keyed_hash(f"{kind}\x1f{value}".encode())


def seal(
    provider: KeyProvider, table: str, record_id: int, field: str, value: str
) -> tuple[str, bytes]:
    """Encrypt one field of one record: ``(key id, ciphertext)``."""
    return provider.encrypt(value.encode(), aad(table, record_id, field))


def unseal(
    provider: KeyProvider, table: str, record_id: int, field: str, key_id: str, blob: bytes
) -> str:
    """Decrypt what :func:`seal` made for the same table, record and field."""
    return provider.decrypt(key_id, bytes(blob), aad(table, record_id, field)).decode()
