"""argparse types for the command-line flags that are numbers: a value out of range is refused
when the command line is read, with the flag's name and the accepted range, before any work.

``type=at_least(1)`` for counts, ``type=at_least(0)`` where 0 means "off" or "all",
``type=positive(float)`` for amounts that must be > 0. (Config keys are checked by
:mod:`ganforge.core.config`; these are for flags that are not config keys, and for those whose flag
is stricter than the key, like ``--steps``, whose 0 would silently mean the default length.)
"""
from __future__ import annotations

import argparse
import math
from typing import Callable


def at_least(minimum: int, meaning: str = "") -> Callable[[str], int]:
    """A whole number >= ``minimum``; ``meaning`` says what the smallest value means."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: use {minimum} or more"
                                             + (f" ({minimum}: {meaning})" if meaning else ""))
        return value
    parse.__name__ = f"whole number >= {minimum}"
    return parse


def positive(kind: type = float) -> Callable[[str], float]:
    """A finite number > 0."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be a number > 0")
        return value
    parse.__name__ = "number > 0"
    return parse
