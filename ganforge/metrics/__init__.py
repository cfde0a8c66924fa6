"""Metrics: images -> features -> statistics -> scores, as pure functions.

The pipeline (DESIGN lesson 7):

1. :func:`extract_features` runs a registered :class:`FeatureExtractor` (``EXTRACTORS``;
   ``inception`` = the FID Inception-v3) over a tensor of images or an iterable of batches,
   under ``torch.inference_mode()``; it returns features (and optionally class logits) and/or
   streams them into a :class:`FeatureStats`.
2. :class:`FeatureStats` holds float64 mean/covariance, batch-size independent, saved as
   ``.npz`` (``mu``/``sigma`` like pytorch-fid) so reference statistics can be cached.
3. :func:`compute_metrics` turns real/fake features into a flat ``dict[str, float]``, one
   registered metric at a time (:data:`METRICS`, :mod:`ganforge.metrics.scores`: fid, kid, pr,
   dc, hf, is).

Around the pure pipeline, the rest of the measuring wing: :mod:`ganforge.metrics.scoring`
(which extractor, which real data, cached reference features: it loads data, but knows no run)
and the domain evaluator (:mod:`ganforge.metrics.domain`: its network, and training it).

Example::

    from ganforge.metrics import EXTRACTORS, extract_features, compute_metrics
    net = EXTRACTORS.build("inception")
    real = extract_features(net, real_images, batch_size=100)
    fake = extract_features(net, fake_batches, with_logits=True)
    scores = compute_metrics(real.features, fake.features, fake_logits=fake.logits)
"""
from __future__ import annotations

from typing import Iterable, NamedTuple, Optional, Union

import numpy as np
import torch

# Importing an extractor module registers it (like ganforge.models).
from ganforge.metrics import inception  # noqa: E402,F401  (registers "inception")
from ganforge.metrics.domain import network  # noqa: E402,F401  (registers "domain")
from ganforge.metrics.extractors import EXTRACTORS, FeatureExtractor
from ganforge.metrics.fid import fid_from_features, frechet_distance
from ganforge.metrics.frequency import (
    SpectralStats,
    hf_ratio,
    high_frequency_share,
    spectral_share,
)
from ganforge.metrics.inception import FIDInceptionV3, load_inception  # noqa: E402
from ganforge.metrics.inception_score import inception_score
from ganforge.metrics.kid import kernel_inception_distance
from ganforge.metrics.prdc import knn_radii, prdc
from ganforge.metrics.scores import (
    DEFAULT_METRICS,
    METRICS,
    MetricInputs,
    Scores,
    caveats,
    compute_metrics,
    metric_keys,
)
from ganforge.metrics.stats import FeatureStats

__all__ = [
    "EXTRACTORS", "FeatureExtractor", "FIDInceptionV3", "load_inception", "FeatureStats",
    "Extracted", "extract_features", "compute_metrics", "METRICS", "DEFAULT_METRICS",
    "MetricInputs", "Scores", "caveats", "metric_keys", "frechet_distance",
    "fid_from_features", "kernel_inception_distance", "inception_score", "prdc", "knn_radii",
    "SpectralStats", "high_frequency_share", "hf_ratio", "spectral_share",
]

ArrayLike = Union[np.ndarray, torch.Tensor]


class Extracted(NamedTuple):
    """Output of :func:`extract_features` (CPU float32 tensors, or None when not kept)."""
    features: Optional[torch.Tensor]
    logits: Optional[torch.Tensor]


def _batches(images: Union[torch.Tensor, Iterable], batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must be an NCHW tensor, got shape {tuple(images.shape)}")
        for i in range(0, images.shape[0], batch_size):
            yield images[i:i + batch_size]
        return
    for b in images:
        # DataLoader-style (images, labels) batches: the images come first.
        if isinstance(b, (tuple, list)):
            b = b[0]
        if isinstance(b, np.ndarray):
            b = torch.from_numpy(b)
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"each batch must be a tensor (or a tuple starting with one), "
                            f"got {type(b).__name__}")
        yield b


def extract_features(extractor: Union[FeatureExtractor, str],
                     images: Union[torch.Tensor, Iterable],
                     batch_size: int = 64, *,
                     device: Union[str, torch.device, None] = None,
                     with_logits: bool = False,
                     stats: Optional[FeatureStats] = None,
                     keep: bool = True,
                     max_items: Optional[int] = None,
                     progress: bool = False) -> Extracted:
    """Run ``extractor`` over images in [-1, 1] (NCHW) under ``torch.inference_mode()``.

    ``images``: one tensor (split into ``batch_size`` chunks) or an iterable of batches
    (tensors, or ``(images, labels)`` tuples as a DataLoader yields; the iterable's own
    batch size is used). ``max_items`` stops after that many images. ``stats``: every batch of
    features is also folded into this accumulator (set ``keep=False`` to not hold all
    features in memory, e.g. for 50k-image reference statistics). ``device``: where the
    extractor runs (it is moved there); defaults to where it already is.
    """
    if isinstance(extractor, str):
        extractor = EXTRACTORS.build(extractor)
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(f"extractor must be a FeatureExtractor or a registered name "
                        f"({', '.join(EXTRACTORS.names())}), got {type(extractor).__name__}")
    if with_logits and not extractor.has_logits:
        raise ValueError(f"feature extractor '{extractor.name}' has no classifier head; "
                         f"with_logits=True is not possible")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        extractor = extractor.to(device)
    extractor.freeze()

    feats, logits = [], []
    seen = 0
    bar = None
    if progress:
        from tqdm import tqdm
        total = images.shape[0] if isinstance(images, torch.Tensor) else max_items
        bar = tqdm(total=total, unit="img", desc=f"{extractor.name} features")
    try:
        with torch.inference_mode():
            for x in _batches(images, batch_size):
                if max_items is not None:
                    if seen >= max_items:
                        break
                    x = x[:max_items - seen]
                if with_logits:
                    f, lg = extractor.features_and_logits(x)
                    if keep:
                        logits.append(lg.float().cpu())
                else:
                    f = extractor.features(x)
                f = f.float().cpu()
                if stats is not None:
                    stats.update(f)
                if keep:
                    feats.append(f)
                seen += x.shape[0]
                if bar is not None:
                    bar.update(x.shape[0])
    finally:
        if bar is not None:
            bar.close()
    if seen == 0:
        raise ValueError("extract_features got no images (empty tensor or iterable)")
    if stats is not None:
        stats.meta.setdefault("extractor", extractor.name)
        stats.meta.setdefault("weights_hash", extractor.weights_hash)
    return Extracted(torch.cat(feats) if keep else None,
                     torch.cat(logits) if keep and with_logits else None)
