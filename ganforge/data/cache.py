"""On-disk cache of decoded datasets: a memory-mapped ``.npy`` array plus a small metadata file.

Layout, under ``<cache>/arrays/`` (``<cache>`` is :func:`ganforge.data.paths.cache_dir`)::

    <key>.npy        uint8 (N, C, H, W), C order: the decoded images (a plain .npy file)
    <key>.json       {"version", "key", "shape", "labels", "class_names", "name", "source",
                      "fingerprint", "skipped", "skipped_files"}
    <key>.partial/   only while a folder is being decoded: finished chunks (see
                     :mod:`ganforge.data.folder`), kept across Ctrl-C so the next start resumes

The key hashes everything the result depends on: the source files' absolute paths, sizes and
modification times, the requested size/channels/limit and a format version. Editing, adding or
removing a source file therefore changes the key; stale entries are simply never read again
(``ganforge`` does not garbage-collect them; deleting the folder is always safe). Caches of
earlier versions (``<cache>/tensors/*.pt``, read whole) are ignored, and rebuilt here.

An entry exists only once its metadata file does: the ``.npy`` is written first (through a
temporary file renamed into place, :func:`ganforge.core.files.atomic_write`), the ``.json`` second,
and a reader checks that the array's header matches the metadata's shape. A crash or Ctrl-C
at any point therefore leaves no entry that is used half-built. Nothing in an entry can run
code: the array is read with ``allow_pickle=False`` and the metadata is JSON.

How an entry is read (:func:`load`): an array of at most :func:`in_memory_limit` bytes (64 MiB
by default, ``$GANFORGE_IN_MEMORY_MB`` to change it; Fashion-MNIST and MNIST at 28 and 32 px,
the emoji set) is read whole into a private tensor, exactly as before; a larger one is opened
with ``numpy.load(mmap_mode="r")`` and wrapped (zero-copy) as a read-only tensor. Its pages are
then the operating system's page cache: read from disk on first touch, kept while memory
allows, and shared by every process that maps the file (all ranks of a ``torchrun`` job on one
machine hold one copy between them). Batches gather rows from the map
(:class:`ganforge.data.batching.BatchLoader`), so a dataset larger than memory trains too, at
the speed of the disk for the part that does not fit.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import (
    IO,
    Any,
    Callable,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
)

import numpy as np
import torch

from ganforge.core.files import atomic_write, atomic_write_text
from ganforge.data.base import DataWarning, ImageDataset
from ganforge.data.paths import cache_dir

#: Bump when decoding changes in a way that alters the pixels of an existing key.
CACHE_VERSION = 3   # 3: JPEGs decoded with Image.draft (DCT scaling) before the resize
#: Datasets up to this many bytes are read into memory; larger ones stay memory-mapped.
DEFAULT_IN_MEMORY_BYTES = 64 << 20
IN_MEMORY_ENV = "GANFORGE_IN_MEMORY_MB"


def array_dir() -> Path:
    """Where the entries live: ``<cache>/arrays``."""
    return cache_dir() / "arrays"


def in_memory_limit() -> int:
    """Bytes up to which a cached dataset is read into private memory instead of mapped
    (``$GANFORGE_IN_MEMORY_MB``, default 64; 0 maps every entry)."""
    raw = os.environ.get(IN_MEMORY_ENV, "").strip()
    if raw:
        try:
            return max(0, int(float(raw) * (1 << 20)))
        except ValueError:
            pass
    return DEFAULT_IN_MEMORY_BYTES


def fingerprint(paths: Iterable[Path]) -> List[list]:
    """[absolute path, size, mtime_ns] for each file (what invalidates the cache)."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return out


def digest(files: List[list]) -> str:
    """A short hash of a :func:`fingerprint` (recorded in the metadata)."""
    return hashlib.sha256(json.dumps(files, default=str).encode()).hexdigest()[:32]


def make_key(kind: str, files: List[list], **params: Any) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "kind": kind, "files": files, "params": params},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def array_path(key: str) -> Path:
    return array_dir() / f"{key}.npy"


def meta_path(key: str) -> Path:
    return array_dir() / f"{key}.json"


def partial_dir(key: str) -> Path:
    """Where a folder decode keeps its finished chunks until the entry is complete."""
    return array_dir() / f"{key}.partial"


# --------------------------------------------------------------------------- reading
def _drop(key: str, why: str) -> None:
    warnings.warn(f"ignoring unreadable cache file {array_path(key)} ({why}); it will be "
                  f"rebuilt", DataWarning, stacklevel=4)
    for p in (meta_path(key), array_path(key)):
        try:
            p.unlink()
        except OSError:
            pass


def open_array(path: Path, shape: Sequence[int], in_memory: Optional[bool] = None
               ) -> Tuple[torch.Tensor, bool]:
    """uint8 ``shape`` tensor of the ``.npy`` at ``path`` and whether it is memory-mapped:
    read whole when ``in_memory`` (default: at most :func:`in_memory_limit` bytes), else a
    read-only zero-copy view of ``numpy.load(mmap_mode="r")``. Raises ValueError when the file
    does not hold exactly that array."""
    shape = tuple(int(s) for s in shape)
    mm = np.load(path, mmap_mode="r", allow_pickle=False)
    if mm.dtype != np.uint8 or tuple(mm.shape) != shape or mm.ndim != 4:
        raise ValueError(f"holds {mm.dtype} {tuple(mm.shape)}, the metadata says uint8 {shape}")
    if in_memory is None:
        in_memory = mm.nbytes <= in_memory_limit()
    if in_memory:
        arr = np.array(mm)          # one sequential read into private memory
        del mm
        return torch.from_numpy(arr), False
    with warnings.catch_warnings():
        # torch warns that the array is not writable: that is the point (shared, read-only).
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(mm), True


def load(key: str, *, in_memory: Optional[bool] = None) -> Optional[ImageDataset]:
    """The dataset cached under ``key``, or None when there is no complete entry. A damaged
    entry (unreadable metadata, an array that does not match it) is named in a warning,
    deleted and reported as absent."""
    mp = meta_path(key)
    if not mp.exists():
        return None
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION \
                or meta.get("key") != key:
            raise ValueError("unexpected cache format")
        images, mapped = open_array(array_path(key), meta["shape"], in_memory)
        labels = meta.get("labels")
        labels = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        ds = ImageDataset(images=images, labels=labels, class_names=meta.get("class_names"),
                          name=str(meta["name"]), source=str(meta["source"]),
                          skipped=int(meta.get("skipped", 0)), mapped=mapped)
        ds.skipped_files = list(meta.get("skipped_files") or [])   # type: ignore[attr-defined]
        ds.cache_key = key                                          # type: ignore[attr-defined]
        return ds
    except Exception as e:  # a torn or foreign entry: drop it and decode again
        _drop(key, str(e) or type(e).__name__)
        return None


# --------------------------------------------------------------------------- writing
def write_entry(key: str, shape: Sequence[int], blocks: Callable[[], Iterator[np.ndarray]], *,
                labels: Optional[Sequence[int]], class_names: Optional[List[str]], name: str,
                source: str, fingerprint_digest: str = "", skipped_files: Sequence[str] = ()
                ) -> Path:
    """Write an entry: ``blocks()`` yields uint8 C-contiguous (k, C, H, W) arrays that together
    are the ``shape`` (N, C, H, W) array, in order, so a dataset larger than memory is
    written one block at a time. Raises OSError (e.g. a full disk) with no entry left."""
    shape = tuple(int(s) for s in shape)
    want = int(np.prod(shape))

    def write(f: IO[bytes]) -> None:
        np.lib.format.write_array_header_2_0(
            f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                "fortran_order": False, "shape": shape})
        done = 0
        for b in blocks():
            b = np.ascontiguousarray(b, dtype=np.uint8)
            f.write(memoryview(b).cast("B"))
            done += b.size
        if done != want:
            raise RuntimeError(f"cache entry {key}: wrote {done} bytes of {want}")

    atomic_write(array_path(key), write)
    meta = {"version": CACHE_VERSION, "key": key, "shape": list(shape),
            "labels": None if labels is None else [int(v) for v in labels],
            "class_names": class_names, "name": name, "source": source,
            "fingerprint": fingerprint_digest, "skipped": len(skipped_files),
            "skipped_files": [str(s) for s in skipped_files]}
    atomic_write_text(meta_path(key), json.dumps(meta))     # last: this makes the entry exist
    return array_path(key)


def save(key: str, ds: ImageDataset, skipped_files: Optional[List[str]] = None) -> Optional[Path]:
    """Write an in-memory dataset as an entry (a warning, not an error, when the cache folder
    cannot be written). Returns the array's path, or None when nothing was written."""
    def blocks() -> Iterator[np.ndarray]:
        step = max(1, (32 << 20) // max(1, ds.nbytes // max(1, len(ds))))
        for i in range(0, len(ds), step):
            yield ds.gather(torch.arange(i, min(len(ds), i + step))).numpy()
    try:
        return write_entry(key, ds.shape, blocks,
                           labels=None if ds.labels is None else ds.labels.tolist(),
                           class_names=ds.class_names, name=ds.name, source=ds.source,
                           skipped_files=skipped_files or [])
    except OSError as e:  # a read-only or full cache must not stop training
        warn_unwritable(array_path(key), e)
        return None


def warn_unwritable(path: Path, e: BaseException) -> None:
    warnings.warn(f"could not write cache file {path} ({e}); set $GANFORGE_CACHE to a "
                  f"writable folder to load faster next time", DataWarning, stacklevel=4)


@contextlib.contextmanager
def building(key: str) -> Iterator[None]:
    """Hold the build lock of ``key`` (``<key>.lock``, an exclusive ``flock``) while decoding:
    the ranks of a ``torchrun`` job that all start on an uncached dataset decode it once (the
    others wait, then find the entry) instead of racing over the same chunk files. Where locks
    are not available (no ``fcntl``, a read-only cache) it holds nothing; the writes are atomic
    either way. The lock file itself stays (empty, harmless)."""
    try:
        import fcntl
        array_dir().mkdir(parents=True, exist_ok=True)
        fd = os.open(array_dir() / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)            # releases the lock


def remove_partial(key: str) -> None:
    shutil.rmtree(partial_dir(key), ignore_errors=True)


def warn_skipped(ds: ImageDataset) -> None:
    """The warning a cached result with skipped files gives each time it is loaded."""
    names = getattr(ds, "skipped_files", None) or []
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    warnings.warn(f"{ds.name}: {ds.skipped} unreadable image(s) were skipped ({shown}); pass "
                  f"--strict (data.strict=true) to fail instead", DataWarning, stacklevel=4)


def lookup(key: str, *, strict: bool = False) -> Optional[ImageDataset]:
    """The cached dataset, or None when it must be built. A cached result that had skipped
    files is not used under ``strict`` (decoding again raises the error naming the file)."""
    ds = load(key)
    if ds is None or (strict and ds.skipped):
        return None
    if ds.skipped:
        warn_skipped(ds)
    return ds


def cached_dataset(key: str, build: Callable[[], tuple[ImageDataset, List[str]]], *,
                   enabled: bool = True, strict: bool = False) -> ImageDataset:
    """Return the dataset cached under ``key``, or ``build()`` it and cache it.

    ``build`` returns (in-memory dataset, names of skipped files). A freshly built dataset
    larger than :func:`in_memory_limit` is handed back memory-mapped from its new entry (the
    private copy is dropped), so the first run uses the same memory as later ones.
    """
    if enabled:
        ds = lookup(key, strict=strict)
        if ds is not None:
            return ds
        with building(key):
            ds = lookup(key, strict=strict)         # built meanwhile by another process?
            if ds is not None:
                return ds
            return _build_and_save(key, build)
    return build()[0]


def _build_and_save(key: str, build: Callable[[], tuple[ImageDataset, List[str]]]) -> ImageDataset:
    ds, skipped_files = build()
    if save(key, ds, skipped_files) is not None and ds.nbytes > in_memory_limit():
        mapped = load(key)
        if mapped is not None:
            return mapped
    return ds
