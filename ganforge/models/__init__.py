"""Generator and discriminator families, registered by name (:mod:`ganforge.models.build`:
the registries, :func:`build`, :func:`from_spec`; each family in its own file).

Every network is built through :func:`build`, which records the constructor arguments on the
module (``module.spec``). The checkpoint stores that spec next to the weights, so
``ganforge sample RUN`` rebuilds the exact network without the user repeating flags and
without pickling code (DESIGN lesson 5).

Conventions shared by all families:
- ``G(z)`` takes noise of shape ``(N, z_dim)`` and returns images in [-1, 1], NCHW.
- ``D(x)`` returns raw logits of shape ``(N,)`` (never a sigmoid: losses work on logits).
- Constructors take keyword arguments only; the common ones are ``img_size``, ``channels``,
  ``z_dim`` (G), ``width`` (a channel/feature multiplier) and ``dropout`` (D, default 0).
- Every D has ``freeze_blocks()``: its layers grouped from input to head, for :func:`freeze_d`.
"""
from __future__ import annotations

from ganforge.models.build import (
    COND_DISCRIMINATORS,
    COND_GENERATORS,
    DISCRIMINATORS,
    GENERATORS,
    build,
    family_names,
    freeze_d,
    from_spec,
    is_image_to_image,
)

# Importing the family modules registers them (and their conditional variants).
from ganforge.models import cyclegan, dcgan, fastgan, mlp, r3gan, resnet, unet  # noqa: E402,F401  # isort: skip

__all__ = ["GENERATORS", "DISCRIMINATORS", "COND_GENERATORS", "COND_DISCRIMINATORS", "build",
           "from_spec", "freeze_d", "family_names", "is_image_to_image"]
