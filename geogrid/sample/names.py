"""Word lists and text helpers for the sample generator: names, numerals, addresses.

Everything here is fictional. Every character used is encodable in GBK (the tests check
it), because township PCs export registers in GBK.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "FULLWIDTH_DIGITS",
    "cn_number",
    "cn_number_colloquial",
    "fullwidth",
    "person_names",
    "phone_numbers",
    "place_names",
]

#: Common surnames with rough relative frequencies (central China).
SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.1), ("李", 7.0), ("张", 6.6), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1),
    ("黄", 2.2), ("赵", 2.0), ("吴", 1.9), ("周", 1.9), ("徐", 1.5), ("孙", 1.4),
    ("马", 1.3), ("朱", 1.3), ("胡", 1.9), ("郭", 1.1), ("何", 1.1), ("高", 1.0),
    ("林", 0.9), ("罗", 1.0), ("郑", 0.8), ("梁", 0.7), ("谢", 0.8), ("宋", 0.6),
    ("唐", 0.6), ("许", 0.6), ("韩", 0.5), ("冯", 0.5), ("邓", 0.6), ("曹", 0.5),
    ("彭", 0.6), ("曾", 0.5), ("肖", 0.6), ("田", 0.5), ("董", 0.4), ("袁", 0.4),
    ("潘", 0.4), ("蔡", 0.4), ("蒋", 0.4), ("余", 0.6), ("杜", 0.4), ("叶", 0.4),
    ("程", 0.5), ("魏", 0.3), ("夏", 0.4), ("汪", 0.5), ("熊", 0.5), ("万", 0.4),
    ("邹", 0.3), ("喻", 0.3), ("涂", 0.3), ("付", 0.3), ("方", 0.3), ("聂", 0.2),
)  # fmt: skip

#: Characters used in given names (male-leaning, female-leaning, neutral).
GIVEN_MALE = "国建华明志军伟强平刚勇德文海东林永春金祥福贵成清兵波辉俊杰峰涛斌宏发红新"
GIVEN_FEMALE = "秀英兰芳玉珍桂琴丽萍敏燕霞娟梅红菊凤莲翠云香艳慧静婷"
GIVEN_COMMON = "家长远世光荣雪安小胜先学丰"

#: Suffixes of natural-village names in the hills of central China (湾, 畈, 冲 ...).
PLACE_SUFFIXES = "湾畈冲岭咀垸塆店铺岗港桥庙庄坳嘴墩湖畈湾冲"

#: Names of administrative villages (村) not derived from a natural village.
VILLAGE_NAMES = (
    "桃园", "新华", "红旗", "长岭", "石桥", "柳河", "龙泉", "杨林", "双河", "永安",
    "高峰", "大屋", "联合", "团结", "胜利", "群力", "先锋", "光明", "和平", "新建",
    "跃进", "东风", "红星", "幸福", "新民", "金星", "花园", "柏树", "竹林", "枫树",
    "松林", "梅园", "荷花", "凤凰", "白果", "青山", "绿水", "太平", "兴隆", "顺河",
    "檀树", "杉林", "茶园", "李桥", "黄岗", "官田", "白石", "黑石", "泉水", "丰收",
    "向阳", "东升", "新河", "三合", "四新", "五一", "六合", "七里", "八一", "九龙",
    "万山", "千秋", "百福", "十里", "沙河", "泥河", "清水", "塘角", "湖滨", "渡口",
)  # fmt: skip

#: Town names (镇) for one county; the first one is the canonical sample town.
TOWN_NAMES = (
    "石门", "双柳", "汪集", "仓埠", "旧街", "徐古", "潘塘", "凤凰", "三店", "辛冲",
    "柏泉", "长岭", "横店", "罗汉", "蔡榨", "乌龙", "山坡", "安山", "湖泗", "舒安",
    "法泗", "金口", "涂家", "方集", "李集", "将军", "花山", "龙口", "杨店", "梅店",
    "新城", "白沙", "青龙", "桂花", "黄土", "东山", "西河", "南岗", "北湖", "中和",
)  # fmt: skip

FULLWIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")

_CN_DIGITS = "零一二三四五六七八九"


def cn_number(n: int) -> str:
    """Write a non-negative integer below 10,000 in Chinese numerals (formal style).

    Examples
    --------
    >>> [cn_number(n) for n in (3, 10, 12, 20, 23, 105, 120, 1003)]
    ['三', '十', '十二', '二十', '二十三', '一百零五', '一百二十', '一千零三']
    """
    if not 0 <= n < 10_000:
        raise ValueError(f"cn_number supports 0..9999, got {n}")
    if n < 10:
        return _CN_DIGITS[n]
    if n < 20:
        return "十" + (_CN_DIGITS[n % 10] if n % 10 else "")
    units = ((1000, "千"), (100, "百"), (10, "十"))
    out: list[str] = []
    rest = n
    zero_pending = False
    for value, unit in units:
        digit, rest = divmod(rest, value)
        if digit:
            if zero_pending:
                out.append("零")
                zero_pending = False
            out.append(_CN_DIGITS[digit] + unit)
        elif out:
            zero_pending = True
    if rest:
        if zero_pending or (out and n % 100 < 10):
            out.append("零")
        out.append(_CN_DIGITS[rest])
    return "".join(out)


def cn_number_colloquial(n: int) -> str:
    """Chinese numerals as written in registers: 廿 for 20-29 and 两 for a leading 2.

    Examples
    --------
    >>> [cn_number_colloquial(n) for n in (2, 20, 23, 200, 45)]
    ['两', '廿', '廿三', '两百', '四十五']
    """
    if n == 2:
        return "两"
    if 20 <= n < 30:
        return "廿" + (_CN_DIGITS[n - 20] if n > 20 else "")
    text = cn_number(n)
    if text.startswith("二") and len(text) > 1 and text[1] in "百千":
        return "两" + text[1:]
    return text


def fullwidth(text: str) -> str:
    """Replace ASCII digits by full-width digits.

    >>> fullwidth("3组12号")
    '３组１２号'
    """
    return text.translate(FULLWIDTH_DIGITS)


def _weighted_surnames(rng: np.random.Generator, n: int) -> np.ndarray:
    chars = np.array([s for s, _ in SURNAMES])
    weights = np.array([w for _, w in SURNAMES], dtype=float)
    return rng.choice(chars, size=n, p=weights / weights.sum())


def person_names(rng: np.random.Generator, n: int, *, female_share: float = 0.15) -> list[str]:
    """Draw ``n`` fictional Chinese personal names (surname + one or two characters).

    Examples
    --------
    >>> names = person_names(np.random.default_rng(1), 5)
    >>> len(names), all(2 <= len(x) <= 3 for x in names)
    (5, True)
    """
    surnames = _weighted_surnames(rng, n)
    female = rng.random(n) < female_share
    two = rng.random(n) < 0.72
    male_pool = np.array(list(GIVEN_MALE + GIVEN_COMMON))
    female_pool = np.array(list(GIVEN_FEMALE + GIVEN_COMMON))
    first = np.where(female, rng.choice(female_pool, n), rng.choice(male_pool, n))
    second = np.where(female, rng.choice(female_pool, n), rng.choice(male_pool, n))
    return [
        s + f + (t if dbl and t != f else "")
        for s, f, t, dbl in zip(surnames, first, second, two, strict=True)
    ]


def phone_numbers(rng: np.random.Generator, n: int) -> list[str]:
    """Fake 11-digit mainland mobile numbers (13x, 15x, 18x prefixes).

    Examples
    --------
    >>> phones = phone_numbers(np.random.default_rng(1), 3)
    >>> all(len(p) == 11 and p[:2] in ("13", "15", "18") for p in phones)
    True
    """
    prefixes = np.array(
        [f"13{d}" for d in range(10)]
        + [f"15{d}" for d in (0, 1, 2, 3, 5, 6, 7, 8, 9)]
        + [f"18{d}" for d in range(10)]
    )
    pre = rng.choice(prefixes, n)
    body = rng.integers(0, 100_000_000, n)
    return [f"{p}{b:08d}" for p, b in zip(pre, body, strict=True)]


def place_names(rng: np.random.Generator, n: int, *, taken: Sequence[str] = ()) -> list[str]:
    """Draw ``n`` distinct natural-village names such as 王家湾, 李家畈, 张家冲.

    Examples
    --------
    >>> names = place_names(np.random.default_rng(3), 4)
    >>> len(set(names)), all(len(x) == 3 and x[1] in "家" for x in names)
    (4, True)
    """
    used = set(taken)
    out: list[str] = []
    suffixes = list(dict.fromkeys(PLACE_SUFFIXES))
    surname_chars = [s for s, _ in SURNAMES]
    # surname + 家 + suffix gives ~1,100 combinations; fall back to surname + two chars.
    for _ in range(n * 50):
        if len(out) == n:
            break
        s = surname_chars[int(rng.integers(len(surname_chars)))]
        x = suffixes[int(rng.integers(len(suffixes)))]
        name = f"{s}家{x}"
        if name not in used:
            used.add(name)
            out.append(name)
    i = 0
    while len(out) < n:  # only for very large counties
        s = surname_chars[i % len(surname_chars)]
        name = f"{s}家{suffixes[(i // len(surname_chars)) % len(suffixes)]}{i}"
        i += 1
        if name not in used:
            used.add(name)
            out.append(name)
    return out
