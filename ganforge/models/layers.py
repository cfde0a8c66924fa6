"""Drop-in layers that compute badly shaped convolutions as plain matrix products.

oneDNN runs DCGAN's inner convolutions near the CPU's matmul peak, but three layers have
shapes it handles poorly (measured at 32 px, 1 thread: 25 %, 12 % and 1 % of peak). Each class
below subclasses the torch layer it replaces — same parameters, same state-dict keys, same
initialisation, same outputs to float rounding — and only changes ``forward``; any input it
was not written for falls back to the parent's ``forward``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _plain(layer: nn.modules.conv._ConvNd) -> bool:
    return (layer.groups == 1 and all(d == 1 for d in layer.dilation)
            and all(p == 0 for p in getattr(layer, "output_padding", (0, 0)))
            and layer.padding_mode == "zeros")


def _keep_format(out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # Match the module's memory format so the next layer gets what it expects.
    if weight.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


class ProjectTranspose2d(nn.ConvTranspose2d):
    """``ConvTranspose2d`` applied to a 1x1 map (DCGAN's "project and reshape" from z):
    exactly ``z @ W`` with W seen as (C_in, k*k*C_out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() != 4 or x.shape[-2:] != (1, 1) or self.stride != (1, 1)
                or self.padding != (0, 0) or not _plain(self)):
            return super().forward(x)
        b = x.shape[0]
        weight = self.weight     # read once: under spectral norm each read is a power iteration
        cin, cout, kh, kw = weight.shape
        w = weight.permute(0, 2, 3, 1).reshape(cin, kh * kw * cout)
        out = torch.mm(x.reshape(b, cin), w)
        out = out.view(b, kh, kw, cout).permute(0, 3, 1, 2)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return _keep_format(out, weight)


class FoldTranspose2d(nn.ConvTranspose2d):
    """``ConvTranspose2d`` to few output channels (an image layer): one GEMM producing every
    output patch, then ``F.fold`` (col2im) adds the overlapping patches."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not _plain(self) or self.out_channels > 4:
            return super().forward(x)
        b, cin, h, w_ = x.shape
        weight = self.weight     # read once (see ProjectTranspose2d)
        _, cout, kh, kw = weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        cols = torch.mm(x.permute(0, 2, 3, 1).reshape(b * h * w_, cin), weight.reshape(cin, cout * kh * kw))
        cols = cols.view(b, h * w_, cout * kh * kw).transpose(1, 2)
        out = F.fold(cols, output_size=((h - 1) * sh - 2 * ph + kh, (w_ - 1) * sw - 2 * pw + kw),
                     kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw))
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype)
        return out


class DotHead2d(nn.Conv2d):
    """``Conv2d`` whose kernel covers the whole input map (D's logit layer): one dot product
    per image, i.e. a linear layer over the flattened map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() != 4 or tuple(x.shape[-2:]) != tuple(self.kernel_size)
                or self.padding != (0, 0) or not _plain(self)):
            return super().forward(x)
        b = x.shape[0]
        w = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)
        return F.linear(x.permute(0, 2, 3, 1).reshape(b, -1), w, self.bias).view(b, -1, 1, 1)
