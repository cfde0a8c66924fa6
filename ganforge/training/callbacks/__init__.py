"""The callback interface: what the training loop tells the things around it.

The loop (ganforge/training/trainer.py) trains; everything it produces or watches besides the weights
(sample grids, logs, checkpoints, evaluation, the divergence guard) is a :class:`Callback` in
``trainer.callbacks``, built from the config. A callback is told when a session starts, at the
steps it asked for, after each checkpoint and when the session ends, and it may keep state
that travels in checkpoints. Why callbacks at all: the loop stays short, and each concern
lives in one file of this package. The guard is a callback too (its snapshot, its state), but
it steers the loop, so the loop also asks it directly: it judges each logged row, and it rolls
back whenever an ``on_step`` returns a reason (the checkpoint callback's, for weights that are
not finite).

Cost: the loop wakes the callbacks only on multiples of the greatest common divisor of their
``every`` intervals (and on the last step), so a step that nobody asked for costs one modulo.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

#: What the hooks receive: the :class:`ganforge.training.trainer.Trainer` (not imported, even for type
#: checking: the trainer imports this package, and the layer contract forbids the reverse).
TrainerT = Any


class Callback:
    """Base class: every hook does nothing. Hooks run in ``trainer.callbacks`` order, except
    ``on_end``, which runs in reverse (the last to start is the first to finish).

    - ``every``: the steps this callback wants ``on_step`` for (multiples of it; 0: none but
      the run's last step, which every callback is told about).
    - ``on_start(trainer, resumed)``: a session begins (before its first step; ``resumed``:
      it continues a run from a checkpoint).
    - ``on_step(trainer, step, row)``: after training step ``step``; ``row`` is the metrics row
      just logged when this is a log step, else None. Return None, or a reason (a sentence) to
      roll the run back: the loop hands it to the divergence guard (``trainer.guard``) and
      skips the rest of this step's callbacks.
    - ``on_checkpoint(trainer, path)``: ``trainer.save_checkpoint`` wrote ``path`` (None on the
      processes other than rank 0, which write nothing).
    - ``on_end(trainer)``: the session ends (finished, interrupted or failed).
    - ``state_dict()``: entries for the checkpoint (top-level keys, so a checkpoint reads the
      same whoever holds them); ``load_state_dict(state)``: the whole checkpoint dict, on
      resume and on the guard's rollbacks.
    """

    every: int = 0

    def on_start(self, trainer: TrainerT, resumed: bool) -> None:
        pass

    def on_step(self, trainer: TrainerT, step: int, row: Optional[Dict[str, Any]]) -> Optional[str]:
        return None

    def on_checkpoint(self, trainer: TrainerT, path: Optional[Path]) -> None:
        pass

    def on_end(self, trainer: TrainerT) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass
