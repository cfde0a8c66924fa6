"""CycleGAN networks (Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image Translation
using Cycle-Consistent Adversarial Networks", appendix 7.2), scaled for small images.

These are *image-to-image* networks: ``G(x)`` takes an image, not noise, and ``D(x)`` returns
a map of patch logits, not one logit per image. They are registered in the same
``GENERATORS``/``DISCRIMINATORS`` registries as the noise-to-image families (so checkpoints
rebuild them through the same :func:`ganforge.models.from_spec`), but carry the class marker
``image_to_image = True``; :func:`ganforge.models.family_names` leaves them out, so
``--model`` and the G(z) contract tests never see them.

Generator ``cyclegan-resnet`` (paper's notation; k = ``width``, 64 in the paper)::

    c7s1-k        ReflectionPad(3), Conv 7x7 s1, InstanceNorm, ReLU
    d2k, d4k      Conv 3x3 s2 (zero padding 1), InstanceNorm, ReLU   (``n_down`` = 2 of them)
    n x R4k       residual blocks: [ReflectionPad(1), Conv 3x3, IN, ReLU,
                                    ReflectionPad(1), Conv 3x3, IN] + identity
    u2k, uk       ConvTranspose 3x3 s1/2 (padding 1, output_padding 1), InstanceNorm, ReLU
    c7s1-C        ReflectionPad(3), Conv 7x7 s1, tanh (no norm)

The paper uses n = 6 blocks at 128 px and n = 9 at 256 px; for 28-32 px images a smaller
``width`` (16-32) and n = 6 keep a CPU step fast. ``img_size`` must be divisible by
``2**n_down`` (28 -> 14 -> 7, 32 -> 16 -> 8). Instance norm is affine-free and convolutions
keep their bias, as in the authors' code (``norm='instance'``). Output in [-1, 1], same shape
as the input.

Discriminator ``patchgan`` (the 70x70 PatchGAN at ``n_layers = 3``)::

    C64           Conv 4x4 s2 p1, LeakyReLU(0.2)       (no norm on the first layer)
    C128, C256    Conv 4x4 s2 p1, InstanceNorm, LeakyReLU(0.2)   (``n_layers - 1`` of them)
    C512          Conv 4x4 s1 p1, InstanceNorm, LeakyReLU(0.2)
    out           Conv 4x4 s1 p1 -> 1 channel: a map of raw patch logits (N, 1, h, w)

Channel counts are ``width * min(2**i, 8)``. Each output logit sees a
``receptive_field(n_layers)`` square of the input: 16, 34, 70 px for 1, 2, 3 layers, so
small images use fewer layers (``n_layers = 2`` at 28-32 px gives a 5x5 / 6x6 map of
34x34 patches). Losses average over the map (every patch is one real/fake decision).

Weights are initialised from N(0, 0.02) (paper §4 / the authors' ``init_type='normal'``).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn

from ganforge.models.build import DISCRIMINATORS, GENERATORS


def check_common(who: str, channels: int, width: int) -> None:
    """ValueError unless ``channels`` and ``width`` are positive integers (every
    image-to-image network's first check)."""
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{who}: channels={channels!r} must be a positive integer (1 or 3)")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"{who}: width={width!r} must be a positive integer")


def init_normal_(module: nn.Module, std: float = 0.02) -> None:
    """Conv weights ~ N(0, std), biases 0 (the authors' default initialisation)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _norm(channels: int) -> nn.Module:
    # affine=False, no running statistics: the authors' 'instance' norm. Normalising each
    # image on its own is what lets the translation not depend on the rest of the batch.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """R_k: two 3x3 convolutions with reflection padding and instance norm, plus identity."""

    def __init__(self, ch: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


@GENERATORS.register("cyclegan-resnet", help="CycleGAN ResNet image-to-image generator "
                                              "(c7s1-k, d2k, d4k, n x R4k, u2k, uk, c7s1-C)")
class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator: an image in, an image of the same shape out."""

    image_to_image = True

    def __init__(self, *, img_size: int = 0, channels: int = 3, width: int = 64,
                 n_blocks: int = 9, n_down: int = 2, out_channels: int = 0):
        super().__init__()
        check_common("cyclegan-resnet", channels, width)
        if not isinstance(n_blocks, int) or n_blocks < 0:
            raise ValueError(f"cyclegan-resnet: n_blocks={n_blocks!r} must be >= 0 "
                             f"(the paper uses 6 at 128 px and 9 at 256 px)")
        if not isinstance(n_down, int) or n_down < 0:
            raise ValueError(f"cyclegan-resnet: n_down={n_down!r} must be >= 0")
        if img_size and img_size % (2 ** n_down):
            raise ValueError(f"cyclegan-resnet: img_size={img_size} must be divisible by "
                             f"2**n_down = {2 ** n_down} (the generator halves the size "
                             f"{n_down} times and doubles it back); e.g. 28 or 32 with "
                             f"n_down=2, or resize the data (data.img_size=...)")
        self.img_size, self.channels = img_size, channels
        self.out_channels = out_channels or channels
        self.width, self.n_blocks, self.n_down = width, n_blocks, n_down
        w = width
        layers: List[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7),
                                   _norm(w), nn.ReLU(True)]                       # c7s1-k
        for _ in range(n_down):                                                   # d2k, d4k
            layers += [nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), _norm(2 * w), nn.ReLU(True)]
            w *= 2
        layers += [ResidualBlock(w) for _ in range(n_blocks)]                     # R4k x n
        for _ in range(n_down):                                                   # u2k, uk
            layers += [nn.ConvTranspose2d(w, w // 2, 3, stride=2, padding=1, output_padding=1),
                       _norm(w // 2), nn.ReLU(True)]
            w //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, self.out_channels, 7), nn.Tanh()]  # c7s1-C
        self.net = nn.Sequential(*layers)
        init_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"cyclegan-resnet expects images of shape (N, {self.channels}, H, W), "
                             f"got {tuple(x.shape)}")
        return self.net(x)


def receptive_field(n_layers: int) -> int:
    """Input pixels seen by one PatchGAN output logit: 16, 34, 70, 142 for 1..4 layers."""
    r = 4 + 3            # the two stride-1 4x4 convolutions at the end
    for _ in range(n_layers):
        r = (r - 1) * 2 + 4
    return r


@DISCRIMINATORS.register("patchgan", help="PatchGAN discriminator: a map of patch logits "
                                          "(70x70 patches at n_layers=3)")
class PatchGANDiscriminator(nn.Module):
    """PatchGAN: raw logits for every (overlapping) patch, shape (N, 1, h, w)."""

    image_to_image = True

    def __init__(self, *, img_size: int = 0, channels: int = 3, width: int = 64,
                 n_layers: int = 3):
        super().__init__()
        check_common("patchgan", channels, width)
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"patchgan: n_layers={n_layers!r} must be >= 1")
        if img_size:
            out = self.map_size(img_size, n_layers)
            if out < 1:
                smallest = next(s for s in range(4, 4096) if self.map_size(s, n_layers) >= 1)
                raise ValueError(f"patchgan: img_size={img_size} is too small for "
                                 f"n_layers={n_layers} (no output left); use fewer layers "
                                 f"(e.g. cyclegan.d_layers=2 at 28-32 px) or images of at "
                                 f"least {smallest} px")
        self.img_size, self.channels, self.width, self.n_layers = img_size, channels, width, n_layers
        self.receptive_field = receptive_field(n_layers)
        layers: List[nn.Module] = [nn.Conv2d(channels, width, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]                        # C64
        c = width
        for i in range(1, n_layers):                                               # C128, C256
            nc = width * min(2 ** i, 8)
            layers += [nn.Conv2d(c, nc, 4, stride=2, padding=1), _norm(nc), nn.LeakyReLU(0.2, True)]
            c = nc
        nc = width * min(2 ** n_layers, 8)                                         # C512
        layers += [nn.Conv2d(c, nc, 4, stride=1, padding=1), _norm(nc), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(nc, 1, 4, stride=1, padding=1)]                       # patch logits
        self.net = nn.Sequential(*layers)
        init_normal_(self)

    @staticmethod
    def map_size(img_size: int, n_layers: int) -> int:
        """Side of the logit map for a square input of ``img_size``."""
        s = img_size
        for _ in range(n_layers):
            s = (s + 2 - 4) // 2 + 1
        for _ in range(2):
            s = s + 2 - 4 + 1
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def freeze_blocks(self) -> List[nn.Module]:
        """FreezeD groups (Mo et al. 2020), input to output: each conv with its norm and
        activation; the last group is the patch-logit conv (the head)."""
        groups: List[List[nn.Module]] = []
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                groups.append([])
            groups[-1].append(m)
        return [nn.ModuleList(g) for g in groups]
