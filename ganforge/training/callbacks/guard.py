"""The divergence guard (``guard.*``): roll a diverging run back instead of training on garbage.

What it watches, at the loop's fixed points:

- every logged row (:meth:`Guard.check_row`): a non-finite statistic, or D's accuracy
  (``acc_D``) at or above ``guard.collapse_acc`` on every log step for ``guard.window`` steps:
  a D that wins outright leaves G no useful gradient (in the runs that collapsed, Brock et al.
  2019, "Large Scale GAN Training for High Fidelity Natural Image Synthesis", section 4.2, saw
  D's loss head towards zero);
- the weights before each checkpoint (:meth:`Guard.check_weights`, asked by the checkpoint
  callback): a non-finite checkpoint is never written, so the last one on disk is good.

What it does (:meth:`Guard.rollback`): restore the last good checkpoint (or, before the run's
first one, the state this run started from, snapshotted at the start) and multiply the
learning rates by ``guard.lr_factor`` once more (the cut compounds: x0.5, x0.25, x0.125 for
three rollbacks to the same checkpoint): restarting from before a loss spike, as large training
runs do by hand (Chowdhery et al. 2022, "PaLM", section 5.1), and here also lowering the
learning rates so that the same blow-up is less likely to recur. After ``guard.max_rollbacks`` it gives up with
:class:`TrainingDiverged`. Each rollback is a row in metrics.jsonl
(``{"step", "rollback", "reason", "lr_scale"}``) and a note.

The guard decides; the trainer restores (:meth:`ganforge.training.trainer.Trainer.rollback_to`).
Its state in checkpoints: ``guard: {rollbacks, lr_scale}`` (the learning-rate scale carries
over a resume; the rollback count is per session).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Optional

import torch

from ganforge.core import checkpoint as ckpt
from ganforge.core import runfolder
from ganforge.core.config import GuardConfig
from ganforge.core.errors import RunError
from ganforge.training.callbacks import Callback, TrainerT


class TrainingDiverged(RunError, RuntimeError):
    """The guard rolled back ``guard.max_rollbacks`` times and training still diverges."""


class Guard(Callback):
    """Watches rows and weights, rolls back; ``cfg.enabled=False`` watches nothing (its state
    still travels in checkpoints). ``log_every``: the log interval (a collapse is dated from the
    log step before the first collapsed row)."""

    def __init__(self, cfg: GuardConfig, log_every: int):
        self.cfg = cfg
        self.log_every = log_every
        self.rollbacks = 0
        self.lr_scale = 1.0
        self._collapse_since: Optional[int] = None
        self._initial_state: Optional[Dict[str, Any]] = None
        self._session_start = 0

    def on_start(self, trainer: TrainerT, resumed: bool) -> None:
        # Last in the callback list: the snapshot includes what the others did at the start.
        self._session_start = trainer.step_count
        if self.cfg.enabled and not resumed:
            # Where to roll back to before this run's first checkpoint (a resumed session
            # rolls back to the checkpoint it started from, which is on disk).
            self._initial_state = copy.deepcopy(trainer.state_dict())

    def check_row(self, row: Dict[str, Any]) -> Optional[str]:
        """Why training must roll back, judged on a logged row (the same on every process,
        since rows are averaged over processes), or None."""
        g = self.cfg
        if not g.enabled:
            return None
        bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            return f"non-finite {', '.join(bad)} at step {row['step']}"
        acc = row.get("acc_D")
        if acc is None or acc < g.collapse_acc:
            self._collapse_since = None
            return None
        if self._collapse_since is None:
            self._collapse_since = row["step"] - self.log_every
        if row["step"] - self._collapse_since >= g.window:
            return (f"D's accuracy has stayed at {acc:.1%} (>= {g.collapse_acc:.1%}) for "
                    f"{row['step'] - self._collapse_since} steps: D has collapsed G's signal")
        return None

    def check_weights(self, trainer: TrainerT) -> Optional[str]:
        """Why the current weights must not be saved (some are not finite: parameters, or
        buffers such as BatchNorm's running variance, which sampling uses), or None."""
        if not self.cfg.enabled:
            return None
        for name, m in trainer.task.modules.items():
            for k, t in m.state_dict().items():
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    return f"non-finite weights at step {trainer.step_count} ({name}.{k})"
        return None

    def rollback(self, trainer: TrainerT, reason: str) -> None:
        """Restore the last good checkpoint (or the start of the run) and lower the
        learning rates by ``guard.lr_factor``; after ``guard.max_rollbacks`` give up."""
        g = self.cfg
        self.rollbacks += 1
        if self.rollbacks > g.max_rollbacks:
            kept = (f"the last good checkpoint is in {trainer.run_dir / runfolder.CHECKPOINTS}"
                    if runfolder.has_checkpoint(trainer.run_dir)
                    else "no checkpoint was written before it diverged")
            raise TrainingDiverged(
                f"training diverged again ({reason}) after {g.max_rollbacks} rollbacks (learning "
                f"rates x{self.lr_scale:g}); {kept}. Try lower learning rates "
                f"(train.lr_d / train.lr_g), a regulariser (reg.r1=1, reg.spectral_norm=true) or "
                f"augmentation (aug.diffaug=translation,cutout,color)")
        state, where = self._last_good(trainer)
        if state is None:
            # (a resumed session's own starting checkpoint is on disk: it never gets here)
            state, where = self._initial_state, "the start of this run"
        # The cut compounds: the rates go to (this session's scale) x lr_factor. The restored
        # state carries the rates (and the scale) of when it was saved, so scale from those;
        # cutting the restored rates once would replay the same divergence at every rollback.
        target = self.lr_scale * g.lr_factor
        saved = float((state.get("guard") or {}).get("lr_scale", 1.0)) or 1.0
        trainer.rollback_to(state, lr_factor=target / saved)   # load_state_dict resets lr_scale
        self.lr_scale = target
        self._collapse_since = None
        trainer.note(f"guard: {reason}; rolled back to step {trainer.step_count} ({where}) with learning "
                     f"rates x{g.lr_factor} (now x{self.lr_scale:g}); rollback {self.rollbacks} of "
                     f"{g.max_rollbacks}")
        trainer.log_row({"step": trainer.step_count, "rollback": self.rollbacks, "reason": reason,
                         "lr_scale": self.lr_scale})

    def _last_good(self, trainer: TrainerT):
        """(state, path) of this run's newest readable checkpoint from this session on, or
        (None, ""). A checkpoint of another run in the folder (another ``run_id``: e.g. a second
        process writing the same --out) is never a rollback target."""
        for step, path in ckpt.numbered_checkpoints(trainer.run_dir):
            if step < self._session_start:
                break
            try:
                st = ckpt.load_checkpoint(path, map_location="cpu")
            except ckpt.CheckpointError:
                continue
            if st.get("run_id", trainer.run_id) == trainer.run_id:
                return st, str(path)
        return None, ""

    def state_dict(self) -> Dict[str, Any]:
        return {"guard": {"rollbacks": self.rollbacks, "lr_scale": self.lr_scale}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.lr_scale = float(state.get("guard", {}).get("lr_scale", 1.0))
