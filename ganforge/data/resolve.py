"""``load_dataset``: turn a dataset spec (a registered name, ``name:split``, a folder or an
array file) into an :class:`ImageDataset`."""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch

from ganforge.data.arrays import load_arrays
from ganforge.data.base import DATASETS, DataError, ImageDataset
from ganforge.data.folder import load_folder
from ganforge.data.spec import (
    TRAIN_MINUS_VAL,
    VAL_WORDS,
    local_path,
    parse_spec,
    path_exists,
    path_is_dir,
)

ARRAY_SUFFIXES = (".npy", ".npz")


def _check_options(img_size: int, channels: int, limit: int) -> None:
    if not isinstance(img_size, int) or img_size < 0:
        raise DataError(f"img_size must be a whole number >= 0 (0: the dataset's own size), "
                        f"got {img_size!r}")
    if channels not in (0, 1, 3):
        raise DataError(f"channels must be 0 (the dataset's own), 1 (grayscale) or 3 (RGB), "
                        f"got {channels!r}")
    if not isinstance(limit, int) or limit < 0:
        raise DataError(f"limit must be a whole number >= 0 (0: all images), got {limit!r}")


def _looks_like_path(spec: str) -> bool:
    return any(c in spec for c in "/\\") or spec.startswith((".", "~")) \
        or spec.lower().endswith(ARRAY_SUFFIXES)


def _unknown(spec: str) -> DataError:
    names = DATASETS.names()
    if _looks_like_path(spec):
        absolute = spec.startswith(("/", "~")) or os.path.isabs(spec)
        where = "" if absolute else f" (it is relative to {Path.cwd()})"
        return DataError(f"dataset path '{spec}' does not exist; check the path{where}, or "
                         f"use a registered dataset: {', '.join(names)}")
    close = difflib.get_close_matches(spec.partition(":")[0], names, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return DataError(f"unknown dataset '{spec}': {hint}no registered dataset and no folder or "
                     f"file of that name in {Path.cwd()}; choose one of {', '.join(names)} "
                     f"(optionally as name:split, e.g. 'fashion-mnist:test'), or give the path "
                     f"of a folder of images or a .npy/.npz file")


def _path_split(path: Path, split: str) -> Path:
    """For a path, split 'train' means the path itself; another split selects the
    subfolder of that name (a plain name: no separators, not '.' or '..')."""
    if split in ("train", "", "all"):
        return path
    plain = not any(c in split for c in "/\\\0") and split not in (".", "..")
    sub = path / split
    if plain and path_is_dir(path) and path_is_dir(sub):
        return sub
    raise DataError(f"{path}: split '{split}' applies to named datasets; for a folder it "
                    f"means the subfolder '{split}', which does not exist; point the dataset "
                    f"at the folder you want instead")


#: The validation split carved out of a train split: 1/VAL_FRACTION of it, at most VAL_MAX
#: images (Fashion-MNIST: 5,000 of 60,000), chosen by a permutation with a fixed seed so that
#: every run, process and version draws the same images.
VAL_FRACTION = 12
VAL_MAX = 5000
VAL_SEED = 20241130


def holdout_indices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(val, rest)``: sorted int64 indices into a train split of ``n`` images. ``val`` has
    ``min(VAL_MAX, max(1, round(n / VAL_FRACTION)))`` images (none when ``n < 2``); ``rest``
    the others. Deterministic (a CPU ``torch.randperm`` with seed ``VAL_SEED``)."""
    k = 0 if n < 2 else min(VAL_MAX, max(1, round(n / VAL_FRACTION)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SEED))
    return perm[:k].sort().values, perm[k:].sort().values


def _carve(ds: ImageDataset, split: str, name: str) -> ImageDataset:
    """The validation images of the train split ``ds`` (``split`` in VAL_WORDS), or the rest
    (``train-minus-val``)."""
    val, rest = holdout_indices(len(ds))
    if len(val) == 0:
        raise DataError(f"{name}: {len(ds)} image(s) are too few to hold some out as a "
                        f"validation split; add images or train on split 'train'")
    return ds.subset(val if split in VAL_WORDS else rest, name=f"{name}:{split}")


def _carved(split: str) -> bool:
    return split in VAL_WORDS or split == TRAIN_MINUS_VAL


def _has_own_split(parsed, split: str) -> bool:
    """True when a folder has a subfolder for the validation split (``val``, ``valid`` or
    ``validation``); it is then used as it is, and ``train-minus-val`` is the folder itself."""
    if parsed.named:
        return False
    path = local_path(parsed.source)
    names = VAL_WORDS if split == TRAIN_MINUS_VAL else (split,)
    return path_is_dir(path) and any(path_is_dir(path / n) for n in names)


def load_dataset(spec: str, split: str = "train", *, img_size: int = 0, channels: int = 0,
                 data_dir: str | None = None, strict: bool = False, limit: int = 0,
                 download: bool = True, cache: bool = True) -> ImageDataset:
    """Load a whole dataset into memory as uint8 NCHW (see :class:`ImageDataset`).

    ``spec``: a registered name (``fashion-mnist``, ``mnist``, ``emoji``), optionally with a
    split (``fashion-mnist:test``, which overrides ``split``); or a folder of images; or a
    ``.npy``/``.npz`` file. ``img_size``/``channels`` 0 keep the dataset's own; ``limit``
    keeps the first N images. ``strict`` fails on unreadable images instead of skipping
    them; ``download`` allows fetching named datasets; ``cache`` reads/writes the decoded
    tensor under the user cache. Every user-caused problem raises :class:`DataError`.
    """
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise DataError(f"dataset spec must be a dataset name or a path, got {spec!r}; "
                        f"choose one of {', '.join(DATASETS.names())}")
    _check_options(img_size, channels, limit)
    spec = str(spec).strip()
    parsed = parse_spec(spec)
    kw = dict(img_size=img_size, channels=channels, data_dir=data_dir, strict=strict,
              limit=limit, download=download, cache=cache)
    want = (parsed.split or split or "train").lower()
    if _carved(want) and not _has_own_split(parsed, want):
        # A validation split carved from the train split (ganforge tune scores against it):
        # ``val`` is a fixed 1/12 of the training images, ``train-minus-val`` the rest.
        whole = load_dataset(str(parsed.with_split("train")) if parsed.named else parsed.source,
                             "train", **kw)
        return _carve(whole, want, parsed.source)
    if want == TRAIN_MINUS_VAL:        # a folder with its own val/ subfolder: train is the folder
        split = "train"
    if parsed.named:
        # NAME:WORD where WORD is not a split word: the loader names its splits.
        return DATASETS.get(parsed.source)(split=parsed.split or parsed.cls or split, img_size=img_size,
                                  channels=channels, data_dir=data_dir, strict=strict,
                                  limit=limit, download=download, cache=cache)
    path = local_path(spec)
    if not path_exists(path):
        raise _unknown(spec)
    path = _path_split(path, split)
    shown = spec if path == local_path(spec) else str(path)
    if path_is_dir(path):
        return load_folder(path, img_size=img_size, channels=channels, strict=strict,
                           limit=limit, cache=cache, name=shown)
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return load_arrays(path, img_size=img_size, channels=channels, limit=limit,
                           cache=cache, name=shown)
    raise DataError(f"{path}: is a file but not a .npy/.npz array file; give a folder of "
                    f"images, a .npy/.npz file, or one of {', '.join(DATASETS.names())}")


def dataset_names() -> list[str]:
    return DATASETS.names()
