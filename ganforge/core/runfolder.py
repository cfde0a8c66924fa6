"""The run folder's files and their formats: this module is their one owner, as
:mod:`ganforge.core.checkpoint` is the checkpoint's.

A run folder (``ganforge train --out RUN``) holds::

    config.yaml         the resolved config (YAML; reusable with --config)
    metrics.jsonl       one JSON object per line (the metrics log, rows below)
    samples/step-NNNNNNN.png   grids from the fixed inputs (7-digit step)
    training.gif        those grids as an animation
    curves.png          the logged statistics against step
    tensorboard/        TensorBoard events (when the package is installed)
    checkpoints/        latest.pt, step-NNNNNNNNN.pt, best.pt (ganforge/core/checkpoint.py)
    report.html         the run's report (ganforge/use/report.py)

Rows of ``metrics.jsonl``, each with ``step`` (an int), told apart by :func:`row_kind`:

- ``train``: the statistics of the steps since the last log step (means), with
  ``images_per_sec``, ``time`` (training seconds so far), ``epoch`` and the learning rate of
  each phase, ``lr_<phase>`` (``lr_D``, ``lr_G``; 0.1 logged the first phase's as ``lr``);
- ``eval``: scores of an evaluation (``fid``, ``kid_mean``, ``precision``, ...; no
  ``images_per_sec``);
- ``resumed``: ``{"step", "resumed": true, "changed": {key: [old, new]}}``, settings changed
  on ``--resume``;
- ``rollback``: ``{"step", "rollback", "reason", "lr_scale"}``, the divergence guard's.

Writers append whole lines; a line torn by a crash is skipped by every reader and dropped by
:func:`repair_log` when the run resumes.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from ganforge.core.files import atomic_write_text

CONFIG = "config.yaml"
METRICS_LOG = "metrics.jsonl"
SAMPLES = "samples"
CURVES = "curves.png"
GIF = "training.gif"
TENSORBOARD = "tensorboard"
REPORT = "report.html"
CHECKPOINTS = "checkpoints"   # its files' format: ganforge/core/checkpoint.py
#: What a run writes into its folder (what --overwrite deletes; nothing else is touched).
RUN_OUTPUTS = (CHECKPOINTS, SAMPLES, TENSORBOARD, METRICS_LOG, CONFIG, CURVES, GIF)
#: the first line of a run's config.yaml
CONFIG_HEADER = "# ganforge resolved config (edit and pass with --config to reuse)\n"


def run_dir_of(path: str | Path) -> Path:
    """The run folder of ``path``: a checkpoint file's (the folder above ``checkpoints/``, or
    the file's own folder), a ``checkpoints/`` folder's parent, or a run folder itself."""
    p = Path(path)
    if p.suffix == ".pt" or (p.exists() and p.is_file()):
        p = p.parent
    return p.parent if p.name == CHECKPOINTS else p


def has_checkpoint(run_dir: str | Path) -> bool:
    """True when ``run_dir/checkpoints/`` holds a checkpoint file (read or not)."""
    d = Path(run_dir) / CHECKPOINTS
    return d.is_dir() and any(p.suffix == ".pt" for p in d.iterdir())


def holds_run(run_dir: str | Path) -> bool:
    """True when ``run_dir`` has a checkpoint or a metrics log of a run."""
    return has_checkpoint(run_dir) or (Path(run_dir) / METRICS_LOG).exists()


def started_without_checkpoint(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a run that wrote its config or metrics log but no
    checkpoint yet (killed, crashed or diverged before its first ``log.ckpt_every`` step)."""
    d = Path(run_dir)
    return (d.is_dir() and not has_checkpoint(d)
            and ((d / CONFIG).is_file() or (d / METRICS_LOG).is_file()))


def last_logged_step(run_dir: str | Path) -> Optional[int]:
    """The highest ``step`` of the run's metrics log, or None when it logged none."""
    steps = [r["step"] for r in read_rows(run_dir)
             if isinstance(r.get("step"), int) and not isinstance(r.get("step"), bool)]
    return max(steps) if steps else None


def no_checkpoint_yet(run_dir: str | Path, shown: Any = None) -> str:
    """One line for a run folder that holds a run with no checkpoint yet
    (:func:`started_without_checkpoint`): how far it got and the command that continues it."""
    shown = run_dir if shown is None else shown
    step = last_logged_step(run_dir)
    got = f"it stopped at step {step}, " if step else "it stopped "
    every = ((read_config(run_dir) or {}).get("log") or {}).get("ckpt_every")
    first = f" (step {every})" if isinstance(every, int) and every > 0 else ""
    return (f"'{shown}' is a run with no checkpoint yet: {got}before its first checkpoint"
            f"{first}; continue it with `ganforge train --out {shown} --resume` (it starts "
            f"again from step 0 with its saved settings)")


def clear_outputs(run_dir: Path) -> List[str]:
    """Delete a previous run's outputs (:data:`RUN_OUTPUTS`) from ``run_dir``; returns their names."""
    gone = []
    for name in RUN_OUTPUTS:
        p = Path(run_dir) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        gone.append(name)
    return gone


# --------------------------------------------------------------------------- config.yaml
def write_config(run_dir: Path, yaml_text: str) -> Path:
    """Write the resolved config (``Config.dump_yaml()``) as ``config.yaml``, atomically."""
    path = Path(run_dir) / CONFIG
    atomic_write_text(path, CONFIG_HEADER + yaml_text)
    return path


def config_path(run_dir: str | Path) -> Optional[Path]:
    """``run_dir/config.yaml`` when ``run_dir`` is a folder holding one, else None."""
    p = Path(run_dir) / CONFIG
    return p if p.is_file() else None


def read_config(run_dir: str | Path) -> Optional[Dict[str, Any]]:
    """The run's saved config as a dict, or None when there is none or it is not a YAML
    mapping (the checkpoint's own copy is then the one to use)."""
    p = config_path(run_dir)
    if p is None:
        return None
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ValueError):
        return None
    return d if isinstance(d, dict) else None


# --------------------------------------------------------------------------- metrics.jsonl
def log_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / METRICS_LOG


def append_row(run_dir: str | Path, row: Dict[str, Any]) -> None:
    """Append ``row`` (a dict with ``step``) to the metrics log as one line."""
    with open(log_path(run_dir), "a") as f:
        f.write(json.dumps(row) + "\n")


def read_rows(run_dir: str | Path) -> List[Dict[str, Any]]:
    """Every readable row of the metrics log, in order ([] when there is none); a line cut by
    a crash, or one that is not a JSON object, is skipped."""
    p = log_path(run_dir)
    rows: List[Dict[str, Any]] = []
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def row_kind(row: Dict[str, Any]) -> str:
    """``"resumed"``, ``"rollback"``, ``"train"`` or ``"eval"`` (see the module docstring);
    ``"other"`` for a row with no number besides ``step`` and ``time``."""
    if "resumed" in row:
        return "resumed"
    if "rollback" in row:
        return "rollback"
    if "images_per_sec" in row or any(str(k).startswith("loss") for k in row):
        return "train"
    nums = {k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return "eval" if nums - {"step", "time"} else "other"


def last_eval_row(run_dir: str | Path) -> Dict[str, float]:
    """The numbers of the last ``eval`` row of the run's metrics log (``fid``, ``kid_mean``,
    ..., ``step``), or {} when the run logged no evaluation."""
    found: Dict[str, float] = {}
    for row in read_rows(run_dir):
        if row_kind(row) == "eval":
            found = {k: v for k, v in row.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return found


def repair_log(run_dir: str | Path, step: int) -> int:
    """Make the metrics log end at ``step``, the step a run resumes from: drop a torn last
    line (a crash mid-write) and rows logged after the checkpoint (they will be logged again);
    a whole last row cut just before its newline is kept, and the newline added (else the next
    row would be appended to its line). Rewrites the file atomically; returns how many lines
    were dropped."""
    path = log_path(run_dir)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    text = path.read_text(errors="replace")
    for line in text.splitlines():
        try:
            row = json.loads(line)
            ok = isinstance(row, dict) and int(row.get("step", 0)) <= step
        except (ValueError, TypeError):
            ok = False
        if ok:
            kept.append(line)
        else:
            dropped += 1
    if dropped or (text and not text.endswith("\n")):
        atomic_write_text(path, "".join(line + "\n" for line in kept))
    return dropped


# --------------------------------------------------------------------------- sample grids
def samples_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / SAMPLES


def sample_path(run_dir: str | Path, step: int) -> Path:
    """Where the grid of ``step`` goes: ``samples/step-NNNNNNN.png``."""
    return samples_dir(run_dir) / f"step-{int(step):07d}.png"


def sample_grids(run_dir: str | Path) -> List[Path]:
    """The run's sample grids, oldest first."""
    return sorted(samples_dir(run_dir).glob("step-*.png"))


def grid_step(path: Path) -> int:
    """The step of a sample grid file (``step-0000250.png`` -> 250)."""
    return int(path.stem.split("-")[-1])
