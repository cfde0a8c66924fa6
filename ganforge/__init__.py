"""ganforge: train, evaluate and use generative adversarial networks."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load(path: Any, checkpoint: str = "latest", ema: bool = True, device: Any = "cpu") -> "ganforge.api.Generator":  # noqa: F821
    """The trained generator of a run folder, checkpoint file or export folder: see
    :func:`ganforge.api.load` and :class:`ganforge.api.Generator` (``.sample``, ``.translate``,
    ``.interpolate``, ``.info``, ``.to``).

    A function that imports :mod:`ganforge.api` when called, not at ``import ganforge``: the
    package is imported by every ``ganforge`` command (and by ``python -m ganforge``), and
    pulling in torch, the models and the tasks there would slow every start, including
    ``--help``. The import is by name (``importlib``), not an ``import`` statement, because
    lower layers import ``ganforge`` itself (``__version__``) and the layer contract would
    otherwise read ``ganforge -> ganforge.api`` as those layers reaching up to the top."""
    import importlib
    return importlib.import_module("ganforge.api").load(path, checkpoint=checkpoint, ema=ema,
                                                        device=device)
