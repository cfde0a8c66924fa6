"""What every data source returns (``ImageDataset``), the user-facing error type, and the
registry of named datasets.

Kept apart from ``__init__`` so the source modules (idx, folder, emoji, ...) can import these
without importing each other.
"""
from __future__ import annotations

import hashlib
from typing import Optional

import torch

from ganforge.core.errors import UserError
from ganforge.core.registry import Registry

#: Named datasets ("fashion-mnist", "mnist", "emoji"). Each entry is called as
#: ``fn(split=..., img_size=..., channels=..., data_dir=..., strict=..., limit=...,
#: download=..., cache=...)`` and returns an :class:`ImageDataset`.
DATASETS = Registry("dataset")


class DataError(UserError, ValueError):
    """A user-caused data problem. The message names the input (file, folder, dataset) and
    says what to do about it."""


class DataWarning(UserWarning):
    """Something was wrong with the data but loading went on (e.g. an unreadable image skipped)."""


class ImageDataset:
    """A whole dataset of uint8 images, held in memory or memory-mapped from the cache.

    ``images``: uint8 ``(N, C, H, W)`` at the requested size and channel count (uint8 keeps
    60k Fashion-MNIST images at 47 MB; convert batches with :func:`ganforge.data.to_float`).
    It is either a private in-memory tensor (small datasets, anything built in memory) or a
    read-only tensor over a memory-mapped ``.npy`` file of the decoded-data cache
    (:mod:`ganforge.data.cache`; ``mapped`` is True): its pages live in the operating
    system's page cache, shared by every process that maps the same file, and are read from
    disk on first touch. Never write into a mapped tensor (the mapping is read-only: a write
    is a crash, not an error); gather what you need with :meth:`gather` and work on that.

    A subset (:meth:`subset`) of a mapped dataset is an *index view*: ``base_images`` is the
    whole map and ``index`` (int64 ``(K,)``) picks its rows, so no pixels are copied; then
    ``images`` gathers those rows into a new in-memory tensor on every access (fine for a
    small subset, costly for a big one: loaders and scorers use :meth:`gather`, or
    ``base_images`` with ``index``, instead). ``labels``: int64 ``(N,)`` or None, always in
    memory and already indexed.
    """

    def __init__(self, images: torch.Tensor, labels: Optional[torch.Tensor],
                 class_names: Optional[list[str]], name: str, source: str, skipped: int = 0, *,
                 index: Optional[torch.Tensor] = None, mapped: bool = False) -> None:
        x = images
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"ImageDataset {name!r}: images must be a uint8 tensor of "
                             f"shape (N, C, H, W), got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
        if not x.is_contiguous():
            x = x.contiguous()
        if index is not None:
            index = torch.as_tensor(index, dtype=torch.int64).flatten()
            if len(index) and (int(index.min()) < 0 or int(index.max()) >= x.shape[0]):
                raise ValueError(f"ImageDataset {name!r}: index out of range for "
                                 f"{x.shape[0]} images")
        self.base_images = x              # the whole array (mapped or in memory)
        self.index = index                # rows of base_images, or None for all of them
        self.mapped = bool(mapped)        # base_images is a memory-mapped cache file
        n = x.shape[0] if index is None else len(index)
        if labels is not None:
            y = labels
            if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != n:
                raise ValueError(f"ImageDataset {name!r}: labels must be a 1-D tensor with "
                                 f"one entry per image ({n}), got "
                                 f"{tuple(getattr(y, 'shape', ()))}")
            if y.dtype != torch.int64:
                labels = y.to(torch.int64)
        self.labels = labels
        self.class_names = [str(c) for c in class_names] if class_names is not None else None
        self.name = name                  # e.g. "fashion-mnist:train" or the folder path
        self.source = source              # where the pixels came from (a path)
        self.skipped = int(skipped)       # unreadable files skipped while loading

    @property
    def images(self) -> torch.Tensor:
        """uint8 (N, C, H, W): the tensor itself, or for an index view a gathered copy."""
        if self.index is None:
            return self.base_images
        return self.base_images.index_select(0, self.index)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 (len(idx), C, H, W) in memory: the images at ``idx`` (int64 positions in this
        dataset, in the order given). Reads only those rows of a mapped array."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        if self.index is not None:
            idx = self.index.index_select(0, idx)
        return self.base_images.index_select(0, idx)

    @property
    def nbytes(self) -> int:
        """Bytes of this dataset's pixels (N * C * H * W)."""
        _, c, h, w = self.base_images.shape
        return len(self) * c * h * w

    def __len__(self) -> int:
        return int(self.base_images.shape[0] if self.index is None else len(self.index))

    @property
    def shape(self) -> tuple:
        """(N, C, H, W) without gathering anything."""
        _, c, h, w = self.base_images.shape
        return (len(self), int(c), int(h), int(w))

    @property
    def channels(self) -> int:
        return int(self.base_images.shape[1])

    @property
    def img_size(self) -> int:
        return int(self.base_images.shape[-1])

    @property
    def num_classes(self) -> int:
        """Number of classes, 0 when the dataset has no labels."""
        if self.labels is None:
            return 0
        if self.class_names:
            return len(self.class_names)
        return int(self.labels.max().item()) + 1 if len(self.labels) else 0

    def fingerprint(self, sample: int = 64) -> str:
        """A cheap identity of this dataset's content, 16 hex digits: SHA-256 over its shape,
        every label and the pixels of ``sample`` images spread evenly over it (first and last
        included), so a run can tell on ``--resume`` and ``eval`` whether its data changed
        (images added, removed, replaced or reordered, labels moved) without hashing every
        pixel. Reads ``sample`` rows of a mapped array; costs milliseconds."""
        h = hashlib.sha256(repr(self.shape).encode())
        if self.labels is not None:
            h.update(self.labels.numpy().tobytes())
        n = len(self)
        if n:
            k = min(n, sample)
            idx = torch.tensor(sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)}),
                               dtype=torch.int64)
            h.update(self.gather(idx).numpy().tobytes())
        return h.hexdigest()[:16]

    def subset(self, indices: torch.Tensor, name: Optional[str] = None) -> "ImageDataset":
        """The images (and labels) at ``indices`` (int64 (K,) positions in this dataset, in the
        order given) as a new dataset called ``name`` (default: this one's); class names and
        the source are kept. A mapped dataset gives an index view into the same map (no pixels
        copied); an in-memory one a new in-memory tensor."""
        idx = torch.as_tensor(indices, dtype=torch.int64).flatten()
        labels = None if self.labels is None else self.labels.index_select(0, idx)
        name = self.name if name is None else name
        if self.mapped:
            base_idx = idx if self.index is None else self.index.index_select(0, idx)
            return ImageDataset(self.base_images, labels, self.class_names, name, self.source,
                                self.skipped, index=base_idx, mapped=True)
        return ImageDataset(self.gather(idx), labels, self.class_names, name, self.source,
                            self.skipped)

    def __repr__(self) -> str:  # never print the whole tensor
        n, c, h, w = self.shape
        extra = f", {self.num_classes} classes" if self.labels is not None else ""
        skipped = f", skipped={self.skipped}" if self.skipped else ""
        mapped = ", memory-mapped" if self.mapped else ""
        return f"ImageDataset({self.name!r}: {n}x{c}x{h}x{w} uint8{extra}{skipped}{mapped})"
