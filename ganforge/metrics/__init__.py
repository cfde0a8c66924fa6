"""Metrics: images -> features -> statistics -> scores, as pure functions.

The pipeline (DESIGN lesson 7):

1. :func:`extract_features` runs a registered :class:`FeatureExtractor` (``EXTRACTORS``;
   ``inception`` = the FID Inception-v3) over a tensor of images or an iterable of batches,
   under ``torch.inference_mode()``; it returns features (and optionally class logits) and/or
   streams them into a :class:`FeatureStats`.
2. :class:`FeatureStats` holds float64 mean/covariance, batch-size independent, saved as
   ``.npz`` (``mu``/``sigma`` like pytorch-fid) so reference statistics can be cached.
3. :func:`compute_metrics` turns real/fake features into a flat ``dict[str, float]``:

   =========  ==============================  ===========================================
   metric     keys                            paper
   =========  ==============================  ===========================================
   ``fid``    ``fid``                         Heusel et al. 2017
   ``kid``    ``kid_mean``, ``kid_std``       Bińkowski et al. 2018
   ``pr``     ``precision``, ``recall``       Kynkäänniemi et al. 2019
   ``dc``     ``density``, ``coverage``       Naeem et al. 2020
   ``is``     ``is_mean``, ``is_std``         Salimans et al. 2016 (needs fake class probs)
   ``hf``     ``hf_ratio``                    high-frequency artefact ratio on the images
                                              themselves, not features (1 = like the real
                                              data; :mod:`ganforge.metrics.frequency`;
                                              Odena et al. 2016, Durall et al. 2020)
   =========  ==============================  ===========================================

Example::

    from ganforge.metrics import EXTRACTORS, extract_features, compute_metrics
    net = EXTRACTORS.build("inception")
    real = extract_features(net, real_images, batch_size=100)
    fake = extract_features(net, fake_batches, with_logits=True)
    scores = compute_metrics(real.features, fake.features, fake_logits=fake.logits)
"""
from __future__ import annotations

from typing import Dict, Iterable, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ganforge.metrics.extractors import EXTRACTORS, FeatureExtractor
from ganforge.metrics.fid import fid_from_features, frechet_distance
from ganforge.metrics.inception_score import inception_score
from ganforge.metrics.kid import kernel_inception_distance
from ganforge.metrics.prdc import knn_radii, prdc
from ganforge.metrics.frequency import SpectralStats, high_frequency_share, hf_ratio, spectral_share
from ganforge.metrics.stats import FeatureStats

# Importing an extractor module registers it (like ganforge.models).
from ganforge.metrics import inception  # noqa: E402,F401  (registers "inception")
from ganforge.metrics.domain import network  # noqa: E402,F401  (registers "domain")
from ganforge.metrics.inception import FIDInceptionV3, load_inception  # noqa: E402

__all__ = [
    "EXTRACTORS", "FeatureExtractor", "FIDInceptionV3", "load_inception", "FeatureStats",
    "Extracted", "extract_features", "compute_metrics", "METRICS", "frechet_distance",
    "fid_from_features", "kernel_inception_distance", "inception_score", "prdc", "knn_radii",
    "SpectralStats", "high_frequency_share", "hf_ratio", "spectral_share",
]

ArrayLike = Union[np.ndarray, torch.Tensor]

#: Metric names accepted by :func:`compute_metrics` -> the keys each one adds.
METRICS: Dict[str, Tuple[str, ...]] = {
    "fid": ("fid",),
    "kid": ("kid_mean", "kid_std"),
    "pr": ("precision", "recall"),
    "dc": ("density", "coverage"),
    "is": ("is_mean", "is_std"),
    "hf": ("hf_ratio",),
}
#: ``hf`` is in the default list: it costs one FFT per image (well under a second for 10,000
#: 64 px images) and sees what the feature-space metrics miss (checkerboard texture).
DEFAULT_METRICS = ("fid", "kid", "pr", "dc", "hf")


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


def _stats_of(x: Union[FeatureStats, Tuple[ArrayLike, ArrayLike], ArrayLike], what: str
              ) -> Tuple[np.ndarray, np.ndarray]:
    if isinstance(x, FeatureStats):
        return x.mean, x.cov
    if isinstance(x, tuple) and len(x) == 2:
        return np.asarray(x[0], dtype=np.float64), np.asarray(x[1], dtype=np.float64)
    s = FeatureStats.from_features(x)
    if s.n < 2:
        raise ValueError(f"FID needs at least 2 {what} feature vectors, got {s.n}")
    return s.mean, s.cov


def compute_metrics(real_feats: Optional[ArrayLike], fake_feats: ArrayLike,
                    metrics: Optional[Sequence[str]] = None, *,
                    fake_probs: Optional[ArrayLike] = None,
                    fake_logits: Optional[ArrayLike] = None,
                    real_stats: Union[FeatureStats, Tuple[ArrayLike, ArrayLike], None] = None,
                    real_hf: Optional[ArrayLike] = None, fake_hf: Optional[ArrayLike] = None,
                    seed: int = 0,
                    kid_subsets: int = 100, kid_subset_size: int = 1000,
                    prdc_k: int = 3, is_splits: int = 10,
                    chunk_size: int = 1024) -> Dict[str, float]:
    """Scores of ``fake_feats`` against ``real_feats`` as a flat ``{name: float}`` dict.

    ``metrics``: names from :data:`METRICS`; default :data:`DEFAULT_METRICS` (``hf`` only
    when ``real_hf`` and ``fake_hf`` are given) plus ``is`` when ``fake_probs`` (class
    probabilities) or ``fake_logits`` are given. ``real_hf``/``fake_hf``: each side's (C,)
    high-frequency share of the images (:func:`spectral_share`), for ``hf``. ``real_stats``
    (cached reference statistics) replaces ``real_feats`` for FID; KID/PR/DC need the real
    features themselves. ``seed`` fixes the KID subsets; everything else is deterministic.
    """
    if metrics is None:
        metrics = tuple(m for m in DEFAULT_METRICS if m != "hf" or
                        (real_hf is not None and fake_hf is not None))
        metrics += (("is",) if fake_probs is not None or fake_logits is not None else ())
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    needs_real = [m for m in metrics if m in ("kid", "pr", "dc")]
    if real_feats is None and (needs_real or ("fid" in metrics and real_stats is None)):
        raise ValueError(f"metrics {needs_real or ['fid']} need real_feats"
                         + ("" if needs_real else " (or real_stats)"))

    out: Dict[str, float] = {}
    if "fid" in metrics:
        mu1, s1 = _stats_of(real_stats if real_stats is not None else real_feats, "real")
        mu2, s2 = _stats_of(fake_feats, "fake")
        out["fid"] = frechet_distance(mu1, s1, mu2, s2)
    if "kid" in metrics:
        out["kid_mean"], out["kid_std"] = kernel_inception_distance(
            real_feats, fake_feats, n_subsets=kid_subsets, subset_size=kid_subset_size,
            seed=seed)
    if "pr" in metrics or "dc" in metrics:
        r = prdc(real_feats, fake_feats, k=prdc_k, chunk_size=chunk_size)
        if "pr" in metrics:
            out["precision"], out["recall"] = r["precision"], r["recall"]
        if "dc" in metrics:
            out["density"], out["coverage"] = r["density"], r["coverage"]
    if "hf" in metrics:
        if real_hf is None or fake_hf is None:
            raise ValueError("metric 'hf' needs real_hf and fake_hf (spectral_share of each "
                             "side's images)")
        out["hf_ratio"] = hf_ratio(torch.as_tensor(real_hf), torch.as_tensor(fake_hf))
    if "is" in metrics:
        # Fewer samples than splits (tiny smoke runs): one sample per split at most.
        if fake_logits is not None:
            out["is_mean"], out["is_std"] = inception_score(
                fake_logits, min(is_splits, len(fake_logits)), from_logits=True)
        elif fake_probs is not None:
            out["is_mean"], out["is_std"] = inception_score(
                fake_probs, min(is_splits, len(fake_probs)))
        else:
            raise ValueError("metric 'is' needs fake_probs or fake_logits "
                             "(extract_features(..., with_logits=True))")
    return out
