"""Rural address parsing: town, village, natural village, villager group, house number.

Household registers write one address in many ways ("石门镇王家湾村三组12号",
"王家湾村第3村民小组045号", "王家湾村５社李家畈"). :func:`parse_address` splits one
address into its parts, :func:`parse_addresses` does the same for a whole column
(deduplicated, cached) and :func:`normalise_address` gives the canonical text used to
match duplicates.

How an address is read
----------------------
1. *Cleaning*: full-width characters become half-width (``３`` → ``3``), spaces and
   stray punctuation (``，,、。·()（）`` …) are dropped, dashes survive only between
   digits (``12-1``).
2. *Levels*, each optional and in order, each ending at the first marker:
   province (``省``/``自治区``/municipality), city (``市``/``自治州``/``地区``/``盟``),
   county (``区``/``县``/``市``/``旗``), town (``镇``/``乡``/``街道``/``苏木``) and village
   (``村``/``社区``/``嘎查``, with an optional ``村委会``/``居委会`` suffix; a bare
   ``东风居委会`` is read as ``东风社区`` and ``红星村委会`` as ``红星村``).
3. *House number*: a number followed by ``号`` (or bare Arabic digits) at the very end;
   failing that, the last ``N号`` after the group.
4. *Group*: the first ``[第]N`` followed by ``组``/``队``/``社``/``小组``/``村民小组``/
   ``村民组``/``生产队`` (Chinese numerals, 两, 廿, 卅 and 〇 are understood).
5. *Natural village*: the name between the group and the house number, else the name
   between the village and the group (``自然村`` is stripped). When no village was
   marked, a name before the group is the village unless it is marked ``自然村``, ends
   in a natural-village suffix (湾, 畈, 冲, 台, 垸, 岗 …) and nothing follows the group.

Only ``town`` is reported from the administrative levels above the village;
province, city and county are recognised so that they are skipped. House numbers
are returned as text without leading zeros (``045`` → ``"45"``, ``12-1`` kept).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "ADDRESS_FIELDS",
    "NATURAL_VILLAGE_SUFFIXES",
    "ParsedAddress",
    "clean_address",
    "cn_to_int",
    "normalise_address",
    "parse_address",
    "parse_addresses",
    "parse_group",
]

#: Output fields, in order; also the JSON keys of the CLI.
ADDRESS_FIELDS = ("town", "village", "natural_village", "group", "house_number")


class ParsedAddress(NamedTuple):
    """The parts of one address; each is ``None`` when absent.

    >>> ParsedAddress("石门镇", "王家湾村", None, 3, "12").as_dict()["group"]
    3
    """

    town: str | None = None
    village: str | None = None
    natural_village: str | None = None
    group: int | None = None
    house_number: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the parts as a plain dict with the JSON keys of :data:`ADDRESS_FIELDS`."""
        return dict(zip(ADDRESS_FIELDS, self, strict=True))


_EMPTY = ParsedAddress()
_EMPTY_PARTS: tuple[None, None, None, None, None] = (None, None, None, None, None)

# ---------------------------------------------------------------------------
# Chinese numerals
# ---------------------------------------------------------------------------

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "○": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_TENS = {"廿": 20, "卅": 30}
_CN_ALL = "".join(_CN_DIGITS) + "".join(_CN_UNITS) + "".join(_CN_TENS)

# Full-width ASCII (！..～) -> half-width; ideographic space removed below.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}


def cn_to_int(text: str) -> int:
    """Convert a Chinese or Arabic numeral to an ``int``.

    Understands positional digits (``二〇三`` = 203), unit forms (``二十一``,
    ``一百零五``), ``两`` (2), ``廿`` (20), ``卅`` (30), and full-width digits.

    Parameters
    ----------
    text
        The numeral, without surrounding text.

    Returns
    -------
    int
        Its value.

    Raises
    ------
    ValueError
        If ``text`` is empty or contains anything but numeral characters.

    Examples
    --------
    >>> cn_to_int("二十一"), cn_to_int("廿三"), cn_to_int("两"), cn_to_int("一百零五")
    (21, 23, 2, 105)
    >>> cn_to_int("十"), cn_to_int("十二"), cn_to_int("〇五"), cn_to_int("３")
    (10, 12, 5, 3)
    """
    s = text.strip().translate(_FULLWIDTH)
    if not s:
        raise ValueError("empty numeral")
    if s.isascii() and s.isdigit():
        return int(s)
    if any(ch not in _CN_DIGITS and ch not in _CN_UNITS and ch not in _CN_TENS for ch in s):
        raise ValueError(f"not a numeral: {text!r}")
    if not any(ch in _CN_UNITS or ch in _CN_TENS for ch in s):
        value = 0
        for ch in s:  # positional: 二〇三 = 203
            value = value * 10 + _CN_DIGITS[ch]
        return value
    total = 0
    digit = 0
    for ch in s:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch in _CN_TENS:
            total += _CN_TENS[ch]
            digit = 0
        else:
            total += (digit or 1) * _CN_UNITS[ch]
            digit = 0
    return total + digit


# ---------------------------------------------------------------------------
# Cleaning
# ---------------------------------------------------------------------------

_DELETE = " \t\r\n\v\f\u3000\xa0\u200b\ufeff、。·・〈〉《》【】“”‘’…"
_ASCII_DELETE = ",.:;()[]{}<>\"'`!?/\\|_~"
_DASHES = "—–―‐‑⁃"
_CLEAN_TABLE: dict[int, int | None] = dict(_FULLWIDTH)
_CLEAN_TABLE[0xFF0D] = ord("-")  # full-width hyphen-minus
_CLEAN_TABLE.update({ord(ch): ord("-") for ch in _DASHES})
_DELETE_RE = re.compile("[\x00-\x1f\x7f" + re.escape(_DELETE + _ASCII_DELETE) + "]+")
# Anything that is not plain CJK, ASCII letters/digits or the hyphen needs cleaning.
_NEEDS_CLEAN = re.compile("[^\u3400-\u9fffA-Za-z0-9-]")
_NEEDS_TRANSLATE = re.compile("[\uff01-\uff5e" + _DASHES + "]")
_STRAY_DASH = re.compile(r"(?<![0-9号])-|-(?![0-9])")


def clean_address(text: str) -> str:
    """Drop spaces and stray punctuation and make full-width characters half-width.

    Dashes are kept only between two digits (house numbers such as ``12-1``).

    >>> clean_address(" 石门镇  王家湾村，两组、 ８号 ")
    '石门镇王家湾村两组8号'
    >>> clean_address("3组—12－1号")
    '3组12-1号'
    """
    s = text
    if _NEEDS_CLEAN.search(s) is not None:
        if _NEEDS_TRANSLATE.search(s) is not None:
            s = s.translate(_CLEAN_TABLE)
        s = _DELETE_RE.sub("", s)
    if "-" in s:
        s = _STRAY_DASH.sub("", s)
    return s


# ---------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------

_NUM_CN = f"[{_CN_ALL}]{{1,8}}"
_NUM = rf"(?:[0-9]{{1,6}}|{_NUM_CN})"
# Characters a name above the village level may not contain: digits and level markers.
_ADMIN_NAME = "[^0-9省市区县旗镇乡村组号队]"
_VILLAGE_NAME = "[^0-9省村组号队]"

# A village named "新村" is written "新村村": a 村 followed by another 村 (that does not
# begin 村委会/村民委员会) is part of the name.
_NOT_VILLAGE_AGAIN = "(?!村(?!委会|民委员会))"
_LEVELS = re.compile(
    rf"""
    (?:{_ADMIN_NAME}{{2,7}}?(?:省|自治区)|北京市|天津市|上海市|重庆市)?
    (?:{_ADMIN_NAME}{{2,8}}?(?:市|自治州|地区|盟)(?!村))?
    (?:{_ADMIN_NAME}{{1,8}}?(?:(?<![社小])区|县|市|旗)(?!村))?
    (?P<town>{_ADMIN_NAME}{{1,10}}?(?:街道办事处|街道|苏木|(?:镇|乡)(?!村)))?
    (?:
        (?P<village>{_VILLAGE_NAME}{{1,12}}?(?:(?<!自然)村{_NOT_VILLAGE_AGAIN}|社区|嘎查))
        (?:村民委员会|居民委员会|村委会|居委会|委会)?
      | (?P<vc>{_VILLAGE_NAME}{{1,12}}?)(?P<vs>村民委员会|村委会|居民委员会|居委会)
    )?
    """,
    re.VERBOSE,
)
#: Separators of a house number's attached parts: 12-1, 12附3, 12之1 (号 may precede them).
_HOUSE_SEP = "-附之"
_HOUSE_ANY = re.compile(
    rf"第?(?:(?P<n>附?[0-9]{{1,9}}(?:号?[{_HOUSE_SEP}][0-9]{{1,9}}){{0,3}})|(?P<c>{_NUM_CN}))号"
)
_GROUP = re.compile(rf"第?(?P<g>{_NUM})(?:村民小组|村民组|居民小组|小组|生产队|组|队|社(?!区))")
_CJK = re.compile("[\u3400-\u9fff]")

#: Endings typical of natural-village names (王家湾, 李家畈, 张家冲, 刘家台 …).
NATURAL_VILLAGE_SUFFIXES: tuple[str, ...] = tuple(
    "湾畈冲台垸岗坳塆咀嘴铺庄屋院坪坡岭洼沟桥店寨营堡埠墩塘坝园港场坊圩坎垅坞埂凹窝家弯洲山湖河林头边口"
)
_NV_MARK = "自然村"


def _name(segment: str) -> str | None:
    """A usable name: CJK text without Arabic digits, ``自然村`` stripped."""
    if segment.endswith(_NV_MARK):
        segment = segment[: -len(_NV_MARK)]
    if not segment or len(segment) > 20 or not _CJK.search(segment):
        return None
    if any("0" <= ch <= "9" for ch in segment):
        return None
    return segment


_DIGITS = re.compile("[0-9]+")


def _house_text(n: str | None, c: str | None) -> str:
    """House number text: no leading zeros, attached parts kept (``012号附03`` → ``12附3``).

    >>> _house_text("045", None), _house_text("12号-01", None), _house_text(None, "廿三")
    ('45', '12-1', '23')
    """
    if n is not None:
        if n[0] != "0" and n.isdigit():
            return n
        return _DIGITS.sub(lambda m: m.group().lstrip("0") or "0", n.replace("号", ""))
    return str(cn_to_int(c or ""))


# House number at the end, matched on the *reversed* text so that the match is anchored
# (no scan over every start position): "12-1号" reads "号1-21", "廿三号" reads "号三廿".
_TAIL_REV = re.compile(
    rf"(?:号(?P<c>[{_CN_ALL}]{{1,8}})"
    rf"|号?(?P<n>(?:[0-9]{{1,9}}[{_HOUSE_SEP}]号?){{0,3}}[0-9]{{1,9}}附?)(?![0-9]))第?"
)


def _split_tail(s: str) -> tuple[str, str | None]:
    """Split a house number off the end of cleaned text: ``N号``, ``N-M号`` or bare ``N``;
    attached parts (``12附3号``, ``12号之1``, ``12号-1``, ``附5号``) stay with it.

    >>> _split_tail("王家湾村3组12-1号"), _split_tail("王家湾村十二组廿三号")
    (('王家湾村3组', '12-1'), ('王家湾村十二组', '23'))
    >>> _split_tail("王家湾村3组12号附3号"), _split_tail("王家湾村3组附5号")
    (('王家湾村3组', '12附3'), ('王家湾村3组', '附5'))
    """
    m = _TAIL_REV.match(s[::-1])
    if m is None:
        return s, None
    n = m.group("n")
    house = _house_text(n[::-1], None) if n is not None else str(cn_to_int(m.group("c")[::-1]))
    return s[: len(s) - m.end()], house


# Cache of prefix parts. The key is the text before the house number; text that ends in
# no house number is keyed with a trailing "\x00" (cleaning removes control characters).
_PrefixParts = tuple[str | None, str | None, str | None, int | None, str | None]
_PREFIX_CACHE: dict[str, _PrefixParts] = {}
_CACHE_MAX = 500_000
_NO_TAIL = "\x00"


def _clear_caches() -> None:
    """Empty the prefix cache (benchmarks use it to time a cold start)."""
    _PREFIX_CACHE.clear()


def _parse_prefix(s: str, has_tail: bool) -> _PrefixParts:
    m = _LEVELS.match(s)
    town = village = None
    pos = 0
    if m is not None:
        town = m.group("town")
        village = m.group("village")
        if village is None and m.group("vc") is not None:
            village = m.group("vc") + ("社区" if "居" in m.group("vs") else "村")
        pos = m.end()
    rest = s[pos:]
    group: int | None = None
    house: str | None = None
    g = _GROUP.search(rest)
    if g is not None:
        group = cn_to_int(g.group("g"))
        pre = rest[: g.start()]
        after = rest[g.end() :]
    else:
        pre, after = rest, ""
    if not has_tail:
        # No number at the very end: take the last "N号" after the group, if any.
        scope = after if g is not None else pre
        last = None
        for last in _HOUSE_ANY.finditer(scope):  # noqa: B007 - keep the last match
            pass
        if last is not None:
            house = _house_text(last.group("n"), last.group("c"))
            if g is not None:
                after = scope[: last.start()]
            else:
                pre = scope[: last.start()]
    pre_name = _name(pre)
    mid_name = _name(after)
    natural: str | None
    if village is None and pre_name is not None:
        marked = pre.endswith(_NV_MARK)
        if marked or (mid_name is None and pre_name.endswith(NATURAL_VILLAGE_SUFFIXES)):
            natural = pre_name
        else:
            village, natural = pre_name, mid_name
    else:
        natural = mid_name if mid_name is not None else pre_name
    return town, village, natural, group, house


def _split_key(s: str) -> tuple[str, str | None]:
    """Cache key (the prefix, or the text plus NUL when it ends in no house number)."""
    if not s:
        return _NO_TAIL, None
    prefix, house = _split_tail(s)
    return (prefix if house is not None else s + _NO_TAIL), house


def _prefix_parts(key: str) -> _PrefixParts:
    parts = _PREFIX_CACHE.get(key)
    if parts is None:
        if key.endswith(_NO_TAIL):
            parts = _parse_prefix(key[:-1], False)
        else:
            parts = _parse_prefix(key, True)
        if len(_PREFIX_CACHE) >= _CACHE_MAX:
            _PREFIX_CACHE.clear()
        _PREFIX_CACHE[key] = parts
    return parts


def _is_missing(text: object) -> bool:
    if text is None or text is pd.NA:
        return True
    return isinstance(text, float) and text != text  # NaN


def parse_address(text: str | None) -> ParsedAddress:
    """Split one rural address into town, village, natural village, group and house number.

    Never raises: anything that is not an address (``None``, NaN, numbers, junk) gives
    a :class:`ParsedAddress` whose parts are ``None``.

    Parameters
    ----------
    text
        The address as written in the register; it may start at any level
        (province, city, county, town or village).

    Returns
    -------
    ParsedAddress
        ``town``, ``village``, ``natural_village``, ``group`` (int) and
        ``house_number`` (str), each ``None`` when absent.

    Examples
    --------
    >>> parse_address("石门镇王家湾村三组12号")  # doctest: +NORMALIZE_WHITESPACE
    ParsedAddress(town='石门镇', village='王家湾村', natural_village=None, group=3,
                  house_number='12')
    >>> parse_address("湖北省武汉市新洲区石门镇王家湾村第3村民小组045号").house_number
    '45'
    >>> parse_address("王家湾村二组李家畈18号").natural_village
    '李家畈'
    >>> parse_address("新洲区石门镇东风社区居委会七组")[:4]
    ('石门镇', '东风社区', None, 7)
    >>> parse_address(None)
    ParsedAddress(town=None, village=None, natural_village=None, group=None, house_number=None)
    """
    if _is_missing(text):
        return _EMPTY
    try:
        key, house = _split_key(clean_address(str(text)))
        town, village, natural, group, inner = _prefix_parts(key)
    except (ValueError, TypeError, OverflowError):  # defensive: never raise on input
        return _EMPTY
    return ParsedAddress(town, village, natural, group, inner if house is None else house)


def parse_addresses(values: pd.Series | Iterable[str | None]) -> pd.DataFrame:
    """Parse a whole column of addresses (the bulk path).

    Each distinct text is parsed once (``pandas.factorize``), and parts shared by many
    addresses (town, village, group prefixes) come from a cache, so registers with
    repeated prefixes parse at several hundred thousand addresses per second.

    Parameters
    ----------
    values
        Addresses; missing values (``None``/NaN) give missing parts.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ADDRESS_FIELDS`; ``group`` is nullable ``Int64``, the others
        are strings with missing values. The index is that of ``values`` when it is
        a Series.

    Examples
    --------
    >>> df = parse_addresses(pd.Series(["王家湾村3队", "石门镇王家湾村十二组廿三号", None]))
    >>> df["group"].tolist()
    [3, 12, <NA>]
    >>> df["house_number"].tolist()
    [nan, '23', nan]
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    # Each distinct text is cleaned and split once; each distinct prefix parsed once.
    key_index: dict[str, int] = {}
    key_codes: list[int] = []
    houses: list[str | None] = []
    for text in uniques.tolist():
        try:
            key, house = _split_key(clean_address(text if isinstance(text, str) else str(text)))
        except (ValueError, TypeError, OverflowError):
            key, house = _NO_TAIL, None
        code = key_index.get(key)
        if code is None:
            code = key_index[key] = len(key_index)
        key_codes.append(code)
        houses.append(house)
    parts: list[_PrefixParts] = []
    for key in key_index:
        try:
            parts.append(_prefix_parts(key))
        except (ValueError, TypeError, OverflowError):
            parts.append(_EMPTY_PARTS)
    parts.append(_EMPTY_PARTS)  # slot for missing input
    # Missing inputs have code -1: point them at the trailing slots.
    unique_at_row = np.where(codes < 0, len(uniques), codes)
    row_key = np.array([*key_codes, len(key_index)], dtype=np.intp)[unique_at_row]
    row_house = np.asarray([*houses, None], dtype=object)[unique_at_row]
    data: dict[str, Any] = {}
    for name, col in zip(ADDRESS_FIELDS, zip(*parts, strict=True), strict=True):
        arr = np.asarray(col, dtype=object)[row_key]
        if name == "house_number":
            # The house number at the end when there was one, else one found inside.
            has_tail = row_house != None  # noqa: E711 - elementwise on an object array
            arr[has_tail] = row_house[has_tail]
        data[name] = pd.array(arr, dtype="Int64" if name == "group" else "str")
    return pd.DataFrame(data, index=series.index)


_GROUP_ONLY = re.compile(rf"第?(?P<g>{_NUM})(?:村民小组|村民组|居民小组|小组|生产队|组|队|社)?")


def parse_group(text: object) -> int | None:
    """Read a villager-group column value: ``3``, ``"三组"``, ``"第五村民小组"``, ``"8队"``.

    Unlike :func:`parse_address`, a bare number is the group (not a house number).
    Returns ``None`` for anything else; never raises.

    >>> [parse_group(v) for v in ("3", "三组", "第五村民小组", "8队", "３", 4.0, "", None, "x")]
    [3, 3, 5, 8, 3, 4, None, None, None]
    """
    if _is_missing(text):
        return None
    if isinstance(text, float) and text.is_integer():
        text = int(text)
    m = _GROUP_ONLY.fullmatch(clean_address(str(text)))
    if m is None:
        return None
    try:
        return cn_to_int(m.group("g"))
    except ValueError:
        return None


def _canonical(p: ParsedAddress) -> str:
    parts = [p.town or "", p.village or ""]
    if p.group is not None:
        parts.append(f"{p.group}组")
    if p.natural_village:
        nv = p.natural_village
        if p.village is None and p.group is None:
            nv += _NV_MARK  # otherwise a bare name would read back as the village
        parts.append(nv)
    if p.house_number is not None:
        parts.append(f"{p.house_number}号")
    return "".join(parts)


def normalise_address(text: str | None) -> str:
    """Canonical form of an address, used to match duplicates.

    The canonical form is town + village + ``N组`` + natural village + ``N号``, with
    levels above the town dropped and numbers in Arabic digits. Text in which no part
    is recognised is returned cleaned (see :func:`clean_address`). The function is
    idempotent: ``normalise_address(normalise_address(x)) == normalise_address(x)``.

    Parameters
    ----------
    text
        An address in any of the forms :func:`parse_address` reads.

    Returns
    -------
    str
        The canonical address (``""`` for missing input).

    Examples
    --------
    >>> normalise_address("湖北省武汉市新洲区石门镇王家湾村第三村民小组012号")
    '石门镇王家湾村3组12号'
    >>> normalise_address("石门镇王家湾村李家畈自然村4组6号")
    '石门镇王家湾村4组李家畈6号'
    """
    if _is_missing(text):
        return ""
    cleaned = clean_address(str(text))
    parsed = parse_address(cleaned)
    if parsed == _EMPTY:
        return cleaned
    out = _canonical(parsed)
    # The canonical text is re-read the same way in all but contrived cases; iterate to
    # the fixed point so that normalising twice never changes the result.
    for _ in range(4):
        again = parse_address(out)
        if again == parsed:
            break
        parsed = again
        out = _canonical(parsed) if parsed != _EMPTY else out
    return out
