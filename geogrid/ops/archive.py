"""The backup archive: one tar stream, a manifest of hashes, optionally encrypted.

Layout
------
An archive is a POSIX tar stream whose members are

* ``db/geogrid.dump``: the database (``pg_dump --format=custom``);
* ``home/files/…``: the content-addressed file store (attachments, uploaded photos);
* ``home/data.key``, ``home/secret.key``: the data key file of :mod:`geogrid.people.crypto`
  and the server's signing key, **only in encrypted archives**;
* ``photos/…``: the staff photo folder (``GEOGRID_PHOTO_DIR``) when one is configured;
* ``manifest.json`` (last): ``{"format": "geogrid-backup", "format_version": 1, "created",
  "geogrid_version", "schema_revision", "postgresql", "encrypted", "keys_excluded",
  "members": [{"name", "sha256", "size"}, …]}``, every other member listed once.

Encryption (``GEOGRID_BACKUP_KEY``)
-----------------------------------
An encrypted archive is the same tar stream sealed with AES-256-GCM in chunks, the
STREAM construction that age and Tink use::

    header   = b"GGBACKUP" 0x01 | key id (8 bytes) | salt (16 bytes)
    file key = HKDF-SHA256(backup key, salt, info=b"geogrid backup v1")
    chunk i  = length (4 bytes, big-endian) | AES-GCM(file key, nonce_i, plaintext_i, aad=header)
    nonce_i  = 0x000000 | i (8 bytes, big-endian) | 0x01 for the last chunk else 0x00

Plaintext chunks are :data:`CHUNK` bytes (the last one shorter, possibly empty). The
counter in the nonce makes reordered or dropped chunks fail to decrypt, the last-chunk
flag makes a truncated archive fail, and the header (key id, salt) is authenticated as
associated data. The key id (the first 8 bytes of SHA-256 of ``b"geogrid-backup-key" +
key``) only tells which key an archive needs; it reveals nothing of the key.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import secrets
import stat
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from geogrid.errors import ConfigurationError, InvalidInput
from geogrid.settings import Settings

MAGIC: Final = b"GGBACKUP\x01"
#: Plaintext bytes per encrypted chunk.
CHUNK: Final = 1 << 20
MANIFEST: Final = "manifest.json"
DUMP_MEMBER: Final = "db/geogrid.dump"
FORMAT: Final = "geogrid-backup"
FORMAT_VERSION: Final = 1
_HEADER_LEN: Final = len(MAGIC) + 8 + 16
_TAG: Final = 16
_INFO: Final = b"geogrid backup v1"
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+\-]*")


# -- keys ------------------------------------------------------------------------------


def key_id(key: bytes) -> bytes:
    """The 8-byte id of a backup key, stored in an encrypted archive's header.

    >>> key_id(bytes(32)).hex()
    '97b520fda7382ad9'
    """
    return hashlib.sha256(b"geogrid-backup-key" + key).digest()[:8]


def parse_key(value: str, *, where: str) -> bytes:
    """A backup key from its base64 text: exactly 32 bytes, else :class:`ConfigurationError`.

    >>> len(parse_key(base64.b64encode(bytes(32)).decode(), where="x"))
    32
    >>> parse_key("c2hvcnQ=", where="GEOGRID_BACKUP_KEY")
    Traceback (most recent call last):
    ...
    geogrid.errors.ConfigurationError: GEOGRID_BACKUP_KEY: a backup key is base64 of 32 bytes \
(make one with `geogrid db backup-key`)
    """
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigurationError(
            f"{where}: a backup key is base64 of 32 bytes (make one with `geogrid db backup-key`)"
        )
    return key


def backup_key(settings: Settings) -> bytes | None:
    """The configured backup key (``GEOGRID_BACKUP_KEY``, else ``GEOGRID_BACKUP_KEY_FILE``)."""
    if settings.backup_key:
        return parse_key(settings.backup_key, where="GEOGRID_BACKUP_KEY")
    path = settings.backup_key_file
    if path is None:
        return None
    try:
        mode = Path(path).stat().st_mode
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"GEOGRID_BACKUP_KEY_FILE {path}: cannot read it ({exc})"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"GEOGRID_BACKUP_KEY_FILE {path}: must be readable by its owner only (chmod 600)"
        )
    return parse_key(text, where=f"GEOGRID_BACKUP_KEY_FILE {path}")


def new_key() -> str:
    """A fresh backup key, as the base64 text the settings take."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


# -- the encrypted stream ------------------------------------------------------------------


def _nonce(counter: int, last: bool) -> bytes:
    return b"\x00\x00\x00" + struct.pack(">Q", counter) + (b"\x01" if last else b"\x00")


def _file_key(key: bytes, salt: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(key)
    return AESGCM(derived)


class EncryptingWriter(io.RawIOBase):
    """A write-only stream that seals what is written to ``out`` (see the module doc)."""

    def __init__(self, out: IO[bytes], key: bytes) -> None:
        super().__init__()
        self._out = out
        salt = secrets.token_bytes(16)
        self._header = MAGIC + key_id(key) + salt
        self._aead = _file_key(key, salt)
        self._buf = bytearray()
        self._counter = 0
        out.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buf += data
        while len(self._buf) > CHUNK:  # keep one full chunk back: it may be the last
            self._seal(bytes(self._buf[:CHUNK]), last=False)
            del self._buf[:CHUNK]
        return len(data)

    def _seal(self, plain: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._counter, last), plain, self._header)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._counter += 1

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buf), last=True)
            self._buf.clear()
        super().close()


class DecryptingReader(io.RawIOBase):
    """A read-only stream opening what :class:`EncryptingWriter` sealed.

    Raises :class:`InvalidInput` on a wrong key, a changed byte or a missing end.
    """

    def __init__(self, src: IO[bytes], key: bytes) -> None:
        super().__init__()
        header = src.read(_HEADER_LEN)
        if len(header) != _HEADER_LEN or not header.startswith(MAGIC):
            raise InvalidInput("not an encrypted geogrid backup (bad header)")
        wanted = header[len(MAGIC) : len(MAGIC) + 8]
        if wanted != key_id(key):
            raise InvalidInput(
                f"the archive was encrypted with backup key {wanted.hex()}, but the "
                f"configured key is {key_id(key).hex()}: set GEOGRID_BACKUP_KEY to the right key"
            )
        self._src = src
        self._header = header
        self._aead = _file_key(key, header[len(MAGIC) + 8 :])
        self._buf = bytearray()  # deleting from its front is cheap (CPython keeps an offset)
        self._counter = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _next(self) -> None:
        raw_len = self._src.read(4)
        if len(raw_len) < 4:
            raise InvalidInput("the archive is truncated (its encrypted stream ends early)")
        (length,) = struct.unpack(">I", raw_len)
        if length < _TAG or length > CHUNK + _TAG:
            raise InvalidInput(f"the archive is damaged (chunk {self._counter} has a bad length)")
        sealed = self._src.read(length)
        if len(sealed) < length:
            raise InvalidInput("the archive is truncated (its encrypted stream ends early)")
        for last in (False, True):
            try:
                plain = self._aead.decrypt(_nonce(self._counter, last), sealed, self._header)
            except InvalidTag:
                continue
            self._counter += 1
            self._buf += plain
            if last:
                self._done = True
                if self._src.read(1):
                    raise InvalidInput("the archive is damaged (bytes after its last chunk)")
            return
        raise InvalidInput(
            f"the archive is damaged or was changed (chunk {self._counter} does not decrypt)"
        )

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buf) < size) and not self._done:
            self._next()
        if size < 0:
            size = len(self._buf)
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


def is_encrypted(path: Path) -> bool:
    """Whether the file at ``path`` starts with the encrypted archive's header."""
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def looks_like_archive(path: Path) -> bool:
    """An encrypted geogrid archive or a tar file (what retention may delete)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    return head.startswith(MAGIC) or head[257:262] == b"ustar"


# -- member names ----------------------------------------------------------------------------


def check_member_name(name: str) -> None:
    """Refuse a member name that is absolute, climbs (``..``) or is otherwise odd.

    >>> check_member_name("home/files/ab/abc")
    >>> check_member_name("home/../../etc/passwd")
    Traceback (most recent call last):
    ...
    geogrid.errors.InvalidInput: archive member 'home/../../etc/passwd': not a plain relative path
    """
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(p in ("", ".", "..") or _SEGMENT.fullmatch(p) is None for p in parts)
    ):
        raise InvalidInput(f"archive member {name!r}: not a plain relative path")


# -- writing -----------------------------------------------------------------------------


@dataclass
class ArchiveWriter:
    """Writes members into a tar stream, hashing each, and the manifest at the end."""

    tar: tarfile.TarFile
    members: list[dict[str, Any]] = field(default_factory=list)

    def add_file(self, name: str, path: Path) -> None:
        check_member_name(name)
        size = path.stat().st_size
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        info.mtime = int(path.stat().st_mtime)
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            reader = _HashingReader(fh, digest)
            self.tar.addfile(info, reader)
        if reader.count != size:
            raise ConfigurationError(f"{path} changed while it was being backed up")
        self.members.append({"name": name, "sha256": digest.hexdigest(), "size": size})

    def add_tree(self, prefix: str, root: Path) -> int:
        """Every regular file under ``root`` (symlinks and hidden names skipped); a count."""
        n = 0
        for path in sorted(_walk(root)):
            self.add_file(prefix + path.relative_to(root).as_posix(), path)
            n += 1
        return n

    def finish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        manifest = {**manifest, "members": self.members}
        data = json.dumps(manifest, ensure_ascii=False, indent=1).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        info.mode = 0o600
        info.mtime = int(manifest.get("created_epoch", 0))
        self.tar.addfile(info, io.BytesIO(data))
        return manifest


def _walk(root: Path) -> Iterator[Path]:
    if not root.is_dir() or root.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if _SEGMENT.fullmatch(name) and not path.is_symlink() and path.is_file():
                yield path


class _HashingReader:
    def __init__(self, fh: IO[bytes], digest: Any) -> None:
        self._fh = fh
        self._digest = digest
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._digest.update(data)
        self.count += len(data)
        return data


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unpacked:
    """An archive unpacked into a staging folder, every member's hash checked."""

    folder: Path
    manifest: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def names(self) -> list[str]:
        return [m["name"] for m in self.manifest["members"]]


def unpack(archive: Path, staging: Path, key: bytes | None) -> Unpacked:
    """Read ``archive`` into ``staging`` and check it against its manifest.

    Every member must be a regular file with a plain relative name, listed once in the
    manifest with the size and SHA-256 it has; nothing may be missing or extra.

    Raises
    ------
    InvalidInput
        Naming the first member that is refused, or saying the archive is truncated,
        damaged or needs a key.
    """
    with open(archive, "rb") as raw:
        stream: IO[bytes] = raw
        if raw.read(len(MAGIC)) == MAGIC:
            if key is None:
                raise InvalidInput(
                    f"{archive.name} is encrypted: set GEOGRID_BACKUP_KEY (or "
                    "GEOGRID_BACKUP_KEY_FILE) to the key it was made with"
                )
            raw.seek(0)
            stream = DecryptingReader(raw, key)  # type: ignore[assignment]
        else:
            raw.seek(0)
        seen = _read_members(stream, staging)
    return Unpacked(staging, _check_manifest(staging, seen))


def _read_members(stream: IO[bytes], staging: Path) -> dict[str, tuple[str, int]]:
    seen: dict[str, tuple[str, int]] = {}
    current = "(the archive header)"
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                current = info.name
                check_member_name(info.name)
                if not info.isreg():
                    link = info.issym() or info.islnk()
                    kind = "a link (symbolic or hard)" if link else "not a regular file"
                    raise InvalidInput(f"archive member {info.name!r}: {kind}, refused")
                if info.name in seen:
                    raise InvalidInput(f"archive member {info.name!r}: appears twice")
                src = tar.extractfile(info)
                if src is None:  # pragma: no cover - isreg() members always have data
                    raise InvalidInput(f"archive member {info.name!r}: no data")
                target = staging / info.name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                size = 0
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while block := src.read(1 << 16):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
                if size != info.size:
                    raise InvalidInput(f"archive member {info.name!r}: truncated")
                seen[info.name] = (digest.hexdigest(), size)
    except InvalidInput as exc:
        if exc.message.startswith("archive member"):
            raise
        raise InvalidInput(f"archive member {current!r}: {exc.message}") from None
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidInput(f"archive member {current!r}: the archive is truncated or damaged "
                           f"({exc})") from None  # fmt: skip
    return seen


def _check_manifest(staging: Path, seen: dict[str, tuple[str, int]]) -> dict[str, Any]:
    if MANIFEST not in seen:
        raise InvalidInput(f"archive member {MANIFEST!r}: missing (truncated or not a backup)")
    try:
        manifest = json.loads((staging / MANIFEST).read_text(encoding="utf-8"))
        listed = {m["name"]: (m["sha256"], int(m["size"])) for m in manifest["members"]}
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"archive member {MANIFEST!r}: not a geogrid manifest") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(f"archive member {MANIFEST!r}: unknown format")
    for name, (sha, size) in listed.items():
        if name not in seen:
            raise InvalidInput(f"archive member {name!r}: listed in the manifest but missing")
        if seen[name] != (sha, size):
            raise InvalidInput(
                f"archive member {name!r}: its content does not match the manifest "
                "(SHA-256 or size differ): the archive was changed or damaged"
            )
    extra = sorted(set(seen) - set(listed) - {MANIFEST})
    if extra:
        raise InvalidInput(f"archive member {extra[0]!r}: not listed in the manifest")
    return dict(manifest)
