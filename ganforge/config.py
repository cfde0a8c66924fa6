"""Typed, strict configuration.

A run's configuration is a frozen tree of dataclasses. It is built in one order only:
defaults -> YAML preset (``--config``) -> CLI flags -> ``key=value`` overrides. Unknown keys
and values of the wrong type are errors that name the key (DESIGN lesson 6), never ignored.

Keys are written ``section.field`` (``train.lr_g=1e-4``); a bare field name is accepted when
it exists in exactly one section (``lr_g=1e-4``).
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

from ganforge.errors import UserError


class ConfigError(UserError, ValueError):
    """A user-facing configuration error; the message names the offending key."""


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion-mnist"   # a registered dataset name, or a path (folder, .npy, .npz)
    split: str = "train"
    data_dir: Optional[str] = None  # explicit location of named datasets (beats $GANFORGE_DATA)
    img_size: int = 0             # 0: the dataset's own size
    channels: int = 0             # 0: the dataset's own channel count
    strict: bool = False          # fail on unreadable images instead of skipping them
    limit: int = 0                # use only the first N images (0: all)
    download: bool = True         # allow downloading named datasets when not found locally


@dataclass(frozen=True)
class ModelConfig:
    name: str = "dcgan"           # a model family with both a G and a D registered
    z_dim: int = 100
    g_width: int = 64             # family-specific width multiplier for G
    d_width: int = 64             # ... and for D


@dataclass(frozen=True)
class TrainConfig:
    task: str = "gan"
    loss: str = "nonsaturating"   # see `ganforge list` (losses)
    steps: int = 0                # generator steps; 0 with epochs 0 means 2000 steps
    epochs: float = 0.0           # alternatively, passes over the data
    time_limit: float = 0.0       # stop (and checkpoint) after this many seconds; 0: no limit
    batch_size: int = 64
    d_steps: int = 1              # k discriminator steps per generator step
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay: str = "none"        # none | linear | cosine
    lr_decay_start: float = 0.5   # fraction of training after which the decay begins
    seed: int = 0
    device: str = "auto"          # auto | cpu | cuda | cuda:N
    amp: str = "auto"             # auto (bf16 on CUDA, fp16 where bf16 is missing; off on CPU) | none | bf16 | fp16
    channels_last: bool = True    # NHWC memory format for conv models (faster with oneDNN/cuDNN)
    compile: str = "auto"         # auto (on CUDA when triton is present) | true | false: torch.compile
    threads: int = 0              # torch CPU threads (0: torch's default; split between torchrun processes)
    init_from: str = ""           # --init-from RUN_OR_CKPT: start from a trained model's weights (transfer)
    freeze_d: int = 0             # --freeze-d K: freeze D's first K blocks (FreezeD, Mo et al. 2020)


@dataclass(frozen=True)
class LogConfig:
    log_every: int = 50           # metrics-log / TensorBoard interval in steps
    sample_every: int = 250       # sample grid from the fixed noise every N steps
    ckpt_every: int = 1000        # checkpoint every N steps (and always at the end)
    keep_last: int = 3            # numbered checkpoints kept besides latest
    n_samples: int = 64           # size of the fixed-noise grid
    gif: bool = True
    tensorboard: bool = True      # write events when the tensorboard package is installed
    progress: bool = True         # progress bar on stderr


@dataclass(frozen=True)
class EvalConfig:
    every: int = 0                # evaluate every N steps during training (0: off); --eval-every
    metrics: str = "fid,kid"      # comma-separated: fid, kid, pr, dc, is
    n: int = 2000                 # generated images per evaluation during training
    extractor: str = "domain"     # feature extractor: domain | inception
    split: str = "test"           # real split the generated images are compared with


@dataclass(frozen=True)
class RegConfig:
    """Regularisers of D (see ganforge/regularize/ and the README's toolbox table)."""
    r1: float = 0.0               # R1 gamma on real data (Mescheder et al. 2018); 0: off
    r1_every: int = 16            # lazy R1: every N D steps, scaled by N (Karras et al. 2020)
    gp: float = 0.0               # WGAN-GP lambda (Gulrajani et al. 2017), usually 10; 0: off
    spectral_norm: bool = False   # spectral normalisation of D's layers (Miyato et al. 2018)
    label_smoothing: float = 0.0  # one-sided: D's real target 1 - s (Salimans et al. 2016)
    instance_noise: float = 0.0   # std of Gaussian noise on D's inputs, annealed linearly to 0
    instance_noise_steps: int = 0  # ... over this many steps (0: the whole run)
    d_dropout: float = 0.0        # dropout in D's hidden layers


@dataclass(frozen=True)
class AugConfig:
    """Augmentation: differentiable (what D sees, real and fake) and classic (real data only)."""
    diffaug: str = ""             # DiffAugment policy, e.g. translation,cutout,color ("" : off)
    ada: bool = False             # adaptive augmentation probability (Karras et al. 2020)
    ada_target: float = 0.6       # ADA's target for E[sign(D(real))]
    ada_interval: int = 4         # adjust p every N D steps
    ada_speed: int = 500000       # images for p to move by 1
    classic: str = ""             # dataset augmentation of real images: flip,rotation,scale,contrast,crop,noise


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving average of the generator's weights (sample/eval use it by default)."""
    half_life: float = 0.0        # in thousands of images (StyleGAN's ema_kimg); 0: off
    warmup: float = 0.05          # half-life ramp-up: at most this fraction of the images seen


@dataclass(frozen=True)
class GuardConfig:
    """Divergence guard: roll back to the last good checkpoint with a lower lr."""
    enabled: bool = True
    collapse_acc: float = 0.995   # D accuracy at/above this ...
    window: int = 2000            # ... on every log step for this many steps = collapsed D
    lr_factor: float = 0.5        # learning rates are multiplied by this after a rollback
    max_rollbacks: int = 3        # then stop with an error


@dataclass(frozen=True)
class CycleGANConfig:
    """Settings of ``train.task=cyclegan`` (see ganforge/tasks/cyclegan.py). The widths come
    from model.g_width / model.d_width; train.loss is not used (adv_loss is)."""
    domain_a: str = ""            # domain A (paper X): fashion-mnist:sneaker, a folder, ...;
    domain_b: str = ""            # ... and B (paper Y). Both empty: data.name/{trainA,trainB}
    adv_loss: str = "lsgan"       # adversarial loss (paper: least squares); or nonsaturating
    lambda_cyc: float = 10.0      # weight of the cycle-consistency L1 terms (paper eq. 3)
    lambda_id: float = 0.5        # identity-loss weight, as a fraction of lambda_cyc (0: off)
    generator: str = "cyclegan-resnet"
    discriminator: str = "patchgan"
    n_blocks: int = 6             # residual blocks in G (paper: 6 at 128 px, 9 at 256 px)
    d_layers: int = 3             # PatchGAN stride-2 layers: 3 -> 70x70 patches, 2 -> 34x34
    pool_size: int = 50           # history of generated images shown to D (0: off)
    crop: int = 0                 # random-translation jitter in px (pad + random crop; 0: off)
    flip: bool = False            # random horizontal flips (off: flips can change meaning)


@dataclass(frozen=True)
class CondConfig:
    """Settings of ``train.task=conditional`` (see ganforge/tasks/conditional.py)."""
    method: str = "projection"    # concat | cbn | projection | acgan (G and D recipe, see `ganforge list`)
    g_method: str = "auto"        # auto (the method's) | concat | cbn: G's conditioning
    embed_dim: int = 0            # label-embedding size for concat inputs (0: one per class)
    ac_weight: float = 1.0        # acgan: weight of the class cross-entropy in both nets
    ac_fake: bool = False         # acgan: D's class head also learns generated images (paper)
    matching_weight: float = 0.0  # matching-aware D term (Reed et al. 2016); 0: off
    balance: bool = False         # class-balanced real batches, uniform G labels (--balance)
    class_weights: str = "none"   # none | inverse: per-class weights on D's real-data loss


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cyclegan: CycleGANConfig = field(default_factory=CycleGANConfig)
    cond: CondConfig = field(default_factory=CondConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    out: str = ""                 # run folder; empty: runs/<model>-<data>
    description: str = ""         # free text, e.g. what a preset is for

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "config") -> "Config":
        return merge(cls(), d, where=where)

    def with_overrides(self, pairs: Mapping[str, Any] | list[str], where: str = "override") -> "Config":
        if isinstance(pairs, (list, tuple)):
            pairs = parse_pairs(pairs)
        cfg = self
        for key, value in pairs.items():
            cfg = set_key(cfg, key, value, where=where)
        return cfg

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SECTIONS = {f.name: f.type for f in fields(Config)}


def _section_classes() -> Dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: tp for name, tp in hints.items() if is_dataclass(tp)}


def _field_types(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys() -> list[str]:
    keys = []
    for sec, cls in _section_classes().items():
        keys += [f"{sec}.{f.name}" for f in fields(cls)]
    keys += [f.name for f in fields(Config) if not is_dataclass(_field_types(Config)[f.name])]
    return keys


def resolve_key(key: str, where: str = "override") -> Tuple[Optional[str], str]:
    """Map ``section.field`` or a unique bare ``field`` to (section, field)."""
    key = key.strip().replace("-", "_")
    sections = _section_classes()
    if "." in key:
        sec, name = key.split(".", 1)
        if sec in sections and name in {f.name for f in fields(sections[sec])}:
            return sec, name
    else:
        top = _field_types(Config)
        if key in top and not is_dataclass(top[key]):
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
    """Convert ``value`` (possibly a string from the CLI) to type ``tp`` or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return coerce(value, args[0], key, where)
    bad = ConfigError(f"{where}: '{key}' expects {getattr(tp, '__name__', tp)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                raise bad from None
            if f.is_integer():
                return int(f)
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, bool):   # YAML's `compile: false` for a tri-state auto|true|false key
            return str(value).lower()
        if isinstance(value, (str, int, float)):
            return str(value)
        raise bad
    raise bad


def set_key(cfg: Config, key: str, value: Any, where: str = "override") -> Config:
    sec, name = resolve_key(key, where)
    if sec is None:
        tp = _field_types(Config)[name]
        return replace(cfg, **{name: coerce(value, tp, name, where)})
    section = getattr(cfg, sec)
    tp = _field_types(type(section))[name]
    new_section = replace(section, **{name: coerce(value, tp, f"{sec}.{name}", where)})
    return replace(cfg, **{sec: new_section})


def merge(cfg: Config, d: Mapping[str, Any], where: str = "config") -> Config:
    """Apply a nested mapping (as read from YAML) onto ``cfg``, strictly."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(d).__name__}")
    sections = _section_classes()
    for key, value in d.items():
        if key in sections:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: section '{key}' must be a mapping, got {value!r}")
            for sub, v in value.items():
                cfg = set_key(cfg, f"{key}.{sub}", v, where)
        else:
            cfg = set_key(cfg, key, value, where)
    return cfg


def parse_pairs(items: list[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value "
                              f"(e.g. train.lr_g=1e-4)")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


PRESET_DIR = Path(__file__).parent / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_yaml(path_or_name: str | Path) -> Dict[str, Any]:
    """Read a preset by file path or by name (``dcgan-fashion-mnist``)."""
    p = Path(path_or_name)
    if not p.exists():
        cand = PRESET_DIR / f"{path_or_name}.yaml"
        if cand.exists():
            p = cand
        else:
            raise ConfigError(f"--config '{path_or_name}': no such file and no preset of that "
                              f"name; presets: {', '.join(preset_names())}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config '{p}': not valid YAML: {e}") from None
    return data


def load_config(preset: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    cfg = Config()
    if preset:
        cfg = merge(cfg, load_yaml(preset), where=f"--config {preset}")
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg
