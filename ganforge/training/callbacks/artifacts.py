"""What a run writes for people to look at: the run folder's ``config.yaml``, the JSON-lines
metrics log (``metrics.jsonl``, plus TensorBoard scalars when the package is installed), the
fixed-noise sample grids (``samples/step-NNNNNNN.png``, also to TensorBoard), the loss curves
(``curves.png``) and the training GIF (``training.gif``).

Grids are made from the same fixed inputs all run long (drawn once, stored in checkpoints), so
successive grids show the same latent points learning: at the start, every ``log.sample_every``
steps (0: only at the start and the end) and at the last step, each time followed by a fresh
curves plot. Only rank 0 writes (ganforge/core/distributed.py).
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

from ganforge.core import runfolder
from ganforge.core.config import LogConfig
from ganforge.core.files import remove_stale_temps
from ganforge.render.curves import plot_curves
from ganforge.render.images import make_grid, save_grid, write_gif
from ganforge.training.callbacks import Callback, TrainerT


class Artifacts(Callback):
    """Writes into ``run_dir`` when ``write`` (rank 0); ``log`` is the config's ``log.*``."""

    def __init__(self, run_dir: Path, log: LogConfig, write: bool):
        self.run_dir = run_dir
        self.cfg = log
        self.write = write
        self.every = log.sample_every
        self.frames: List[str] = []      # the grids written by this process, in order
        self._tb = None
        self._tb_warned = False
        self._previous_hook = None     # threading.excepthook before ours (see _watch_tb_thread)

    def open(self, trainer: TrainerT, resumed: bool) -> None:
        """Make the run folder, write the resolved config and open TensorBoard (before the
        session's first step; also when there is nothing left to train)."""
        if not self.write:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        runfolder.samples_dir(self.run_dir).mkdir(exist_ok=True)
        self.sweep()
        # The log ends where the run resumes: a line torn by a crash and rows logged after the
        # last checkpoint (they are logged again) are dropped.
        dropped = runfolder.repair_log(self.run_dir, trainer.step_count)
        if dropped:
            trainer.note(f"{runfolder.METRICS_LOG}: dropped {dropped} line(s) after step "
                         f"{trainer.step_count} (logged after the last checkpoint, or torn by a crash)")
        runfolder.write_config(self.run_dir, trainer.cfg.dump_yaml())
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.run_dir / runfolder.TENSORBOARD),
                                         purge_step=trainer.step_count if resumed else None)
                self._watch_tb_thread()
            except Exception:   # tensorboard not installed: the JSON log and PNG curves remain
                self._tb = None

    def sweep(self) -> None:
        """Remove temporary files of writes killed by SIGKILL (config.yaml, the log's repair,
        grids, GIF, the --out probe): this process is the folders' one writer (checkpoints/
        sweeps its own). Also when there is nothing to train: they are no part of the run."""
        if not self.write:
            return
        remove_stale_temps(self.run_dir)
        if runfolder.samples_dir(self.run_dir).is_dir():
            remove_stale_temps(runfolder.samples_dir(self.run_dir))

    def _tb_failed(self, e: BaseException) -> None:
        """TensorBoard could not write (a full disk, a lost mount): one warning, and the run
        goes on without it (metrics.jsonl and curves.png are the record)."""
        if self._tb is not None or not self._tb_warned:
            warnings.warn(f"TensorBoard cannot write its events ({type(e).__name__}: {e}); "
                          f"{runfolder.METRICS_LOG} and {runfolder.CURVES} go on", stacklevel=2)
            self._tb_warned = True
        self._tb = None

    def _tb_call(self, fn, *a) -> None:
        try:
            fn(*a)
        except Exception as e:  # noqa: BLE001 - TensorBoard's own writer errors, whatever they are
            self._tb_failed(e)

    def _watch_tb_thread(self) -> None:
        """TensorBoard writes from a thread of its own; an error there (a full disk) would
        print a traceback from that thread: it becomes :meth:`_tb_failed`'s one warning."""
        if self._previous_hook is not None:
            return
        previous = self._previous_hook = threading.excepthook

        def hook(args) -> None:
            if type(args.thread).__module__.startswith("tensorboard"):
                self._tb_failed(args.exc_value)
            else:
                previous(args)
        threading.excepthook = hook

    def _unwatch_tb_thread(self) -> None:
        if self._previous_hook is not None:
            threading.excepthook = self._previous_hook
            self._previous_hook = None

    def log(self, row: Dict[str, Any]) -> None:
        """Append ``row`` to metrics.jsonl (and its numbers to TensorBoard)."""
        if not self.write:
            return
        runfolder.append_row(self.run_dir, row)
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step",) and self._tb is not None:
                    self._tb_call(self._tb.add_scalar, k, v, row["step"])

    def plot(self) -> bool:
        """``curves.png`` from the metrics log so far."""
        return plot_curves(runfolder.read_rows(self.run_dir), self.run_dir / runfolder.CURVES)

    def save_samples(self, trainer: TrainerT) -> Path:
        """The grid of the current step from the fixed inputs; returns its path."""
        path = runfolder.sample_path(self.run_dir, trainer.step_count)
        if not self.write:
            return path
        trainer.refresh_averages()
        imgs = trainer.task.render(trainer.fixed)
        save_grid(imgs, path, scale=2 if trainer.img_size <= 32 else 1)
        if str(path) not in self.frames:
            self.frames.append(str(path))
        if self._tb is not None:
            self._tb_call(self._tb.add_image, "samples", (make_grid(imgs) + 1) / 2, trainer.step_count)
        return path

    def on_start(self, trainer: TrainerT, resumed: bool) -> None:
        if not resumed:
            self.save_samples(trainer)

    def on_step(self, trainer: TrainerT, step: int, row: Optional[Dict[str, Any]]) -> Optional[str]:
        if (self.every and step % self.every == 0) or step == trainer.total_steps:
            self.save_samples(trainer)
            if self.write:
                self.plot()
        return None

    def on_end(self, trainer: TrainerT) -> None:
        if not self.write:
            return
        frames = runfolder.sample_grids(self.run_dir)
        if frames and self.cfg.gif:
            write_gif(frames, self.run_dir / runfolder.GIF)
        self.plot()
        if self._tb is not None:
            self._tb_call(self._tb.flush)
        self._unwatch_tb_thread()
