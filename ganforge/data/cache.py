"""On-disk cache of decoded datasets: ``<cache>/tensors/<key>.pt``.

The key hashes everything the result depends on: the source files' absolute paths, sizes
and modification times, the requested size/channels/limit and a format version. Editing,
adding or removing a source file therefore changes the key; stale entries are simply never
read again (``ganforge`` does not garbage-collect them; deleting the folder is always safe).

Entries hold only tensors, strings and ints, and are read with
``torch.load(weights_only=True)``, so a cache file cannot execute code. Writes go to a temp
file in the same folder and are renamed into place (:func:`ganforge.files.atomic_save`), so a
crash never leaves a torn entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional

import torch

from ganforge.data.base import DataWarning, ImageDataset
from ganforge.data.paths import cache_dir
from ganforge.files import atomic_save

#: Bump when decoding changes in a way that alters the pixels of an existing key.
CACHE_VERSION = 1


def tensor_dir() -> Path:
    return cache_dir() / "tensors"


def fingerprint(paths: Iterable[Path]) -> List[list]:
    """[absolute path, size, mtime_ns] for each file (what invalidates the cache)."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return out


def make_key(kind: str, files: List[list], **params: Any) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "kind": kind, "files": files, "params": params},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def path_for(key: str) -> Path:
    return tensor_dir() / f"{key}.pt"


def load(key: str) -> Optional[dict]:
    p = path_for(key)
    if not p.exists():
        return None
    try:
        entry = torch.load(p, map_location="cpu", weights_only=True)
        if not isinstance(entry, dict) or entry.get("version") != CACHE_VERSION:
            raise ValueError("unexpected cache format")
        return entry
    except Exception as e:  # a torn or foreign file: drop it and decode again
        warnings.warn(f"ignoring unreadable cache file {p} ({e}); it will be rebuilt",
                      DataWarning, stacklevel=3)
        try:
            p.unlink()
        except OSError:
            pass
        return None


def save(key: str, entry: dict) -> Optional[Path]:
    p = path_for(key)
    try:
        atomic_save({**entry, "version": CACHE_VERSION}, p)
    except OSError as e:  # a read-only or full cache must not stop training
        warnings.warn(f"could not write cache file {p} ({e}); set $GANFORGE_CACHE to a "
                      f"writable folder to load faster next time", DataWarning, stacklevel=3)
        return None
    return p


def to_entry(ds: ImageDataset, skipped_files: Optional[List[str]] = None) -> dict:
    return {"images": ds.images, "labels": ds.labels, "class_names": ds.class_names,
            "name": ds.name, "source": ds.source, "skipped": int(ds.skipped),
            "skipped_files": list(skipped_files or [])}


def from_entry(entry: dict) -> ImageDataset:
    return ImageDataset(images=entry["images"], labels=entry["labels"],
                        class_names=entry["class_names"], name=entry["name"],
                        source=entry["source"], skipped=int(entry["skipped"]))


def cached_dataset(key: str, build: Callable[[], tuple[ImageDataset, List[str]]], *,
                   enabled: bool = True, strict: bool = False) -> ImageDataset:
    """Return the dataset cached under ``key``, or ``build()`` it and cache it.

    ``build`` returns (dataset, names of skipped files). A cached result that had skipped
    files is not used under ``strict``: decoding again raises the error naming the file.
    """
    if enabled:
        entry = load(key)
        if entry is not None and not (strict and entry["skipped"]):
            if entry["skipped"]:
                names = entry.get("skipped_files") or []
                shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
                warnings.warn(f"{entry['name']}: {entry['skipped']} unreadable image(s) were "
                              f"skipped ({shown}); pass strict=True to fail instead",
                              DataWarning, stacklevel=3)
            return from_entry(entry)
    ds, skipped_files = build()
    if enabled:
        save(key, to_entry(ds, skipped_files))
    return ds
