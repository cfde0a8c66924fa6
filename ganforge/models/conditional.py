"""Class-conditional variants of the mlp and DCGAN families: ``G(z, y)`` and ``D(x, y)``
(the ResNet family's live in :mod:`ganforge.models.resnet`).

Each is the family's unconditional network behind a conditioning mixin of
:mod:`ganforge.models.conditioning` (:class:`ConditionalGenerator`,
:class:`ConditionalDiscriminator`), which owns every label layer, the checks and the
label-aware ``forward``; the classes here give only the family hooks. They reach the
unconditional networks through the extension points those were written with
(``in_features``/``in_channels``, ``blocks``, ``_norm()``, ``features()``), so an unconditional
and a conditional DCGAN share every layer that is not about the label.

Built like every network, with ``n_classes`` among the keyword arguments::

    G = models.build("G", "dcgan", img_size=32, channels=1, z_dim=100, width=32,
                     n_classes=10, cond="cbn")
    D = models.build("D", "dcgan", img_size=32, channels=1, width=32,
                     n_classes=10, cond="projection")

``models.build`` sends any build with ``n_classes`` to the conditional registries below, so
the stored ``spec`` (family name + kwargs, ``n_classes`` and ``cond`` included) rebuilds the
exact network with ``models.from_spec`` (DESIGN lesson 5), and ``family_names()`` and the
unconditional contract are untouched.

Conditioning, per network (``cond=``):

=============  =======================================================================
G ``concat``   a learned label embedding concatenated to z (Mirza & Osindero 2014)
G ``cbn``      conditional BatchNorm: BN without affine, then per-class gain and bias
               (de Vries et al. 2017; Miyato & Koyama 2018 §4 use it in G); the mlp G,
               which has no BN, gets one after each hidden Linear
D ``concat``   the label embedding enters with the image: as extra constant input
               channels (a "label map", dcgan) or concatenated to the flattened image (mlp)
D ``projection``  Miyato & Koyama 2018, eq. (3): D(x, y) = psi(phi(x)) + embed(y) . phi(x)
               with phi = ``features(x)`` flattened and psi the family's existing head
D ``acgan``    Odena et al. 2017: an unconditional real/fake logit plus a class head on the
               same features; ``logits_and_classes`` returns both
=============  =======================================================================

``G(z)`` without ``y`` generates the classes 0, 1, ..., K-1 in turn (:func:`default_labels`).
Every conditional D has ``logits_and_classes(x, y) -> (logits (N,), class_logits (N, K) or
None)``; ``forward(x, y)`` returns the logits alone. ``y`` is an int64 tensor of class indices.

The shared pieces (``RECIPES``, ``recipe``, ``cond_family_names``, ``ConditionalBatchNorm``,
``default_labels``, ``G_METHODS``, ``D_METHODS``) are defined in
:mod:`ganforge.models.conditioning` and importable from here too.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ganforge.models import COND_DISCRIMINATORS, COND_GENERATORS
from ganforge.models.conditioning import (ConditionalBatchNorm, ConditionalDiscriminator,
                                          ConditionalGenerator, run_blocks)
from ganforge.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.models.mlp import MLPDiscriminator, MLPGenerator

__all__ = ["CondDCGANGenerator", "CondDCGANDiscriminator", "CondMLPGenerator",
           "CondMLPDiscriminator"]


# ============================================================================== DCGAN
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


# ============================================================================== mlp
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
