"""Streaming first and second moments of feature vectors (the "statistics" stage).

FID needs only the mean and covariance of each feature set. ``FeatureStats`` accumulates them
batch by batch in float64, so 50k Inception features (50k x 2048) never have to sit in one
matrix, and the result does not depend on how the features were batched.

Each batch is reduced to (count, mean, centred scatter matrix) and merged with the running
totals by the pairwise update of Chan, Golub & LeVeque (1979):

    delta = mean_b - mean_a
    M2    = M2_a + M2_b + outer(delta, delta) * n_a * n_b / (n_a + n_b)

Centring each batch before forming X^T X avoids the cancellation of the naive
``E[x x^T] - mu mu^T`` formula when the mean is large compared with the spread.

Saved files are ``.npz`` with the keys ``mu`` and ``sigma`` that pytorch-fid and most
published FID reference statistics use, plus ``n`` and free-form string metadata (feature
extractor name, weights hash) so a cache can refuse statistics made by another network.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def require_finite(t: torch.Tensor, what: str, hint: str = "") -> torch.Tensor:
    """``t`` itself; raises a ValueError naming ``what``, the count of NaN/inf values and
    ``hint`` when a floating tensor holds any (a score of them would be a silent NaN)."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} contain {int((~torch.isfinite(t)).sum())} NaN or inf "
                         f"values{hint}")
    return t


def as_float64(x: ArrayLike, what: str = "features") -> torch.Tensor:
    """``x`` as a 2-D float64 CPU tensor; raises a ValueError naming ``what`` when it is not
    2-D numeric, or holds NaN or inf (a score of them would be a silent NaN)."""
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    t = t.detach()
    if t.dim() != 2:
        raise ValueError(f"{what} must be a 2-D (N, D) array, got shape {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"{what} must be numeric, got dtype {t.dtype}")
    return require_finite(t.to(device="cpu", dtype=torch.float64), what)


class FeatureStats:
    """Running count, mean and covariance of D-dimensional feature vectors (float64).

    >>> s = FeatureStats()
    >>> for batch in batches: s.update(batch)      # doctest: +SKIP
    >>> mu, sigma = s.mean, s.cov                    # doctest: +SKIP
    """

    def __init__(self, dim: Optional[int] = None, meta: Optional[Dict[str, str]] = None):
        self.dim = dim
        self.n = 0
        self._mean: Optional[np.ndarray] = None
        self._m2: Optional[np.ndarray] = None  # centred scatter matrix sum (x - mu)(x - mu)^T
        self.meta: Dict[str, str] = dict(meta or {})
        self._frozen = False  # loaded without a sample count: usable, but not extendable

    # -- accumulation ------------------------------------------------------------------------
    def update(self, feats: ArrayLike) -> "FeatureStats":
        """Add a batch of features of shape (B, D). Returns self (so calls can be chained)."""
        self._check_extendable()
        x = as_float64(feats)
        b, d = x.shape
        if b == 0:
            return self
        if self.dim is None:
            self.dim = d
        elif d != self.dim:
            raise ValueError(f"feature batch has dimension {d}, but these statistics hold "
                             f"dimension {self.dim}; were two different extractors mixed?")
        if not torch.isfinite(x).all():
            raise ValueError("feature batch contains NaN or inf; the feature extractor (or the "
                             "images fed to it) produced non-finite values")
        mean_b = x.mean(0)
        xc = x - mean_b
        m2_b = (xc.T @ xc).numpy()
        mean_b = mean_b.numpy()
        if self.n == 0:
            self._mean, self._m2, self.n = mean_b, m2_b, b
            return self
        n_a, n = self.n, self.n + b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (b / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (n_a * b / n)
        self.n = n
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Fold another accumulator into this one (e.g. statistics from several workers)."""
        self._check_extendable()
        other._check_extendable()
        if other.n == 0:
            return self
        if self.n == 0:
            self.dim, self.n = other.dim, other.n
            self._mean, self._m2 = other._mean.copy(), other._m2.copy()
            return self
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        n_a, n_b = self.n, other.n
        n = n_a + n_b
        delta = other._mean - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + other._m2 + np.outer(delta, delta) * (n_a * n_b / n)
        self.n = n
        return self

    @classmethod
    def from_features(cls, feats: ArrayLike, batch_size: int = 4096,
                      meta: Optional[Dict[str, str]] = None) -> "FeatureStats":
        """Statistics of an in-memory (N, D) feature matrix, accumulated in row blocks."""
        x = torch.as_tensor(feats) if not isinstance(feats, torch.Tensor) else feats
        if x.dim() != 2:
            raise ValueError(f"features must be a 2-D (N, D) array, got shape {tuple(x.shape)}")
        s = cls(meta=meta)
        for i in range(0, x.shape[0], batch_size):
            s.update(x[i:i + batch_size])
        return s

    def _check_extendable(self) -> None:
        if self._frozen:
            raise ValueError("these statistics were loaded from a file without a sample count "
                             "('n'); they can be used for FID but not updated or merged")

    # -- results -----------------------------------------------------------------------------
    def _require(self, need: int) -> None:
        if self.n < need:
            raise ValueError(f"statistics need at least {need} feature vector(s), have {self.n}")

    @property
    def mean(self) -> np.ndarray:
        """Mean feature vector, shape (D,), float64."""
        self._require(1)
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased sample covariance (divides by n - 1, as numpy.cov and pytorch-fid do)."""
        self._require(2)
        c = self._m2 / (self.n - 1)
        return (c + c.T) / 2  # exact symmetry; merges can leave 1-ulp asymmetry

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write ``mu``, ``sigma``, ``n`` and metadata to an ``.npz`` file (atomic replace)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: Dict[str, Any] = {"mu": self.mean, "sigma": self.cov, "n": np.int64(self.n)}
        for k, v in self.meta.items():
            arrays[f"meta_{k}"] = np.array(str(v))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "FeatureStats":
        """Read a file written by :meth:`save`, or any ``.npz`` with ``mu`` and ``sigma``.

        Files without ``n`` (e.g. pytorch-fid reference statistics) load read-only:
        ``mean``/``cov`` work, but they cannot be merged or updated.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature statistics file not found: {path}")
        with np.load(path, allow_pickle=False) as f:
            missing = {"mu", "sigma"} - set(f.files)
            if missing:
                raise ValueError(f"{path} is not a statistics file: missing {sorted(missing)} "
                                 f"(has {sorted(f.files)})")
            mu = np.asarray(f["mu"], dtype=np.float64)
            sigma = np.asarray(f["sigma"], dtype=np.float64)
            n = int(f["n"]) if "n" in f.files else None
            meta = {k[5:]: str(f[k]) for k in f.files if k.startswith("meta_")}
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"{path}: mu has shape {mu.shape} and sigma {sigma.shape}; "
                             f"expected (D,) and (D, D)")
        s = cls(dim=mu.shape[0], meta=meta)
        s._mean = mu
        if n is None:
            # Unknown count: store sigma as the scatter matrix of a notional n = 2 so that
            # ``cov`` returns it unchanged, and refuse updates (they would be mis-weighted).
            s.n, s._m2, s._frozen = 2, sigma.copy(), True
        else:
            s.n = n
            s._m2 = sigma * max(n - 1, 1)
        return s

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim}, meta={self.meta})"
