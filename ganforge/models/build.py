"""The registries of the generator and discriminator families, and :func:`build`: every network
is built through it, which records the constructor arguments on the module (``module.spec``)
so that :func:`from_spec` rebuilds it from a checkpoint (DESIGN lesson 5). The families
(``dcgan.py``, ``mlp.py``, ...) register into these; ``ganforge.models`` imports them all and
hands these names on.
"""
from __future__ import annotations

from typing import Any, Dict

import torch.nn as nn

from ganforge.core.registry import Registry
from ganforge.models.spectral_norm import apply_spectral_norm

GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")
#: Class-conditional G(z, y) / D(x, y) per family (each family's file; mixins in
#: ganforge/models/conditioning.py).
COND_GENERATORS = Registry("conditional generator")
COND_DISCRIMINATORS = Registry("conditional discriminator")


def build(kind: str, name: str, **kwargs: Any) -> nn.Module:
    """Build a registered network (``kind`` is "G" or "D") and remember how it was built.

    ``spectral_norm=True`` is not a constructor argument: after building, every conv, Linear
    and Embedding is spectrally normalised (Miyato et al. 2018;
    :func:`ganforge.models.spectral_norm.apply_spectral_norm`). It is recorded in the spec
    only when true, so specs of networks built without it are unchanged and a checkpoint of
    one built with it rebuilds the same (parametrised) state-dict keys.
    """
    sn = kwargs.pop("spectral_norm", False)
    if not isinstance(sn, bool):
        raise ValueError(f"{name} {kind}: spectral_norm={sn!r} must be true or false")
    reg = GENERATORS if kind == "G" else DISCRIMINATORS
    if "n_classes" in kwargs:   # the class-conditional variant of the family
        reg = COND_GENERATORS if kind == "G" else COND_DISCRIMINATORS
    module = reg.build(name, **kwargs)
    if sn:
        apply_spectral_norm(module)
        kwargs["spectral_norm"] = True
    module.spec = {"name": name, "kind": kind, "kwargs": dict(kwargs)}
    return module


def from_spec(spec: Dict[str, Any]) -> nn.Module:
    """Rebuild a network from the ``spec`` stored in a checkpoint."""
    return build(spec["kind"], spec["name"], **spec["kwargs"])


def freeze_d(D: nn.Module, k: int) -> int:
    """FreezeD (Mo, Cho & Shin 2020, "Freeze the Discriminator: a Simple Baseline for
    Fine-Tuning GANs"): when fine-tuning, keep D's first ``k`` blocks (``D.freeze_blocks()``,
    ordered from the input; the last one is the head) fixed and train the rest.

    Sets ``requires_grad_(False)`` on those blocks' parameters and returns how many scalar
    parameters were frozen. ``k = 0`` freezes nothing. The head cannot be frozen: a D that
    cannot change its decision cannot be fine-tuned, so ``k`` must be below the number of
    blocks. Optimisers and ``backward(inputs=...)`` must then be given only parameters that
    still require grad.
    """
    blocks_of = getattr(D, "freeze_blocks", None)
    if not callable(blocks_of):
        raise ValueError(f"freeze_d: {type(D).__name__} has no freeze_blocks(), so it cannot say "
                         f"which layers are its first blocks; FreezeD needs a discriminator of "
                         f"one of the registered families")
    blocks = list(blocks_of())
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"freeze_d: k={k!r} must be an integer >= 0 (the number of D blocks "
                         f"to freeze, counted from the input)")
    if k >= len(blocks):
        raise ValueError(f"freeze_d: k={k}, but D has {len(blocks)} blocks; freeze at most "
                         f"{len(blocks) - 1} so the head still learns")
    seen: set = set()
    frozen = 0
    for block in blocks[:k]:
        for p in block.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                p.requires_grad_(False)
                frozen += p.numel()
    return frozen


def is_image_to_image(name: str) -> bool:
    """True for image-to-image networks (CycleGAN's ``G(x)`` and patch discriminators),
    marked by the class attribute ``image_to_image = True``."""
    return any(name in reg and getattr(reg.get(name), "image_to_image", False)
               for reg in (GENERATORS, DISCRIMINATORS))


def family_names() -> list[str]:
    """Names that have both a G and a D (what ``--model`` accepts); noise-to-image only."""
    both = set(GENERATORS.names()) & set(DISCRIMINATORS.names())
    return sorted(n for n in both if not is_image_to_image(n))
