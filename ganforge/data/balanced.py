"""Class-balanced batching for imbalanced labeled data (``ganforge train --balance``).

:class:`BalancedBatchLoader` draws every image of a batch independently, with replacement,
with probability proportional to ``1 / count(its class)``: each class is then equally likely
in every draw, whatever the class sizes (inverse-frequency resampling). Rare-class images are
seen more often than once per "epoch", common-class images less often; an epoch here is
``len(data)`` draws, which keeps ``--epochs`` and the progress bar meaningful.

Same interface and memory layout as :class:`~ganforge.data.batching.BatchLoader` (it only
replaces ``next_indices``); the draws come from the loader's own seeded generator, which is
checkpointed, so resume is exact.
"""
from __future__ import annotations

from typing import Any, Dict

import torch

from ganforge.data.base import DataError
from ganforge.data.batching import BatchLoader


def class_counts(labels: torch.Tensor, n_classes: int = 0) -> torch.Tensor:
    """Images per class, int64 ``(max(n_classes, max label + 1),)``."""
    return torch.bincount(labels.detach().cpu().long(), minlength=n_classes)


def balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-image sampling weights ``1 / count(class)`` (float64, CPU): every class gets the
    same total weight, so a draw is equally likely to be of any class present."""
    y = labels.detach().cpu().long()
    return (1.0 / class_counts(y).double())[y]


class BalancedBatchLoader(BatchLoader):
    """Batches whose labels are uniform over the classes present (inverse-frequency sampling)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, **kwargs: Any):
        if labels is None:
            raise DataError("class-balanced sampling (--balance) needs class labels, and this "
                            "dataset has none; use a labeled dataset or drop --balance")
        super().__init__(images, labels, **kwargs)
        self.weights = balanced_weights(labels)

    def next_indices(self) -> torch.Tensor:
        # One global draw shared by all ranks (each takes its own slice), like BatchLoader.
        idx = torch.multinomial(self.weights, self.global_batch, replacement=True,
                                generator=self.gen)
        if self.pos >= self.steps_per_epoch:
            self.epoch += 1
            self.pos = 0
        self.pos += 1
        start = self.rank * self.batch_size
        return idx[start:start + self.batch_size].to(self.device)

    def state_dict(self) -> Dict[str, Any]:
        return {"balanced": True, "epoch": self.epoch, "pos": self.pos,
                "gen": self.gen.get_state()}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.gen.set_state(s["gen"])
        self.epoch, self.pos = int(s["epoch"]), int(s["pos"])
