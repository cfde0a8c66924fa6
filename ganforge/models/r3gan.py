"""R3GAN's normalisation-free residual generator and discriminator (Huang, Gokaslan, Kuleshov &
Tompkin 2024, "The GAN is dead; long live the GAN! A Modern GAN Baseline", NeurIPS, §3 and
Fig. 4; architecture facts from the authors' reference code, brownvc/R3GAN).

R3GAN is a recipe in three parts, each its own option here: the RpGAN loss
(``train.loss=rpgan``), R1 + R2 (``reg.r1=g reg.r2=g``) and this backbone (``--model r3gan``),
a ConvNeXt-style modernisation of StyleGAN2's layout with no normalisation layer anywhere.

Generator (``img_size = s0 * 2**n`` as DCGAN: :func:`ganforge.models.dcgan.plan`; s0 = 4 for
16, 32, 64, 128, 256 px, s0 = 7 for 28 px)::

    z (N, z_dim) -> generative basis: a learned constant (ch[0], s0, s0) times Linear(z) (N, ch[0])
    s0 x s0: B residual blocks
    n x stage: transition up (1x1 conv to the new width if it changes, then 2x bilinear),
               B residual blocks
    1x1 conv -> C channels, tanh

Discriminator, its mirror::

    x -> 1x1 conv (C -> ch[n])
    n x stage: B residual blocks, transition down (2x bilinear, then 1x1 conv if the width
               changes)
    s0 x s0: B residual blocks -> discriminative basis: depthwise s0 x s0 conv -> (N, ch[0])
            = ``features(x)``; Linear -> one raw logit

Residual block (the same in G and D; "inverted bottleneck" with grouped conv, §3.2)::

    x + conv1x1(c*2 -> c)( act( gconv3x3(c*2 -> c*2, groups)( act( conv1x1(c -> c*2)(x) ) ) ) )

with ``act`` = a learned per-channel bias, then leaky ReLU(0.2) (the bias is held by the conv
before it, the same function with one pass less over the activations); no other biases.

Channel plan (``width`` = w): channels halve with every doubling of the resolution, from at
most 8w at the coarse end to w at full resolution (stage i of n + 1 has ``w * 2**min(n-i, 3)``):
16 and 28 px [4w, 2w, w]; 32 px [8w, 4w, 2w, w]; 64 px [8w, 8w, 4w, 2w, w]; 256 px [8w, 8w,
8w, 8w, 4w, 2w, w], which is the reference's FFHQ-256 layout with w = 96. (Its 32 px CIFAR-10
net instead keeps 768 channels at every stage, far beyond a CPU; tapering keeps the
full-resolution stages, where most of the compute is, narrow, as DCGAN does.) D mirrors G.
Cardinality (groups of the 3x3 conv): the reference keeps 16 channels per group (CIFAR-10:
1536 expanded channels, 96 groups); here ``2c // 16`` groups, lowered to the nearest divisor
of 2c, and at least 1.

Initialisation (the reference's, after Fixup, Zhang et al. 2019, §3 and R3GAN §3.2):

- "MSR" init: weights ~ N(0, gain^2 / fan_in) (He et al. 2015), fan_in = in/groups * k * k;
  gain 1 except inside residual branches.
- In each residual branch the first two convs get gain ``sqrt(2 / (1 + 0.2^2)) * L**(-1/4)``:
  the leaky ReLU's He gain times Fixup's rescaling ``L**(-1/(2m-2))`` for L residual branches
  in the network (all stages; L = B * (n + 1)) of m = 3 layers each. The *last* conv of each
  branch is zero, so every block is the identity at initialisation and the network starts as
  its stack of transition layers (which preserves signal variance without normalisation).
- Activation biases 0; the generative basis' constant ~ N(0, 1).

Departures from the reference, and why:

- G ends in ``tanh`` (the family contract: images in [-1, 1]); the reference's last 1x1 conv
  is linear.
- Resampling: 2x bilinear upsampling (``F.interpolate``, edge pixels replicated) and 2x
  antialiased bilinear downsampling. Both are the reference's [1, 2, 1]-derived [1, 3, 3, 1]
  filter in the interior; at the border the reference pads with zeros.
- ``spectral_norm=True`` (``reg.spectral_norm``; R3GAN itself uses none): a zero matrix has no
  direction to normalise (sigma = 0, and W / sigma is 0/0), so each zero-initialised last conv
  is first given the MSR init (gain 1) through :meth:`ZeroConv2d.prepare_spectral_norm_`; the
  blocks are then no longer the identity at initialisation, which spectral normalisation would
  undo in any case (it rescales every weight to unit spectral norm).
- ``dropout`` (D only, default 0 = off) adds ``nn.Dropout`` after each activation of D's
  residual blocks; 28 px uses a 7x7 basis (s0 = 7), as the other families do.

Paper -> code name map (reference code names in parentheses)::

    generative basis (GenerativeBasis)          GenerativeBasis / G.basis
    discriminative basis (DiscriminativeBasis)  D.basis (depthwise conv) + D.head (Linear)
    residual block (ResidualBlock)              ResidualBlock
    biased activation (BiasedActivation)        conv1/conv2 bias + F.leaky_relu(0.2)
    transition layer (Upsample-/DownsampleLayer)  Up / Down
    stage (Generator-/DiscriminatorStage)       G.stages[i] / D.stages[i] (nn.Sequential)
    aggregation layer (AggregationLayer)        G.to_image
    extraction layer (ExtractionLayer)          D.from_image
    L, variance scaling parameter               n_blocks_total; BlocksPerStage: blocks
    cardinality, expansion factor               groups(), EXPANSION = 2

Class-conditional variants (``G(z, y)``, ``D(x, y)``, built with ``n_classes`` through the
mixins of :mod:`ganforge.models.conditioning`): G conditions by ``concat`` only (a label
embedding joined to z, feeding the generative basis: R3GAN's own conditional G); ``cbn`` needs
normalisation layers, which this family has none of, so ``cond.g_method=auto`` picks concat
for it. D: ``projection`` (default; R3GAN's conditional D is a projection of the basis
features on a class embedding, Miyato & Koyama 2018), ``concat`` or ``acgan``.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.models.build import (
    COND_DISCRIMINATORS,
    COND_GENERATORS,
    DISCRIMINATORS,
    GENERATORS,
)
from ganforge.models.conditioning import ConditionalDiscriminator, ConditionalGenerator
from ganforge.models.dcgan import plan_as

#: expanded channels = EXPANSION * stage channels inside every residual block (reference: 2)
EXPANSION = 2
#: channels per group of the grouped 3x3 conv (reference: 16 at every stage)
GROUP_CHANNELS = 16
#: leaky ReLU slope, and its He gain sqrt(2 / (1 + a^2))
SLOPE = 0.2
ACT_GAIN = math.sqrt(2.0 / (1.0 + SLOPE ** 2))


def _check(channels: int, width: int, blocks: int, dropout: float = 0.0) -> None:
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"r3gan: channels={channels!r} must be a positive integer (1 or 3)")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"r3gan: width={width!r} must be a positive integer")
    if not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"r3gan: blocks={blocks!r} (residual blocks per stage) must be a "
                         f"positive integer")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"r3gan: dropout={dropout!r} must be in [0, 1)")


def _plan(img_size: int) -> tuple[int, int]:
    return plan_as(img_size, "r3gan", "R3GAN's G")


def stage_channels(n: int, width: int) -> List[int]:
    """Channels of the n + 1 stages, coarsest (s0) first: ``w * 2**min(n - i, 3)`` for stage i,
    i.e. halving with every doubling of the resolution down to ``w`` at full resolution, and
    at most 8w at the coarse end."""
    return [width * 2 ** min(n - i, 3) for i in range(n + 1)]


def groups(expanded: int) -> int:
    """Cardinality of the grouped 3x3 conv on ``expanded`` channels: ``expanded // 16``
    (R3GAN's 16 channels per group), lowered to a divisor of ``expanded``; at least 1."""
    g = max(1, expanded // GROUP_CHANNELS)
    while expanded % g:
        g -= 1
    return g


def msr_init_(weight: torch.Tensor, gain: float = 1.0) -> None:
    """He ("MSR") init: N(0, gain^2 / fan_in), fan_in = everything one output unit reads."""
    with torch.no_grad():
        weight.normal_(0.0, gain / math.sqrt(weight[0].numel()))


class ZeroConv2d(nn.Conv2d):
    """A bias-free conv initialised to zero: the last layer of a residual branch (Fixup), so the
    block starts as the identity. Same parameters and state-dict keys as ``nn.Conv2d``."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def prepare_spectral_norm_(self) -> None:
        """Called by :func:`ganforge.models.spectral_norm.apply_spectral_norm` before it
        normalises this layer: a zero weight has no spectral norm to divide by (0/0), so it
        gets the MSR init (gain 1) instead."""
        if not self.weight.detach().any():
            msr_init_(self.weight)


class ResidualBlock(nn.Module):
    """``x + conv3(act(conv2(act(conv1(x)))))``: 1x1 expand (c -> 2c), grouped 3x3, 1x1 back
    (2c -> c) initialised to zero; ``act`` is R3GAN's biased activation, leaky ReLU(0.2) after
    a learned per-channel bias (zero at init) that conv1 / conv2 carry as their own bias.
    ``n_blocks_total`` is L of Fixup's ``L**(-1/4)`` scaling (every residual block of the
    network). Shape-preserving on (N, c, H, W)."""

    def __init__(self, c: int, *, n_blocks_total: int, dropout: float = 0.0):
        super().__init__()
        e = EXPANSION * c
        self.conv1 = nn.Conv2d(c, e, 1, bias=True)
        self.conv2 = nn.Conv2d(e, e, 3, padding=1, groups=groups(e), bias=True)
        self.conv3 = ZeroConv2d(e, c, 1, bias=False)
        # Fixup for m = 3 layers per branch: L**(-1/(2m-2)) = L**(-1/4), times the He gain.
        gain = ACT_GAIN * n_blocks_total ** (-1.0 / (2 * 3 - 2))
        for conv in (self.conv1, self.conv2):
            msr_init_(conv.weight, gain)
            nn.init.zeros_(conv.bias)
        # One Dropout per activation (D only); none at all when off (no change to the graph).
        self.drop1 = nn.Dropout(float(dropout)) if dropout > 0 else None
        self.drop2 = nn.Dropout(float(dropout)) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place on the conv outputs: leaky ReLU's backward needs only its output's sign
        h = F.leaky_relu_(self.conv1(x), SLOPE)
        if self.drop1 is not None:
            h = self.drop1(h)
        h = F.leaky_relu_(self.conv2(h), SLOPE)
        if self.drop2 is not None:
            h = self.drop2(h)
        return x + self.conv3(h)


def _width_change(c_in: int, c_out: int) -> Optional[nn.Conv2d]:
    """A transition's 1x1 conv from ``c_in`` to ``c_out`` channels (MSR init), or None when
    the width stays."""
    if c_in == c_out:
        return None
    conv = nn.Conv2d(c_in, c_out, 1, bias=False)
    msr_init_(conv.weight)
    return conv


class Up(nn.Module):
    """G's transition: 1x1 conv to ``c_out`` when the width changes (at the low resolution,
    4x cheaper; the two commute), then 2x bilinear upsampling."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = _width_change(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class Down(nn.Module):
    """D's transition: 2x antialiased bilinear downsampling (the [1, 3, 3, 1] / 8 tent
    filter), then a 1x1 conv to ``c_out`` when the width changes."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = _width_change(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16)
        # the CPU's antialiased resampling has no bf16/fp16 kernel: filter in float32 there
        y = F.interpolate(x.float() if low else x, scale_factor=0.5, mode="bilinear",
                          align_corners=False, antialias=True)
        x = y.to(x.dtype) if low else y
        return self.conv(x) if self.conv is not None else x


class GenerativeBasis(nn.Module):
    """A learned constant (c, s0, s0) ~ N(0, 1), modulated per channel by ``Linear(z)``:
    (N, z_dim) -> (N, c, s0, s0). Replaces StyleGAN's constant input + mapping network."""

    def __init__(self, z_dim: int, c: int, s0: int):
        super().__init__()
        self.const = nn.Parameter(torch.randn(c, s0, s0))
        self.linear = nn.Linear(z_dim, c, bias=False)
        msr_init_(self.linear.weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.const.unsqueeze(0) * self.linear(z)[:, :, None, None]


@GENERATORS.register("r3gan", help="R3GAN generator (Huang et al. 2024): normalisation-free "
                                   "residual stages, generative basis, grouped convs -> tanh")
class R3GANGenerator(nn.Module):
    """R3GAN generator: generative basis, then stages of zero-initialised residual blocks with
    bilinear 2x transitions, 1x1 conv to the image, tanh. ``G(z (N, z_dim)) -> (N, channels,
    img_size, img_size)`` in [-1, 1]. ``blocks``: residual blocks per stage (2, the
    reference's). Raises ValueError for bad arguments or an unreachable ``img_size``."""

    def __init__(self, *, img_size: int, channels: int, z_dim: int = 100, width: int = 64,
                 blocks: int = 2):
        super().__init__()
        _check(channels, width, blocks)
        if not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"r3gan: z_dim={z_dim!r} must be a positive integer")
        self.s0, self.n_up = _plan(img_size)
        self.img_size, self.channels, self.z_dim, self.width = img_size, channels, z_dim, width
        self.in_features = z_dim
        self.chs = chs = stage_channels(self.n_up, width)
        total = blocks * len(chs)
        self.basis = GenerativeBasis(self.in_features, chs[0], self.s0)
        stages = []
        for i, c in enumerate(chs):
            layers = [] if i == 0 else [Up(chs[i - 1], c)]
            layers += [ResidualBlock(c, n_blocks_total=total) for _ in range(blocks)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.to_image = nn.Conv2d(chs[-1], channels, 1, bias=False)
        msr_init_(self.to_image.weight)

    def _generate(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        h = self.basis(z)
        for stage in self.stages:
            h = stage(h)
        return torch.tanh(self.to_image(h))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._generate(z.reshape(z.shape[0], -1), None)


@DISCRIMINATORS.register("r3gan", help="R3GAN discriminator (Huang et al. 2024): "
                                       "normalisation-free residual stages -> discriminative "
                                       "basis -> logit")
class R3GANDiscriminator(nn.Module):
    """R3GAN discriminator: 1x1 conv from the image, stages of residual blocks with bilinear
    2x downsampling, the discriminative basis (depthwise s0 x s0 conv) and a Linear to one raw
    logit. ``D(x (N, channels, img_size, img_size)) -> (N,)``. No normalisation, so each
    image's logit depends on that image alone (R1/R2 and WGAN-GP are per sample; real and fake
    may share one D call). Raises ValueError for bad arguments or an unreachable size."""

    def __init__(self, *, img_size: int, channels: int, width: int = 64, dropout: float = 0.0,
                 blocks: int = 2):
        super().__init__()
        _check(channels, width, blocks, dropout)
        self.s0, self.n_down = _plan(img_size)
        self.img_size, self.channels, self.width = img_size, channels, width
        self.dropout = float(dropout)
        chs = list(reversed(stage_channels(self.n_down, width)))   # finest first
        self.chs = chs
        total = blocks * len(chs)
        self.from_image = nn.Conv2d(channels, chs[0], 1, bias=False)
        msr_init_(self.from_image.weight)
        stages = []
        for i, c in enumerate(chs):
            layers = [ResidualBlock(c, n_blocks_total=total, dropout=dropout)
                      for _ in range(blocks)]
            if i + 1 < len(chs):
                layers.append(Down(c, chs[i + 1]))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        # Discriminative basis: a depthwise conv over the whole s0 x s0 map, then a Linear.
        self.basis = nn.Conv2d(chs[-1], chs[-1], self.s0, groups=chs[-1], bias=False)
        msr_init_(self.basis.weight)
        self.head = nn.Linear(chs[-1], 1, bias=False)
        msr_init_(self.head.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): the discriminative basis' depthwise conv output, (N, ch) with ch = the
        coarsest stage's channels (what a projection D projects on a class embedding)."""
        h = self.from_image(x)
        for stage in self.stages:
            h = stage(h)
        return self.basis(h).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).view(-1)

    def freeze_blocks(self) -> List[nn.Module]:
        """FreezeD groups, input to output: the 1x1 input conv with the first stage, each
        further stage (the last with the depthwise basis), then the logit Linear."""
        stages = list(self.stages)       # at least two: img_size > s0
        return ([nn.ModuleList([self.from_image, stages[0]])] + stages[1:-1]
                + [nn.ModuleList([stages[-1], self.basis]), self.head])


# ============================================================================== conditional
@COND_GENERATORS.register("r3gan")
class CondR3GANGenerator(ConditionalGenerator, R3GANGenerator):
    """Class-conditional R3GAN generator: ``cond='concat'`` only (a learned label embedding
    joined to z before the generative basis, as R3GAN's conditional G); this family has no
    normalisation layer for ``'cbn'``, and refuses it.

    ``G(z (N, z_dim), y (N,)) -> (N, channels, img_size, img_size)`` in [-1, 1]. Raises
    ValueError for bad arguments (``cond='cbn'`` included)."""

    family = "r3gan"
    g_methods = ("concat",)

    def __init__(self, *, img_size: int, channels: int, n_classes: int, z_dim: int = 100,
                 width: int = 64, cond: str = "concat", embed_dim: int = 0, blocks: int = 2):
        super().__init__(img_size=img_size, channels=channels, z_dim=z_dim, width=width,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim, blocks=blocks)


@COND_DISCRIMINATORS.register("r3gan")
class CondR3GANDiscriminator(ConditionalDiscriminator, R3GANDiscriminator):
    """Class-conditional R3GAN discriminator: ``cond='projection'`` (default; R3GAN's
    conditional D projects the basis features on a class embedding), ``'concat'`` (label
    maps as extra input channels) or ``'acgan'``.

    ``D(x (N, channels, img_size, img_size), y (N,)) -> logits (N,)``; phi(x) is the (N, ch)
    ``features(x)``. Raises ValueError for bad arguments."""

    family = "r3gan"

    def __init__(self, *, img_size: int, channels: int, n_classes: int, width: int = 64,
                 dropout: float = 0.0, cond: str = "projection", embed_dim: int = 0,
                 blocks: int = 2):
        super().__init__(img_size=img_size, channels=channels, width=width, dropout=dropout,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim, blocks=blocks)
