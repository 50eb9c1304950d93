"""Argument checks: a setting that is not allowed is one ``SettingError`` whose message names it and what is allowed."""

from __future__ import annotations

import math

__all__ = ["MAX_RATE", "MAX_SEED", "SettingError", "check_positive", "check_rate", "check_seed", "named",
           "printable"]


class SettingError(ValueError):
    """A setting (argument, command-line flag or environment variable) that is not allowed; the message names it."""


MAX_SEED = 2**63 - 1  # torch.manual_seed takes any int below 2**64; 2**63 - 1 also fits every generator


def named(name: str, value) -> str:
    """``name=value`` for an argument, ``--flag value`` for a command-line flag (a name that starts with ``-``)."""
    return f"{name} {value!r}" if name.startswith("-") else f"{name}={value!r}"


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` if it is an integer in [0, 2**63 - 1], else a :class:`SettingError` naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SettingError(f"{named(name, seed)} is not allowed: choose an integer from 0 to 2**63 - 1")
    return seed


def check_positive(name: str, value: float, integer: bool = False) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a finite positive number (an integer if
    ``integer``)."""
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not (value > 0 and math.isfinite(value)):
        raise SettingError(f"{name}={value!r} is not allowed: it must be a positive "
                           f"{'integer' if integer else 'finite number'}")


MAX_RATE = 10.0  # no optimizer here trains with a larger learning rate; anything above is a typo or an overflow


def check_rate(name: str, value: float) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a learning rate in (0, MAX_RATE]."""
    check_positive(name, value)
    if value > MAX_RATE:
        raise SettingError(f"{name}={value!r} is not allowed: a learning rate must be at most {MAX_RATE:g}")


def printable(text: str) -> str:
    """``text`` as is when every character prints, else quoted with escapes (``'a\\nb'``): a newline in a file or
    class name cannot forge a line of output, and a name that is not valid UTF-8 prints on any terminal."""
    return text if text.isprintable() else ascii(text)
