"""Typed, strict configuration.

A run's configuration is a frozen tree of dataclasses. It is built in one order only:
defaults -> YAML preset (``--config``) -> CLI flags -> ``key=value`` overrides. Unknown keys
and values of the wrong type are errors that name the key (DESIGN lesson 6), never ignored.

Keys are written ``section.field`` (``train.lr_g=1e-4``); a bare field name is accepted when
it exists in exactly one section (``lr_g=1e-4``).

Every field carries its own schema (:func:`key`): a one-line help, and where it applies the
fixed choices (a ``Literal`` type), the numeric range, what 0 means, or the registry whose
names are valid. Values are checked when a key is set (:func:`set_key`, which presets, CLI
flags, overrides, :func:`merge` and :meth:`Config.from_dict` all go through), so a typo or an
out-of-range value fails before anything is trained, in one line naming the key. Names that
only a higher layer knows (model families, losses, metrics, ...) are checked by
:func:`check_names`, which that layer calls with the registries' names. :func:`schema` lists
every key; :func:`help_config` renders it for ``ganforge train --help-config``.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import reprlib
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import (
    Any,
    Collection,
    Dict,
    FrozenSet,
    Iterator,
    Literal,
    Mapping,
    Optional,
    Tuple,
)

import yaml

from ganforge.core.errors import UserError, did_you_mean


class ConfigError(UserError, ValueError):
    """A user-facing configuration error; the message names the offending key."""


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 4


def _brief(value: Any) -> str:
    """``repr(value)`` for an error message, bounded: a long string, a deep or huge nested
    value from YAML (aliases can make a "billion laughs" structure whose full repr never
    ends) or an int too long to print come back shortened."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"<a {value.bit_length() * 30103 // 100000 + 1}-digit integer>"
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails still must not hide the key
        return f"<{type(value).__name__}>"


#: The task of ``train.task=""`` (the config's default): an unconditional GAN.
DEFAULT_TASK = "gan"

#: the registry kinds :func:`check_names` knows how to check (``key(registry=...)``)
REGISTRY_KINDS = ("model", "task", "loss", "generator", "discriminator", "diffaug", "classic_aug",
                  "metric", "optimizer")


def key(default: Any, help: str, *, choices: Optional[Collection[str]] = None,
        pattern: Optional[str] = None, low: Optional[float] = None, high: Optional[float] = None,
        low_open: bool = False, high_open: bool = False, zero: str = "",
        registry: Optional[str] = None, many: bool = False, none_off: bool = False) -> Any:
    """A config field with its schema, for the section dataclasses below.

    ``help``: one line, what the key means. ``choices``: the valid values when they are not a
    ``Literal`` type (then ``pattern``, a regular expression, decides and ``choices`` describes
    it, e.g. ``cuda:N``); a ``Literal`` annotation's values are the choices otherwise.
    ``low``/``high``: the numeric range, inclusive unless ``low_open``/``high_open``. ``zero``:
    what the value 0 means when it is special (``"off"``, ``"the dataset's own size"``).
    ``registry``: the kind of names valid here (one of :data:`REGISTRY_KINDS`, checked by
    :func:`check_names`); ``many``: a comma list of them ("" is allowed: off or the default);
    ``none_off``: the list may also be ``none`` (the registry's ``parse_list`` reads it as off).
    """
    if registry is not None and registry not in REGISTRY_KINDS:
        raise ValueError(f"key(registry={registry!r}): not one of {', '.join(REGISTRY_KINDS)}")
    if pattern is not None and not choices:
        raise ValueError("key(pattern=...) needs choices= to describe the valid values")
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None,
            "pattern": pattern, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open, "zero": zero, "registry": registry, "many": many,
            "none_off": none_off}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    """The training data: which dataset, which split, at what size, how much of it."""
    name: str = key("fashion-mnist", "a registered dataset name, or a path (folder, .npy, .npz)")
    split: str = key("train", "the split trained on: train, test, val (a fixed 1/12 of train, at "
                              "most 5000 images) or train-minus-val (the rest; what ganforge tune "
                              "trains on)")
    data_dir: Optional[str] = key(None, "explicit location of named datasets (beats $GANFORGE_DATA)")
    img_size: int = key(0, "resize the images to this many pixels a side", low=0, high=4096,
                        zero="the dataset's own size")
    channels: Literal[0, 1, 3] = key(0, "channels of the training images (1: grey, 3: colour)",
                                     zero="the dataset's own channel count")
    strict: bool = key(False, "fail on unreadable images instead of skipping them")
    limit: int = key(0, "use only the first N images", low=0, zero="all")
    download: bool = key(True, "allow downloading named datasets when not found locally")


@dataclass(frozen=True)
class ModelConfig:
    """The networks of the noise-to-image tasks (gan, conditional)."""
    name: str = key("dcgan", "a model family with both a G and a D registered (`ganforge list`)",
                    registry="model")
    z_dim: int = key(100, "size of G's noise input", low=1, high=65536)
    g_width: int = key(64, "family-specific width multiplier for G", low=1, high=4096)
    d_width: int = key(64, "family-specific width multiplier for D", low=1, high=4096)
    upsample: Literal["deconv", "nearest", "bilinear"] = key(
        "deconv", "G's upsampling. dcgan: stride-2 transposed conv (the paper), or a nearest/"
                  "bilinear resize then a 3x3 conv (no checkerboard; Odena et al. 2016); "
                  "fastgan: nearest (deconv means the paper's nearest) or bilinear")


@dataclass(frozen=True)
class TrainConfig:
    """What is trained and how: task, loss, length, optimiser, precision, device."""
    task: str = key("", "what is trained: a registered task (`ganforge list`); empty: the default "
                        "task (DEFAULT_TASK, an unconditional GAN)", registry="task")
    loss: str = key("nonsaturating", "adversarial loss; see `ganforge list` (losses)", registry="loss")
    steps: int = key(0, "generator steps", low=0, high=10**9, zero="train.epochs decides; both 0: 2000 steps")
    epochs: float = key(0.0, "alternatively, passes over the data", low=0, high=10**6,
                        zero="train.steps decides; both 0: 2000 steps")
    time_limit: float = key(0.0, "stop (and checkpoint) after this many seconds", low=0,
                            zero="no limit")
    batch_size: int = key(64, "images per step (the global batch over all processes)", low=1,
                          high=65536)
    d_steps: int = key(1, "k discriminator steps per generator step", low=1, high=1000)
    optimizer: str = key("adam", "optimiser of every phase, by name (`ganforge list`)",
                         registry="optimizer")
    lr_g: float = key(2e-4, "learning rate of G", low=0, low_open=True)
    lr_d: float = key(2e-4, "learning rate of D", low=0, low_open=True)
    beta1: float = key(0.5, "Adam beta1 (momentum)", low=0, high=1, high_open=True)
    beta2: float = key(0.999, "Adam beta2", low=0, high=1, high_open=True)
    weight_decay: float = key(0.0, "weight decay of every optimiser (adamw: decoupled; adam: "
                                   "L2 in the gradient)", low=0, zero="off")
    lr_decay: Literal["none", "linear", "cosine"] = key(
        "none", "learning-rate decay to 0 at the end, from lr_decay_start on")
    lr_decay_start: float = key(0.5, "fraction of training after which the decay begins",
                                low=0, high=1)
    seed: int = key(0, "random seed (weights, data order, fixed sample noise)", low=0,
                    high=2**63 - 1)
    device: str = key("auto", "where to train (auto: cuda when available, else cpu)",
                      choices=("auto", "cpu", "cuda", "cuda:N", "mps"),
                      pattern=r"auto|cpu|mps|cuda(:\d+)?")
    amp: Literal["auto", "none", "bf16", "fp16"] = key(
        "auto", "mixed precision; auto: bf16 on CUDA, fp16 where bf16 is missing; off on CPU")
    channels_last: bool = key(True, "NHWC memory format for conv models (faster with oneDNN/cuDNN)")
    compile: Literal["auto", "true", "false"] = key(
        "auto", "torch.compile; auto: on CUDA when triton is present")
    threads: int = key(0, "torch CPU threads (split between torchrun processes)", low=0,
                       zero="torch's default")
    init_from: str = key("", "--init-from RUN_OR_CKPT: start from a trained model's weights "
                             "(transfer); empty: off")
    freeze_d: int = key(0, "--freeze-d K: freeze D's first K blocks (FreezeD, Mo et al. 2020)",
                        low=0, zero="off")


@dataclass(frozen=True)
class LogConfig:
    """What a run writes while it trains: metrics log, sample grids, checkpoints."""
    log_every: int = key(50, "metrics-log / TensorBoard interval in steps", low=1)
    sample_every: int = key(250, "sample grid from the fixed noise every N steps", low=0,
                            zero="off, grids only at the start and the end")
    ckpt_every: int = key(1000, "checkpoint every N steps (and always at the end)", low=0,
                          zero="only at the end and on interrupt")
    keep_last: int = key(3, "numbered checkpoints kept besides latest", low=0,
                         zero="only the newest")
    n_samples: int = key(64, "size of the fixed-noise grid", low=1, high=1024)
    gif: bool = key(True, "write training.gif from the sample grids at the end")
    tensorboard: bool = key(True, "write events when the tensorboard package is installed")
    progress: bool = key(True, "progress bar on stderr")
    mlflow: bool = key(False, "also log params, metrics and final images to MLflow ($MLFLOW_TRACKING_URI)")
    mlflow_experiment: str = key("", "MLflow experiment name; empty: $MLFLOW_EXPERIMENT_NAME, else ganforge")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation during training (--eval-every); keeps checkpoints/best.pt by FID."""
    every: int = key(0, "evaluate every N steps during training; --eval-every", low=0, zero="off")
    metrics: str = key("", "comma list of metrics (`ganforge list`); empty: the default list",
                       registry="metric", many=True)
    n: int = key(2000, "generated images per evaluation during training", low=2, high=200000)
    extractor: Literal["domain", "inception"] = key("domain", "feature extractor")
    split: str = key("test", "real split the generated images are compared with")


@dataclass(frozen=True)
class RegConfig:
    """Regularisers of D (see ganforge/regularize/ and the README's toolbox table)."""
    r1: float = key(0.0, "R1 gamma on real data (Mescheder et al. 2018)", low=0, zero="off")
    r2: float = key(0.0, "R2 gamma on generated data (Mescheder et al. 2018; R3GAN uses r1=r2)",
                    low=0, zero="off")
    r1_every: int = key(16, "lazy R1 and R2: every N D steps, scaled by N (Karras et al. 2020)",
                        low=1)
    gp: float = key(0.0, "WGAN-GP lambda (Gulrajani et al. 2017), usually 10", low=0, zero="off")
    spectral_norm: bool = key(False, "spectral normalisation of D's layers (Miyato et al. 2018)")
    label_smoothing: float = key(0.0, "one-sided: D's real target 1 - s (Salimans et al. 2016)",
                                 low=0, high=1, high_open=True, zero="off")
    instance_noise: float = key(0.0, "std of Gaussian noise on D's inputs, annealed linearly to 0",
                                low=0, zero="off")
    instance_noise_steps: int = key(0, "... over this many steps", low=0, zero="the whole run")
    d_dropout: float = key(0.0, "dropout in D's hidden layers", low=0, high=1, high_open=True,
                           zero="off")
    d_recon: float = key(1.0, "weight of D's self-supervised reconstruction loss on real images "
                         "(FastGAN, Liu et al. 2021; only Ds with decoders: --model fastgan)",
                         low=0, zero="off")


@dataclass(frozen=True)
class AugConfig:
    """Augmentation: differentiable (what D sees, real and fake) and classic (real data only)."""
    diffaug: str = key("", "DiffAugment policy, e.g. translation,cutout,color (empty: off)",
                       registry="diffaug", many=True, none_off=True)
    ada: bool = key(False, "adaptive augmentation probability (Karras et al. 2020)")
    ada_target: float = key(0.6, "ADA's target for E[sign(D(real))] (the paper's 0.6)", low=-1, high=1,
                            low_open=True, high_open=True)
    ada_interval: int = key(4, "adjust p every N D steps", low=1)
    ada_speed: int = key(500000, "images for p to move by 1", low=1)
    classic: str = key("", "dataset augmentation of real images: flip,rotation,scale,contrast,"
                           "crop,noise (empty: off)", registry="classic_aug", many=True,
                       none_off=True)


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving average of the generator's weights (sample/eval use it by default)."""
    half_life: float = key(0.0, "in thousands of images (StyleGAN's ema_kimg)", low=0, zero="off")
    warmup: float = key(0.05, "half-life ramp-up: at most this fraction of the images seen",
                        low=0, high=1, zero="no ramp-up")


@dataclass(frozen=True)
class GuardConfig:
    """Divergence guard: roll back to the last good checkpoint with a lower lr."""
    enabled: bool = key(True, "watch for a collapsed D and non-finite weights")
    collapse_acc: float = key(0.995, "D accuracy at/above this ...", low=0, high=1,
                              zero="every log step counts as collapsed (for tests)")
    window: int = key(2000, "... on every log step for this many steps = collapsed D", low=1)
    lr_factor: float = key(0.5, "learning rates are multiplied by this after a rollback",
                           low=0, low_open=True, high=1)
    max_rollbacks: int = key(3, "then stop with an error", low=0,
                             zero="stop at the first divergence")


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation into this run's generators (``ganforge distill``;
    ganforge/training/distill.py)."""
    teacher: str = key("", "a trained run or checkpoint of the same task whose generators this "
                           "run learns to reproduce; empty: no distillation")
    pixel: float = key(1.0, "weight of the L1 distance between student and teacher outputs",
                       low=0, zero="off")
    feature: float = key(1.0, "weight of the squared distance of their teacher-D features",
                         low=0, zero="off")
    adversarial: float = key(0.0, "weight of the task's own G loss against a D started from the "
                                  "teacher's", low=0, zero="off, and no D is trained")
    ema: bool = key(True, "distil the teacher's EMA generator when it kept one")


#: Sections of the tasks' own settings, registered beside each task's code
#: (:func:`register_section`: ``cond``, ``cyclegan``, ...), in registration order.
_TASK_SECTIONS: Dict[str, type] = {}


def register_section(name: str, cls: type) -> type:
    """Add ``cls`` (a frozen dataclass of :func:`key` fields) as the config section ``name``:
    how a task declares its own settings beside its code (``ganforge/training/tasks/*.py``),
    with no change here. The section then behaves as the built-in ones: ``cfg.<name>.<key>``,
    ``name.key=value`` overrides, presets, the schema and ``--help-config``. Registering the
    same class again is a no-op; another class under a taken name raises ValueError."""
    taken = {f.name for f in fields(Config)}
    if name in taken or (name in _TASK_SECTIONS and _TASK_SECTIONS[name] is not cls):
        raise ValueError(f"config section '{name}' is taken; pick another name")
    if not is_dataclass(cls):
        raise ValueError(f"config section '{name}': {cls!r} is not a dataclass of key() fields")
    if name not in _TASK_SECTIONS:
        _TASK_SECTIONS[name] = cls
        _SCHEMA.clear()
    return cls


def _task_section_defaults() -> Tuple[Tuple[str, Any], ...]:
    return tuple((name, cls()) for name, cls in _TASK_SECTIONS.items())


@dataclass(frozen=True)
class Config:
    """Run-level settings: the sections below, the task sections registered by the tasks
    (``cfg.cond``, ``cfg.cyclegan``, ...: :func:`register_section`) and two top-level keys."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    out: str = key("", "run folder; empty: runs/<model>-<data>")
    description: str = key("", "free text, e.g. what a preset is for")
    #: The keys set on purpose (a preset, a flag, an override, a saved config): every
    #: :func:`set_key` adds its key here. Not a config key itself (no schema entry, not in
    #: ``to_dict``, ignored by ``==``); ``dataclasses.replace`` carries it along. Lets a
    #: higher layer fill in data-dependent defaults only where the user chose nothing
    #: (:func:`explicit_keys`, ganforge/data/auto.py).
    explicit: FrozenSet[str] = field(default=frozenset(), compare=False, repr=False,
                                     metadata={"internal": True})
    #: The task sections' values, ``((name, section), ...)`` in registration order (read
    #: them as ``cfg.<name>``; :func:`set_key` replaces them).
    task_sections: Tuple[Tuple[str, Any], ...] = field(default_factory=_task_section_defaults,
                                                       repr=False, metadata={"internal": True})

    def __getattr__(self, name: str) -> Any:
        """``cfg.<task section>`` (only called for names that are not fields)."""
        for sec, value in self.__dict__.get("task_sections", ()):
            if sec == name:
                return value
        if name in _TASK_SECTIONS:          # registered after this config was made: defaults
            return _TASK_SECTIONS[name]()
        raise AttributeError(f"'Config' has no section or key '{name}'")

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> Dict[str, Any]:
        """The config as nested plain values, sections in their order (the task sections after
        ``eval``), as config.yaml and checkpoints store it."""
        d: Dict[str, Any] = {}
        for f in _key_fields(Config):
            value = getattr(self, f.name)
            d[f.name] = dataclasses.asdict(value) if is_dataclass(value) else value
            if f.name == "eval":
                for name in _TASK_SECTIONS:
                    d[name] = dataclasses.asdict(getattr(self, name))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "config") -> "Config":
        return merge(cls(), d, where=where)

    def with_overrides(self, pairs: Mapping[str, Any] | list[str], where: str = "override") -> "Config":
        if isinstance(pairs, str):
            pairs = [pairs]
        if isinstance(pairs, (list, tuple)):
            pairs = parse_pairs(pairs)
        cfg = self
        for key, value in pairs.items():
            cfg = set_key(cfg, key, value, where=where)
        return cfg

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _internal_fields() -> Tuple[str, ...]:
    """Fields of :class:`Config` that are bookkeeping, not keys (``explicit``)."""
    return tuple(f.name for f in fields(Config) if f.metadata.get("internal"))


def _key_fields(cls: type) -> list:
    return [f for f in fields(cls) if not f.metadata.get("internal")]


def explicit_keys(cfg: "Config") -> FrozenSet[str]:
    """Full names of the keys set on purpose in ``cfg`` (``{"data.img_size", ...}``): by a
    preset, a flag, an override or a saved config, i.e. through :func:`set_key`. A key at
    its default because nobody set it is absent; one set to its default value is present."""
    return cfg.explicit


def _section_classes() -> Dict[str, type]:
    """Every section's class by name: the built-in ones in their order, with the registered
    task sections after ``eval`` (the order of :meth:`Config.to_dict`)."""
    hints = typing.get_type_hints(Config)
    out: Dict[str, type] = {}
    for name, tp in hints.items():
        if is_dataclass(tp):
            out[name] = tp
            if name == "eval":
                out.update(_TASK_SECTIONS)
    return out


def _field_types(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys() -> list[str]:
    keys = []
    for sec, cls in _section_classes().items():
        keys += [f"{sec}.{f.name}" for f in fields(cls)]
    keys += [f.name for f in _key_fields(Config) if not is_dataclass(_field_types(Config)[f.name])]
    return keys


# ---------------------------------------------------------------------- schema
@dataclass(frozen=True)
class KeySpec:
    """One config key as :func:`schema` describes it (from its field and :func:`key`)."""
    name: str                       # "train.lr_g"; a top-level key is bare ("out")
    section: Optional[str]          # "train"; None for a top-level key
    field: str                      # "lr_g"
    type: Any                       # the resolved annotation (int, float, Literal[...], ...)
    default: Any
    help: str
    choices: Optional[Tuple[Any, ...]] = None   # Literal values, or key(choices=...)
    pattern: Optional[str] = None   # regular expression deciding validity (then choices describe it)
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    zero: str = ""                  # what 0 means when it is special ("off", ...)
    registry: Optional[str] = None  # kind of registered names valid here (check_names)
    many: bool = False              # a comma list of such names
    none_off: bool = False          # ... which may also be "none" (off)

    @property
    def base_type(self) -> type:
        """int, float, str or bool: the annotation without Optional/Literal."""
        tp = self.type
        if typing.get_origin(tp) is typing.Union:
            tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
        if typing.get_origin(tp) is Literal:
            return type(typing.get_args(tp)[0])
        return tp

    @property
    def numeric(self) -> bool:
        return self.base_type in (int, float) and self.choices is None

    def range_text(self) -> str:
        """``">= 0"``, ``"> 0"``, ``"in [0, 1)"``; empty when unbounded."""
        def num(v: float) -> str:      # whole bounds in full (2**63 - 1, not 9.22337e+18)
            return str(int(v)) if float(v).is_integer() and abs(v) >= 1e6 else f"{v:g}"
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return f"in {'(' if self.low_open else '['}{num(lo)}, {num(hi)}{')' if self.high_open else ']'}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {num(lo)}"
        if hi is not None:
            return f"{'<' if self.high_open else '<='} {num(hi)}"
        return ""

    def describe(self) -> str:
        """The bracketed part of :func:`help_config`: choices, range, what 0 means, registry."""
        parts = []
        if self.choices is not None:
            parts.append(" | ".join(str(c) for c in self.choices))
        if self.range_text():
            parts.append(self.range_text())
        if self.zero:
            parts.append(f"0: {self.zero}")
        if self.registry:
            parts.append(f"{'comma list of ' if self.many else ''}{self.registry} names")
        return "; ".join(parts)

    def check(self, value: Any, where: str = "config") -> None:
        """Raise a one-line ConfigError naming the key when ``value`` (already of the key's
        type) is outside its choices, pattern or range."""
        if value is None:
            return
        if self.pattern is not None:
            if not (isinstance(value, str) and re.fullmatch(self.pattern, value)):
                raise ConfigError(_not_one_of(self.name, value, self.choices, where))
        elif self.choices is not None and value not in self.choices:
            raise ConfigError(_not_one_of(self.name, value, self.choices, where))
        if not self.numeric or isinstance(value, bool):
            return
        zero = f" (0: {self.zero})" if self.zero else ""
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {self.name}={_brief(value)} must be a finite number "
                              f"{self.range_text()}{zero}".rstrip())
        lo_bad = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        hi_bad = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if lo_bad or hi_bad:
            raise ConfigError(f"{where}: {self.name}={_brief(value)} must be {self.range_text()}{zero}")


def _not_one_of(name: str, value: Any, choices: Collection[Any], where: str) -> str:
    return (f"{where}: {name}={_brief(value)} is not one of {', '.join(str(c) for c in choices)}"
            f"{did_you_mean(value, choices)}")


def _spec(section: Optional[str], f: dataclasses.Field, tp: Any) -> KeySpec:
    m = f.metadata
    choices = m.get("choices")
    inner = tp
    if typing.get_origin(inner) is typing.Union:
        inner = [a for a in typing.get_args(inner) if a is not type(None)][0]
    if typing.get_origin(inner) is Literal:
        choices = tuple(typing.get_args(inner))
    return KeySpec(name=f"{section}.{f.name}" if section else f.name, section=section, field=f.name,
                   type=tp, default=f.default, help=m.get("help", ""), choices=choices,
                   pattern=m.get("pattern"), low=m.get("low"), high=m.get("high"),
                   low_open=m.get("low_open", False), high_open=m.get("high_open", False),
                   zero=m.get("zero", ""), registry=m.get("registry"), many=m.get("many", False),
                   none_off=m.get("none_off", False))


def _build_schema() -> Dict[str, KeySpec]:
    out: Dict[str, KeySpec] = {}
    top = _field_types(Config)
    for name, cls in _section_classes().items():
        hints = _field_types(cls)
        for sf in fields(cls):
            spec = _spec(name, sf, hints[sf.name])
            out[spec.name] = spec
    for f in _key_fields(Config):
        if not is_dataclass(top[f.name]):
            spec = _spec(None, f, top[f.name])
            out[spec.name] = spec
    return out


_SCHEMA: Dict[str, KeySpec] = {}


def _schema_map() -> Dict[str, KeySpec]:
    if not _SCHEMA:
        _SCHEMA.update(_build_schema())
    return _SCHEMA


def schema() -> Iterator[KeySpec]:
    """Every config key, section by section in declaration order (top-level keys last):
    full name, type, default, help, choices, range, what 0 means, registry kind."""
    return iter(list(_schema_map().values()))


def key_spec(name: str) -> KeySpec:
    """The :class:`KeySpec` of a full key name (``"train.lr_g"``, ``"out"``)."""
    return _schema_map()[name]


def _section_doc(cls: type) -> str:
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):      # dataclass's generated signature, not a docstring
        return ""
    return " ".join(doc.split())


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def help_config() -> str:
    """Every key, one line each, grouped by section under its docstring as a comment:
    ``section.key = default    # meaning [choices / range; 0: meaning; registry]``."""
    specs = list(schema())
    width = max(len(f"{s.name} = {_show(s.default)}") for s in specs)
    classes = _section_classes()
    lines: list[str] = []
    current: Any = object()
    for s in specs:
        if s.section != current:
            current = s.section
            if lines:
                lines.append("")
            doc = _section_doc(classes[s.section] if s.section else Config)
            lines.append(f"# {s.section or 'top level'}: {doc}" if doc else f"# {s.section or 'top level'}")
        extra = s.describe()
        lhs = f"{s.name} = {_show(s.default)}"
        lines.append(f"{lhs.ljust(width)}    # {s.help}" + (f" [{extra}]" if extra else ""))
    return "\n".join(lines) + "\n"


def check_names(cfg: Config, known: Mapping[str, Collection[str]], where: str = "config") -> None:
    """Check every registry-backed key (``key(registry=...)``) of ``cfg`` against ``known``,
    ``{kind: valid names}`` as a higher layer's registries give them (this module imports
    none of them). Kinds missing from ``known`` are skipped. A comma-list key (``many``) may
    be empty (off / the default) and, with ``none_off``, ``none``; its names are compared
    lower-cased, as ``Registry.parse_list`` reads them. Raises a one-line ConfigError naming
    the key, the bad value, the valid names and the closest one."""
    for spec in schema():
        if spec.registry is None or spec.registry not in known:
            continue
        names = list(known[spec.registry])
        value = _get(cfg, spec)
        if value is None:
            continue
        if spec.many:
            items = [s.strip().lower() for s in str(value).split(",") if s.strip()]
            if spec.none_off and items == ["none"]:
                continue
        else:
            items = [value]
        for item in items:
            if item not in names:
                what = (f"{_brief(item)} in {spec.name}={_brief(value)}" if spec.many
                        else f"{spec.name}={_brief(value)}")
                raise ConfigError(f"{where}: {what} is not a known {spec.registry}; valid: "
                                  f"{', '.join(sorted(names)) or '(none registered)'}"
                                  f"{did_you_mean(item, names)}")


def check_values(cfg: Config, where: str = "config") -> None:
    """Check every value of ``cfg`` against its key's choices and range (what :func:`set_key`
    does key by key), for a Config built around it (``dataclasses.replace``)."""
    for spec in schema():
        spec.check(_get(cfg, spec), where)


def _get(cfg: Config, spec: KeySpec) -> Any:
    obj = getattr(cfg, spec.section) if spec.section else cfg
    return getattr(obj, spec.field)


def resolve_key(key: str, where: str = "override") -> Tuple[Optional[str], str]:
    """Map ``section.field`` or a unique bare ``field`` to (section, field)."""
    if not isinstance(key, str):
        raise ConfigError(f"{where}: config key {_brief(key)} is not a name; keys are words "
                          f"like train.lr_g (see `ganforge train --help-config`)")
    key = key.strip().replace("-", "_")
    sections = _section_classes()
    if "." in key:
        sec, name = key.split(".", 1)
        if sec in sections and name in {f.name for f in fields(sections[sec])}:
            return sec, name
    else:
        top = _field_types(Config)
        if key in top and not is_dataclass(top[key]) and key not in _internal_fields():
            return None, key
        owners = [s for s, cls in sections.items() if key in {f.name for f in fields(cls)}]
        if len(owners) == 1:
            return owners[0], key
        if len(owners) > 1:
            raise ConfigError(f"{where}: key '{key}' is ambiguous; write one of "
                              f"{', '.join(o + '.' + key for o in owners)}")
    close = difflib.get_close_matches(key, all_keys(), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; see `ganforge train --help-config`"
    raise ConfigError(f"{where}: unknown config key '{key}'{hint}")


def coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Convert ``value`` (possibly a string from the CLI) to type ``tp`` or raise ConfigError.
    A ``Literal`` type also checks that the value is one of its choices (strings match
    case-insensitively and come back spelled as the choice)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return coerce(value, args[0], key, where)
    if origin is Literal:
        choices = typing.get_args(tp)
        v = coerce(value, type(choices[0]), key, where)
        if isinstance(v, str):
            v = next((c for c in choices if c.lower() == v.strip().lower()), v)
        if v not in choices:
            raise ConfigError(_not_one_of(key, v, choices, where))
        return v
    def bad(detail: str = "") -> ConfigError:   # built only when raised: repr can be costly
        return ConfigError(f"{where}: '{key}' expects {getattr(tp, '__name__', tp)}, got "
                           f"{_brief(value)}{detail}")

    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                raise bad() from None
            if f.is_integer():
                return int(f)
        raise bad()
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            try:
                return float(value)
            except OverflowError:
                raise bad(" (too large for a float)") from None
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        raise bad()
    if tp is str:
        if isinstance(value, bool):   # YAML's `compile: false` for a tri-state auto|true|false key
            return str(value).lower()
        if isinstance(value, (str, int, float)):
            try:
                return str(value)
            except ValueError:     # an int beyond Python's digit limit
                raise bad() from None
        raise bad()
    raise bad()


def set_key(cfg: Config, key: str, value: Any, where: str = "override") -> Config:
    """``cfg`` with one key set: the name resolved, the value coerced to the key's type and
    checked against its choices and range (ConfigError naming the key otherwise)."""
    sec, name = resolve_key(key, where)
    spec = key_spec(f"{sec}.{name}" if sec else name)
    new = coerce(value, spec.type, spec.name, where)
    spec.check(new, where)
    explicit = cfg.explicit | {spec.name}
    if sec is None:
        return replace(cfg, **{name: new, "explicit": explicit})
    section = replace(getattr(cfg, sec), **{name: new})
    if sec in _TASK_SECTIONS:
        held = dict(cfg.task_sections)
        held[sec] = section
        tasks = tuple((n, held.get(n) or getattr(cfg, n)) for n in _TASK_SECTIONS)
        return replace(cfg, task_sections=tasks, explicit=explicit)
    return replace(cfg, **{sec: section, "explicit": explicit})


def merge(cfg: Config, d: Mapping[str, Any], where: str = "config") -> Config:
    """Apply a nested mapping (as read from YAML) onto ``cfg``, strictly."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(d).__name__}")
    sections = _section_classes()
    for key, value in d.items():
        if key in sections:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: section '{key}' must be a mapping, got "
                                  f"{_brief(value)}")
            for sub, v in value.items():
                cfg = set_key(cfg, f"{key}.{sub}", v, where)
        else:
            cfg = set_key(cfg, key, value, where)
    return cfg


def parse_pairs(items: list[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"override {_brief(item)} is not a key=value string "
                              f"(e.g. train.lr_g=1e-4)")
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value "
                              f"(e.g. train.lr_g=1e-4)")
        k, v = item.split("=", 1)
        if not k.strip():
            raise ConfigError(f"override '{item}' has no key before '=' (e.g. train.lr_g=1e-4)")
        out[k.strip()] = v.strip()
    return out


PRESET_DIR = Path(__file__).parents[1] / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):       # a name the OS refuses (too long, NUL, ...)
        return False


def load_yaml(path_or_name: str | Path) -> Dict[str, Any]:
    """Read a preset by file path or by name (``dcgan-fashion-mnist``). Anything wrong with
    the file (missing, not a regular file, unreadable, not UTF-8, not YAML, nested too
    deeply) is a ConfigError naming it."""
    p = Path(path_or_name)
    if not _exists(p):
        name = str(path_or_name)
        # a preset by name, also written as its file name (dcgan-emoji.yaml)
        cand = PRESET_DIR / (name if name.endswith(".yaml") and "/" not in name else f"{name}.yaml")
        if _exists(cand):
            p = cand
        else:
            raise ConfigError(f"--config '{path_or_name}': no such file and no preset of that "
                              f"name{did_you_mean(name, preset_names())}; presets: "
                              f"{', '.join(preset_names())}")
    if not p.is_file():                  # a folder; a FIFO would block
        raise ConfigError(f"--config '{p}': not a regular file; give a YAML file or a "
                          f"preset name ({', '.join(preset_names())})")
    try:
        text = p.read_bytes()            # PyYAML decodes (UTF-8/16) and rejects bad bytes
    except OSError as e:
        raise ConfigError(f"--config '{p}': cannot read it: {e}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config '{p}': not valid YAML: {e}") from None
    except RecursionError:
        raise ConfigError(f"--config '{p}': nested too deeply to be a config") from None
    except ValueError as e:              # e.g. an integer beyond Python's digit limit
        raise ConfigError(f"--config '{p}': not a usable YAML value: {e}") from None
    return data


def load_config(preset: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    cfg = Config()
    if preset:
        cfg = merge(cfg, load_yaml(preset), where=f"--config {preset}")
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg
