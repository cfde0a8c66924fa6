"""The conditioning mixins every class-conditional family is built from: ``G(z, y)`` and
``D(x, y)``. Each family's conditional variants live at the end of its own file
(:mod:`ganforge.models.dcgan`, :mod:`ganforge.models.mlp`, :mod:`ganforge.models.resnet`,
:mod:`ganforge.models.r3gan`, :mod:`ganforge.models.fastgan`), built with ``n_classes`` by
:func:`ganforge.models.build`, whose stored spec (``n_classes`` and ``cond`` included) rebuilds
the exact network.

A conditional network is the family's unconditional network with a mixin in front::

    @COND_GENERATORS.register("fam")
    class CondFamGenerator(ConditionalGenerator, FamGenerator):
        family = "fam"
        def __init__(self, *, img_size, channels, n_classes, z_dim=100, width=64,
                     cond="cbn", embed_dim=0):
            super().__init__(img_size=img_size, channels=channels, z_dim=z_dim, width=width,
                             n_classes=n_classes, cond=cond, embed_dim=embed_dim)
        def _generate(self, z, y): ...           # run the family's layers

    @COND_DISCRIMINATORS.register("fam")
    class CondFamDiscriminator(ConditionalDiscriminator, FamDiscriminator):
        family = "fam"
        def __init__(self, *, ..., n_classes, cond="projection", embed_dim=0): super().__init__(...)

The mixins own every label layer (the concat embedding, conditional BatchNorm, the projection
embedding, the AC-GAN class head), the argument checks, the label-aware ``forward`` and
``features``, ``logits_and_classes`` and the FreezeD grouping; a family supplies only the hooks
listed in :class:`ConditionalGenerator` and :class:`ConditionalDiscriminator`. The label layers
are created where the per-family code created them (conditional BN while the base network is
built, every other label layer right after it), so the parameters drawn under a fixed
``torch.manual_seed`` and the ``state_dict`` keys are the same as before the mixins existed.

Conditioning methods (``cond=``), with their papers:

- G ``concat``: a learned label embedding (N, e) concatenated to z (Mirza & Osindero 2014).
- G ``cbn``: conditional BatchNorm, per-class gain and bias (de Vries et al. 2017; Miyato &
  Koyama 2018 §4 use it in G).
- D ``concat``: the label embedding enters with the image, as e constant extra input channels
  (``concat_input = "maps"``) or concatenated to the flattened image (``"flat"``).
- D ``projection``: Miyato & Koyama 2018, eq. (3): D(x, y) = psi(phi(x)) + embed(y) . phi(x).
- D ``acgan``: Odena et al. 2017: the unconditional logit plus a class head on phi(x).

``y`` is always an int64 tensor of class indices in [0, n_classes), shape (N,).
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

import torch
import torch.nn as nn

from ganforge.models.build import COND_DISCRIMINATORS, COND_GENERATORS

G_METHODS = ("concat", "cbn")
D_METHODS = ("concat", "projection", "acgan")

#: ``cond.method`` recipes: (G conditioning, D conditioning), each as in its paper.
RECIPES = {
    "concat": ("concat", "concat"),          # Mirza & Osindero 2014
    "cbn": ("cbn", "concat"),                # de Vries et al. 2017 (CBN in G)
    "projection": ("cbn", "projection"),     # Miyato & Koyama 2018 (their G uses CBN)
    "acgan": ("concat", "acgan"),            # Odena et al. 2017 (label fed to G's input)
}


def recipe(method: str, g_method: str = "auto",
           g_methods: Tuple[str, ...] = G_METHODS) -> Tuple[str, str]:
    """(G conditioning, D conditioning) for ``cond.method`` (and an optional G override).

    ``method`` is a key of :data:`RECIPES`; ``g_method`` is ``"auto"`` (or ``""``: the
    recipe's G method) or one of :data:`G_METHODS`. ``g_methods`` are the G methods the model
    family supports (:func:`family_g_methods`; all by default): under ``auto`` a recipe whose
    G method the family lacks falls back to the family's first (r3gan has no norm layers for
    ``cbn``, so ``projection`` means concat G + projection D there). Raises ValueError naming
    the valid choices for anything else, and for an explicit ``g_method`` the family lacks.
    """
    if method not in RECIPES:
        raise ValueError(f"cond.method='{method}': choose one of {', '.join(RECIPES)}")
    g, d = RECIPES[method]
    if g_method not in ("auto", "") and g_method not in G_METHODS:
        raise ValueError(f"cond.g_method='{g_method}': choose auto or one of {', '.join(G_METHODS)}")
    if g_method in ("auto", ""):
        return (g if g in g_methods else g_methods[0]), d
    if g_method not in g_methods:
        raise ValueError(f"cond.g_method='{g_method}': this model's conditional G supports "
                         f"{', '.join(g_methods)} only; choose auto or one of those")
    return g_method, d


def family_g_methods(name: str) -> Tuple[str, ...]:
    """The G conditioning methods of family ``name``'s conditional generator (its class
    attribute ``g_methods``); :data:`G_METHODS` for a name without one."""
    if name not in COND_GENERATORS:
        return G_METHODS
    return tuple(getattr(COND_GENERATORS.get(name), "g_methods", G_METHODS))


def cond_family_names() -> list[str]:
    """Families with both a conditional G and a conditional D, sorted."""
    return sorted(set(COND_GENERATORS.names()) & set(COND_DISCRIMINATORS.names()))


def _check_cond(family: str, kind: str, n_classes, cond: str, methods, embed_dim) -> int:
    """The label embedding width e for a conditional ``kind`` ("G"/"D") of ``family``:
    ``embed_dim``, or ``n_classes`` when it is 0. Raises ValueError when ``n_classes`` is not
    an integer >= 2, ``cond`` is not one of ``methods``, or ``embed_dim`` is not an integer >= 0.
    """
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

    Works on (N, C) and (N, C, H, W) activations ``h`` with labels ``y`` (N,) in
    [0, n_classes); returns the shape of ``h``. gamma starts at N(1, 0.02) and beta at 0,
    DCGAN's initialisation of BN's affine parameters, so at step 0 every class is plain BN.
    State-dict keys: ``bn.running_mean``, ``bn.running_var``, ``bn.num_batches_tracked``,
    ``gain.weight`` and ``bias.weight`` (both (n_classes, num_features)).
    """

    #: its gain/bias tables keep their scale under reg.spectral_norm (regularize/spectral.py)
    spectral_norm_exempt = True

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
    progress grids) works on conditional ones too. Returns int64 of shape (n,)."""
    return torch.arange(n, device=device) % n_classes


def run_blocks(blocks: Iterable[nn.Sequential], h: torch.Tensor,
               y: Optional[torch.Tensor]) -> torch.Tensor:
    """Run ``nn.Sequential`` blocks on ``h``, handing the labels ``y`` (N,) to the
    :class:`ConditionalBatchNorm` layers and ``h`` alone to every other layer. ``y`` may be
    None when no block holds a conditional BN."""
    for block in blocks:
        for layer in block:
            h = layer(h, y) if isinstance(layer, ConditionalBatchNorm) else layer(h)
    return h


# ============================================================================== G half
class ConditionalGenerator:
    """G half of the conditioning mixin: turns a family's ``G(z)`` into ``G(z, y)``.

    Put it first in the bases, before the family's unconditional generator, and call
    ``super().__init__(n_classes=..., cond=..., embed_dim=..., z_dim=..., **family_kwargs)``.
    The mixin checks the arguments, builds the base network (for ``z_dim + e`` inputs with
    ``cond='concat'``), then adds the label layers:

    - ``concat`` (Mirza & Osindero 2014): ``embed`` = ``nn.Embedding(n_classes, e)``
      (N(0, 1), the scale of z); its (N, e) rows are concatenated to z.
    - ``cbn`` (de Vries et al. 2017; Miyato & Koyama 2018 §4): every BatchNorm becomes a
      :class:`ConditionalBatchNorm`, made by ``_norm()`` where the base builds its norms.

    Family hooks:

    - ``family`` (class attribute): the registered name, used in error messages.
    - ``_generate(z, y)`` (required): run the family's layers on z (N, z_dim + e for concat,
      else N, z_dim) and return images (N, C, H, W) in [-1, 1]. ``y`` (N,) is given with
      ``cond='cbn'`` (for :func:`run_blocks` or the family's own threading) and None with
      ``'concat'``.
    - ``_norm(num_channels)``: the base network's normalisation factory, if it has one: the
      mixin overrides it to return conditional BN under ``cbn``.
    - ``_add_label_norms()``: for a base without ``_norm`` (the mlp G has no BatchNorm): add
      conditional BN layers after the base is built (``cbn`` only; default: nothing).

    - ``g_methods`` (class attribute): the methods the family supports, default
      :data:`G_METHODS`; the first is its choice when ``cond.g_method=auto`` meets a recipe
      whose G method it lacks (:func:`recipe`).

    Attributes set: ``n_classes``, ``cond``, ``z_dim`` (what callers feed), ``embed_dim``
    (e with ``concat``, else 0). Raises ValueError for bad ``n_classes``/``cond``/
    ``embed_dim`` (see :func:`_check_cond`); TypeError for a missing hook: when the class is
    defined without ``_generate``, or when a ``cbn`` G built no conditional BN.
    """

    family: str = "?"
    g_methods: Tuple[str, ...] = G_METHODS
    n_classes: int
    cond: str

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not callable(getattr(cls, "_generate", None)):   # the base family's, or its own
            raise TypeError(f"{cls.__name__}: a conditional generator needs _generate(z, y)")

    def __init__(self, *, n_classes: int, cond: str, embed_dim: int, z_dim: int, **base):
        if cond in G_METHODS and cond not in self.g_methods:
            raise ValueError(f"{self.family} G: cond='{cond}' is not supported by this family; "
                             f"choose one of {', '.join(self.g_methods)} (cond.g_method=auto "
                             f"picks it)")
        e = _check_cond(self.family, "G", n_classes, cond, G_METHODS, embed_dim)
        # Plain attributes are allowed before Module.__init__; _norm() reads them while the
        # base class builds its layers.
        self.n_classes, self.cond = n_classes, cond
        extra = e if cond == "concat" else 0
        # concat: the base class builds its first layer for z_dim + e inputs (its
        # ``in_channels``/``in_features``), then z_dim is set back to what callers feed.
        super().__init__(z_dim=z_dim + extra, **base)
        self.z_dim, self.embed_dim = z_dim, extra
        if cond == "concat":
            self.embed = nn.Embedding(n_classes, e)   # N(0, 1), the scale of z
        else:
            self._add_label_norms()
            if not any(isinstance(m, ConditionalBatchNorm) for m in self.modules()):
                raise TypeError(f"{self.family} G: cond='cbn' built no ConditionalBatchNorm; "
                                f"the family must make its norms with _norm() or override "
                                f"_add_label_norms()")

    def _norm(self, num_channels: int) -> nn.Module:
        """Conditional BN under ``cbn``, else the base family's own norm layer."""
        if self.cond == "cbn":
            return ConditionalBatchNorm(num_channels, self.n_classes)
        return super()._norm(num_channels)

    def _add_label_norms(self) -> None:
        """Hook for ``cbn`` on a base without ``_norm()``; families with one need nothing."""

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] for noise z (N, z_dim) (or (N, z_dim, 1, 1)) and
        labels y (N,) int64 in [0, n_classes); without ``y`` the classes 0, 1, ..., K-1 in
        turn (:func:`default_labels`)."""
        if y is None:
            y = default_labels(z.shape[0], self.n_classes, z.device)
        z = z.reshape(z.shape[0], -1)
        if self.cond == "concat":
            return self._generate(torch.cat([z, self.embed(y).to(z.dtype)], dim=1), None)
        return self._generate(z, y)


# ============================================================================== D half
class ConditionalDiscriminator:
    """D half of the conditioning mixin: turns a family's ``D(x)`` into ``D(x, y)``.

    Put it first in the bases, before the family's unconditional discriminator, and call
    ``super().__init__(n_classes=..., cond=..., embed_dim=..., channels=..., **family_kwargs)``.
    The family's D must have ``features(x)`` (phi(x), a map or a vector), ``head`` (psi: phi
    -> one logit) and ``freeze_blocks()``. The mixin checks the arguments, builds the base
    network, then adds the label layers:

    - ``concat``: ``embed`` = ``nn.Embedding(n_classes, e)``, fed in with the image. With
      ``concat_input = "maps"`` (conv Ds) as e constant "label map" channels: the base is
      built for ``channels + e`` input channels. With ``"flat"`` concatenated to the flattened
      image: the family's ``_widen_input(e)`` widens its first layer.
    - ``projection`` (Miyato & Koyama 2018, eq. 3): ``embed`` = ``nn.Embedding(n_classes,
      _phi_dim())``, initialised by ``_init_projection_``; logit = psi(phi) + embed(y) . phi.
    - ``acgan`` (Odena et al. 2017): ``classifier`` = ``_class_head()``, class logits on phi.

    Family hooks:

    - ``family`` (class attribute): the registered name, used in error messages.
    - ``concat_input`` (class attribute): ``"maps"`` (default) or ``"flat"``.
    - ``_widen_input(e)``: ``"flat"`` only, required there: widen the input layer by e.
    - ``_phi_dim()``: size of phi(x) flattened; default ``head.in_features`` (or, for a
      Conv2d head over the whole map, ``in_channels * kh * kw``).
    - ``_init_projection_(weight)``: default N(0, 1/sqrt(dim)).
    - ``_class_head()``: default ``nn.Linear(_phi_dim(), n_classes)`` (a conv of the head's
      kernel for a Conv2d head; torch's init).

    Attributes set: ``channels`` (the image's), ``n_classes``, ``d_cond``, ``embed_dim`` (e
    with ``concat``, else 0). Raises ValueError for bad ``n_classes``/``cond``/``embed_dim``
    (see :func:`_check_cond`); TypeError when the class is defined with another
    ``concat_input``, NotImplementedError for ``"flat"`` without ``_widen_input``.
    """

    family: str = "?"
    concat_input: str = "maps"
    n_classes: int
    d_cond: str

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.concat_input not in ("maps", "flat"):
            raise TypeError(f"{cls.__name__}.concat_input={cls.concat_input!r}: "
                            f"choose 'maps' or 'flat'")

    def __init__(self, *, n_classes: int, cond: str, embed_dim: int, channels: int, **base):
        e = _check_cond(self.family, "D", n_classes, cond, D_METHODS, embed_dim)
        extra = e if cond == "concat" else 0
        # concat with label maps: the first layer sees the image plus e constant channels.
        maps = extra if self.concat_input == "maps" else 0
        super().__init__(channels=channels + maps, **base)
        self.channels, self.n_classes, self.d_cond, self.embed_dim = channels, n_classes, cond, extra
        if cond == "concat":
            if self.concat_input == "flat":
                self._widen_input(e)
            self.embed = nn.Embedding(n_classes, e)
        elif cond == "projection":
            self.embed = nn.Embedding(n_classes, self._phi_dim())
            self._init_projection_(self.embed.weight)
        else:  # acgan
            self.classifier = self._class_head()

    # ------------------------------------------------------------------ family hooks
    def _widen_input(self, extra: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} (concat_input='flat') must "
                                  f"implement _widen_input(e)")

    def _phi_dim(self) -> int:
        """Size of phi(x) = ``features(x)`` flattened (the projection embedding's width): the
        head Linear's ``in_features``, or for a Conv2d head whose kernel covers the whole map
        (DCGAN, FastGAN) ``in_channels * kh * kw``."""
        if isinstance(self.head, nn.Conv2d):
            kh, kw = self.head.kernel_size
            return self.head.in_channels * kh * kw
        return self.head.in_features

    def _init_projection_(self, weight: torch.Tensor) -> None:
        """Projection embedding init: N(0, 1/sqrt(dim)), so embed(y) . phi starts at the
        scale of one unit of phi."""
        nn.init.normal_(weight, 0.0, weight.shape[1] ** -0.5)

    def _class_head(self) -> nn.Module:
        """AC-GAN's class head on phi(x): (N, ...) -> class logits (N, n_classes, ...): a
        Linear, or a conv of the head's kernel for a Conv2d head (torch's init)."""
        if isinstance(self.head, nn.Conv2d):
            return nn.Conv2d(self.head.in_channels, self.n_classes, self.head.kernel_size)
        return nn.Linear(self._phi_dim(), self.n_classes)

    # ------------------------------------------------------------------ shared API
    def with_label(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """``cond='concat'``: the input with the label embedding joined. "maps": x (N, C, H, W)
        -> (N, C + e, H, W); "flat": x (N, ...) -> (N, C*H*W + e). Raises ValueError when
        ``y`` is None."""
        if y is None:
            raise ValueError(f"{self.family} D (cond='concat') needs the labels y with the images")
        lab = self.embed(y).to(x.dtype)
        if self.concat_input == "flat":
            return torch.cat([x.flatten(1), lab], dim=1)
        n, _, h, w = x.shape
        return torch.cat([x, lab[:, :, None, None].expand(n, -1, h, w)], dim=1)

    def features(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """phi(x) of the family's D (``y`` is needed, and used, only with ``cond='concat'``)."""
        return super().features(self.with_label(x, y) if self.d_cond == "concat" else x)

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

    def forward(self, x: torch.Tensor, y: torch.Tensor, with_classes: bool = False):
        """Logits (N,) (raw, no sigmoid) for images x (N, C, H, W) and labels y (N,); with
        ``with_classes`` the pair ``logits_and_classes(x, y)``. Tasks call D through
        ``forward`` only, so DDP's wrapper sees every call."""
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
