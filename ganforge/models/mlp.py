"""The fully-connected GAN of Goodfellow et al. 2014, as in the popular tutorials.

G: z -> Linear(w) -> Linear(2w) -> Linear(4w) -> Linear(C*H*W) -> tanh -> (N, C, H, W)
D: flatten -> Linear(4w) -> Linear(2w) -> Linear(w) -> Linear(1) -> raw logit (N,)

Hidden layers use LeakyReLU(0.2) in both networks (the tutorials' choice; the paper's G used
ReLU/sigmoid and its D maxout, which nobody reproduces today). D may use dropout (the paper
trained D with dropout); it defaults to 0. Works at any image size, since nothing is spatial.

Class-conditional variants (:class:`CondMLPGenerator`, :class:`CondMLPDiscriminator`, at the end)
use the layout written for them: the hidden stack is ``body`` and the final projection is
``head``; the input width is ``in_features`` (G: z_dim, D: C*H*W), widened to concatenate a
label embedding (G) or the flattened image with one (D); a projection term works on
``features(x)``.
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
    ConditionalBatchNorm,
    ConditionalDiscriminator,
    ConditionalGenerator,
    run_blocks,
)


def _check_common(img_size: int, channels: int, width: int) -> None:
    if not isinstance(img_size, int) or img_size < 1:
        raise ValueError(f"mlp: img_size={img_size!r} must be a positive integer")
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"mlp: channels={channels!r} must be a positive integer (1 or 3)")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"mlp: width={width!r} must be a positive integer")


@GENERATORS.register("mlp")
class MLPGenerator(nn.Module):
    """Fully-connected generator (Goodfellow et al. 2014): z -> w, 2w, 4w -> image, tanh."""

    def __init__(self, *, img_size: int, channels: int, z_dim: int = 100, width: int = 256):
        super().__init__()
        _check_common(img_size, channels, width)
        if not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"mlp: z_dim={z_dim!r} must be a positive integer")
        self.img_size, self.channels, self.z_dim, self.width = img_size, channels, z_dim, width
        self.in_features = z_dim
        dims = [self.in_features, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), nn.LeakyReLU(0.2, inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], channels * img_size * img_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.head(self.body(z)))
        return x.view(z.shape[0], self.channels, self.img_size, self.img_size)


@DISCRIMINATORS.register("mlp")
class MLPDiscriminator(nn.Module):
    """Fully-connected discriminator: flatten -> 4w, 2w, w (LeakyReLU 0.2) -> one raw logit."""

    def __init__(self, *, img_size: int, channels: int, width: int = 256, dropout: float = 0.0):
        super().__init__()
        _check_common(img_size, channels, width)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"mlp: dropout={dropout!r} must be in [0, 1)")
        self.img_size, self.channels, self.width = img_size, channels, width
        self.in_features = channels * img_size * img_size
        dims = [self.in_features, 4 * width, 2 * width, width]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), nn.LeakyReLU(0.2, inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden activations (N, width): what a projection D would pair with a label."""
        return self.body(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).view(-1)

    def freeze_blocks(self) -> list[nn.Module]:
        """FreezeD groups (Mo et al. 2020), input to output: each hidden Linear with its
        activation (and dropout), then the head. Read from ``body`` at call time, so a subclass
        that replaced a layer is grouped correctly."""
        groups: list[list[nn.Module]] = []
        for m in self.body:
            if isinstance(m, nn.Linear) or not groups:
                groups.append([])
            groups[-1].append(m)
        return [nn.ModuleList(g) for g in groups] + [self.head]


# ============================================================================== conditional
@COND_GENERATORS.register("mlp")
class CondMLPGenerator(ConditionalGenerator, MLPGenerator):
    """Class-conditional fully-connected generator: ``cond='cbn'`` (default) or ``'concat'``.

    ``G(z (N, z_dim), y (N,)) -> (N, channels, img_size, img_size)`` in [-1, 1]. ``cbn``:
    a conditional BN after every hidden Linear (the unconditional mlp G has no
    normalisation); ``concat``: the first Linear takes z_dim + e inputs. Raises ValueError
    for bad arguments.
    """

    family = "mlp"

    def __init__(self, *, img_size: int, channels: int, n_classes: int, z_dim: int = 100,
                 width: int = 256, cond: str = "cbn", embed_dim: int = 0):
        super().__init__(img_size=img_size, channels=channels, z_dim=z_dim, width=width,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim)

    def _add_label_norms(self) -> None:
        layers: list[nn.Module] = []
        for m in self.body:
            layers.append(m)
            if isinstance(m, nn.Linear):
                layers.append(ConditionalBatchNorm(m.out_features, self.n_classes))
        self.body = nn.Sequential(*layers)

    def _generate(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        x = torch.tanh(self.head(run_blocks([self.body], z, y)))
        return x.view(z.shape[0], self.channels, self.img_size, self.img_size)


@COND_DISCRIMINATORS.register("mlp")
class CondMLPDiscriminator(ConditionalDiscriminator, MLPDiscriminator):
    """Class-conditional fully-connected discriminator: ``cond='projection'`` (default),
    ``'concat'`` or ``'acgan'``.

    ``D(x (N, channels, img_size, img_size), y (N,)) -> logits (N,)``. phi(x) is the last
    hidden layer (N, width). ``concat``: the label embedding is concatenated to the flattened
    image, so the first Linear takes C*H*W + e inputs. Raises ValueError for bad arguments.
    """

    family = "mlp"
    concat_input = "flat"

    def __init__(self, *, img_size: int, channels: int, n_classes: int, width: int = 256,
                 dropout: float = 0.0, cond: str = "projection", embed_dim: int = 0):
        super().__init__(img_size=img_size, channels=channels, width=width, dropout=dropout,
                         n_classes=n_classes, cond=cond, embed_dim=embed_dim)

    def _widen_input(self, extra: int) -> None:
        # [flattened image, label embedding]: a wider first Linear
        first = self.body[0]
        self.body[0] = nn.Linear(first.in_features + extra, first.out_features)
        self.in_features = first.in_features + extra
