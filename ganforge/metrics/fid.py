"""Fréchet distance between two Gaussians (the score behind FID).

Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", eq. (6) (the Fréchet / 2-Wasserstein distance of Dowson & Landau 1982):

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

Only the *trace* of (S1 S2)^(1/2) is needed. S1 S2 is not symmetric, which is why the reference
implementations call ``scipy.linalg.sqrtm`` (a Schur decomposition, slow for D = 2048, and prone
to complex output and to failing on singular covariances). But S1 S2 is similar to the
symmetric positive semi-definite matrix

    M = S1^(1/2) S2 S1^(1/2)          (S1 S2 = S1^(1/2) M S1^(-1/2) when S1 is invertible,
                                         and by continuity in general)

so Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(M)). Two symmetric eigen-decompositions (``eigh``)
give it in float64, with real output by construction: what would be an "imaginary residue" in
the sqrtm route shows up here as slightly negative eigenvalues of M. Tiny ones are rounding and
are clipped to zero; large ones mean an input was not a covariance matrix and raise.
Near-singular covariances (fewer samples than dimensions) are handled without the eps*I
fallback the sqrtm route needs, because eigh never inverts anything.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

from ganforge.metrics.stats import FeatureStats

ArrayLike = Union[np.ndarray, torch.Tensor]

# Relative size (to the largest eigenvalue) below which a negative eigenvalue is rounding noise.
# Loose enough for reference statistics that were stored in float32 (relative rounding ~1e-7,
# amplified by the decomposition), tight enough to catch a matrix that is not a covariance.
_NEG_EIG_RTOL = 1e-5


def _as64(x: ArrayLike, what: str, ndim: int) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = a.astype(np.float64, copy=False)
    if a.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimension(s), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or inf")
    return a


def _sym_eig(s: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a covariance matrix, checking symmetry and PSD-ness."""
    scale = max(float(np.abs(s).max()), np.finfo(np.float64).tiny)
    if np.abs(s - s.T).max() > 1e-8 * scale:
        raise ValueError(f"{what} is not symmetric (max |S - S^T| = {np.abs(s - s.T).max():.3g}); "
                         f"pass a covariance matrix")
    w, v = np.linalg.eigh((s + s.T) / 2)
    if w.size and w[0] < -_NEG_EIG_RTOL * max(abs(w[-1]), np.finfo(np.float64).tiny):
        raise ValueError(f"{what} is not positive semi-definite (smallest eigenvalue {w[0]:.3g}, "
                         f"largest {w[-1]:.3g}); pass a covariance matrix")
    return np.clip(w, 0.0, None), v


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((sigma1 @ sigma2)^(1/2)) for symmetric PSD inputs, via eigh (see module docstring)."""
    w1, v1 = _sym_eig(sigma1, "sigma1")
    sqrt_s1 = (v1 * np.sqrt(w1)) @ v1.T
    m = sqrt_s1 @ sigma2 @ sqrt_s1
    m = (m + m.T) / 2  # symmetric in exact arithmetic; remove rounding asymmetry before eigh
    lam = np.linalg.eigvalsh(m)
    top = max(abs(lam[-1]), np.finfo(np.float64).tiny) if lam.size else 1.0
    if lam.size and lam[0] < -_NEG_EIG_RTOL * top:
        # Equivalent of a large imaginary component in sqrtm(S1 S2): not rounding any more.
        raise ValueError(f"sqrt(sigma1) sigma2 sqrt(sigma1) has a large negative eigenvalue "
                         f"({lam[0]:.3g} vs largest {lam[-1]:.3g}); sigma2 is not a valid "
                         f"covariance matrix")
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    This is FID when the moments are those of Inception pool3 features of real and
    generated images. Symmetric in its two arguments, zero for identical inputs (up to
    rounding, about 1e-10 relative to Tr(sigma)), never negative (clamped at 0).
    """
    mu1 = _as64(mu1, "mu1", 1)
    mu2 = _as64(mu2, "mu2", 1)
    sigma1 = _as64(sigma1, "sigma1", 2)
    sigma2 = _as64(sigma2, "sigma2", 2)
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} has shape {s.shape}, expected ({d}, {d}) to match mu1")
    if mu2.shape != (d,):
        raise ValueError(f"mu1 has shape {mu1.shape} but mu2 has shape {mu2.shape}; "
                         f"were the statistics made with different feature extractors?")
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    fid = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    # Rounding can push an exact 0 slightly negative; a distance cannot be.
    return max(fid, 0.0)


def fid_from_features(feats1: ArrayLike, feats2: ArrayLike) -> float:
    """FID between two (N, D) feature matrices (moments accumulated in float64)."""

    s1 = FeatureStats.from_features(feats1)
    s2 = FeatureStats.from_features(feats2)
    return frechet_distance(s1.mean, s1.cov, s2.mean, s2.cov)
