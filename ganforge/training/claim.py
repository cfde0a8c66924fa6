"""A run folder holds one run: claiming it, and what may change when a run is resumed.

Starting ``ganforge train --out RUN`` on a folder that already holds a run is refused unless
``--resume`` (continue it) or ``--overwrite`` (delete its outputs first) says which was meant:
a second run must never replace the first one's checkpoints, config or metrics log (users of
other GAN tools have lost finished runs this way). The folder must also be writable, which is
checked before any data is loaded.

Resuming compares the config given now with the one the run was trained with, before any
weights are loaded: settings that change the networks or the data (``model.*``, ``data.*``,
the task, the losses and regularisers, ...) are refused with the keys and both values named;
settings of the schedule and of the outputs (:data:`RESUMABLE`) may change, and each change
is recorded in ``metrics.jsonl`` as a ``resumed`` row.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ganforge.core import checkpoint as ckpt
from ganforge.core.config import ConfigError
from ganforge.core.errors import UserError
from ganforge.core.files import atomic_write_text, probe_writable

#: Config keys that may differ between a run and its resumption (sections end with ".").
RESUMABLE = ("train.steps", "train.epochs", "train.time_limit", "train.threads", "train.device",
             "train.amp", "train.compile", "train.channels_last", "log.", "eval.", "guard.",
             "out", "description", "data.data_dir", "data.download")

#: What a run writes into its folder (what --overwrite deletes; nothing else is touched).
RUN_OUTPUTS = ("checkpoints", "samples", "tensorboard", "metrics.jsonl", "config.yaml",
               "curves.png", "training.gif")


def holds_run(run_dir: Path) -> bool:
    """True when ``run_dir`` has a checkpoint or a metrics log of a run."""
    d = run_dir / ckpt.CKPT_DIR
    has_ckpt = d.is_dir() and any(p.suffix == ".pt" for p in d.iterdir())
    return has_ckpt or (run_dir / "metrics.jsonl").exists()


def check_writable(run_dir: Path) -> None:
    """Create ``run_dir`` and write a probe file in it; a :class:`UserError` naming the folder
    when that is not possible (read-only file system, no permission, a file in the way)."""
    why = probe_writable(run_dir)
    if why is not None:
        raise UserError(f"--out {run_dir}: cannot write there ({why}); choose a folder you can "
                        f"write to")


@contextlib.contextmanager
def removed_if_unused(run_dir: Path) -> Iterator[None]:
    """Around building a run: when ``run_dir`` did not exist before and building fails (bad
    data, a size the model cannot reach, ...), remove it again if it is still empty, so a
    refused command leaves no empty run folder behind. An existing folder is never touched."""
    existed = run_dir.exists()
    try:
        yield
    except BaseException:
        if not existed and run_dir.is_dir() and not any(run_dir.iterdir()):
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise


def clear_outputs(run_dir: Path) -> List[str]:
    """Delete a previous run's outputs (:data:`RUN_OUTPUTS`) from ``run_dir``; returns their names."""
    gone = []
    for name in RUN_OUTPUTS:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        gone.append(name)
    return gone


def _flat(d: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def config_changes(saved: Dict[str, Any], now: Dict[str, Any]) -> Tuple[Dict[str, Tuple[Any, Any]],
                                                                        Dict[str, Tuple[Any, Any]]]:
    """``(allowed, refused)``: the keys whose values differ between a run's saved config and the
    config given now, as ``{key: (saved value, new value)}``, split by :data:`RESUMABLE`. Keys
    the saved config lacks (written by an older ganforge) count as unchanged."""
    old, new = dict(_flat(saved)), dict(_flat(now))
    allowed, refused = {}, {}
    for key, value in new.items():
        if key not in old or old[key] == value:
            continue
        ok = any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)
        (allowed if ok else refused)[key] = (old[key], value)
    return allowed, refused


def claim(run_dir: Path, *, resume: bool, overwrite: bool, write: bool,
          note) -> Optional[Dict[str, Any]]:
    """Make ``run_dir`` this run's: check it is writable (when ``write``, i.e. rank 0), refuse a
    folder holding another run unless ``resume`` or ``overwrite``, delete the old outputs for
    ``overwrite``. Returns the checkpoint state to resume from (``resume`` and there is one),
    else None. Raises :class:`UserError` (exit 2) before any data is loaded."""
    if resume and overwrite:
        raise UserError("--resume continues the run in --out and --overwrite deletes it; give one")
    if write:
        check_writable(run_dir)
    if resume:
        try:
            path = ckpt.find_checkpoint(run_dir)
        except ckpt.CheckpointError:
            note(f"--resume: no checkpoint in {run_dir}; starting a new run")
            return None
        return {"path": path, "state": ckpt.load_checkpoint(path, map_location="cpu")}
    # Only the writer (rank 0) judges the folder: under torchrun it may already have written
    # this run's first files by the time a slower rank got here.
    if write and holds_run(run_dir):
        step = ckpt.latest_step(run_dir)
        if not overwrite:
            held = f" (step {step})" if step is not None else ""
            raise UserError(f"--out {run_dir} already holds a run{held}; continue it with --resume, "
                            f"start over with --overwrite (deletes its checkpoints, samples and "
                            f"logs), or choose another --out")
        gone = clear_outputs(run_dir)
        note(f"--overwrite: deleted the previous run's {', '.join(gone)} in {run_dir}")
    return None


def check_resume_config(saved: Dict[str, Any], now: Dict[str, Any], source: str) -> Dict[str, Tuple[Any, Any]]:
    """The allowed changes (see :func:`config_changes`); a :class:`ConfigError` naming every
    refused key with both values when settings that shape the networks or data differ."""
    allowed, refused = config_changes(saved, now)
    if refused:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(refused.items())[:6])
        more = f"; ... ({len(refused)} in all)" if len(refused) > 6 else ""
        raise ConfigError(f"--resume: these settings differ from the run in {source}, and they "
                          f"change its networks or data: {shown}{more}. Resume with the run's own "
                          f"settings (drop those flags/overrides), or start a new run with another "
                          f"--out (--init-from {source} keeps the weights); only "
                          f"{', '.join(r.rstrip('.') + ('.*' if r.endswith('.') else '') for r in RESUMABLE)} "
                          f"may change on resume")
    return allowed


def repair_log(path: Path, step: int) -> int:
    """Make ``metrics.jsonl`` end at ``step``, the step a run resumes from: drop a torn last
    line (a crash mid-write) and rows logged after the checkpoint (they will be logged again);
    a whole last row cut just before its newline is kept, and the newline added (else the next
    row would be appended to its line). Rewrites the file atomically; returns how many lines
    were dropped."""
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


