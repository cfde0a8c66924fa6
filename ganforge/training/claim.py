"""A run folder holds one run: claiming it, and what may change when a run is resumed.

Starting ``ganforge train --out RUN`` on a folder that already holds a run is refused unless
``--resume`` (continue it) or ``--overwrite`` (delete its outputs first) says which was meant:
a second run must never replace the first one's checkpoints, config or metrics log (users of
other GAN tools have lost finished runs this way). The folder must also be writable, which is
checked before any data is loaded.

Resuming compares the data with what the run was trained on (:func:`check_resume_data`: the
classes, names and order, and the images' count and fingerprint), and the config given now
with the one the run was trained with, before any weights are loaded: settings that change the networks or the data (``model.*``, ``data.*``,
the task, the losses and regularisers, ...) are refused with the keys and both values named;
settings of the schedule and of the outputs (:data:`RESUMABLE`) may change, and each change
is recorded in ``metrics.jsonl`` as a ``resumed`` row.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from ganforge.core import checkpoint as ckpt
from ganforge.core import runfolder
from ganforge.core.config import ConfigError
from ganforge.core.errors import UserError
from ganforge.core.files import probe_writable

#: Config keys that may differ between a run and its resumption (sections end with ".").
RESUMABLE = ("train.steps", "train.epochs", "train.time_limit", "train.threads", "train.device",
             "train.amp", "train.compile", "train.channels_last", "log.", "eval.", "guard.",
             "out", "description", "data.data_dir", "data.download")

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
    refused command leaves no empty run folder behind, nor the empty folders above it that it
    made (``runs/``). An existing folder is never touched."""
    made = []      # the folders that do not exist yet, innermost first
    p = Path(run_dir).absolute()
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        for d in made:
            if d.is_dir() and not any(d.iterdir()):
                with contextlib.suppress(OSError):
                    d.rmdir()
            else:
                break
        raise


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
        if runfolder.has_checkpoint(run_dir):
            # none that verifies is a CheckpointError naming the damaged files (set aside)
            path = ckpt.find_checkpoint(run_dir)
            return {"path": path, "state": ckpt.load_checkpoint(path, map_location="cpu")}
        if runfolder.started_without_checkpoint(run_dir):
            step = runfolder.last_logged_step(run_dir)
            got = f"stopped at step {step} " if step else "stopped "
            note(f"--resume: {run_dir} has no checkpoint yet ({got}before its first one); "
                 f"starting it again from step 0 with its saved settings")
            return None
        raise UserError(f"--resume: {run_dir} holds no run to resume (no checkpoint, "
                        f"{runfolder.CONFIG} or {runfolder.METRICS_LOG}); check the --out path, "
                        f"or drop --resume to start a new run there")
    # Only the writer (rank 0) judges the folder: under torchrun it may already have written
    # this run's first files by the time a slower rank got here.
    if write and runfolder.holds_run(run_dir):
        step = ckpt.latest_step(run_dir)
        if not overwrite:
            held = f" (step {step})" if step is not None else ""
            raise UserError(f"--out {run_dir} already holds a run{held}; continue it with --resume, "
                            f"start over with --overwrite (deletes its checkpoints, samples and "
                            f"logs), or choose another --out")
        gone = runfolder.clear_outputs(run_dir)
        note(f"--overwrite: deleted the previous run's {', '.join(gone)} in {run_dir}")
    return None


def check_resume_config(saved: Dict[str, Any], now: Dict[str, Any], source: str) -> Dict[str, Tuple[Any, Any]]:
    """The allowed changes (see :func:`config_changes`); a :class:`ConfigError` naming every
    refused key with both values when settings that shape how the run trains differ."""
    allowed, refused = config_changes(saved, now)
    if refused:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(refused.items())[:6])
        more = f"; ... ({len(refused)} in all)" if len(refused) > 6 else ""
        raise ConfigError(f"--resume: these settings differ from the run in {source}, and they "
                          f"change how it trains (its networks, data, losses or optimiser): "
                          f"{shown}{more}. Resume with the run's own "
                          f"settings (drop those flags/overrides), or start a new run with another "
                          f"--out (--init-from {source} keeps the weights); only "
                          f"{', '.join(r.rstrip('.') + ('.*' if r.endswith('.') else '') for r in RESUMABLE)} "
                          f"may change on resume")
    return allowed


def _names(names) -> str:
    shown = ", ".join(str(n) for n in names[:8])
    return f"[{shown}, ... {len(names)} in all]" if len(names) > 8 else f"[{shown}]"


def check_resume_data(saved: Dict[str, Any], now, source: str, step: int) -> None:
    """Refuse to resume on other data than the checkpoint's: ``saved`` is its ``data`` section
    (``class_names``, ``n_images``, ``fingerprint``), ``now`` the
    :class:`~ganforge.training.tasks.DataInfo` of the data loaded now. Class names differ
    (a folder added, removed or renamed: the labels would be renumbered and every later
    ``--class`` wrong), or the images' count or fingerprint differ (added, removed, replaced:
    the loader's position and the run's exactness would be lost): a :class:`UserError` naming
    both sides and the way on. What a checkpoint of an older version lacks is not compared."""
    old_classes, new_classes = saved.get("class_names"), now.class_names
    if old_classes is not None and new_classes is not None and list(old_classes) != list(new_classes):
        added = [c for c in new_classes if c not in old_classes]
        gone = [c for c in old_classes if c not in new_classes]
        what = "; ".join(x for x in (f"new: {', '.join(added)}" if added else "",
                                     f"missing: {', '.join(gone)}" if gone else "") if x) \
            or "same names, another order"
        raise UserError(f"--resume: the classes changed since the checkpoint at step {step}: "
                        f"{_names(list(old_classes))} -> {_names(list(new_classes))} ({what}); "
                        f"restore the class folders as they were, or start a new run with "
                        f"another --out (--init-from {source} keeps the weights)")
    old_n, old_fp = saved.get("n_images"), saved.get("fingerprint")
    if old_fp is None or now.fingerprint is None:
        return
    if old_n != now.n_images or old_fp != now.fingerprint:
        raise UserError(f"--resume: the training images changed since the checkpoint at step "
                        f"{step}: {old_n} images (fingerprint {old_fp}) -> {now.n_images} images "
                        f"(fingerprint {now.fingerprint}); restore them to resume exactly, or "
                        f"train on the new images in a new run (--out NEW --init-from {source} "
                        f"keeps the weights)")
