"""Import household members and special-population records from township spreadsheets.

``geogrid import members FILE`` and ``geogrid import special FILE`` read the file with the
household register's reader (:func:`geogrid.ingest.readers.read_register`: CSV in any
encoding it detects, Excel with title rows, the header found among the top rows), name the
people's columns (:data:`MEMBER_FIELDS`, :data:`SPECIAL_FIELDS`), validate every row and
load the good ones in one transaction:

* a member belongs to a stored household, found by its village and 户号;
* ID numbers are checked (:func:`geogrid.people.idcard.id_problem`) and must agree with
  the sex and birth date columns when those are given;
* a person is identified by the keyed hash of the ID number within the town; the ID
  number and the phone are stored encrypted (AES-256-GCM, the record id bound in), with
  their masked forms for display — never in plain text, not even in a staging table;
* a keyed hash of the row makes re-importing the same file change nothing.

Rejected rows go to the reject file (``<file>.rejects.csv``, created ``0600`` since it
repeats the file's personal data) with their row number and a reason; reasons name the
rule broken, never the personal value.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from geogrid.access import audit
from geogrid.errors import InvalidInput, log_summary
from geogrid.ingest.columns import FIELD_ALIASES, header_key
from geogrid.ingest.load import ImportReport, VillageIndex, load_villages, save_rejects
from geogrid.ingest.readers import RegisterFrame, read_register
from geogrid.people.crypto import KeyProvider, lookup_hash, seal
from geogrid.people.idcard import id_problem, normalize_id
from geogrid.people.mask import mask_id, mask_phone
from geogrid.people.models import CATEGORIES, RESIDENCE, RISK_LEVELS

__all__ = [
    "CATEGORIES",
    "MEMBER_FIELDS",
    "RESIDENCE",
    "RISK_LEVELS",
    "SPECIAL_FIELDS",
    "import_members",
    "import_special",
    "normalize_category",
    "parse_people_maps",
]

log = logging.getLogger(__name__)

#: Member fields → accepted headers, most specific first.
MEMBER_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "成员姓名", "人员姓名", "name", "member_name"),
    "relation": ("与户主关系", "家庭关系", "关系", "relation", "relationship"),
    "sex": ("性别", "sex", "gender"),
    "birth_date": ("出生日期", "出生年月日", "出生年月", "生日", "birth_date", "birthday", "dob"),
    "id_number": (
        "公民身份号码",
        "身份证号",
        "身份证号码",
        "身份证",
        "证件号码",
        "id_number",
        "id_no",
        "idcard",
    ),
    "phone": FIELD_ALIASES["phone"],
    "residence": ("户籍状态", "人口类型", "人员类型", "居住状态", "户籍类型", "residence"),
}
#: Special-population fields → accepted headers.
SPECIAL_FIELDS: dict[str, tuple[str, ...]] = {
    "name": MEMBER_FIELDS["name"],
    "id_number": MEMBER_FIELDS["id_number"],
    "category": ("人员类别", "类别", "特殊人群类别", "重点人员类别", "人群类别", "category"),
    "since": ("列管日期", "列管时间", "纳入日期", "纳入时间", "起始日期", "since"),
    "risk_level": ("风险等级", "危险等级", "风险", "管控等级", "risk_level", "risk"),
    "responsible": ("责任人", "包保人", "帮教责任人", "管控责任人", "responsible"),
    "note": ("备注", "note", "remarks"),
}
#: Fields the register reader already names and the people files use to find households.
_PLACE_FIELDS = ("register_no", "village", "village_code", "town")

_RESIDENCE_ALIASES = {
    "户籍": "户籍", "户籍人口": "户籍", "常住": "户籍", "本地": "户籍", "在家": "户籍",
    "流动": "流动", "流动人口": "流动", "外来": "流动", "暂住": "流动",
    "外出": "外出", "外出务工": "外出", "人户分离": "外出",
    "寄住": "寄住", "寄居": "寄住", "其他": "其他",
}  # fmt: skip
_CATEGORY_ALIASES = {
    "刑满释放人员": "刑满释放", "安置帮教": "刑满释放", "安置帮教人员": "刑满释放",
    "社区矫正人员": "社区矫正", "社区矫正对象": "社区矫正", "社区服刑人员": "社区矫正",
    "吸毒": "吸毒人员", "社区戒毒": "吸毒人员", "社区戒毒人员": "吸毒人员",
    "社区康复人员": "吸毒人员",
    "严重精神障碍患者": "严重精神障碍", "精神障碍": "严重精神障碍",
    "肇事肇祸精神病人": "严重精神障碍",
    "重点青少年群体": "重点青少年", "闲散青少年": "重点青少年",
    "艾滋病危险人员": "艾滋病危险", "艾滋病": "艾滋病危险",
}  # fmt: skip
_RISK_ALIASES = {
    "低": "低", "低风险": "低", "一般": "低", "1": "低", "一级": "低", "三级": "低",
    "中": "中", "中风险": "中", "较高": "中", "2": "中", "二级": "中",
    "高": "高", "高风险": "高", "3": "高", "重点": "高",
}  # fmt: skip
_SEXES = {"男": "男", "女": "女", "m": "男", "f": "女", "male": "男", "female": "女",
          "1": "男", "2": "女"}  # fmt: skip
_PHONE = re.compile(r"(?:1\d{10}|0\d{2,3}\d{7,8}|\d{7,8})")

MEMBER_REJECT_REASONS = (
    "missing register number", "unknown village", "unknown household", "missing name",
    "bad ID number", "bad sex", "bad birth date", "bad phone", "unknown residence status",
    "duplicate in file",
)  # fmt: skip
SPECIAL_REJECT_REASONS = (
    "bad ID number", "unknown person", "name does not match", "unknown category",
    "bad date", "unknown risk level", "duplicate in file",
)  # fmt: skip


def normalize_category(value: str) -> str | None:
    """The stored category for a spreadsheet's wording, ``None`` if unknown.

    >>> normalize_category("刑满释放人员"), normalize_category("严重精神障碍患者")
    ('刑满释放', '严重精神障碍')
    >>> normalize_category("游客") is None
    True
    """
    key = header_key(value)
    if key in CATEGORIES:
        return key
    return _CATEGORY_ALIASES.get(key)


def parse_people_maps(items: Iterable[str], fields: Mapping[str, object]) -> dict[str, str]:
    """``--map COLUMN=FIELD`` for a people file: ``fields`` and the place fields.

    >>> parse_people_maps(["证件号=id_number", "户编码=register_no"], MEMBER_FIELDS)
    {'证件号': 'id_number', '户编码': 'register_no'}
    """
    known = (*fields, *_PLACE_FIELDS)
    out: dict[str, str] = {}
    for item in items:
        column, sep, name = (part.strip() for part in item.rpartition("="))
        if not sep or not column or name not in known:
            raise InvalidInput(
                f"--map {item!r}: expected COLUMN=FIELD with FIELD one of {', '.join(known)}"
            )
        out[column] = name
    return out


def _read_people(
    path: Path,
    fields: Mapping[str, tuple[str, ...]],
    need: tuple[str, ...],
    *,
    sheet: str | int | None,
    encoding: str | None,
    column_map: Mapping[str, str] | None,
) -> tuple[RegisterFrame, pd.DataFrame]:
    """Read a people file with the register reader and name its people's columns."""
    overrides = dict(column_map or {})
    place = {c: f for c, f in overrides.items() if f in _PLACE_FIELDS}
    reg = read_register(path, sheet=sheet, encoding=encoding, column_map=place)
    frame = _pick_columns(reg, fields, {c: f for c, f in overrides.items() if f not in place})
    for name in need:
        if name not in frame.columns:
            raise InvalidInput(
                f"{path}: no {name} column; expected one of {', '.join(fields[name][:4])} "
                f"(or name it: --map COLUMN={name})"
            )
    return reg, frame


def _pick_columns(
    reg: RegisterFrame,
    fields: Mapping[str, tuple[str, ...]],
    overrides: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """``source_row``, the place fields the register reader named, and ``fields``.

    Overrides (``{header: field}``) first; then each field takes the column whose header
    is its most specific alias (then the leftmost); the register reader's own names
    (``head_name`` for 姓名 …) are looked through to the original headers.
    """
    index: dict[str, tuple[str, int]] = {}
    for name, aliases in fields.items():
        for rank, alias in enumerate(aliases):
            index.setdefault(header_key(alias), (name, rank))
    by_key = {header_key(h): c for c, h in reg.original_columns.items()}
    chosen: dict[str, tuple[str, tuple[int, int]]] = {}
    for header, name in (overrides or {}).items():
        column = by_key.get(header_key(header))
        if column is None:
            raise InvalidInput(
                f"--map names column {header!r}, which is not in the header "
                f"({', '.join(reg.original_columns.values())})"
            )
        chosen[name] = (column, (-1, 0))
    taken = {column for column, _ in chosen.values()}
    for pos, (column, header) in enumerate(reg.original_columns.items()):
        hit = None if column in taken else index.get(header_key(header))
        if hit is None:
            continue
        name, rank = hit
        if name not in chosen or (rank, pos) < chosen[name][1]:
            chosen[name] = (column, (rank, pos))
    frame = reg.frame
    out = pd.DataFrame({"source_row": frame["source_row"].to_numpy()}, index=frame.index)
    for name in _PLACE_FIELDS:
        if name in frame.columns:
            out[name] = frame[name]
    for name, (column, _) in chosen.items():
        out[name] = frame[column]
    for column in out.columns[1:]:
        out[column] = pd.Series([_text(v) for v in out[column]], index=out.index, dtype=object)
    return out


def _text(value: Any) -> str | None:
    """A cell as stripped text, ``None`` when empty or missing."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value).strip() or None


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]


def _parse_date(value: str | None) -> dt.date | None:
    """A date written as 1963-05-12, 1963/5/12, 1963.05.12, 19630512 or 1963年5月12日.

    >>> _parse_date("1963年5月12日"), _parse_date("19630512"), _parse_date("1963-05-12 00:00:00")
    (datetime.date(1963, 5, 12), datetime.date(1963, 5, 12), datetime.date(1963, 5, 12))
    """
    if not value:
        return None
    s = value.strip().replace("年", "-").replace("月", "-").replace("日", "")
    s = re.sub(r"[/.]", "-", s).split(" ")[0].split("T")[0]
    m = re.fullmatch(r"(\d{4})-?(\d{1,2})-?(\d{1,2})", s) if "-" in s else None
    if m is None:
        m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", s)
    if m is None:
        raise ValueError("not a date")
    return dt.date(int(m[1]), int(m[2]), int(m[3]))


def _phone(value: str | None) -> str | None:
    """Digits of a phone number (``+86``/``86`` dropped), or ``ValueError``."""
    if not value:
        return None
    digits = re.sub(r"[\s\-()（）]", "", value)
    digits = re.sub(r"^(\+?86)(?=1\d{10}$)", "", digits)
    if not _PHONE.fullmatch(digits):
        raise ValueError("not a phone number")
    return digits


@dataclass
class _Checked:
    good: list[dict[str, Any]]
    rejects: pd.DataFrame


def _rejects(rows: list[tuple[Any, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"reason": [r for _, r in rows]}, index=pd.Index([i for i, _ in rows]), dtype=object
    )


def _households(conn: Connection, villages: Iterable[str]) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        text("SELECT village_code, register_no, id FROM households WHERE village_code = ANY(:v)"),
        {"v": sorted(set(villages))},
    ).all()
    return {(v, r): int(i) for v, r, i in rows}


def _resolve_village(villages: VillageIndex, row: Mapping[str, Any]) -> tuple[str | None, str]:
    code, why = villages.resolve(row.get("village_code"), (row.get("village"),), (row.get("town"),))
    return code, why or "unknown village"


def check_members(
    frame: pd.DataFrame,
    villages: VillageIndex,
    households: Mapping[tuple[str, str], int],
    *,
    today: dt.date | None = None,
) -> _Checked:
    """Validate member rows (columns from :data:`MEMBER_FIELDS` and the place fields).

    Returns the good rows (``household_id``, ``village_code``, normalised fields) and the
    rejected rows' reasons indexed like ``frame``.
    """
    good: list[dict[str, Any]] = []
    bad: list[tuple[Any, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for idx, row in zip(frame.index, _records(frame), strict=True):
        reason, rec = _check_member(row, villages, households, today)
        if rec is not None:
            key = (rec["village_code"][:9], rec["id_number"])
            if key in seen:
                reason, rec = f"duplicate in file: the same ID number as row {seen[key]}", None
            else:
                seen[key] = int(row["source_row"])
        if rec is None:
            bad.append((idx, reason or "rejected"))
        else:
            good.append(rec)
    return _Checked(good, _rejects(bad))


def _check_member(
    row: Mapping[str, Any],
    villages: VillageIndex,
    households: Mapping[tuple[str, str], int],
    today: dt.date | None,
) -> tuple[str | None, dict[str, Any] | None]:
    reg_no = row.get("register_no")
    if not reg_no:
        return "missing register number", None
    village, why = _resolve_village(villages, row)
    if village is None:
        return why, None
    household = households.get((village, reg_no))
    if household is None:
        return f"unknown household: no household {reg_no} in village {village}", None
    if not row.get("name"):
        return "missing name", None
    problem = id_problem(row.get("id_number"), today=today)
    if problem:
        return problem, None
    number = normalize_id(row["id_number"])
    born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    id_sex = "男" if int(number[16]) % 2 else "女"
    sex = row.get("sex")
    if sex:
        sex = _SEXES.get(header_key(sex))
        if sex is None:
            return "bad sex: expected 男 or 女", None
        if sex != id_sex:
            return "bad sex: does not match the ID number", None
    if row.get("birth_date"):
        try:
            given = _parse_date(row["birth_date"])
        except ValueError:
            return "bad birth date: not a date", None
        if given != born:
            return "bad birth date: does not match the ID number", None
    try:
        phone = _phone(row.get("phone"))
    except ValueError:
        return "bad phone: not a mobile or landline number", None
    residence = row.get("residence")
    if residence:
        status = _RESIDENCE_ALIASES.get(header_key(residence))
        if status is None:
            known = "、".join(RESIDENCE)
            return f"unknown residence status {residence!r}: expected one of {known}", None
    else:
        status = "户籍"
    return None, {
        "source_row": int(row["source_row"]),
        "household_id": household,
        "village_code": village,
        "name": str(row["name"]),
        "sex": id_sex,
        "birth_date": born,
        "id_number": number,
        "relation": row.get("relation"),
        "phone": phone,
        "residence": status,
    }


def _row_hash(provider: KeyProvider, rec: Mapping[str, Any], fields: Iterable[str]) -> bytes:
    payload = json.dumps([str(rec.get(f)) for f in fields], ensure_ascii=False)
    return lookup_hash(provider, "row", payload)


_MEMBER_HASHED = ("household_id", "village_code", "name", "sex", "birth_date", "id_number",
                  "relation", "phone", "residence")  # fmt: skip
_MEMBER_COLUMNS = (
    "id", "household_id", "village_code", "name", "sex", "birth_date", "id_hash", "id_enc",
    "id_key", "id_masked", "relation", "phone_enc", "phone_key", "phone_masked", "residence",
    "row_hash",
)  # fmt: skip


def _sealed_member(provider: KeyProvider, rid: int, rec: Mapping[str, Any]) -> tuple[Any, ...]:
    id_key, id_enc = seal(provider, "household_members", rid, "id_number", rec["id_number"])
    phone_key: str | None = None
    phone_enc: bytes | None = None
    if rec["phone"]:
        phone_key, phone_enc = seal(provider, "household_members", rid, "phone", rec["phone"])
    return (
        rid, rec["household_id"], rec["village_code"], rec["name"], rec["sex"],
        rec["birth_date"], rec["id_hash"], id_enc, id_key, mask_id(rec["id_number"]),
        rec["relation"], phone_enc, phone_key, mask_phone(rec["phone"]), rec["residence"],
        rec["row_hash"],
    )  # fmt: skip


def _copy_rows(
    conn: Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    raw = conn.connection.driver_connection
    if raw is None:  # pragma: no cover - a closed connection
        raise InvalidInput("the database connection is closed")
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


@contextmanager
def _stored_or_nothing(path: Path) -> Iterator[None]:
    """A database error stops the import (its transaction rolls back) with a message that
    names the error, never the row: the database's own message repeats the row's values."""
    try:
        yield
    except (DBAPIError, psycopg.Error) as exc:
        log.warning("import of %s failed: %s", path.name, log_summary(exc))
        raise InvalidInput(
            f"{path}: the database refused the import ({log_summary(exc).split(' at ')[0]}); "
            "nothing was stored"
        ) from None


def _audit_import(
    conn: Connection, action: str, path: Path, report: ImportReport, rejected: int
) -> None:
    """The import in the audit log (in its transaction): file name and counts, no values."""
    audit.record(
        conn, actor=None, action=action, target_type="file",
        detail={"file": path.name, "by": "command line", "os_user": getpass.getuser(),
                "read": report.read, "inserted": report.inserted, "updated": report.updated,
                "rejected": rejected},
    )  # fmt: skip


def open_all_scopes(conn: Connection) -> None:
    """Let this transaction see and write every scope (command-line imports run as the
    operator, who owns the tables; row-level security is FORCEd on them)."""
    conn.execute(
        text(
            "SELECT set_config('geogrid.scope', '*', true), "
            "set_config('geogrid.special', 'on', true)"
        )
    )


def store_members(
    conn: Connection, provider: KeyProvider, good: list[dict[str, Any]]
) -> tuple[int, int]:
    """Insert new members, update changed ones, leave identical ones; (inserted, updated)."""
    for rec in good:
        rec["id_hash"] = lookup_hash(provider, "id", rec["id_number"])
        rec["row_hash"] = _row_hash(provider, rec, _MEMBER_HASHED)
    existing = {
        (str(town), bytes(h)): (int(i), bytes(rh))
        for i, town, h, rh in conn.execute(
            text(
                "SELECT id, left(village_code, 9), id_hash, row_hash FROM household_members "
                "WHERE id_hash = ANY(:h)"
            ),
            {"h": [r["id_hash"] for r in good]},
        ).all()
    }
    new: list[dict[str, Any]] = []
    changed: list[tuple[int, dict[str, Any]]] = []
    for rec in good:
        hit = existing.get((rec["village_code"][:9], rec["id_hash"]))
        if hit is None:
            new.append(rec)
        elif hit[1] != rec["row_hash"]:
            changed.append((hit[0], rec))
    if new:
        ids = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('household_members', 'id')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": len(new)},
        ).scalars()
        rows = [_sealed_member(provider, int(rid), rec) for rid, rec in zip(ids, new, strict=True)]
        _copy_rows(conn, "household_members", _MEMBER_COLUMNS, rows)
    if changed:
        conn.execute(
            text(
                f"CREATE TEMP TABLE stage_members ON COMMIT DROP AS "
                f"SELECT {', '.join(_MEMBER_COLUMNS)} FROM household_members WITH NO DATA"
            )
        )
        rows = [_sealed_member(provider, rid, rec) for rid, rec in changed]
        _copy_rows(conn, "stage_members", _MEMBER_COLUMNS, rows)
        sets = ", ".join(f"{c} = s.{c}" for c in _MEMBER_COLUMNS if c != "id")
        conn.execute(
            text(
                f"UPDATE household_members m SET {sets}, updated_at = now() "
                "FROM stage_members s WHERE m.id = s.id"
            )
        )
    return len(new), len(changed)


def _finish_report(
    report: ImportReport, reg: RegisterFrame, rejects: pd.DataFrame, path: Path,
    rejects_path: Path | None,
) -> ImportReport:  # fmt: skip
    report.rejected = len(rejects)
    report.encoding = reg.encoding
    report.rejects_by_reason = {
        str(k): int(v)
        for k, v in rejects["reason"].str.split(":").str[0].value_counts().sort_index().items()
    } if len(rejects) else {}  # fmt: skip
    originals = reg.originals(rejects.index)
    originals.insert(1, "reason", rejects["reason"].to_numpy())
    save_rejects(report, originals, path, rejects_path)
    if report.rejects_file is not None:
        os.chmod(report.rejects_file, 0o600)  # it repeats the file's personal data
    return report


def import_members(
    engine: Engine,
    path: Path,
    provider: KeyProvider,
    *,
    town: str | None = None,
    sheet: str | int | None = None,
    encoding: str | None = None,
    rejects_path: Path | None = None,
    today: dt.date | None = None,
    column_map: Mapping[str, str] | None = None,
) -> ImportReport:
    """``geogrid import members FILE``: validate and store household members.

    Parameters
    ----------
    engine
        The PostGIS store (households imported first).
    path
        CSV or ``.xlsx`` with 户号, 村 (or a village code), 姓名 and 公民身份号码 columns;
        optional 性别, 出生日期, 与户主关系, 联系电话, 户籍状态.
    provider
        The data key provider (:func:`geogrid.people.crypto.key_provider`).
    town
        Only match village names within this town (12-digit code).
    rejects_path
        Where the reject file goes (default ``<file name>.rejects.csv`` next to the input).
    column_map
        ``{header: field}`` overrides (:func:`parse_people_maps`).

    Returns
    -------
    ImportReport
        Counts read / inserted / updated / unchanged / rejected and rejects by reason.
    """
    reg, frame = _read_people(
        path, MEMBER_FIELDS, ("name", "id_number"), sheet=sheet, encoding=encoding,
        column_map=column_map,
    )  # fmt: skip
    report = ImportReport(read=len(frame))
    with _stored_or_nothing(path), engine.begin() as conn:
        open_all_scopes(conn)
        villages = load_villages(conn, town)
        checked = check_members(frame, villages, _households(conn, villages.codes), today=today)
        report.inserted, report.updated = store_members(conn, provider, checked.good)
        _audit_import(conn, "people.import", path, report, len(checked.rejects))
    report.unchanged = len(checked.good) - report.inserted - report.updated
    log.info("members: %d read, %d rejected", report.read, len(checked.rejects))
    return _finish_report(report, reg, checked.rejects, path, rejects_path)


# ---------------------------------------------------------------------------
# special population
# ---------------------------------------------------------------------------


def check_special(
    frame: pd.DataFrame,
    members: Mapping[bytes, tuple[int, str, str]],
    provider: KeyProvider,
    *,
    today: dt.date | None = None,
) -> _Checked:
    """Validate special-population rows; ``members`` maps an ID hash to
    ``(member id, village code, name)``."""
    good: list[dict[str, Any]] = []
    bad: list[tuple[Any, str]] = []
    seen: dict[tuple[int, str], int] = {}
    now = today or dt.date.today()
    for idx, row in zip(frame.index, _records(frame), strict=True):
        reason: str | None = None
        rec: dict[str, Any] | None = None
        problem = id_problem(row.get("id_number"), today=today)
        if problem:
            reason = problem
        else:
            hit = members.get(lookup_hash(provider, "id", normalize_id(row["id_number"])))
            category = normalize_category(row.get("category") or "")
            risk = _RISK_ALIASES.get(header_key(row.get("risk_level") or "低"))
            if hit is None:
                reason = "unknown person: no household member with this ID number"
            elif row.get("name") and row["name"] != hit[2]:
                reason = "name does not match the member with this ID number"
            elif category is None:
                reason = f"unknown category {row.get('category')!r}: expected one of " + "、".join(
                    CATEGORIES
                )
            elif risk is None:
                reason = f"unknown risk level {row.get('risk_level')!r}: expected 低, 中 or 高"
            else:
                try:
                    since = _parse_date(row.get("since"))
                except ValueError:
                    since, reason = None, "bad date: 列管日期 is not a date"
                if since is not None and since > now:
                    reason = "bad date: 列管日期 is in the future"
                if reason is None:
                    rec = {
                        "member_id": hit[0],
                        "village_code": hit[1],
                        "category": category,
                        "since": since,
                        "risk_level": risk,
                        "responsible": row.get("responsible"),
                        "note": row.get("note"),
                    }
        if rec is not None:
            key = (rec["member_id"], rec["category"])
            if key in seen:
                reason, rec = (
                    f"duplicate in file: the same person and category as row {seen[key]}",
                    None,
                )
            else:
                seen[key] = int(row["source_row"])
        if rec is None:
            bad.append((idx, reason or "rejected"))
        else:
            good.append(rec)
    return _Checked(good, _rejects(bad))


_SPECIAL_COLUMNS = ("member_id", "village_code", "category", "since", "risk_level",
                    "responsible", "note", "row_hash")  # fmt: skip


def store_special(
    conn: Connection, provider: KeyProvider, good: list[dict[str, Any]]
) -> tuple[int, int]:
    """Upsert by (member, category); unchanged rows are not touched. (inserted, updated)"""
    if not good:
        return 0, 0
    for rec in good:
        rec["row_hash"] = _row_hash(provider, rec, _SPECIAL_COLUMNS[:-1])
    conn.execute(
        text(
            f"CREATE TEMP TABLE stage_special ON COMMIT DROP AS "
            f"SELECT {', '.join(_SPECIAL_COLUMNS)} FROM special_population WITH NO DATA"
        )
    )
    _copy_rows(conn, "stage_special", _SPECIAL_COLUMNS,
               [tuple(r[c] for c in _SPECIAL_COLUMNS) for r in good])  # fmt: skip
    cols = ", ".join(_SPECIAL_COLUMNS)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in _SPECIAL_COLUMNS[1:])
    row = conn.execute(
        text(
            f"WITH up AS (INSERT INTO special_population AS p ({cols}) SELECT {cols} "
            f"FROM stage_special ON CONFLICT (member_id, category) DO UPDATE SET {sets}, "
            "updated_at = now() WHERE p.row_hash IS DISTINCT FROM EXCLUDED.row_hash "
            "RETURNING (xmax = 0) AS ins) "
            "SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM up"
        )
    ).one()
    return int(row[0]), int(row[1])


def import_special(
    engine: Engine,
    path: Path,
    provider: KeyProvider,
    *,
    town: str | None = None,
    sheet: str | int | None = None,
    encoding: str | None = None,
    rejects_path: Path | None = None,
    today: dt.date | None = None,
    column_map: Mapping[str, str] | None = None,
) -> ImportReport:
    """``geogrid import special FILE``: special-population records of stored members.

    The file needs 公民身份号码 (the person, found by its keyed hash among the members)
    and 人员类别; optional 姓名 (checked against the member), 列管日期, 风险等级, 责任人,
    备注. The register reader needs a 户号 or 住址 column to find the header row.
    """
    reg, frame = _read_people(
        path, SPECIAL_FIELDS, ("id_number", "category"), sheet=sheet, encoding=encoding,
        column_map=column_map,
    )  # fmt: skip
    report = ImportReport(read=len(frame))
    with _stored_or_nothing(path), engine.begin() as conn:
        open_all_scopes(conn)
        where = "WHERE left(village_code, 9) = :t" if town else ""
        members: dict[bytes, tuple[int, str, str]] = {}
        for mid, h, village, name in conn.execute(
            text(f"SELECT id, id_hash, village_code, name FROM household_members {where}"),
            {"t": (town or "")[:9]},
        ).all():
            members[bytes(h)] = (int(mid), str(village), str(name))
        checked = check_special(frame, members, provider, today=today)
        report.inserted, report.updated = store_special(conn, provider, checked.good)
        _audit_import(conn, "special.import", path, report, len(checked.rejects))
    report.unchanged = len(checked.good) - report.inserted - report.updated
    return _finish_report(report, reg, checked.rejects, path, rejects_path)
