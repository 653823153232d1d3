"""``geogrid db backup`` / ``geogrid db restore``: a loaded town backed up, its database
destroyed, restored into a new private cluster and compared table by table and file by
file; and every way an archive or a restore must be refused."""

from __future__ import annotations

import base64
import io
import json
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from geogrid import store
from geogrid.access import audit
from geogrid.access.keys import server_secret
from geogrid.cluster import PrivateCluster
from geogrid.errors import Conflict, InvalidInput
from geogrid.files import KNOWN_TYPES, store_file
from geogrid.ops import archive
from geogrid.ops.restore import own_relations, restore_backup
from geogrid.settings import Settings
from tests.conftest import make_home
from tests.ops_support import (
    BACKUP_KEY,
    fingerprint,
    geogrid_env,
    run_cli,
    tree_hashes,
)


def _image(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Made:
    """The source town's fingerprints and the archives made from it (its database is gone)."""

    home: Path
    photos: Path
    tables: dict[str, tuple[int, str]]
    files: dict[str, str]
    keys: dict[str, bytes]
    encrypted: Path
    plain: Path
    plain_output: str


@pytest.fixture(scope="module")
def made(pg, _town_template, sample_town) -> Iterator[Made]:  # type: ignore[no-untyped-def]
    """A loaded town (households, people with encrypted IDs, cases, key units, audit
    entries, attachments, staff photos, both key files), backed up twice (encrypted, and
    with --unencrypted); then its database is dropped."""
    from geogrid import overlays
    from geogrid.people.crypto import key_provider
    from geogrid.people.load import import_members, import_special

    home = make_home("geogrid-ops-src-")
    photos = home / "staff-photos"
    photos.mkdir()
    (photos / "leader-1.png").write_bytes(_image((200, 30, 30)))
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    try:
        keys = key_provider(home, create=True)
        import_members(engine, sample_town.out / "members.csv", keys)
        import_special(engine, sample_town.out / "special.csv", keys)
        for kind, file in (("cases", "cases.csv"), ("key_units", "key_units.csv")):
            overlays.import_overlay(engine, sample_town.out / file, kind)  # type: ignore[arg-type]
        with engine.begin() as conn:
            for i in range(3):
                audit.record(conn, actor=None, action="test.backup", detail={"n": i})
    finally:
        engine.dispose()
    for color in ((0, 90, 200), (10, 200, 10)):
        store_file(home, _image(color), filename="p.png", allowed=KNOWN_TYPES, max_bytes=10**6)
    store_file(home, b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n", filename="a.pdf",
               allowed=KNOWN_TYPES, max_bytes=10**6)  # fmt: skip
    server_secret(Settings(home=home, database_url=None))  # secret.key
    out = home / "backups"
    env = {"home": str(home), "database_url": url, "photo_dir": str(photos)}
    try:
        with geogrid_env(**env, backup_key=BACKUP_KEY):
            text = run_cli("db", "backup", "-o", str(out))
        encrypted = next(out.glob("*.tar.enc"))
        assert str(encrypted) in text and "encrypted" in text
        with geogrid_env(**env):
            plain_output = run_cli("db", "backup", "-o", str(home / "plain.tar"), "--unencrypted")
        made = Made(
            home, photos, fingerprint(url), tree_hashes(home / "files"),
            {k: (home / k).read_bytes() for k in ("data.key", "secret.key")},
            encrypted, home / "plain.tar", plain_output,
        )  # fmt: skip
        assert made.tables["households"][0] > 100 and made.tables["audit_log"][0] >= 3
        assert made.tables["special_population"][0] > 0 and len(made.files) >= 5
    finally:
        pg.drop_database(name)  # the disaster
    try:
        yield made
    finally:
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Restored:
    settings: Settings
    url: str


@pytest.fixture(scope="module")
def restored(made: Made) -> Iterator[Restored]:
    """A new private cluster in a new home, the encrypted archive restored into it by the
    command."""
    home = make_home("geogrid-ops-dst-")
    env = {"home": str(home), "cluster_fsync": "false", "backup_key": BACKUP_KEY,
           "photo_dir": str(home / "photos")}  # fmt: skip
    settings = Settings(home=home, database_url=None, cluster_fsync=False)
    try:
        with geogrid_env(**env):
            text = run_cli("db", "restore", str(made.encrypted))
        assert "restored" in text and "put data.key back" not in text
        yield Restored(settings, PrivateCluster(settings).url())
    finally:
        PrivateCluster(settings).stop()
        shutil.rmtree(home, ignore_errors=True)


def test_restore_into_a_new_cluster_gives_back_every_table_and_file(
    made: Made, restored: Restored
) -> None:
    assert restored.url.endswith("/geogrid") and "127.0.0.1" in restored.url
    assert fingerprint(restored.url) == made.tables
    home = Path(restored.settings.home)
    assert tree_hashes(home / "files") == made.files
    assert tree_hashes(home / "photos") == tree_hashes(made.photos)
    for name, content in made.keys.items():
        assert (home / name).read_bytes() == content
        assert (home / name).stat().st_mode & 0o077 == 0
    # the restored key still opens the restored personal data
    from geogrid.people.crypto import key_provider, unseal

    keys = key_provider(home)
    with psycopg.connect(restored.url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT id, id_key, id_enc FROM household_members WHERE id_enc IS NOT NULL LIMIT 1"
        ).fetchone()
    assert row is not None
    assert len(unseal(keys, "household_members", row[0], "id_number", row[1], bytes(row[2]))) == 18
    with geogrid_env(home=str(home), cluster_fsync="false"):
        # the sample town's older case events sit in DEFAULT (no partition for their
        # months when they were loaded): a warning until `partitions create` moves them
        run_cli("db", "partitions", "create")
        assert "audit chain intact" in run_cli("db", "check")


def test_restore_over_a_non_empty_database_is_refused_unless_forced(
    made: Made, restored: Restored
) -> None:
    home = Path(restored.settings.home)
    env = {"home": str(home), "cluster_fsync": "false", "backup_key": BACKUP_KEY,
           "photo_dir": str(home / "photos")}  # fmt: skip
    with geogrid_env(**env):
        text = run_cli("db", "restore", str(made.encrypted), code=1)
        assert "not empty" in text and "--force" in text
        run_cli("db", "restore", str(made.encrypted), "--force")
    assert fingerprint(restored.url) == made.tables


def _empty_target(pg, tmp_path: Path) -> tuple[Settings, str]:  # type: ignore[no-untyped-def]
    name = f"geogrid_ops_empty_{uuid.uuid4().hex[:12]}"
    with pg.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=pg.url(name), backup_key=BACKUP_KEY,
                        photo_dir=tmp_path / "photos")  # fmt: skip
    return settings, name


@pytest.fixture
def target(pg, tmp_path: Path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    """Settings pointing at an empty database and an empty home (dropped afterwards)."""
    settings, name = _empty_target(pg, tmp_path)
    try:
        yield settings
    finally:
        pg.drop_database(name)


def _nothing_written(settings: Settings) -> None:
    assert settings.database_url is not None
    assert own_relations(settings.database_url) == []
    home = Path(settings.home)
    assert not home.exists() or list(home.iterdir()) == []
    assert not Path(str(settings.photo_dir)).exists()


def test_unencrypted_archive_restores_without_keys_and_says_so(
    made: Made, target: Settings
) -> None:
    assert "data.key" in made.plain_output and "left out" in made.plain_output
    env = {"home": str(target.home), "database_url": str(target.database_url),
           "photo_dir": str(target.photo_dir)}  # fmt: skip
    with geogrid_env(**env):
        text = run_cli("db", "restore", str(made.plain))
    assert "put data.key back" in text
    assert fingerprint(str(target.database_url)) == made.tables
    assert tree_hashes(Path(target.home) / "files") == made.files
    assert not (Path(target.home) / "data.key").exists()


def test_no_backup_key_means_no_backup_unless_told(made: Made, tmp_path: Path) -> None:
    with geogrid_env(home=str(tmp_path), database_url="postgresql://nobody@127.0.0.1:1/x"):
        text = run_cli("db", "backup", "-o", str(tmp_path), code=1)
    assert "no backup key" in text and "--unencrypted" in text
    assert list(tmp_path.iterdir()) == []


def test_keys_are_never_in_an_archive_unencrypted(made: Made) -> None:
    data_key = json.loads(made.keys["data.key"])
    secrets_ = [made.keys["data.key"], made.keys["secret.key"], base64.b64decode(BACKUP_KEY)]
    for entry in data_key["keys"]:
        secrets_ += [entry["key"].encode(), base64.b64decode(entry["key"])]
    secrets_ += [data_key["hash_key"].encode(), base64.b64decode(data_key["hash_key"])]
    for path in (made.encrypted, made.plain):
        blob = path.read_bytes()
        for secret in secrets_:
            assert secret not in blob, (path.name, secret[:6])
    with tarfile.open(made.plain) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile(archive.MANIFEST))  # type: ignore[arg-type]
    assert not [n for n in names if n.endswith(".key")]
    assert manifest["keys_excluded"] == ["data.key", "secret.key"] and not manifest["encrypted"]
    # the encrypted archive does carry them, sealed
    assert made.encrypted.read_bytes().startswith(archive.MAGIC)


def test_manifest_lists_every_member_with_hash_size_and_versions(made: Made) -> None:
    with tarfile.open(made.plain) as tar:
        manifest = json.load(tar.extractfile(archive.MANIFEST))  # type: ignore[arg-type]
        names = [n for n in tar.getnames() if n != archive.MANIFEST]
    assert sorted(m["name"] for m in manifest["members"]) == sorted(names)
    assert all(len(m["sha256"]) == 64 and m["size"] >= 0 for m in manifest["members"])
    assert manifest["schema_revision"] == store.head_revision()
    assert manifest["geogrid_version"] and manifest["created"] and manifest["postgresql"]
    assert {f"home/files/{p}" for p in made.files} <= set(names)
    assert "photos/leader-1.png" in names and archive.DUMP_MEMBER in names


# -- refusals: every one before anything is written --------------------------------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _member_offset(path: Path, name: str) -> int:
    with tarfile.open(path) as tar:
        return tar.getmember(name).offset_data


def test_tampered_plain_archive_is_refused_naming_the_member(
    made: Made, target: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.tar"
    shutil.copy(made.plain, bad)
    _flip(bad, _member_offset(bad, archive.DUMP_MEMBER) + 100)
    with pytest.raises(InvalidInput, match=r"'db/geogrid.dump'.*does not match the manifest"):
        restore_backup(target, bad)
    _nothing_written(target)


def test_tampered_encrypted_archive_is_refused(
    made: Made, target: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.tar.enc"
    shutil.copy(made.encrypted, bad)
    _flip(bad, bad.stat().st_size // 2)
    with pytest.raises(InvalidInput, match=r"archive member '[^']+'.*does not decrypt"):
        restore_backup(target, bad)
    _nothing_written(target)


@pytest.mark.parametrize("archive_kind", ["plain", "encrypted"])
def test_truncated_archive_is_refused_naming_the_member(
    made: Made, target: Settings, tmp_path: Path, archive_kind: str
) -> None:
    src = made.plain if archive_kind == "plain" else made.encrypted
    cut = tmp_path / src.name
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    with pytest.raises(InvalidInput, match=r"archive member '[^']+'.*truncated"):
        restore_backup(target, cut)
    _nothing_written(target)


def test_wrong_backup_key_is_refused(made: Made, target: Settings) -> None:
    other = target.model_copy(update={"backup_key": archive.new_key()})
    with pytest.raises(InvalidInput, match="encrypted with backup key"):
        restore_backup(other, made.encrypted)
    no_key = target.model_copy(update={"backup_key": None})
    with pytest.raises(InvalidInput, match="is encrypted: set GEOGRID_BACKUP_KEY"):
        restore_backup(no_key, made.encrypted)
    _nothing_written(target)


def _craft(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> None:
    """A plain archive whose manifest honestly lists what is in it (hashes right)."""
    import hashlib

    listed = []
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
                listed.append({"name": m.name, "sha256": hashlib.sha256().hexdigest(), "size": 0})
                continue
            name, data = m
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            listed.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(),
                           "size": len(data)})  # fmt: skip
        manifest = json.dumps({"format": archive.FORMAT, "format_version": 1,
                               "schema_revision": store.head_revision(), "created": "x",
                               "members": listed}).encode()  # fmt: skip
        info = tarfile.TarInfo(archive.MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))


def _symlink(name: str, to: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = to
    return info


def _hardlink(name: str, to: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = to
    return info


ESCAPES = {
    "dot-dot": (["home/../../escaped.txt"], "not a plain relative path"),
    "dot-dot-inside": (["home/files/../../../escaped.txt"], "not a plain relative path"),
    "absolute": (["/tmp/escaped.txt"], "not a plain relative path"),
    "backslash": (["home\\..\\escaped.txt"], "not a plain relative path"),
    "hidden": (["home/files/.hidden"], "not a plain relative path"),
    "cluster-state": (["home/cluster.json"], "not something a restore writes"),
    "pgdata": (["home/pgdata/PG_VERSION"], "not something a restore writes"),
    "symlink": ([_symlink("home/files/aa/link", "/etc/passwd")], "a link"),
    "hardlink": ([_hardlink("home/files/aa/hard", "/etc/passwd")], "a link"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_members_that_could_escape_the_home_are_refused(
    case: str, target: Settings, tmp_path: Path
) -> None:
    members, reason = ESCAPES[case]
    crafted = [m if isinstance(m, tarfile.TarInfo) else (m, b"x") for m in members]
    path = tmp_path / "crafted.tar"
    _craft(path, crafted)  # type: ignore[arg-type]
    name = crafted[0].name if isinstance(crafted[0], tarfile.TarInfo) else crafted[0][0]
    with pytest.raises(InvalidInput, match=rf"archive member .*{reason}") as exc:
        restore_backup(target, path)
    assert repr(name).strip("'")[:8] in str(exc.value)
    _nothing_written(target)
    assert not (tmp_path / "escaped.txt").exists()


def test_a_symlink_planted_in_the_home_is_not_followed(target: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    home = Path(target.home)
    home.mkdir()
    (home / "files").symlink_to(outside)
    sha = "ab" + "0" * 62
    path = tmp_path / "crafted.tar"
    _craft(path, [(f"home/files/ab/{sha}", b"payload")])
    with pytest.raises(InvalidInput, match="resolves outside"):
        restore_backup(target, path)
    assert list(outside.iterdir()) == []
    assert target.database_url is not None and own_relations(target.database_url) == []


def test_members_not_in_the_manifest_or_missing_are_refused(
    made: Made, target: Settings, tmp_path: Path
) -> None:
    extra = tmp_path / "extra.tar"
    shutil.copy(made.plain, extra)
    with tarfile.open(extra, "a") as tar:
        info = tarfile.TarInfo("home/files/zz/extra")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(InvalidInput, match="'home/files/zz/extra': not listed in the manifest"):
        restore_backup(target, extra)
    path = tmp_path / "missing.tar"
    _craft(path, [("home/files/ab/x", b"1")])
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile(archive.MANIFEST))  # type: ignore[arg-type]
    manifest["members"].append({"name": "db/geogrid.dump", "sha256": "0" * 64, "size": 1})
    with tarfile.open(path, "w") as tar:
        for name, data in (
            ("home/files/ab/x", b"1"),
            (archive.MANIFEST, json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(
        InvalidInput, match=r"'db/geogrid.dump': listed in the manifest but missing"
    ):
        restore_backup(target, path)
    _nothing_written(target)


def test_a_forced_restore_that_fails_leaves_the_old_database(
    pg, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    before = fingerprint(db_url)
    path = tmp_path / "broken-dump.tar"
    _craft(path, [(archive.DUMP_MEMBER, b"PGDMP but not really a dump")])
    settings = Settings(home=tmp_path / "home", database_url=db_url)
    from geogrid.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="pg_restore failed"):
        restore_backup(settings, path, force=True)
    assert fingerprint(db_url) == before
    with pg.admin() as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
    assert not [n for n in names if "_restoring_" in n or "_replaced_" in n]


def test_a_differing_key_file_in_the_home_is_not_overwritten(made: Made, target: Settings) -> None:
    home = Path(target.home)
    home.mkdir()
    (home / "data.key").write_text("{}")
    (home / "data.key").chmod(0o600)
    with pytest.raises(Conflict, match=r"data\.key exists and differs"):
        restore_backup(target, made.encrypted)
    assert (home / "data.key").read_text() == "{}"
    assert target.database_url is not None and own_relations(target.database_url) == []


# -- retention, key handling, schedule -------------------------------------------------


def test_keep_removes_only_our_oldest_archives(made: Made, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    old = [folder / f"geogrid-backup-2020010{i}T000000000000Z.tar.enc" for i in (1, 2, 3)]
    for path in old:
        shutil.copy(made.encrypted, path)
    foreign = {
        "notes.txt": b"keep me",
        "geogrid-backup-20190101T000000000000Z.tar": b"not an archive at all",
        "geogrid-backup-old.tar": made.plain.read_bytes(),
    }
    for name, data in foreign.items():
        (folder / name).write_bytes(data)
    from geogrid.ops.backup import prune

    assert prune(folder, 2) == old[:1]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*foreign, old[1].name, old[2].name])


def test_backup_key_file_must_be_private_and_well_formed(tmp_path: Path) -> None:
    key_file = tmp_path / "backup.key"
    key_file.write_text(BACKUP_KEY)
    key_file.chmod(0o644)
    settings = Settings(home=tmp_path, database_url=None, backup_key_file=key_file)
    from geogrid.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="owner only"):
        archive.backup_key(settings)
    key_file.chmod(0o600)
    assert archive.backup_key(settings) == base64.b64decode(BACKUP_KEY)
    key_file.write_text("c2hvcnQ=")
    with pytest.raises(ConfigurationError, match="base64 of 32 bytes"):
        archive.backup_key(settings)
    with pytest.raises(ConfigurationError, match="base64 of 32 bytes"):
        archive.backup_key(Settings(home=tmp_path, database_url=None, backup_key="not base64!"))


def test_backup_timer_writes_a_daily_systemd_timer(tmp_path: Path) -> None:
    with geogrid_env(home=str(tmp_path / "home"), backup_key_file=str(tmp_path / "k")):
        text = run_cli("db", "backup-timer", "--keep", "7", "--at", "03:15",
                       "--dir", str(tmp_path / "units"))  # fmt: skip
        assert "systemctl enable --now geogrid-backup.timer" in text
        assert "HH:MM" in run_cli("db", "backup-timer", "--at", "25:00", "--dir",
                                  str(tmp_path / "u2"), code=1)  # fmt: skip
    service = (tmp_path / "units" / "geogrid-backup.service").read_text()
    timer = (tmp_path / "units" / "geogrid-backup.timer").read_text()
    assert "db backup --keep 7" in service and f"GEOGRID_HOME={tmp_path / 'home'}" in service
    assert f"GEOGRID_BACKUP_KEY_FILE={tmp_path / 'k'}" in service
    assert "OnCalendar=*-*-* 03:15:00" in timer and "Persistent=true" in timer
    assert not (tmp_path / "u2").exists()


def _seal(data: bytes, key: bytes) -> bytes:
    out = io.BytesIO()
    writer = archive.EncryptingWriter(out, key)
    writer.write(data)
    writer.close()
    return out.getvalue()


def _open(blob: bytes, key: bytes) -> bytes:
    reader = archive.DecryptingReader(io.BytesIO(blob), key)
    got = bytearray()
    while block := reader.read(10240):
        got += block
    return bytes(got)


def test_encrypted_stream_round_trips_and_refuses_every_damage() -> None:
    key = base64.b64decode(BACKUP_KEY)
    chunk = archive.CHUNK
    for size in (0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk + 7):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        assert _open(_seal(data, key), key) == data
    blob = _seal(b"a" * (2 * chunk + 7), key)
    header = len(archive.MAGIC) + 24
    one = 4 + chunk + 16  # a full chunk on disk: length, ciphertext, tag
    first, second, last = (blob[header : header + one], blob[header + one : header + 2 * one],
                           blob[header + 2 * one :])  # fmt: skip
    damaged = {
        "swapped chunks": blob[:header] + second + first + last,
        "last chunk dropped": blob[:header] + first + second,
        "cut at a chunk boundary": blob[: header + one],
        "bytes appended": blob + b"\0",
        "salt changed": blob[: header - 1] + bytes([blob[header - 1] ^ 1]) + blob[header:],
        "bad chunk length": blob[:header] + b"\xff\xff\xff\xff" + blob[header + 4 :],
    }
    for what, bad in damaged.items():
        with pytest.raises(InvalidInput, match=r"damaged|truncated|changed") as exc:
            _open(bad, key)
        assert exc.value.message, what
