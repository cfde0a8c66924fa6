"""The one training loop (DESIGN lessons 2-4).

The task says *what* to compute for each phase; the trainer decides *when*: it runs the
phases in order every step (a phase with ``repeat=k`` k times, with ``every=n`` only every
n-th step), gives each phase its own optimizer over its own modules' parameters, and restricts
each backward pass to those parameters (``backward(inputs=...)``), so the generator phase
never computes the discriminator's weight gradients.

Around the loop: seeding, device/AMP/channels_last/compile settings, the fixed-noise sample
grids, the JSON-lines metrics log (plus TensorBoard when installed), loss curves, the
training GIF, checkpoints, resume, and clean interruption (Ctrl-C / SIGTERM save first).

Host synchronisation is kept out of the hot loop: per-step statistics stay on the device and
are summed there; they are read back (``.item()``) only every ``log.log_every`` steps.

Also here, because they are about *when*: the weight average of the generators (``ema.*``,
updated after every step into ``<name>_ema`` modules that no phase trains), transfer learning
at start-up (``train.init_from``, ``train.freeze_d``: ganforge/transfer.py), the divergence
guard (``guard.*``: non-finite statistics or weights, or a D whose accuracy stays pinned,
roll the run back to its last good checkpoint with lower learning rates), and multi-process
training under torchrun (ganforge/distributed.py: each trained module in its own DDP, only
rank 0 writes).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

import ganforge
from ganforge import checkpoint as ckpt
from ganforge import distributed, scoring
from ganforge.config import Config, ConfigError
from ganforge.errors import RunError
from ganforge.report.curves import plot_curves
from ganforge.report.images import save_grid, write_gif
from ganforge.tasks import TASKS, Phase, Task, resolve_config

DEFAULT_STEPS = 2000


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device='{name}' but CUDA is not available on this machine; "
                          f"use train.device=cpu (or auto)")
    return dev


def default_run_dir(cfg: Config) -> str:
    data = Path(cfg.data.name).name if ("/" in cfg.data.name or os.sep in cfg.data.name) else cfg.data.name
    data = data.replace(":", "-") or "data"
    return str(Path("runs") / f"{TASKS.get(cfg.train.task).run_label(cfg)}-{data}")


class TrainingDiverged(RunError, RuntimeError):
    """The guard rolled back ``guard.max_rollbacks`` times and training still diverges."""


class _Interrupt:
    """Turns the first SIGINT/SIGTERM into a flag the loop checks after each step; a second
    one interrupts immediately (the last completed checkpoint is still on disk)."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def __enter__(self):
        if threading_main():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n[ganforge] {signal.Signals(signum).name} received: finishing this step and saving "
              f"a checkpoint (press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


def _cpu_has_bf16() -> bool:
    fn = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    try:
        return bool(fn()) if fn is not None else False
    except Exception:
        return False


def threading_main() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


class Trainer:
    """Build everything from a :class:`Config` and train.

    ``Trainer(cfg).fit()`` runs to ``train.steps`` (or ``train.epochs``); ``step()`` runs one
    training step (all phases once) and is what benchmarks time. ``resume=True`` continues
    from ``<out>/checkpoints/latest.pt`` exactly where it stopped.
    """

    def __init__(self, cfg: Config, *, resume: bool = False, dataset=None, quiet: bool = False):
        cfg = resolve_config(cfg)     # every name and cross-key setting, before any data
        self.cfg = cfg
        t = cfg.train
        # torchrun: join the process group first (it decides this process's GPU).
        self.dist, dist_device = distributed.setup(t.device)
        self.is_main = self.dist.is_main
        self.quiet = quiet or not self.is_main
        threads = t.threads or (distributed.cpu_threads_per_process(self.dist) if dist_device is None else 0)
        if threads > 0:
            torch.set_num_threads(threads)
        torch.manual_seed(t.seed)
        self.device = dist_device or resolve_device(t.device)
        self.run_dir = Path(cfg.out or default_run_dir(cfg))
        self.is_cuda = self.device.type == "cuda"
        ws = self.dist.world_size
        if t.batch_size % ws:
            raise ConfigError(f"train.batch_size={t.batch_size} is the global batch and must split "
                              f"evenly over the {ws} processes; use {t.batch_size - t.batch_size % ws} "
                              f"or {t.batch_size - t.batch_size % ws + ws}")
        # What one process sees: its share of the global batch (ganforge/distributed.py).
        local_cfg = cfg if ws == 1 else replace(cfg, train=replace(t, batch_size=t.batch_size // ws))

        # ----- data (the task decides what data it needs; see Task.load_data)
        task_cls = TASKS.get(t.task)
        self.dataset = dataset if dataset is not None else task_cls.load_data(cfg)
        self.data_info = task_cls.describe_data(self.dataset)
        self.img_size, self.channels = self.data_info.img_size, self.data_info.channels
        loader_device = self.device if self._data_fits_device() else torch.device("cpu")
        self.loader = task_cls.build_loader(self.dataset, local_cfg, device=loader_device,
                                            rank=self.dist.rank, world_size=ws)
        if cfg.aug.classic:
            from ganforge.data.augment import AugmentedLoader, ClassicAugment
            try:
                aug = ClassicAugment(cfg.aug.classic, seed=t.seed + 17 + self.dist.rank,
                                     device=loader_device)
            except ValueError as e:
                raise ConfigError(f"aug.classic: {e}") from None
            self.loader = AugmentedLoader(self.loader, aug)

        # ----- task, transfer, phases, optimizers
        n_classes = len(self.data_info.class_names or [])
        self.task: Task = task_cls(cfg=local_cfg, img_size=self.img_size, channels=self.channels,
                                   device=self.device, n_classes=n_classes, seed=t.seed, dist=self.dist)
        self.task.bind_data(self.dataset)
        if t.init_from:
            from ganforge.transfer import init_from
            self._note(init_from(self.task, t.init_from))
        if t.freeze_d:
            from ganforge.transfer import freeze_discriminators
            self._note(freeze_discriminators(self.task, t.freeze_d))
        if t.channels_last:
            for m in self.task.modules.values():
                m.to(memory_format=torch.channels_last)
        # EMA copies are plain modules in task.modules (checkpointed, used by sample/eval) that
        # no phase trains; they are made before any DDP/SyncBN conversion.
        self.ema = None
        if cfg.ema.half_life > 0:
            from ganforge.regularize.ema import EMA, make_copy
            self.ema = EMA(cfg.ema.half_life * 1000, warmup=cfg.ema.warmup)
            for name in self.task.generators:
                self.task.modules.setdefault(f"{name}_ema", make_copy(self.task.modules[name]))
        self.phases: List[Phase] = self.task.phases()
        trained = sorted({m for p in self.phases for m in p.modules})
        if self.dist.enabled:
            for name in trained:
                self.task.modules[name] = distributed.convert_batchnorm(self.task.modules[name], self.device)
        self.params = {p.name: [q for m in p.modules for q in self.task.modules[m].parameters()
                                if q.requires_grad]
                       for p in self.phases}
        # Fused Adam (one kernel over all parameters) exists for CPU and CUDA; on the mlp's
        # 1.5M-parameter G it cut the optimizer step from 5.7 ms to 0.4 ms here.
        fused = self.device.type in ("cpu", "cuda")
        self.optimizers = {p.name: torch.optim.Adam(self.params[p.name], lr=p.lr, betas=p.betas,
                                                    **({"fused": True} if fused else {}))
                           for p in self.phases}
        self.total_steps = self._total_steps()
        self.task.set_total_steps(self.total_steps)
        self.schedulers = {n: torch.optim.lr_scheduler.LambdaLR(o, self._lr_lambda)
                           for n, o in self.optimizers.items()}

        # ----- mixed precision: bf16 (fp16 + GradScaler where bf16 is missing) on CUDA, by
        # default; on CPU only on request and only where the CPU has native bf16
        # (AVX512-BF16/AMX), else it would be slower: ignored with a note.
        self.amp_dtype = None
        self.amp_device = self.device.type
        amp = t.amp
        if amp not in ("auto", "none", "bf16", "fp16"):
            raise ConfigError(f"train.amp='{t.amp}': use auto, none, bf16 or fp16")
        if amp == "auto":
            amp = "bf16" if self.is_cuda else "none"
        if amp != "none":
            if self.is_cuda:
                self.amp_dtype = torch.bfloat16 if amp == "bf16" else torch.float16
                if amp == "bf16" and not torch.cuda.is_bf16_supported():
                    self.amp_dtype = torch.float16
            elif amp == "bf16" and self.device.type == "cpu" and _cpu_has_bf16():
                self.amp_dtype = torch.bfloat16
            else:
                self._note(f"train.amp={amp} has no effect on this {self.device.type}; training in float32")
        self.scalers = {n: torch.amp.GradScaler("cuda") for n in self.optimizers} \
            if self.amp_dtype == torch.float16 else {}

        # ----- the modules the training step calls: each trained module wrapped in its own
        # DDP (several processes) and/or compiled. task.modules keeps the plain modules, which
        # checkpoints, progress grids and evaluation use; step() swaps the wrappers in.
        self._train_modules: Dict[str, nn.Module] = {}
        if self.dist.enabled:
            for name in trained:
                self._train_modules[name] = distributed.wrap(self.task.modules[name], self.device)
        if self._want_compile():
            self._note("train.compile: compiling the networks; the first steps are slow (warm-up, "
                       "typically 20-60 s), then faster")
            for name in trained:
                self._train_modules[name] = torch.compile(self._train_modules.get(name, self.task.modules[name]))

        # ----- fixed inputs for progress grids
        g = torch.Generator().manual_seed(t.seed + 2)
        self.fixed = self.task.fixed_inputs(cfg.log.n_samples, g, self.device)

        self.step_count = 0
        self.images_seen = 0
        self.elapsed = 0.0       # training seconds over all sessions of this run
        self.sample_frames: List[str] = []
        self._acc: Dict[str, torch.Tensor] = {}
        self._acc_count: Dict[str, int] = {}    # steps that produced each statistic
        self._acc_n = 0
        self._tb = None
        self._best_fid: Optional[float] = None
        self.rollbacks = 0
        self.lr_scale = 1.0
        self._collapse_since: Optional[int] = None
        self._initial_state: Optional[Dict[str, Any]] = None
        self._session_start_step = 0
        self._ema_stats_step = -1
        if resume:
            self._resume()

    # ------------------------------------------------------------------ helpers
    def _note(self, msg: str) -> None:
        if not self.quiet:
            print(f"[ganforge] {msg}", file=sys.stderr, flush=True)

    def _want_compile(self) -> bool:
        c = str(self.cfg.train.compile).lower()
        if c not in ("auto", "true", "false"):
            raise ConfigError(f"train.compile='{self.cfg.train.compile}': use auto, true or false")
        if c == "false":
            return False
        if not self.is_cuda:
            if c == "true":
                self._note("train.compile has no effect on CPU (it did not speed up these models here)")
            return False
        if c == "auto":
            try:
                from torch.utils._triton import has_triton
                return bool(has_triton())
            except Exception:
                return False
        return True

    def _data_fits_device(self) -> bool:
        if not self.is_cuda:
            return True
        free, _ = torch.cuda.mem_get_info(self.device)
        return self.data_info.nbytes < 0.25 * free

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
        if t.lr_decay == "cosine":
            return 0.5 * (1 + math.cos(math.pi * frac))
        raise ConfigError(f"train.lr_decay='{t.lr_decay}': use none, linear or cosine")

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

    # ------------------------------------------------------------------ run folder
    def _prepare_run_dir(self, resumed: bool) -> None:
        if not self.is_main:      # only rank 0 writes (ganforge/distributed.py)
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "samples").mkdir(exist_ok=True)
        cfg_text = "# ganforge resolved config (edit and pass with --config to reuse)\n" + self.cfg.dump_yaml()
        (self.run_dir / "config.yaml").write_text(cfg_text)
        if self.cfg.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step_count if resumed else None)
            except Exception:   # tensorboard not installed: the JSON log and PNG curves remain
                self._tb = None

    def _log(self, row: Dict[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step",):
                    self._tb.add_scalar(k, v, row["step"])

    def refresh_averages(self) -> None:
        """Give each generator average with BatchNorm its own statistics before it is used
        (see ganforge/regularize/ema.py); once per step at most."""
        if self.ema is None or self._ema_stats_step == self.step_count:
            return
        from ganforge.regularize.ema import recalibrate_batchnorm
        for name in self.task.generators:
            recalibrate_batchnorm(self.task.modules[f"{name}_ema"], seed=self.cfg.train.seed)
        self._ema_stats_step = self.step_count

    def save_samples(self) -> Path:
        path = self.run_dir / "samples" / f"step-{self.step_count:07d}.png"
        if not self.is_main:
            return path
        self.refresh_averages()
        imgs = self.task.render(self.fixed)
        save_grid(imgs, path, scale=2 if self.img_size <= 32 else 1)
        if str(path) not in self.sample_frames:
            self.sample_frames.append(str(path))
        if self._tb is not None:
            from ganforge.report.images import make_grid
            self._tb.add_image("samples", (make_grid(imgs) + 1) / 2, self.step_count)
        return path

    def finalize_outputs(self) -> None:
        if not self.is_main:
            return
        frames = sorted((self.run_dir / "samples").glob("step-*.png"))
        if frames and self.cfg.log.gif:
            write_gif(frames, self.run_dir / "training.gif")
        plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png")
        if self._tb is not None:
            self._tb.flush()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        raw = distributed.unwrap
        return {
            "format": "ganforge-checkpoint-1",
            "version": ganforge.__version__,
            "step": self.step_count,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            "epoch": self.loader.epoch_float,
            "config": self.cfg.to_dict(),
            "task": self.cfg.train.task,
            "specs": {n: raw(m).spec for n, m in self.task.modules.items()},
            "modules": {n: raw(m).state_dict() for n, m in self.task.modules.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
            "loader": self.loader.state_dict(),
            "task_state": self.task.state_dict(),
            "rng": ckpt.rng_state(),
            "fixed": {k: v.cpu() for k, v in self.fixed.items()},
            "best_fid": self._best_fid,
            "guard": {"rollbacks": self.rollbacks, "lr_scale": self.lr_scale},
            "data": {"name": self.data_info.name, "class_names": self.data_info.class_names,
                     "img_size": self.img_size, "channels": self.channels},
        }

    def save_checkpoint(self) -> Optional[Path]:
        if not self.is_main:
            return None
        self.refresh_averages()
        return ckpt.save_checkpoint(self.state_dict(), self.run_dir, self.step_count,
                                    keep_last=self.cfg.log.keep_last)

    def _resume(self) -> None:
        try:
            path = ckpt.find_checkpoint(self.run_dir)
        except ckpt.CheckpointError:
            self._note(f"--resume: no checkpoint in {self.run_dir}; starting a new run")
            return
        self.load_state(ckpt.load_checkpoint(path, map_location="cpu"))
        g = self.cfg.train.batch_size
        self._note(f"resumed from {path} at step {self.step_count}"
                   + (f" with {self.dist.world_size} processes (global batch {g})" if self.dist.enabled else ""))

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
        self._best_fid = st.get("best_fid")
        self.lr_scale = float(st.get("guard", {}).get("lr_scale", 1.0))

    # ------------------------------------------------------------------ the guard
    def _guard_check(self, row: Dict[str, Any]) -> Optional[str]:
        """Why training must roll back, judged on a logged row (the same on every process,
        since rows are averaged over processes), or None."""
        g = self.cfg.guard
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
            self._collapse_since = row["step"] - self.cfg.log.log_every
        if row["step"] - self._collapse_since >= g.window:
            return (f"D's accuracy has stayed at {acc:.1%} (>= {g.collapse_acc:.1%}) for "
                    f"{row['step'] - self._collapse_since} steps: D has collapsed G's signal")
        return None

    def _weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for m in self.task.modules.values()
                   for p in m.parameters())

    def _rollback(self, reason: str) -> None:
        """Restore the last good checkpoint (or the start of the run) and lower the
        learning rates by ``guard.lr_factor``; after ``guard.max_rollbacks`` give up."""
        g = self.cfg.guard
        self.rollbacks += 1
        if self.rollbacks > g.max_rollbacks:
            raise TrainingDiverged(
                f"training diverged again ({reason}) after {g.max_rollbacks} rollbacks; the last good "
                f"checkpoint is in {self.run_dir / 'checkpoints'}. Try lower learning rates "
                f"(train.lr_d / train.lr_g), a regulariser (reg.r1=1, reg.spectral_norm=true) or "
                f"augmentation (aug.diffaug=translation,cutout,color)")
        state, where = None, ""
        try:
            path = ckpt.find_checkpoint(self.run_dir)
            state, where = ckpt.load_checkpoint(path, map_location="cpu"), str(path)
        except ckpt.CheckpointError:
            pass
        if state is None or int(state["step"]) < self._session_start_step:
            # (a resumed session's own starting checkpoint is on disk: it never gets here)
            state, where = self._initial_state, "the start of this run"
        rollbacks = self.rollbacks
        self.load_state(state)
        self.rollbacks = rollbacks
        self.lr_scale *= g.lr_factor
        for o, s in zip(self.optimizers.values(), self.schedulers.values()):
            s.base_lrs = [b * g.lr_factor for b in s.base_lrs]
            for group, lam_lr in zip(o.param_groups, s.base_lrs):
                group["lr"] = lam_lr * self._lr_lambda(s.last_epoch)
        self._acc, self._acc_count, self._acc_n = {}, {}, 0
        self._collapse_since = None
        self._note(f"guard: {reason}; rolled back to step {self.step_count} ({where}) with learning "
                   f"rates x{g.lr_factor} (now x{self.lr_scale:g}); rollback {self.rollbacks} of "
                   f"{g.max_rollbacks}")
        self._log({"step": self.step_count, "rollback": self.rollbacks, "reason": reason,
                   "lr_scale": self.lr_scale})

    # ------------------------------------------------------------------ the loop
    def fit(self, stop_at: Optional[int] = None) -> Dict[str, Any]:
        """Train to ``train.steps``. ``stop_at`` ends this session early at that step, exactly
        as an interruption would (checkpoint and all); the schedule still targets the total."""
        cfg, log = self.cfg, self.cfg.log
        resumed = self.step_count > 0
        self._prepare_run_dir(resumed)
        total = self.total_steps
        if self.step_count >= total:
            self._note(f"already at step {self.step_count} of {total}; nothing to do "
                       f"(raise --steps to train longer)")
            return self._summary(0.0, 0)
        self._note(f"training {type(self.task).run_label(cfg)} on {self.data_info.name} ({self.data_info.n_images} images, "
                   f"{self.channels}x{self.img_size}x{self.img_size}) on {self.device}; "
                   f"run folder: {self.run_dir}")
        if self.dist.enabled:
            ws, b = self.dist.world_size, cfg.train.batch_size
            self._note(f"DDP: {ws} processes ({'nccl' if self.is_cuda else 'gloo'}), global batch {b} = "
                       f"{ws} x {b // ws} per process; learning rates as configured (train.batch_size "
                       f"is the global batch, so adding processes changes no hyper-parameter). "
                       + ("BatchNorm synchronised (SyncBatchNorm)." if self.is_cuda else
                          "BatchNorm statistics are per process on CPU (SyncBatchNorm needs GPUs)."))
        if not resumed:
            self.save_samples()
        if cfg.eval.every and self.is_main:
            self._setup_eval()
        self._session_start_step = self.step_count
        if cfg.guard.enabled and not resumed:
            # Where the guard rolls back to before this run's first checkpoint (a resumed
            # session rolls back to the checkpoint it started from, which is on disk).
            self._initial_state = copy.deepcopy(self.state_dict())
        bar = _Progress(total, self.step_count, enabled=log.progress and not self.quiet,
                        keys=self.task.progress_keys)
        start_step, start_time = self.step_count, time.perf_counter()
        t0_images = self.images_seen
        interrupted = None
        last_ckpt_step = self.step_count if resumed else -1
        with _Interrupt() as intr:
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
                    if logged:
                        row = self._flush_stats(now - start_time, self.images_seen - t0_images)
                        reason = self._guard_check(row)
                        if reason is not None:
                            self._rollback(reason)
                            last_ckpt_step = self.step_count
                            bar.update(self.step_count, self.loader.epoch_float, None)
                            continue
                        bar.update(s, self.loader.epoch_float, row)
                    else:
                        bar.update(s, self.loader.epoch_float, None)
                    if self.dist.enabled:
                        # Every process must stop at the same step: agree at log steps only
                        # (one tiny all-reduce), so a signal is honoured within log_every steps.
                        stop = distributed.any_process(stop, self.dist, self.device) if logged else False
                    if s % log.sample_every == 0 or s == total:
                        self.save_samples()
                        if self.is_main:
                            plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png")
                    if s % log.ckpt_every == 0:
                        if cfg.guard.enabled and not self._weights_finite():
                            self._rollback(f"non-finite weights at step {s}")
                            last_ckpt_step = self.step_count
                            continue
                        self._checkpoint(now - start_time, start_step)
                        last_ckpt_step = s
                    if cfg.eval.every and self.is_main and (s % cfg.eval.every == 0 or s == total):
                        if self._evaluate(time.perf_counter() - start_time, start_step):
                            last_ckpt_step = s
                    if stop:
                        if intr.signal is not None:
                            interrupted = intr.signal
                        elif time_up:
                            self._note(f"time limit of {cfg.train.time_limit:g}s reached at step {s}")
                        else:   # another process was signalled or ran out of time
                            interrupted = signal.SIGTERM
                        break
                    if stop_at is not None and s >= stop_at:
                        break
            finally:
                bar.close()
                dt = time.perf_counter() - start_time
                if self._acc_n:     # the same on every process (the flush is a collective)
                    self._flush_stats(dt, self.images_seen - t0_images)
                if self.step_count != last_ckpt_step:
                    if not cfg.guard.enabled or self._weights_finite():
                        self._checkpoint(dt, start_step)
                    else:
                        self._note("guard: the weights are not finite; the last good checkpoint is kept")
                self.finalize_outputs()
        summary = self._summary(dt, self.step_count - start_step)
        if interrupted is not None:
            self._note(f"stopped at step {self.step_count}; checkpoint saved. Continue with "
                       f"`ganforge train --out {self.run_dir} --resume`")
            summary["interrupted"] = signal.Signals(interrupted).name
        else:
            self._note(f"done: {self.step_count} steps; samples in {self.run_dir / 'samples'}, "
                       f"checkpoint in {self.run_dir / 'checkpoints' / 'latest.pt'}")
        return summary

    # ------------------------------------------------------------------ evaluation
    def _setup_eval(self) -> None:
        """Load the extractor and the (cached) real reference features once, before training,
        so a missing evaluator fails now and not an hour in."""
        e = self.cfg.eval
        if self.task.trained().inputs != "noise":
            raise ConfigError(f"--eval-every scores images generated from noise, which --task "
                              f"{self.cfg.train.task} does not make; score the run afterwards "
                              f"with `ganforge eval {self.run_dir}`")
        self._eval_metrics = scoring.parse_metrics(e.metrics)
        self._eval_extractor = scoring.get_extractor(e.extractor, data_spec=self.cfg.data.name,
                                                     img_size=self.img_size, device=self.device)
        self._eval_real = scoring.real_features(
            self._eval_extractor, self.cfg.data.name, e.split, img_size=self.img_size,
            channels=self.channels, n=e.n, data_dir=self.cfg.data.data_dir)
        self._note(f"evaluating {','.join(self._eval_metrics)} every {e.every} steps on {e.n} images "
                   f"against {self._eval_real['data']} ({e.split}) with the {e.extractor} extractor")

    def _evaluate(self, session_seconds: float, start_step: int) -> bool:
        """Log metrics; keep ``best.pt`` by FID. Returns True when a checkpoint was written."""
        e = self.cfg.eval
        self.refresh_averages()
        seed = self.cfg.train.seed
        scores = scoring.score_images(self.task.trained().eval_batches(e.n, seed),
                                      self._eval_extractor, self._eval_real,
                                      metrics=self._eval_metrics, seed=seed)
        self._log({"step": self.step_count, **{k: float(v) for k, v in scores.items()}})
        fid = scores.get("fid")
        best = self._best_fid
        if fid is not None and (best is None or fid < best):
            self._best_fid = fid
            saved_elapsed = self.elapsed
            self.elapsed = saved_elapsed + session_seconds
            try:
                path = self.save_checkpoint()
            finally:
                self.elapsed = saved_elapsed
            ckpt.save_best(self.run_dir, path)
            self._note(f"step {self.step_count}: FID {fid:.3f} (best so far; saved checkpoints/best.pt)")
            return True
        if fid is not None:
            self._note(f"step {self.step_count}: FID {fid:.3f} (best {best:.3f})")
        return False

    def _checkpoint(self, session_seconds: float, start_step: int) -> None:
        saved_elapsed = self.elapsed
        self.elapsed = saved_elapsed + session_seconds
        try:
            self.save_checkpoint()
        finally:
            self.elapsed = saved_elapsed

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
        row["lr"] = self.schedulers[self.phases[0].name].get_last_lr()[0]
        row["images_per_sec"] = images / seconds if seconds > 0 else 0.0
        row["time"] = round(self.elapsed + seconds, 3)
        self._acc, self._acc_count, self._acc_n = {}, {}, 0
        self._log(row)
        return row

    def _summary(self, seconds: float, steps: int) -> Dict[str, Any]:
        return {"run_dir": str(self.run_dir), "steps": self.step_count, "seconds": seconds,
                "steps_this_session": steps,
                "steps_per_sec": steps / seconds if seconds > 0 else 0.0}


class _Progress:
    """A one-line progress bar: epoch, step, images/s, ETA and the task's statistics."""

    def __init__(self, total: int, initial: int, enabled: bool, keys):
        self.enabled = enabled
        self.keys = keys
        self.bar = None
        self.postfix = ""
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                            file=sys.stderr, smoothing=0.1, mininterval=0.5,
                            bar_format="{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}<{remaining}, {rate_fmt}] {postfix}")

    def update(self, step: int, epoch: float, row: Optional[Dict[str, Any]]) -> None:
        if not self.bar:
            return
        if row is not None:
            parts = [f"{row.get('images_per_sec', 0):.0f} img/s"]
            for k in self.keys:
                if k in row:
                    parts.append(f"{k}={row[k]:.3f}")
            self.postfix = " ".join(parts)
            self.bar.set_postfix_str(self.postfix, refresh=False)
        self.bar.set_description_str(f"epoch {epoch:.2f}", refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
