"""Load a trained run for use: the one entry from a run folder or checkpoint to the task's
use-time face (:class:`ganforge.tasks.TrainedModel`).

``ganforge sample``, ``translate`` and ``eval`` (and the Python API) all start here; none of
them names a task or a module: the checkpoint says which task trained it, and that task
rebuilds its generators from the specs stored next to the weights (DESIGN lesson 5).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ganforge.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from ganforge.devices import resolve_device
from ganforge.tasks import DEFAULT_TASK, TASKS, TrainedModel


def load_run(run_or_ckpt: str | Path, which: str = "latest", *, ema: bool = True,
             device: str | torch.device = "cpu") -> TrainedModel:
    """The trained model of a run folder, its checkpoints folder or a checkpoint file.

    ``which``: ``latest`` or ``best`` (falls back to latest); ``ema``: use the generators'
    weight averages when the run kept them (``--no-ema`` turns it off); ``device``: where the
    generators live. Raises :class:`CheckpointError` for a missing or unreadable checkpoint
    and :class:`ganforge.registry.RegistryError` for a task this ganforge does not know."""
    device = resolve_device(device)
    path = find_checkpoint(run_or_ckpt, which)
    st = load_checkpoint(path, map_location="cpu")
    if not isinstance(st, dict) or "modules" not in st:
        raise CheckpointError(f"'{path}' is not a ganforge training checkpoint")
    task = str(st.get("task") or st.get("config", {}).get("train", {}).get("task") or DEFAULT_TASK)
    task_cls = TASKS.get(task)
    return task_cls.trained_class.from_checkpoint(task_cls, st, ema=ema, device=device,
                                                  source=str(path))
