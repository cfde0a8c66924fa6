"""The pix2pix U-Net generator (Isola, Zhu, Zhou & Efros 2017, "Image-to-Image Translation
with Conditional Adversarial Networks", CVPR; section 3.2.1 and appendix 6.1.1), scaled to the
image size.

An encoder-decoder whose i-th decoder layer also sees the (n - i)-th encoder layer's output
(a skip connection: concatenated channels), so the low-level structure the input and output
share (edges, layout) need not squeeze through the bottleneck. Paper notation (k = ``width``,
64 in the paper; Ck: Conv 4x4 stride 2 + norm + activation; CDk: the same with dropout 0.5)::

    encoder  C64 - C128 - C256 - C512 - C512 - ...       (LeakyReLU 0.2; no norm on the first)
    decoder  ... - CD512 - CD512 - C512 - C256 - C128 - C64 -> ConvT to C_out, tanh
             (ReLU; each layer's input is its own input concatenated with the mirror encoder
             layer's output)

Channels are ``width * min(2**i, 8)``. ``n_down`` stride-2 layers halve the size each time:
the paper uses 8 at 256 px (down to 1x1); by default here as many as the size divides by 2,
at most 8, and never below a 1x1 map (32 px: 5; 28 px: 2, 28 -> 14 -> 7). The innermost layer
has no norm (as in the authors' code). Dropout (``dropout``, 0.5) on the innermost up to three
decoder layers is the generator's only noise, as in the paper (it found input noise z ignored).

Name map to the paper and the authors' code: the paper's BatchNorm at batch size 1 is instance
normalisation; here it is ``nn.InstanceNorm2d(affine=True)`` at any batch size, so a sample's
output never depends on the rest of its batch. The authors keep dropout on at test time;
ganforge's translation is deterministic (eval mode: dropout off), the paper reports the
test-time dropout noise made "only minor stochasticity" in the output.

Input: the condition image, float (N, ``channels``, H, W) in [-1, 1]; output: (N,
``out_channels``, H, W) in [-1, 1]. Weights from N(0, 0.02) (the authors' init).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn

from ganforge.models.build import GENERATORS
from ganforge.models.cyclegan import check_common, init_normal_

#: the paper's depth at 256 px (down to 1x1); never more
MAX_DOWN = 8


def default_down(img_size: int) -> int:
    """Stride-2 layers for ``img_size``: as many as halve it exactly to a side >= 1, at most
    :data:`MAX_DOWN` (256 -> 8, 64 -> 6, 32 -> 5, 28 -> 2, 16 -> 4)."""
    n, s = 0, int(img_size)
    while n < MAX_DOWN and s % 2 == 0 and s >= 2:
        s //= 2
        n += 1
    return n


@GENERATORS.register("pix2pix-unet", help="pix2pix U-Net image-to-image generator (Ck encoder, "
                                          "CDk/Ck decoder with skip connections, dropout as noise)")
class UNetGenerator(nn.Module):
    """The pix2pix U-Net: a condition image in, an image of ``out_channels`` out."""

    image_to_image = True

    def __init__(self, *, img_size: int = 0, channels: int = 3, out_channels: int = 0,
                 width: int = 64, n_down: int = 0, dropout: float = 0.5):
        super().__init__()
        check_common("pix2pix-unet", channels, width)
        n_down = n_down or (default_down(img_size) if img_size else 0)
        if not isinstance(n_down, int) or n_down < 1:
            raise ValueError(f"pix2pix-unet: img_size={img_size} cannot be halved even once; "
                             f"use an even size (data.img_size=32, 64, ...)")
        if img_size and img_size % (2 ** n_down):
            raise ValueError(f"pix2pix-unet: img_size={img_size} must be divisible by "
                             f"2**n_down = {2 ** n_down}")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"pix2pix-unet: dropout={dropout} must be in [0, 1)")
        self.img_size, self.channels = img_size, channels
        self.out_channels = out_channels or channels
        self.width, self.n_down, self.dropout = width, n_down, float(dropout)
        chans = [width * min(2 ** i, 8) for i in range(n_down)]
        self.down = nn.ModuleList()
        c_in = channels
        for i, c in enumerate(chans):
            layers: List[nn.Module] = [nn.Conv2d(c_in, c, 4, stride=2, padding=1)]
            if 0 < i < n_down - 1:              # no norm on the first and the innermost
                layers.append(nn.InstanceNorm2d(c, affine=True))
            layers.append(nn.LeakyReLU(0.2, True))
            self.down.append(nn.Sequential(*layers))
            c_in = c
        self.up = nn.ModuleList()
        for j in range(n_down - 1):             # innermost first: back up to chans[0]'s size
            i = n_down - 1 - j                  # the encoder layer this decoder layer mirrors
            c_src = chans[i] if j == 0 else 2 * chans[i]    # skip-concatenated after the first
            layers = [nn.ConvTranspose2d(c_src, chans[i - 1], 4, stride=2, padding=1),
                      nn.InstanceNorm2d(chans[i - 1], affine=True), nn.ReLU(True)]
            if self.dropout and j < 3:          # CD: the innermost three
                layers.append(nn.Dropout(self.dropout))
            self.up.append(nn.Sequential(*layers))
        c_last = chans[0] if n_down == 1 else 2 * chans[0]
        self.out = nn.Sequential(nn.ConvTranspose2d(c_last, self.out_channels, 4, stride=2,
                                                    padding=1), nn.Tanh())
        init_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"pix2pix-unet expects condition images of shape (N, {self.channels}, "
                             f"H, W), got {tuple(x.shape)}")
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        h = skips.pop()                       # the innermost output
        for layer in self.up:
            h = torch.cat([layer(h), skips.pop()], dim=1)
        return self.out(h)
