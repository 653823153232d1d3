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

from geogrid.people.idcard import make_id
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


def _birth(rng: np.random.Generator, age: int) -> dt.date:
    age = int(np.clip(age, 0, 99))
    return TODAY - dt.timedelta(days=age * 365 + int(rng.integers(0, 365)))


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
    rows: list[list[object]] = []
    used: set[str] = set()
    total = int(register["家庭人口"].sum()) + 1
    pools = {
        "男": nm.person_names(rng, total, female_share=0.0),
        "女": nm.person_names(rng, total, female_share=1.0),
    }
    phones = nm.phone_numbers(rng, total)
    k = 0
    for vil, reg_no, head, phone, size in register[
        ["村", "户号", "户主姓名", "联系电话", "家庭人口"]
    ].itertuples(index=False, name=None):
        head_age = int(rng.integers(28, 86))
        head_sex = "男" if rng.random() < 0.85 else "女"
        people = [("户主", head, head_sex, head_age, phone or "")]
        for j in range(int(size) - 1):
            if j == 0 and rng.random() < 0.8:
                relation = "配偶"
            else:
                relation = str(rng.choice(_OTHERS, p=_OTHERS_P))
            sex, (lo, hi) = _RELATIONS[relation]
            if not sex:
                sex = "女" if head_sex == "男" else "男"
            age = head_age + int(rng.integers(lo, hi + 1))
            name = pools[sex][k]
            if relation in ("子", "女", "孙子", "孙女"):
                name = head[0] + name[1:]
            k += 1
            own_phone = phones[k] if age >= 16 and rng.random() < 0.55 else ""
            people.append((relation, name, sex, max(age, 0), own_phone))
        for relation, name, sex, age, ph in people:
            born = _birth(rng, age)
            number = make_id(region, born, int(rng.integers(0, 1000)), sex)
            while number in used:
                number = make_id(region, born, int(rng.integers(0, 1000)), sex)
            used.add(number)
            status = str(rng.choice(list(RESIDENCE_P), p=list(RESIDENCE_P.values())))
            rows.append(
                [len(rows) + 1, vil, reg_no, name, relation, sex, born.isoformat(), number, ph,
                 status]
            )  # fmt: skip
    members = pd.DataFrame(rows, columns=list(MEMBER_COLUMNS))
    return members, _special(rng, members)


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
