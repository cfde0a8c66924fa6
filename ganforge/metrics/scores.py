"""Features -> scores: the registered metrics (:data:`METRICS`) and :func:`compute_metrics`.

Each metric is registered by name with the keys it adds to the scores and whether it is in the
default list (as stylegan2-ada's ``@register_metric``); its entry here adapts the inputs of
:func:`compute_metrics` to the pure function in its own module, which knows nothing of the
registry. ``ganforge eval --metrics``, ``eval.metrics`` (checked by name), their help texts and
:data:`DEFAULT_METRICS` all come from the registry.

=========  ==============================  ===========================================
metric     keys                            paper
=========  ==============================  ===========================================
``fid``    ``fid``                         Heusel et al. 2017
``kid``    ``kid_mean``, ``kid_std``       Bińkowski et al. 2018
``pr``     ``precision``, ``recall``       Kynkäänniemi et al. 2019
``dc``     ``density``, ``coverage``       Naeem et al. 2020
``hf``     ``hf_ratio``                    high-frequency artefact ratio on the images
                                           themselves, not features (1 = like the real
                                           data; :mod:`ganforge.metrics.frequency`;
                                           Odena et al. 2016, Durall et al. 2020)
``is``     ``is_mean``, ``is_std``         Salimans et al. 2016 (needs fake class probs)
=========  ==============================  ===========================================

Adding a metric: its maths as a pure function in a module of this package, and one
``@metric(...)`` entry below; a closed-form test in tests/test_metrics.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ganforge.core.registry import Registry
from ganforge.metrics.fid import frechet_distance
from ganforge.metrics.frequency import hf_ratio
from ganforge.metrics.inception_score import inception_score
from ganforge.metrics.kid import kernel_inception_distance
from ganforge.metrics.prdc import prdc
from ganforge.metrics.stats import FeatureStats

ArrayLike = Union[np.ndarray, torch.Tensor]

#: metric name -> :class:`Metric` (``ganforge list`` shows them)
METRICS = Registry("metric")


@dataclass
class MetricInputs:
    """What :func:`compute_metrics` hands every metric: real and fake features (N, D) (real ones
    may be None when ``real_stats``, cached statistics, stand in for FID), the fake images'
    class probabilities or logits (IS), each side's (C,) high-frequency share of the images
    (hf), and the knobs: ``seed`` (KID subsets), ``kid_subsets``, ``kid_subset_size``,
    ``prdc_k``, ``is_splits``, ``chunk_size``. Results two metrics share (precision/recall and
    density/coverage come from one k-NN pass) are computed once (:meth:`shared`)."""
    real_feats: Optional[ArrayLike]
    fake_feats: ArrayLike
    real_stats: Union[FeatureStats, Tuple[ArrayLike, ArrayLike], None] = None
    fake_probs: Optional[ArrayLike] = None
    fake_logits: Optional[ArrayLike] = None
    real_hf: Optional[ArrayLike] = None
    fake_hf: Optional[ArrayLike] = None
    seed: int = 0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prdc_k: int = 3
    is_splits: int = 10
    chunk_size: int = 1024
    _shared: Dict[str, Any] = field(default_factory=dict, repr=False)

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per :func:`compute_metrics` call under ``key``."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def need_real(self, metric: str) -> ArrayLike:
        if self.real_feats is None:
            raise ValueError(f"metric '{metric}' needs real_feats")
        return self.real_feats


@dataclass(frozen=True)
class Metric:
    """A registered metric: the ``keys`` it adds to the scores, whether it is in the
    ``default`` list, and ``compute(inputs) -> {key: float}``."""
    keys: Tuple[str, ...]
    default: bool
    compute: Callable[[MetricInputs], Dict[str, float]]


def metric(name: str, keys: Tuple[str, ...], help: str, default: bool = True):
    """Register ``fn(inputs: MetricInputs) -> {key: float}`` as metric ``name``."""
    def deco(fn: Callable[[MetricInputs], Dict[str, float]]):
        METRICS.register(name, help=help)(Metric(tuple(keys), default, fn))
        return fn
    return deco


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


# --------------------------------------------------------------------------- the metrics
@metric("fid", ("fid",), "Fréchet distance of the feature Gaussians (Heusel et al. 2017)")
def _fid(i: MetricInputs) -> Dict[str, float]:
    if i.real_stats is None and i.real_feats is None:
        raise ValueError("metric 'fid' needs real_feats (or real_stats)")
    mu1, s1 = _stats_of(i.real_stats if i.real_stats is not None else i.real_feats, "real")
    mu2, s2 = _stats_of(i.fake_feats, "fake")
    return {"fid": frechet_distance(mu1, s1, mu2, s2)}


@metric("kid", ("kid_mean", "kid_std"), "kernel distance, unbiased (Bińkowski et al. 2018)")
def _kid(i: MetricInputs) -> Dict[str, float]:
    mean, std = kernel_inception_distance(i.need_real("kid"), i.fake_feats, n_subsets=i.kid_subsets,
                                          subset_size=i.kid_subset_size, seed=i.seed)
    return {"kid_mean": mean, "kid_std": std}


def _prdc(i: MetricInputs, name: str) -> Dict[str, float]:
    real = i.need_real(name)
    return i.shared("prdc", lambda: prdc(real, i.fake_feats, k=i.prdc_k, chunk_size=i.chunk_size))


@metric("pr", ("precision", "recall"), "k-NN precision and recall (Kynkäänniemi et al. 2019)")
def _pr(i: MetricInputs) -> Dict[str, float]:
    r = _prdc(i, "pr")
    return {"precision": r["precision"], "recall": r["recall"]}


@metric("dc", ("density", "coverage"), "k-NN density and coverage (Naeem et al. 2020)")
def _dc(i: MetricInputs) -> Dict[str, float]:
    r = _prdc(i, "dc")
    return {"density": r["density"], "coverage": r["coverage"]}


@metric("hf", ("hf_ratio",), "high-frequency artefact ratio of the images (1 = like the real "
                             "data; Durall et al. 2020)")
def _hf(i: MetricInputs) -> Dict[str, float]:
    if i.real_hf is None or i.fake_hf is None:
        raise ValueError("metric 'hf' needs real_hf and fake_hf (spectral_share of each side's "
                         "images)")
    return {"hf_ratio": hf_ratio(torch.as_tensor(i.real_hf), torch.as_tensor(i.fake_hf))}


@metric("is", ("is_mean", "is_std"), "Inception Score (Salimans et al. 2016); needs an "
                                     "extractor with class logits", default=False)
def _is(i: MetricInputs) -> Dict[str, float]:
    # Fewer samples than splits (tiny smoke runs): one sample per split at most.
    if i.fake_logits is not None:
        mean, std = inception_score(i.fake_logits, min(i.is_splits, len(i.fake_logits)),
                                    from_logits=True)
    elif i.fake_probs is not None:
        mean, std = inception_score(i.fake_probs, min(i.is_splits, len(i.fake_probs)))
    else:
        raise ValueError("metric 'is' needs fake_probs or fake_logits "
                         "(extract_features(..., with_logits=True))")
    return {"is_mean": mean, "is_std": std}


#: the metrics scored when none are named, in registration order: every one but ``is``. ``hf``
#: costs one FFT per image (well under a second for 10,000 64 px images) and sees what the
#: feature-space metrics miss (checkerboard texture).
DEFAULT_METRICS: Tuple[str, ...] = tuple(n for n in METRICS.names(sort=False)
                                         if METRICS.get(n).default)


#: FID and KID are usually reported from 10,000 (or 50,000) samples; fewer bias FID upward
#: (Chong & Forsyth 2020) and the numbers stop being comparable with published ones.
REFERENCE_N = 10_000
#: below this many samples per side, k-NN precision/recall/density/coverage (k = 3) move by
#: several points between draws (Kynkäänniemi et al. 2019 use 50,000; Naeem et al. 10,000).
PRDC_MIN_N = 1_000


class Scores(dict):
    """``{metric key: float}`` (what :func:`compute_metrics` returns) that also carries
    ``caveats``: one sentence per estimate that is unreliable at these sample counts
    (:func:`caveats`), for the CLI to warn and the JSON to keep."""

    def __init__(self, values: Dict[str, float], caveats: Sequence[str] = ()):
        super().__init__(values)
        self.caveats: List[str] = list(caveats)


def caveats(metrics: Sequence[str], n_real: int, n_fake: int, dim: int, *,
            kid_subsets: int = 100, kid_subset_size: int = 1000) -> List[str]:
    """Sentences naming each requested estimate that is unreliable at these counts: FID/KID
    from fewer samples than feature dimensions (a rank-deficient covariance) or than
    :data:`REFERENCE_N`; a KID whose subsets are all the same set or one subset (its std says
    nothing); precision/recall/density/coverage below :data:`PRDC_MIN_N` per side. Empty
    when every estimate is in its usual range. ``n_real``/``n_fake``: samples per side;
    ``dim``: feature dimensions."""
    out: List[str] = []
    n = min(n_real, n_fake)
    for name in ("fid", "kid"):
        if name not in metrics:
            continue
        if n < dim and name == "fid":
            out.append(f"fid: {n} samples < {dim} feature dimensions, so the covariance is "
                       f"rank-deficient and the estimate unreliable")
        elif n < dim:
            out.append(f"kid: {n} samples < {dim} feature dimensions; KID stays unbiased but "
                       f"varies widely between draws at this n")
        elif n < REFERENCE_N and name == "fid":
            out.append(f"fid: {n} samples < the usual {REFERENCE_N:,}; FID is biased upward "
                       f"at small n, so compare only with FIDs of the same n")
    if "kid" in metrics:
        m = min(kid_subset_size, n_real, n_fake)
        if kid_subsets < 2 or (m == n_real and m == n_fake):
            out.append(f"kid: every subset is the same {m} samples, so kid_std is 0 by "
                       f"construction and says nothing about the estimate's spread")
    for name, keys in (("pr", "precision/recall"), ("dc", "density/coverage")):
        if name in metrics and n < PRDC_MIN_N:
            out.append(f"{name}: {keys} from {n} samples < {PRDC_MIN_N:,} per side move by "
                       f"several points between draws")
    return out


def metric_keys() -> Tuple[str, ...]:
    """Every key a metric may add to the scores (``fid``, ``kid_mean``, ...)."""
    return tuple(k for n in METRICS.names(sort=False) for k in METRICS.get(n).keys)


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
    """Scores of ``fake_feats`` against ``real_feats`` as a flat ``{key: float}`` dict, in the
    registry's order.

    ``metrics``: names of :data:`METRICS`; default :data:`DEFAULT_METRICS` (``hf`` only
    when ``real_hf`` and ``fake_hf`` are given) plus ``is`` when ``fake_probs`` (class
    probabilities) or ``fake_logits`` are given. ``real_hf``/``fake_hf``: each side's (C,)
    high-frequency share of the images (:func:`ganforge.metrics.frequency.spectral_share`),
    for ``hf``. ``real_stats`` (cached reference statistics) replaces ``real_feats`` for FID;
    KID/PR/DC need the real features themselves. ``seed`` fixes the KID subsets; everything
    else is deterministic. Raises ValueError for an unknown metric or a missing input."""
    if metrics is None:
        metrics = tuple(m for m in DEFAULT_METRICS if m != "hf" or
                        (real_hf is not None and fake_hf is not None))
        metrics += (("is",) if fake_probs is not None or fake_logits is not None else ())
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS.names(sort=False))}")
    inputs = MetricInputs(real_feats, fake_feats, real_stats=real_stats, fake_probs=fake_probs,
                          fake_logits=fake_logits, real_hf=real_hf, fake_hf=fake_hf, seed=seed,
                          kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                          prdc_k=prdc_k, is_splits=is_splits, chunk_size=chunk_size)
    out: Dict[str, float] = {}
    for name in METRICS.names(sort=False):
        if name in metrics:
            out.update(METRICS.get(name).compute(inputs))
    return out
