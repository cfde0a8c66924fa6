"""Spectral normalisation (Miyato, Kataoka, Koyama & Yoshida 2018, "Spectral Normalization for
Generative Adversarial Networks").

Every weight W is used as W / sigma(W), sigma the largest singular value of W reshaped to a
matrix (out x in·k·k for a conv; dim 1 first for a transposed conv, whose weight is stored
in x out), estimated by one power iteration per training forward with the vectors u, v kept
between steps (the paper's Algorithm 1). Each layer is then 1-Lipschitz, bounding D's
Lipschitz constant by the product over layers (§2.1).

We use ``torch.nn.utils.parametrizations.spectral_norm``: the layer keeps its class (wrapped
in a parametrised subclass) and its ``forward``; reading ``self.weight`` returns the
normalised weight. So the matmul layers of :mod:`ganforge.models.layers`, which read
``self.weight`` in their own ``forward``, are normalised too. The state dict gains
``<layer>.parametrizations.weight.original`` and the power-iteration buffers ``..._u``,
``..._v`` instead of ``<layer>.weight``: build with ``models.build(..., spectral_norm=True)``
so the spec records it and a checkpoint rebuilds the same keys.

Cost note: in training mode each *read* of ``self.weight`` runs one power iteration; a layer
whose ``forward`` reads it several times does several (more accurate, slightly slower).
"""
from __future__ import annotations

import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

#: Layer types whose ``weight`` is a linear map and gets normalised (subclasses included).
#: Embeddings: the class-projection matrix V of a projection D (Miyato & Koyama 2018, "cGANs
#: with Projection Discriminator", §4, normalise it together with the other layers).
SN_TYPES = (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding)


def _exempt(module: nn.Module) -> set:
    """Ids of layers that are not linear maps of the features and must keep their scale: every
    layer inside a module marked ``spectral_norm_exempt = True``, such as the per-class
    gain/bias tables of conditional BatchNorm (gains start at 1; normalising the K x C table
    would shrink every gain to about 1/sqrt(K*C))."""
    out = set()
    for m in module.modules():
        if getattr(m, "spectral_norm_exempt", False):
            out.update(id(c) for c in m.modules())
    return out


def is_spectral_normed(layer: nn.Module) -> bool:
    """True when ``layer.weight`` is already spectrally normalised."""
    return parametrize.is_parametrized(layer, "weight") and any(
        type(p).__name__ == "_SpectralNorm" for p in layer.parametrizations["weight"])


def apply_spectral_norm(module: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Spectrally normalise every conv, transposed conv, Linear and Embedding in ``module``
    (in place; returns ``module``). Layers already normalised are left alone, and conditional
    BN's gain/bias tables are skipped (see :func:`_exempt`). A layer with a
    ``prepare_spectral_norm_()`` method has it called first (R3GAN's zero-initialised convs
    take a non-zero init there). One power iteration per forward, as in the paper."""
    skip = _exempt(module)
    layers = [m for m in module.modules()
              if isinstance(m, SN_TYPES) and id(m) not in skip and not is_spectral_normed(m)]
    for m in layers:   # collected first: parametrising changes the modules being walked
        # A layer may ready its weight first: a zero-initialised one (R3GAN's residual
        # branches) has sigma = 0, and W / sigma would be 0/0 (NaN).
        prepare = getattr(m, "prepare_spectral_norm_", None)
        if callable(prepare):
            prepare()
        # dim=None: torch picks 1 for transposed convs (weight in x out x k x k), else 0.
        spectral_norm(m, n_power_iterations=n_power_iterations)
    return module
