"""One message catalogue for every page, PDF and report, Chinese first with English.

The catalogue is split by namespace into ``geogrid/messages/<ns>.json`` files, each
``{"<ns>.<key>": {"zh": "...", "en": "..."}}``; :func:`catalogue` merges them and checks
that every key starts with its file's namespace, appears in one file only and has a
non-empty text in every language of :data:`LANGS`. Placeholders are ``{name}``, replaced by
:func:`t` here and by ``gg.t`` in ``tiles/static/i18n.js`` in the same way (an unknown
placeholder is left as it is).

Pages get the merged catalogue of their language rendered into them (``base.html``);
API error bodies carry a ``code`` and pages show ``errors.<code>``, never the server's
English ``description``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geogrid.errors import ConfigurationError, InvalidInput

__all__ = ["DEFAULT_LANG", "LANGS", "MESSAGES_DIR", "catalogue", "messages", "pick_lang", "t"]

MESSAGES_DIR = Path(__file__).parent / "messages"
#: Languages every message has, the default first.
LANGS: tuple[str, ...] = ("zh", "en")
DEFAULT_LANG = "zh"
_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[A-Za-z0-9_]+)+$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: folder -> (file stamps, merged catalogue)
_cache: dict[Path, tuple[Any, dict[str, dict[str, str]]]] = {}


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    return tuple(
        sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.glob("*.json"))
    )


def load_catalogue(folder: Path) -> dict[str, dict[str, str]]:
    """Merge and check the namespace files of ``folder``.

    Parameters
    ----------
    folder
        A folder of ``<namespace>.json`` files.

    Returns
    -------
    dict
        ``{key: {lang: text}}`` over all files.

    Raises
    ------
    ConfigurationError
        For a file that is not a JSON object, a key outside its file's namespace or
        malformed, a language missing or empty, a text that is not a
        string, or placeholders that differ between the languages of one key.
    """
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(folder.glob("*.json")):
        ns = path.stem
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"message file {path.name} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError(f"message file {path.name} must hold one JSON object")
        for key, texts in data.items():
            _check_entry(path.name, ns, key, texts)  # its namespace: in this file only
            merged[key] = {lang: texts[lang] for lang in LANGS}
    return merged


def _check_entry(file: str, ns: str, key: Any, texts: Any) -> None:
    if not isinstance(key, str) or not _KEY.match(key) or key.split(".", 1)[0] != ns:
        raise ConfigurationError(f"{file}: key {key!r} must look like '{ns}.<name>'")
    if not isinstance(texts, dict):
        raise ConfigurationError(f"{file}: {key} must map languages to texts")
    for lang in LANGS:
        value = texts.get(lang)
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{file}: {key} has no {lang} text")
    extra = set(texts) - set(LANGS)
    if extra:
        raise ConfigurationError(f"{file}: {key} has unknown languages {sorted(extra)}")
    names = {lang: set(_PLACEHOLDER.findall(texts[lang])) for lang in LANGS}
    if len({frozenset(n) for n in names.values()}) > 1:
        raise ConfigurationError(f"{file}: {key} has different placeholders per language")


def catalogue(folder: Path | None = None) -> dict[str, dict[str, str]]:
    """The merged, checked catalogue of ``folder`` (default :data:`MESSAGES_DIR`), read
    again whenever one of its files changes."""
    folder = folder or MESSAGES_DIR
    stamp = _stamp(folder)
    cached = _cache.get(folder)
    if cached is None or cached[0] != stamp:
        cached = (stamp, load_catalogue(folder))
        _cache[folder] = cached
    return cached[1]


def pick_lang(*candidates: str | None) -> str:
    """The first candidate that is a known language, else :data:`DEFAULT_LANG`.

    >>> pick_lang(None, "fr", "en")
    'en'
    >>> pick_lang("")
    'zh'
    """
    for c in candidates:
        if c in LANGS:
            return str(c)
    return DEFAULT_LANG


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise InvalidInput(f"unknown language {lang!r}; choose one of {', '.join(LANGS)}")


def messages(lang: str) -> dict[str, str]:
    """Every message in ``lang``: ``{key: text}``.

    Raises
    ------
    InvalidInput
        For a language not in :data:`LANGS`.

    >>> messages("en")["common.lang.switch"]
    '中文'
    """
    _check_lang(lang)
    return {key: texts[lang] for key, texts in catalogue().items()}


def fill(template: str, values: Mapping[str, Any]) -> str:
    """Replace ``{name}`` placeholders; unknown ones stay as they are.

    >>> fill("{n} 户 {x}", {"n": 3})
    '3 户 {x}'
    """
    return _PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template
    )


def t(key: str, lang: str = DEFAULT_LANG, **values: Any) -> str:
    """The message ``key`` in ``lang`` with its ``{name}`` placeholders filled.

    Raises
    ------
    KeyError
        For a key the catalogue does not have (a bug: add it to its namespace file).
    InvalidInput
        For an unknown language.

    >>> t("common.households", "zh", n=152)
    '152 户'
    >>> t("common.households", "en", n=152)
    '152 households'
    """
    _check_lang(lang)
    texts = catalogue().get(key)
    if texts is None:
        raise KeyError(f"no message {key!r} in geogrid/messages")
    return fill(texts[lang], values)
