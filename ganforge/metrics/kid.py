"""Kernel Inception Distance (KID).

Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs", section 4: the squared
maximum mean discrepancy between feature distributions under the cubic polynomial kernel

    k(x, y) = (x . y / d + 1)^3            (d = feature dimension)

estimated with the *unbiased* U-statistic (Gretton et al. 2012, eq. 3): for samples X, Y of
size m,

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
              - 2/m^2 sum_{i, j} k(x_i, y_j)

Unlike FID it is unbiased in the number of samples, so values from different sample sizes are
comparable, and it can be (slightly) negative when the distributions match. As in the paper,
it is averaged over ``n_subsets`` random subsets of ``subset_size`` points (drawn without
replacement within a subset, independently across subsets) and reported as mean and standard
deviation over subsets (population std, ddof = 0, as torch-fidelity reports it).
"""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch

from ganforge.metrics.stats import as_float64

ArrayLike = Union[np.ndarray, torch.Tensor]


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3,
                      gamma: float | None = None, coef0: float = 1.0) -> torch.Tensor:
    """k(x, y) = (gamma * x.y + coef0)^degree with gamma = 1/d by default."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3) -> float:
    """Unbiased MMD^2 between equally sized samples ``x`` and ``y`` (float64 math)."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"mmd2_unbiased needs two samples of equal size >= 2, got "
                         f"{x.shape[0]} and {y.shape[0]}")
    kxx = polynomial_kernel(x, x, degree)
    kyy = polynomial_kernel(y, y, degree)
    kxy = polynomial_kernel(x, y, degree)
    # Off-diagonal sums: drop k(x_i, x_i), which would bias the within-sample terms upward.
    sxx = kxx.sum() - kxx.diagonal().sum()
    syy = kyy.sum() - kyy.diagonal().sum()
    return float(sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(real: ArrayLike, fake: ArrayLike, n_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0,
                              degree: int = 3) -> Tuple[float, float]:
    """KID between two (N, D) feature sets: ``(mean, std)`` of MMD^2_u over random subsets.

    ``subset_size`` is reduced to ``min(len(real), len(fake))`` when either set is smaller
    (the estimator stays unbiased; only its variance grows). ``seed`` fixes the subsets.
    """
    x = as_float64(real, "real features")
    y = as_float64(fake, "fake features")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real features have dimension {x.shape[1]} but fake features "
                         f"{y.shape[1]}; they must come from the same extractor")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 real and 2 fake samples, got {x.shape[0]} real "
                         f"and {y.shape[0]} fake")
    rng = np.random.default_rng(seed)
    vals = np.empty(n_subsets, dtype=np.float64)
    for i in range(n_subsets):
        ix = torch.from_numpy(rng.choice(x.shape[0], m, replace=False))
        iy = torch.from_numpy(rng.choice(y.shape[0], m, replace=False))
        vals[i] = mmd2_unbiased(x[ix], y[iy], degree)
    return float(vals.mean()), float(vals.std())
