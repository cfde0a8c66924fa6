"""The one training loop (DESIGN lessons 2-4).

The task says *what* to compute for each phase; the trainer decides *when*: it runs the
phases in order every step (a phase with ``repeat=k`` k times, with ``every=n`` only every
n-th step), gives each phase its own optimizer over its own modules' parameters, and restricts
each backward pass to those parameters (``backward(inputs=...)``), so the generator phase
never computes the discriminator's weight gradients.

Set-up (``Trainer.__init__``) reads top to bottom: the config (values and names checked) ->
the runtime (process group, threads, device: ganforge/training/runtime.py) -> data and loader
-> the task, transfer learning at start-up (``train.init_from``, ``train.freeze_d``:
ganforge/training/transfer.py), the EMA copies, the phases -> optimizers and lr schedules -> how
``step()`` computes (autocast dtype, GradScalers, the DDP/compiled wrappers) -> the fixed
inputs of the sample grids -> the callbacks -> resume.

Also here, because they are about *when*: the weight average of the generators (``ema.*``,
updated after every step into ``<name>_ema`` modules that no phase trains), seeding, the
checkpoint state (``state_dict``/``load_state``, resume) and the run's statistics. Host
synchronisation is kept out of the hot loop: per-step statistics stay on the device and are
summed there; they are read back (``.item()``) only every ``log.log_every`` steps, as one
row of metrics.jsonl.

After each step ``fit`` does, in order: the metrics row (at log steps), which the divergence
guard judges (ganforge/training/callbacks/guard.py: non-finite statistics, or a D whose accuracy stays
pinned, roll the run back to its last good checkpoint with lower learning rates); the
progress bar; under torchrun the agreement to stop; then, on the steps they asked for, the
callbacks (ganforge/training/, one concern per file, built from the config): the sample grid
and curves (artifacts.py), the checkpoint (checkpoints.py; non-finite weights are a rollback,
never a file) and the evaluation with ``best.pt`` (evaluation.py). A session ends at the last
step, at ``fit(stop_at=)``, on time (``train.time_limit``) or on Ctrl-C / SIGTERM
(ganforge/training/session.py), and always saves on the way out (unless the weights are not
finite), then writes the GIF and the curves. Multi-process training under torchrun
(ganforge/core/distributed.py): each trained module in its own DDP, only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ganforge import models
from ganforge.core import checkpoint as ckpt
from ganforge.core import distributed
from ganforge.core.config import Config, ConfigError, LogConfig, check_values
from ganforge.core.version import __version__
from ganforge.data.auto import choose_data_defaults
from ganforge.data.auto import describe as describe_choices
from ganforge.data.classic_augment import AugmentedLoader, ClassicAugment
from ganforge.regularize.ema import EMA, make_copy
from ganforge.training import claim
from ganforge.training.averages import StandingStatistics
from ganforge.training.callbacks import Callback
from ganforge.training.callbacks.artifacts import Artifacts
from ganforge.training.callbacks.evaluation import Evaluation
from ganforge.training.callbacks.guard import Guard
from ganforge.training.callbacks.saving import Checkpoints
from ganforge.training.callbacks.tracking import MlflowTracking
from ganforge.training.distill import Distiller
from ganforge.training.optim import build_optimizer
from ganforge.training.runtime import Runtime
from ganforge.training.session import Interrupt, Progress
from ganforge.training.tasks import TASKS, Phase, Task, resolve_config
from ganforge.training.transfer import freeze_discriminators, init_from

__all__ = ["Trainer", "DEFAULT_STEPS", "default_run_dir"]

DEFAULT_STEPS = 2000


def _size_fits(family: str):
    """``fits(size) -> bool``: whether ``family``'s generator can be built at ``size`` px
    (tried at width 1, which costs microseconds; any error means no)."""
    def fits(size: int) -> bool:
        try:
            models.GENERATORS.get(family)(img_size=size, channels=1, z_dim=1, width=1)
        except Exception:  # noqa: BLE001 - an unreachable size, or a family with other rules
            return False
        return True
    return fits


def default_run_dir(cfg: Config) -> str:
    task = TASKS.get(cfg.train.task)
    name = task.data_label(cfg)
    data = Path(name).name if ("/" in name or os.sep in name) else name
    data = data.replace(":", "-") or "data"
    return str(Path("runs") / f"{task.run_label(cfg)}-{data}")


class Trainer:
    """Build everything from a :class:`Config` and train.

    ``Trainer(cfg).fit()`` runs to ``train.steps`` (or ``train.epochs``); ``step()`` runs one
    training step (all phases once) and is what benchmarks time. ``resume=True`` continues
    from ``<out>/checkpoints/latest.pt`` exactly where it stopped. ``callbacks``: what
    ``fit`` calls around the loop (a :class:`ganforge.training.Callback` appended before
    ``fit`` is called too, and its ``state_dict`` travels in checkpoints).
    """

    def __init__(self, cfg: Config, *, resume: bool = False, overwrite: bool = False, dataset=None,
                 quiet: bool = False, callbacks: Sequence[Callback] = ()):
        # The order is the state's: the seed precedes the networks' initialisation, and every
        # check that can refuse the run comes before any data is loaded.
        self.cfg = self._checked(cfg)
        self._start_runtime(quiet)
        self._choose_data_defaults(dataset)
        self._seed()
        self.run_dir = Path(self.cfg.out or default_run_dir(self.cfg))
        tracking = self._open_tracking()
        self._claim_run_folder(resume, overwrite)
        local_cfg = self.runtime.local_config(self.cfg)   # this process's share of the global batch
        self._build_data(dataset, local_cfg)
        if self._resume_from is not None:
            claim.check_resume_data(self._resume_from["state"].get("data") or {}, self.data_info,
                                    str(self.run_dir), int(self._resume_from["state"].get("step", 0)))
        self._build_task(local_cfg)
        self._build_phases()
        self._build_optimizers()
        self._short_run_cadence()
        self._build_step()
        self._build_counters()
        self._build_callbacks(callbacks, tracking)
        if self._resume_from is not None:
            self._resume()

    # ------------------------------------------------------------------ set-up, in order
    @staticmethod
    def _checked(cfg: Config) -> Config:
        """Every value in its range (also a config built with dataclasses.replace), every name
        and cross-key setting resolved, before any data."""
        check_values(cfg)
        return resolve_config(cfg)

    def _start_runtime(self, quiet: bool) -> None:
        """The torchrun process group (it decides this process's GPU), threads, device."""
        self.runtime = rt = Runtime.start(self.cfg.train, note=self.note)
        self.dist, self.device, self.is_cuda = rt.dist, rt.device, rt.is_cuda
        self.is_main = self.dist.is_main
        self.quiet = quiet or not self.is_main

    def _choose_data_defaults(self, dataset) -> None:
        """Defaults chosen from a folder's images for the keys the user left unset (size, batch,
        small-data aids; ganforge/data/auto.py), said in the run's first line."""
        cfg = self.cfg
        if dataset is None and TASKS.get(cfg.train.task).data_defaults:
            cfg, chosen = choose_data_defaults(cfg, fits=_size_fits(cfg.model.name),
                                               world_size=self.dist.world_size)
            if chosen:
                self.note(describe_choices(chosen, cfg.data.name))
                self.cfg = cfg

    def _seed(self) -> None:
        """Every RNG a checkpoint carries (ckpt.rng_state) starts from the seed, so that a seeded
        run's whole state is the same whichever process it started in."""
        seed = self.cfg.train.seed
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def _open_tracking(self) -> Optional[MlflowTracking]:
        """MLflow (log.mlflow), built before any data, so that a missing package fails at once."""
        log = self.cfg.log
        return MlflowTracking(log, self.run_dir, write=self.is_main) if log.mlflow else None

    def _claim_run_folder(self, resume: bool, overwrite: bool) -> None:
        """The run folder: writable, holding no other run (unless --resume/--overwrite); a
        resumed run's settings checked against its own, all before any data is loaded."""
        self._resume_from = claim.claim(self.run_dir, resume=resume, overwrite=overwrite,
                                        write=self.is_main, note=self.note)
        self._resume_changes = {}
        if self._resume_from is not None:
            self._resume_changes = claim.check_resume_config(
                self._resume_from["state"].get("config", {}), self.cfg.to_dict(), str(self.run_dir))
        #: identifies this run in its checkpoints (the guard rolls back into this run's only)
        self.run_id = uuid.uuid4().hex

    def _build_data(self, dataset, local_cfg: Config) -> None:
        """The data (the task decides what data it needs; see Task.load_data), its loader on
        the device it fits, and classic augmentation of the real images (aug.classic)."""
        cfg, t = self.cfg, self.cfg.train
        task_cls = TASKS.get(t.task)
        self.dataset = dataset if dataset is not None else task_cls.load_data(cfg)
        self.data_info = task_cls.describe_data(self.dataset)
        self.img_size, self.channels = self.data_info.img_size, self.data_info.channels
        loader_device = self.runtime.data_device(self.data_info.nbytes)
        self.loader = task_cls.build_loader(self.dataset, local_cfg, device=loader_device,
                                            rank=self.dist.rank, world_size=self.dist.world_size)
        if cfg.aug.classic:
            try:
                aug = ClassicAugment(cfg.aug.classic, seed=t.seed + 17 + self.dist.rank,
                                     device=loader_device)
            except ValueError as e:
                raise ConfigError(f"aug.classic: {e}") from None
            self.loader = AugmentedLoader(self.loader, aug)

    def _build_task(self, local_cfg: Config) -> None:
        """The task (its networks), transfer learning (train.init_from, train.freeze_d), the
        memory format, and the EMA copies of the generators: plain modules in task.modules
        (checkpointed, used by sample/eval) that no phase trains, made before any DDP/SyncBN
        conversion."""
        cfg, t = self.cfg, self.cfg.train
        n_classes = len(self.data_info.class_names or [])
        self.task: Task = TASKS.get(t.task)(cfg=local_cfg, img_size=self.img_size,
                                            channels=self.channels, device=self.device,
                                            n_classes=n_classes, seed=t.seed, dist=self.dist)
        self.task.bind_data(self.dataset)
        if t.init_from:
            self.note(init_from(self.task, t.init_from, class_names=self.data_info.class_names))
        if t.freeze_d:
            self.note(freeze_discriminators(self.task, t.freeze_d))
        if t.channels_last:
            for m in self.task.modules.values():
                m.to(memory_format=torch.channels_last)
        self.ema = None
        if cfg.ema.half_life > 0:
            self.ema = EMA(cfg.ema.half_life * 1000, warmup=cfg.ema.warmup)
            for name in self.task.generators:
                self.task.modules.setdefault(f"{name}_ema", make_copy(self.task.modules[name]))

    def _build_phases(self) -> None:
        """The task's phases; knowledge distillation (distill.teacher; ganforge/training/
        distill.py): the teacher, hooks on the student generators, and without the adversarial
        term no D phase; BatchNorm synchronised over processes for the trained modules."""
        self.distiller = (Distiller(self.cfg.distill, self.task, self.device)
                          if self.cfg.distill.teacher else None)
        self.phases: List[Phase] = self.task.phases()
        if self.distiller is not None:
            self.phases = self.distiller.phases(self.phases, self.task.discriminators)
            self.note(self.distiller.describe())
        self._trained = sorted({m for p in self.phases for m in p.modules})
        self.runtime.sync_batchnorm(self.task.modules, self._trained)

    def _build_optimizers(self) -> None:
        """One optimiser (train.optimizer) and learning-rate schedule per phase, over the
        phase's trainable parameters."""
        t = self.cfg.train
        self.params = {p.name: [q for m in p.modules for q in self.task.modules[m].parameters()
                                if q.requires_grad]
                       for p in self.phases}
        self.optimizers = {p.name: build_optimizer(t.optimizer, self.params[p.name], lr=p.lr,
                                                   betas=p.betas, weight_decay=t.weight_decay,
                                                   device=self.device)
                           for p in self.phases}
        self.total_steps = self._total_steps()
        self.task.set_total_steps(self.total_steps)
        self.schedulers = {n: torch.optim.lr_scheduler.LambdaLR(o, self._lr_lambda)
                           for n, o in self.optimizers.items()}

    def _short_run_cadence(self) -> None:
        """A short run logs and samples often enough to show something: with the default
        ``log.log_every`` (50) and ``log.sample_every`` (250), a run of fewer than 1,000 /
        2,000 steps logs every ``steps // 20`` and samples every ``steps // 8`` steps (a
        50-step run had one logged row, so no curve, and grids only at its two ends). Values
        set to anything else are kept; config.yaml records what was used."""
        log, d, total = self.cfg.log, LogConfig(), self.total_steps
        changes = {}
        if log.log_every == d.log_every and total < 20 * d.log_every:
            changes["log.log_every"] = max(1, total // 20)
        if log.sample_every == d.sample_every and total < 8 * d.sample_every:
            changes["log.sample_every"] = max(1, total // 8)
        if changes:
            self.cfg = self.cfg.with_overrides(changes)

    def _build_step(self) -> None:
        """How step() computes: the autocast dtype (+ GradScalers for fp16), and the modules it
        calls: each trained module in its own DDP (several processes) and/or compiled.
        task.modules keeps the plain modules, which checkpoints, grids and evaluation use."""
        t, rt = self.cfg.train, self.runtime
        self.amp_dtype = rt.amp_dtype(t.amp)
        self.amp_device = self.device.type
        self.scalers = rt.grad_scalers(self.amp_dtype, self.optimizers)
        self._train_modules = rt.training_modules(self.task.modules, self._trained, t.compile)

    def _build_counters(self) -> None:
        """The fixed inputs of the sample grids (drawn once, stored in checkpoints) and the
        counters."""
        g = torch.Generator().manual_seed(self.cfg.train.seed + 2)
        self.fixed = self.task.fixed_inputs(self.cfg.log.n_samples, g, self.device)
        self.step_count = 0
        self.images_seen = 0
        self.elapsed = 0.0       # training seconds over all sessions of this run
        self._stop_reason: Optional[str] = None   # set by request_stop()
        self.session_start = 0.0     # perf_counter() at this session's first step
        self.session_seconds = 0.0   # this session's training seconds, as of the last step's end
        self._acc: Dict[str, torch.Tensor] = {}
        self._acc_count: Dict[str, int] = {}    # steps that produced each statistic
        self._acc_n = 0

    def _build_callbacks(self, given: Sequence[Callback], tracking: Optional[MlflowTracking]) -> None:
        """The callbacks, in the order each step's outputs are made (grid, checkpoint, scores);
        the guard last, so that its start-of-run snapshot includes what the others did. The
        caller's ``given`` callbacks come first: their on_end runs last (after the final
        checkpoint, GIF and curves), e.g. the report; a caller's own Evaluation (ganforge
        tune's trial scoring) replaces the default one; MLflow first of all (its on_end runs
        last, after the report it uploads)."""
        cfg = self.cfg
        self.averages = (StandingStatistics(self.task.generators, cfg.train.seed)
                         if self.ema is not None else None)
        self.guard = Guard(cfg.guard, cfg.log.log_every)
        self.artifacts = Artifacts(self.run_dir, cfg.log, write=self.is_main)
        own_eval = ([] if any(isinstance(cb, Evaluation) for cb in given)
                    else [Evaluation(cfg.eval, cfg.data, cfg.train.seed)])
        self.callbacks: List[Callback] = [*given, self.artifacts, Checkpoints(cfg.log.ckpt_every),
                                          *own_eval, self.guard]
        if tracking is not None:
            self.callbacks.insert(0, tracking)

    # ------------------------------------------------------------------ helpers
    def request_stop(self, reason: str) -> None:
        """End this session after the current step, as a time limit would (final checkpoint,
        GIF and curves): for callbacks, e.g. a tuning trial that was pruned. Single-process
        runs only (under torchrun every process must agree on the step; use a signal)."""
        self._stop_reason = reason

    def note(self, msg: str) -> None:
        """A message for the user on stderr (rank 0, unless quiet)."""
        if not self.quiet:
            print(f"[ganforge] {msg}", file=sys.stderr, flush=True)

    def log_row(self, row: Dict[str, Any]) -> None:
        """Append a row to metrics.jsonl (and TensorBoard); rank 0 only."""
        self.artifacts.log(row)

    def refresh_averages(self) -> None:
        """Give each generator average with BatchNorm its own statistics before it is used
        (ganforge/training/averages.py); once per step at most."""
        if self.averages is not None:
            self.averages.refresh(self.task.modules, self.step_count)

    def _total_steps(self) -> int:
        t = self.cfg.train
        if t.steps > 0:
            return t.steps
        if t.epochs > 0:
            per_step = t.batch_size * max(p.repeat for p in self.phases if p.new_batch) \
                if any(p.new_batch for p in self.phases) else t.batch_size
            return max(1, math.ceil(t.epochs * self.data_info.n_images / per_step))
        return DEFAULT_STEPS

    def _lr_lambda(self, step: int) -> float:
        t = self.cfg.train
        if t.lr_decay == "none":
            return 1.0
        start = int(t.lr_decay_start * self.total_steps)
        if step < start:
            return 1.0
        frac = (step - start) / max(1, self.total_steps - start)
        frac = min(1.0, frac)
        if t.lr_decay == "linear":
            return 1.0 - frac
        return 0.5 * (1 + math.cos(math.pi * frac))     # cosine

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.amp_device, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ one step
    def step(self) -> Dict[str, torch.Tensor]:
        """One training step: every phase due at this step, in order. Returns detached stats."""
        stats: Dict[str, torch.Tensor] = {}
        batch = None
        mods = self.task.modules
        plain = {n: mods[n] for n in self._train_modules}
        mods.update(self._train_modules)       # the DDP/compiled wrappers, for this step only
        try:
            for phase in self.phases:
                if self.step_count % phase.every:
                    continue
                opt = self.optimizers[phase.name]
                params = self.params[phase.name]
                with distributed.no_sync(mods[m] for m in phase.uses):
                    for r in range(phase.repeat):
                        if phase.new_batch or batch is None:
                            batch = self.loader.next()
                            if batch[0].device != self.device:
                                batch = tuple(b.to(self.device, non_blocking=True) if b is not None else None
                                              for b in batch)
                            self.images_seen += batch[0].shape[0] * self.dist.world_size
                        opt.zero_grad(set_to_none=True)
                        with self._autocast():
                            loss, logs = self.task.loss(phase.name, batch, last_repeat=(r == phase.repeat - 1))
                            if self.distiller is not None and self.distiller.is_g_phase(phase):
                                loss, logs = self.distiller.g_loss(loss, logs)
                        scaler = self.scalers.get(phase.name)
                        if scaler is not None:
                            scaler.scale(loss).backward(inputs=params)
                            scaler.step(opt)
                            scaler.update()
                        else:
                            loss.backward(inputs=params)
                            opt.step()
                        stats.update(logs)
        finally:
            mods.update(plain)
        for s in self.schedulers.values():
            s.step()
        self.step_count += 1
        if self.ema is not None:
            for name in self.task.generators:
                self.ema.update(mods[name], mods[f"{name}_ema"], batch_size=self.cfg.train.batch_size,
                                images_seen=self.images_seen)
        return stats

    # ------------------------------------------------------------------ the loop
    def fit(self, stop_at: Optional[int] = None) -> Dict[str, Any]:
        """Train to ``train.steps``. ``stop_at`` ends this session early at that step, exactly
        as an interruption would (checkpoint and all); the schedule still targets the total."""
        cfg, log = self.cfg, self.cfg.log
        resumed = self.step_count > 0
        total = self.total_steps
        if self.step_count >= total:
            # Nothing to train: the run folder is left as it is (its config.yaml still says the
            # length it was trained to), only a GIF or curves a kill prevented are made.
            self.note(f"already at step {self.step_count} (asked for {total}); nothing to do, "
                      f"the run is unchanged (give --steps above {self.step_count} to train longer)")
            self.artifacts.sweep()
            self.artifacts.on_end(self)
            return self._summary(0.0, 0)
        self.artifacts.open(self, resumed)
        if self._resume_changes:      # recorded in the run folder, next to the steps they apply to
            self.log_row({"step": self.step_count, "resumed": True,
                          "changed": {k: [a, b] for k, (a, b) in self._resume_changes.items()}})
            self._resume_changes = {}
        self.note(f"training {type(self.task).run_label(cfg)} on {self.data_info.name} ({self.data_info.n_images} images, "
                  f"{self.channels}x{self.img_size}x{self.img_size}) on {self.device}; "
                  f"run folder: {self.run_dir}")
        if self.dist.enabled:
            ws, b = self.dist.world_size, cfg.train.batch_size
            self.note(f"DDP: {ws} processes ({'nccl' if self.is_cuda else 'gloo'}), global batch {b} = "
                      f"{ws} x {b // ws} per process; learning rates as configured (train.batch_size "
                      f"is the global batch, so adding processes changes no hyper-parameter). "
                      + ("BatchNorm synchronised (SyncBatchNorm)." if self.is_cuda else
                         "BatchNorm statistics are per process on CPU (SyncBatchNorm needs GPUs)."))
        for cb in self.callbacks:
            cb.on_start(self, resumed)
        wake = math.gcd(*(cb.every for cb in self.callbacks))   # callbacks' steps: multiples of it
        bar = Progress(total, self.step_count, enabled=log.progress and not self.quiet,
                       keys=self.task.progress_keys)
        start_step, start_time = self.step_count, time.perf_counter()
        self.session_start = start_time
        t0_images = self.images_seen
        interrupted = None
        with Interrupt() as intr:
            try:
                while self.step_count < total:
                    stats = self.step()
                    for k, v in stats.items():
                        self._acc[k] = self._acc[k] + v if k in self._acc else v.clone()
                        self._acc_count[k] = self._acc_count.get(k, 0) + 1
                    self._acc_n += 1
                    s = self.step_count
                    now = time.perf_counter()
                    time_up = bool(cfg.train.time_limit and now - start_time >= cfg.train.time_limit)
                    stop = intr.signal is not None or time_up
                    logged = s % log.log_every == 0 or s == total
                    row = None
                    if logged:
                        row = self._flush_stats(now - start_time, self.images_seen - t0_images)
                        reason = self.guard.check_row(row)
                        if reason is not None:
                            self.guard.rollback(self, reason)
                            bar.update(self.step_count, self.loader.epoch_float, None)
                            continue
                    bar.update(s, self.loader.epoch_float, row)
                    if self.dist.enabled:
                        # Every process must stop at the same step: agree at log steps only
                        # (one tiny all-reduce), so a signal is honoured within log_every steps.
                        stop = distributed.any_process(stop, self.dist, self.device) if logged else False
                    if (wake and s % wake == 0) or s == total:
                        self.session_seconds = now - start_time
                        reason = self._wake(s, row)
                        if reason is not None:
                            self.guard.rollback(self, reason)
                            continue
                    stop = stop or self._stop_reason is not None
                    if stop:
                        if self._stop_reason is not None:
                            self.note(f"stopped at step {s}: {self._stop_reason}")
                        elif intr.signal is not None:
                            interrupted = intr.signal
                        elif time_up:
                            self.note(f"time limit of {cfg.train.time_limit:g}s reached at step {s}")
                        else:   # another process was signalled or ran out of time
                            interrupted = signal.SIGTERM
                        break
                    if stop_at is not None and s >= stop_at:
                        break
            finally:
                bar.close()
                self.session_seconds = dt = time.perf_counter() - start_time
                if self._acc_n:     # the same on every process (the flush is a collective)
                    self._flush_stats(dt, self.images_seen - t0_images)
                for cb in reversed(self.callbacks):    # the final checkpoint, then GIF and curves
                    cb.on_end(self)
        summary = self._summary(dt, self.step_count - start_step)
        if interrupted is not None:
            self.note(f"stopped at step {self.step_count}; checkpoint saved. Continue with "
                      f"`ganforge train --out {self.run_dir} --resume`")
            summary["interrupted"] = signal.Signals(interrupted).name
        else:
            self.note(f"done: {self.step_count} steps; samples in {self.run_dir / 'samples'}, "
                      f"checkpoint in {self.run_dir / 'checkpoints' / 'latest.pt'}")
        return summary

    def _wake(self, step: int, row: Optional[Dict[str, Any]]) -> Optional[str]:
        """Each callback's ``on_step``, in order, until one gives a reason to roll back."""
        for cb in self.callbacks:
            reason = cb.on_step(self, step, row)
            if reason is not None:
                return reason
        return None

    def _flush_stats(self, seconds: float, images: int) -> Dict[str, Any]:
        row: Dict[str, Any] = {"step": self.step_count, "epoch": round(self.loader.epoch_float, 4)}
        keys = sorted(self._acc)
        if keys:
            # One device->host copy for all statistics (and, under DDP, one all-reduce: the
            # logged values are means over processes, so every process judges them alike).
            # Each statistic is a mean over the steps that produced it (lazy R1: 1 in r1_every).
            vals = torch.stack([self._acc[k].float().reshape(()) / self._acc_count[k] for k in keys])
            vals = distributed.all_reduce_mean(vals, self.dist)
            for k, v in zip(keys, vals.tolist()):
                row[k] = float(v)
        for name, s in self.schedulers.items():      # each phase's own learning rate
            row[f"lr_{name}"] = s.get_last_lr()[0]
        row["images_per_sec"] = images / seconds if seconds > 0 else 0.0
        row["time"] = round(self.elapsed + seconds, 3)
        self._acc, self._acc_count, self._acc_n = {}, {}, 0
        self.log_row(row)
        return row

    def _summary(self, seconds: float, steps: int) -> Dict[str, Any]:
        return {"run_dir": str(self.run_dir), "steps": self.step_count, "seconds": seconds,
                "steps_this_session": steps,
                "steps_per_sec": steps / seconds if seconds > 0 else 0.0}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        """The whole state of the run (format :data:`ganforge.core.checkpoint.FORMAT`): what a
        checkpoint holds."""
        raw = distributed.unwrap
        st = {
            "format": ckpt.FORMAT,
            "version": __version__,
            "step": self.step_count,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            "epoch": self.loader.epoch_float,
            "config": self.cfg.to_dict(),
            "task": self.cfg.train.task,
            "run_id": self.run_id,
            "specs": {n: raw(m).spec for n, m in self.task.modules.items()},
            "modules": {n: raw(m).state_dict() for n, m in self.task.modules.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
            "loader": self.loader.state_dict(),
            "task_state": self.task.state_dict(),
            "rng": ckpt.rng_state(),
            "fixed": {k: v.cpu() for k, v in self.fixed.items()},
        }
        held: Dict[str, Any] = {}
        for cb in self.callbacks:
            held.update(cb.state_dict())
        st.update(sorted(held.items()))     # best_fid, guard (whatever the callbacks' order)
        # what this session actually ran on (train.device/amp may say "auto"): report and info
        st["runtime"] = {"device": str(self.device),
                         "precision": str(self.amp_dtype or torch.float32).replace("torch.", ""),
                         "processes": self.dist.world_size}
        st["data"] = {"name": self.data_info.name, "class_names": self.data_info.class_names,
                      "img_size": self.img_size, "channels": self.channels,
                      "n_images": self.data_info.n_images,
                      "fingerprint": self.data_info.fingerprint}
        return st

    def save_checkpoint(self, session_seconds: float = 0.0) -> Optional[Path]:
        """Write a checkpoint of the current state (rank 0: returns its path; None on the other
        processes) and tell the callbacks. ``session_seconds``: training time of the current
        session not yet in ``elapsed``, counted into the saved one."""
        path = None
        if self.is_main:
            self.refresh_averages()
            saved_elapsed = self.elapsed
            self.elapsed = saved_elapsed + session_seconds
            try:
                path = ckpt.save_checkpoint(self.state_dict(), self.run_dir, self.step_count,
                                            keep_last=self.cfg.log.keep_last)
            finally:
                self.elapsed = saved_elapsed
        for cb in self.callbacks:
            cb.on_checkpoint(self, path)
        return path

    def _resume(self) -> None:
        path, st = self._resume_from["path"], self._resume_from["state"]
        self._resume_from = None                # the state is not kept past start-up
        self.load_state(st)
        g = self.cfg.train.batch_size
        self.note(f"resumed from {path} at step {self.step_count}"
                  + (f" with {self.dist.world_size} processes (global batch {g})" if self.dist.enabled else ""))
        if self._resume_changes:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in self._resume_changes.items())
            self.note(f"--resume with changed settings: {shown}")

    def load_state(self, st: Dict[str, Any]) -> None:
        """Restore everything :meth:`state_dict` saved (resume and the guard's rollback)."""
        for n, m in self.task.modules.items():
            if n in st["modules"]:
                distributed.unwrap(m).load_state_dict(st["modules"][n])
            elif n.endswith("_ema") and n[:-4] in st["modules"]:
                # EMA switched on for a run saved without it: start the average at the weights.
                distributed.unwrap(m).load_state_dict(st["modules"][n[:-4]])
            else:
                raise ckpt.CheckpointError(f"the checkpoint has no weights for module '{n}'")
        for n, o in self.optimizers.items():
            o.load_state_dict(st["optimizers"][n])
        for n, s in self.schedulers.items():
            s.load_state_dict(st["schedulers"][n])
        for n, s in self.scalers.items():
            if n in st.get("scalers", {}):
                s.load_state_dict(st["scalers"][n])
        self.loader.load_state_dict(st["loader"])
        self.task.load_state_dict(st["task_state"])
        ckpt.set_rng_state(st["rng"])
        self.fixed = {k: v.to(self.device) for k, v in st["fixed"].items()}
        self.step_count = int(st["step"])
        self.images_seen = int(st["images_seen"])
        self.elapsed = float(st.get("elapsed", 0.0))
        self.run_id = str(st.get("run_id") or self.run_id)
        for cb in self.callbacks:
            cb.load_state_dict(st)

    def rollback_to(self, st: Dict[str, Any], lr_factor: float) -> None:
        """The guard's rollback (ganforge/training/callbacks/guard.py): restore ``st`` (a
        :meth:`state_dict`), multiply every learning rate by ``lr_factor`` and drop the
        statistics gathered since the last log step."""
        self.load_state(st)
        for o, s in zip(self.optimizers.values(), self.schedulers.values()):
            s.base_lrs = [b * lr_factor for b in s.base_lrs]
            for group, lam_lr in zip(o.param_groups, s.base_lrs):
                group["lr"] = lam_lr * self._lr_lambda(s.last_epoch)
        self._acc, self._acc_count, self._acc_n = {}, {}, 0
