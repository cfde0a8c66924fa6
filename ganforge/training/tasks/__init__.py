"""Tasks decide *what* is computed; the trainer decides *when* (DESIGN lesson 3).

A task builds its networks, declares its phases, and for a phase returns one scalar loss
plus named statistics. It owns no optimizer, no loop and no I/O, so a plain GAN, a
conditional GAN and a CycleGAN all run on the same :class:`ganforge.training.trainer.Trainer`.

A task also says what it is, so that nothing above this package names a task or a module:

- ``generators``: the modules it produces (each gets an EMA twin ``<name>_ema`` when
  ``ema.half_life > 0``), ``discriminators``: what ``--freeze-d`` and ``reg.*`` act on;
- ``config_section``: the config section holding its own settings (``cond``, ``cyclegan``);
- ``trained_class``: its use-time face, a :class:`TrainedModel` subclass rebuilt from a
  checkpoint (``ganforge sample``/``translate``/``eval`` and the Python API ask it how to feed
  the generators, what to sample, and which extra metrics apply).

Adding a task is one file in this package (registered with ``@TASKS.register``) plus its tests.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from ganforge import models
from ganforge.core.checkpoint import CheckpointError
from ganforge.core.config import Config, ConfigError, check_names
from ganforge.data.classic_augment import CLASSIC_OPS
from ganforge.losses.adversarial import LOSSES
from ganforge.metrics import METRICS
from ganforge.regularize.diffaugment import OPS as DIFFAUG_OPS
from ganforge.core.distributed import SINGLE, DistInfo
from ganforge.core.errors import UserError
from ganforge.core.registry import Registry
from ganforge.data import load_dataset
from ganforge.data.batching import BatchLoader

TASKS = Registry("task")
#: The task of ``train.task=""`` (the config's default).
DEFAULT_TASK = "gan"


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

    Construction: ``Task(cfg, img_size=, channels=, device=, n_classes=, seed=, dist=)`` (what
    the trainer passes); the base stores them.
    """

    #: names of the logged statistics shown in the progress bar, in order
    progress_keys: Tuple[str, ...] = ()
    #: the generators this task produces; the trainer averages each (``ema.half_life``) into
    #: ``<name>_ema``, and the use-time face (``trained_class``) rebuilds them
    generators: Tuple[str, ...] = ()
    #: discriminators (what ``train.freeze_d`` freezes and ``reg.*`` regularises)
    discriminators: Tuple[str, ...] = ()
    #: the config section of this task's own settings (None: only the shared ones)
    config_section: ClassVar[Optional[str]] = None
    #: the use-time face: how a trained run of this task is used (set by each task module)
    trained_class: ClassVar[type] = None  # type: ignore[assignment]
    #: True when the task trains ``model.*`` networks on the one dataset of ``cfg.data``, so
    #: that unset size/batch/aid keys may be chosen from a folder's images
    #: (ganforge/data/auto.py); False for a task with data and networks of its own (CycleGAN)
    data_defaults: ClassVar[bool] = True
    #: tasks whose trained runs ``--init-from`` may load into this one as a backbone with new
    #: label layers (ganforge/training/transfer.py; the conditional task takes unconditional runs)
    new_head_from: ClassVar[Tuple[str, ...]] = ()

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
                        nbytes=data.nbytes, class_names=data.class_names)

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

    def trained(self, ema: bool = True) -> "TrainedModel":
        """This task's use-time face over its live modules (no copies): what ``--eval-every``
        scores while training. ``ema``: the weight averages where the trainer keeps them."""
        mods = {n: (self.modules.get(f"{n}_ema", self.modules[n]) if ema else self.modules[n])
                for n in self.generators}
        used = {n: (f"{n}_ema" if ema and f"{n}_ema" in self.modules else n) for n in self.generators}
        info = RunInfo(task=self.name, step=0, img_size=self.img_size, channels=self.channels,
                       class_names=None, config=self.cfg.to_dict(), modules=used)
        return self.trained_class(mods, info, self.state_dict())

    @property
    def name(self) -> str:
        """The registered name of this task (``train.task``)."""
        return self.cfg.train.task or DEFAULT_TASK


# --------------------------------------------------------------------------- use-time face
@dataclass
class RunInfo:
    """What a trained run is (from its checkpoint): ``TrainedModel.info``.

    ``task``: the registered task; ``step``: generator steps trained; ``img_size`` (px) and
    ``channels`` of its images; ``class_names`` of its data (None without classes);
    ``config``: the resolved config as a dict; ``modules``: for each generator, the module
    whose weights are used (``G`` -> ``G_ema`` when the run kept an average and ``ema``);
    ``source``: the checkpoint file; ``metrics``: the last evaluation logged (may be empty).
    """
    task: str
    step: int
    img_size: int
    channels: int
    class_names: Optional[List[str]]
    config: Dict[str, Any]
    modules: Dict[str, str] = field(default_factory=dict)
    source: str = ""
    metrics: Dict[str, float] = field(default_factory=dict)

    @property
    def data(self) -> str:
        """The dataset spec the run trained on (``data.name``)."""
        return str(self.config.get("data", {}).get("name", ""))

    @property
    def data_dir(self) -> Optional[str]:
        return self.config.get("data", {}).get("data_dir") or None


@dataclass(frozen=True)
class EvalRequest:
    """What ``ganforge eval RUN`` asks a trained model for: ``metrics`` (names of
    :data:`ganforge.metrics.METRICS`), ``n`` generated images (and real ones at most), the
    feature ``extractor`` (``domain``/``inception``) and its ``weights`` file (None: the stored
    one), the real ``split``, the ``seed`` of the generated images, the ``device``, where named
    datasets live (``data_dir``; None: the run's), and whether to show ``progress``."""
    metrics: Tuple[str, ...]
    n: int = 10000
    extractor: str = "domain"
    weights: Optional[str] = None
    split: str = "test"
    seed: int = 0
    device: str = "cpu"
    data_dir: Optional[str] = None
    progress: bool = True


class TrainedModel:
    """A trained run's generators, ready to use: the use-time face of a task.

    Built by :meth:`from_checkpoint` (every generator of ``Task.generators`` rebuilt from the
    spec stored with its weights; DESIGN lesson 5) or by :meth:`Task.trained` over live
    modules. Subclasses (one per task) implement what applies to them; the base answers every
    other request with a :class:`UserError` that says which command fits the run instead.

    ``inputs``: ``"noise"`` (:meth:`sample`, :meth:`eval_batches`) or ``"image"``
    (:meth:`translate`). Images are float tensors in [-1, 1], NCHW, on CPU.
    """

    inputs: ClassVar[str] = "noise"

    def __init__(self, modules: Dict[str, nn.Module], info: RunInfo, task_state: Dict[str, Any]):
        self.modules = modules
        self.info = info
        self.task_state = task_state

    @classmethod
    def from_checkpoint(cls, task_cls: type, st: Dict[str, Any], *, ema: bool = True,
                        device: str | torch.device = "cpu", source: str = "") -> "TrainedModel":
        """Rebuild ``task_cls.generators`` from checkpoint ``st`` (their averages ``<name>_ema``
        when kept and ``ema``). Raises :class:`CheckpointError` when a generator is missing."""
        specs, weights = st.get("specs", {}), st.get("modules", {})
        mods, used = {}, {}
        for name in task_cls.generators:
            if name not in specs or name not in weights:
                raise CheckpointError(f"'{source}' is not a {st.get('task')} run as its config "
                                      f"says: it holds no '{name}' network (it has "
                                      f"{', '.join(specs) or 'none'})")
            avg = f"{name}_ema"
            use = avg if ema and avg in weights else name
            net = models.from_spec(specs[name])
            net.load_state_dict(weights[use])
            mods[name] = net.to(device).eval()
            used[name] = use
        data = st.get("data", {})
        cfg = st.get("config", {})
        info = RunInfo(task=str(st.get("task") or cfg.get("train", {}).get("task") or DEFAULT_TASK),
                       step=int(st.get("step", 0)), img_size=int(data.get("img_size", 0)),
                       channels=int(data.get("channels", 0)),
                       class_names=list(data["class_names"]) if data.get("class_names") else None,
                       config=cfg, modules=used, source=str(source))
        return cls(mods, info, st.get("task_state", {}) or {})

    @classmethod
    def from_export(cls, task_cls: type, config: Dict[str, Any],
                    weights: Dict[str, Dict[str, torch.Tensor]], *,
                    device: str | torch.device = "cpu", source: str = "") -> "TrainedModel":
        """Rebuild ``task_cls.generators`` from an export folder's ``config.json`` (``config``:
        each generator's ``spec`` and which weights it holds) and its weights (``weights``:
        generator name -> state dict, from ``model.safetensors``). No checkpoint, no code from
        the folder. Raises :class:`CheckpointError` when a generator is missing."""
        gens = config.get("generators", {}) or {}
        mods, used = {}, {}
        for name in task_cls.generators:
            if name not in gens or name not in weights:
                raise CheckpointError(f"'{source}' is not a complete {config.get('task')} export: "
                                      f"it holds no '{name}' network (it has "
                                      f"{', '.join(gens) or 'none'})")
            net = models.from_spec(gens[name]["spec"])
            net.load_state_dict(weights[name])
            mods[name] = net.to(device).eval()
            used[name] = str(gens[name].get("weights", name))
        names = config.get("class_names")
        info = RunInfo(task=str(config.get("task") or DEFAULT_TASK), step=int(config.get("step", 0)),
                       img_size=int(config.get("img_size", 0)), channels=int(config.get("channels", 0)),
                       class_names=list(names) if names else None,
                       config=dict(config.get("config", {}) or {}), modules=used, source=str(source),
                       metrics={k: v for k, v in (config.get("metrics") or {}).items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
        return cls(mods, info, cls.import_state(config.get("task_state", {}) or {}))

    # ------------------------------------------------------------------ export hooks
    def export_state(self) -> Dict[str, Any]:
        """The entries of ``task_state`` this use-time face needs, as plain JSON values (lists,
        numbers); :meth:`import_state` turns them back, bit for bit. The base needs none."""
        return {}

    @classmethod
    def import_state(cls, state: Dict[str, Any]) -> Dict[str, Any]:
        """The inverse of :meth:`export_state`: plain values of ``config.json`` -> task_state."""
        return {}

    def example_inputs(self, name: str, n: int = 2, seed: int = 0
                       ) -> Tuple[Tuple[torch.Tensor, ...], Tuple[str, ...]]:
        """Fixed example inputs of generator ``name`` (what its ``forward`` takes, on CPU) and
        their names: what an ONNX export traces and checks against."""
        raise self._wrong("example inputs")

    def preview(self, fixed: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """One (C, H, W) grid in [-1, 1] that shows what the model does (a model card's
        picture); ``fixed``: the run's stored progress-grid inputs, when a face needs them."""
        raise self._wrong("preview")

    # ------------------------------------------------------------------ common
    @property
    def device(self) -> torch.device:
        for m in self.modules.values():
            for p in m.parameters():
                return p.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> "TrainedModel":
        """Move every generator to ``device``; returns self."""
        for m in self.modules.values():
            m.to(device)
        return self

    @property
    def class_names(self) -> Optional[List[str]]:
        """Names of the classes the generators can be asked for (None: unconditional)."""
        return None

    def _wrong(self, what: str) -> UserError:
        return UserError(f"{what}: '{self.info.source or self.info.task}' is a {self.info.task} run, "
                         f"{self.usage}")

    #: how this kind of run is used, for the errors of requests that do not apply
    usage: ClassVar[str] = ""

    # ------------------------------------------------------------------ requests
    def sample(self, n: int, seed: int = 0, classes: Any = None, batch_size: int = 256) -> torch.Tensor:
        """``n`` images (float32 (n, C, H, W) in [-1, 1], CPU) from noise drawn with ``seed``."""
        raise self._wrong("sample")

    def eval_batches(self, n: int, seed: int = 0, batch_size: int = 250) -> Iterator[torch.Tensor]:
        """``n`` generated images in batches, as scored by FID & co. (classes balanced)."""
        raise self._wrong("scoring generated images")

    def translate(self, images: torch.Tensor, direction: str, *, batch_size: int = 64,
                  reconstruct: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(translated, reconstructed or None) images for ``images`` of the source domain."""
        raise self._wrong("translate")

    def evaluate(self, req: EvalRequest) -> Dict[str, Any]:
        """Scores of this model for ``ganforge eval`` (a flat dict; see each task)."""
        raise self._wrong("eval")


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block, its previous mode restored after."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)


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
            "metric": list(METRICS)}


from ganforge.training.tasks import gan  # noqa: E402,F401  (registers "gan")
from ganforge.training.tasks import cyclegan  # noqa: E402,F401  (registers "cyclegan")
from ganforge.training.tasks import conditional  # noqa: E402,F401  (registers "conditional")
