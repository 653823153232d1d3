"""Importing household members and special-population records (real PostGIS)."""

from __future__ import annotations

import csv
import logging
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from geogrid import store
from geogrid.errors import InvalidInput
from geogrid.people.crypto import LocalKeyProvider, unseal
from geogrid.people.idcard import check_character
from geogrid.people.load import MEMBER_FIELDS, import_members, import_special, parse_people_maps

KEYS = LocalKeyProvider.from_master(bytes(range(32)))
MEMBER_HEADER = ["序号", "村", "户号", "姓名", "与户主关系", "性别", "出生日期", "公民身份号码",
                 "联系电话", "户籍状态"]  # fmt: skip
SPECIAL_HEADER = ["序号", "村", "户号", "姓名", "公民身份号码", "人员类别", "列管日期", "风险等级",
                  "责任人"]  # fmt: skip


def make_id(first17: str) -> str:
    return first17 + check_character(first17)


@pytest.fixture
def engine(town_url: str) -> Iterator[Engine]:
    eng = store.make_engine(town_url)
    try:
        yield eng
    finally:
        eng.dispose()


def some_households(engine: Engine, n: int) -> list[tuple[str, str, str, int]]:
    """(village name, 户号, village code, household id) of ``n`` households."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.name, h.register_no, h.village_code, h.id FROM households h "
                "JOIN admin_areas a ON a.code = h.village_code ORDER BY h.id LIMIT :n"
            ),
            {"n": n},
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def rejects_of(path: Path) -> dict[int, str]:
    frame = pd.read_csv(path, dtype=str)
    return dict(zip(frame["source_row"].astype(int), frame["reason"], strict=True))


def test_sample_town_people(engine: Engine, sample_town, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    report = import_members(engine, sample_town.members, KEYS, rejects_path=tmp_path / "r.csv")
    seconds = time.perf_counter() - t0
    assert report.read == sample_town.n_members
    # only members of households the household import rejected (bad coordinates …)
    assert set(report.rejects_by_reason) <= {"unknown household"}
    assert report.rejected < 0.02 * report.read
    assert report.inserted == report.read - report.rejected
    assert seconds < 60
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM household_members")).scalar_one()
        heads = conn.execute(
            text("SELECT count(*) FROM household_members WHERE relation = '户主'")
        ).scalar_one()
        households = conn.execute(text("SELECT count(*) FROM households")).scalar_one()
    assert stored == report.inserted
    assert heads == households  # every stored household has its head

    again = import_members(engine, sample_town.members, KEYS, rejects_path=tmp_path / "r.csv")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, report.inserted)

    special = import_special(engine, sample_town.special, KEYS, rejects_path=tmp_path / "s.csv")
    assert special.read == sample_town.n_special
    assert set(special.rejects_by_reason) <= {"unknown person"}
    assert special.inserted == special.read - special.rejected > 0.9 * special.read
    again = import_special(engine, sample_town.special, KEYS, rejects_path=tmp_path / "s.csv")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, special.inserted)
    with engine.connect() as conn:  # each import is in the audit log, with counts only
        logged = conn.execute(
            text("SELECT action, target_type, detail FROM audit_log ORDER BY id")
        ).all()
    assert [(r.action, r.target_type) for r in logged] == [
        ("people.import", "file"), ("people.import", "file"),
        ("special.import", "file"), ("special.import", "file"),
    ]  # fmt: skip
    assert logged[0].detail["inserted"] == report.inserted
    assert logged[0].detail["file"] == sample_town.members.name


def _good(hh: tuple[str, str, str, int], name: str, first17: str, phone: str = "") -> list[object]:
    number = make_id(first17)
    born = f"{number[6:10]}-{number[10:12]}-{number[12:14]}"
    sex = "男" if int(number[16]) % 2 else "女"
    return [0, hh[0], hh[1], name, "户主", sex, born, number, phone, "户籍"]


def test_member_rejects_one_per_rule(engine: Engine, tmp_path: Path) -> None:
    hh = some_households(engine, 2)
    a, b = hh
    rows = {
        2: _good(a, "甲一", "42011719800101001"),
        3: [0, a[0], "", "甲二", "子", "", "", make_id("42011719800101003"), "", ""],
        4: [0, "不存在村", a[1], "甲三", "", "", "", make_id("42011719800101005"), "", ""],
        5: [0, a[0], "NO-SUCH", "甲四", "", "", "", make_id("42011719800101007"), "", ""],
        6: [0, a[0], a[1], "", "", "", "", make_id("42011719800101009"), "", ""],
        7: [0, a[0], a[1], "甲五", "", "", "", "420117198001010111", "", ""],
        8: [0, a[0], a[1], "甲六", "", "女", "", make_id("42011719800101013"), "", ""],
        9: [0, a[0], a[1], "甲七", "", "未知", "", make_id("42011719800101015"), "", ""],
        10: [0, a[0], a[1], "甲八", "", "", "1980-01-02", make_id("42011719800101017"), "", ""],
        11: [0, a[0], a[1], "甲九", "", "", "去年", make_id("42011719800101019"), "", ""],
        12: [0, a[0], a[1], "甲十", "", "", "", make_id("42011719800101021"), "12345", ""],
        13: [0, a[0], a[1], "乙一", "", "", "", make_id("42011719800101023"), "", "火星"],
        14: _good(b, "乙二", "42011719800101001"),  # same ID number as row 2
        15: [0, b[0], b[1], "乙三", "妻", "女", "1980年1月1日", make_id("42011719800101024"),
             "+86 139 0000 1111", "流动人口"],
    }  # fmt: skip
    src = write(tmp_path / "members.csv", MEMBER_HEADER, list(rows.values()))
    report = import_members(engine, src, KEYS)
    assert report.rejects_file == tmp_path / "members.csv.rejects.csv"
    assert stat.S_IMODE(report.rejects_file.stat().st_mode) == 0o600
    reasons = rejects_of(report.rejects_file)
    expected = {
        3: "missing register number", 4: "unknown village", 5: "unknown household",
        6: "missing name", 7: "bad ID number: check character", 8: "bad sex: does not match",
        9: "bad sex: expected", 10: "bad birth date: does not match",
        11: "bad birth date: not a date", 12: "bad phone", 13: "unknown residence status",
        14: "duplicate in file: the same ID number as row 2",
    }  # fmt: skip
    assert set(reasons) == set(expected)
    for row, start in expected.items():
        assert reasons[row].startswith(start), (row, reasons[row])
    for reason in reasons.values():  # reasons never carry the personal values
        assert "4201171980" not in reason and "甲" not in reason
    assert (report.read, report.inserted, report.rejected) == (14, 2, 12)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id, sex, residence, phone_key, phone_enc, phone_masked "
                "FROM household_members WHERE name = '乙三'"
            )
        ).one()
    assert (row.sex, row.residence, row.phone_masked) == ("女", "流动", "139****1111")
    phone = unseal(KEYS, "household_members", row.id, "phone", row.phone_key, row.phone_enc)
    assert phone == "13900001111"


def test_reimport_unchanged_then_updates(engine: Engine, tmp_path: Path) -> None:
    a, b = some_households(engine, 2)
    rows = [_good(a, "丙一", "42011719900101001", "13800000001"),
            _good(a, "丙二", "42011719900101002", "")]  # fmt: skip
    src = write(tmp_path / "m.csv", MEMBER_HEADER, rows)
    first = import_members(engine, src, KEYS)
    assert (first.inserted, first.updated, first.rejected) == (2, 0, 0)
    with engine.connect() as conn:
        before = conn.execute(
            text("SELECT id, updated_at FROM household_members ORDER BY id")
        ).all()
    again = import_members(engine, src, KEYS)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    with engine.connect() as conn:
        after = conn.execute(text("SELECT id, updated_at FROM household_members ORDER BY id")).all()
    assert before == after
    # a new phone, and the second person moved to another household: two updates
    rows[0][8] = "13800000009"
    rows[1][1:3] = [b[0], b[1]]
    write(src, MEMBER_HEADER, rows)
    third = import_members(engine, src, KEYS)
    assert (third.inserted, third.updated, third.unchanged) == (0, 2, 0)
    with engine.connect() as conn:
        one = conn.execute(
            text("SELECT id, phone_key, phone_enc FROM household_members WHERE name = '丙一'")
        ).one()
        moved = conn.execute(
            text("SELECT household_id FROM household_members WHERE name = '丙二'")
        ).scalar_one()
    assert unseal(KEYS, "household_members", one.id, "phone", one.phone_key, one.phone_enc) == (
        "13800000009"
    )
    assert moved == b[3]


def test_no_plain_id_or_phone_in_any_table(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (a,) = some_households(engine, 1)
    number = make_id("42011719770707077")
    phone = "13971625384"
    src = write(tmp_path / "m.csv", MEMBER_HEADER, [_good(a, "金丝雀", number[:17], phone)])
    special = [1, a[0], a[1], "金丝雀", number, "社区矫正人员", "2024-01-02", "中", "王五"]
    write(tmp_path / "s.csv", SPECIAL_HEADER, [special])
    import_members(engine, src, KEYS)
    assert import_special(engine, tmp_path / "s.csv", KEYS).inserted == 1
    with engine.connect() as conn:
        tables = (
            conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            .scalars()
            .all()
        )
        assert "household_members" in tables
        for table in tables:
            for canary in (number, number[:17], number[6:], phone, phone[3:]):
                hits = conn.execute(
                    text(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE :c'),
                    {"c": f"%{canary}%"},
                ).scalar_one()
                assert hits == 0, (table, canary)
    for canary in (number, phone, "金丝雀"):  # nor in any log line
        assert canary not in caplog.text


class FailingKeys(LocalKeyProvider):
    """A key store that fails part-way (a crypto device going away)."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        if aad.endswith(b"id_number") and int(aad.split(b":")[2]) % 2 == 0:
            raise InvalidInput("the crypto device is not answering")
        return super().encrypt(plaintext, aad)


def test_import_is_one_transaction(engine: Engine, tmp_path: Path) -> None:
    hh = some_households(engine, 3)
    rows = [_good(h, f"丁{i}", f"4201171995010100{i}") for i, h in enumerate(hh)]
    src = write(tmp_path / "m.csv", MEMBER_HEADER, rows)
    failing = FailingKeys(dict(KEYS.keys), KEYS.current, KEYS.hash_key)
    with pytest.raises(InvalidInput, match="crypto device"):
        import_members(engine, src, failing)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM household_members")).scalar_one() == 0


def test_special_rejects_one_per_rule(engine: Engine, tmp_path: Path) -> None:
    a, b = some_households(engine, 2)
    n1, n2 = make_id("42011719850505005"), make_id("42011719850505006")
    write(tmp_path / "m.csv", MEMBER_HEADER,
          [_good(a, "戊一", n1[:17]), _good(b, "戊二", n2[:17])])  # fmt: skip
    import_members(engine, tmp_path / "m.csv", KEYS)
    rows = {
        2: [0, a[0], a[1], "戊一", n1, "刑满释放人员", "2020-03-04", "高", "王五"],
        3: [0, a[0], a[1], "戊一", "12345", "吸毒人员", "", "", ""],
        4: [0, a[0], a[1], "无名", make_id("42011719850505007"), "吸毒人员", "", "", ""],
        5: [0, b[0], b[1], "别人", n2, "吸毒人员", "", "", ""],
        6: [0, b[0], b[1], "戊二", n2, "游客", "", "", ""],
        7: [0, b[0], b[1], "戊二", n2, "吸毒人员", "前年", "", ""],
        8: [0, b[0], b[1], "戊二", n2, "吸毒人员", "2999-01-01", "", ""],
        9: [0, b[0], b[1], "戊二", n2, "吸毒人员", "", "极高", ""],
        10: [0, a[0], a[1], "戊一", n1, "安置帮教人员", "", "低", ""],
        11: [0, b[0], b[1], "戊二", n2, "严重精神障碍患者", "2021/7/8", "2", "李四"],
    }
    src = write(tmp_path / "s.csv", SPECIAL_HEADER, list(rows.values()))
    report = import_special(engine, src, KEYS)
    reasons = rejects_of(report.rejects_file)  # type: ignore[arg-type]
    expected = {
        3: "bad ID number", 4: "unknown person", 5: "name does not match", 6: "unknown category",
        7: "bad date: 列管日期 is not", 8: "bad date: 列管日期 is in", 9: "unknown risk level",
        10: "duplicate in file",
    }  # fmt: skip
    assert set(reasons) == set(expected)
    for row, start in expected.items():
        assert reasons[row].startswith(start), (row, reasons[row])
    assert report.inserted == 2
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT category, risk_level, since::text FROM special_population ORDER BY id")
        ).all()
    assert [tuple(g) for g in got] == [("刑满释放", "高", "2020-03-04"),
                                       ("严重精神障碍", "中", "2021-07-08")]  # fmt: skip


def test_file_without_id_column_refused(engine: Engine, tmp_path: Path) -> None:
    src = write(tmp_path / "m.csv", ["户号", "村", "姓名"], [["0001", "x", "y"]])
    with pytest.raises(InvalidInput, match="no id_number column"):
        import_members(engine, src, KEYS)


def test_database_refusal_names_no_personal_data(engine: Engine, tmp_path: Path) -> None:
    """The database's own message repeats the row; the import's error must not."""
    (a,) = some_households(engine, 1)
    number = make_id("42011719660606066")
    src = write(tmp_path / "m.csv", MEMBER_HEADER, [_good(a, "庚申", number[:17], "13561728394")])
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_member() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'refused %, %', NEW.name, NEW.id_masked; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON household_members "
                "FOR EACH ROW EXECUTE FUNCTION refuse_member()"
            )
        )
    with pytest.raises(InvalidInput, match="nothing was stored") as caught:
        import_members(engine, src, KEYS)
    message = str(caught.value)
    assert "庚申" not in message and number[-4:] not in message and "1356" not in message


def test_cli_imports_and_creates_the_key_file(town_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from geogrid.cli import build_app

    engine = store.make_engine(town_url)
    try:
        a, b = some_households(engine, 2)
    finally:
        engine.dispose()
    home = tmp_path / "home"
    n1, n2 = make_id("42011720000101001"), make_id("42011720000101002")
    rows = [_good(a, "辛一", n1[:17]), _good(b, "辛二", n2[:17]), [0, a[0], a[1]]]
    members = write(tmp_path / "m.csv", MEMBER_HEADER, rows)
    one = [1, a[0], a[1], "辛一", n1, "重点青少年", "", "", ""]
    special = write(tmp_path / "s.csv", SPECIAL_HEADER, [one])
    env = {"GEOGRID_DATABASE_URL": town_url, "GEOGRID_HOME": str(home)}
    app = build_app()
    result = CliRunner().invoke(app, ["import", "members", str(members)], env=env)
    assert result.exit_code == 0, result.output
    assert "inserted" in result.output and "rejected: missing name" in result.output
    assert n1 not in result.output and "辛" not in result.output
    assert stat.S_IMODE((home / "data.key").stat().st_mode) == 0o600
    result = CliRunner().invoke(app, ["import", "special", str(special)], env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["people", "rotate-key"], env=env)
    assert result.exit_code == 0 and "is current" in result.output
    # after a rotation the same file is still recognised: nothing changes
    result = CliRunner().invoke(app, ["import", "members", str(members)], env=env)
    assert result.exit_code == 0
    assert re.search(r"unchanged\W+2\W", result.output), result.output


def test_column_map_names_unusual_headers(engine: Engine, tmp_path: Path) -> None:
    (a,) = some_households(engine, 1)
    number = make_id("42011719700101001")
    src = write(
        tmp_path / "m.csv", ["村", "户编码", "成员", "证件号"], [[a[0], a[1], "壬一", number]]
    )
    with pytest.raises(InvalidInput, match="no recognisable header"):
        import_members(engine, src, KEYS)
    maps = parse_people_maps(["户编码=register_no", "成员=name", "证件号=id_number"], MEMBER_FIELDS)
    report = import_members(engine, src, KEYS, column_map=maps)
    assert (report.inserted, report.rejected) == (1, 0)
    for bad in (["证件号"], ["证件号=身份证"], ["=name"]):
        with pytest.raises(InvalidInput, match="--map"):
            parse_people_maps(bad, MEMBER_FIELDS)
    with pytest.raises(InvalidInput, match="not in the header"):
        import_members(engine, src, KEYS, column_map={**maps, "手机": "phone"})
