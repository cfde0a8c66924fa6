"""One file holds the whole training state (DESIGN lesson 4).

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, saved with
``torch.save`` and always loaded with ``weights_only=True``: loading never runs code from the
file. Network architectures travel as ``spec`` dicts (family name + constructor kwargs), not
as pickled classes.

Writes are atomic (:func:`ganforge.files.atomic_save`: temporary file in the same folder,
then ``os.replace``), so a crash or a second Ctrl-C mid-write leaves the previous checkpoint
intact. ``latest.pt`` is a hard link to (or copy of) the newest numbered checkpoint; only the
last ``keep_last`` numbered ones stay.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ganforge.errors import UserError
from ganforge.files import atomic_save

CKPT_DIR = "checkpoints"
LATEST = "latest.pt"
BEST = "best.pt"
_NUM = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(UserError, ValueError):
    """A user-facing problem with a checkpoint path or file."""


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_checkpoint(state: Dict[str, Any], run_dir: str | Path, step: int, keep_last: int = 3) -> Path:
    d = Path(run_dir) / CKPT_DIR
    path = d / f"step-{step:09d}.pt"
    atomic_save(state, path)
    _link_or_copy(path, d / LATEST)
    numbered = sorted((p for p in d.iterdir() if _NUM.match(p.name)), key=lambda p: int(_NUM.match(p.name).group(1)))
    for old in numbered[:-keep_last] if keep_last > 0 else numbered[:-1]:
        old.unlink(missing_ok=True)
    return path


def save_best(run_dir: str | Path, src: Path) -> None:
    _link_or_copy(src, Path(run_dir) / CKPT_DIR / BEST)


def find_checkpoint(path: str | Path, which: str = "latest") -> Path:
    """Accept a run folder, its checkpoints folder, or a checkpoint file."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise CheckpointError(f"'{path}' does not exist; give a run folder (e.g. runs/dcgan-fashion-mnist) "
                              f"or a checkpoint file (.pt)")
    for cand in (p / CKPT_DIR / f"{which}.pt", p / f"{which}.pt"):
        if cand.is_file():
            return cand
    if which != "latest":
        return find_checkpoint(path, "latest")
    raise CheckpointError(f"no checkpoint in '{path}' (looked for {p / CKPT_DIR / LATEST}); "
                          f"train first with `ganforge train --out {path}`")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    p = find_checkpoint(path)
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, not a checkpoint, or unsafe content
        raise CheckpointError(f"cannot read checkpoint '{p}': {e.__class__.__name__}: {e}. "
                              f"If the file is damaged, use an older one from {p.parent}") from None


def latest_step(run_dir: str | Path) -> Optional[int]:
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return None
    steps = [int(m.group(1)) for p in d.iterdir() if (m := _NUM.match(p.name))]
    return max(steps) if steps else None


def rng_state() -> Dict[str, Any]:
    import random
    import numpy as np
    st = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
          "python_pos": random.getstate()[2], "numpy": torch.from_numpy(np.random.get_state()[1].astype("int64")),
          "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Dict[str, Any]) -> None:
    import random
    import numpy as np
    torch.set_rng_state(st["torch"])
    random.setstate((3, tuple(st["python"]), st["python_pos"]))
    np.random.set_state(("MT19937", st["numpy"].numpy().astype("uint32"), st["numpy_pos"], 0, 0.0))
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(st["cuda"])
