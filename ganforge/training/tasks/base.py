"""The task contract: tasks decide *what* is computed; the trainer decides *when* (DESIGN
lesson 3).

A task builds its networks, declares its phases, and for a phase returns one scalar loss
plus named statistics. It owns no optimizer, no loop and no I/O, so a plain GAN, a
conditional GAN and a CycleGAN all run on the same :class:`ganforge.training.trainer.Trainer`.

A task also says what it is, so that nothing above this package names a task or a module:

- ``trained_class``: its use-time face, a :class:`ganforge.use.face.Generator` subclass
  (``ganforge/use/faces/<task>.py``) that ``ganforge.load`` rebuilds from a checkpoint, and
  that the trainer builds over the live modules to score them (:meth:`Task.trained`);
- ``generators``: the modules it produces, its face's (each gets an EMA twin ``<name>_ema``
  when ``ema.half_life > 0``), ``discriminators``: what ``--freeze-d`` and ``reg.*`` act on;
- ``config_section`` and ``config_class``: its own settings' section (``cond``, ``cyclegan``),
  declared beside its code and registered in the config; ``flags``: the ``ganforge train``
  flags that set them (``--balance``, ``--domain-a``).

A task is its training half here (registered with ``@TASKS.register``) and its face in the use
wing, registered under the same name, plus its tests.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Type

import torch
import torch.nn as nn

from ganforge import models
from ganforge.core.command import Flag
from ganforge.core.config import (
    DEFAULT_TASK,
    Config,
    ConfigError,
    check_names,
    register_section,
)
from ganforge.core.distributed import SINGLE, DistInfo
from ganforge.core.registry import Registry
from ganforge.data import load_dataset
from ganforge.data.batching import BatchLoader
from ganforge.data.classic_augment import CLASSIC_OPS
from ganforge.losses.adversarial import LOSSES
from ganforge.metrics import METRICS
from ganforge.regularize.diffaugment import OPS as DIFFAUG_OPS
from ganforge.training.optim import OPTIMIZERS
from ganforge.use.face import Generator

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
    #: the data's cheap content identity (ImageDataset.fingerprint), checked on --resume
    fingerprint: Optional[str] = None


class Task:
    """Base class. Subclasses fill ``self.modules`` and implement ``phases``/``loss``.

    Data: by default a task trains on the one dataset named by ``cfg.data``; a task that needs
    something else (CycleGAN's two unpaired domains) overrides the three classmethods
    ``load_data``, ``describe_data`` and ``build_loader``. A loader has ``next()`` returning a
    batch tuple, ``epoch_float``, ``state_dict()`` and ``load_state_dict()``.

    Construction: ``Task(cfg, img_size=, channels=, device=, n_classes=, seed=, dist=)`` (what
    the trainer passes); the base stores them.
    """

    #: names of the logged statistics shown in the progress bar, in order
    progress_keys: Tuple[str, ...] = ()
    #: the generators this task produces, as its face (``trained_class``) declares them; the
    #: trainer averages each (``ema.half_life``) into ``<name>_ema``
    generators: ClassVar[Tuple[str, ...]] = ()
    #: discriminators (what ``train.freeze_d`` freezes and ``reg.*`` regularises)
    discriminators: Tuple[str, ...] = ()
    #: the config section of this task's own settings (None: only the shared ones) and its
    #: class (a frozen dataclass of ``core.config.key`` fields, declared beside the task;
    #: registered when the task class is defined)
    config_section: ClassVar[Optional[str]] = None
    config_class: ClassVar[Optional[type]] = None
    #: ``ganforge train`` flags that set keys of this task's section (``--balance``, ...)
    flags: ClassVar[Tuple[Flag, ...]] = ()
    #: the use-time face: how a trained run of this task is used (set by each task module)
    trained_class: ClassVar[Type[Generator]] = Generator
    #: True when the task trains ``model.*`` networks on the one dataset of ``cfg.data``, so
    #: that unset size/batch/aid keys may be chosen from a folder's images
    #: (ganforge/data/auto.py); False for a task with data and networks of its own (CycleGAN)
    data_defaults: ClassVar[bool] = True
    #: tasks whose trained runs ``--init-from`` may load into this one as a backbone with new
    #: label layers (ganforge/training/transfer.py; the conditional task takes unconditional runs)
    new_head_from: ClassVar[Tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.generators = tuple(cls.trained_class.generators)
        if "config_class" in cls.__dict__ and cls.config_class is not None:
            register_section(cls.config_section, cls.config_class)

    def __init__(self, cfg: Config, *, img_size: int, channels: int, device: torch.device,
                 n_classes: int = 0, seed: int = 0, dist: DistInfo = SINGLE) -> None:
        self.cfg = cfg
        self.img_size, self.channels, self.n_classes = img_size, channels, n_classes
        self.device = device
        self.seed = seed
        #: this process's place in a torchrun job (one process by default)
        self.dist = dist
        self.modules: Dict[str, nn.Module] = {}

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Cross-key checks of this task's settings, before any data is loaded; raises
        :class:`ConfigError` naming the keys. The base refuses settings of another task's
        config section (e.g. ``cond.balance`` with a task that has no classes)."""
        defaults = Config()
        for name, other in TASKS.items():
            sec = other.config_section
            if sec is None or sec == cls.config_section:
                continue
            changed = [k for k, v in vars(getattr(cfg, sec)).items()
                       if v != getattr(getattr(defaults, sec), k)]
            if changed:
                raise ConfigError(f"{', '.join(f'{sec}.{k}' for k in changed)}: settings of "
                                  f"--task {name}, but train.task is '{cfg.train.task}'; drop them "
                                  f"or use --task {name}")

    @classmethod
    def load_data(cls, cfg) -> Any:
        d = cfg.data
        return load_dataset(d.name, d.split, img_size=d.img_size, channels=d.channels,
                            data_dir=d.data_dir, strict=d.strict, limit=d.limit, download=d.download)

    @classmethod
    def describe_data(cls, data) -> DataInfo:
        n, c, h, _ = data.shape
        return DataInfo(name=data.name, n_images=n, channels=c, img_size=h,
                        nbytes=data.nbytes, class_names=data.class_names,
                        fingerprint=data.fingerprint() if hasattr(data, "fingerprint") else None)

    @classmethod
    def loader_class(cls, cfg) -> type:
        """The batch loader for ``build_loader`` (a task may swap in a sampling variant)."""
        return BatchLoader

    @classmethod
    def build_loader(cls, data, cfg, *, device, rank: int = 0, world_size: int = 1):
        t = cfg.train
        # base_images + index: a subset of a memory-mapped dataset stays a view of the map
        return cls.loader_class(cfg)(data.base_images, data.labels, batch_size=t.batch_size,
                                     seed=t.seed, device=device, channels_last=t.channels_last,
                                     rank=rank, world_size=world_size, index=data.index)

    @classmethod
    def run_label(cls, cfg) -> str:
        """What is trained, in a word: names the default run folder and the start message."""
        return cfg.model.name

    @classmethod
    def data_label(cls, cfg) -> str:
        """What it trains on, for the default run folder's name: ``data.name`` (a task with
        data keys of its own names them)."""
        return cfg.data.name

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

    def trained(self, ema: bool = True) -> Generator:
        """This task's face over its live modules (no copies): what ``--eval-every`` scores
        while training. ``ema``: the weight averages where the trainer keeps them."""
        mods = {n: (self.modules.get(f"{n}_ema", self.modules[n]) if ema else self.modules[n])
                for n in self.generators}
        used = {n: (f"{n}_ema" if ema and f"{n}_ema" in self.modules else n) for n in self.generators}
        face = self.trained_class
        info = face.make_info(mods, task=self.name, step=0, img_size=self.img_size,
                              channels=self.channels, data_classes=None, config=self.cfg.to_dict(),
                              used=used, metrics={})
        return face(mods, info, self.state_dict())

    @property
    def name(self) -> str:
        """The registered name of this task (``train.task``)."""
        return self.cfg.train.task or DEFAULT_TASK


def resolve_config(cfg: Config) -> Config:
    """The config with the task's defaults filled in and every name checked, before any data
    is loaded: ``train.task=""`` becomes :data:`DEFAULT_TASK`, registry-backed keys (models,
    tasks, losses, augmentations, metrics) must name registered entries, and the task's own
    cross-key checks pass (:meth:`Task.check_config`). Raises :class:`ConfigError` naming the key."""
    if not cfg.train.task:
        cfg = replace(cfg, train=replace(cfg.train, task=DEFAULT_TASK))
    check_names(cfg, registered_names())
    TASKS.get(cfg.train.task).check_config(cfg)
    return cfg


def registered_names() -> Dict[str, List[str]]:
    """``{registry kind of a config key: the names registered}`` (the kinds of
    ``config.REGISTRY_KINDS``): what :func:`ganforge.core.config.check_names` checks against."""
    return {"task": TASKS.names(), "model": models.family_names(), "loss": LOSSES.names(),
            "generator": models.GENERATORS.names(), "discriminator": models.DISCRIMINATORS.names(),
            "diffaug": DIFFAUG_OPS.names(), "classic_aug": CLASSIC_OPS.names(),
            "metric": METRICS.names(), "optimizer": OPTIMIZERS.names()}
