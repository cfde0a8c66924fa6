"""The one parser of data specs: ``NAME``, ``NAME:SPLIT``, ``NAME:CLASS``, ``NAME:SPLIT:CLASS``,
``PATH`` and ``PATH:CLASS``.

Every place that reads a dataset or domain spec (``--data``, ``--domain-a``, ``--real``,
``eval.split``, the evaluator's dataset key, ``ganforge translate`` inputs) goes through
:func:`parse_spec`:

- a registered name (``fashion-mnist``) may be followed by a split (``:test``; the words in
  :data:`SPLIT_WORDS`), a class (``:sneaker``), or both (``:test:sneaker``);
- an existing path is used as it is (``:`` may be part of a file name);
- ``PATH:CLASS`` selects one class subfolder of an existing folder;
- anything else is returned as a path (``DataSpec(spec)``); whoever loads it says it does
  not exist (:func:`ganforge.data.load_dataset`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ganforge.data.base import DATASETS, DataError

#: Words read as a split (not a class) right after a dataset name.
SPLIT_WORDS = ("train", "test", "val", "valid", "validation", "train-minus-val", "all")
#: Splits carved out of the train split when a dataset has no validation split of its own
#: (ganforge/data/resolve.py, :func:`ganforge.data.resolve.holdout_indices`).
VAL_WORDS = ("val", "valid", "validation")
TRAIN_MINUS_VAL = "train-minus-val"


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec. ``source``: a registered dataset name or a path; ``split``: an
    explicit split or None (the caller's default); ``cls``: a class name or None (all)."""
    source: str
    split: Optional[str] = None
    cls: Optional[str] = None

    @property
    def named(self) -> bool:
        """True when ``source`` is a registered dataset (not a path)."""
        return self.source in DATASETS

    def with_split(self, split: Optional[str]) -> "DataSpec":
        return DataSpec(self.source, split, self.cls)

    def __str__(self) -> str:
        return ":".join(p for p in (self.source, self.split, self.cls) if p)


def local_path(spec: str | Path) -> Path:
    """``spec`` as a local path with ``~`` expanded (left as it is when ``~user`` names no
    user, which then simply does not exist)."""
    try:
        return Path(spec).expanduser()
    except (RuntimeError, ValueError):     # ValueError: "~\0..." (a NUL in the user name)
        return Path(spec)


def path_exists(p: Path) -> bool:
    """``p.exists()``, False for names the OS refuses (too long, NUL bytes, ...)."""
    try:
        return p.exists()
    except (OSError, ValueError):
        return False


def path_is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):
        return False


def parse_spec(spec: str) -> DataSpec:
    """Read a data spec (see the module docstring). Raises :class:`DataError` only for a
    registered name with more than two ``:`` parts; an unknown name comes back as a path."""
    spec = str(spec).strip()
    if path_exists(local_path(spec)):
        return DataSpec(spec)
    parts = spec.split(":")
    if parts[0] in DATASETS:
        rest = parts[1:]
        if not rest or rest == [""]:
            return DataSpec(parts[0])
        if len(rest) == 1:
            w = rest[0]
            return DataSpec(parts[0], w, None) if w.lower() in SPLIT_WORDS else DataSpec(parts[0], None, w)
        if len(rest) == 2:
            return DataSpec(parts[0], rest[0] or None, rest[1] or None)
        raise DataError(f"data spec '{spec}': too many ':' parts; use NAME:CLASS or "
                        f"NAME:SPLIT:CLASS (e.g. fashion-mnist:test:sneaker)")
    head, sep, cls = spec.rpartition(":")
    if sep and head and path_is_dir(local_path(head)):
        return DataSpec(head, None, cls)
    return DataSpec(spec)


def absolute_spec(spec: str) -> str:
    """``spec`` with a local path made absolute (``~`` expanded), split and class kept; a
    registered name, or a path that does not exist, comes back unchanged. A run stores its
    data this way, so ``--resume``, ``eval`` and ``sample`` work from any directory."""
    parsed = parse_spec(spec)
    if parsed.named:
        return spec
    p = local_path(parsed.source)
    if not path_exists(p):
        return spec
    return str(DataSpec(str(p.resolve()), parsed.split, parsed.cls))


def dataset_source(spec: str) -> str:
    """The dataset a spec draws from, without split or class: ``fashion-mnist:test`` ->
    ``fashion-mnist``; a path -> the path (what an evaluator is trained on and keyed by)."""
    return parse_spec(spec).source


def split_of(spec: str, default: str = "train") -> str:
    """The split a spec names, else ``default``."""
    return parse_spec(spec).split or default


def registered_name(spec: str) -> Optional[str]:
    """The registered dataset a spec draws from (``fashion-mnist:test`` -> ``fashion-mnist``),
    or None when it is a path."""
    parsed = parse_spec(str(spec))
    return parsed.source if parsed.named else None
