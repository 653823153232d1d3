"""Key provider, AEAD and keyed hash; masking."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from geogrid.errors import InvalidInput
from geogrid.people.crypto import (
    ENV_VAR,
    KEY_FILE,
    DecryptionError,
    KeyProvider,
    LocalKeyProvider,
    key_provider,
    lookup_hash,
    rotate_key_file,
    seal,
    unseal,
)
from geogrid.people.mask import mask_id, mask_name, mask_phone

ID = "42011719800229001X"
T = "household_members"


@pytest.fixture
def provider() -> LocalKeyProvider:
    return LocalKeyProvider.from_master(bytes(range(32)))


def test_round_trip(provider: LocalKeyProvider) -> None:
    assert isinstance(provider, KeyProvider)
    kid, blob = seal(provider, T, 7, "id_number", ID)
    assert ID.encode() not in blob
    assert unseal(provider, T, 7, "id_number", kid, blob) == ID


def test_ciphertext_differs_per_row_and_per_call(provider: LocalKeyProvider) -> None:
    blobs = {seal(provider, T, i, "id_number", ID)[1] for i in (1, 1, 2)}
    assert len(blobs) == 3


def test_bound_to_its_record_and_field(provider: LocalKeyProvider) -> None:
    kid, blob = seal(provider, T, 7, "id_number", ID)
    for table, rid, field in ((T, 8, "id_number"), (T, 7, "phone"), ("x", 7, "id_number")):
        with pytest.raises(DecryptionError):
            unseal(provider, table, rid, field, kid, blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionError):
        unseal(provider, T, 7, "id_number", kid, tampered)


def test_wrong_key_fails(provider: LocalKeyProvider) -> None:
    other = LocalKeyProvider.from_master(bytes(32))
    kid, blob = seal(provider, T, 7, "id_number", ID)
    with pytest.raises(DecryptionError):
        unseal(other, T, 7, "id_number", kid, blob)  # unknown key id
    forged = LocalKeyProvider({kid: other.keys[other.current]}, kid, other.hash_key)
    with pytest.raises(DecryptionError):
        unseal(forged, T, 7, "id_number", kid, blob)  # same id, other key


def test_hash_stable_and_keyed(provider: LocalKeyProvider) -> None:
    again = LocalKeyProvider.from_master(bytes(range(32)))
    other = LocalKeyProvider.from_master(bytes(32))
    assert lookup_hash(provider, "id", ID) == lookup_hash(again, "id", ID)
    assert lookup_hash(provider, "id", ID) != lookup_hash(other, "id", ID)
    assert lookup_hash(provider, "id", ID) != lookup_hash(provider, "phone", ID)
    assert "keys" in repr(provider) and repr(provider.hash_key) not in repr(provider)


def test_env_key(tmp_path: Path) -> None:
    env = {ENV_VAR: base64.b64encode(bytes(range(32))).decode()}
    p = key_provider(tmp_path, env=env)
    assert p.current == LocalKeyProvider.from_master(bytes(range(32))).current
    assert not (tmp_path / KEY_FILE).exists()
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(InvalidInput, match=ENV_VAR):
            key_provider(tmp_path, env={ENV_VAR: bad})


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no data key"):
        key_provider(tmp_path, env={})
    first = key_provider(tmp_path, env={}, create=True)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = key_provider(tmp_path, env={})
    kid, blob = seal(first, T, 1, "phone", "13800001234")
    assert unseal(again, T, 1, "phone", kid, blob) == "13800001234"


def test_key_file_readable_by_others_refused(tmp_path: Path) -> None:
    key_provider(tmp_path, env={}, create=True)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(InvalidInput, match="0600"):
        key_provider(tmp_path, env={})


def test_malformed_key_file_refused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    path.write_text("{}")
    path.chmod(0o600)
    with pytest.raises(InvalidInput, match="not a geogrid data key file"):
        key_provider(tmp_path, env={})


def test_rotation_keeps_old_ciphertexts_and_hashes(tmp_path: Path) -> None:
    old = key_provider(tmp_path, env={}, create=True)
    kid, blob = seal(old, T, 3, "id_number", ID)
    new_id = rotate_key_file(tmp_path)
    new = key_provider(tmp_path, env={})
    assert new.current == new_id != kid
    assert unseal(new, T, 3, "id_number", kid, blob) == ID
    assert seal(new, T, 3, "id_number", ID)[0] == new_id
    assert lookup_hash(new, "id", ID) == lookup_hash(old, "id", ID)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三明", "张*明"),
        ("张三", "张*"),
        ("欧阳娜娜", "欧**娜"),
        ("王", "*"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_name(name: str | None, masked: str | None) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("phone", "masked"),
    [("13812345678", "138****5678"), ("+86 138-1234-5678", "138****5678"),
     ("02787654321", "027****4321"), ("87654321", "******21"), ("", ""), (None, None)],
)  # fmt: skip
def test_mask_phone(phone: str | None, masked: str | None) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("number", "masked"),
    [("420102199003071234", "4201**********1234"), ("11010519491231002X", "1101**********002X"),
     ("12345", "*****"), (None, None)],
)  # fmt: skip
def test_mask_id(number: str | None, masked: str | None) -> None:
    assert mask_id(number) == masked
