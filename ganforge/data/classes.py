"""Class names typed by people: ``--class sneaker``, ``--class t-shirt-top``, ``--class 7``.

Matching ignores case and treats ``-``, ``_``, spaces, ``/`` and ``&`` (or the word "and")
alike (runs of them count as one), so ``T-shirt/top`` is found as ``t-shirt-top``, ``t_shirt
top`` or ``T-SHIRT/TOP``, and the emoji group ``Food & Drink`` as ``food-drink``. An
exact (normalised) name wins over an index, so folder classes called ``3`` and ``7`` are found
by name; otherwise a whole number is a class index.
"""
from __future__ import annotations

import difflib
import re
from typing import Sequence

from ganforge.data.base import DataError


class UnknownClassError(DataError):
    """A class that the run does not have; the message lists the ones it has."""


#: separators: -, _, space, / and & (and the word "and" between them), runs of them as one
_SEP = re.compile(r"(?:[-_ /&]|(?<![a-z0-9])and(?![a-z0-9]))+")


def normalize_class_name(name: str) -> str:
    """Lower case, with every run of ``-``, ``_``, `` ``, ``/``, ``&`` or the word ``and``
    made one ``-``."""
    low = str(name).strip().lower()
    return _SEP.sub("-", low).strip("-") or low     # a class called "and" (or "&") stays


def describe_classes(class_names: Sequence[str]) -> str:
    return ", ".join(f"{i} {n!r}" for i, n in enumerate(class_names))


def resolve_class(spec: str | int, class_names: Sequence[str]) -> int:
    """The index of the class ``spec`` names (a class name in any of the accepted spellings,
    or an index). Raises :class:`UnknownClassError` listing the classes."""
    names = [str(n) for n in class_names]
    key = normalize_class_name(str(spec))
    normed = [normalize_class_name(n) for n in names]
    if key in normed:
        return normed.index(key)
    text = str(spec).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        i = int(text)
        if 0 <= i < len(names):
            return i
        raise UnknownClassError(f"--class {text}: no class with index {i}; this run has "
                                f"{len(names)} classes (0-{len(names) - 1}): "
                                f"{describe_classes(names)}")
    close = difflib.get_close_matches(key, normed, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(names[normed.index(c)]) for c in close)}? " if close else ""
    raise UnknownClassError(f"--class {text!r}: unknown class; {hint}this run's classes are "
                            f"{describe_classes(names)} (give a name, in any case and with "
                            f"'-', '_', ' ', '/' or '&' between words, an index, or 'all')")
