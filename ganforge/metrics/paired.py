"""Scores of a translation against its known targets (pix2pix): L1, PSNR and SSIM.

PSNR and SSIM come from scikit-image (``skimage.metrics``: Wang, Bovik, Sheikh & Simoncelli
2004 for SSIM, with its default 7x7 uniform window), a well-kept library, not our own; the
``ganforge[paired]`` extra installs it. Images are compared in [0, 1] (data_range 1), per
image, then averaged; colour images with ``channel_axis``.

- ``l1``: mean absolute error per pixel in [-1, 1] units (what pix2pix's L1 term trains);
- ``psnr``: peak signal-to-noise ratio in dB (higher is better; identical images: inf, left
  out of the mean and counted in ``psnr_inf``);
- ``ssim``: structural similarity in [-1, 1] (1: identical).
"""
from __future__ import annotations

import math
from typing import Dict

import numpy as np
import torch

from ganforge.core.errors import EvalError


def _skimage_metrics():
    try:
        from skimage import metrics
    except ImportError:
        raise EvalError("PSNR and SSIM need scikit-image: pip install 'ganforge[paired]'") from None
    return metrics


def paired_scores(out: torch.Tensor, target: torch.Tensor) -> Dict[str, float]:
    """``{"l1", "psnr", "psnr_inf", "ssim"}`` of float (N, C, H, W) images in [-1, 1]
    (``out``) against their targets (same shape). Raises :class:`EvalError` for shapes that
    differ, no images, or a missing scikit-image."""
    if out.shape != target.shape or out.dim() != 4 or out.shape[0] == 0:
        raise EvalError(f"paired scores: outputs {tuple(out.shape)} and targets "
                        f"{tuple(target.shape)} must be the same non-empty (N, C, H, W) shape")
    m = _skimage_metrics()
    a = ((out.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy().astype(np.float64)
    b = ((target.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy().astype(np.float64)
    psnr, inf, ssim = [], 0, []
    side = a.shape[-1]
    win = min(7, side if side % 2 else side - 1)           # SSIM's window fits small images
    for x, y in zip(a, b):
        p = m.peak_signal_noise_ratio(y, x, data_range=1.0)
        if math.isinf(p):
            inf += 1
        else:
            psnr.append(p)
        ssim.append(m.structural_similarity(y, x, data_range=1.0, channel_axis=0, win_size=win))
    return {"l1": float(np.abs(a - b).mean() * 2), "psnr": float(np.mean(psnr)) if psnr else math.inf,
            "psnr_inf": float(inf), "ssim": float(np.mean(ssim))}
