"""Address-parsing throughput on generated register addresses.

Generates ``--rows`` addresses in the forms township registers use (Chinese and
Arabic group numbers, 第N村民小组, 队/社, natural villages, full-width digits, stray
spaces and punctuation, prefixes from province down to village) and times
:func:`geogrid.ingest.address.parse_addresses` (the bulk path) and a loop over
:func:`geogrid.ingest.address.parse_address`.

Run: ``.venv/bin/python bench/bench_parse.py --rows 1000000``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from geogrid.ingest.address import _clear_caches, parse_address, parse_addresses
from geogrid.ingest.readers import read_register

CN = ["", "一", "二", "三", "四", "五", "六", "七", "八", "九"]


def cn_number(n: int) -> str:
    """Write 1..99 in Chinese (十二, 二十一), with 两 for 2 now and then."""
    tens, ones = divmod(n, 10)
    head = "" if tens == 0 else ("十" if tens == 1 else CN[tens] + "十")
    return head + CN[ones] if n != 2 else "两"


def generate(rows: int, seed: int = 0) -> pd.Series:
    """Generate ``rows`` addresses from a county of ~20 towns x ~25 villages."""
    rng = np.random.default_rng(seed)
    surnames = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭")
    suffixes = list("湾畈冲台垸岗坳塆咀铺")
    towns = [
        f"{a}{b}镇"
        for a, b in zip(
            "石新东西南北阳汪仓凤徐辛潘李三道旧邾涨双",
            "门集河岭湖岗逻集埠凰古冲塘集店观街城渡柳",
            strict=True,
        )
    ]
    villages = [f"{rng.choice(surnames)}家{rng.choice(suffixes)}村" for _ in range(500)]
    # Each village has a handful of natural villages, as real ones do.
    naturals = [f"{rng.choice(surnames)}家{rng.choice(suffixes)}" for _ in range(500 * 6)]
    town_i = rng.integers(0, len(towns), rows)
    vill_i = town_i * 25 + rng.integers(0, 25, rows)
    group = rng.integers(1, 25, rows)
    house = rng.integers(1, 300, rows)
    form = rng.integers(0, 8, rows)
    nv_i = vill_i * 6 + rng.integers(0, 6, rows)
    out = []
    for t, v, g, h, f, nv in zip(town_i, vill_i, group, house, form, nv_i, strict=True):
        town, vil, nat = towns[t], villages[v], naturals[nv]
        if f == 0:
            s = f"{town}{vil}{cn_number(g)}组{h}号"
        elif f == 1:
            s = f"湖北省武汉市新洲区{town}{vil}第{g}村民小组{h:03d}号"
        elif f == 2:
            s = f"{vil}{cn_number(g)}组{nat}{h}号"
        elif f == 3:
            s = f"{town} {vil}，{g}组、 {h}号"
        elif f == 4:
            s = f"{town}{vil}{nat}自然村{g}组{h}号"
        elif f == 5:
            s = f"{vil}{str(g).translate({c: c + 0xFEE0 for c in range(0x30, 0x3A)})}组 {h}号"
        elif f == 6:
            s = f"{town}{vil}{g}队{nat}"
        else:
            s = f"新洲区{town}{vil}{g}社{h}"
        out.append(s)
    return pd.Series(out, dtype="str")


def bench_read(addresses: pd.Series) -> None:
    """Write a register CSV in GB18030 and in UTF-8 with BOM; time read_register on each."""
    n = len(addresses)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "序号": np.arange(1, n + 1).astype(str),
            "村": "王家湾村",
            "组": rng.integers(1, 25, n).astype(str),
            "户号": [f"{i:016d}" for i in range(n)],
            "户主姓名": "王建国",
            "联系电话": "13800000000",
            "家庭人口": rng.integers(1, 8, n).astype(str),
            "家庭住址": addresses.to_numpy(),
            "经度": np.round(114.5 + rng.random(n) / 10, 6).astype(str),
            "纬度": np.round(30.8 + rng.random(n) / 10, 6).astype(str),
            "坐标系": "CGCS2000",
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        for encoding in ("gb18030", "utf-8-sig"):
            path = Path(tmp) / f"households_{encoding}.csv"
            frame.to_csv(path, index=False, encoding=encoding)
            size = path.stat().st_size / 1e6
            t0, c0 = time.perf_counter(), time.process_time()
            reg = read_register(path)
            dt, ct = time.perf_counter() - t0, time.process_time() - c0
            print(
                f"read_register CSV {encoding} ({size:.0f} MB, {len(reg):,} rows): "
                f"{dt:.2f} s wall = {len(reg) / dt:,.0f} rows/s, {ct:.2f} s CPU on "
                f"all threads (detected {reg.encoding})"
            )


def main() -> None:
    """Time the bulk and the one-by-one paths (and, with --read, the CSV reader)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--read", action="store_true", help="also time read_register on CSV")
    args = parser.parse_args()
    t0 = time.perf_counter()
    series = generate(args.rows)
    t1 = time.perf_counter()
    print(f"generated {len(series):,} addresses ({series.nunique():,} distinct) in {t1 - t0:.1f} s")

    # Wall time, and CPU time (the same on an idle machine; on a shared one the CPU
    # time is the better estimate of what the code costs).
    for label in ("cold cache", "warm cache"):
        if label == "cold cache":
            _clear_caches()
        t0, c0 = time.perf_counter(), time.process_time()
        df = parse_addresses(series)
        dt, ct = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"parse_addresses ({label}): {dt:.2f} s wall = {len(series) / dt:,.0f} addresses/s; "
            f"{ct:.2f} s CPU = {len(series) / ct:,.0f} addresses/s"
        )
    n = min(len(series), 200_000)
    sample = series.iloc[:n].tolist()
    t0 = time.perf_counter()
    for text in sample:
        parse_address(text)
    dt = time.perf_counter() - t0
    print(f"parse_address loop ({n:,}): {n / dt:,.0f} addresses/s")
    missing = df.isna().mean().round(3).to_dict()
    print(f"share missing per field: {missing}")
    if args.read:
        bench_read(series)


if __name__ == "__main__":
    main()
