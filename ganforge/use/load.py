"""Load a trained run for use: the one entry from a run folder, a checkpoints folder, a
checkpoint file or an export folder to the run's task face (:class:`ganforge.use.face.Generator`).

``ganforge.load`` and every use-time command (``sample``, ``interpolate``, ``progress``,
``translate``, ``eval``, ``export``, ``report``, ``serve``) start here; none of them names a
task or a module: the checkpoint (or the export's ``config.json``) says which task trained
it, and that task's face rebuilds its generators from the specs stored next to the weights
(DESIGN lesson 5). Reading the files is their owners' business: checkpoints
:mod:`ganforge.core.checkpoint`, export folders :mod:`ganforge.use.export`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ganforge.core.checkpoint import find_checkpoint, load_checkpoint
from ganforge.core.devices import resolve_device
from ganforge.core.errors import UserError
from ganforge.use.export import is_export, load_export
from ganforge.use.face import Generator
from ganforge.use.faces import face_from_checkpoint

#: what ``checkpoint=`` (``--checkpoint``) may name in a run folder
WHICH = ("latest", "best")


def load(path: str | Path, checkpoint: str = "latest", *, ema: bool = True,
         device: str | torch.device = "cpu") -> Generator:
    """The trained generator(s) of a run folder, its checkpoints folder, a checkpoint file or an
    export folder (``ganforge export``), as the run's task face.

    ``checkpoint``: ``"latest"`` or ``"best"`` (refused when the run kept none) for a run folder (not
    used for an export); ``ema``: the generators' weight averages when the run kept them
    (``--no-ema`` turns it off); ``device``: where the generators live (``cpu``, ``cuda``,
    ``cuda:N``, ``auto``). Raises :class:`UserError` for another ``checkpoint`` or device, a
    :class:`CheckpointError` (a UserError) for a missing or unreadable checkpoint or export,
    and :class:`ganforge.core.registry.RegistryError` for a task this ganforge does not know."""
    if checkpoint not in WHICH:
        raise UserError(f"checkpoint={checkpoint!r}: use 'latest' or 'best'")
    device = resolve_device(device)
    if is_export(path):
        return load_export(path, ema=ema, device=device)
    found = find_checkpoint(path, checkpoint)
    return face_from_checkpoint(load_checkpoint(found, map_location="cpu"), found, ema=ema,
                                device=device)


#: ganforge 0.1's name (``ganforge.runs.load_run(RUN, which)``), as old export cards call it
load_run = load
