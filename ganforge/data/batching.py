"""Fast batching from one uint8 tensor (in memory, on the GPU, or memory-mapped).

The whole dataset is one uint8 tensor; a batch is an ``index_select`` of a shuffled index
range followed by one vectorised conversion to float [-1, 1]. The tensor may be a read-only
view of the cache's memory-mapped ``.npy`` (:mod:`ganforge.data.cache`): the gather then reads
just the batch's rows from the page cache, shared by all processes on the machine, and an
optional ``index`` (an :class:`~ganforge.data.base.ImageDataset` subset) picks which rows of
the map make up the dataset, without copying them. There is no per-sample Python
work, no DataLoader worker processes and no collate step, which is what makes small-image
training on a CPU several times faster than the usual Dataset/DataLoader pattern.

The loader's position (epoch, permutation, offset, RNG state) is part of the checkpoint so a
resumed run sees exactly the batches it would have seen.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from ganforge.data.base import DataError


class BatchLoader:
    def __init__(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None, *,
                 batch_size: int, seed: int = 0, device: torch.device | str = "cpu",
                 channels_last: bool = False, rank: int = 0, world_size: int = 1,
                 index: Optional[torch.Tensor] = None):
        """``images``: uint8 (M, C, H, W); ``index``: optional int64 (N,) rows of ``images``
        that are the dataset (default: all M); ``labels``: int64 (N,) or None, one per
        dataset image. ``device``: where ``images`` is put whole (the trainer picks the GPU
        only when the data takes under a quarter of its free memory, else the CPU, and moves
        each batch). Raises DataError when the batch is larger than the dataset."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError("BatchLoader expects a uint8 (N, C, H, W) tensor")
        n = images.shape[0] if index is None else len(index)
        if batch_size * world_size > n:
            raise DataError(f"batch size {batch_size}" + (f" (x{world_size} processes)" if world_size > 1 else "")
                            + f" (train.batch_size: set by --batch-size, a --config preset or an "
                            f"override) is larger than the dataset ({n} images); use --batch-size "
                            f"{max(1, n // world_size)} or less")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.index = None if index is None else \
            torch.as_tensor(index, dtype=torch.int64).to(self.device)
        self.labels = labels.to(self.device) if labels is not None else None
        self.batch_size = batch_size
        self.channels_last = channels_last
        self.rank, self.world_size = rank, world_size
        self.n = n
        # Each rank takes its own slice of the global batch from one shared permutation,
        # so all ranks together see every image once per epoch (DistributedSampler-like).
        self.global_batch = batch_size * world_size
        self.steps_per_epoch = n // self.global_batch   # drop_last: every batch is full
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = 0          # completed epochs
        self.pos = 0            # batches taken in the current epoch
        self.perm: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ iteration
    def _new_perm(self) -> None:
        self.perm = torch.randperm(self.n, generator=self.gen).to(self.device)
        self.pos = 0

    def next_indices(self) -> torch.Tensor:
        if self.perm is None:
            self._new_perm()
        elif self.pos >= self.steps_per_epoch:
            self.epoch += 1
            self._new_perm()
        start = self.pos * self.global_batch + self.rank * self.batch_size
        self.pos += 1
        return self.perm[start:start + self.batch_size]

    def next(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        idx = self.next_indices()
        x = self.images.index_select(0, idx if self.index is None else self.index[idx])
        x = x.to(torch.float32).mul_(2.0 / 255.0).sub_(1.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.labels.index_select(0, idx) if self.labels is not None else None
        return x, y

    @property
    def epoch_float(self) -> float:
        return self.epoch + self.pos / max(1, self.steps_per_epoch)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "gen": self.gen.get_state(),
                "perm": None if self.perm is None else self.perm.cpu(),
                "n": self.n, "global_batch": self.global_batch}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.gen.set_state(s["gen"])
        self.epoch = int(s["epoch"])
        if s["perm"] is not None and s["n"] == self.n and s["global_batch"] == self.global_batch:
            self.perm = s["perm"].to(self.device)
            self.pos = int(s["pos"])
        else:
            # Different data size or world size on resume: start a fresh epoch (the RNG
            # stream continues, so this is still deterministic).
            self.perm = None
            self.pos = 0
