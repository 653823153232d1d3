"""A content-addressed file store under ``GEOGRID_HOME``: case attachments, staff photos.

A file is kept once, named by the SHA-256 of its bytes (``files/ab/abcdef…``), so storing
the same photo twice stores it once and a name can never point outside the store. Every
file is checked before it is kept, one rule at a time, each with its own message:

* not empty, not larger than the caller's limit;
* its type is sniffed from the first bytes (never from the name or a header the client
  sent) and must be one the caller allows (:data:`KNOWN_TYPES`);
* images are opened again with Pillow: they must decode completely, have sane
  dimensions (at most :data:`MAX_PIXELS` pixels, no decompression bombs) and be of the
  format the bytes claimed; PDFs need their header and an end-of-file marker;
* the file name the client gave must be a plain name (no path, no control characters).

Images get a JPEG thumbnail (long side :data:`THUMB_SIZE`, EXIF orientation applied,
metadata dropped) beside the original. :func:`file_path` turns a hash back into a path,
refusing anything that is not a hash or that would resolve outside the store (a symlink
planted in the folder, say).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from geogrid.errors import InvalidInput, NotFound

__all__ = [
    "IMAGE_TYPES",
    "KNOWN_TYPES",
    "MAX_PIXELS",
    "THUMB_SIZE",
    "StoredFile",
    "contained_file",
    "file_path",
    "sniff_type",
    "store_file",
]

#: Folder under ``GEOGRID_HOME`` that holds the store.
STORE_DIR: Final = "files"
#: Long side of a thumbnail, in pixels.
THUMB_SIZE: Final = 320
#: Largest image accepted, in pixels (a 40-megapixel photo; more is a decompression bomb).
MAX_PIXELS: Final = 40_000_000
#: Image types (decoded with Pillow, thumbnailed).
IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
#: Every type the store can recognise.
KNOWN_TYPES: Final = IMAGE_TYPES | {"application/pdf"}

_PIL_FORMAT: Final = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP",
                      "image/gif": "GIF"}  # fmt: skip
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_BAD_NAME: Final = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class StoredFile:
    """A file in the store.

    Attributes
    ----------
    sha256
        Hex digest of the bytes: the file's name in the store.
    mime
        The type sniffed from the bytes.
    size
        Bytes.
    width, height
        Pixels of an image; ``None`` for other files.
    """

    sha256: str
    mime: str
    size: int
    width: int | None = None
    height: int | None = None

    @property
    def has_thumbnail(self) -> bool:
        return self.mime in IMAGE_TYPES


def sniff_type(data: bytes) -> str | None:
    """The type of ``data`` from its first bytes (``None``: not one the store knows).

    >>> sniff_type(b"\\xff\\xd8\\xff\\xe0rest"), sniff_type(b"%PDF-1.7"), sniff_type(b"MZ")
    ('image/jpeg', 'application/pdf', None)
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def _root(home: Path) -> Path:
    return (Path(home) / STORE_DIR).resolve()


def file_path(home: Path, sha256: str, thumb: bool = False) -> Path:
    """Where the file (or its thumbnail) named ``sha256`` lives; checked to be inside the store.

    Raises
    ------
    InvalidInput
        ``sha256`` is not 64 lower-case hex digits.
    NotFound
        The path would resolve outside the store (a planted symlink).

    >>> file_path(Path("/srv/gg"), "a" * 64).as_posix().endswith("files/aa/" + "a" * 64)
    True
    >>> file_path(Path("/srv/gg"), "../../etc/passwd")
    Traceback (most recent call last):
    ...
    geogrid.errors.InvalidInput: not a file name of the store: expected 64 hex digits (SHA-256)
    """
    if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
        raise InvalidInput("not a file name of the store: expected 64 hex digits (SHA-256)")
    root = _root(home)
    rel = Path("thumbs", sha256[:2], f"{sha256}.jpg") if thumb else Path(sha256[:2], sha256)
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise NotFound(f"file {sha256[:12]}… is not in the store")
    return path


def _check_name(filename: str) -> None:
    name = filename or ""
    if not name.strip():
        raise InvalidInput("the file has no name")
    if len(name) > 255:
        raise InvalidInput("the file name is longer than 255 characters")
    if _BAD_NAME.search(name) or name in (".", ".."):
        raise InvalidInput("the file name must be a plain name, without folders or control "
                           "characters")  # fmt: skip


def _check_image(data: bytes, mime: str) -> tuple[int, int, bytes]:
    """Decode an image fully; its size and a JPEG thumbnail."""
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    # a library may have switched truncated-image loading on for the whole process
    # (WeasyPrint does, at import): geogrid never accepts a truncated image
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                fmt, (width, height) = probe.format, probe.size
                if width < 1 or height < 1 or width * height > MAX_PIXELS:
                    raise InvalidInput(
                        f"image of {width}×{height} pixels: at most {MAX_PIXELS:,} are accepted"
                    )
                probe.verify()  # structure and checksums
            with Image.open(io.BytesIO(data)) as img:
                img.load()  # every pixel really decodes (truncated files fail here)
                if fmt != _PIL_FORMAT[mime]:
                    raise InvalidInput(f"the bytes start like {mime} but decode as {fmt}")
                thumb = ImageOps.exif_transpose(img)
                if thumb.mode not in ("RGB", "L"):
                    thumb = thumb.convert("RGBA")
                    canvas = Image.new("RGB", thumb.size, (255, 255, 255))
                    canvas.paste(thumb, mask=thumb.getchannel("A"))
                    thumb = canvas
                thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
                out = io.BytesIO()
                thumb.save(out, "JPEG", quality=80)  # no EXIF: no GPS position in thumbnails
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput(
            f"the image is too large to decode (over {MAX_PIXELS:,} pixels)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"not a readable {mime} image ({type(exc).__name__})") from None
    return width, height, out.getvalue()


def _check_pdf(data: bytes) -> None:
    if not re.match(rb"%PDF-\d\.\d", data[:8]):
        raise InvalidInput("not a PDF: no version in its header")
    if b"%%EOF" not in data[-1024:]:
        raise InvalidInput("not a complete PDF: no end-of-file marker (truncated?)")


def _write_atomic(path: Path, data: bytes) -> None:
    if path.exists():
        return  # content-addressed: the same name holds the same bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_file(
    home: Path, data: bytes, *, filename: str, allowed: set[str] | frozenset[str], max_bytes: int
) -> StoredFile:
    """Check ``data`` and keep it in the store (once: named by its SHA-256).

    Parameters
    ----------
    home
        ``GEOGRID_HOME``; the store is its ``files`` folder.
    data
        The file's bytes.
    filename
        The name the client gave (checked, never used as a path).
    allowed
        Types accepted here, from :data:`KNOWN_TYPES` (e.g. only images for staff photos).
    max_bytes
        Largest size accepted.

    Returns
    -------
    StoredFile

    Raises
    ------
    InvalidInput
        One message per rule: empty, too large, unknown type, type not allowed, image that
        does not decode or is too large, incomplete PDF, bad file name.
    """
    unknown = set(allowed) - KNOWN_TYPES
    if unknown:
        raise InvalidInput(f"the store cannot check files of type {', '.join(sorted(unknown))}")
    _check_name(filename)
    if not data:
        raise InvalidInput("the file is empty")
    if len(data) > max_bytes:
        raise InvalidInput(f"the file has {len(data):,} bytes; at most {max_bytes:,} are accepted")
    mime = sniff_type(data)
    if mime is None:
        raise InvalidInput("unknown file type: expected a JPEG, PNG, WebP or GIF image or a PDF")
    if mime not in allowed:
        raise InvalidInput(f"files of type {mime} are not accepted here; "
                           f"accepted: {', '.join(sorted(allowed))}")  # fmt: skip
    width = height = None
    thumb: bytes | None = None
    if mime in IMAGE_TYPES:
        width, height, thumb = _check_image(data, mime)
    else:
        _check_pdf(data)
    sha = hashlib.sha256(data).hexdigest()
    if thumb is not None:
        _write_atomic(file_path(home, sha, thumb=True), thumb)
    _write_atomic(file_path(home, sha), data)
    return StoredFile(sha, mime, len(data), width, height)


def contained_file(root: Path, relative: str) -> Path | None:
    """The regular file ``relative`` under ``root``, or ``None``: the one containment check.

    Every file geogrid serves goes through here. ``relative`` must be a plain relative
    POSIX path: no leading ``/`` (absolute), no empty segment (``//``), no ``.``/``..``
    or hidden segment, no backslash and no NUL. The joined path is then resolved (symlinks
    followed) and must still lie inside the resolved ``root``, so a symlink in the folder
    pointing elsewhere is refused too.

    Parameters
    ----------
    root
        The folder files are served from.
    relative
        The requested path inside it (already percent-decoded).

    Examples
    --------
    >>> here = Path(__file__).parent
    >>> contained_file(here, "files.py").name
    'files.py'
    >>> [contained_file(here, p) for p in ("/etc/passwd", "../pyproject.toml", "a\\x00b")]
    [None, None, None]
    """
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    parts = relative.split("/")
    if any(not p or p.startswith(".") for p in parts):
        return None
    try:
        base = root.resolve(strict=True)
        path = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a bad name
        return None
    return path if path.is_relative_to(base) and path.is_file() else None
