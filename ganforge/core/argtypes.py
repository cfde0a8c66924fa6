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
from typing import Callable, Optional

#: the largest seed (torch's generators take 64-bit seeds; numpy's a seed modulo 2**32)
MAX_SEED = 2**63 - 1


def at_least(minimum: int, meaning: str = "", most: Optional[int] = None,
             why: str = "") -> Callable[[str], int]:
    """A whole number >= ``minimum`` (and <= ``most``: a value no run could finish, or the
    format cannot hold, is refused instead of left running); ``meaning`` says what the
    smallest value means, ``why`` why the largest is the largest."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: use {minimum} or more"
                                             + (f" ({minimum}: {meaning})" if meaning else ""))
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"{value} is too large: use {minimum} to {most:,}"
                                             + (f" ({why})" if why else ""))
        return value
    parse.__name__ = f"whole number >= {minimum}" + (f" and <= {most}" if most is not None else "")
    return parse


def seed() -> Callable[[str], int]:
    """A seed: a whole number from 0 to :data:`MAX_SEED`."""
    return at_least(0, most=MAX_SEED, why="a 64-bit seed")


def positive(kind: type = float, most: Optional[float] = None, least: Optional[float] = None,
             why: str = "") -> Callable[[str], float]:
    """A finite number > 0 (and >= ``least``, <= ``most`` when given)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be a number > 0")
        if (least is not None and value < least) or (most is not None and value > most):
            lo = f"{least:g}" if least is not None else "0 (excluded)"
            hi = f"{most:g}" if most is not None else "any"
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {lo} to {hi}"
                                             + (f" ({why})" if why else ""))
        return value
    parse.__name__ = "number > 0"
    return parse
