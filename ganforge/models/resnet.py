"""ResNet generator and discriminator in the SNGAN style (Miyato, Kataoka, Koyama & Yoshida
2018, "Spectral Normalization for Generative Adversarial Networks", appendix B.4, Tables 4-6;
the residual GAN of Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", appendix F).

Generator (``img_size = s0 * 2**n`` exactly as DCGAN: :func:`ganforge.models.dcgan.plan`)::

    z (N, z_dim) -> Linear -> (N, ch[0], s0, s0)
    n x up-block   residual:  BN, ReLU, nearest 2x up, conv3x3, BN, ReLU, conv3x3
                   shortcut:  nearest 2x up, conv1x1
    BN, ReLU, conv3x3 -> C channels, tanh

Discriminator (no BatchNorm anywhere, so the gradient penalty is per-sample and one D call on
a concatenated real+fake batch equals two separate calls)::

    optimized block  residual:  conv3x3, ReLU, conv3x3, avgpool 2x   (no pre-activation:
                     shortcut:  avgpool 2x, conv1x1                  the input is an image)
    n-1 x down-block residual:  ReLU, conv3x3, ReLU, conv3x3, avgpool 2x
                     shortcut:  conv1x1, avgpool 2x
    1 x block        the same without downsampling (shortcut: identity, or conv1x1 if the
                     channel count changes)
    ReLU, global *sum* pooling -> (N, ch) = ``features(x)``; Linear -> one raw logit

D halves the resolution n times, from ``img_size`` to G's start size s0, and then works one
more block at s0: the layout of SNGAN's STL-10 and ImageNet discriminators (Tables 5-6). At
32 px this is 32 -> 16 -> 8 -> 4 (+1 block at 4x4): four residual blocks like SNGAN's CIFAR-10
D, which instead stops halving at 8x8; ending at s0 keeps D the mirror of G at every size and
makes the last blocks four times cheaper.

Channel plan (``width`` = w):

- n <= 3 (up to 32 px, 48 px, 56 px): every block has w channels, G and D alike (SNGAN's and
  Gulrajani et al.'s CIFAR-10 nets: G 256 / D 128 in SNGAN, 128 / 128 in WGAN-GP; the
  default w = 128).
- n >= 4 (64 px and up): G starts at 2**(n-1) * w and halves in every block after the first,
  ending at w; D mirrors it, doubling from w up to 2**(n-1) * w, and keeps that in the last
  block (SNGAN's ImageNet 128 px nets: G 1024, 1024, 512, 256, 128, 64 at w = 64). At 64 px
  w = 64 gives G 512, 512, 256, 128, 64 and D 64, 128, 256, 512, 512, the widths of the
  STL-10 nets.

Implementation notes:
- A 1x1 convolution commutes with both nearest-neighbour upsampling and 2x2 average pooling
  (each is linear and acts on a different axis: channels vs. space), so every shortcut runs its
  1x1 conv at the *lower* resolution: the same function, a quarter of the work.
- Convolutions in G feed a BatchNorm (directly, or through residual sums that the next BN
  normalises), which removes any per-channel constant; their biases would get an exactly zero
  gradient, so they have none. The z-Linear keeps its bias (it is per position, not per
  channel) and so does the output conv. D's layers keep their biases.
- Initialisation as SNGAN's reference code: Xavier/Glorot uniform (Glorot & Bengio 2010) with
  gain sqrt(2) on the 3x3 convolutions inside residual branches (they follow ReLUs, He et al.
  2015's factor), gain 1 on the 1x1 shortcuts, the z-Linear, the output conv and D's head;
  biases 0, BN scale 1.
- ``dropout`` (D only, default 0 = off) puts ``nn.Dropout`` after every ReLU inside D's blocks.

Class-conditional variants (``G(z, y)``, ``D(x, y)``, built with ``n_classes``, as for the
other families): conditional BN in every G norm layer
(Miyato & Koyama 2018, §4) or a concatenated label embedding; a projection D, eq. (3) of
Miyato & Koyama 2018, on the sum-pooled ``features(x)`` (their ResNet D is exactly this),
or concat / AC-GAN heads. The label layers come from the mixins of
:mod:`ganforge.models.conditioning`; this module adds only the ResNet hooks (the
Glorot-initialised projection embedding and class head).
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
from ganforge.models.dcgan import plan


def _check(channels: int, width: int, dropout: float = 0.0) -> None:
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"resnet: channels={channels!r} must be a positive integer (1 or 3)")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"resnet: width={width!r} must be a positive integer")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"resnet: dropout={dropout!r} must be in [0, 1)")


def g_channels(n: int, width: int) -> List[int]:
    """G's channels: ``[after the z-Linear, after up-block 1, ..., after up-block n]``."""
    if n <= 3:
        return [width] * (n + 1)
    return [width * 2 ** (n - 1)] + [width * 2 ** (n - 1 - i) for i in range(n)]


def d_channels(n: int, width: int) -> List[int]:
    """D's output channels per block: n downsampling blocks, then one at s0 (G's mirror)."""
    if n <= 3:
        return [width] * (n + 1)
    return [width * 2 ** i for i in range(n)] + [width * 2 ** (n - 1)]


def init_resnet_(module: nn.Module) -> None:
    """SNGAN's initialisation: Xavier uniform, gain sqrt(2) on the 3x3 convs of residual
    branches (marked ``_relu_gain``), gain 1 elsewhere; biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            gain = math.sqrt(2.0) if getattr(m, "_relu_gain", False) else 1.0
            nn.init.xavier_uniform_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _conv3(c_in: int, c_out: int, bias: bool) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias)
    conv._relu_gain = True   # read by init_resnet_ (a plain attribute: not in the state dict)
    return conv


def _norm_apply(norm: nn.Module, h: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
    # Conditional BN takes the labels; plain BN (y is None for unconditional G) does not.
    return norm(h) if y is None else norm(h, y)


def _up(h: torch.Tensor) -> torch.Tensor:
    return F.interpolate(h, scale_factor=2, mode="nearest")


class UpBlock(nn.Module):
    """G's residual block: BN, ReLU, up, conv3x3, BN, ReLU, conv3x3 (+ up, conv1x1 shortcut)."""

    def __init__(self, c_in: int, c_out: int, norm):
        super().__init__()
        self.bn1 = norm(c_in)
        self.conv1 = _conv3(c_in, c_out, bias=False)
        self.bn2 = norm(c_out)
        self.conv2 = _conv3(c_out, c_out, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = F.relu(_norm_apply(self.bn1, x, y))
        h = self.conv1(_up(h))
        h = self.conv2(F.relu(_norm_apply(self.bn2, h, y)))
        return h + _up(self.shortcut(x))   # conv1x1 then up == up then conv1x1, 4x cheaper


class DBlock(nn.Module):
    """D's residual block. ``first``: SNGAN's "optimized" input block (no ReLU before the first
    conv; shortcut pools before its 1x1 conv). ``down``: 2x2 average pooling at the end."""

    def __init__(self, c_in: int, c_out: int, *, down: bool, first: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = _conv3(c_in, c_out, bias=True)
        self.conv2 = _conv3(c_out, c_out, bias=True)
        # A learned shortcut only where the identity does not fit (SNGAN's "learnable_sc").
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (down or c_in != c_out) else None
        # One Dropout module per ReLU site; none at all when off (no change to the graph).
        self.drop1 = nn.Dropout(float(dropout)) if dropout > 0 and not first else None
        self.drop2 = nn.Dropout(float(dropout)) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if not self.first:
            h = F.relu(h)            # not in place: x is still needed by the shortcut
            if self.drop1 is not None:
                h = self.drop1(h)
        h = F.relu(self.conv1(h))
        if self.drop2 is not None:
            h = self.drop2(h)
        h = self.conv2(h)
        sc = x
        if self.down:
            h = F.avg_pool2d(h, 2)
            sc = F.avg_pool2d(sc, 2)   # pool then conv1x1 == conv1x1 then pool, 4x cheaper
        if self.shortcut is not None:
            sc = self.shortcut(sc)
        return h + sc


@GENERATORS.register("resnet", help="SNGAN-style ResNet generator (Miyato et al. 2018): "
                                    "Linear -> residual up-blocks with BN -> tanh")
class ResNetGenerator(nn.Module):
    """SNGAN-style ResNet generator: z -> Linear -> n residual up-blocks -> BN, ReLU, conv, tanh."""

    def __init__(self, *, img_size: int, channels: int, z_dim: int = 128, width: int = 128):
        super().__init__()
        _check(channels, width)
        if not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"resnet: z_dim={z_dim!r} must be a positive integer")
        try:
            self.s0, self.n_up = plan(img_size)
        except ValueError as e:   # same sizes as DCGAN; say which family refused
            raise ValueError(str(e).replace("dcgan:", "resnet:", 1)
                             .replace("DCGAN doubles", "ResNet G doubles", 1)) from None
        self.img_size, self.channels, self.z_dim, self.width = img_size, channels, z_dim, width
        self.in_features = z_dim
        chs = g_channels(self.n_up, width)
        self.chs = chs
        self.linear = nn.Linear(self.in_features, chs[0] * self.s0 * self.s0)
        self.blocks = nn.ModuleList(UpBlock(a, b, self._norm) for a, b in zip(chs[:-1], chs[1:]))
        self.out_norm = self._norm(chs[-1])
        self.out_conv = nn.Conv2d(chs[-1], channels, 3, 1, 1, bias=True)
        init_resnet_(self)

    def _norm(self, num_channels: int) -> nn.Module:
        return nn.BatchNorm2d(num_channels)

    def _generate(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self.chs[0], self.s0, self.s0)
        for block in self.blocks:
            h = block(h, y)
        h = F.relu(_norm_apply(self.out_norm, h, y))
        return torch.tanh(self.out_conv(h))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._generate(z.reshape(z.shape[0], -1), None)


@DISCRIMINATORS.register("resnet", help="SNGAN-style ResNet discriminator (Miyato et al. 2018): "
                                        "residual down-blocks, sum pooling -> logit, no BN")
class ResNetDiscriminator(nn.Module):
    """SNGAN-style ResNet discriminator: residual down-blocks, ReLU, global sum pool, Linear."""

    def __init__(self, *, img_size: int, channels: int, width: int = 128, dropout: float = 0.0):
        super().__init__()
        _check(channels, width, dropout)
        try:
            self.s0, self.n_down = plan(img_size)
        except ValueError as e:
            raise ValueError(str(e).replace("dcgan:", "resnet:", 1)
                             .replace("DCGAN doubles", "ResNet G doubles", 1)) from None
        self.img_size, self.channels, self.width = img_size, channels, width
        self.dropout = float(dropout)
        chs = d_channels(self.n_down, width)
        blocks = [DBlock(channels, chs[0], down=True, first=True, dropout=dropout)]
        for i in range(1, len(chs)):
            blocks.append(DBlock(chs[i - 1], chs[i], down=i < self.n_down, dropout=dropout))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(chs[-1], 1)
        init_resnet_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): ReLU then global *sum* pooling of the last block, shape (N, ch) (SNGAN sums
        rather than averages, so the logit scale grows with the map like its conv layers')."""
        h = x
        for block in self.blocks:
            h = block(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).view(-1)

    def freeze_blocks(self) -> List[nn.Module]:
        """FreezeD groups, input to output: each residual block, then the head."""
        return list(self.blocks) + [self.head]


# ============================================================================== conditional
@COND_GENERATORS.register("resnet")
class CondResNetGenerator(ConditionalGenerator, ResNetGenerator):
    """Class-conditional ResNet generator: ``cond='cbn'`` (default; every BN, the output one
    included, becomes conditional BN) or ``'concat'`` (label embedding appended to z).

    ``G(z (N, z_dim), y (N,)) -> (N, channels, img_size, img_size)`` in [-1, 1]. The base's
    ``_norm()`` builds the conditional BNs and its ``_generate(z, y)`` threads the labels to
    them. Raises ValueError for bad arguments.
    """

    family = "resnet"

    def __init__(self, *, img_size: int, channels: int, n_classes: int, z_dim: int = 128,
                 width: int = 128, cond: str = "cbn", embed_dim: int = 0):
        super().__init__(img_size=img_size, channels=channels, z_dim=z_dim, width=width,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim)


@COND_DISCRIMINATORS.register("resnet")
class CondResNetDiscriminator(ConditionalDiscriminator, ResNetDiscriminator):
    """Class-conditional ResNet discriminator: ``cond='projection'`` (default, Miyato & Koyama
    2018's ResNet D), ``'concat'`` or ``'acgan'``.

    ``D(x (N, channels, img_size, img_size), y (N,)) -> logits (N,)``. phi(x) is the
    sum-pooled (N, ch) ``features(x)``; ``concat`` feeds e constant label-map channels with the
    image. The projection embedding and the AC-GAN class head are Glorot-initialised as in the
    authors' code. Raises ValueError for bad arguments.
    """

    family = "resnet"

    def __init__(self, *, img_size: int, channels: int, n_classes: int, width: int = 128,
                 dropout: float = 0.0, cond: str = "projection", embed_dim: int = 0):
        super().__init__(img_size=img_size, channels=channels, width=width, dropout=dropout,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim)

    def _init_projection_(self, weight: torch.Tensor) -> None:
        # eq. (3): logit = psi(phi(x)) + embed(y) . phi(x); Glorot as in the authors' code.
        nn.init.xavier_uniform_(weight)

    def _class_head(self) -> nn.Module:
        head = nn.Linear(self._phi_dim(), self.n_classes)
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)
        return head
