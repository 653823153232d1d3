"""The household register (户籍登记) as township offices keep it, plus its ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from geogrid.coords import wgs84_to_gcj02
from geogrid.sample import names as nm
from geogrid.sample.world import World

__all__ = ["REGISTER_COLUMNS", "build_register"]

#: Column order of ``households.xlsx`` / ``households.csv``.
REGISTER_COLUMNS = (
    "序号", "村", "组", "户号", "户主姓名", "联系电话",
    "家庭人口", "家庭住址", "经度", "纬度", "坐标系",
)  # fmt: skip

#: Share of register rows per coordinate source ("" = no coordinates).
COORD_SHARES = {"WGS84": 0.60, "GCJ02": 0.15, "CGCS2000": 0.10, "": 0.15}
#: Household sizes 1..8 (rural Hubei: many elderly couples, few large households).
POPULATION_P = np.array([0.12, 0.24, 0.22, 0.19, 0.12, 0.065, 0.03, 0.015])
#: GPS noise of recorded coordinates (metres, per axis).
GPS_SIGMA_M = 2.0


def _group_text(rng: np.random.Generator, g: np.ndarray) -> list[str]:
    """The 组 column in the mixed forms clerks type."""
    form = rng.choice(6, size=g.size, p=[0.35, 0.2, 0.15, 0.1, 0.1, 0.1])
    out = []
    for n, f in zip(g.tolist(), form.tolist(), strict=True):
        if f == 0:
            out.append(str(n))
        elif f == 1:
            out.append(f"{nm.cn_number(n)}组")
        elif f == 2:
            out.append(f"第{n}组")
        elif f == 3:
            out.append(f"{n}队")
        elif f == 4:
            out.append(f"第{nm.cn_number(n)}村民小组")
        else:
            out.append(f"{n}组")
    return out


def _addresses(
    rng: np.random.Generator,
    county: list[str],
    town: list[str],
    village: list[str],
    natural: list[str],
    g: np.ndarray,
    door: np.ndarray,
) -> list[str]:
    """Addresses in the varied forms found in real registers."""
    n = g.size
    form = rng.choice(7, size=n, p=[0.28, 0.17, 0.17, 0.10, 0.10, 0.10, 0.08])
    liang = rng.random(n) < 0.35
    team = rng.choice(np.array(["队", "社"]), n)
    messy = rng.integers(0, 4, n)
    out = []
    for i in range(n):
        gi, di = int(g[i]), int(door[i])
        T, V, N, C = town[i], village[i], natural[i], county[i]  # noqa: N806
        gcn = "两" if gi == 2 and liang[i] else nm.cn_number(gi)
        f = form[i]
        if f == 0:
            a = f"{T}{V}{gcn}组{di}号"
        elif f == 1:
            a = f"湖北省武汉市{C}{T}{V}第{gi}村民小组{di:03d}号"
        elif f == 2:
            a = f"{V}{gcn}组{N}{di}号"
        elif f == 3:
            a = f"{V}{nm.cn_number(gi)}组{nm.cn_number_colloquial(di)}号"
        elif f == 4:
            a = f"{T}{V}{nm.fullwidth(str(gi))}组{nm.fullwidth(str(di))}号"
        elif f == 5:
            a = f"{V}{gi}{team[i]}{di}号"
        elif messy[i] == 0:
            a = f"{T} {V}，{gi}组 {di}号"
        elif messy[i] == 1:
            a = f"{V}{gi}组-{di}号 "
        elif messy[i] == 2:
            a = f"（{T}）{V}{gi}组{N}{di}号"
        else:
            a = f" {V} {gcn}组{di}号。"
        out.append(a)
    return out


def build_register(
    rng: np.random.Generator, world: World, lon: np.ndarray, lat: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the register table and the matching ground truth.

    Parameters
    ----------
    rng
        Source of randomness.
    world
        The generated world.
    lon, lat
        True WGS84 coordinates of ``world``'s households.

    Returns
    -------
    register, truth
        ``register`` has :data:`REGISTER_COLUMNS`; ``truth`` has one row per household
        (same order) with ``seq, register_no, village_code, group_no, natural_village,
        population, lon, lat`` (true WGS84).
    """
    vils = world.villages
    vcode = np.array([v.code for v in vils])
    order = np.lexsort((world.hh_arc, world.hh_natural, world.hh_group, vcode[world.hh_village]))
    hv = world.hh_village[order]
    hg = world.hh_group[order]
    hn = world.hh_natural[order]
    lon = np.asarray(lon)[order]
    lat = np.asarray(lat)[order]
    n = hv.size

    # register numbers: unique within the village, with gaps (households moved away)
    register_no = np.empty(n, dtype=object)
    starts = np.flatnonzero(np.r_[True, hv[1:] != hv[:-1]])
    ends = np.r_[starts[1:], n]
    for a, b in zip(starts, ends, strict=True):
        vil = vils[int(hv[a])]
        m = b - a
        inc = 1 + (rng.random(m) < 0.06) * rng.integers(1, 4, m)
        seq = np.cumsum(inc) + int(rng.integers(0, 15))
        if vil.register_style == "year":
            years = np.sort(rng.integers(2008, 2017, m))
            register_no[a:b] = [f"{y}-{s:04d}" for y, s in zip(years, seq, strict=True)]
        else:
            register_no[a:b] = [f"{s:04d}" for s in seq]

    # door numbers: running within (village, group)
    key = hv * 1000 + hg
    gstart = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    first = np.repeat(gstart, np.diff(np.r_[gstart, n]))
    skips = np.cumsum(rng.random(n) < 0.04)  # a few numbers skipped
    door = np.arange(n) - first + 1 + skips - skips[first]

    town_of = [world.towns[vils[int(v)].town] for v in hv]
    county = [world.params.county_name] * n
    town_names = [t.name for t in town_of]
    vnames = [vils[int(v)].name for v in hv]
    naturals = [vils[int(v)].natural_names[int(k)] for v, k in zip(hv, hn, strict=True)]
    population = rng.choice(np.arange(1, 9), size=n, p=POPULATION_P)
    heads = nm.person_names(rng, n)
    phones = np.array(nm.phone_numbers(rng, n), dtype=object)
    phones[rng.random(n) < 0.05] = ""

    # coordinates as recorded
    labels = np.array(list(COORD_SHARES))
    source = rng.choice(labels, size=n, p=np.array(list(COORD_SHARES.values())))
    m_per_deg_lat = 110_574.0
    m_per_deg_lon = 111_320.0 * np.cos(np.radians(lat))
    rlon = lon + rng.normal(0, GPS_SIGMA_M, n) / m_per_deg_lon
    rlat = lat + rng.normal(0, GPS_SIGMA_M, n) / m_per_deg_lat
    gcj = source == "GCJ02"
    glon, glat = wgs84_to_gcj02(rlon[gcj], rlat[gcj])
    rlon[gcj], rlat[gcj] = glon, glat
    rlon = np.round(rlon, 6)
    rlat = np.round(rlat, 6)
    rlon[source == ""] = np.nan
    rlat[source == ""] = np.nan
    geodetic = np.flatnonzero((source == "WGS84") | (source == "CGCS2000"))
    picks = rng.permutation(geodetic)
    n_swap = max(2, round(0.002 * n))
    swapped = picks[:n_swap]
    rlon[swapped], rlat[swapped] = rlat[swapped].copy(), rlon[swapped].copy()
    zero = [int(i) for i in picks[n_swap:] if source[i] == "WGS84"][:2]
    rlon[zero] = 0.0
    rlat[zero] = 0.0

    register = pd.DataFrame(
        {
            "序号": np.arange(1, n + 1),
            "村": vnames,
            "组": _group_text(rng, hg),
            "户号": register_no,
            "户主姓名": heads,
            "联系电话": phones,
            "家庭人口": population,
            "家庭住址": _addresses(rng, county, town_names, vnames, naturals, hg, door),
            "经度": rlon,
            "纬度": rlat,
            "坐标系": source,
        },
        columns=list(REGISTER_COLUMNS),
    )
    if len(world.towns) > 1:
        # a county-wide export names the town (乡镇) of each row: village names repeat
        register.insert(1, "乡镇", town_names)
    truth = pd.DataFrame(
        {
            "seq": np.arange(1, n + 1),
            "register_no": register_no,
            "village_code": vcode[hv],
            "group_no": hg.astype(np.int64),
            "natural_village": naturals,
            "population": population,
            "lon": lon,
            "lat": lat,
        }
    )
    return register, truth
