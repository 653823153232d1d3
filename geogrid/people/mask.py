"""Masked forms of personal fields, shown in every response unless an unmask is granted.

>>> mask_name("张三明"), mask_name("张三"), mask_name("欧阳娜娜")
('张*明', '张*', '欧**娜')
>>> mask_phone("13812345678"), mask_phone("+86 138 1234 5678"), mask_phone("027-8765 4321")
('138****5678', '138****5678', '027****4321')
>>> mask_id("42010219900307123X")
'4201**********123X'
"""

from __future__ import annotations

__all__ = ["mask_id", "mask_name", "mask_phone"]


def mask_name(name: str | None) -> str | None:
    """Keep the first and (from three characters on) the last character.

    >>> mask_name("王"), mask_name(None)
    ('*', None)
    """
    if not name:
        return name
    n = len(name)
    if n == 1:
        return "*"
    if n == 2:
        return name[0] + "*"
    return name[0] + "*" * (n - 2) + name[-1]


def mask_phone(phone: str | None) -> str | None:
    """Keep the first three and the last four digits; shorter numbers keep the last two.

    >>> mask_phone("5551234"), mask_phone("")
    ('*****34', '')
    """
    if not phone:
        return phone
    digits = "".join(c for c in phone if c.isdigit())
    if len(digits) == 13 and digits.startswith("861"):  # +86 before a mobile number
        digits = digits[2:]
    if len(digits) >= 11:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    if len(digits) <= 2:
        return "*" * len(digits)
    return "*" * (len(digits) - 2) + digits[-2:]


def mask_id(number: str | None) -> str | None:
    """Keep the region's first four and the last four characters of an ID number.

    >>> mask_id("1234")
    '****'
    """
    if not number:
        return number
    if len(number) < 12:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]
