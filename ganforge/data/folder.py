"""A folder of image files as a dataset.

- Files with the extensions in :data:`IMAGE_EXTENSIONS` are collected recursively, in sorted
  order; hidden files and folders (``.name``) are ignored.
- When every image lies inside an immediate subfolder, those subfolders are the classes
  (sorted names -> labels 0..K-1), like ``root/cat/x.png``, ``root/dog/y.png``. With images
  directly in the root there are no labels.
- Every image is decoded to 8-bit grayscale or RGB (see :mod:`ganforge.data.decode`),
  resized with its shorter side to ``img_size`` and center-cropped to a square.
  ``img_size=0`` uses the smallest shorter side found.
- ``channels=0``: 1 if every image is grayscale, else 3.
- Unreadable, truncated, unsupported or oversized files (see :mod:`ganforge.data.decode`)
  are skipped with a warning and counted (``skipped``), or raise a DataError naming the
  file under ``strict=True``. Only regular files are read (a FIFO named ``x.png`` would
  block).
Decoding runs in a thread pool (Pillow releases the GIL while decoding and resizing).
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from ganforge.data import cache as cache_mod
from ganforge.data.base import DataError, DataWarning, ImageDataset
from ganforge.data.decode import decode_file, header_size, unreadable
from ganforge.data.spec import local_path, path_is_dir
from ganforge.data.transforms import LUMA_601

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Refuse (rather than swap the machine to death) when img_size=0 would need more than this.
MAX_BYTES_AUTO_SIZE = 8 << 30
MAX_WARNINGS = 20
CHUNK = 256


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def scan(folder: Path) -> Tuple[List[Path], Counter]:
    """Image files under ``folder`` (sorted by relative path) and a count of the other
    extensions seen (for the error message when nothing is found)."""
    files, others = [], Counter()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.startswith("."):
                continue
            ext = os.path.splitext(fn)[1].lower()
            if ext in IMAGE_EXTENSIONS and os.path.isfile(os.path.join(dirpath, fn)):
                files.append(Path(dirpath) / fn)
            elif ext in IMAGE_EXTENSIONS:      # a FIFO, a device, a broken link
                others[f"{ext} (not a regular file)"] += 1
            else:
                others[ext or "(no extension)"] += 1
    files.sort(key=lambda p: p.relative_to(folder).as_posix())
    return files, others


def class_labels(folder: Path, files: List[Path]) -> Tuple[Optional[List[str]], Optional[List[int]]]:
    """Class names and per-file labels when every file is inside an immediate subfolder."""
    tops = []
    for p in files:
        parts = p.relative_to(folder).parts
        if len(parts) < 2:
            return None, None
        tops.append(parts[0])
    names = sorted(set(tops))
    index = {n: i for i, n in enumerate(names)}
    return names, [index[t] for t in tops]


class _Skips:
    """Collects unreadable files: warns (a bounded number of times) or raises under strict."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.files: List[str] = []

    def add(self, path: Path, err: BaseException) -> None:
        reason = str(unreadable(path, err))          # starts with the file's path
        if self.strict:
            raise DataError(f"{reason}; fix or delete the file, or run without strict to skip "
                            f"unreadable images") from None
        self.files.append(str(path))
        if len(self.files) <= MAX_WARNINGS:
            warnings.warn(f"skipping unreadable image {reason}", DataWarning, stacklevel=4)
        elif len(self.files) == MAX_WARNINGS + 1:
            warnings.warn("more unreadable images are being skipped; further warnings are "
                          "suppressed", DataWarning, stacklevel=4)


def _safe(fn, path):
    try:
        return fn(path), None
    except Exception as e:  # any decoder failure is a property of this file
        return None, e


def _auto_size(files: List[Path], skips: _Skips, pool: ThreadPoolExecutor,
               folder: Path) -> Tuple[int, List[Path]]:
    """Smallest shorter side over readable headers; drops files whose header is bad."""
    good, sides = [], []
    for p, (wh, err) in zip(files, pool.map(lambda q: _safe(header_size, q), files)):
        if err is not None:
            skips.add(p, err)
            continue
        good.append(p)
        sides.append(min(wh))
    if not good:
        return 0, good
    size = min(sides)
    need = len(good) * 3 * size * size
    if need > MAX_BYTES_AUTO_SIZE:
        raise DataError(f"{folder}: keeping the images' own size ({size}x{size}) would take "
                        f"{need / 2**30:.1f} GiB of memory; pass img_size (e.g. "
                        f"data.img_size=64)")
    return size, good


def _to_channels(a: np.ndarray, channels: int) -> np.ndarray:
    if a.shape[-1] == channels:
        return a
    if channels == 3:
        return np.repeat(a, 3, axis=-1)
    w = np.asarray(LUMA_601, dtype=np.uint32)
    return ((a.astype(np.uint32) @ w + 500) // 1000).astype(np.uint8)[..., None]


def decode_folder(folder: Path, files: List[Path], *, img_size: int, channels: int,
                  strict: bool, limit: int, name: str) -> Tuple[ImageDataset, List[str]]:
    class_names, labels_all = class_labels(folder, files)
    label_of = dict(zip(files, labels_all)) if labels_all is not None else None
    skips = _Skips(strict)
    arrays: List[np.ndarray] = []
    grays: List[bool] = []
    kept: List[Path] = []
    try:
        from tqdm import tqdm
        bar = tqdm(total=limit or len(files), desc=f"decoding {folder.name or folder}",
                   unit="img", disable=None, leave=False)
    except ImportError:
        bar = None
    with ThreadPoolExecutor(_workers()) as pool:
        if img_size == 0:
            img_size, files = _auto_size(files, skips, pool, folder)
        for start in range(0, len(files), CHUNK):
            chunk = files[start:start + CHUNK]
            results = pool.map(lambda q: _safe(lambda r: decode_file(r, img_size), q), chunk)
            for p, (res, err) in zip(chunk, results):
                if err is not None:
                    skips.add(p, err)
                    continue
                arrays.append(res[0])
                grays.append(res[1])
                kept.append(p)
                if bar is not None:
                    bar.update(1)
            if limit and len(arrays) >= limit:
                break
    if bar is not None:
        bar.close()
    if limit:
        arrays, grays, kept = arrays[:limit], grays[:limit], kept[:limit]
    if not arrays:
        first = skips.files[0] if skips.files else "?"
        raise DataError(f"{folder}: none of the {len(skips.files)} image files could be read "
                        f"(first: {first}); check that they are valid images (try opening "
                        f"one), or point to another folder")
    out_c = channels or (1 if all(grays) else 3)
    batch = np.stack([_to_channels(a, out_c) for a in arrays])            # N, H, W, C
    images = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
    labels = None
    if label_of is not None:
        labels = torch.tensor([label_of[p] for p in kept], dtype=torch.int64)
    ds = ImageDataset(images=images, labels=labels, class_names=class_names, name=name,
                      source=str(folder), skipped=len(skips.files))
    return ds, skips.files


def load_folder(path: str | Path, *, img_size: int = 0, channels: int = 0, strict: bool = False,
                limit: int = 0, cache: bool = True, name: Optional[str] = None) -> ImageDataset:
    folder = local_path(path)
    if not path_is_dir(folder):
        raise DataError(f"{folder}: not a folder")
    folder = folder.resolve()
    files, others = scan(folder)
    if not files:
        if others:
            seen = ", ".join(f"{ext} x{n}" for ext, n in others.most_common(5))
            detail = f"it has {sum(others.values())} other files ({seen})"
        else:
            detail = "it is empty"
        raise DataError(f"{folder}: no images found ({detail}); accepted extensions: "
                        f"{', '.join(IMAGE_EXTENSIONS)} (searched recursively)")
    label = name or str(path)
    key = cache_mod.make_key("folder", cache_mod.fingerprint(files), root=str(folder),
                             img_size=img_size, channels=channels, limit=limit)
    ds = cache_mod.cached_dataset(
        key, lambda: decode_folder(folder, files, img_size=img_size, channels=channels,
                                   strict=strict, limit=limit, name=label),
        enabled=cache, strict=strict)
    ds.name = label  # the same folder may be spelled differently than when it was cached
    return ds
