"""Transfer learning: start a new run from a trained model's weights (``--init-from``) and
optionally freeze the discriminator's first blocks (``--freeze-d``, FreezeD: Mo et al. 2020).

Fine-tuning a GAN that learned one dataset on a small new one (Fashion-MNIST -> MNIST, or a
500-image subset) converges in a fraction of the steps and overfits less than training from
scratch (Wang et al. 2018, "Transferring GANs"). Only the weights move over: the new run has
its own config, data, optimiser state (fresh Adam moments) and step counter.

The networks are built from the *new* run's config; every tensor of the checkpoint must fit
them exactly, so a mismatch (another model family, width, image size, channel count,
spectral norm on/off, number of classes) is refused with a message naming the first
mismatching tensors and the setting that usually causes it, before any training step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import torch

from ganforge import checkpoint as ckpt
from ganforge.config import ConfigError
from ganforge import models


def _diff(name: str, have: Dict[str, torch.Tensor], want: Dict[str, torch.Tensor]) -> List[str]:
    out = []
    for k in sorted(set(have) | set(want)):
        if k not in want:
            out.append(f"{name}.{k} is in the checkpoint but not in the new network")
        elif k not in have:
            out.append(f"{name}.{k} is in the new network but not in the checkpoint")
        elif tuple(have[k].shape) != tuple(want[k].shape):
            out.append(f"{name}.{k}: checkpoint {tuple(have[k].shape)} vs new {tuple(want[k].shape)}")
    return out


def init_from(task, source: str | Path) -> str:
    """Load the weights of every module of ``task`` that the checkpoint ``source`` (a run
    folder or a .pt file) has. Returns a one-line description; raises ConfigError on any
    mismatch."""
    try:
        path = ckpt.find_checkpoint(source)
        st = ckpt.load_checkpoint(path, map_location="cpu")
    except ckpt.CheckpointError as e:
        raise ConfigError(f"--init-from {source}: {e}") from None
    saved = st.get("modules", {})
    missing = [n for n in task.modules if n not in saved and not n.endswith("_ema")]
    if missing:
        raise ConfigError(f"--init-from {source}: the checkpoint (task '{st.get('task')}') has no "
                          f"{', '.join(missing)}; it was trained with another task than this run's")
    problems: List[str] = []
    for n, m in task.modules.items():
        if n in saved:
            problems += _diff(n, saved[n], m.state_dict())
    if problems:
        ck = st.get("data", {})
        hint = (f"the checkpoint was trained at {ck.get('channels')}x{ck.get('img_size')}x"
                f"{ck.get('img_size')} with model {st.get('config', {}).get('model', {})}; "
                f"match data.img_size / data.channels / model.* / reg.spectral_norm "
                f"(and the number of classes for --task conditional)")
        shown = "; ".join(problems[:4]) + (f"; ... ({len(problems)} in all)" if len(problems) > 4 else "")
        raise ConfigError(f"--init-from {source}: the weights do not fit the new networks: "
                          f"{shown}. {hint}")
    loaded = []
    for n, m in task.modules.items():
        if n in saved:
            m.load_state_dict(saved[n])
            loaded.append(n)
    return (f"--init-from: loaded {', '.join(loaded)} from {path} (step {st.get('step')}); "
            f"optimisers and step count start fresh")


def freeze_discriminators(task, k: int) -> str:
    """FreezeD: freeze the first ``k`` blocks of each discriminator of ``task``."""
    if k < 0:
        raise ConfigError(f"--freeze-d {k}: give the number of D blocks to freeze (>= 0)")
    if not task.discriminators:
        raise ConfigError(f"--freeze-d: the task '{type(task).__name__}' names no discriminator")
    counts = []
    for name in task.discriminators:
        try:
            counts.append(models.freeze_d(task.modules[name], k))
        except ValueError as e:
            raise ConfigError(f"--freeze-d {k}: {name}: {e}") from None
    return (f"--freeze-d {k}: froze the first {k} blocks of {', '.join(task.discriminators)} "
            f"({sum(counts)} parameters)")
