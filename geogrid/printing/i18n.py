"""Labels of printed matter, from the shared message catalogue (``geogrid/messages/print.json``).

One small function, :func:`labels`, is all the printing code asks; it reads the catalogue
through :mod:`geogrid.i18n` (imported when called, so ``import geogrid`` stays light).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from geogrid.errors import InvalidInput

__all__ = ["LANGS", "Labels", "check_lang", "labels", "messages"]

#: Languages of printed matter, the default first.
LANGS = ("zh", "en")

Labels = Callable[..., str]


def check_lang(lang: str) -> str:
    """``lang`` when it is one of :data:`LANGS`, else :class:`InvalidInput`.

    >>> check_lang("en")
    'en'
    >>> check_lang("fr")
    Traceback (most recent call last):
    ...
    geogrid.errors.InvalidInput: unknown language 'fr': choose zh or en
    """
    if lang not in LANGS:
        raise InvalidInput(f"unknown language {lang!r}: choose zh or en", detail={"lang": lang})
    return lang


def messages(lang: str) -> dict[str, str]:
    """The whole catalogue in ``lang``: ``{key: text}`` (for code that takes a mapping).

    >>> messages("en")["print.legend"]
    'Legend'
    """
    from geogrid import i18n

    return i18n.messages(check_lang(lang))


def labels(lang: str) -> Labels:
    """A function ``t(key, **values)`` giving the message ``key`` in ``lang``.

    Keys without a namespace are looked up under ``print.``; ``{name}`` placeholders are
    filled from ``values``. An unknown key is a bug and raises :class:`KeyError`.

    >>> t = labels("zh")
    >>> t("role.leader"), labels("en")("role.leader")
    ('网格长', 'Grid leader')
    """
    from geogrid import i18n

    check_lang(lang)
    table = i18n.messages(lang)

    def t(key: str, **values: Any) -> str:
        full = key if key.startswith(_NAMESPACES) else f"print.{key}"
        return i18n.fill(table[full], values)

    return t


_NAMESPACES = ("print.", "common.", "errors.")
