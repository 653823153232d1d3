"""Key units, fire inspection points and a year of cases, clustered in space and time."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from geogrid.sample.world import World, locate

__all__ = ["CASE_CATEGORIES", "build_cases", "build_inspection_points", "build_key_units"]

YEAR = 2025
_START = dt.date(YEAR, 1, 1)
_DAYS = 365

#: Category -> share of the yearly cases.
CASE_CATEGORIES: dict[str, float] = {
    "矛盾纠纷": 0.19,
    "安全隐患": 0.12,
    "环境卫生": 0.22,
    "治安问题": 0.08,
    "民生服务": 0.19,
    "消防隐患": 0.07,
    "道路交通": 0.07,
    "其他": 0.06,
}

#: Public holidays of 2025 (New Year, Spring Festival, Qingming, Labour Day, Dragon Boat,
#: National Day + Mid-Autumn), as day-of-year indices (0 = 1 January).
_HOLIDAYS = sorted(
    {0}
    | set(range(27, 35))
    | set(range(93, 96))
    | set(range(120, 125))
    | set(range(150, 153))
    | set(range(273, 281))
)
_SPRING_FESTIVAL = 28  # 29 January 2025

_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "矛盾纠纷": (
        "{p}邻里因宅基地界线发生纠纷，需调解",
        "{p}两户因排水沟走向产生矛盾",
        "{p}土地流转租金支付产生争议",
        "{p}村民反映山林权属纠纷",
        "{p}家庭赡养问题引发矛盾，请求调解",
    ),
    "安全隐患": (
        "{p}山体边坡有落石隐患",
        "{p}危房一处，雨季存在倒塌风险",
        "{p}塘堰堤坝出现渗水",
        "{p}电线杆倾斜，线路下垂",
        "{p}路边水塘无防护栏",
    ),
    "环境卫生": (
        "{p}垃圾堆放未及时清运",
        "{p}沟渠堵塞，污水外溢",
        "{p}焚烧秸秆产生浓烟",
        "{p}公厕卫生较差，需保洁",
        "{p}河道漂浮垃圾较多",
    ),
    "治安问题": (
        "{p}夜间有可疑人员出没",
        "{p}发生电动车被盗",
        "{p}村民反映有人聚众赌博",
        "{p}农用物资失窃",
    ),
    "民生服务": (
        "{p}路灯损坏，夜间照明不足",
        "{p}自来水停水，请求维修",
        "{p}村民咨询医保缴费事宜",
        "{p}申请困难救助，需入户核实",
        "{p}道路坑洼，请求修补",
    ),
    "消防隐患": (
        "{p}私拉乱接电线，存在火灾隐患",
        "{p}柴草堆放靠近住房",
        "{p}消防通道被占用",
        "{p}灭火器过期未更换",
    ),
    "道路交通": (
        "{p}路口视线受阻，存在交通安全隐患",
        "{p}农用车辆违规载人",
        "{p}道路塌陷，影响通行",
        "{p}占道堆放建材",
    ),
    "其他": (
        "{p}流浪犬较多，村民担心安全",
        "{p}群众咨询政策事宜",
        "{p}反映噪音扰民",
    ),
}

#: Hour-of-day profile of reports (morning and afternoon peaks).
_HOURS = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.1, 0.3, 1.0, 2.5, 4.5, 6.0, 6.0, 5.0,
     3.0, 3.5, 5.0, 5.5, 5.0, 4.0, 3.0, 2.5, 2.0, 1.2, 0.6, 0.3]
)  # fmt: skip

_UNIT_TYPES: tuple[tuple[str, str, int, bool], ...] = (
    # type, name pattern, risk level (3 = high), at the town seat
    ("学校", "{s}中心小学", 2, True),
    ("学校", "{s}初级中学", 2, True),
    ("学校", "{v}小学", 2, False),
    ("学校", "{v}小学", 2, False),
    ("幼儿园", "{s}中心幼儿园", 2, True),
    ("幼儿园", "{v}幼儿园", 2, False),
    ("卫生院", "{t}卫生院", 2, True),
    ("卫生室", "{v}卫生室", 1, False),
    ("卫生室", "{v}卫生室", 1, False),
    ("卫生室", "{v}卫生室", 1, False),
    ("养老院", "{t}敬老院", 3, True),
    ("养老院", "{v}幸福院", 3, False),
    ("加油站", "中国石化{s}加油站", 3, True),
    ("加油站", "中国石油{s}{n}加油站", 3, False),
    ("液化气站", "{s}液化气供应站", 3, False),
    ("集贸市场", "{s}集贸市场", 3, True),
    ("工厂", "武汉{s}建材有限公司", 2, False),
    ("工厂", "{s}{n}砖瓦厂", 3, False),
    ("工厂", "{v}米厂", 2, False),
    ("工厂", "武汉{n}木业有限公司", 3, False),
    ("工厂", "{s}服装加工厂", 2, False),
    ("超市", "{s}购物中心", 2, True),
    ("超市", "{v}便民超市", 1, False),
    ("宾馆", "{s}宾馆", 2, True),
    ("仓库", "{s}粮食仓库", 2, False),
    ("网吧", "{s}网络会所", 2, True),
    ("宗教场所", "{n}观音庙", 2, False),
    ("村委会", "{v}村民委员会", 1, False),
)


def _inside(world: World, xy: np.ndarray, margin: float = 2.0) -> np.ndarray:
    lab, m = locate(world.mesh, world.cell_village, xy)
    return np.asarray((lab >= 0) & (m >= margin))


def _place_near(
    rng: np.random.Generator, world: World, centres: np.ndarray, sigma: float, fallback: np.ndarray
) -> np.ndarray:
    """Points near ``centres`` (Gaussian), inside the town; else at ``fallback``."""
    out = centres + rng.normal(0, sigma, centres.shape)
    for _ in range(6):
        bad = ~_inside(world, out)
        if not bad.any():
            return out
        out[bad] = centres[bad] + rng.normal(0, sigma, (int(bad.sum()), 2))
        sigma *= 0.6
    bad = ~_inside(world, out)
    out[bad] = fallback[bad]
    return out


def _household_of(world: World, rng: np.random.Generator, villages: np.ndarray) -> np.ndarray:
    """A random household position in each given village."""
    out = np.empty((villages.size, 2))
    for v in np.unique(villages):
        idx = np.flatnonzero(world.hh_village == v)
        sel = villages == v
        out[sel] = world.hh_xy[idx[rng.integers(0, idx.size, int(sel.sum()))]]
    return out


def build_key_units(rng: np.random.Generator, world: World) -> pd.DataFrame:
    """A few dozen key units per town; columns in metres (``x, y``) plus attributes."""
    rows = []
    for town in world.towns:
        seat = world.villages[town.seat]
        seat_nat = int(np.argmax(seat.natural_sizes))
        stem = town.name[:-1]
        for utype, pattern, risk, at_seat in _UNIT_TYPES:
            if at_seat:
                vil, k = seat, seat_nat
            else:
                vil = world.villages[int(rng.choice(town.villages))]
                k = int(rng.integers(len(vil.natural_names)))
            nat = vil.natural_names[k]
            vname = vil.name.removesuffix("村").removesuffix("社区")
            name = pattern.format(s=stem, t=town.name, v=vname, n=nat[:2])
            centre = vil.natural_xy[k]
            rows.append(
                {
                    "town": town.index,
                    "village": vil.index,
                    "type": utype,
                    "name": name,
                    "risk_level": int(
                        np.clip(risk + (rng.random() < 0.15) - (rng.random() < 0.15), 1, 3)
                    ),
                    "cx": centre[0],
                    "cy": centre[1],
                    "address": f"{town.name}{vil.name}{nat}{int(rng.integers(1, 120))}号",
                }
            )
    df = pd.DataFrame(rows)
    centres = df[["cx", "cy"]].to_numpy()
    fallback = _household_of(world, rng, df["village"].to_numpy())
    xy = _place_near(rng, world, centres, 120.0, fallback)
    df["x"], df["y"] = xy[:, 0], xy[:, 1]
    # names must be unique within a town: number duplicates
    dup = df.groupby(["town", "name"]).cumcount()
    df.loc[dup > 0, "name"] = df.loc[dup > 0, "name"] + (dup[dup > 0] + 1).map(lambda i: f"({i})")
    df["unit_id"] = [f"KU{i + 1:05d}" for i in range(len(df))]
    return df.drop(columns=["cx", "cy"])


def build_inspection_points(
    rng: np.random.Generator, world: World, units: pd.DataFrame, per_town: int = 100
) -> pd.DataFrame:
    """About ``per_town`` fire inspection points per town (key units, hydrants, stations)."""
    rows = []
    end = dt.date(YEAR, 12, 31)
    for town in world.towns:
        tu = units[units["town"] == town.index]
        cand: list[tuple[str, float, float, int]] = [
            (str(name), float(x), float(y), int(v))
            for name, x, y, v in zip(
                tu["name"],
                tu["x"].to_numpy(),
                tu["y"].to_numpy(),
                tu["village"].to_numpy(),
                strict=True,
            )
        ]
        for v in town.villages:
            vil = world.villages[v]
            for k, nat in enumerate(vil.natural_names):
                cx, cy = vil.natural_xy[k]
                kinds = ["消防取水点", "消火栓", "微型消防站", "柴草集中堆放点"]
                for kind in rng.choice(kinds, size=int(rng.integers(1, 3)), replace=False):
                    cand.append((f"{vil.name}{nat}{kind}", cx, cy, v))
        cand = cand[: max(per_town, len(tu))]
        names = [c[0] for c in cand]
        centres = np.array([[c[1], c[2]] for c in cand])
        is_unit = np.arange(len(cand)) < len(tu)
        fallback = _household_of(world, rng, np.array([c[3] for c in cand]))
        xy = np.where(is_unit[:, None], centres, _place_near(rng, world, centres, 60.0, fallback))
        monthly = is_unit | (rng.random(len(cand)) < 0.3)
        lag = np.where(monthly, rng.integers(0, 45, len(cand)), rng.integers(0, 120, len(cand)))
        for i in range(len(cand)):
            rows.append(
                {
                    "town": town.index,
                    "name": names[i],
                    "x": xy[i, 0],
                    "y": xy[i, 1],
                    "schedule": "monthly" if monthly[i] else "quarterly",
                    "last_inspected": (end - dt.timedelta(days=int(lag[i]))).isoformat(),
                }
            )
    df = pd.DataFrame(rows)
    dup = df.groupby(["town", "name"]).cumcount()
    df.loc[dup > 0, "name"] = df.loc[dup > 0, "name"] + (dup[dup > 0] + 1).map(lambda i: f"{i}号")
    df["point_id"] = [f"IP{i + 1:05d}" for i in range(len(df))]
    return df


def _gauss(d: np.ndarray, mu: float, sd: float) -> np.ndarray:
    return np.asarray(np.exp(-(((d - mu) / sd) ** 2)))


def _season(category: str, d: np.ndarray) -> np.ndarray:
    if category == "环境卫生":
        return 1 + 0.7 * _gauss(d, 200, 45)
    if category == "消防隐患":
        return 1 + 0.9 * (_gauss(d, 10, 30) + _gauss(d, 375, 30)) + 0.6 * _gauss(d, 94, 8)
    if category == "矛盾纠纷":
        return 1 + 1.3 * _gauss(d, _SPRING_FESTIVAL, 10)
    if category == "道路交通":
        return 1 + 0.9 * (_gauss(d, _SPRING_FESTIVAL - 5, 9) + _gauss(d, 276, 5))
    if category == "安全隐患":
        return 1 + 0.6 * _gauss(d, 185, 25)  # flood season
    return np.ones_like(d, dtype=float)


def build_cases(
    rng: np.random.Generator, world: World, units: pd.DataFrame, per_town: float = 4500.0
) -> pd.DataFrame:
    """A year of incidents per town with seasonal, weekly, holiday and burst patterns."""
    days = np.arange(_DAYS)
    weekday = (days + _START.weekday()) % 7  # 0 = Monday
    weekly = np.array([1.12, 1.05, 1.0, 1.0, 0.97, 0.72, 0.62])[weekday]
    holiday = np.zeros(_DAYS)
    holiday[_HOLIDAYS] = 1
    cats = list(CASE_CATEGORIES)
    parts = []
    for town in world.towns:
        scale = per_town * town.n_households / 10_000
        base = scale / _DAYS
        vs = town.villages
        nat_xy = np.vstack([world.villages[v].natural_xy for v in vs])
        nat_w = np.concatenate([world.villages[v].natural_sizes for v in vs]).astype(float)
        nat_names = [
            f"{world.villages[v].name}{n}" for v in vs for n in world.villages[v].natural_names
        ]
        tu = units[
            (units["town"] == town.index) & units["type"].isin(["集贸市场", "学校", "卫生院"])
        ]
        hubs = tu[["x", "y"]].to_numpy()
        hub_names = tu["name"].tolist()
        rows_day, rows_cat = [], []
        for ci, c in enumerate(cats):
            rate = base * CASE_CATEGORIES[c] * _season(c, days) * weekly
            if c == "民生服务":
                rate = rate * np.where(holiday > 0, 0.5, 1.0)
            elif c in ("矛盾纠纷", "治安问题"):
                rate = rate * np.where(holiday > 0, 1.3, 1.0)
            k = rng.poisson(rate)
            rows_day.append(np.repeat(days, k))
            rows_cat.append(np.full(int(k.sum()), ci))
        day = np.concatenate(rows_day)
        cat = np.concatenate(rows_cat)
        nb = day.size
        kind = rng.choice(4, size=nb, p=[0.6, 0.15, 0.15, 0.1])
        nat_pick = rng.choice(nat_xy.shape[0], size=nb, p=nat_w / nat_w.sum())
        hub_pick = rng.integers(0, max(len(hubs), 1), nb)
        centres = nat_xy[nat_pick].copy()
        place = np.array(nat_names, dtype=object)[nat_pick]
        sigma = np.full(nb, 150.0)
        if len(hubs):
            h = kind == 1
            centres[h] = hubs[hub_pick[h]]
            place[h] = np.array(hub_names, dtype=object)[hub_pick[h]]
            sigma[h] = 80.0
        hh_idx = np.flatnonzero(np.isin(world.hh_village, vs))
        pick_hh = hh_idx[rng.integers(0, hh_idx.size, nb)]
        h = kind == 2
        centres[h] = world.hh_xy[pick_hh[h]]
        sigma[h] = 30.0
        h = kind == 3
        centres[h] = world.hh_xy[pick_hh[h]]
        sigma[h] = 600.0
        # bursts: a few short flurries of one category at one place
        b_day, b_cat, b_xy, b_place = [], [], [], []
        for _ in range(int(rng.integers(6, 11))):
            d0 = int(rng.integers(0, _DAYS - 7))
            length = int(rng.integers(2, 7))
            ci = int(rng.integers(len(cats)))
            j = int(rng.choice(nat_xy.shape[0], p=nat_w / nat_w.sum()))
            counts = rng.poisson(max(2.0, 0.0015 * scale), length)
            for off, cnt in enumerate(counts):
                b_day.extend([d0 + off] * int(cnt))
                b_cat.extend([ci] * int(cnt))
                b_xy.extend([nat_xy[j]] * int(cnt))
                b_place.extend([nat_names[j]] * int(cnt))
        if b_day:
            day = np.concatenate([day, b_day])
            cat = np.concatenate([cat, b_cat])
            centres = np.vstack([centres, np.array(b_xy)])
            place = np.concatenate([place, np.array(b_place, dtype=object)])
            sigma = np.concatenate([sigma, np.full(len(b_day), 60.0)])
            pick_hh = np.concatenate([pick_hh, hh_idx[rng.integers(0, hh_idx.size, len(b_day))]])
        n = day.size
        xy = centres + rng.normal(0, 1, (n, 2)) * sigma[:, None]
        for _ in range(6):
            bad = ~_inside(world, xy)
            if not bad.any():
                break
            xy[bad] = centres[bad] + rng.normal(0, 1, (int(bad.sum()), 2)) * sigma[bad, None] * 0.5
        bad = ~_inside(world, xy)
        xy[bad] = world.hh_xy[pick_hh[bad]] + rng.normal(0, 2.0, (int(bad.sum()), 2))
        hour = rng.choice(24, size=n, p=_HOURS / _HOURS.sum())
        sec = rng.integers(0, 3600, n)
        tmpl = [
            _DESCRIPTIONS[cats[c]][int(rng.integers(len(_DESCRIPTIONS[cats[c]])))]
            for c in cat.tolist()
        ]
        desc = [t.format(p=p) for t, p in zip(tmpl, place.tolist(), strict=True)]
        parts.append(
            pd.DataFrame(
                {
                    "t": day * 86400 + hour * 3600 + sec,
                    "category": [cats[c] for c in cat.tolist()],
                    "x": xy[:, 0],
                    "y": xy[:, 1],
                    "description": desc,
                    "town": town.index,
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    df = df.sort_values(["t", "town", "category", "x"], kind="stable").reset_index(drop=True)
    tz = dt.timezone(dt.timedelta(hours=8))
    base_dt = dt.datetime(YEAR, 1, 1, tzinfo=tz)
    df["reported_at"] = [
        (base_dt + dt.timedelta(seconds=int(s))).isoformat() for s in df["t"].to_numpy()
    ]
    df["case_id"] = [f"C{YEAR}{i + 1:06d}" for i in range(len(df))]
    df["status"] = case_statuses(df["t"].to_numpy(), np.random.default_rng([YEAR, len(df)]))
    return df.drop(columns=["t"])


#: Where cases stand at the end of the sample year, by age: (older than, shares).
_STATUS_MIX: tuple[tuple[int, dict[str, float]], ...] = (
    (30, {"archived": 0.62, "closed": 0.24, "rejected": 0.04, "voided": 0.03,
          "evaluated": 0.02, "in_progress": 0.02, "dispatched": 0.01, "suspended": 0.02}),
    (7, {"closed": 0.40, "evaluated": 0.10, "checked": 0.08, "handled": 0.12,
         "in_progress": 0.14, "dispatched": 0.06, "suspended": 0.02, "rejected": 0.05,
         "registered": 0.03}),
    (0, {"reported": 0.16, "accepted": 0.08, "verified": 0.04, "registered": 0.10,
         "dispatched": 0.20, "in_progress": 0.20, "handled": 0.10, "checked": 0.05,
         "closed": 0.04, "rejected": 0.03}),
)  # fmt: skip


def case_statuses(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where each case (``t``: seconds since 1 January) stands on 31 December: old cases
    mostly closed and archived, a few stuck open (overdue), the last week's in every queue.

    Drawn from its own generator so the rest of the sample stays as it was.
    """
    age = _DAYS - t / 86400.0
    out = np.empty(t.size, dtype=object)
    done = np.zeros(t.size, dtype=bool)
    for older_than, mix in _STATUS_MIX:
        pick = (age > older_than) & ~done
        names = list(mix)
        p = np.array([mix[k] for k in names])
        out[pick] = rng.choice(np.array(names, dtype=object), size=int(pick.sum()), p=p / p.sum())
        done |= pick
    return out
