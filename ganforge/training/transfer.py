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
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ganforge import models
from ganforge.core import checkpoint as ckpt
from ganforge.core.config import ConfigError


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


def init_from(task, source: str | Path, class_names: Optional[Sequence[str]] = None) -> str:
    """Load the weights of every module of ``task`` that the checkpoint ``source`` (a run
    folder or a .pt file) has. ``class_names``: the new run's classes; a conditional
    checkpoint trained on other classes has its label layers mapped by name (see
    :func:`_map_classes`). Returns a one-line description; raises ConfigError on any
    mismatch."""
    try:
        path = ckpt.find_checkpoint(source)
        st = ckpt.load_checkpoint(path, map_location="cpu")
    except ckpt.CheckpointError as e:
        raise ConfigError(f"--init-from {source}: {e}") from None
    saved = st.get("modules", {})
    if _new_head(st, task):
        return _init_new_head(task, saved, path, st)
    old_names = (st.get("data") or {}).get("class_names")
    mapped = ""
    if (task.n_classes and class_names is not None and old_names is not None
            and list(old_names) != list(class_names)):
        saved, mapped = _map_classes(task, saved, list(old_names), list(class_names))
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
            f"optimisers and step count start fresh{mapped}")


def _map_classes(task, saved: Dict[str, Dict[str, torch.Tensor]], old: List[str], new: List[str]
                 ) -> Tuple[Dict[str, Dict[str, torch.Tensor]], str]:
    """The checkpoint's modules with their label layers (:func:`_label_params`: one row per
    class) re-indexed to the new run's classes by name: a class in both keeps its learned
    rows, wherever its index moved; a new class starts with the new network's own rows.
    Returns (modules, a note saying what was mapped); the rest must fit as it is."""
    out: Dict[str, Dict[str, torch.Tensor]] = {}
    for n, sd in saved.items():
        net = task.modules.get(n)
        if net is None:
            out[n] = sd
            continue
        want = net.state_dict()
        sd = dict(sd)
        for k in _label_params(net):
            have = sd.get(k)
            if have is None or have.shape[0] != len(old) or want[k].shape[0] != len(new) \
                    or tuple(have.shape[1:]) != tuple(want[k].shape[1:]):
                continue
            rows = want[k].clone()
            for i, c in enumerate(new):
                if c in old:
                    rows[i] = have[old.index(c)]
            sd[k] = rows
        out[n] = sd
    kept = [c for c in new if c in old]
    fresh = [c for c in new if c not in old]
    dropped = [c for c in old if c not in new]
    moved = [c for c in kept if old.index(c) != new.index(c)]
    parts = [f"{len(kept)} kept" + (f" ({len(moved)} at a new index)" if moved else "")]
    if fresh:
        parts.append(f"new, starting fresh: {', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}")
    if dropped:
        parts.append(f"dropped: {', '.join(dropped[:6])}{' ...' if len(dropped) > 6 else ''}")
    return out, f"; the classes differ from the checkpoint's, label layers mapped by name ({'; '.join(parts)})"


def _new_head(st: Dict, task) -> bool:
    """True for an unconditional run loaded into a class-conditional one (the "new head")."""
    src = st.get("task") or st.get("config", {}).get("train", {}).get("task")
    return bool(src) and src in getattr(task, "new_head_from", ())


def _label_params(module: torch.nn.Module) -> set:
    """State-dict keys of ``module``'s label layers: its embeddings (projection D's class
    embedding, concat's label embedding, conditional BN's per-class gain and bias tables)."""
    out = set()
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Embedding):
            out.add(f"{name}.weight" if name else "weight")
    return out


def _adapt(name: str, have: Dict[str, torch.Tensor], net: torch.nn.Module
           ) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """The state dict of ``net`` filled from an unconditional network's ``have``: equal keys
    and shapes are copied; a conditional BN's statistics come from the BatchNorm it replaces
    (``x.running_mean`` -> ``x.bn.running_mean``) and its per-class gain and bias start as that
    BatchNorm's affine weight and bias for every class (so every class starts as the
    unconditional G). Returns (state, fresh label keys, problems)."""
    want = net.state_dict()
    labels = _label_params(net)
    out, fresh, problems = {}, [], []
    for k, v in want.items():
        src = None
        if k in have:
            src = have[k]
        elif ".bn." in k and k.replace(".bn.", ".") in have:
            src = have[k.replace(".bn.", ".")]
        elif k.endswith(".gain.weight") and k[:-len("gain.weight")] + "weight" in have:
            src = have[k[:-len("gain.weight")] + "weight"].expand_as(v)
        elif k.endswith(".bias.weight") and k[:-len("bias.weight")] + "bias" in have:
            src = have[k[:-len("bias.weight")] + "bias"].expand_as(v)
        if src is not None and tuple(src.shape) == tuple(v.shape):
            out[k] = src.clone()
        elif k in labels:
            out[k] = v
            fresh.append(f"{name}.{k}")
        elif src is not None:
            problems.append(f"{name}.{k}: checkpoint {tuple(src.shape)} vs new {tuple(v.shape)}")
        else:
            problems.append(f"{name}.{k} is in the new network but not in the checkpoint")
    return out, fresh, problems


def _init_new_head(task, saved: Dict, path, st: Dict) -> str:
    """--init-from of an unconditional run into a conditional one: the shared backbone's
    weights are loaded, the label layers start fresh (see :func:`_adapt`); a backbone that does
    not fit (e.g. ``cond.g_method=concat`` widens G's input) is refused naming the tensors."""
    states, fresh, problems = {}, [], []
    for n, m in task.modules.items():
        src = n[:-len("_ema")] + "_ema" if n.endswith("_ema") else n
        if src not in saved:
            if n.endswith("_ema"):
                continue
            problems.append(f"the checkpoint has no {n}")
            continue
        states[n], f, p = _adapt(n, saved[src], m)
        fresh += f
        problems += p
    if problems:
        shown = "; ".join(problems[:4]) + (f"; ... ({len(problems)} in all)" if len(problems) > 4 else "")
        raise ConfigError(f"--init-from {path}: an unconditional run's networks do not fit this "
                          f"conditional run's backbone: {shown}. Only the label layers may be new: "
                          f"use cond.g_method=cbn (or auto) and cond.method=projection with the "
                          f"source run's model.* and data.* settings")
    for n, sd in states.items():
        task.modules[n].load_state_dict(sd)
    return (f"--init-from: loaded the unconditional {', '.join(states)} from {path} (step "
            f"{st.get('step')}) as the backbone of this conditional run; new label layers: "
            f"{', '.join(sorted(set(k.split('.', 1)[1] for k in fresh))) or 'none'} (per-class "
            f"BatchNorm gains and biases start as the source's); optimisers and steps start fresh")


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
