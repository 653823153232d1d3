"""Password hashing (Argon2id through pwdlib), password rules and generated passwords."""

from __future__ import annotations

import secrets
import string
from functools import lru_cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from geogrid.errors import InvalidInput

MIN_LENGTH = 10
#: A few of the passwords every guesser tries first (lower-cased); the rules catch the rest.
COMMON = frozenset(
    {
        "password123",
        "password1!",
        "admin12345",
        "qwerty1234",
        "1234567890",
        "abc123456!",
        "iloveyou12",
        "woaini1314",
        "p@ssw0rd12",
        "admin@1234",
        "welcome123",
        "a123456789",
    }
)


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash((Argon2Hasher(),))


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` (salted; never the same twice)."""
    return _hasher().hash(password)


def verify_password(password: str, hashed: str) -> bool:
    """Does ``password`` match ``hashed``? (Constant-time in the hash library.)"""
    try:
        return bool(_hasher().verify(password, hashed))
    except Exception:  # a corrupt or foreign hash never signs anyone in
        return False


#: verifying against this costs the same as a real check (for unknown user names)
_DUMMY: list[str] = []


def dummy_verify(password: str) -> None:
    """Spend the time of a real verification, so unknown user names are not revealed."""
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_hex(16)))
    verify_password(password, _DUMMY[0])


#: The password rules: code → message (Chinese, then English). Pages translate the codes
#: (``common.auth.reason.<code>`` in the message catalogue).
RULES: dict[str, str] = {
    "min_length": f"至少 {MIN_LENGTH} 个字符 (at least {MIN_LENGTH} characters)",
    "max_length": "最多 128 个字符 (at most 128 characters)",
    "classes": (
        "需包含大写字母、小写字母、数字、符号中的至少三类 "
        "(use three of: lower case, upper case, digits, symbols)"
    ),
    "contains_username": "不能包含用户名 (must not contain the user name)",
    "too_common": "过于常见 (too common)",
    "nul": "不能包含 NUL 字符 (no NUL characters)",
}


def password_rule_codes(password: str, *, username: str = "") -> list[str]:
    """The codes of the rules ``password`` breaks (keys of :data:`RULES`).

    >>> password_rule_codes("short")
    ['min_length', 'classes']
    >>> password_rule_codes("Gr1d-workers-2026")
    []
    """
    codes = []
    if len(password) < MIN_LENGTH:
        codes.append("min_length")
    if len(password) > 128:
        codes.append("max_length")
    classes = sum(
        any(test(c) for c in password)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    if classes < 3:
        codes.append("classes")
    if username and username.lower() in password.lower():
        codes.append("contains_username")
    if password.lower() in COMMON:
        codes.append("too_common")
    if "\x00" in password:
        codes.append("nul")
    return codes


def password_problems(password: str, *, username: str = "") -> list[str]:
    """Why ``password`` is not acceptable (an empty list when it is).

    >>> password_problems("short")[0]
    '至少 10 个字符 (at least 10 characters)'
    >>> password_problems("Gr1d-workers-2026")
    []
    >>> password_problems("alice-Grid-2026", username="alice")
    ['不能包含用户名 (must not contain the user name)']
    """
    return [RULES[code] for code in password_rule_codes(password, username=username)]


def check_password(password: str, *, username: str = "") -> None:
    """Raise :class:`InvalidInput` listing every rule ``password`` breaks (their codes in
    ``detail["reasons"]``)."""
    codes = password_rule_codes(password, username=username)
    if codes:
        raise InvalidInput(
            "密码不符合要求 (password rules): " + "; ".join(RULES[c] for c in codes),
            detail={"reasons": codes},
        )


def generate_password(length: int = 16) -> str:
    """A random password that meets the rules (for new users and resets).

    >>> password_problems(generate_password())
    []
    """
    alphabet = string.ascii_letters + string.digits + "-_.!@#%+="
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(length))
        if not password_problems(pw):
            return pw
