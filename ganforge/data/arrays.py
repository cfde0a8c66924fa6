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

import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from ganforge.data import cache as cache_mod
from ganforge.data.base import DataError, ImageDataset
from ganforge.data.transforms import composite_on_white, convert_channels, resize_square

IMAGE_KEYS = ("images", "x", "X", "arr_0", "data", "imgs", "x_train", "train_images")
LABEL_KEYS = ("labels", "y", "Y", "targets", "y_train", "train_labels")
CLASS_NAME_KEYS = ("class_names", "classes")
CHANNEL_COUNTS = (1, 2, 3, 4)
FIX_LAYOUT = ("save images as N x H x W, N x H x W x C or N x C x H x W with C in 1, 3 or 4 "
              "(e.g. np.save('x.npy', images))")


def _read(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[List[str]], str]:
    """(images, labels, class_names, what) from the file; ``what`` names the array used."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise DataError(f"{path}: not a numpy .npy/.npz file (it does not start with the "
                        f"numpy or zip signature); re-save it with np.save / np.savez")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"{path}: holds pickled Python objects, which ganforge does not "
                            f"load (unsafe); save plain numeric arrays instead") from None
        raise DataError(f"{path}: not a readable numpy file ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable numpy file ({e}); re-save it with "
                        f"np.save / np.savez") from None
    if isinstance(loaded, np.ndarray):
        return loaded, None, None, "array"
    with loaded as z:
        keys = list(z.files)
        img_key = next((k for k in IMAGE_KEYS if k in keys), None)
        if img_key is None:
            multi = [k for k in keys if z[k].ndim >= 3]
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
        images = z[img_key]
        labels = z[lbl_key] if lbl_key else None
        names = [str(s) for s in z[name_key].reshape(-1)] if name_key else None
    return images, labels, names, f"array '{img_key}'"


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
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.size == 0:
        return arr.astype(np.uint8)
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer values range {lo}..{hi}, outside 0..255; "
                            f"convert to uint8, or to floats in [0, 1]")
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
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
    raise DataError(f"{where}: unsupported dtype {arr.dtype}; use uint8 or float")


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
    if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers (class indices), got {y.dtype}")
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: labels must be >= 0, found {y.min()}")
    if names is not None and len(y) and y.max() >= len(names):
        raise DataError(f"{where}: label {y.max()} has no entry in class_names "
                        f"({len(names)} names)")
    return torch.from_numpy(y.astype(np.int64))


def decode_arrays(path: Path, *, img_size: int, channels: int, limit: int,
                  name: str) -> ImageDataset:
    images, labels, names, what = _read(path)
    where = f"{path} ({what}, shape {images.shape})"
    x = to_nhwc(images, where)
    if limit:
        x = x[:limit]
        labels = labels[:limit] if labels is not None else None
    if len(x) == 0:
        raise DataError(f"{where}: holds no images")
    x = _flatten_alpha(to_uint8(np.ascontiguousarray(x), where))
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()
    if img_size:
        t = resize_square(t, img_size)
    elif t.shape[-1] != t.shape[-2]:
        t = resize_square(t, min(t.shape[-2:]))    # non-square: center crop
    t = convert_channels(t, channels, str(path))
    y = _labels(labels, len(t), names, str(path)) if labels is not None else None
    if y is not None and names is None:
        names = [str(i) for i in range(int(y.max()) + 1)]
    return ImageDataset(images=t, labels=y, class_names=names if y is not None else None,
                        name=name, source=str(path))


def load_arrays(path: str | Path, *, img_size: int = 0, channels: int = 0, limit: int = 0,
                cache: bool = True, name: Optional[str] = None) -> ImageDataset:
    p = Path(path).expanduser().resolve()
    label = name or str(path)
    key = cache_mod.make_key("arrays", cache_mod.fingerprint([p]), img_size=img_size,
                             channels=channels, limit=limit)
    ds = cache_mod.cached_dataset(
        key, lambda: (decode_arrays(p, img_size=img_size, channels=channels, limit=limit,
                                    name=label), []),
        enabled=cache)
    ds.name = label
    return ds
