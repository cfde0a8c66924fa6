"""Scoring services shared by every task: which feature extractor, which real data, cached
reference features, and scores of generated images against them.

This sits between the pure metrics (:mod:`ganforge.metrics`: features -> statistics ->
numbers) and the faces of runs: it loads real data (:mod:`ganforge.data`) and caches its
features on disk, but knows nothing of run folders, checkpoints or tasks. A run's face
(:class:`ganforge.use.face.Generator`) calls it to score its own outputs; ``ganforge eval``
and ``--eval-every`` reach it through that face.

Reference features of real data are computed once per (dataset, split, extractor + weights
hash, resolution, channels, n) and cached under ``<cache>/refstats/``; changing any of those
makes a new entry (the key is the hash of all of them), so a stale cache is never used.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import torch

from ganforge.core.errors import EvalError
from ganforge.core.files import atomic_save
from ganforge.data import DataError, load_dataset, to_float
from ganforge.data.paths import cache_dir
from ganforge.data.spec import dataset_source
from ganforge.metrics import (
    DEFAULT_METRICS,
    EXTRACTORS,
    METRICS,
    FeatureExtractor,
    Scores,
    caveats,
    compute_metrics,
    extract_features,
    load_inception,
)
from ganforge.metrics.frequency import SpectralStats, spectral_share


def parse_metrics(text: str | Sequence[str] | None) -> Tuple[str, ...]:
    """``"fid,kid"`` -> ``("fid", "kid")``; empty or None -> :data:`ganforge.metrics.DEFAULT_METRICS`
    (the one default list). Raises :class:`EvalError` naming an unknown metric."""
    if text is None:
        return DEFAULT_METRICS
    names = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise EvalError(f"--metrics: unknown metric {', '.join(bad)}; choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names)) or DEFAULT_METRICS


def get_extractor(name: str, *, data_spec: str, img_size: int = 0, weights: Optional[str] = None,
                  device: str | torch.device = "cpu", data_dir: Optional[str] = None) -> FeatureExtractor:
    """The feature extractor ``name``: ``domain`` (the classifier trained on ``data_spec``'s
    dataset, at ``img_size`` or the closest size trained; for a named dataset trained now, on
    first use: :func:`ganforge.metrics.domain.train.ensure_evaluator`), ``inception`` (the FID
    Inception-v3), or another registered one; ``weights`` names a weights file instead of the
    stored one. Raises :class:`EvaluatorError` (one line) when none can be had."""
    if name == "domain":
        if weights is None:
            # imported here: training one pulls in the data loaders, which sampling never needs
            from ganforge.metrics.domain.train import ensure_evaluator
            weights = str(ensure_evaluator(dataset_source(data_spec), img_size, data_dir=data_dir))
        return EXTRACTORS.build("domain", data=dataset_source(data_spec), weights=weights,
                                img_size=img_size, device=device)
    if name == "inception":
        return load_inception(weights).to(device)
    return EXTRACTORS.build(name, weights=weights).to(device)


def _ref_key(data_name: str, split: str, extractor: FeatureExtractor, img_size: int, channels: int,
             n: int, limit_note: str = "") -> str:
    blob = json.dumps({"data": data_name, "split": split, "extractor": extractor.cache_key,
                       "size": img_size, "channels": channels, "n": n, "extra": limit_note}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def real_features(extractor: FeatureExtractor, data_spec: str, split: str = "test", *,
                  img_size: int = 0, channels: int = 0, n: int = 0, data_dir: Optional[str] = None,
                  with_logits: bool = False, cache: bool = True, progress: bool = False,
                  labels: bool = False) -> Dict[str, Any]:
    """Features of ``n`` real images (0: all) of ``data_spec``'s ``split``, from the on-disk cache
    when present. Returns a dict: ``features`` (N, D) float32, ``logits`` (N, K) or None,
    ``labels`` (N,) int64 or None, ``class_names``, ``data``, ``split``, ``n``, ``img_size``,
    ``channels``, ``hf_share`` ((C,) float64: the images' high-frequency share, for the
    ``hf`` metric). When n < the split's size, a fixed spread-out subset is used (the first n
    of a sorted dataset could be all one class). A dataset with no ``test`` split (emoji, a
    folder without a ``test/`` subfolder) is compared with its ``train`` split instead when
    ``split`` is ``"test"``; the returned ``split`` says which was used. Raises DataError for
    data problems."""
    try:
        ds = load_dataset(data_spec, split, img_size=img_size, channels=channels, data_dir=data_dir)
    except DataError:
        if split != "test":
            raise
        split = "train"        # a dataset with one split: FID against the training images
        ds = load_dataset(data_spec, split, img_size=img_size, channels=channels, data_dir=data_dir)
    total = len(ds)
    n = total if n <= 0 else min(n, total)
    key = _ref_key(ds.name, split, extractor, ds.img_size, ds.channels, n,
                   limit_note=f"{total}:{with_logits}")
    path = cache_dir() / "refstats" / f"{_slug(ds.name)}-{key}.pt"
    if cache and path.exists():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry.get("key") == key and entry.get("hf_share") is not None:
                return entry         # (an entry cached before hf_share existed is recomputed)
        except Exception:
            pass   # unreadable cache entry: recompute and overwrite
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(1234))[:n].sort().values
    images = ds.gather(idx)          # only these rows (a mapped dataset stays on disk)
    ex = extract_features(extractor, _float_batches(images, 500), batch_size=500,
                          with_logits=with_logits, progress=progress)
    entry = {"key": key, "data": ds.name, "split": split, "n": n, "features": ex.features,
             "logits": ex.logits, "labels": ds.labels.index_select(0, idx) if ds.labels is not None else None,
             "class_names": ds.class_names, "img_size": ds.img_size, "channels": ds.channels,
             "hf_share": spectral_share(_float_batches(images, 500))}
    if cache:
        atomic_save(entry, path)
    return entry


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[-60:]


def _float_batches(images_u8: torch.Tensor, bs: int) -> Iterable[torch.Tensor]:
    for i in range(0, images_u8.shape[0], bs):
        yield to_float(images_u8[i:i + bs])


#: The fewest images per side any metric can score (FID needs two to have a covariance).
MIN_EVAL_IMAGES = 2
#: k of the k-nearest-neighbour metrics (precision/recall, density/coverage): they need k + 1.
PRDC_K = 3


def min_images(metrics: Sequence[str]) -> int:
    """The fewest images per side that every metric of ``metrics`` can score."""
    return PRDC_K + 1 if {"pr", "dc"} & set(metrics) else MIN_EVAL_IMAGES


def score(real: Dict[str, Any], fake_feats: torch.Tensor, metrics: Sequence[str],
          fake_logits: Optional[torch.Tensor] = None, seed: int = 0,
          sides: Tuple[str, str] = ("the real side", "the generated side"),
          fake_hf: Optional[torch.Tensor] = None) -> Scores:
    """Compare fake features (N, D) with a :func:`real_features` entry; the KID subset size
    adapts to small n. ``fake_hf``: the generated images' (C,) high-frequency share, for
    ``hf`` (left out of the scores when not given). Returns :class:`Scores`: ``{metric key:
    value}`` (see :data:`ganforge.metrics.METRICS`) with ``.caveats``, the estimates that are
    unreliable at these sample counts (:func:`ganforge.metrics.scores.caveats`).
    Raises :class:`EvalError` naming the side (``sides``: how the user named them, e.g. the
    flags) when a side has fewer images than the metrics need (:func:`min_images`)."""
    need = min_images(metrics)
    for side, count in zip(sides, (real["features"].shape[0], fake_feats.shape[0])):
        if count < need:
            raise EvalError(f"{side} has {count} image(s); {','.join(metrics)} need at least {need} "
                            f"(FID 2, precision/recall and density/coverage {PRDC_K + 1}); give more "
                            f"images or fewer metrics (--metrics fid)")
    n = min(real["features"].shape[0], fake_feats.shape[0])
    kw: Dict[str, Any] = {"kid_subset_size": min(1000, n), "kid_subsets": 100 if n >= 1000 else 50}
    if "is" in metrics and fake_logits is None:
        raise EvalError("the Inception Score needs an extractor with class logits")
    if "hf" in metrics and (fake_hf is None or real.get("hf_share") is None):
        metrics = [m for m in metrics if m != "hf"]
    values = compute_metrics(real["features"], fake_feats, metrics=list(metrics),
                             fake_logits=fake_logits, real_hf=real.get("hf_share"),
                             fake_hf=fake_hf, seed=seed, **kw)
    return Scores(values, caveats(metrics, real["features"].shape[0], fake_feats.shape[0],
                                  fake_feats.shape[1], **kw))


def score_images(batches: Iterable[torch.Tensor], extractor: FeatureExtractor, real: Dict[str, Any], *,
                 metrics: Sequence[str], seed: int = 0) -> Scores:
    """Scores of generated images (an iterable of float [-1, 1] NCHW batches) against
    ``real`` (:func:`score`)."""
    with_logits = "is" in metrics
    spectral = SpectralStats() if "hf" in metrics else None

    def tapped():                    # the images pass through once: features and spectrum
        for b in batches:
            if spectral is not None:
                spectral.update(b)
            yield b

    ex = extract_features(extractor, tapped(), with_logits=with_logits)
    return score(real, ex.features, metrics, fake_logits=ex.logits, seed=seed,
                 sides=(f"the real data ({real['data']})", "--n (generated images)"),
                 fake_hf=spectral.share if spectral is not None else None)
