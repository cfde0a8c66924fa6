"""Datasets: named ones (``fashion-mnist``, ``mnist``, ``emoji``, ``avatars``, ``wesnoth``),
folders of images and
``.npy``/``.npz`` arrays, decoded once to uint8 NCHW and cached on disk as a ``.npy``
that large datasets use memory-mapped (see :mod:`ganforge.data.cache`).

>>> ds = load_dataset("fashion-mnist:test", img_size=32)      # doctest: +SKIP
>>> x = to_float(ds.images[:64])                              # float32 in [-1, 1]

Inside the library images are float [-1, 1] NCHW; uint8 only at the edges (files), hence
:func:`to_float` / :func:`to_uint8`.

Modules, one idea each:
  base        ImageDataset, DataError, DATASETS registry
  limits      how much a file may make us allocate (checked before allocating)
  paths       where datasets are searched, downloaded and cached
  download    one verified, atomic download
  idx         the IDX file format
  mnist       the named MNIST-family datasets (files, checksums, class names)
  decode      one image file -> 8-bit gray/RGB, whatever its mode (untrusted files: a
              DataError naming the file for anything unreadable or oversized)
  folder      a folder of images (class subfolders, skipping unreadable files)
  arrays      .npy / .npz arrays
  emoji       the Noto Color Emoji dataset
  avatars     cartoon faces rendered offline with DiceBear (labelled by style)
  wesnoth     the Battle for Wesnoth unit sprites (labelled by race)
  transforms  whole-tensor resize and channel conversion
  cache       decoded arrays on disk (memory-mapped .npy + metadata)
  resolve     load_dataset: spec -> dataset
"""
from __future__ import annotations

import torch

from ganforge.data import avatars as _avatars  # noqa: F401  (registers "avatars")
from ganforge.data import emoji as _emoji  # noqa: F401  (registers "emoji")
from ganforge.data import mnist as _mnist  # noqa: F401  (registers "fashion-mnist", "mnist")
from ganforge.data import wesnoth as _wesnoth  # noqa: F401  (registers "wesnoth")
from ganforge.data.base import DATASETS, DataError, DataWarning, ImageDataset
from ganforge.data.resolve import dataset_names, load_dataset

__all__ = ["DATASETS", "DataError", "DataWarning", "ImageDataset", "load_dataset",
           "dataset_names", "to_float", "to_uint8"]


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (0 -> -1, 255 -> 1), on the input's device."""
    if images_uint8.dtype != torch.uint8:
        raise TypeError(f"to_float expects a uint8 tensor, got {images_uint8.dtype}")
    return images_uint8.to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x_float: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded to nearest and clamped (the inverse of
    :func:`to_float`; out-of-range values saturate)."""
    if not torch.is_floating_point(x_float):
        raise TypeError(f"to_uint8 expects a floating-point tensor, got {x_float.dtype}")
    return (x_float.detach().to(torch.float32) + 1.0).mul_(127.5).round_().clamp_(0, 255) \
        .to(torch.uint8)
