"""Inception Score (IS) from class probabilities or logits.

Salimans et al. 2016, "Improved Techniques for Training GANs", section 4:

    IS = exp( E_x KL( p(y|x) || p(y) ) ),      p(y) = E_x p(y|x)

computed, as in the authors' code (openai/improved-gan, inception_score/model.py), on
``splits`` consecutive chunks of the samples, chunk i being rows ``i*n//splits`` to
``(i+1)*n//splits`` (the authors' boundaries; when n is not a multiple of ``splits`` the longer
chunks are the later ones), reported as mean and std (ddof = 0) of the per-chunk scores. No shuffling: chunk boundaries follow the input order, so pass samples in
random order (generated samples are).

Bounds that the tests check: 1 when every p(y|x) is the same distribution, ``n_classes`` when
each sample is confidently one class and the classes are used uniformly.

Which logits to feed: the authors' code takes the FID Inception's pool3 features times the
final layer's weight matrix *without its bias*, softmax over all 1008 outputs;
:meth:`ganforge.metrics.inception.FIDInceptionV3.logits` returns exactly that by default.
"""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch

from ganforge.metrics.stats import as_float64

ArrayLike = Union[np.ndarray, torch.Tensor]


def inception_score(probs_or_logits: ArrayLike, splits: int = 10, *,
                    from_logits: bool = False) -> Tuple[float, float]:
    """``(mean, std)`` of the Inception Score over ``splits`` chunks.

    ``probs_or_logits`` has shape (N, C): class probabilities (rows sum to 1) or, with
    ``from_logits=True``, unnormalised logits (converted with a float64 log-softmax, which is
    more accurate than taking the log of probabilities that underflowed to 0).
    """
    z = as_float64(probs_or_logits, "logits" if from_logits else "class probabilities")
    n = z.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of samples ({n}), "
                         f"got {splits}")
    if from_logits:
        logp = torch.log_softmax(z, dim=1)
    else:
        if (z < 0).any() or not torch.allclose(z.sum(1), torch.ones(n, dtype=z.dtype), atol=1e-3):
            raise ValueError("class probabilities must be non-negative with rows summing to 1; "
                             "pass from_logits=True for raw logits")
        z = z / z.sum(1, keepdim=True)
        logp = torch.log(z)  # log 0 = -inf is fine: it is only ever multiplied by p = 0
    p = logp.exp()
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        p_c, logp_c = p[lo:hi], logp[lo:hi]
        log_py = torch.log(p_c.mean(0, keepdim=True))
        # p * (log p - log p(y)), with 0 * log 0 = 0 (terms where p = 0 contribute nothing)
        kl = torch.where(p_c > 0, p_c * (logp_c - log_py), torch.zeros_like(p_c)).sum(1)
        scores.append(float(torch.exp(kl.mean())))
    s = np.asarray(scores)
    return float(s.mean()), float(s.std())
