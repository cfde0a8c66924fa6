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


def build(kind: str, name: str, **kwargs: Any) -> nn.Module:
    """Build a registered network (``kind`` is "G" or "D") and remember how it was built."""
    reg = GENERATORS if kind == "G" else DISCRIMINATORS
    module = reg.build(name, **kwargs)
    module.spec = {"name": name, "kind": kind, "kwargs": dict(kwargs)}
    return module


def from_spec(spec: Dict[str, Any]) -> nn.Module:
    """Rebuild a network from the ``spec`` stored in a checkpoint."""
    return build(spec["kind"], spec["name"], **spec["kwargs"])


def family_names() -> list[str]:
    """Names that have both a G and a D (what ``--model`` accepts)."""
    return sorted(set(GENERATORS.names()) & set(DISCRIMINATORS.names()))


# Importing the family modules registers them.
from ganforge.models import mlp, dcgan  # noqa: E402,F401
