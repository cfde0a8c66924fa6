"""Writing files so that a crash never leaves a half-written one (bottom layer).

:func:`atomic_save` writes with ``torch.save`` to a temporary file next to the target
(``.<name>.tmp``, same folder, so the same file system) and then moves it over the target with
``os.replace``, which is atomic: a reader, a crash or a second Ctrl-C mid-write sees either
the previous file or the new one, never a truncated mix. Used for training checkpoints
(:mod:`ganforge.checkpoint`), domain evaluator files (:mod:`ganforge.metrics.domain`) and
evaluation results (:mod:`ganforge.evaluate`).

Imports nothing from ganforge, so every layer may use it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)``, atomically: write ``.<name>.tmp`` in the same folder (made
    if missing), then ``os.replace`` it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
