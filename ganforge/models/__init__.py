"""Generator and discriminator families, registered by name.

Every network is built through :func:`build`, which records the constructor arguments on the
module (``module.spec``). The checkpoint stores that spec next to the weights, so
``ganforge sample RUN`` rebuilds the exact network without the user repeating flags and
without pickling code (DESIGN lesson 5).

Conventions shared by all families:
- ``G(z)`` takes noise of shape ``(N, z_dim)`` and returns images in [-1, 1], NCHW.
- ``D(x)`` returns raw logits of shape ``(N,)`` (never a sigmoid: losses work on logits).
- Constructors take keyword arguments only; the common ones are ``img_size``, ``channels``,
  ``z_dim`` (G) and ``width`` (a channel/feature multiplier).
"""
from __future__ import annotations

from typing import Any, Dict

import torch.nn as nn

from ganforge.registry import Registry

GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")
#: Class-conditional G(z, y) / D(x, y) per family (ganforge/models/conditional.py).
COND_GENERATORS = Registry("conditional generator")
COND_DISCRIMINATORS = Registry("conditional discriminator")


def build(kind: str, name: str, **kwargs: Any) -> nn.Module:
    """Build a registered network (``kind`` is "G" or "D") and remember how it was built."""
    reg = GENERATORS if kind == "G" else DISCRIMINATORS
    if "n_classes" in kwargs:   # the class-conditional variant of the family
        reg = COND_GENERATORS if kind == "G" else COND_DISCRIMINATORS
    module = reg.build(name, **kwargs)
    module.spec = {"name": name, "kind": kind, "kwargs": dict(kwargs)}
    return module


def from_spec(spec: Dict[str, Any]) -> nn.Module:
    """Rebuild a network from the ``spec`` stored in a checkpoint."""
    return build(spec["kind"], spec["name"], **spec["kwargs"])


def is_image_to_image(name: str) -> bool:
    """True for image-to-image networks (CycleGAN's ``G(x)`` and patch discriminators),
    marked by the class attribute ``image_to_image = True``."""
    return any(name in reg and getattr(reg.get(name), "image_to_image", False)
               for reg in (GENERATORS, DISCRIMINATORS))


def family_names() -> list[str]:
    """Names that have both a G and a D (what ``--model`` accepts); noise-to-image only."""
    both = set(GENERATORS.names()) & set(DISCRIMINATORS.names())
    return sorted(n for n in both if not is_image_to_image(n))


# Importing the family modules registers them.
from ganforge.models import mlp, dcgan  # noqa: E402,F401
from ganforge.models import cyclegan  # noqa: E402,F401  (image-to-image; not in family_names)
from ganforge.models import conditional  # noqa: E402,F401  (G(z, y), D(x, y): built with n_classes)
