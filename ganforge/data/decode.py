"""Decode one image file into an 8-bit grayscale or RGB array, whatever its mode.

Pillow opens images in many modes; every one is brought to either ``L`` (grayscale) or
``RGB``:

- ``1``, ``L``, ``LA``, ``La`` and 16/32-bit grayscale (``I;16*``, ``I``) and float (``F``)
  become ``L``;
- ``RGB``, ``RGBA``, ``RGBa``, ``RGBX``, ``P``/``PA`` (palette), ``CMYK``, ``YCbCr``,
  ``LAB``, ``HSV`` become ``RGB``.

Transparency (an alpha band, a palette/colour-key ``transparency`` entry) is composited on
white, so transparent backgrounds do not turn black. 16-bit values are scaled
(``round(v / 257)``, 65535 -> 255), not clipped. The EXIF orientation tag is applied.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image, ImageOps

from ganforge.data.transforms import composite_on_white

RESAMPLE = Image.Resampling.LANCZOS
_GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}
_DIRECT_RGB = {"RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def is_gray_mode(mode: str) -> bool:
    return mode in _GRAY_MODES or mode.startswith("I;16")


def _composite(img: Image.Image) -> Image.Image:
    """An image with alpha (LA or RGBA after conversion) on white, without the alpha."""
    if img.mode in ("LA", "La"):
        la = np.asarray(img.convert("LA"))
        return Image.fromarray(composite_on_white(la[..., 0], la[..., 1]), "L")
    rgba = np.asarray(img.convert("RGBA"))
    return Image.fromarray(composite_on_white(rgba[..., :3], rgba[..., 3:4]), "RGB")


def _wide_gray(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit L, scaling instead of clipping."""
    a = np.asarray(img)
    if img.mode == "F":
        a = a.astype(np.float64)
        a = np.nan_to_num(a, nan=0.0)
        # Float images are taken as [0, 1] when they fit, else as [0, 255].
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), "L")
    # I;16 variants and I (which Pillow also uses for 16-bit PNGs): 16-bit range.
    a = a.astype(np.int64)
    return Image.fromarray(np.clip((a * 2 + 257) // 514, 0, 255).astype(np.uint8), "L")


def to_8bit(img: Image.Image) -> Image.Image:
    """Return ``img`` as an ``L`` or ``RGB`` image (see the module docstring)."""
    mode = img.mode
    has_key = "transparency" in img.info
    if mode == "L" and not has_key:
        return img
    if mode == "RGB" and not has_key:
        return img
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return _composite(img.convert("RGBA") if mode == "PA" else img)
    if mode == "P":
        return _composite(img.convert("RGBA")) if has_key else img.convert("RGB")
    if mode in ("1", "L"):
        return _composite(img.convert("LA")) if has_key else img.convert("L")
    if mode == "RGB":  # with a colour-key transparency
        return _composite(img.convert("RGBA"))
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _wide_gray(img)
    if mode in _DIRECT_RGB:
        return img.convert("RGB")
    return img.convert("RGB")  # anything exotic Pillow can still convert


def open_image(path: Path) -> Image.Image:
    """Open and fully decode ``path`` (raises on unreadable or truncated files), applying
    the EXIF orientation and converting to ``L`` or ``RGB``."""
    with Image.open(path) as opened:
        opened.load()  # decode now: truncated files fail here, inside the caller's try
        im = ImageOps.exif_transpose(opened)
        if im is opened:  # closing the file would invalidate the pixels we return
            im = opened.copy()
        return to_8bit(im)


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` and center crop to ``size`` x ``size`` (Lanczos, an
    antialiasing filter). ``ImageOps.fit`` crops the box first and resizes once."""
    if img.size == (size, size):
        return img
    return ImageOps.fit(img, (size, size), method=RESAMPLE, centering=(0.5, 0.5))


def decode_file(path: Path, size: int) -> Tuple[np.ndarray, bool]:
    """(H, W, C) uint8 array at ``size`` x ``size`` (C = 1 or 3) and whether it is gray."""
    img = fit_square(open_image(path), size)
    a = np.asarray(img)
    gray = img.mode == "L"
    return (a[..., None] if gray else a), gray


def header_size(path: Path) -> Tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only."""
    with Image.open(path) as im:
        w, h = im.size
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:
            orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
