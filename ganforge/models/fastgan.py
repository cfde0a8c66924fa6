"""A FastGAN-style few-shot family (Liu, Zhu, Song & Elgammal 2021, "Towards Faster and
Stabilized GAN Training for High-fidelity Few-shot Image Synthesis", ICLR; architecture facts
from the authors' code, odegeasslbc/FastGAN-pytorch, and from lucidrains/lightweight-gan).

Two ideas make it train on a few hundred images in a few CPU-minutes: **skip-layer
excitation** (SLE) in G, and a **self-supervised D** that must reconstruct its input from its
own features, so it cannot overfit to a few tell-tale pixels.

Generator (``img_size = s0 * 2**n``, as DCGAN: :func:`ganforge.models.dcgan.plan`)::

    z (N, z_dim) seen as (N, z_dim, 1, 1)
    init: ConvTranspose2d(z_dim, 2*c0, s0) -> BN -> GLU              1 -> s0 (c0 channels)
    n x up stage k = 1..n:  nearest 2x (or bilinear: ``model.upsample``) -> conv3x3(c, 2c')
                            -> BN -> GLU
                            (+ conv3x3(c', 2c') -> BN -> GLU when k is odd: "UpBlockComp")
    SLE into each of the last three stages from stage 16x coarser (or the s0 stage)
    conv3x3 -> C channels, tanh

Skip-layer excitation (paper eq. 1, Fig. 3): ``y = F(x_low, {W}) * x_high``, where ``F`` is
adaptive-avg-pool to 4x4 -> conv4x4 (no padding, -> 1x1) -> Swish -> conv1x1 -> sigmoid: a
per-channel gate on a fine feature map computed from a coarse one (a squeeze-excitation across
resolutions). The paper joins 8 -> 128, 16 -> 256, 32 -> 512 px; here stage ``j`` of the last
three (at least the third stage, 16 px) is gated by stage ``max(0, j - 4)``, the one four
doublings (16x) coarser or the s0 x s0 stage when there is none: at 64 px, 16, 32 and 64 px
are all gated by the 4 x 4 map; at 256 px, 64 <- 4, 128 <- 8, 256 <- 16, as in the paper.

Discriminator::

    stem: conv3x3(C -> ch(img)) -> LeakyReLU(0.2)                    full resolution
    down stages to r_s = 2*s0 (8 px for 64):  "DownBlockComp" = (main + direct) / 2 with
        main   = conv4x4 s2 -> BN -> LReLU -> conv3x3 -> BN -> LReLU
        direct = avgpool 2 -> conv1x1 -> BN -> LReLU
    features(x) = mean over H, W of LReLU(BN(conv1x1(map at r_s)))    (N, ch(r_s))
    head: Linear -> one raw logit

Self-supervised reconstruction (paper §3.2, eq. 2): two small decoders (nearest 2x -> conv3x3
-> BN -> GLU blocks, then conv3x3 -> tanh) rebuild (a) the whole image, at half resolution,
from the r_s map and (b) one random quadrant of the image, at full resolution, from the same
quadrant of the 2*r_s map. :meth:`FastGANDiscriminator.reconstruction_loss` returns their
mean squared error on the *real* images D just judged; the tasks add it to D's loss with
weight ``reg.d_recon`` (through ``DToolbox.d_extra``). Only real images are reconstructed.

Departures from the reference, and why:

- Reconstruction error: mean squared error in pixels (as lightweight-gan) instead of LPIPS,
  whose VGG weights would have to be downloaded from a hub.
- No noise injection in G: G stays a deterministic function of z (and y), which sampling by
  seed, interpolation, export and distillation rely on.
- No spectral norm in G (the reference wraps every conv of both nets); ``reg.spectral_norm``
  still normalises D. Batch norm already steadies G, and on a CPU every power iteration costs.
- One logit per image (a mean-pooled feature vector and a Linear, the family contract
  ``D(x) -> (N,)``) instead of a 5 x 5 patch of logits, and no second D branch on a
  downsampled copy of the image; widths taper as in :mod:`ganforge.models.r3gan`
  (``width * 2**min(n - i, 3)`` for stage i of n + 1, coarsest first).
- SLE pairs for images below 256 px as above (the paper only has 256 px and up).

Paper -> code name map (reference code names in parentheses)::

    initial layer (InitLayer)                  G.init
    UpBlock / UpBlockComp                      G.stages[k] (nn.Sequential), comp for odd k
    skip-layer excitation (SEBlock)            SLE, G.sle[str(j)] (j = the stage it gates)
    DownBlockComp                              DownComp
    SimpleDecoder                              Decoder: D.decoder_whole, D.decoder_part
    reconstruction loss L_recons (eq. 2)       reconstruction_loss(x), weight reg.d_recon

Class-conditional variants (``G(z, y)``, ``D(x, y)``; :mod:`ganforge.models.conditioning`): G by
``cbn`` (every BN of G is class-conditional; default) or ``concat``; D by ``projection``
(default), ``concat`` or ``acgan``.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.models.build import (
    COND_DISCRIMINATORS,
    COND_GENERATORS,
    DISCRIMINATORS,
    GENERATORS,
)
from ganforge.models.conditioning import (
    ConditionalDiscriminator,
    ConditionalGenerator,
    run_blocks,
)
from ganforge.models.dcgan import init_dcgan_, plan_as
from ganforge.models.r3gan import stage_channels

SLOPE = 0.2
#: G's 2x upsampling (``model.upsample``; the config's default ``deconv`` means the paper's nearest)
UPSAMPLE_MODES = ("nearest", "bilinear")
#: how many of G's finest stages are gated by skip-layer excitation
SLE_STAGES = 3


def _check(channels: int, width: int, dropout: float = 0.0) -> None:
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"fastgan: channels={channels!r} must be a positive integer (1 or 3)")
    if not isinstance(width, int) or width < 2:
        raise ValueError(f"fastgan: width={width!r} must be an integer >= 2")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"fastgan: dropout={dropout!r} must be in [0, 1)")


def _plan(img_size: int) -> tuple[int, int]:
    return plan_as(img_size, "fastgan", "FastGAN's G")


def sle_pairs(n: int) -> Dict[int, int]:
    """{stage gated: stage that gates it} for a G of n + 1 stages (0 = s0 x s0): each of the
    last :data:`SLE_STAGES` stages from stage 2 on, gated by ``max(0, j - 4)``."""
    return {j: max(0, j - 4) for j in range(max(2, n - SLE_STAGES + 1), n + 1)}


class SLE(nn.Module):
    """Skip-layer excitation (FastGAN eq. 1): ``x_high * sigmoid(conv1x1(swish(conv4x4(
    avgpool4(x_low)))))``. x_low (N, c_low, h, w) with h, w >= 1; x_high (N, c_high, H, W);
    returns (N, c_high, H, W)."""

    def __init__(self, c_low: int, c_high: int):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(c_low, c_high, 4, bias=False),
                                  nn.SiLU(), nn.Conv2d(c_high, c_high, 1, bias=False), nn.Sigmoid())

    def forward(self, x_low: torch.Tensor, x_high: torch.Tensor) -> torch.Tensor:
        return x_high * self.gate(x_low)


@GENERATORS.register("fastgan", help="FastGAN-style G (Liu et al. 2021): nearest-upsample + "
                                     "conv + GLU stages, skip-layer excitation -> tanh")
class FastGANGenerator(nn.Module):
    """FastGAN-style generator (see the module docstring): ``G(z (N, z_dim)) -> (N, channels,
    img_size, img_size)`` in [-1, 1]. ``width`` w: channels at full resolution (the coarse end
    has up to 8w). Raises ValueError for bad arguments or an unreachable ``img_size``."""

    def __init__(self, *, img_size: int, channels: int, z_dim: int = 100, width: int = 32,
                 upsample: str = "nearest"):
        super().__init__()
        _check(channels, width)
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"fastgan: upsample={upsample!r} is not one of "
                             f"{', '.join(UPSAMPLE_MODES)} (the paper's is nearest)")
        self.upsample = upsample
        if not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"fastgan: z_dim={z_dim!r} must be a positive integer")
        self.s0, self.n_up = _plan(img_size)
        self.img_size, self.channels, self.z_dim, self.width = img_size, channels, z_dim, width
        self.chs = chs = stage_channels(self.n_up, width)
        self.init = nn.Sequential(nn.ConvTranspose2d(z_dim, 2 * chs[0], self.s0, bias=False),
                                  self._norm(2 * chs[0]), nn.GLU(dim=1))
        stages = []
        for k in range(1, len(chs)):
            layers = [nn.Upsample(scale_factor=2, mode=upsample),
                      nn.Conv2d(chs[k - 1], 2 * chs[k], 3, padding=1, bias=False),
                      self._norm(2 * chs[k]), nn.GLU(dim=1)]
            if k % 2 == 1:   # UpBlockComp: a second conv at the same resolution
                layers += [nn.Conv2d(chs[k], 2 * chs[k], 3, padding=1, bias=False),
                           self._norm(2 * chs[k]), nn.GLU(dim=1)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.pairs = sle_pairs(self.n_up)
        self.sle = nn.ModuleDict({str(j): SLE(chs[i], chs[j]) for j, i in self.pairs.items()})
        self.to_image = nn.Conv2d(chs[-1], channels, 3, padding=1)
        init_dcgan_(self)

    def _norm(self, c: int) -> nn.Module:
        return nn.BatchNorm2d(c)

    def _generate(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        feats = [run_blocks([self.init], z.reshape(z.shape[0], -1, 1, 1), y)]
        for k, stage in enumerate(self.stages, start=1):
            h = run_blocks([stage], feats[-1], y)
            if k in self.pairs:
                h = self.sle[str(k)](feats[self.pairs[k]], h)
            feats.append(h)
        return torch.tanh(self.to_image(feats[-1]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._generate(z, None)


class DownComp(nn.Module):
    """FastGAN's DownBlockComp: ``(main(x) + direct(x)) / 2``, (N, c_in, H, W) -> (N, c_out,
    H/2, W/2); main = conv4x4 s2, BN, LReLU, conv3x3, BN, LReLU; direct = avgpool 2, conv1x1,
    BN, LReLU. ``dropout`` > 0 adds Dropout after the block."""

    def __init__(self, c_in: int, c_out: int, dropout: float = 0.0):
        super().__init__()
        act = lambda: nn.LeakyReLU(SLOPE, inplace=True)  # noqa: E731
        self.main = nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                                  act(), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(c_out), act())
        self.direct = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c_in, c_out, 1, bias=False),
                                    nn.BatchNorm2d(c_out), act())
        self.drop = nn.Dropout(float(dropout)) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (self.main(x) + self.direct(x)) * 0.5
        return self.drop(h) if self.drop is not None else h


class Decoder(nn.Module):
    """FastGAN's SimpleDecoder: (N, c, r, r) -> (N, channels, r * 2**ups, ...) in [-1, 1]
    through ``ups`` nearest-2x + conv3x3 + BN + GLU blocks (channels halving, at least 16)
    and a conv3x3 + tanh."""

    def __init__(self, c: int, channels: int, ups: int):
        super().__init__()
        layers: List[nn.Module] = []
        for _ in range(ups):
            c_out = max(16, c // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(c, 2 * c_out, 3, padding=1, bias=False), nn.BatchNorm2d(2 * c_out),
                       nn.GLU(dim=1)]
            c = c_out
        layers += [nn.Conv2d(c, channels, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


@DISCRIMINATORS.register("fastgan", help="FastGAN-style D (Liu et al. 2021): residual "
                                         "down blocks, self-supervised decoders -> logit")
class FastGANDiscriminator(nn.Module):
    """FastGAN-style discriminator with self-supervised decoders (see the module docstring).
    ``D(x (N, channels, img_size, img_size)) -> (N,)`` raw logits. After a forward in training
    mode with grad on, :meth:`reconstruction_loss` scores the decoders on the real images of
    that forward without running the trunk again. Raises ValueError for bad arguments or an
    unreachable size."""

    #: tells DToolbox.d_extra that this D has a reconstruction term (reg.d_recon)
    self_supervised = True

    def __init__(self, *, img_size: int, channels: int, width: int = 32, dropout: float = 0.0):
        super().__init__()
        _check(channels, width, dropout)
        self.s0, n = _plan(img_size)
        if n < 2:
            raise ValueError(f"fastgan: img_size={img_size} is too small for the D's decoders; "
                             f"use 16 px or more")
        self.img_size, self.channels, self.width = img_size, channels, width
        self.dropout = float(dropout)
        chs = list(reversed(stage_channels(n, width)))   # finest first: img, img/2, ..., s0
        chs = chs[:-1]                                    # the trunk stops at r_s = 2 * s0
        self.r_s = 2 * self.s0
        act = lambda: nn.LeakyReLU(SLOPE, inplace=True)  # noqa: E731
        self.stem = nn.Sequential(nn.Conv2d(channels, chs[0], 3, 1, 1), act())
        self.downs = nn.ModuleList(DownComp(chs[i], chs[i + 1], dropout) for i in range(len(chs) - 1))
        c_s = chs[-1]
        self.c_mid = chs[-2]        # the map at 2 * r_s (the stem's when there is one down)
        self.rf = nn.Sequential(nn.Conv2d(c_s, c_s, 1, bias=False), nn.BatchNorm2d(c_s), act())
        self.head = nn.Linear(c_s, 1)
        ups = int(round(math.log2(img_size // 2 // self.r_s)))
        self.decoder_whole = Decoder(c_s, channels, ups)
        self.decoder_part = Decoder(self.c_mid, channels, ups)
        init_dcgan_(self)
        self._recent: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def _trunk(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(map at 2 * r_s, map at r_s) of the trunk for input x."""
        h = self.stem(x)
        mid = h
        for down in self.downs:
            mid, h = h, down(h)
        return mid, h

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): (N, ch at r_s), the mean over positions of the last 1x1 conv block. In
        training mode with grad on, the trunk maps are kept (for the last two calls) so
        :meth:`reconstruction_loss` can reuse them."""
        mid, small = self._trunk(x)
        if self.training and torch.is_grad_enabled():
            self._recent = (self._recent + [(x, mid, small)])[-2:]
        return self.rf(small).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).view(-1)

    def _maps_for(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The trunk maps of the image batch x (N, C, H, W): those of a recent forward whose
        input began with x (same rows, image channels first: a joint real+fake call, or label
        maps joined by a concat D), else a new pass of the trunk."""
        n, c = x.shape[0], x.shape[1]
        for inp, mid, small in reversed(self._recent):
            if (inp.shape[0] >= n and inp.shape[2:] == x.shape[2:] and inp.shape[1] >= c
                    and (inp is x or torch.equal(inp[:n, :c], x))):
                self._recent = []
                return mid[:n], small[:n]
        self._recent = []
        if c != self.stem[0].in_channels:
            raise RuntimeError("fastgan D: reconstruction_loss(x) needs the trunk maps of a "
                               "forward on x (with its label maps); call D on x first")
        return self._trunk(x)

    def reconstruction_loss(self, x: torch.Tensor, quadrant: Optional[int] = None) -> torch.Tensor:
        """FastGAN's L_recons on real images x (N, C, H, W) in [-1, 1] (as D saw them, after
        augmentation): MSE of the whole-image decoder against x at half resolution plus MSE
        of the part decoder against one quadrant of x (``quadrant`` 0..3, row-major; random
        when None), averaged. A scalar tensor."""
        mid, small = self._maps_for(x)
        half = self.img_size // 2
        whole = F.interpolate(x, size=(half, half), mode="area")
        q = int(torch.randint(4, (1,))) if quadrant is None else int(quadrant)
        r = mid.shape[-1] // 2
        i, j = divmod(q, 2)
        part_in = mid[:, :, i * r:(i + 1) * r, j * r:(j + 1) * r]
        part = x[:, :, i * half:(i + 1) * half, j * half:(j + 1) * half]
        c = x.shape[1]   # a concat D's decoders also rebuild its label maps: compare the image
        return 0.5 * (F.mse_loss(self.decoder_whole(small)[:, :c], whole)
                      + F.mse_loss(self.decoder_part(part_in)[:, :c], part))

    def freeze_blocks(self) -> List[nn.Module]:
        """FreezeD groups, input to output: the stem with the first down stage, each further
        down stage, the last 1x1 block with the decoders, then the logit Linear."""
        downs = list(self.downs)
        first = nn.ModuleList([self.stem] + downs[:1])
        return ([first] + downs[1:]
                + [nn.ModuleList([self.rf, self.decoder_whole, self.decoder_part]), self.head])


# ============================================================================== conditional
@COND_GENERATORS.register("fastgan")
class CondFastGANGenerator(ConditionalGenerator, FastGANGenerator):
    """Class-conditional FastGAN-style generator: ``cond='cbn'`` (default; every BN of G is
    class-conditional) or ``'concat'`` (a label embedding joined to z).
    ``G(z (N, z_dim), y (N,)) -> (N, channels, img_size, img_size)`` in [-1, 1]. Raises
    ValueError for bad arguments."""

    family = "fastgan"

    def __init__(self, *, img_size: int, channels: int, n_classes: int, z_dim: int = 100,
                 width: int = 32, cond: str = "cbn", embed_dim: int = 0,
                 upsample: str = "nearest"):
        super().__init__(img_size=img_size, channels=channels, z_dim=z_dim, width=width,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim, upsample=upsample)


@COND_DISCRIMINATORS.register("fastgan")
class CondFastGANDiscriminator(ConditionalDiscriminator, FastGANDiscriminator):
    """Class-conditional FastGAN-style discriminator: ``cond='projection'`` (default),
    ``'concat'`` (label maps as extra input channels) or ``'acgan'``; the decoders rebuild
    the image channels only. ``D(x (N, C, H, W), y (N,)) -> logits (N,)``. Raises ValueError
    for bad arguments."""

    family = "fastgan"

    def __init__(self, *, img_size: int, channels: int, n_classes: int, width: int = 32,
                 dropout: float = 0.0, cond: str = "projection", embed_dim: int = 0):
        super().__init__(img_size=img_size, channels=channels, width=width, dropout=dropout,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim)
