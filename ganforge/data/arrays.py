"""Images stored as numpy arrays in a ``.npy`` or ``.npz`` file.

Accepted layouts: ``N x H x W`` (grayscale), ``N x H x W x C`` or ``N x C x H x W`` with
C in 1 (gray), 2 (gray + alpha), 3 (RGB), 4 (RGBA); alpha is composited on white.
Accepted values: uint8 (0..255), bool, uint16 (scaled by 1/257), other integers within
0..255, or floats in [0, 1] or [-1, 1] (taken as [-1, 1] when any value is negative).

In a ``.npz`` the images are the first of :data:`IMAGE_KEYS` present (or the only array with
3+ dimensions); labels, optional, the first of :data:`LABEL_KEYS`; class names, optional,
``class_names`` (a string array).
"""
from __future__ import annotations

import math
import os
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO, Dict, List, Optional, Tuple

import numpy as np
import torch

from ganforge.data import cache as cache_mod
from ganforge.data.base import DataError, ImageDataset
from ganforge.data.limits import MAX_CLASSES, check_declared, out_of_memory
from ganforge.data.spec import local_path
from ganforge.data.transforms import composite_on_white, convert_channels, resize_square

IMAGE_KEYS = ("images", "x", "X", "arr_0", "data", "imgs", "x_train", "train_images")
LABEL_KEYS = ("labels", "y", "Y", "targets", "y_train", "train_labels")
CLASS_NAME_KEYS = ("class_names", "classes")
CHANNEL_COUNTS = (1, 2, 3, 4)
FIX_LAYOUT = ("save images as N x H x W, N x H x W x C or N x C x H x W with C in 1, 3 or 4 "
              "(e.g. np.save('x.npy', images))")


NPY_MAGIC = b"\x93NUMPY"


def _pickled(where: str) -> DataError:
    return DataError(f"{where}: holds pickled Python objects (an object array), which "
                     f"ganforge does not load (unpickling can run code); save plain numeric "
                     f"arrays instead")


def _npy_header(f: BinaryIO, where: str, available: int) -> Tuple[tuple, np.dtype]:
    """Read and check a .npy header from ``f`` (positioned at its start): (shape, dtype).
    ``available``: bytes the container holds for this array, header included. Refuses
    object arrays, negative dims, and shapes that need more bytes than the file holds or
    than this machine has -- before numpy allocates anything."""
    fmt = np.lib.format
    start = f.tell()
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    elif hasattr(fmt, "_read_array_header"):
        shape, _, dtype = fmt._read_array_header(f, version)
    else:
        raise DataError(f"{where}: .npy format version {version} is not supported; re-save "
                        f"it with np.save")
    if dtype.hasobject:
        raise _pickled(where)
    if any(d < 0 for d in shape):
        raise DataError(f"{where}: invalid shape {shape} in the .npy header")
    need = math.prod(shape) * dtype.itemsize                # Python ints: no overflow
    have = available - (f.tell() - start)
    if need > have:
        raise DataError(f"{where}: truncated: the header says shape {shape} {dtype} "
                        f"({need} bytes) but only {max(have, 0)} bytes follow; re-save it "
                        f"with np.save / np.savez")
    check_declared(where, need, f"the {shape} {dtype} array")
    return shape, dtype


def _read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        _npy_header(f, str(path), os.fstat(f.fileno()).st_size)
        f.seek(0)
        return np.lib.format.read_array(f, allow_pickle=False)


class _Npz:
    """The arrays of a .npz (a zip of .npy files), read one at a time, each header checked
    (:func:`_npy_header`) before numpy allocates it. Keys are member names without
    ``.npy``, as ``np.load`` gives them."""

    def __init__(self, path: Path, zf: zipfile.ZipFile):
        self.path, self.zf = path, zf
        self.members: Dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            if not info.is_dir():
                name = info.filename
                self.members[name[:-4] if name.endswith(".npy") else name] = info   # last wins, as in zipfile

    def where(self, key: str) -> str:
        return f"{self.path} (array '{key}')"

    def header(self, key: str) -> Optional[Tuple[tuple, np.dtype]]:
        """(shape, dtype) of member ``key``, or None when it is not a .npy array."""
        info = self.members[key]
        check_declared(self.where(key), info.file_size, "the zip member")
        with self.zf.open(info) as m:
            if m.read(len(NPY_MAGIC)) != NPY_MAGIC:
                return None
        with self.zf.open(info) as m:
            return _npy_header(m, self.where(key), info.file_size)

    def load(self, key: str) -> np.ndarray:
        if self.header(key) is None:
            raise DataError(f"{self.where(key)}: not a numpy array (the member does not start "
                            f"with the .npy signature); re-save the file with np.savez")
        with self.zf.open(self.members[key]) as m:
            return np.lib.format.read_array(m, allow_pickle=False)


def _read_npz(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[List[str]], str]:
    with zipfile.ZipFile(path) as zf:
        z = _Npz(path, zf)
        keys = list(z.members)
        img_key = next((k for k in IMAGE_KEYS if k in keys), None)
        if img_key is None:
            multi = [k for k in keys if (h := z.header(k)) is not None and len(h[0]) >= 3]
            if len(multi) == 1:
                img_key = multi[0]
            else:
                raise DataError(f"{path}: cannot tell which array holds the images (keys: "
                                f"{', '.join(keys) or 'none'}); name it one of "
                                f"{', '.join(IMAGE_KEYS[:3])}, e.g. "
                                f"np.savez(path, images=x, labels=y)")
        lbl_key = next((k for k in LABEL_KEYS if k in keys), None)
        if lbl_key is None and img_key == "arr_0" and "arr_1" in keys:
            lbl_key = "arr_1"  # np.savez(path, x, y)
        name_key = next((k for k in CLASS_NAME_KEYS if k in keys), None)
        images = z.load(img_key)
        labels = z.load(lbl_key) if lbl_key else None
        names = [str(s) for s in z.load(name_key).reshape(-1)] if name_key else None
    return images, labels, names, f"array '{img_key}'"


def _read(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[List[str]], str]:
    """(images, labels, class_names, what) from the file; ``what`` names the array used.
    Never unpickles (object arrays are refused); any failure to parse the file is a
    DataError naming it."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise DataError(f"{path}: not a regular file")
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if magic != NPY_MAGIC and not magic.startswith(b"PK"):
        raise DataError(f"{path}: not a numpy .npy/.npz file (it does not start with the "
                        f"numpy or zip signature); re-save it with np.save / np.savez")
    try:
        if magic == NPY_MAGIC:
            return _read_npy(path), None, None, "array"
        return _read_npz(path)
    except DataError:
        raise
    except MemoryError:
        raise out_of_memory(str(path)) from None
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise _pickled(str(path)) from None
        raise DataError(f"{path}: not a readable numpy file ({e}); re-save it with "
                        f"np.save / np.savez") from None
    except Exception as e:  # noqa: BLE001 - zip, zlib, numpy: all about this file's bytes
        raise DataError(f"{path}: not a readable numpy file ({type(e).__name__}: {e}); "
                        f"re-save it with np.save / np.savez") from None


def to_nhwc(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 3:
        return arr[..., None]
    if arr.ndim != 4:
        raise DataError(f"{where}: expected a batch of images with 3 or 4 dimensions, got "
                        f"shape {arr.shape}; {FIX_LAYOUT}")
    last, second = arr.shape[-1] in CHANNEL_COUNTS, arr.shape[1] in CHANNEL_COUNTS
    if last and not (second and arr.shape[-1] > arr.shape[1]):
        return arr                                   # N H W C
    if second:
        return np.moveaxis(arr, 1, -1)               # N C H W
    raise DataError(f"{where}: cannot find a channel axis of size 1, 2, 3 or 4 in shape "
                    f"{arr.shape}; {FIX_LAYOUT}")


def to_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind not in "biuf":
        raise DataError(f"{where}: unsupported dtype {arr.dtype}; use uint8 or float")
    if arr.size == 0:
        return arr.astype(np.uint8)
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)
    if kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer values range {lo}..{hi}, outside 0..255; "
                            f"convert to uint8, or to floats in [0, 1]")
        return arr.astype(np.uint8)
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    tol = 1e-3
    if lo < -1 - tol or hi > 1 + tol:
        raise DataError(f"{where}: float values range {lo:g}..{hi:g}; floats must be in "
                        f"[0, 1] or [-1, 1] (divide by 255 or save as uint8)")
    x = arr.astype(np.float32)
    x = (x + 1) * 127.5 if lo < 0 else x * 255.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _flatten_alpha(x: np.ndarray) -> np.ndarray:
    c = x.shape[-1]
    if c == 2:
        return composite_on_white(x[..., :1], x[..., 1:2])
    if c == 4:
        return composite_on_white(x[..., :3], x[..., 3:4])
    return x


def _labels(labels: np.ndarray, n: int, names: Optional[List[str]], where: str) -> torch.Tensor:
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{where}: labels must be 1-D with one entry per image ({n}), got "
                        f"shape {y.shape}")
    if y.dtype.kind == "f" and len(y):
        if not (np.isfinite(y).all() and (np.mod(y, 1) == 0).all()):
            raise DataError(f"{where}: labels must be whole numbers (class indices), found "
                            f"fractions, NaN or infinity")
    elif y.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers (class indices), got {y.dtype}")
    if not len(y):
        return torch.zeros(0, dtype=torch.int64)
    lo, hi = y.min().item(), y.max().item()        # Python numbers: no wrap-around
    if lo < 0:
        raise DataError(f"{where}: labels must be >= 0, found {lo}")
    if names is not None and hi >= len(names):
        raise DataError(f"{where}: label {hi} has no entry in class_names "
                        f"({len(names)} names)")
    if names is None and hi >= MAX_CLASSES:
        raise DataError(f"{where}: label {hi} is not a class index below {MAX_CLASSES}; "
                        f"number the classes 0..K-1 (or add class_names)")
    return torch.from_numpy(y.astype(np.int64))


def decode_arrays(path: Path, *, img_size: int, channels: int, limit: int,
                  name: str) -> ImageDataset:
    images, labels, names, what = _read(path)
    where = f"{path} ({what}, shape {images.shape})"
    x = to_nhwc(images, where)
    if len(x) == 0:
        raise DataError(f"{where}: holds no images")
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise DataError(f"{where}: the images are {x.shape[1]}x{x.shape[2]} pixels; "
                        f"{FIX_LAYOUT}")
    y = _labels(labels, len(x), names, str(path)) if labels is not None else None
    if limit:
        x = x[:limit]
        y = y[:limit] if y is not None else None
    x = _flatten_alpha(to_uint8(np.ascontiguousarray(x), where))
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()
    if img_size:
        t = resize_square(t, img_size)
    elif t.shape[-1] != t.shape[-2]:
        t = resize_square(t, min(t.shape[-2:]))    # non-square: center crop
    t = convert_channels(t, channels, str(path))
    if y is not None and names is None:
        names = [str(i) for i in range(int(y.max()) + 1)]
    return ImageDataset(images=t, labels=y, class_names=names if y is not None else None,
                        name=name, source=str(path))


def load_arrays(path: str | Path, *, img_size: int = 0, channels: int = 0, limit: int = 0,
                cache: bool = True, name: Optional[str] = None) -> ImageDataset:
    p = local_path(path).resolve()
    try:
        if not stat.S_ISREG(p.stat().st_mode):
            raise DataError(f"{p}: not a regular file")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {p}: {e}") from None
    label = name or str(path)
    key = cache_mod.make_key("arrays", cache_mod.fingerprint([p]), img_size=img_size,
                             channels=channels, limit=limit)
    ds = cache_mod.cached_dataset(
        key, lambda: (decode_arrays(p, img_size=img_size, channels=channels, limit=limit,
                                    name=label), []),
        enabled=cache)
    ds.name = label
    return ds
