"""Decode one image file into an 8-bit grayscale or RGB array, whatever its mode.

Pillow opens images in many modes; every one is brought to either ``L`` (grayscale) or
``RGB``:

- ``1``, ``L``, ``LA``, ``La`` and 16/32-bit grayscale (``I;16*``, ``I``) and float (``F``)
  become ``L``;
- ``RGB``, ``RGBA``, ``RGBa``, ``RGBX``, ``P``/``PA`` (palette), ``CMYK``, ``YCbCr``,
  ``LAB``, ``HSV`` become ``RGB``.

Transparency (an alpha band, a palette/colour-key ``transparency`` entry) is composited on
white, so transparent backgrounds do not turn black. 16-bit values are scaled
(``round(v / 257)``, 65535 -> 255), not clipped. The EXIF orientation tag is applied (and
ignored when the EXIF block is unreadable).

Untrusted files: only the formats in :data:`FORMATS` are opened, whatever the file is called
(never, say, EPS, which Pillow hands to Ghostscript); an image whose header declares more
than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels is refused before its pixels are allocated (a
decompression bomb; Pillow itself only warns up to twice that); and every failure to read a
file -- whatever Pillow, zlib or libwebp raise -- becomes a :class:`DataError` that names the
file. Raise ``PIL.Image.MAX_IMAGE_PIXELS`` (or set it to None) to accept larger images.
"""
from __future__ import annotations

import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np
from PIL import Image, ImageOps

from ganforge.data.base import DataError
from ganforge.data.limits import out_of_memory
from ganforge.data.transforms import composite_on_white

RESAMPLE = Image.Resampling.LANCZOS
#: The Pillow formats ganforge opens (the JPEG opener also returns camera MPO files).
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
#: Rows are converted in blocks of about this many values (bounded temporaries).
_BLOCK = 1 << 22
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


def _row_blocks(a: np.ndarray) -> Iterator[slice]:
    step = max(1, _BLOCK // max(1, a[:1].size))
    for i in range(0, a.shape[0], step):
        yield slice(i, i + step)


def _wide_gray(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit L, scaling instead of clipping (in
    blocks of rows, so a large image needs no 64-bit copy of itself)."""
    a = np.asarray(img)
    out = np.empty(a.shape, np.uint8)
    if img.mode == "F":
        def finite(block: np.ndarray) -> np.ndarray:
            return np.nan_to_num(block.astype(np.float64), nan=0.0)
        # Float images are taken as [0, 1] when they fit, else as [0, 255].
        top = max((float(finite(a[r]).max()) for r in _row_blocks(a) if a[r].size), default=2.0)
        scale = 255.0 if top <= 1.0 else 1.0
        for r in _row_blocks(a):
            out[r] = np.clip(np.rint(finite(a[r]) * scale), 0, 255)
        return Image.fromarray(out, "L")
    # I;16 variants and I (which Pillow also uses for 16-bit PNGs): 16-bit range.
    for r in _row_blocks(a):
        out[r] = np.clip((a[r].astype(np.int64) * 2 + 257) // 514, 0, 255)
    return Image.fromarray(out, "L")


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


def unreadable(path: Path, err: BaseException) -> DataError:
    """The DataError for a file that failed to decode (``err``: what the decoder raised)."""
    if isinstance(err, DataError):
        return err
    if isinstance(err, Image.DecompressionBombError):
        return _too_big(path, str(err))
    if isinstance(err, MemoryError):
        return out_of_memory(str(path))
    return DataError(f"{path}: cannot read image ({type(err).__name__}: {err})")


def _too_big(path: Path, detail: str) -> DataError:
    return DataError(f"{path}: refusing to decode: {detail} (a decompression bomb, or an image "
                     f"far larger than training needs); shrink the image, or raise "
                     f"PIL.Image.MAX_IMAGE_PIXELS if it is genuine")


def check_size(path: Path, size: Tuple[int, int]) -> None:
    """Refuse a header size with no pixels, or more than ``Image.MAX_IMAGE_PIXELS``."""
    w, h = size
    if w <= 0 or h <= 0:
        raise DataError(f"{path}: the image header declares {w}x{h} pixels; the file is damaged")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and w * h > limit:
        raise _too_big(path, f"its header declares {w}x{h} = {w * h:,} pixels, more than "
                             f"PIL.Image.MAX_IMAGE_PIXELS ({int(limit):,})")


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` restricted to :data:`FORMATS`, with the size checked from the header
    (before any pixel is allocated); any failure is a DataError naming the file."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None
    if not stat.S_ISREG(mode):        # a FIFO or device would block or never end
        raise DataError(f"{path}: not a regular file")
    try:
        im = Image.open(path, formats=FORMATS)
    except Exception as e:  # noqa: BLE001 - whatever the decoder raises is about this file
        raise unreadable(path, e) from None
    with im:
        check_size(path, im.size)
        yield im


def _exif_transpose(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - an unreadable EXIF block: keep the stored orientation
        return im


def open_image(path: Path, draft: int = 0) -> Image.Image:
    """Open and fully decode ``path``, applying the EXIF orientation and converting to ``L``
    or ``RGB``. Unreadable, truncated, unsupported or oversized files raise a DataError
    naming the file. ``draft``: a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size (the
    decoder's own DCT scaling, ``Image.draft``) as long as both sides stay >= ``draft``:
    several times faster when the image is then shrunk to that size anyway."""
    try:
        with _opened(path) as opened:
            if draft and opened.format == "JPEG" and opened.mode in ("L", "RGB", "YCbCr"):
                opened.draft(opened.mode, (draft, draft))
            opened.load()  # decode now: truncated files fail here
            im = _exif_transpose(opened)
            if im is opened:  # closing the file would invalidate the pixels we return
                im = opened.copy()
            return to_8bit(im)
    except Exception as e:  # noqa: BLE001
        raise unreadable(path, e) from None


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` and center crop to ``size`` x ``size`` (Lanczos, an
    antialiasing filter). ``ImageOps.fit`` crops the box first and resizes once."""
    if img.size == (size, size):
        return img
    return ImageOps.fit(img, (size, size), method=RESAMPLE, centering=(0.5, 0.5))


def decode_file(path: Path, size: int) -> Tuple[np.ndarray, bool]:
    """(H, W, C) uint8 array at ``size`` x ``size`` (C = 1 or 3) and whether it is gray.
    Raises a DataError naming the file when it cannot be decoded (see the module
    docstring)."""
    img = open_image(path, draft=size)
    try:
        img = fit_square(img, size)
    except Exception as e:  # noqa: BLE001
        raise unreadable(path, e) from None
    a = np.asarray(img)
    gray = img.mode == "L"
    return (a[..., None] if gray else a), gray


def header_size(path: Path) -> Tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only (the same checks
    and errors as :func:`open_image`)."""
    try:
        with _opened(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # noqa: BLE001 - as in _exif_transpose
                orientation = 1
    except Exception as e:  # noqa: BLE001
        raise unreadable(path, e) from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
