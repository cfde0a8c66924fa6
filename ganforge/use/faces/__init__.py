"""Each task's face, registered in :data:`ganforge.use.face.FACES` under the task's name:
``gan`` (:class:`~ganforge.use.faces.gan.NoiseModel`), ``conditional``
(:class:`~ganforge.use.faces.conditional.ConditionalModel`) and ``cyclegan``
(:class:`~ganforge.use.faces.cyclegan.TranslationModel`) and ``pix2pix``
(:class:`~ganforge.use.faces.pix2pix.PairedModel`). A task's training half
(``ganforge/training/tasks/<task>.py``) names its face as ``trained_class``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import torch

from ganforge.core.checkpoint import CheckpointError
from ganforge.core.config import DEFAULT_TASK
from ganforge.use.face import FACES, Generator, task_of
from ganforge.use.faces import conditional, cyclegan, gan, pix2pix  # noqa: F401  (register the faces)


def face_for(task: str) -> type:
    """The face class of ``task`` (``""``: the default task). Raises
    :class:`ganforge.core.registry.RegistryError` for a task this ganforge does not know."""
    return FACES.get(task or DEFAULT_TASK)


def face_from_checkpoint(st: Dict[str, Any], path: str | Path, *, ema: bool = True,
                         device: str | torch.device = "cpu") -> Generator:
    """The face of checkpoint state ``st`` read from ``path`` (``ema``: the generators' weight
    averages when kept). Raises :class:`CheckpointError` for a state that is not a training
    checkpoint and :class:`ganforge.core.registry.RegistryError` for an unknown task."""
    if not isinstance(st, dict) or "modules" not in st:
        raise CheckpointError(f"'{path}' is not a ganforge training checkpoint")
    return face_for(task_of(st)).from_checkpoint(st, ema=ema, device=device, source=str(path))
