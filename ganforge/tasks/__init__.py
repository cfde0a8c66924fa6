"""Tasks decide *what* is computed; the trainer decides *when* (DESIGN lesson 3).

A task builds its networks, declares its phases, and for a phase returns one scalar loss
plus named statistics. It owns no optimizer, no loop and no I/O, so a plain GAN, a
conditional GAN and a CycleGAN all run on the same :class:`ganforge.trainer.Trainer`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ganforge.distributed import SINGLE
from ganforge.registry import Registry

TASKS = Registry("task")


@dataclass(frozen=True)
class Phase:
    """One alternating update: the named modules' parameters are stepped on ``name``'s loss.

    ``repeat`` runs the phase that many times per training step (k D steps per G step);
    ``every`` runs it only on steps divisible by it (lazy regularisation);
    ``new_batch`` draws a fresh real batch for each run of the phase (False: reuse the last);
    ``uses`` names modules the phase's loss runs through without training them (D inside G's
    loss): under DDP their gradient synchronisation is suspended during the phase.
    """
    name: str
    modules: Tuple[str, ...]
    lr: float
    betas: Tuple[float, float] = (0.5, 0.999)
    repeat: int = 1
    every: int = 1
    new_batch: bool = True
    uses: Tuple[str, ...] = ()


Batch = Tuple[torch.Tensor, Optional[torch.Tensor]]


@dataclass(frozen=True)
class DataInfo:
    """What the trainer needs to know about a task's training data."""
    name: str
    n_images: int              # images per epoch (for --epochs and the progress bar)
    channels: int
    img_size: int
    nbytes: int                # size of the resident uint8 data (device placement decision)
    class_names: Optional[List[str]] = None


class Task:
    """Base class. Subclasses fill ``self.modules`` and implement ``phases``/``loss``.

    Data: by default a task trains on the one dataset named by ``cfg.data``; a task that needs
    something else (CycleGAN's two unpaired domains) overrides the three classmethods
    ``load_data``, ``describe_data`` and ``build_loader``. A loader has ``next()`` returning a
    batch tuple, ``epoch_float``, ``state_dict()`` and ``load_state_dict()``.
    """

    #: names of the logged statistics shown in the progress bar, in order
    progress_keys: Tuple[str, ...] = ()
    #: generators whose weights the trainer averages (``ema.half_life``) into ``<name>_ema``
    ema_sources: Tuple[str, ...] = ()
    #: discriminators (what ``train.freeze_d`` freezes and ``reg.*`` regularises)
    discriminators: Tuple[str, ...] = ()
    #: this process's place in a torchrun job (set by the trainer; one process by default)
    dist = SINGLE

    @classmethod
    def load_data(cls, cfg) -> Any:
        from ganforge.data import load_dataset
        d = cfg.data
        return load_dataset(d.name, d.split, img_size=d.img_size, channels=d.channels,
                            data_dir=d.data_dir, strict=d.strict, limit=d.limit, download=d.download)

    @classmethod
    def describe_data(cls, data) -> DataInfo:
        n, c, h, _ = data.images.shape
        return DataInfo(name=data.name, n_images=n, channels=c, img_size=h,
                        nbytes=data.images.numel(), class_names=data.class_names)

    @classmethod
    def loader_class(cls, cfg) -> type:
        """The batch loader for ``build_loader`` (a task may swap in a sampling variant)."""
        from ganforge.data.batching import BatchLoader
        return BatchLoader

    @classmethod
    def build_loader(cls, data, cfg, *, device, rank: int = 0, world_size: int = 1):
        t = cfg.train
        return cls.loader_class(cfg)(data.images, data.labels, batch_size=t.batch_size, seed=t.seed,
                                     device=device, channels_last=t.channels_last, rank=rank,
                                     world_size=world_size)

    @classmethod
    def run_label(cls, cfg) -> str:
        """What is trained, in a word: names the default run folder and the start message."""
        return cfg.model.name

    def __init__(self) -> None:
        self.modules: Dict[str, nn.Module] = {}

    def ema_or(self, name: str) -> nn.Module:
        """``<name>_ema`` when the trainer keeps an average of ``name`` (the better generator for
        pictures), else ``name`` itself."""
        return self.modules.get(f"{name}_ema", self.modules[name])

    def set_total_steps(self, n: int) -> None:
        """Told once by the trainer: the run's length in steps (for schedules such as the
        instance-noise anneal)."""

    def bind_data(self, data: Any) -> None:
        """Called once by the trainer with the loaded data (what ``load_data`` returned),
        before ``fixed_inputs``; a task whose grid inputs are real images (CycleGAN) keeps it."""

    def phases(self) -> List[Phase]:
        raise NotImplementedError

    def loss(self, phase: str, batch: Batch, *, last_repeat: bool = True) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Loss to minimise in ``phase`` and detached statistics to log."""
        raise NotImplementedError

    def fixed_inputs(self, n: int, generator: torch.Generator, device: torch.device) -> Dict[str, torch.Tensor]:
        """Inputs for the progress grid, drawn once and stored in the checkpoint."""
        raise NotImplementedError

    @torch.no_grad()
    def render(self, fixed: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Images in [-1, 1] for the progress grid from the fixed inputs."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Task state beyond module weights (e.g. RNG streams); saved in checkpoints."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


from ganforge.tasks import gan  # noqa: E402,F401  (registers "gan")
from ganforge.tasks import cyclegan  # noqa: E402,F401  (registers "cyclegan")
from ganforge.tasks import conditional  # noqa: E402,F401  (registers "conditional")
