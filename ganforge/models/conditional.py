"""Class-conditional variants of the mlp and DCGAN families: ``G(z, y)`` and ``D(x, y)``
(the ResNet family's live in :mod:`ganforge.models.resnet`, built from the pieces here).

They subclass the unconditional networks through the extension points those were written with
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
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

from ganforge.models import COND_DISCRIMINATORS, COND_GENERATORS
from ganforge.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.models.mlp import MLPDiscriminator, MLPGenerator

G_METHODS = ("concat", "cbn")
D_METHODS = ("concat", "projection", "acgan")

#: ``cond.method`` recipes: (G conditioning, D conditioning), each as in its paper.
RECIPES = {
    "concat": ("concat", "concat"),          # Mirza & Osindero 2014
    "cbn": ("cbn", "concat"),                # de Vries et al. 2017 (CBN in G)
    "projection": ("cbn", "projection"),     # Miyato & Koyama 2018 (their G uses CBN)
    "acgan": ("concat", "acgan"),            # Odena et al. 2017 (label fed to G's input)
}


def recipe(method: str, g_method: str = "auto") -> Tuple[str, str]:
    """(G conditioning, D conditioning) for ``cond.method`` (and an optional G override)."""
    if method not in RECIPES:
        raise ValueError(f"cond.method='{method}': choose one of {', '.join(RECIPES)}")
    g, d = RECIPES[method]
    if g_method not in ("auto", "") and g_method not in G_METHODS:
        raise ValueError(f"cond.g_method='{g_method}': choose auto or one of {', '.join(G_METHODS)}")
    return (g if g_method in ("auto", "") else g_method), d


def cond_family_names() -> list[str]:
    """Families with both a conditional G and a conditional D."""
    return sorted(set(COND_GENERATORS.names()) & set(COND_DISCRIMINATORS.names()))


def _check_cond(family: str, kind: str, n_classes, cond: str, methods, embed_dim) -> int:
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"{family} {kind}: n_classes={n_classes!r}; a class-conditional model "
                         f"needs at least 2 classes")
    if cond not in methods:
        raise ValueError(f"{family} {kind}: cond='{cond}' is not a {kind} conditioning method; "
                         f"choose one of {', '.join(methods)}")
    if not isinstance(embed_dim, int) or embed_dim < 0:
        raise ValueError(f"{family} {kind}: embed_dim={embed_dim!r} must be >= 0 "
                         f"(0: one dimension per class)")
    return embed_dim or n_classes


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose gain and bias are looked up per class (de Vries et al. 2017, eq. 2-3;
    the "conditional batch normalization" of Miyato & Koyama 2018, §4):

        CBN(h, y) = gamma_y * (h - E[h]) / sqrt(Var[h] + eps) + beta_y

    Works on (N, C) and (N, C, H, W) activations. gamma starts at N(1, 0.02) and beta at 0,
    DCGAN's initialisation of BN's affine parameters, so at step 0 every class is plain BN.
    """

    def __init__(self, num_features: int, n_classes: int):
        super().__init__()
        self.num_features, self.n_classes = num_features, n_classes
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(n_classes, num_features)
        self.bias = nn.Embedding(n_classes, num_features)
        nn.init.normal_(self.gain.weight, 1.0, 0.02)
        nn.init.zeros_(self.bias.weight)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if h.dim() == 2:   # BatchNorm2d on (N, C, 1, 1) normalises exactly like BatchNorm1d
            out = self.bn(h[:, :, None, None])[:, :, 0, 0]
        else:
            out = self.bn(h)
        shape = (h.shape[0], self.num_features) + (1,) * (h.dim() - 2)
        return out * self.gain(y).view(shape) + self.bias(y).view(shape)


def default_labels(n: int, n_classes: int, device) -> torch.Tensor:
    """Labels for ``G(z)`` called without ``y``: 0, 1, ..., K-1, 0, 1, ... (class-balanced and
    deterministic), so code written for unconditional generators (FID of a whole model,
    progress grids) works on conditional ones too."""
    return torch.arange(n, device=device) % n_classes


def _run_blocks(blocks, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run ``nn.Sequential`` blocks, handing the label to the layers that take one."""
    for block in blocks:
        for layer in block:
            h = layer(h, y) if isinstance(layer, ConditionalBatchNorm) else layer(h)
    return h


class _ConditionalD:
    """Shared API of the conditional discriminators."""

    d_cond: str

    def logits_and_classes(self, x: torch.Tensor, y: torch.Tensor
                           ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(logits (N,), class logits (N, K) for acgan else None) from the family's
        ``features(x, y)`` (a map or a vector) and ``head``."""
        h = self.features(x, y)
        logits = self.head(h).reshape(-1)
        if self.d_cond == "projection":   # Miyato & Koyama 2018, eq. 3: + embed(y) . phi(x)
            return logits + (self.embed(y) * h.flatten(1)).sum(1), None
        if self.d_cond == "acgan":
            return logits, self.classifier(h).flatten(1)
        return logits, None

    def with_label_maps(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """``cond='concat'`` for a convolutional D: the label embedding as constant extra
        input channels."""
        if y is None:
            raise ValueError(f"{self.spec_name} D (cond='concat') needs the labels y with the images")
        n, _, h, w = x.shape
        lab = self.embed(y).to(x.dtype)[:, :, None, None].expand(n, -1, h, w)
        return torch.cat([x, lab], dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, with_classes: bool = False):
        """Logits (N,); with ``with_classes`` the pair ``logits_and_classes(x, y)``. Tasks call
        D through ``forward`` only, so DDP's wrapper sees every call."""
        out = self.logits_and_classes(x, y)
        return out if with_classes else out[0]

    def freeze_blocks(self) -> list:
        """FreezeD groups (Mo et al. 2020) of the family's D, with the label layers placed
        where they act: a concat embedding enters with the image (first block); a projection
        embedding or an AC-GAN classifier reads the last features (head)."""
        blocks = list(super().freeze_blocks())
        if self.d_cond == "concat":
            blocks[0] = nn.ModuleList([blocks[0], self.embed])
        elif self.d_cond == "projection":
            blocks[-1] = nn.ModuleList([blocks[-1], self.embed])
        else:
            blocks[-1] = nn.ModuleList([blocks[-1], self.classifier])
        return blocks


# ============================================================================== DCGAN
@COND_GENERATORS.register("dcgan")
class CondDCGANGenerator(DCGANGenerator):
    """Class-conditional DCGAN generator: ``cond='cbn'`` (default) or ``'concat'``."""

    def __init__(self, *, img_size: int, channels: int, n_classes: int, z_dim: int = 100,
                 width: int = 64, cond: str = "cbn", embed_dim: int = 0):
        e = _check_cond("dcgan", "G", n_classes, cond, G_METHODS, embed_dim)
        # Plain attributes are allowed before Module.__init__; _norm() reads them while the
        # base class builds its blocks.
        self.n_classes, self.cond = n_classes, cond
        extra = e if cond == "concat" else 0
        # concat: the base class builds its first layer for z_dim + e input channels
        # (``in_channels``), then z_dim is set back to what callers feed.
        super().__init__(img_size=img_size, channels=channels, z_dim=z_dim + extra, width=width)
        self.z_dim = z_dim
        self.embed_dim = extra
        if cond == "concat":
            self.embed = nn.Embedding(n_classes, e)   # N(0, 1), the scale of z

    def _norm(self, num_channels: int) -> nn.Module:
        if self.cond == "cbn":
            return ConditionalBatchNorm(num_channels, self.n_classes)
        return nn.BatchNorm2d(num_channels)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if y is None:
            y = default_labels(z.shape[0], self.n_classes, z.device)
        if self.cond == "concat":
            z = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)
        return _run_blocks(self.blocks, z.reshape(z.shape[0], -1, 1, 1), y)


@COND_DISCRIMINATORS.register("dcgan")
class CondDCGANDiscriminator(_ConditionalD, DCGANDiscriminator):
    """Class-conditional DCGAN discriminator: ``cond='projection'`` (default), ``'concat'``
    or ``'acgan'``."""

    def __init__(self, *, img_size: int, channels: int, n_classes: int, width: int = 64,
                 dropout: float = 0.0, cond: str = "projection", embed_dim: int = 0):
        e = _check_cond("dcgan", "D", n_classes, cond, D_METHODS, embed_dim)
        extra = e if cond == "concat" else 0
        # concat: the first conv sees the image plus e constant "label map" channels.
        super().__init__(img_size=img_size, channels=channels + extra, width=width,
                         dropout=dropout)
        self.channels, self.n_classes, self.d_cond, self.embed_dim = channels, n_classes, cond, extra
        c_last = self.head.in_channels
        if cond == "concat":
            self.embed = nn.Embedding(n_classes, e)
        elif cond == "projection":
            # phi(x) is the whole s0 x s0 feature map, flattened: psi (the head conv over the
            # map) is then exactly a linear function of phi, as in eq. (3).
            dim = c_last * self.s0 * self.s0
            self.embed = nn.Embedding(n_classes, dim)
            nn.init.normal_(self.embed.weight, 0.0, dim ** -0.5)
        else:  # acgan: a class head mirroring the logit head
            self.classifier = nn.Conv2d(c_last, n_classes, self.s0, 1, 0, bias=True)
            nn.init.normal_(self.classifier.weight, 0.0, 0.02)
            nn.init.zeros_(self.classifier.bias)

    spec_name = "dcgan"

    def features(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return super().features(self.with_label_maps(x, y) if self.d_cond == "concat" else x)


# ============================================================================== mlp
@COND_GENERATORS.register("mlp")
class CondMLPGenerator(MLPGenerator):
    """Class-conditional fully-connected generator: ``cond='cbn'`` (default) or ``'concat'``."""

    def __init__(self, *, img_size: int, channels: int, n_classes: int, z_dim: int = 100,
                 width: int = 256, cond: str = "cbn", embed_dim: int = 0):
        e = _check_cond("mlp", "G", n_classes, cond, G_METHODS, embed_dim)
        extra = e if cond == "concat" else 0
        super().__init__(img_size=img_size, channels=channels, z_dim=z_dim + extra, width=width)
        self.z_dim, self.n_classes, self.cond, self.embed_dim = z_dim, n_classes, cond, extra
        if cond == "concat":
            self.embed = nn.Embedding(n_classes, e)
        else:  # CBN after every hidden Linear (the unconditional mlp G has no normalisation)
            layers: list[nn.Module] = []
            for m in self.body:
                layers.append(m)
                if isinstance(m, nn.Linear):
                    layers.append(ConditionalBatchNorm(m.out_features, n_classes))
            self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if y is None:
            y = default_labels(z.shape[0], self.n_classes, z.device)
        if self.cond == "concat":
            z = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)
        h = _run_blocks([self.body], z, y)
        x = torch.tanh(self.head(h))
        return x.view(z.shape[0], self.channels, self.img_size, self.img_size)


@COND_DISCRIMINATORS.register("mlp")
class CondMLPDiscriminator(_ConditionalD, MLPDiscriminator):
    """Class-conditional fully-connected discriminator: ``cond='projection'`` (default),
    ``'concat'`` or ``'acgan'``."""

    def __init__(self, *, img_size: int, channels: int, n_classes: int, width: int = 256,
                 dropout: float = 0.0, cond: str = "projection", embed_dim: int = 0):
        e = _check_cond("mlp", "D", n_classes, cond, D_METHODS, embed_dim)
        super().__init__(img_size=img_size, channels=channels, width=width, dropout=dropout)
        self.n_classes, self.d_cond = n_classes, cond
        self.embed_dim = e if cond == "concat" else 0
        if cond == "concat":   # widen the input layer for [flattened image, label embedding]
            first = self.body[0]
            self.body[0] = nn.Linear(first.in_features + e, first.out_features)
            self.in_features = first.in_features + e
            self.embed = nn.Embedding(n_classes, e)
        elif cond == "projection":
            self.embed = nn.Embedding(n_classes, width)
            nn.init.normal_(self.embed.weight, 0.0, width ** -0.5)
        else:
            self.classifier = nn.Linear(width, n_classes)

    def features(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.d_cond == "concat":
            if y is None:
                raise ValueError("mlp D (cond='concat') needs the labels y with the images")
            h = torch.cat([h, self.embed(y).to(h.dtype)], dim=1)
        return self.body(h)
