"""What every data source returns (``ImageDataset``), the user-facing error type, and the
registry of named datasets.

Kept apart from ``__init__`` so the source modules (idx, folder, emoji, ...) can import these
without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ganforge.errors import UserError
from ganforge.registry import Registry

#: Named datasets ("fashion-mnist", "mnist", "emoji"). Each entry is called as
#: ``fn(split=..., img_size=..., channels=..., data_dir=..., strict=..., limit=...,
#: download=..., cache=...)`` and returns an :class:`ImageDataset`.
DATASETS = Registry("dataset")


class DataError(UserError, ValueError):
    """A user-caused data problem. The message names the input (file, folder, dataset) and
    says what to do about it."""


class DataWarning(UserWarning):
    """Something was wrong with the data but loading went on (e.g. an unreadable image skipped)."""


@dataclass
class ImageDataset:
    """A whole dataset, decoded once and held in memory.

    ``images`` is uint8 NCHW at the requested size and channel count (uint8 keeps 60k
    Fashion-MNIST images at 47 MB; convert batches with :func:`ganforge.data.to_float`).
    """

    images: torch.Tensor            # uint8 (N, C, H, W), contiguous
    labels: Optional[torch.Tensor]  # int64 (N,) or None
    class_names: Optional[list[str]]
    name: str                       # e.g. "fashion-mnist:train" or the folder path
    source: str                     # where the pixels came from (a path)
    skipped: int = 0                # unreadable files skipped while loading

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"ImageDataset {self.name!r}: images must be a uint8 tensor of "
                             f"shape (N, C, H, W), got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
        if not x.is_contiguous():
            self.images = x.contiguous()
        if self.labels is not None:
            y = self.labels
            if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(f"ImageDataset {self.name!r}: labels must be a 1-D tensor with "
                                 f"one entry per image ({x.shape[0]}), got "
                                 f"{tuple(getattr(y, 'shape', ()))}")
            if y.dtype != torch.int64:
                self.labels = y.to(torch.int64)
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def img_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_classes(self) -> int:
        """Number of classes, 0 when the dataset has no labels."""
        if self.labels is None:
            return 0
        if self.class_names:
            return len(self.class_names)
        return int(self.labels.max().item()) + 1 if len(self.labels) else 0

    def __repr__(self) -> str:  # the dataclass default would print the whole tensor
        n, c, h, w = self.images.shape
        extra = f", {self.num_classes} classes" if self.labels is not None else ""
        skipped = f", skipped={self.skipped}" if self.skipped else ""
        return f"ImageDataset({self.name!r}: {n}x{c}x{h}x{w} uint8{extra}{skipped})"
