"""Evaluation during training (``--eval-every N``, ``eval.*``) and the best checkpoint.

Every ``eval.every`` steps and at the last one, ``eval.n`` images generated from noise (the
task's use-time face over its live modules, EMA generators where kept:
``task.trained().eval_batches``) are scored through ganforge/metrics/scoring.py against cached
features of the real ``eval.split``, with the ``eval.extractor`` network: FID (Heusel et al.
2017) and whatever else ``eval.metrics`` names. The scores are a row of metrics.jsonl, and a
new lowest FID saves a checkpoint that ``checkpoints/best.pt`` points to, since the last
checkpoint of a GAN run is often not its best. The extractor and the real features are loaded
when the session starts, so that a missing evaluator fails then and not an hour in. Rank 0
only; ``best_fid`` travels in checkpoints.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

from ganforge.core import checkpoint as ckpt
from ganforge.core.config import ConfigError, DataConfig, EvalConfig
from ganforge.metrics import scoring
from ganforge.training.callbacks import Callback, TrainerT


class Evaluation(Callback):
    """Scores the generators every ``ev.every`` steps (0: never; the best FID so far is still
    carried from checkpoint to checkpoint): ``ev`` is the ``eval`` section, ``data`` the
    ``data`` section (the real images it compares with), ``seed`` the generated images'."""

    def __init__(self, ev: EvalConfig, data: DataConfig, seed: int):
        self.ev, self.data, self.seed = ev, data, seed
        self.every = ev.every
        self.best: Optional[float] = None
        self._metrics = None
        self._extractor = None
        self._real = None

    def on_start(self, trainer: TrainerT, resumed: bool) -> None:
        if not (self.every and trainer.is_main):
            return
        e = self.ev
        if trainer.task.trained().inputs != "noise":
            raise ConfigError(f"--eval-every scores images generated from noise, which --task "
                              f"{trainer.task.name} does not make; score the run afterwards "
                              f"with `ganforge eval {trainer.run_dir}`")
        self._metrics = scoring.parse_metrics(e.metrics)
        self._extractor = scoring.get_extractor(e.extractor, data_spec=self.data.name,
                                                img_size=trainer.img_size, device=trainer.device,
                                                data_dir=self.data.data_dir)
        self._real = scoring.real_features(
            self._extractor, self.data.name, e.split, img_size=trainer.img_size,
            channels=trainer.channels, n=e.n, data_dir=self.data.data_dir)
        trainer.note(f"evaluating {','.join(self._metrics)} every {e.every} steps on {e.n} images "
                     f"against {self._real['data']} ({self._real['split']}) with the {e.extractor} extractor")

    def on_step(self, trainer: TrainerT, step: int, row: Optional[Dict[str, Any]]) -> Optional[str]:
        if self.every and trainer.is_main and (step % self.every == 0 or step == trainer.total_steps):
            self.evaluate(trainer)
        return None

    def evaluate(self, trainer: TrainerT) -> Dict[str, float]:
        """Log the scores; keep ``best.pt`` by FID. Returns the scores (``fid``, ...)."""
        e = self.ev
        trainer.refresh_averages()
        seed = self.seed
        scores = scoring.score_images(trainer.task.trained().eval_batches(e.n, seed),
                                      self._extractor, self._real, metrics=self._metrics, seed=seed)
        trainer.log_row({"step": trainer.step_count, **{k: float(v) for k, v in scores.items()}})
        fid = scores.get("fid")
        best = self.best
        if fid is not None and (best is None or fid < best):
            self.best = fid           # before saving: the checkpoint records it
            path = trainer.save_checkpoint(session_seconds=time.perf_counter() - trainer.session_start)
            ckpt.save_best(trainer.run_dir, path)
            trainer.note(f"step {trainer.step_count}: FID {fid:.3f} (best so far; saved checkpoints/best.pt)")
        elif fid is not None:
            trainer.note(f"step {trainer.step_count}: FID {fid:.3f} (best {best:.3f})")
        return {k: float(v) for k, v in scores.items()}

    def state_dict(self) -> Dict[str, Any]:
        return {"best_fid": self.best}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best = state.get("best_fid")
