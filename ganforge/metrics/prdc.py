"""Precision / recall and density / coverage on k-NN manifold estimates.

Precision and recall: Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
Assessing Generative Models", eq. (1)-(3). Each sample set's manifold is the union of balls
around its points with radius = distance to the k-th nearest neighbour within the same set
(k = 3 by default, the paper's choice):

    precision = 1/M sum_j 1[fake_j inside the real manifold]
    recall    = 1/N sum_i 1[real_i inside the fake manifold]

Density and coverage: Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
Generative Models", eq. (3)-(4). With real k-NN radii r_i (k = 5 in the paper; we default to the
same k as precision/recall, 3, so all four share one pass, and accept any k):

    density  = 1/(k M) sum_j sum_i 1[||fake_j - real_i|| < r_i]
    coverage = 1/N sum_i 1[min_j ||real_i - fake_j|| < r_i]

Precision and recall use closed balls (``<=``), as Kynkäänniemi et al.'s code does; density and
coverage open ones (``<``), as Naeem et al.'s code (clovaai/generative-evaluation-prdc) does, so
that a set scored against itself has density exactly 1 (with ``<=`` each point's k-th
neighbour, on the boundary, would count too: (k+1)/k). Each test has a rounding allowance so
that exact ties (shared points) are decided the same way however the distances were blocked:
a tie is inside a closed ball and outside an open one. So a real point with k or more exact
duplicates (radius 0) is never covered, and a sample on it adds nothing to density, as in the
authors' code.

Memory: distances are computed in row blocks of ``chunk_size`` x N (squared Euclidean,
||a||^2 + ||b||^2 - 2 a.b, in float64 by default), so the N x M matrix never exists at once.
The k-NN radii come from ``topk`` on each block; the cross pass keeps per-real running
"min distance to any fake" and "inside some fake ball" vectors, and per-fake counts.
"""
from __future__ import annotations

from typing import Dict, Iterator, Optional, Tuple, Union

import numpy as np
import torch

from ganforge.metrics.stats import require_finite

ArrayLike = Union[np.ndarray, torch.Tensor]


def _prep(x: ArrayLike, what: str, dtype: torch.dtype,
          device: Optional[torch.device]) -> torch.Tensor:
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x.detach()
    if t.dim() != 2:
        raise ValueError(f"{what} must be a 2-D (N, D) array, got shape {tuple(t.shape)}")
    require_finite(t, what)
    return t.to(device=device if device is not None else t.device, dtype=dtype)


def _sqdist_blocks(a: torch.Tensor, b: torch.Tensor, chunk_size: int
                   ) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (row offset, squared distances of a[offset:offset+chunk] to all of b, and each
    distance's rounding allowance (see :func:`_rounding_slack`)): a ball-membership test
    ``d - s <= r`` counts a tie inside, ``d + s < r`` outside.
    """
    b_sq = (b * b).sum(1)
    c = _rounding_slack(a.shape[1], a.dtype)
    for i in range(0, a.shape[0], chunk_size):
        blk = a[i:i + chunk_size]
        blk_sq = (blk * blk).sum(1, keepdim=True)
        d = blk_sq + b_sq[None, :] - 2.0 * (blk @ b.T)
        d.clamp_min_(0.0)  # rounding can make a zero distance slightly negative
        yield i, d, c * (blk_sq + b_sq[None, :])


def _rounding_slack(dim: int, dtype: torch.dtype) -> float:
    """Relative rounding allowance for ||a||^2 + ||b||^2 - 2 a.b.

    The same pair's distance, computed in two differently shaped matrix products (the radius
    pass and the cross pass), can differ in the last bits. Ties are the common case, not a
    corner case: when fake and real share points (e.g. real-vs-real sanity checks), each
    point's k-th neighbour lies exactly on a ball boundary. Membership therefore tests
    d^2 - c (||a||^2 + ||b||^2) <= r^2 with c = 16 sqrt(D) eps, a few times the typical
    dot-product rounding error; about 1e-13 relative in float64 at D = 2048 (data are
    centred first to keep the norms small), far below any meaningful distance difference.
    """
    return 16.0 * dim ** 0.5 * torch.finfo(dtype).eps


def knn_radii(x: ArrayLike, k: int = 3, chunk_size: int = 1024, *,
              dtype: torch.dtype = torch.float64, device: Optional[torch.device] = None
              ) -> torch.Tensor:
    """Squared distance from each row of ``x`` to its k-th nearest *other* row.

    The point itself is at distance 0 and is always among the k + 1 smallest, so the k-th
    neighbour is the (k + 1)-th smallest distance; a duplicate of a point counts as a neighbour.
    """
    x = _prep(x, "features", dtype, device)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be between 1 and n - 1 = {x.shape[0] - 1}, got {k}")
    out = torch.empty(x.shape[0], dtype=dtype, device=x.device)
    for i, d, _ in _sqdist_blocks(x, x, chunk_size):
        out[i:i + d.shape[0]] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def prdc(real: ArrayLike, fake: ArrayLike, k: int = 3, chunk_size: int = 1024, *,
         dtype: torch.dtype = torch.float64, device: Optional[torch.device] = None
         ) -> Dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` features.

    Returns ``{"precision", "recall", "density", "coverage"}``. Peak memory is about
    ``chunk_size * max(N, M)`` distances. ``device`` lets the distance blocks run on a GPU.
    """
    x = _prep(real, "real features", dtype, device)
    y = _prep(fake, "fake features", dtype, x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real features have dimension {x.shape[1]} but fake features "
                         f"{y.shape[1]}; they must come from the same extractor")
    # Distances are translation invariant; centring on the real mean shrinks the norms in
    # ||a||^2 + ||b||^2 - 2 a.b and with them its cancellation error.
    centre = x.mean(0, keepdim=True)
    x, y = x - centre, y - centre
    r_real = knn_radii(x, k, chunk_size, dtype=dtype)   # (N,) squared radii
    r_fake = knn_radii(y, k, chunk_size, dtype=dtype)   # (M,)

    n, m = x.shape[0], y.shape[0]
    fake_in_real = torch.zeros(m, dtype=torch.bool, device=x.device)   # precision
    fake_count = torch.zeros(m, dtype=dtype, device=x.device)          # density
    real_in_fake = torch.zeros(n, dtype=torch.bool, device=x.device)   # recall
    real_covered = torch.zeros(n, dtype=torch.bool, device=x.device)   # coverage
    for j, d, s in _sqdist_blocks(y, x, chunk_size):  # (fake block, all reals)
        fake_in_real[j:j + d.shape[0]] = (d - s <= r_real[None, :]).any(1)
        fake_count[j:j + d.shape[0]] = (d + s < r_real[None, :]).sum(1).to(dtype)
        real_in_fake |= (d - s <= r_fake[j:j + d.shape[0], None]).any(0)
        real_covered |= (d + s < r_real[None, :]).any(0)
    return {
        "precision": float(fake_in_real.to(dtype).mean()),
        "recall": float(real_in_fake.to(dtype).mean()),
        "density": float(fake_count.sum() / (k * m)),
        "coverage": float(real_covered.to(dtype).mean()),
    }
