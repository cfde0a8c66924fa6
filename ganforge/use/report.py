"""``ganforge report RUN [--out report.html]``: one self-contained HTML page about a run.

Reads the run folder as its users do (the run's face, its metrics log and checkpoint
metadata, through :mod:`ganforge.core.runfolder` and :mod:`ganforge.core.checkpoint`), makes
the pictures it lacks (curves, one grid row per class, translations) and hands plain data to
the renderer (:mod:`ganforge.render.html`). The training callback that writes it at the end of
every session is :class:`ganforge.training.callbacks.report.WriteReport`.
"""
from __future__ import annotations

import argparse
import io
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from PIL import Image

from ganforge.core import runfolder
from ganforge.core.checkpoint import (
    LATEST,
    find_checkpoint,
    load_checkpoint,
    numbered_checkpoints,
)
from ganforge.core.command import Command
from ganforge.core.errors import GanforgeError, UserError
from ganforge.core.files import atomic_write_text
from ganforge.core.version import __version__
from ganforge.render.curves import plot_curves
from ganforge.render.html import render_report
from ganforge.render.images import grid_to_uint8, make_grid, triplet_grid
from ganforge.use.export import is_export
from ganforge.use.face import Generator
from ganforge.use.faces import face_from_checkpoint

#: images per class row and per translation band
ROW_IMAGES = 8
#: the most classes given a sampled row (a table of names beyond that)
MAX_CLASS_ROWS = 50


def _png(grid: torch.Tensor, scale: int = 1) -> bytes:
    img = Image.fromarray(grid_to_uint8(grid))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _scale(img_size: int) -> int:
    return max(1, min(4, 64 // max(1, img_size)))


def _read(p: Path) -> Optional[bytes]:
    try:
        return p.read_bytes() if p.is_file() else None
    except OSError:
        return None


def _one_line(e: BaseException) -> str:
    s = " ".join(str(e).split()) or type(e).__name__
    return s if len(s) <= 200 else s[:197] + "..."


def _duration(s: Optional[float]) -> str:
    if s is None:
        return "?"
    s = int(round(float(s)))
    h, m = divmod(s, 3600)
    m, sec = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {sec:02d} s" if m else f"{sec} s")


def _classes(model: Generator, rows: List[Dict[str, Any]], notes: List[str]) -> Optional[List[Dict[str, Any]]]:
    names = model.class_names
    if not names:
        return None
    classes: List[Dict[str, Any]] = [{"name": n} for n in names]
    per_class = next((r["per_class"] for r in reversed(rows)
                      if isinstance(r.get("per_class"), list)), None)
    if per_class:                 # the last evaluation that kept a per-class table
        for entry in per_class:
            i = entry.get("index")
            if isinstance(i, int) and 0 <= i < len(classes):
                classes[i]["accuracy"] = entry.get("accuracy")
        return classes
    scale = _scale(model.info.img_size)
    for i, c in enumerate(classes[:MAX_CLASS_ROWS]):
        try:
            x = model.sample(ROW_IMAGES, seed=i, classes=[i] * ROW_IMAGES)
            c["png"] = _png(make_grid(x, nrow=ROW_IMAGES), scale)
        except GanforgeError as e:
            notes.append(f"class samples: {_one_line(e)}")
            break
    if len(classes) > MAX_CLASS_ROWS:
        notes.append(f"class samples: first {MAX_CLASS_ROWS} of {len(classes)} classes")
    return classes


def _translations(model: Generator, notes: List[str]) -> Optional[List[Tuple[str, bytes]]]:
    if model.inputs != "image":
        return None
    out = []
    for direction in model.directions:
        try:
            imgs, name = model.source_images(direction, limit=ROW_IMAGES)
        except (GanforgeError, OSError) as e:
            notes.append(f"translations {direction}: {_one_line(e)}")
            continue
        x = imgs[:ROW_IMAGES]
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1
        y, rec = model.round_trip(x, direction)
        out.append((f"{direction}: {name}",
                    _png(triplet_grid(x, y, rec, columns=ROW_IMAGES), _scale(model.info.img_size))))
    return out


def _checkpoints(run: Path, latest_step: int) -> List[Dict[str, Any]]:
    d = run / runfolder.CHECKPOINTS
    if not d.is_dir():
        return []
    steps = {p.name: s for s, p in numbered_checkpoints(run)}
    out = []
    for p in sorted(d.glob("*.pt")):
        step = steps.get(p.name, latest_step if p.name == LATEST else "")
        out.append({"name": p.name, "step": step, "size": p.stat().st_size})
    return out


def environment() -> List[Tuple[str, Any]]:
    import numpy
    return [("python", platform.python_version()), ("torch", torch.__version__),
            ("ganforge", __version__), ("numpy", numpy.__version__),
            ("platform", platform.platform()),
            ("cuda", torch.version.cuda or "none"),
            ("machine", f"{platform.machine()}, {torch.get_num_threads()} threads")]


def _progression(grids: List[Path], n: int = 5, width: int = 192) -> List[Tuple[str, bytes]]:
    """Up to ``n`` of the run's sample grids, evenly spaced from the first to the last, each
    scaled to ``width`` px: (caption "step N", PNG bytes), so a reader sees the training's
    progression at a glance (a still view of the GIF shows its first, noisy frame)."""
    if not grids:
        return []
    k = min(n, len(grids))
    picked = sorted({round(i * (len(grids) - 1) / max(1, k - 1)) for i in range(k)})
    out = []
    for i in picked:
        try:
            with Image.open(grids[i]) as im:
                img = im.convert("RGB")
        except (OSError, ValueError):
            continue
        if img.width > width:
            img = img.resize((width, max(1, round(img.height * width / img.width))), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append((f"step {runfolder.grid_step(grids[i])}", buf.getvalue()))
    return out


def _runtime(st: Dict[str, Any], train: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """Device and precision the run trained with: the checkpoint's record of what it ran on,
    else (an older checkpoint, or none yet) the settings, said to be settings."""
    rt = st.get("runtime") if isinstance(st.get("runtime"), dict) else None
    if rt:
        procs = rt.get("processes", 1)
        return [("device", f"{rt.get('device', '?')}" + (f" x {procs} processes" if procs and procs > 1 else "")),
                ("precision", rt.get("precision", "?"))]
    amp = train.get("amp", "?")
    return [("device", f"{train.get('device', '?')} (as configured; not recorded by this checkpoint)"),
            ("precision", f"train.amp={amp} (as configured)")]


def build_report(run: str | Path) -> str:
    """The report page of run folder ``run`` as HTML text. A run with no checkpoint yet (killed
    before its first one) gets a page of what it has: config, curves, grids. Raises
    :class:`UserError` for a folder that holds no run."""
    run = Path(run).expanduser()
    if is_export(run):
        raise UserError(f"'{run}' is an export folder (its README.md is the model card); the "
                        f"report needs the run folder it was exported from")
    if not run.is_dir():
        raise UserError(f"'{run}' is not a run folder (give the folder `ganforge train --out` wrote)")
    notes: List[str] = []
    st: Dict[str, Any] = {}
    model: Optional[Generator] = None
    if runfolder.started_without_checkpoint(run):
        notes.append(runfolder.no_checkpoint_yet(run))
    else:
        try:
            path = find_checkpoint(run, "latest")
            st = load_checkpoint(path, map_location="cpu")
            model = face_from_checkpoint(st, path)
        except GanforgeError as e:
            raise UserError(_one_line(e)) from None
    info = model.info if model is not None else None
    cfg: Dict[str, Any] = runfolder.read_config(run) or (info.config if info else None) or {}
    rows = runfolder.read_rows(run)

    curves = _read(run / runfolder.CURVES)
    if curves is None:
        with tempfile.TemporaryDirectory() as tmp:
            if plot_curves(rows, Path(tmp) / runfolder.CURVES):
                curves = _read(Path(tmp) / runfolder.CURVES)
    if curves is None:
        notes.append("training curves: nothing logged yet")
    grids = runfolder.sample_grids(run)
    samples = _read(grids[-1]) if grids else None
    gif = _read(run / runfolder.GIF)

    train = cfg.get("train", {}) if isinstance(cfg.get("train"), dict) else {}
    model_cfg = cfg.get("model", {}) if isinstance(cfg.get("model"), dict) else {}
    data_cfg = cfg.get("data", {}) if isinstance(cfg.get("data"), dict) else {}
    total = train.get("steps") or ""
    if info is not None:
        step = info.step
        summary = [("task", info.task), ("model", info.model or model_cfg.get("name", "?")),
                   # what the run trained on, as the trainer named it (CycleGAN: "A <-> B")
                   ("data", f"{(st.get('data') or {}).get('name') or info.data} "
                            f"({info.img_size} px, {info.channels} ch)")]
    else:
        step = runfolder.last_logged_step(run) or 0
        summary = [("task", train.get("task", "?")), ("model", model_cfg.get("name", "?")),
                   ("data", f"{data_cfg.get('name', '?')} ({data_cfg.get('img_size', '?')} px)")]
    summary += [("steps", f"{step}" + (f" of {total}" if total and total != step else "")
                 + ("" if info is not None else " (logged; no checkpoint yet)")),
                ("training time", _duration(st.get("elapsed")) if st else "?"),
                *_runtime(st, train)]
    if info is not None:
        summary.append(("generators", ", ".join(f"{k} ({v})" if k != v else k
                                                for k, v in info.modules.items())))
    summary.append(("seed", cfg.get("seed", train.get("seed", "?"))))
    last = next((r for r in reversed(rows) if "loss_D" in r or "loss_G" in r), None)
    if last:
        summary += [(k, last[k]) for k in ("loss_D", "loss_G", "D(x)", "D(G(z))") if k in last]
    if info is not None and info.metrics:
        summary += [(k, v) for k, v in info.metrics.items() if isinstance(v, (int, float))][:4]

    return render_report(
        title=f"ganforge run: {run.resolve().name}", summary=summary, config=cfg, rows=rows,
        curves_png=curves, samples_png=samples,
        samples_caption=f"step {runfolder.grid_step(grids[-1])}" if grids else "",
        progression=_progression(grids) if len(grids) > 1 else [],
        gif=gif, classes=_classes(model, rows, notes) if model is not None else None,
        translations=_translations(model, notes) if model is not None else None,
        checkpoints=_checkpoints(run, step) if model is not None else [],
        environment=environment(), notes=notes,
        generated=f"written by ganforge {__version__} on "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')} from {run.resolve()}")


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of ``run`` to ``out`` (default ``RUN/report.html``); returns the path."""
    text = build_report(run)
    out = Path(out).expanduser() if out else Path(run).expanduser() / runfolder.REPORT
    if out.is_dir():
        raise UserError(f"--out '{out}' is a folder: give a file name such as {out / 'report.html'}")
    if not out.parent.is_dir():
        raise UserError(f"--out '{out}': the folder '{out.parent}' does not exist")
    try:
        atomic_write_text(out, text)
    except OSError as e:
        raise UserError(f"cannot write '{out}': {_one_line(e)}") from None
    return out


def run(args: argparse.Namespace) -> int:
    out = write_report(args.run, args.out)
    print(f"[ganforge] report written to {out}", file=sys.stderr)
    return 0


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR", help="a run folder")
    p.add_argument("--out", default=None, help="the HTML file (default: RUN_DIR/report.html)")


COMMAND = Command(
    "report", "write one self-contained HTML page about a run", arguments, run,
    description="One HTML file (images and CSS inline, no network) with the run's summary, "
                "curves, samples, classes or translations, checkpoints, config and environment.")
