"""Synthetic household members and special-population records for the sample town.

``members.csv`` lists every person of every register household (the head first, with the
register's 户主姓名 and phone), with a well-formed synthetic ID number (GB 11643 check
character, the sample county's region code, a birth date matching the person's age and
sex). ``special.csv`` names a few percent of the adults as special population
(刑满释放, 社区矫正 …) with a responsible worker. All names, numbers and records are
fictional: drawn from the explicit generator, so the same seed gives the same files.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from geogrid.people.idcard import CHECK_CHARS, WEIGHTS
from geogrid.sample import names as nm

__all__ = ["MEMBER_COLUMNS", "SPECIAL_COLUMNS", "build_people"]

#: Columns of ``members.csv``.
MEMBER_COLUMNS = (
    "序号", "村", "户号", "姓名", "与户主关系", "性别", "出生日期", "公民身份号码",
    "联系电话", "户籍状态",
)  # fmt: skip
#: Columns of ``special.csv``.
SPECIAL_COLUMNS = (
    "序号", "村", "户号", "姓名", "公民身份号码", "人员类别", "列管日期", "风险等级", "责任人",
)  # fmt: skip
#: Reference day of the ages (fixed, so that files do not change with the calendar).
TODAY = dt.date(2026, 6, 30)
#: Share of people per residence status.
RESIDENCE_P = {"户籍": 0.84, "外出": 0.09, "流动": 0.05, "寄住": 0.02}
#: Special-population categories and their shares (重点青少年 only among the young).
CATEGORY_P = {"刑满释放": 0.28, "社区矫正": 0.14, "吸毒人员": 0.10, "严重精神障碍": 0.33,
              "重点青少年": 0.15}  # fmt: skip
#: Share of adults (14 and over) in the special population.
SPECIAL_SHARE = 0.025

# relation → (sex: "男"/"女"/"" for either, age offset range from the head's age)
_RELATIONS: dict[str, tuple[str, tuple[int, int]]] = {
    "配偶": ("", (-6, 4)),
    "子": ("男", (-36, -20)),
    "女": ("女", (-36, -20)),
    "儿媳": ("女", (-36, -22)),
    "孙子": ("男", (-62, -42)),
    "孙女": ("女", (-62, -42)),
    "父亲": ("男", (20, 32)),
    "母亲": ("女", (18, 30)),
}
_OTHERS = ("子", "女", "孙子", "孙女", "儿媳", "父亲", "母亲")
_OTHERS_P = np.array([0.26, 0.22, 0.14, 0.13, 0.09, 0.08, 0.08])


def build_people(
    rng: np.random.Generator, register: pd.DataFrame, region: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Members of the register's households and the special-population records.

    Parameters
    ----------
    rng
        Source of randomness.
    register
        The household register (:data:`geogrid.sample.register.REGISTER_COLUMNS`).
    region
        Six-digit region code of the synthetic ID numbers (the sample county).

    Returns
    -------
    members, special
        Frames with :data:`MEMBER_COLUMNS` and :data:`SPECIAL_COLUMNS`.
    """
    sizes = register["家庭人口"].to_numpy(dtype=np.int64)
    n, total = len(sizes), int(sizes.sum())
    hh = np.repeat(np.arange(n), sizes)  # household of each person
    pos = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # 0 = the head
    head_age = rng.integers(28, 86, n)
    head_male = rng.random(n) < 0.85

    relation = rng.choice(np.array(_OTHERS), size=total, p=_OTHERS_P).astype(object)
    relation[(pos == 1) & (rng.random(total) < 0.8)] = "配偶"
    relation[pos == 0] = "户主"
    spec = {r: _RELATIONS.get(r, ("", (0, 0))) for r in (*_OTHERS, "配偶", "户主")}
    lo = np.array([spec[r][1][0] for r in relation])
    hi = np.array([spec[r][1][1] for r in relation])
    age = np.clip(head_age[hh] + rng.integers(lo, hi + 1), 0, 99)
    fixed = np.array([spec[r][0] for r in relation], dtype=object)
    male = np.where(fixed == "", head_male[hh] ^ (pos > 0), fixed == "男")
    sex = np.where(male, "男", "女")

    names = np.where(
        male,
        np.array(nm.person_names(rng, total, female_share=0.0), dtype=object),
        np.array(nm.person_names(rng, total, female_share=1.0), dtype=object),
    )
    heads = register["户主姓名"].to_numpy(dtype=object)
    names[pos == 0] = heads
    kin = np.isin(relation, ["子", "女", "孙子", "孙女"])
    names[kin] = [h[0] + m[1:] for h, m in zip(heads[hh[kin]], names[kin], strict=True)]

    phones = np.array(nm.phone_numbers(rng, total), dtype=object)
    phones[(age < 16) | (rng.random(total) >= 0.55)] = ""
    phones[pos == 0] = register["联系电话"].fillna("").to_numpy(dtype=object)

    born = np.datetime64(TODAY) - (age * 365 + rng.integers(0, 365, total)).astype("timedelta64[D]")
    numbers = _id_numbers(rng, region, born, male)
    status = rng.choice(np.array(list(RESIDENCE_P)), size=total, p=list(RESIDENCE_P.values()))
    names_of_village = register["村"].to_numpy(dtype=object)
    register_nos = register["户号"].to_numpy(dtype=object)
    members = pd.DataFrame(
        {
            "序号": np.arange(1, total + 1),
            "村": names_of_village[hh],
            "户号": register_nos[hh],
            "姓名": names,
            "与户主关系": relation,
            "性别": sex,
            "出生日期": np.datetime_as_string(born, unit="D"),
            "公民身份号码": numbers,
            "联系电话": phones,
            "户籍状态": status,
        },
        columns=list(MEMBER_COLUMNS),
    )
    return members, _special(rng, members)


def _id_numbers(
    rng: np.random.Generator, region: str, born: np.ndarray, male: np.ndarray
) -> np.ndarray:
    """Distinct, valid ID numbers: region, birth date, a sequence odd for men, check."""
    stem = np.char.add(region, np.char.replace(np.datetime_as_string(born, unit="D"), "-", ""))
    seq = rng.integers(0, 500, born.size) * 2 + male
    while True:
        first17 = np.char.add(stem, np.char.zfill(seq.astype(str), 3))
        dup = pd.Series(first17).duplicated().to_numpy()
        if not dup.any():
            break
        seq[dup] = rng.integers(0, 500, int(dup.sum())) * 2 + male[dup]
    digits = np.frombuffer("".join(first17.tolist()).encode(), dtype=np.uint8).reshape(-1, 17) - 48
    check = np.array(list(CHECK_CHARS))[(digits.astype(np.int64) @ np.array(WEIGHTS)) % 11]
    return np.char.add(first17, check).astype(object)


def _special(rng: np.random.Generator, members: pd.DataFrame) -> pd.DataFrame:
    born = pd.to_datetime(members["出生日期"])
    age = (pd.Timestamp(TODAY) - born).dt.days // 365
    adults = np.flatnonzero(age.to_numpy() >= 14)
    picked = np.sort(rng.choice(adults, size=round(SPECIAL_SHARE * len(adults)), replace=False))
    cats = list(CATEGORY_P)
    workers = nm.person_names(rng, 40)
    out: list[list[object]] = []
    for i in picked.tolist():
        cat = str(rng.choice(cats, p=list(CATEGORY_P.values())))
        if cat == "重点青少年" and age.iloc[i] > 25:
            cat = "严重精神障碍"
        since = TODAY - dt.timedelta(days=int(rng.integers(30, 3000)))
        risk = str(rng.choice(["低", "中", "高"], p=[0.6, 0.3, 0.1]))
        m = members.iloc[i]
        out.append(
            [len(out) + 1, m["村"], m["户号"], m["姓名"], m["公民身份号码"], cat,
             since.isoformat(), risk, workers[int(rng.integers(0, len(workers)))]]
        )  # fmt: skip
    return pd.DataFrame(out, columns=list(SPECIAL_COLUMNS))
