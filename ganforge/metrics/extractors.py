"""Feature extractors: the networks that turn images into the vectors every metric compares.

Every extractor is an ``nn.Module`` subclass of :class:`FeatureExtractor` and is registered in
``EXTRACTORS`` by name (``inception`` here; a dataset-specific ``domain`` classifier can be
added the same way)::

    @EXTRACTORS.register("domain", help="small CNN trained on the dataset")
    def build_domain(weights=None, **kw) -> FeatureExtractor: ...

The contract:

- ``features(x)``: images in [-1, 1], float, NCHW, any size, 1 or 3 channels (the extractor
  resizes and converts channels itself) -> ``(N, feature_dim)`` float32 tensor.
- ``logits(x)``: ``(N, num_classes)`` class logits for the Inception Score, only when
  ``num_classes`` is not None; otherwise it raises.
- ``name``: registry name; ``weights_hash``: a string that changes whenever the weights change
  (SHA-256 of the weights file, or ``random-seed<k>`` for untrained nets). Together they are
  the cache key for reference statistics: features from different networks are never
  comparable.
- ``input_size``: the side length images are resized to (None = used as given).
- Extractors are always in eval mode with ``requires_grad=False``;
  :func:`ganforge.metrics.extract_features` runs them under ``torch.inference_mode()``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ganforge.core.registry import Registry
from ganforge.metrics.stats import require_finite

EXTRACTORS = Registry("feature extractor")


class FeatureExtractor(nn.Module):
    """Base class: metadata attributes plus ``features`` / ``logits``. See module docstring."""

    name: str = "extractor"
    weights_hash: str = "unknown"
    input_size: Optional[int] = None
    feature_dim: int = 0
    num_classes: Optional[int] = None

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"feature extractor '{self.name}' has no classifier head, so "
                                  f"it cannot give class logits (needed for the Inception Score)")

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both outputs; override to share one forward pass (the default runs two)."""
        return self.features(x), self.logits(x)

    @property
    def has_logits(self) -> bool:
        return self.num_classes is not None

    @property
    def cache_key(self) -> str:
        """``name-<first 16 hex of weights_hash>``: where reference statistics are cached."""
        return f"{self.name}-{self.weights_hash[:16]}"

    @property
    def label(self) -> str:
        """What every score names as its ruler: kind, input size and the first 12 hex digits
        of the weights' hash (``domain fashion-mnist 32px sha256:1f2e...``); two scores are
        comparable only when their labels are equal."""
        size = f" {self.input_size}px" if self.input_size else ""
        return f"{self.name}{size} {self.weights_hash[:12]}"

    def freeze(self) -> "FeatureExtractor":
        """Eval mode, no gradients: an extractor is a fixed measuring instrument."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "FeatureExtractor":
        # Batch-norm statistics must never update while measuring: pin eval mode.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        return torch.device("cpu")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Shared input checks: float NCHW in [-1, 1], moved to the extractor's device."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: images must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{self.name}: images must be NCHW (4-D), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{self.name}: images must be float in [-1, 1], got dtype {x.dtype} "
                             f"(convert uint8 with x.float() / 127.5 - 1)")
        if x.numel():
            require_finite(x, f"{self.name}: images", " (a diverged generator?); score only "
                                                      "finite images in [-1, 1]")
            lo, hi = float(x.min()), float(x.max())
            # Generous margin (resampling can overshoot a little); catches [0, 255] input.
            if lo < -1.5 or hi > 1.5:
                raise ValueError(f"{self.name}: images must be in [-1, 1], got values in "
                                 f"[{lo:.3g}, {hi:.3g}]")
        return x.to(device=self.device, dtype=torch.float32)
