"""Load a trained run for use: the one entry from a run folder, a checkpoint or an export
folder to the task's use-time face (:class:`ganforge.training.tasks.TrainedModel`).

``ganforge sample``, ``translate`` and ``eval`` (and the Python API) all start here; none of
them names a task or a module: the checkpoint (or the export's ``config.json``) says which task
trained it, and that task rebuilds its generators from the specs stored next to the weights
(DESIGN lesson 5).

An *export folder* (written by ``ganforge export``, :mod:`ganforge.use.export`) holds
``config.json`` (format :data:`EXPORT_FORMAT`) and ``model.safetensors``; it is read with
``json`` and ``safetensors`` only, so loading one never runs code from the folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ganforge.core.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from ganforge.core.devices import resolve_device
from ganforge.core.errors import UserError
from ganforge.training.tasks import DEFAULT_TASK, TASKS, TrainedModel

#: ``config.json["format"]`` of an export folder
EXPORT_FORMAT = "ganforge-export-1"
#: the files of an export folder (Hugging Face layout)
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"


def read_export_config(folder: str | Path) -> Optional[Dict[str, Any]]:
    """The ``config.json`` of export folder ``folder``, or None when ``folder`` is not one (no
    such file, not JSON, or another format)."""
    p = Path(folder) / EXPORT_CONFIG
    if not p.is_file():
        return None
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) and cfg.get("format") == EXPORT_FORMAT else None


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an export folder written by ``ganforge export``."""
    return Path(path).is_dir() and read_export_config(path) is not None


def load_export(folder: str | Path, *, ema: bool = True,
                device: str | torch.device = "cpu") -> TrainedModel:
    """The trained model of export folder ``folder``: JSON and safetensors only, no checkpoint.
    ``ema=False`` is refused when the export holds only weight averages."""
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    device = resolve_device(device)
    cfg = read_export_config(folder)
    if cfg is None:
        raise CheckpointError(f"'{folder}' is not a ganforge export folder (no {EXPORT_CONFIG} "
                              f"of format {EXPORT_FORMAT})")
    if not ema and cfg.get("ema"):
        raise UserError(f"--no-ema: '{folder}' holds only the generators' weight averages; "
                        f"export the run again with --no-ema for the raw ones")
    wpath = folder / EXPORT_WEIGHTS
    weights: Dict[str, Dict[str, torch.Tensor]] = {}
    try:
        with safe_open(str(wpath), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != EXPORT_FORMAT:
                raise CheckpointError(f"'{wpath}' is not ganforge export weights (metadata "
                                      f"format {meta.get('format')!r}, expected {EXPORT_FORMAT})")
            for key in f.keys():
                name, _, sub = key.partition(".")
                weights.setdefault(name, {})[sub] = f.get_tensor(key)
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"'{wpath}' cannot be read: {e}") from None
    task = str(cfg.get("task") or DEFAULT_TASK)
    task_cls = TASKS.get(task)
    return task_cls.trained_class.from_export(task_cls, cfg, weights, device=device,
                                              source=str(folder))


def model_from_checkpoint(st: Any, path: str | Path, *, ema: bool = True,
                          device: str | torch.device = "cpu") -> TrainedModel:
    """The trained model of checkpoint state ``st`` read from ``path``."""
    if not isinstance(st, dict) or "modules" not in st:
        raise CheckpointError(f"'{path}' is not a ganforge training checkpoint")
    task = str(st.get("task") or st.get("config", {}).get("train", {}).get("task") or DEFAULT_TASK)
    task_cls = TASKS.get(task)
    return task_cls.trained_class.from_checkpoint(task_cls, st, ema=ema, device=resolve_device(device),
                                                  source=str(path))


def load_run(run_or_ckpt: str | Path, which: str = "latest", *, ema: bool = True,
             device: str | torch.device = "cpu") -> TrainedModel:
    """The trained model of a run folder, its checkpoints folder, a checkpoint file or an
    export folder (``ganforge export``; ``which`` does not apply to it).

    ``which``: ``latest`` or ``best`` (falls back to latest); ``ema``: use the generators'
    weight averages when the run kept them (``--no-ema`` turns it off); ``device``: where the
    generators live. Raises :class:`CheckpointError` for a missing or unreadable checkpoint
    and :class:`ganforge.core.registry.RegistryError` for a task this ganforge does not know."""
    if is_export(run_or_ckpt):
        return load_export(run_or_ckpt, ema=ema, device=device)
    device = resolve_device(device)
    path = find_checkpoint(run_or_ckpt, which)
    st = load_checkpoint(path, map_location="cpu")
    return model_from_checkpoint(st, path, ema=ema, device=device)
