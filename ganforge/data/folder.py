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

Decoding runs in worker processes (``$GANFORGE_DECODE_WORKERS``, default one per core up to
8), in chunks of :data:`CHUNK` images, with a progress bar (images/s, ETA). With the cache on
(the default) each finished chunk is written to ``<cache>/arrays/<key>.partial/`` as it
completes and the chunks are then streamed into the cache's ``.npy`` (one chunk in memory at a
time); after Ctrl-C the next start reuses the finished chunks and decodes only the rest. The
cache entry appears only once complete, so a half-built one is never used.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch

from ganforge.core.files import IMAGE_EXTENSIONS, atomic_write
from ganforge.data import cache as cache_mod
from ganforge.data.base import DataError, DataWarning, ImageDataset
from ganforge.data.decode import decode_file, header_size, unreadable
from ganforge.data.spec import local_path, path_is_dir
from ganforge.data.transforms import LUMA_601

#: Refuse (rather than swap the machine to death) when img_size=0 would need more than this.
MAX_BYTES_AUTO_SIZE = 8 << 30
MAX_WARNINGS = 20
#: Images per decoded chunk (the unit of parallel work, of progress kept across Ctrl-C, and
#: of memory while the cache is written).
CHUNK = 256
WORKERS_ENV = "GANFORGE_DECODE_WORKERS"


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


def loose_images(folder: Path) -> str:
    """Why a folder with class subfolders has no labels, or "": when images lie at its top
    level beside two or more subfolders holding images, the subfolders are not read as
    classes (:func:`class_labels`); the text names them and the fix."""
    try:
        files, _ = scan(folder)
    except OSError:
        return ""
    loose = [p for p in files if p.parent == folder]
    subs = {p.relative_to(folder).parts[0] for p in files if p.parent != folder}
    if not loose or len(subs) < 2:
        return ""
    return (f"{folder} has {len(loose)} image(s) at its top level (e.g. {loose[0].name}) beside "
            f"its {len(subs)} class subfolders, so the subfolders are not read as classes; "
            f"move those images into a class subfolder or out of the folder")


class _Skips:
    """Collects unreadable files: warns (a bounded number of times) or raises under strict."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.files: List[str] = []

    def add(self, path: Path, err: BaseException) -> None:
        reason = str(unreadable(path, err))          # starts with the file's path
        if self.strict:
            raise DataError(f"{reason}; fix or delete the file, or run without --strict (data.strict=false) "
                            f"to skip unreadable images") from None
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


# --------------------------------------------------------------------------- decoding in chunks
def decode_workers() -> int:
    """Decoding processes: ``$GANFORGE_DECODE_WORKERS`` when set (1: decode in this process),
    else one per CPU core, at most 8."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            pass
    return _workers()


def _chunk_name(start: int, size: int, img_size: int, channels: int) -> str:
    # Everything a chunk's content depends on besides the key (the resolved img_size of
    # img_size=0, the chunk size) is in its name, so a resumed decode never mixes settings.
    return f"chunk-{start:09d}-n{size}-s{img_size}-c{channels}.npz"


def _decode_chunk(paths: List[str], start: int, img_size: int, channels: int,
                  out: Optional[str]) -> dict:
    """Decode ``paths`` (the files ``start...`` of the folder's list) at ``img_size``.

    Runs in a worker process (or inline). Returns ``kept`` (positions in the folder's list),
    ``gray`` (this chunk is all grayscale, so stored with one channel), ``errors`` [(position,
    message)], ``n`` and either ``images`` uint8 (k, H, W, c) or, with ``out``, nothing: the
    chunk is then written to ``out`` (atomically) and the parent reads it back when it
    assembles the cache. ``c`` is ``channels`` when given, else 1 when every image is gray,
    else 3 (gray images repeated, which the 1-channel conversion maps back exactly)."""
    arrays, grays, kept, errors = [], [], [], []
    for i, path in enumerate(paths):
        try:
            a, g = decode_file(Path(path), img_size)
        except Exception as e:  # any decoder failure is a property of this file
            errors.append((start + i, str(unreadable(Path(path), e))))
            continue
        arrays.append(a)
        grays.append(g)
        kept.append(start + i)
    c = channels or (1 if all(grays) else 3)
    images = (np.stack([_to_channels(a, c) for a in arrays]) if arrays
              else np.zeros((0, img_size, img_size, c), np.uint8))
    res = {"kept": kept, "gray": c == 1 and not channels, "errors": errors, "n": len(paths),
           "channels": c}
    if out is None:
        res["images"] = images
        return res
    err_pos = np.array([p for p, _ in errors], dtype=np.int64)
    err_msg = np.array([m for _, m in errors], dtype=np.str_)

    def write(f) -> None:
        np.savez(f, images=images, kept=np.array(kept, dtype=np.int64), err_pos=err_pos,
                 err_msg=err_msg)
    atomic_write(out, write)
    return res


def _read_chunk(path: Path) -> dict:
    """A chunk file written by :func:`_decode_chunk` (ValueError/OSError when damaged)."""
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
        kept = z["kept"].tolist()
        errors = list(zip(z["err_pos"].tolist(), z["err_msg"].tolist()))
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(kept):
        raise ValueError("unexpected chunk content")
    return {"kept": kept, "errors": errors, "images": images, "channels": images.shape[-1]}


def _pool(workers: int):
    # Processes, not threads: Pillow holds the GIL for part of decoding (colour conversion,
    # EXIF, our own numpy work), so threads reach about 1.3 cores. fork where the platform has
    # it (workers start in milliseconds and inherit the imported modules).
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    return ProcessPoolExecutor(workers, mp_context=ctx)


def decode_chunks(files: List[Path], *, img_size: int, channels: int, skips: "_Skips",
                  limit: int = 0, store: Optional[Path] = None, workers: int = 0,
                  chunk: int = 0, desc: str = "decoding") -> List[dict]:
    """Decode ``files`` in chunks of ``chunk`` images (default :data:`CHUNK`), ``workers``
    processes at a time (0: :func:`decode_workers`; 1: in this process), in order, with a
    progress bar (images/s, ETA). Unreadable files go to ``skips`` (which raises under
    strict). Stops once ``limit`` images were kept.

    With ``store`` (a folder), every finished chunk is written there as it completes and
    chunks already there are reused instead of decoded: a decode interrupted by Ctrl-C (or
    killed) resumes where it stopped. The returned chunks then hold ``path`` instead of
    ``images``. Chunks with skipped files are decoded again under strict (to raise)."""
    chunk = chunk or CHUNK
    workers = workers or decode_workers()
    starts = list(range(0, len(files), chunk))
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
    try:
        from tqdm import tqdm
        bar = tqdm(total=limit or len(files), desc=desc, unit="img", disable=None, leave=False,
                   smoothing=0.1)
    except ImportError:
        bar = None
    results: List[dict] = []
    kept_total = 0

    def job(start: int):
        paths = [str(p) for p in files[start:start + chunk]]
        out = None if store is None else \
            str(store / _chunk_name(start, len(paths), img_size, channels))
        return paths, start, img_size, channels, out

    def done(start: int, res: dict) -> bool:
        nonlocal kept_total
        for pos, msg in res["errors"]:
            skips.add(files[pos], DataError(msg))
        if store is not None:
            res.pop("images", None)
            res["path"] = store / _chunk_name(start, res["n"], img_size, channels)
        results.append(res)
        kept_total += len(res["kept"])
        if bar is not None:
            bar.update(min(res["n"], (limit - bar.n) if limit else res["n"]))
        return bool(limit) and kept_total >= limit

    def reuse(start: int) -> Optional[dict]:
        if store is None:
            return None
        n = len(files[start:start + chunk])
        p = store / _chunk_name(start, n, img_size, channels)
        if not p.exists():
            return None
        try:
            res = _read_chunk(p)
        except Exception:  # a damaged chunk file: decode it again
            return None
        if res["errors"] and skips.strict:
            return None
        res["n"] = n
        return res

    pending: List[int] = []
    pool = None
    try:
        if workers > 1 and len(starts) > 1:
            pool = _pool(min(workers, len(starts)))
        futures: dict = {}
        i = 0
        while i < len(starts) or pending:
            # keep up to 2 chunks per worker in flight, in order
            while i < len(starts) and len(pending) < max(1, 2 * workers):
                s0 = starts[i]
                i += 1
                again = reuse(s0)
                if again is not None:
                    futures[s0] = again
                elif pool is not None:
                    futures[s0] = pool.submit(_decode_chunk, *job(s0))
                else:
                    futures[s0] = None
                pending.append(s0)
                if pool is None:
                    break
            s0 = pending.pop(0)
            f = futures.pop(s0)
            if f is None:
                res = _decode_chunk(*job(s0))
            elif isinstance(f, dict):
                res = f
            else:
                res = f.result()
            if done(s0, res):
                break
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    return results


def _chunk_images(res: dict) -> np.ndarray:
    return res["images"] if "images" in res else _read_chunk(res["path"])["images"]


def _assemble_plan(results: List[dict], limit: int, channels: int) -> Tuple[List[int], int]:
    kept = [k for r in results for k in r["kept"]]
    if limit:
        kept = kept[:limit]
    out_c = channels or (1 if all(r["channels"] == 1 for r in results if r["kept"]) else 3)
    return kept, out_c


def _blocks(results: List[dict], n_keep: int, out_c: int) -> Iterator[np.ndarray]:
    """The kept images, chunk by chunk, as uint8 (k, C, H, W) at ``out_c`` channels."""
    left = n_keep
    for r in results:
        if left <= 0:
            return
        if not r["kept"]:
            continue
        a = _chunk_images(r)[:left]
        left -= len(a)
        if a.shape[-1] != out_c:
            a = _to_channels(a, out_c)
        yield np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _prepare(folder: Path, files: List[Path], img_size: int, skips: "_Skips"
             ) -> Tuple[int, List[Path]]:
    if img_size:
        return img_size, files
    with ThreadPoolExecutor(_workers()) as pool:
        return _auto_size(files, skips, pool, folder)


def _none_readable(folder: Path, skips: "_Skips") -> DataError:
    first = skips.files[0] if skips.files else "?"
    return DataError(f"{folder}: none of the {len(skips.files)} image files could be read "
                     f"(first: {first}); check that they are valid images (try opening "
                     f"one), or point to another folder")


def decode_folder(folder: Path, files: List[Path], *, img_size: int, channels: int,
                  strict: bool, limit: int, name: str, workers: int = 0,
                  chunk: int = 0) -> Tuple[ImageDataset, List[str]]:
    """Decode ``files`` of ``folder`` into an in-memory dataset (no cache involved); returns
    it with the names of the skipped files. See :func:`decode_chunks` for the options."""
    class_names, labels_all = class_labels(folder, files)
    skips = _Skips(strict)
    img_size, files = _prepare(folder, files, img_size, skips)
    results = decode_chunks(files, img_size=img_size, channels=channels, skips=skips,
                            limit=limit, workers=workers, chunk=chunk,
                            desc=f"decoding {folder.name or folder}") if files else []
    kept, out_c = _assemble_plan(results, limit, channels)
    if not kept:
        raise _none_readable(folder, skips)
    x = np.concatenate(list(_blocks(results, len(kept), out_c)))
    labels = None
    if class_names is not None:
        labels = torch.tensor(_labels(folder, class_names, files, kept), dtype=torch.int64)
    ds = ImageDataset(images=torch.from_numpy(x), labels=labels, class_names=class_names,
                      name=name, source=str(folder), skipped=len(skips.files))
    return ds, skips.files


def _labels(folder: Path, class_names: List[str], files: List[Path], kept: List[int]) -> List[int]:
    index = {c: i for i, c in enumerate(class_names)}
    return [index[files[k].relative_to(folder).parts[0]] for k in kept]


def decode_folder_to_cache(folder: Path, files: List[Path], key: str, *, img_size: int,
                           channels: int, strict: bool, limit: int, name: str,
                           fingerprint_digest: str = "", workers: int = 0,
                           chunk: int = 0) -> ImageDataset:
    """Decode ``files`` straight into the cache entry ``key`` (one chunk in memory at a time)
    and return the entry (memory-mapped when large). Finished chunks are kept in
    ``<key>.partial/`` until the entry is complete, so an interrupted decode resumes; the
    entry itself appears only when whole (see :mod:`ganforge.data.cache`). When the cache
    cannot be written, the dataset is decoded into memory instead (with a warning)."""
    class_names, _ = class_labels(folder, files)
    skips = _Skips(strict)
    img_size, files = _prepare(folder, files, img_size, skips)
    store = cache_mod.partial_dir(key)
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        cache_mod.warn_unwritable(store, e)
        ds, _ = decode_folder(folder, files, img_size=img_size, channels=channels,
                              strict=strict, limit=limit, name=name, workers=workers,
                              chunk=chunk)
        return ds
    results = decode_chunks(files, img_size=img_size, channels=channels, skips=skips,
                            limit=limit, store=store, workers=workers, chunk=chunk,
                            desc=f"decoding {folder.name or folder}") if files else []
    kept, out_c = _assemble_plan(results, limit, channels)
    if not kept:
        raise _none_readable(folder, skips)
    labels = None if class_names is None else _labels(folder, class_names, files, kept)
    try:
        cache_mod.write_entry(key, (len(kept), out_c, img_size, img_size),
                              lambda: _blocks(results, len(kept), out_c), labels=labels,
                              class_names=class_names, name=name, source=str(folder),
                              fingerprint_digest=fingerprint_digest, skipped_files=skips.files)
    except OSError as e:
        cache_mod.warn_unwritable(cache_mod.array_path(key), e)
        x = np.concatenate(list(_blocks(results, len(kept), out_c)))
        return ImageDataset(images=torch.from_numpy(x), labels=None if labels is None else
                            torch.tensor(labels), class_names=class_names, name=name,
                            source=str(folder), skipped=len(skips.files))
    cache_mod.remove_partial(key)
    ds = cache_mod.load(key)
    if ds is None:   # removed under our feet (someone cleared the cache): decode in memory
        ds, _ = decode_folder(folder, files, img_size=img_size, channels=channels,
                              strict=strict, limit=limit, name=name, workers=1, chunk=chunk)
    return ds


def load_folder(path: str | Path, *, img_size: int = 0, channels: int = 0, strict: bool = False,
                limit: int = 0, cache: bool = True, name: Optional[str] = None,
                workers: int = 0) -> ImageDataset:
    """A folder of images as a dataset (see the module docstring); decoded once into the
    cache (:mod:`ganforge.data.cache`) unless ``cache=False``. ``workers``: decoding
    processes (0: :func:`decode_workers`)."""
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
    if not cache:
        ds, _ = decode_folder(folder, files, img_size=img_size, channels=channels,
                              strict=strict, limit=limit, name=label, workers=workers)
        return ds
    fp = cache_mod.fingerprint(files)
    key = cache_mod.make_key("folder", fp, root=str(folder), img_size=img_size,
                             channels=channels, limit=limit)
    ds = cache_mod.lookup(key, strict=strict)
    if ds is None:
        with cache_mod.building(key):    # one decoder per entry, also across torchrun ranks
            ds = cache_mod.lookup(key, strict=strict)
            if ds is None:
                ds = decode_folder_to_cache(folder, files, key, img_size=img_size,
                                            channels=channels, strict=strict, limit=limit,
                                            name=label, fingerprint_digest=cache_mod.digest(fp),
                                            workers=workers)
    ds.name = label  # the same folder may be spelled differently than when it was cached
    return ds
