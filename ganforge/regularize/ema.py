"""Exponential moving average of the generator's weights (Karras et al. 2018, "Progressive
Growing of GANs"; Yazıcı et al. 2019, "The Unusual Effectiveness of Averaging in GAN
Training"). Samples and metrics use the averaged copy (the EMA generator, stored as
``<name>_ema`` beside each generator a task declares), which is smoother and usually
scores better than the raw G, whose weights oscillate with the adversarial game.

The decay is given as a *half-life in images* (StyleGAN2-ADA's ``ema_kimg``): after G has seen
``half_life_images`` more images, an old weight's share of the average has halved. Per update
of a batch of B images,

    beta = 0.5 ** (B / half_life)          dst <- beta * dst + (1 - beta) * src

Why images and not steps: the same half-life then means the same averaging window in data seen
whatever the batch size, so changing the batch size (or the number of GPUs) needs no retuning.

Why a warm-up (StyleGAN2-ADA's ``ema_rampup``): the first weights are random and nearly useless,
and a long fixed half-life would keep them in the average for a long time. With ``warmup = w >
0`` the half-life is ``min(half_life_images, w * images_seen)``: it starts at 0 (the average is a
copy of G) and grows with training, so the average forgets fast early and settles later.

Buffers (BatchNorm running statistics, counters) are copied from G rather than averaged, as in
StyleGAN: they are statistics of the current weights, and averaging them would pair the averaged
weights with statistics of no network in particular. But G's statistics do not fit the averaged
weights either: measured on the DCGAN preset (benchmarks/results/toolbox.md), the average with G's
copied statistics scored FID 37.5 against the raw G's 35.7, and 35.9 once its own statistics
were recomputed. So before its weights are used (samples, evaluation, checkpoints) a
generator average with BatchNorm gets its own statistics: :func:`recalibrate_batchnorm` runs it
in training mode on a fixed set of noise batches and stores the exact (cumulative) means and
variances, the "standing statistics" of Brock et al. 2019 (BigGAN, appendix C.1).
"""
from __future__ import annotations

import copy
from typing import List

import torch
from torch import nn

from ganforge.core.distributed import unwrap


def make_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` (unwrapped first) to hold its EMA.

    ``requires_grad_(False)`` so no optimizer or backward touches it. Its train/eval mode is
    left as the source's: whoever renders with it (the task's ``render``) switches to eval and
    back itself, exactly as for G.
    """
    dst = copy.deepcopy(unwrap(module))
    dst.requires_grad_(False)
    return dst


class EMA:
    """Update rule for the EMA generator (see the module docstring for the why).

    ``half_life_images``: images for an old weight's share to halve (StyleGAN2-ADA uses
    ``10_000 * batch / 32``; 0 makes the average a plain copy of G). ``warmup``: the half-life is
    capped at ``warmup * images_seen`` (0 turns the ramp-up off).
    """

    def __init__(self, half_life_images: float, warmup: float = 0.05):
        if not half_life_images >= 0:
            raise ValueError(f"EMA half_life_images={half_life_images!r}: must be >= 0 (images "
                             f"for the average to forget half of an old weight)")
        if not warmup >= 0:
            raise ValueError(f"EMA warmup={warmup!r}: must be >= 0 (0 turns the ramp-up off)")
        self.half_life_images = float(half_life_images)
        self.warmup = float(warmup)

    def __repr__(self) -> str:
        return f"EMA(half_life_images={self.half_life_images:g}, warmup={self.warmup:g})"

    def beta(self, batch_size: int, images_seen: float) -> float:
        """The weight kept by ``dst`` in an update of ``batch_size`` images, when G has seen
        ``images_seen`` images before it."""
        half_life = self.half_life_images
        if self.warmup > 0:
            half_life = min(half_life, images_seen * self.warmup)
        return 0.5 ** (batch_size / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, src: nn.Module, dst: nn.Module, batch_size: int, images_seen: float) -> float:
        """``dst <- beta * dst + (1 - beta) * src`` for parameters, ``dst <- src`` for buffers.

        ``src`` and ``dst`` may be wrapped (DDP, ``torch.compile``); they must have the same
        parameter and buffer names. Returns the beta used (for logging)."""
        beta = self.beta(batch_size, images_seen)
        src, dst = unwrap(src), unwrap(dst)
        sp, dp = dict(src.named_parameters()), dict(dst.named_parameters())
        sb, db = dict(src.named_buffers()), dict(dst.named_buffers())
        if sp.keys() != dp.keys() or sb.keys() != db.keys():
            odd = sorted((set(sp) ^ set(dp)) | (set(sb) ^ set(db)))
            raise ValueError(f"EMA.update: the source and the average have different parameters "
                             f"or buffers ({', '.join(odd[:5])}{' ...' if len(odd) > 5 else ''}); "
                             f"build the average with make_copy(G)")
        fast_d: List[torch.Tensor] = []
        fast_s: List[torch.Tensor] = []
        for name, d in dp.items():
            s = sp[name]
            if d.is_floating_point() and s.dtype == d.dtype and s.device == d.device:
                fast_d.append(d)
                fast_s.append(s)
            elif d.is_floating_point():
                d.lerp_(s.to(device=d.device, dtype=d.dtype), 1.0 - beta)
            else:
                d.copy_(s)
        if fast_d:
            # One fused kernel per dtype/device group instead of one launch per tensor.
            torch._foreach_lerp_(fast_d, fast_s, 1.0 - beta)
        for name, d in db.items():
            d.copy_(sb[name])
        return beta


@torch.no_grad()
def recalibrate_batchnorm(G: nn.Module, n: int = 2048, batch_size: int = 256, seed: int = 0) -> bool:
    """Recompute the BatchNorm statistics of the noise-to-image generator ``G`` (it has a
    ``z_dim``; conditional generators use their default class-balanced labels) from ``n``
    samples of fixed noise, in place. Returns False (and does nothing) when ``G`` has no
    BatchNorm. Deterministic: a function of the weights and ``seed`` only."""
    G = unwrap(G)
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not hasattr(G, "z_dim"):
        return False
    saved = [(m, m.momentum) for m in norms]
    was = G.training
    dev = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None            # cumulative average: the exact mean over all batches
        G.train()
        for i in range(0, n, batch_size):
            G(torch.randn(min(batch_size, n - i), G.z_dim, generator=gen).to(dev))
    finally:
        for m, mom in saved:
            m.momentum = mom
        G.train(was)
    return True
