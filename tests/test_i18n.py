"""The message catalogue: every key in zh and en, one key per API error code, and the
checks of :func:`geogrid.i18n.load_catalogue` each refusing what it must."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from geogrid import i18n
from geogrid.errors import ConfigurationError, GeogridError, InvalidInput


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_all_subclasses(sub)}
    return out


def test_catalogue_is_complete_in_both_languages() -> None:
    cat = i18n.catalogue()
    assert len(cat) > 50
    for key, texts in cat.items():
        assert set(texts) == set(i18n.LANGS), key
        assert all(v.strip() for v in texts.values()), key
    zh, en = i18n.messages("zh"), i18n.messages("en")
    assert zh.keys() == en.keys() == cat.keys()


def test_every_error_code_the_api_emits_has_a_message() -> None:
    import api.app  # noqa: F401  (imports every module that defines an error class)
    from api import errors as api_errors

    codes = {cls.__name__ for cls in _all_subclasses(GeogridError)} | {"GeogridError"}
    codes |= set(api_errors.HTTP_CODES.values())
    source = "\n".join(
        p.read_text(encoding="utf-8")
        for folder in ("api", "geogrid", "tiles")
        for p in (Path(__file__).parent.parent / folder).rglob("*.py")
    )
    # literal codes: {"code": "X", ...}, RequestRejected(status, "X", ...), error_response(...)
    codes |= set(re.findall(r'"code":\s*"([A-Z][A-Za-z]+)"', source))
    codes |= set(re.findall(r'(?:RequestRejected|error_response)\(\s*\d+,\s*"([A-Z]\w+)"', source))
    missing = sorted(c for c in codes if f"errors.{c}" not in i18n.catalogue())
    assert not missing, f"add these to geogrid/messages/errors.json: {missing}"


def test_t_fills_placeholders_like_the_page_script() -> None:
    assert i18n.t("common.households", "zh", n=7) == "7 户"
    assert i18n.t("common.load_failed", "en") == "Could not load: {reason}"
    assert i18n.fill("{a}{b}{a}", {"a": 1}) == "1{b}1"
    with pytest.raises(KeyError):
        i18n.t("common.no_such_key", "zh")
    with pytest.raises(InvalidInput):
        i18n.t("common.app", "fr")
    with pytest.raises(InvalidInput):
        i18n.messages("ZH")


def test_pick_lang() -> None:
    assert i18n.pick_lang(None, None) == "zh"
    assert i18n.pick_lang("en") == "en"
    assert i18n.pick_lang("english", "zh") == "zh"
    assert i18n.pick_lang("en-US") == "zh"


BAD_FILES = {
    "not JSON": ("demo", "{nope"),
    "not an object": ("demo", "[]"),
    "key outside the namespace": ("demo", {"other.x": {"zh": "甲", "en": "a"}}),
    "key without a name": ("demo", {"demo": {"zh": "甲", "en": "a"}}),
    "texts not an object": ("demo", {"demo.x": "甲"}),
    "English missing": ("demo", {"demo.x": {"zh": "甲"}}),
    "Chinese empty": ("demo", {"demo.x": {"zh": " ", "en": "a"}}),
    "text not a string": ("demo", {"demo.x": {"zh": 1, "en": "a"}}),
    "unknown language": ("demo", {"demo.x": {"zh": "甲", "en": "a", "fr": "b"}}),
    "placeholders differ": ("demo", {"demo.x": {"zh": "{n} 户", "en": "{count} households"}}),
}


@pytest.mark.parametrize("rule", sorted(BAD_FILES))
def test_load_catalogue_refuses(tmp_path: Path, rule: str) -> None:
    ns, content = BAD_FILES[rule]
    body = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    (tmp_path / f"{ns}.json").write_text(body, encoding="utf-8")
    with pytest.raises(ConfigurationError):
        i18n.load_catalogue(tmp_path)


def test_the_catalogue_follows_file_changes(tmp_path: Path) -> None:
    (tmp_path / "demo.json").write_text(json.dumps({"demo.x": {"zh": "甲", "en": "a"}}))
    (tmp_path / "more.json").write_text(json.dumps({"more.y": {"zh": "乙", "en": "b"}}))
    assert i18n.catalogue(tmp_path) == {"demo.x": {"zh": "甲", "en": "a"},
                                        "more.y": {"zh": "乙", "en": "b"}}  # fmt: skip
    (tmp_path / "demo.json").write_text(json.dumps({"demo.x": {"zh": "丙丙", "en": "cc"}}))
    assert i18n.catalogue(tmp_path)["demo.x"] == {"zh": "丙丙", "en": "cc"}
