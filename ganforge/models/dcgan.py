"""DCGAN (Radford, Metz & Chintala 2015, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks").

Generator (paper Fig. 1, with the 4x4 projection done as a 1x1 -> s0 x s0 transposed conv, as
in the authors' and PyTorch's reference code):

    z (N, z_dim) seen as (N, z_dim, 1, 1)
    ConvTranspose2d(z_dim, w*2^(n-1), kernel=s0)          1 -> s0,   BN, ReLU
    n-1 x ConvTranspose2d(k=4, s=2, p=1), channels halving   s0 -> ..., BN, ReLU
    ConvTranspose2d(w, C, k=4, s=2, p=1)                  -> img_size, tanh (no BN)

Discriminator, its mirror image:

    Conv2d(C, w, k=4, s=2, p=1)                           LeakyReLU(0.2) (no BN on the input layer)
    n-1 x Conv2d(k=4, s=2, p=1), channels doubling         BN, LeakyReLU(0.2)
    Conv2d(w*2^(n-1), 1, kernel=s0)                       -> one raw logit (no sigmoid)

    ``dropout`` > 0 adds nn.Dropout after each LeakyReLU (off by default, as in the paper).

``upsample`` (G only; the config key ``model.upsample``): ``"deconv"`` (default, the paper's
stride-2 4x4 transposed convolutions above), or ``"nearest"`` / ``"bilinear"``: each stride-2
transposed conv becomes a resize-convolution, ``Upsample(x2, mode)`` then ``Conv2d(3x3,
stride 1, padding 1)`` with the same channels, BN and activation. A 4x4 kernel at stride 2
overlaps unevenly (every other output pixel gets a different number of taps), which paints a
period-2 checkerboard on the samples; resizing first and convolving after spreads every
input pixel evenly (Odena, Dumoulin & Olah 2016, "Deconvolution and Checkerboard
Artifacts", Distill). The projection from z (1 -> s0) is the same in all three. The spec
stored with the weights holds ``upsample`` only when it is not ``"deconv"``, so checkpoints
of the default G are unchanged and rebuild as before.

``img_size = s0 * 2**n`` with 4 <= s0 <= 7 and n >= 1 strided layers; e.g. 64 = 4*2^4
(4 -> 8 -> 16 -> 32 -> 64), 32 = 4*2^3, 28 = 7*2^2 (7 -> 14 -> 28). Paper guidelines followed
(§3): strided convolutions instead of pooling, BN in both nets except G's output and D's input,
no fully-connected hidden layers, ReLU in G with tanh output, LeakyReLU(0.2) in D, weights
initialised from N(0, 0.02) (§4). Convolutions feeding a BN have no bias (BN's shift replaces it).

Class-conditional variants (:class:`CondDCGANGenerator`, :class:`CondDCGANDiscriminator`, at the
end) are these networks behind the mixins of :mod:`ganforge.models.conditioning`, through the
extension points written for them: layers live in ``blocks`` (``nn.ModuleList``), the
normalisation layer comes from ``_norm(channels)`` (conditional BN overrides it and threads the
label through ``blocks``), G's input width is ``in_channels`` (widened to concatenate a label
embedding), and D exposes ``features(x)`` (the s0 x s0 map before the logit conv) for a
projection discriminator.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

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
from ganforge.models.layers import DotHead2d, FoldTranspose2d, ProjectTranspose2d

MIN_S0, MAX_S0 = 4, 7
#: G's ways to double the resolution (``model.upsample``)
UPSAMPLE_MODES = ("deconv", "nearest", "bilinear")


def supported_sizes(limit: int = 256) -> list[int]:
    """Image sizes DCGAN can produce, up to ``limit``: s0 * 2**n, 4 <= s0 <= 7, n >= 1."""
    sizes = set()
    for s0 in range(MIN_S0, MAX_S0 + 1):
        n = 1
        while s0 * 2 ** n <= limit:
            sizes.add(s0 * 2 ** n)
            n += 1
    return sorted(sizes)


def plan(img_size: int) -> tuple[int, int]:
    """``(s0, n_up)``: the start resolution and the number of stride-2 layers for ``img_size``.

    Raises ValueError naming ``img_size`` and the accepted sizes when it is not reachable.
    """
    if isinstance(img_size, int) and img_size >= 2 * MIN_S0:
        s, n = img_size, 0
        while s > MAX_S0 and s % 2 == 0:
            s, n = s // 2, n + 1
        if MIN_S0 <= s <= MAX_S0 and n >= 1:
            return s, n
    raise ValueError(
        f"dcgan: img_size={img_size!r} is not reachable; DCGAN doubles the resolution from a "
        f"start size s0 in {MIN_S0}..{MAX_S0}, so img_size must be s0 * 2**n (n >= 1): "
        f"{', '.join(map(str, supported_sizes()))}, ... Resize the data (data.img_size=...) "
        f"or choose the mlp model, which accepts any size.")


def plan_as(img_size: int, family: str, display: str) -> tuple[int, int]:
    """:func:`plan` for another family with DCGAN's sizes: the same ``(s0, n_up)``, and the
    ValueError names ``family`` (``"r3gan"``) and its G (``"R3GAN's G"``) instead of DCGAN."""
    try:
        return plan(img_size)
    except ValueError as e:
        raise ValueError(str(e).replace("dcgan:", f"{family}:", 1)
                         .replace("DCGAN doubles", f"{display} doubles", 1)) from None


def _check(channels: int, width: int) -> None:
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"dcgan: channels={channels!r} must be a positive integer (1 or 3)")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"dcgan: width={width!r} must be a positive integer")


def init_dcgan_(module: nn.Module) -> None:
    """DCGAN initialisation (paper §4): conv weights ~ N(0, 0.02), BN scale ~ N(1, 0.02),
    all biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.weight is not None:
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)


@GENERATORS.register("dcgan")
class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2015): 1x1 noise -> transposed convs with BN+ReLU -> tanh."""

    def __init__(self, *, img_size: int, channels: int, z_dim: int = 100, width: int = 64,
                 upsample: str = "deconv"):
        super().__init__()
        _check(channels, width)
        if not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"dcgan: z_dim={z_dim!r} must be a positive integer")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"dcgan: upsample={upsample!r} is not one of "
                             f"{', '.join(UPSAMPLE_MODES)}")
        self.upsample = upsample
        self.s0, self.n_up = plan(img_size)
        self.img_size, self.channels, self.z_dim, self.width = img_size, channels, z_dim, width
        self.in_channels = z_dim
        chs = [width * 2 ** i for i in reversed(range(self.n_up))]  # e.g. 8w, 4w, 2w, w
        blocks = [nn.Sequential(  # 1x1 -> s0 x s0 ("project and reshape")
            ProjectTranspose2d(self.in_channels, chs[0], self.s0, 1, 0, bias=False),
            self._norm(chs[0]), nn.ReLU(inplace=True))]
        for c_in, c_out in zip(chs[:-1], chs[1:]):
            blocks.append(nn.Sequential(
                *self._up(c_in, c_out, bias=False), self._norm(c_out), nn.ReLU(inplace=True)))
        blocks.append(nn.Sequential(  # output layer: no BN (paper §3), tanh into [-1, 1]
            *self._up(chs[-1], channels, bias=True, out=True), nn.Tanh()))
        self.blocks = nn.ModuleList(blocks)
        init_dcgan_(self)

    def _norm(self, num_channels: int) -> nn.Module:
        return nn.BatchNorm2d(num_channels)

    def _up(self, c_in: int, c_out: int, *, bias: bool, out: bool = False) -> list[nn.Module]:
        """The layers that double the resolution: a stride-2 4x4 transposed conv, or a resize
        then a 3x3 conv (``upsample``; see the module docstring)."""
        if self.upsample == "deconv":
            cls = FoldTranspose2d if out else nn.ConvTranspose2d
            return [cls(c_in, c_out, 4, 2, 1, bias=bias)]
        up = nn.Upsample(scale_factor=2, mode=self.upsample,
                         **({"align_corners": False} if self.upsample == "bilinear" else {}))
        return [up, nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.reshape(z.shape[0], -1, 1, 1)
        for block in self.blocks:
            h = block(h)
        return h


@DISCRIMINATORS.register("dcgan")
class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator (Radford et al. 2015): strided convs, BN, LeakyReLU(0.2) -> raw logit."""

    def __init__(self, *, img_size: int, channels: int, width: int = 64, dropout: float = 0.0):
        super().__init__()
        _check(channels, width)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dcgan: dropout={dropout!r} must be in [0, 1)")
        self.s0, self.n_down = plan(img_size)
        self.img_size, self.channels, self.width = img_size, channels, width
        self.dropout = float(dropout)
        chs = [width * 2 ** i for i in range(self.n_down)]  # e.g. w, 2w, 4w, 8w
        blocks = [[  # input layer: no BN (paper §3)
            nn.Conv2d(channels, chs[0], 4, 2, 1, bias=True), nn.LeakyReLU(0.2, inplace=True)]]
        for c_in, c_out in zip(chs[:-1], chs[1:]):
            blocks.append([
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                self._norm(c_out), nn.LeakyReLU(0.2, inplace=True)])
        if dropout > 0:
            # Element-wise Dropout after each LeakyReLU (the original GAN's D used dropout,
            # Goodfellow et al. 2014). Appended *last* in each block so the indices of the
            # conv and BN inside the Sequential, hence the state-dict keys (blocks.1.0.weight,
            # blocks.1.1.running_mean, ...), are the same with and without it.
            for layers in blocks:
                layers.append(nn.Dropout(self.dropout))
        self.blocks = nn.ModuleList(nn.Sequential(*layers) for layers in blocks)
        # A conv over the whole s0 x s0 map: one logit per image, no sigmoid (losses take logits).
        self.head = DotHead2d(chs[-1], 1, self.s0, 1, 0, bias=True)
        init_dcgan_(self)

    def _norm(self, num_channels: int) -> nn.Module:
        return nn.BatchNorm2d(num_channels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, w*2^(n-1), s0, s0) map before the logit conv (for a projection D)."""
        h = x
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).reshape(-1)

    def freeze_blocks(self) -> list[nn.Module]:
        """FreezeD groups (Mo et al. 2020), input to output: each strided conv block, then
        the logit head."""
        return list(self.blocks) + [self.head]


# ============================================================================== conditional
@COND_GENERATORS.register("dcgan")
class CondDCGANGenerator(ConditionalGenerator, DCGANGenerator):
    """Class-conditional DCGAN generator: ``cond='cbn'`` (default) or ``'concat'``.

    ``G(z (N, z_dim), y (N,)) -> (N, channels, img_size, img_size)`` in [-1, 1]. ``cbn``:
    every BN of the DCGAN G (made by ``_norm()``) is conditional; ``concat``: the first
    transposed conv takes z_dim + e channels. Raises ValueError for bad arguments.
    """

    family = "dcgan"

    def __init__(self, *, img_size: int, channels: int, n_classes: int, z_dim: int = 100,
                 width: int = 64, cond: str = "cbn", embed_dim: int = 0,
                 upsample: str = "deconv"):
        super().__init__(img_size=img_size, channels=channels, z_dim=z_dim, width=width,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim, upsample=upsample)

    def _generate(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        return run_blocks(self.blocks, z.reshape(z.shape[0], -1, 1, 1), y)


@COND_DISCRIMINATORS.register("dcgan")
class CondDCGANDiscriminator(ConditionalDiscriminator, DCGANDiscriminator):
    """Class-conditional DCGAN discriminator: ``cond='projection'`` (default), ``'concat'``
    or ``'acgan'``.

    ``D(x (N, channels, img_size, img_size), y (N,)) -> logits (N,)``. phi(x) is the whole
    (N, c, s0, s0) map before the logit conv, flattened for the projection: psi (the head conv
    over the map) is then exactly a linear function of phi, as in eq. (3). ``concat``: e
    constant label-map channels enter with the image. ``acgan``: a class head mirroring the
    logit head (a conv over the s0 x s0 map). Raises ValueError for bad arguments.
    """

    family = "dcgan"

    def __init__(self, *, img_size: int, channels: int, n_classes: int, width: int = 64,
                 dropout: float = 0.0, cond: str = "projection", embed_dim: int = 0):
        super().__init__(img_size=img_size, channels=channels, width=width, dropout=dropout,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim)

    def _class_head(self) -> nn.Module:
        head = super()._class_head()          # a conv over the s0 x s0 map, DCGAN's init
        nn.init.normal_(head.weight, 0.0, 0.02)
        nn.init.zeros_(head.bias)
        return head
