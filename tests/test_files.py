"""The content-addressed file store: what it keeps, and a bad input per rule it refuses."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from geogrid.errors import InvalidInput, NotFound
from geogrid.files import (
    IMAGE_TYPES,
    KNOWN_TYPES,
    THUMB_SIZE,
    file_path,
    sniff_type,
    store_file,
)

MB = 1024 * 1024


def _image(fmt: str, size: tuple[int, int] = (800, 600), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 30) if mode == "RGB" else 0).save(out, fmt)
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_images_are_kept_by_hash_with_a_thumbnail(tmp_path: Path, fmt: str, mime: str) -> None:
    data = _image(fmt)
    stored = store_file(tmp_path, data, filename="photo.bin", allowed=IMAGE_TYPES, max_bytes=MB)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (stored.mime, stored.size, stored.width, stored.height) == (mime, len(data), 800, 600)
    assert file_path(tmp_path, stored.sha256).read_bytes() == data
    with Image.open(file_path(tmp_path, stored.sha256, thumb=True)) as thumb:
        assert thumb.format == "JPEG"
        assert max(thumb.size) == THUMB_SIZE
        assert "exif" not in thumb.info


def test_the_type_comes_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    stored = store_file(tmp_path, _image("PNG"), filename="x.jpg", allowed=IMAGE_TYPES,
                        max_bytes=MB)  # fmt: skip
    assert stored.mime == "image/png"


def test_storing_twice_keeps_one_file(tmp_path: Path) -> None:
    data = _image("JPEG")
    a = store_file(tmp_path, data, filename="a.jpg", allowed=IMAGE_TYPES, max_bytes=MB)
    b = store_file(tmp_path, data, filename="b.jpg", allowed=IMAGE_TYPES, max_bytes=MB)
    assert a == b
    files = [p for p in (tmp_path / "files").rglob("*") if p.is_file()]
    assert len(files) == 2  # the original and its thumbnail


def test_a_pdf_is_kept_without_thumbnail(tmp_path: Path) -> None:
    stored = store_file(tmp_path, PDF, filename="report.pdf", allowed=KNOWN_TYPES, max_bytes=MB)
    assert (stored.mime, stored.width, stored.has_thumbnail) == ("application/pdf", None, False)
    assert not file_path(tmp_path, stored.sha256, thumb=True).exists()


def test_a_transparent_png_gets_a_white_backed_thumbnail(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGBA", (50, 40), (0, 0, 0, 0)).save(out, "PNG")
    stored = store_file(tmp_path, out.getvalue(), filename="t.png", allowed=IMAGE_TYPES,
                        max_bytes=MB)  # fmt: skip
    with Image.open(file_path(tmp_path, stored.sha256, thumb=True)) as thumb:
        assert thumb.getpixel((0, 0)) == (255, 255, 255)


def _truncated_jpeg() -> bytes:
    data = _image("JPEG", (1200, 900))
    return data[: len(data) // 2]


def _bomb_png() -> bytes:
    # a 1-bit 10000 x 10000 PNG compresses to a few kilobytes but decodes to 100 megapixels
    return _image("PNG", (10_000, 10_000), mode="1")


def _jpeg_magic_png_body() -> bytes:
    return b"\xff\xd8\xff" + _image("PNG")[3:]


#: One bad input per rule: (bytes, filename, allowed, max_bytes, words of the message).
BAD: dict[str, tuple[bytes, str, frozenset[str], int, str]] = {
    "empty": (b"", "a.jpg", IMAGE_TYPES, MB, "empty"),
    "too large": (_image("PNG"), "a.png", IMAGE_TYPES, 100, "at most 100 are accepted"),
    "unknown type": (b"MZ\x90\x00 an executable", "a.jpg", KNOWN_TYPES, MB, "unknown file type"),
    "html": (b"<html><script>alert(1)</script>", "a.png", KNOWN_TYPES, MB, "unknown file type"),
    "type not allowed": (PDF, "a.pdf", IMAGE_TYPES, MB, "not accepted here"),
    "truncated image": (_truncated_jpeg(), "a.jpg", IMAGE_TYPES, MB, "not a readable image/jpeg"),
    "magic of another format": (_jpeg_magic_png_body(), "a.jpg", IMAGE_TYPES, MB, "image/jpeg"),
    "decompression bomb": (_bomb_png(), "a.png", IMAGE_TYPES, MB, "pixels"),
    "pdf without end": (PDF[:-7], "a.pdf", KNOWN_TYPES, MB, "end-of-file"),
    "pdf without version": (b"%PDF-x\n%%EOF", "a.pdf", KNOWN_TYPES, MB, "no version"),
    "name with folders": (_image("PNG"), "../../etc/a.png", IMAGE_TYPES, MB, "plain name"),
    "name with control characters": (_image("PNG"), "a\x00.png", IMAGE_TYPES, MB, "plain name"),
    "no name": (_image("PNG"), "  ", IMAGE_TYPES, MB, "no name"),
    "name too long": (_image("PNG"), "a" * 300 + ".png", IMAGE_TYPES, MB, "255"),
    "type the store cannot check": (_image("PNG"), "a.png", frozenset({"text/html"}), MB,
                                    "cannot check"),
}  # fmt: skip


@pytest.mark.parametrize("rule", sorted(BAD))
def test_store_refuses(tmp_path: Path, rule: str) -> None:
    data, name, allowed, limit, words = BAD[rule]
    with pytest.raises(InvalidInput) as err:
        store_file(tmp_path, data, filename=name, allowed=allowed, max_bytes=limit)
    assert words in err.value.message
    kept = [p for p in (tmp_path / "files").rglob("*") if p.is_file()] if (
        tmp_path / "files").exists() else []  # fmt: skip
    assert kept == [], "nothing is kept from a refused file"


@pytest.mark.parametrize(
    "name", ["", "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "g" * 64, "a" * 64 + "\n", None]
)
def test_file_path_refuses_what_is_not_a_hash(tmp_path: Path, name: object) -> None:
    with pytest.raises(InvalidInput):
        file_path(tmp_path, name)  # type: ignore[arg-type]


def test_file_path_refuses_a_symlink_out_of_the_store(tmp_path: Path) -> None:
    sha = "ab" * 32
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "files").mkdir()
    os.symlink(outside, tmp_path / "files" / sha[:2])
    with pytest.raises(NotFound):
        file_path(tmp_path, sha)


def test_sniffing_knows_each_type() -> None:
    assert sniff_type(_image("JPEG")) == "image/jpeg"
    assert sniff_type(_image("WEBP")) == "image/webp"
    assert sniff_type(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert sniff_type(b"") is None


def test_a_truncated_image_is_refused_after_weasyprint_was_imported(tmp_path: Path) -> None:
    """WeasyPrint switches Pillow's truncated-image loading on for the whole process."""
    import weasyprint  # noqa: F401
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as WeasyPrint leaves it
    with pytest.raises(InvalidInput, match="not a readable image/jpeg"):
        store_file(tmp_path, _truncated_jpeg(), filename="a.jpg", allowed=IMAGE_TYPES, max_bytes=MB)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
