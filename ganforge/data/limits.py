"""How much a data file may make ganforge allocate, checked before allocating.

A file's header says how big its content is (an IDX header's dims, a ``.npy`` header's
shape, a zip member's size, an image's width and height). A damaged or hostile file can
declare far more than it holds -- a decompression bomb, or a truncated download -- so every
reader compares the declared size with what the file holds and with this machine's memory
*before* allocating, and raises a :class:`DataError` naming the file otherwise:

- :func:`check_declared`: declared bytes must fit in physical memory (a gzip or zip member
  can inflate to up to ~1000x its size on disk, so the file's own size is no bound);
- images: more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (Pillow's default, about 89
  million) are refused, see :mod:`ganforge.data.decode`;
- :data:`MAX_CLASSES`: an unnamed class index this large would make a label list that size.
"""
from __future__ import annotations

import os

from ganforge.data.base import DataError

#: Used when the platform does not say how much memory it has.
FALLBACK_MEMORY = 16 << 30
#: Class indices must be below this when a file gives no class names (labels 0..K-1).
MAX_CLASSES = 100_000


def memory_bytes() -> int:
    """This machine's physical memory in bytes (:data:`FALLBACK_MEMORY` when unknown)."""
    try:
        n = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return FALLBACK_MEMORY
    return n if n > 0 else FALLBACK_MEMORY


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 \
        else f"{n} bytes"


def check_declared(where: str, nbytes: int, what: str = "its content") -> None:
    """Raise a DataError naming ``where`` when ``nbytes`` (what a header declares) cannot
    fit in this machine's memory."""
    mem = memory_bytes()
    if nbytes > mem:
        raise DataError(f"{where}: {what} would take {gib(nbytes)}, more than this machine's "
                        f"{gib(mem)} of memory; the file is damaged or not what it claims to "
                        f"be (re-create or re-download it)")


def out_of_memory(where: str) -> DataError:
    """The DataError for a file whose (checked) content still did not fit in free memory."""
    return DataError(f"{where}: not enough free memory to load it; close other programs, or "
                     f"use a smaller file (a subset, or smaller images)")
