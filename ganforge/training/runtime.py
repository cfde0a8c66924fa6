"""Where and how this process computes: its place in a torchrun job, CPU threads, the device,
mixed precision, ``torch.compile`` and the DDP wrappers (ganforge/core/distributed.py).

Kept apart from what is computed (the task's modules, built by the trainer) so that the
trainer's set-up reads as: config -> runtime -> data -> task -> optimizers -> callbacks.
The decisions, all from ``train.*``:

- device: ``auto`` is CUDA when there is one; under torchrun each process takes its own GPU.
- threads: ``train.threads``, else under torchrun on CPU the cores split over the processes.
- precision (``train.amp``): bf16 autocast on CUDA by default (fp16 + a GradScaler per
  optimizer where the GPU lacks bf16); on CPU only on request and only where the CPU has
  native bf16 (AVX512-BF16/AMX), since it is slower elsewhere: ignored with a note.
- compile (``train.compile``): on CUDA when triton is present (``auto``); never on CPU, where
  it did not speed these models up.
- DDP: each trained module in its own DDP (and SyncBatchNorm on GPUs); the wrappers are only
  what the training step calls, the plain modules stay in ``task.modules``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, Iterable, Optional

import torch
import torch.nn as nn

from ganforge.core import distributed
from ganforge.core.config import Config, ConfigError, TrainConfig
from ganforge.core.distributed import DistInfo


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device='{name}' but CUDA is not available on this machine; "
                          f"use train.device=cpu (or auto)")
    return dev


def cpu_has_bf16() -> bool:
    fn = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    try:
        return bool(fn()) if fn is not None else False
    except Exception:
        return False


@dataclass
class Runtime:
    """This process's compute settings; :meth:`start` makes one from ``train.*``."""
    dist: DistInfo
    device: torch.device
    note: Callable[[str], None]      # how to tell the user (the trainer's notes)

    @classmethod
    def start(cls, t: TrainConfig, note: Callable[[str], None]) -> "Runtime":
        """Join the torchrun process group (it decides this process's GPU), set the CPU
        threads and resolve the device."""
        dist, dist_device = distributed.setup(t.device)
        threads = t.threads or (distributed.cpu_threads_per_process(dist) if dist_device is None else 0)
        if threads > 0:
            torch.set_num_threads(threads)
        return cls(dist, dist_device or resolve_device(t.device), note)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def local_config(self, cfg: Config) -> Config:
        """What one process sees: its share of the global batch ``train.batch_size``."""
        ws, b = self.dist.world_size, cfg.train.batch_size
        if b % ws:
            raise ConfigError(f"train.batch_size={b} is the global batch and must split "
                              f"evenly over the {ws} processes; use {b - b % ws} "
                              f"or {b - b % ws + ws}")
        return cfg if ws == 1 else replace(cfg, train=replace(cfg.train, batch_size=b // ws))

    def data_device(self, nbytes: int) -> torch.device:
        """Where the resident training set lives: this GPU when it takes under a quarter of its
        free memory, else the CPU (batches are then copied over each step)."""
        if not self.is_cuda:
            return self.device
        free, _ = torch.cuda.mem_get_info(self.device)
        return self.device if nbytes < 0.25 * free else torch.device("cpu")

    def sync_batchnorm(self, modules: Dict[str, nn.Module], names: Iterable[str]) -> None:
        """Under DDP, the named modules with BatchNorm synchronised across processes (GPUs)."""
        if self.dist.enabled:
            for name in names:
                modules[name] = distributed.convert_batchnorm(modules[name], self.device)

    def amp_dtype(self, amp: str) -> Optional[torch.dtype]:
        """The autocast dtype for ``train.amp`` on this device (None: float32)."""
        if amp == "auto":
            amp = "bf16" if self.is_cuda else "none"
        if amp == "none":
            return None
        if self.is_cuda:
            if amp == "bf16" and torch.cuda.is_bf16_supported():
                return torch.bfloat16
            return torch.float16
        if amp == "bf16" and self.device.type == "cpu" and cpu_has_bf16():
            return torch.bfloat16
        self.note(f"train.amp={amp} has no effect on this {self.device.type}; training in float32")
        return None

    @staticmethod
    def grad_scalers(amp_dtype: Optional[torch.dtype], names: Iterable[str]) -> Dict[str, torch.amp.GradScaler]:
        """One GradScaler per optimizer under fp16 (bf16 and float32 need none)."""
        return {n: torch.amp.GradScaler("cuda") for n in names} if amp_dtype == torch.float16 else {}

    def want_compile(self, setting: str) -> bool:
        """``train.compile`` (auto, true, false) on this device."""
        if setting == "false":
            return False
        if not self.is_cuda:
            if setting == "true":
                self.note("train.compile has no effect on CPU (it did not speed up these models here)")
            return False
        if setting == "auto":
            try:
                from torch.utils._triton import has_triton
                return bool(has_triton())
            except Exception:
                return False
        return True

    def training_modules(self, modules: Dict[str, nn.Module], names: Iterable[str],
                         compile_setting: str) -> Dict[str, nn.Module]:
        """What the training step calls instead of the named plain modules: each in its own
        DDP (several processes) and/or compiled. Empty on one process without compile."""
        names = list(names)
        wrapped: Dict[str, nn.Module] = {}
        if self.dist.enabled:
            for name in names:
                wrapped[name] = distributed.wrap(modules[name], self.device)
        if self.want_compile(compile_setting):
            self.note("train.compile: compiling the networks; the first steps are slow (warm-up, "
                      "typically 20-60 s), then faster")
            for name in names:
                wrapped[name] = torch.compile(wrapped.get(name, modules[name]))
        return wrapped
