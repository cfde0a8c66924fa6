"""When checkpoints are written: every ``log.ckpt_every`` steps (0: only at the end), and at
the end of every session, finished, interrupted (Ctrl-C / SIGTERM, ``train.time_limit``) or
failed, unless the current state is already on disk. What a checkpoint holds is the trainer's
(:meth:`ganforge.training.trainer.Trainer.state_dict`, one file = the whole state, so ``--resume``
continues bit for bit).

Weights that are not finite are never saved (the divergence guard vetoes them): in the loop,
the last step included, that is a rollback; at the end of an interrupted session the last
good checkpoint is kept.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from ganforge.training.callbacks import Callback, TrainerT


class Checkpoints(Callback):
    """Periodic and final checkpoints; ``every``: ``log.ckpt_every``."""

    def __init__(self, every: int):
        self.every = every
        self.last = -1          # the step of the state last written (or loaded) by this session

    def on_start(self, trainer: TrainerT, resumed: bool) -> None:
        self.last = trainer.step_count if resumed else -1

    def on_step(self, trainer: TrainerT, step: int, row: Optional[Dict[str, Any]]) -> Optional[str]:
        if step == trainer.total_steps and not (self.every and step % self.every == 0):
            # the last step: its checkpoint is written at the end (on_end), but weights that
            # are not finite are a rollback here, while the run can still recover
            return trainer.guard.check_weights(trainer)
        if not (self.every and step % self.every == 0):
            return None
        reason = trainer.guard.check_weights(trainer)
        if reason is not None:
            return reason
        trainer.save_checkpoint(session_seconds=trainer.session_seconds)
        return None

    def on_checkpoint(self, trainer: TrainerT, path: Optional[Path]) -> None:
        self.last = trainer.step_count

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.last = int(state["step"])      # what was loaded is on disk (or the run's start)

    def on_end(self, trainer: TrainerT) -> None:
        if trainer.step_count == self.last:
            return
        if trainer.guard.check_weights(trainer) is None:
            trainer.save_checkpoint(session_seconds=trainer.session_seconds)
        else:
            trainer.note("guard: the weights are not finite; the last good checkpoint is kept")
