"""``ganforge list``: every name a run or a command can choose, with its one-line help, read
from the registries themselves (models, tasks, losses, optimisers, augmentations, datasets,
metrics, feature extractors) and the presets."""
from __future__ import annotations

import argparse
from typing import Iterable, Tuple

from ganforge import models
from ganforge.core.command import Command
from ganforge.core.config import ConfigError, load_yaml, preset_names
from ganforge.data import DATASETS
from ganforge.data.classic_augment import CLASSIC_OPS
from ganforge.losses.adversarial import LOSSES
from ganforge.metrics import EXTRACTORS, METRICS
from ganforge.regularize.diffaugment import OPS as DIFFAUG_OPS
from ganforge.training.optim import OPTIMIZERS
from ganforge.training.tasks import TASKS


def preset_summary(name: str) -> str:
    """A preset's ``description``, else "MODEL on DATA"; empty when it cannot be read."""
    try:
        d = load_yaml(name)
    except ConfigError:
        return ""
    first = d.get("description") if isinstance(d, dict) else None
    model = d.get("model", {}).get("name", "") if isinstance(d.get("model"), dict) else ""
    data = d.get("data", {}).get("name", "") if isinstance(d.get("data"), dict) else ""
    return first or f"{model} on {data}"


def _show(title: str, rows: Iterable[Tuple[str, str]]) -> None:
    print(f"{title}:")
    for name, help_ in rows:
        print(f"  {name:<24} {help_}")
    print()


def run(args: argparse.Namespace) -> int:
    _show("models", [(n, models.GENERATORS.help(n)) for n in models.family_names()])
    _show("tasks", [(n, TASKS.help(n)) for n in TASKS.names()])
    _show("losses", [(n, LOSSES.help(n)) for n in LOSSES.names()])
    _show("optimizers (train.optimizer)", [(n, OPTIMIZERS.help(n)) for n in OPTIMIZERS.names()])
    _show("augmentations (aug.diffaug / aug.classic)",
          [(f"{n} (diffaug)", DIFFAUG_OPS.help(n)) for n in DIFFAUG_OPS.names()]
          + [(f"{n} (classic)", CLASSIC_OPS.help(n)) for n in CLASSIC_OPS.names()])
    _show("datasets", [(n, DATASETS.help(n)) for n in DATASETS.names()]
          + [("PATH", "a folder of images (subfolders = classes), or a .npy/.npz array")])
    _show("presets (--config NAME)", [(n, preset_summary(n)) for n in preset_names()])
    _show("metrics (eval --metrics, eval.metrics)", [(n, METRICS.help(n)) for n in METRICS])
    _show("feature extractors", [(n, EXTRACTORS.help(n)) for n in EXTRACTORS.names()])
    return 0


COMMAND = Command("list", "list models, tasks, losses, optimizers, datasets, presets and metrics",
                  lambda p: None, run)
