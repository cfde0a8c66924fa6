"""Animations of a trained run: ``ganforge interpolate`` (a walk through noise or classes) and
``ganforge progress`` (the same noise through every kept checkpoint), and
:func:`write_animation`, which writes frames as a looping GIF or an MP4. Both commands go
through the run's face (:meth:`ganforge.use.face.Generator.interpolate`,
:meth:`~ganforge.use.face.Generator.sample`).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any, List, Optional, Sequence

import torch
from PIL import Image

from ganforge.core.argtypes import MAX_SEED, at_least, positive, seed
from ganforge.core.checkpoint import numbered_checkpoints
from ganforge.core.command import Command
from ganforge.core.errors import UserError
from ganforge.core.files import atomic_write, check_output_file
from ganforge.models.latent import MODES
from ganforge.render.images import grid_to_uint8, make_grid
from ganforge.use.export import is_export
from ganforge.use.load import load

# --------------------------------------------------------------------------- animations
ANIMATION_SUFFIXES = (".gif", ".mp4")


def ffmpeg_exe() -> Optional[str]:
    """An ffmpeg executable: imageio-ffmpeg's bundled one, else ``ffmpeg`` on PATH, else None."""
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        try:
            import imageio_ffmpeg  # type: ignore[import-not-found]
            return str(imageio_ffmpeg.get_ffmpeg_exe())
        except Exception:  # noqa: BLE001 - a broken install: try PATH
            pass
    return shutil.which("ffmpeg")


def check_animation_out(out: str | Path) -> Path:
    """``out`` as a Path after checking its suffix, folder and (for .mp4) an encoder.
    Raises :class:`UserError` naming what to do."""
    out = check_output_file(out, ANIMATION_SUFFIXES, "a .gif file (or .mp4 with ffmpeg installed)",
                            "walk.gif")
    if out.suffix.lower() == ".mp4" and ffmpeg_exe() is None:
        raise UserError(f"--out {out}: writing .mp4 needs an ffmpeg encoder, and none was found; "
                        f"`pip install imageio-ffmpeg` (or install ffmpeg, e.g. `apt install "
                        f"ffmpeg`), or write a .gif")
    return out


def _frame_images(frames: Sequence[torch.Tensor], min_side: int = 128) -> List[Image.Image]:
    imgs = []
    for f in frames:
        a = grid_to_uint8(f)
        im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).convert("RGB")
        scale = max(1, math.ceil(min_side / max(im.size)))
        if scale > 1:
            im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
        imgs.append(im)
    return imgs


def write_animation(frames: Sequence[torch.Tensor], out: str | Path, fps: float = 12) -> Path:
    """Write ``frames`` ((C, H, W) tensors in [-1, 1], one per frame) as an animated ``.gif``
    (Pillow, looping) or ``.mp4`` (H.264 through ffmpeg). Small frames are scaled up (nearest)
    to at least 128 px. Raises :class:`UserError` for another suffix or .mp4 without ffmpeg."""
    out = check_animation_out(out)
    imgs = _frame_images(frames)
    if not imgs:
        raise UserError("no frames to write")
    ms = max(20, int(round(1000 / float(fps))))
    if out.suffix.lower() == ".gif":
        atomic_write(out, lambda f: imgs[0].save(f, format="GIF", save_all=True,
                                                 append_images=imgs[1:], duration=ms, loop=0))
        return out
    w, h = imgs[0].size
    cmd = [ffmpeg_exe() or "ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
           "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", "-vcodec", "libx264",
           str(out)]
    data = b"".join(im.tobytes() for im in imgs)
    r = subprocess.run(cmd, input=data, capture_output=True)
    if r.returncode != 0:
        msg = (r.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise UserError(f"--out {out}: ffmpeg failed ({msg}); write a .gif instead")
    return out


def interpolate_to_file(run: str | Path, seeds: Sequence[int], out: str | Path = "walk.gif", *,
                        frames: int = 60, fps: float = 12, mode: str = "slerp",
                        classes: Any = None, truncation: Optional[float] = None,
                        which: str = "latest", ema: bool = True, device: str = "cpu") -> Path:
    """``ganforge interpolate``: :meth:`Generator.interpolate` of ``run`` written as an
    animation (see :func:`write_animation`). Returns the file written."""
    out = check_animation_out(out)
    g = load(run, which, ema=ema, device=device)
    x = g.interpolate(seeds, frames, mode=mode, classes=classes, truncation=truncation)
    return write_animation(list(x), out, fps)


def progress_to_file(run: str | Path, out: str | Path = "progress.gif", *, n: int = 16,
                     seed: int = 0, truncation: Optional[float] = None, fps: float = 4,
                     ema: bool = True, device: str = "cpu") -> Path:
    """``ganforge progress``: the same ``n`` noise vectors (``seed``) through every kept
    numbered checkpoint of the run folder ``run`` (``checkpoints/step-*.pt``, oldest first),
    one grid per checkpoint, as an animation. Runs with classes show the classes in turn.
    Raises :class:`UserError` when ``run`` is not a run folder with numbered checkpoints (an
    export folder, say) or is an image-to-image run."""
    out = check_animation_out(out)
    run = Path(run)
    if is_export(run):
        raise UserError(f"'{run}' is an export folder, which holds one generator; progress needs "
                        f"the run folder it was exported from (its checkpoints/step-*.pt)")
    if not run.is_dir():
        raise UserError(f"'{run}' is not a run folder; progress needs the folder whose "
                        f"checkpoints/ holds step-*.pt files")
    load(run, ema=ema, device=device).require("noise", "progress")   # a translating run: refused
    kept = sorted(numbered_checkpoints(run))
    if not kept:
        raise UserError(f"'{run}': no numbered checkpoints (checkpoints/step-*.pt) to show; "
                        f"train with log.keep_last > 0")
    grids = []
    for _, path in kept:
        g = load(path, "latest", ema=ema, device=device)
        classes = None
        if g.info.classes:
            classes = [i % len(g.info.classes) for i in range(n)]
        x = g.sample(n, seed=seed, classes=classes, truncation=truncation)
        grids.append(make_grid(x, nrow=math.ceil(math.sqrt(n))))
    return write_animation(grids, out, fps)


# --------------------------------------------------------------------------- CLI
def _int_list(text: str) -> List[int]:
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma list of whole numbers "
                                         f"(e.g. 1,7,42)") from None
    if not out:
        raise argparse.ArgumentTypeError("give at least one seed (e.g. 1,7,42)")
    bad = [s for s in out if not 0 <= s <= MAX_SEED]
    if bad:
        raise argparse.ArgumentTypeError(f"seed {bad[0]} is out of range: use 0 to {MAX_SEED:,}")
    if len(out) > 1000:
        raise argparse.ArgumentTypeError(f"{len(out)} seeds: give at most 1,000")
    return out


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR_OR_CKPT")
    p.add_argument("--truncation", type=positive(float), metavar="PSI",
                   help="truncation trick: resample noise components until |z| <= PSI")
    p.add_argument("--fps", type=positive(float, least=0.01, most=100, why="a GIF counts frame delays in hundredths of a second"), help="frames per second")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ema", action="store_true",
                   help="use the raw generator, not its weight average (runs with ema.half_life)")


def run_interpolate(args: argparse.Namespace) -> int:
    classes = None
    if args.classes:
        parts = [c.strip() for c in args.classes.split(",") if c.strip()]
        classes = parts[0] if len(parts) == 1 else parts
    path = interpolate_to_file(args.run, args.seeds, args.out, frames=args.frames,
                               fps=args.fps or 12, mode=args.mode, classes=classes,
                               truncation=args.truncation, which=args.checkpoint,
                               ema=not args.no_ema, device=args.device)
    print(f"wrote {path}")
    return 0


def run_progress(args: argparse.Namespace) -> int:
    path = progress_to_file(args.run, args.out, n=args.n, seed=args.seed,
                            truncation=args.truncation, fps=args.fps or 4,
                            ema=not args.no_ema, device=args.device)
    print(f"wrote {path}")
    return 0


def interpolate_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], metavar="S1,S2,...",
                   help="seeds whose noise the loop visits (default 0,1,2)")
    p.add_argument("--frames", type=at_least(1, most=10000, why="over 13 minutes at 12 fps"), default=60, help="frames at least (default 60)")
    p.add_argument("--out", default="walk.gif", help="walk.gif (default) or .mp4")
    p.add_argument("--mode", default="slerp", choices=list(MODES),
                   help="slerp (default, spherical) or lerp (straight line)")
    p.add_argument("--classes", metavar="A,B,...",
                   help="runs with classes: one class for every frame, or several (one seed) "
                        "to walk through them")
    p.add_argument("--checkpoint", default="latest", help="latest (default) or best")


def progress_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--out", default="progress.gif", help="progress.gif (default) or .mp4")
    p.add_argument("--n", type=at_least(1, most=1024), default=16, help="images per grid (default 16)")
    p.add_argument("--seed", type=seed(), default=0)


INTERPOLATE = Command(
    "interpolate", "animate a walk through noise (or classes) of a trained run",
    interpolate_arguments, run_interpolate,
    description="Write a looping animation through the noise of the given seeds (spherical "
                "interpolation by default), or, with --classes a,b,c and one seed, through "
                "classes at fixed noise. .gif always; .mp4 with ffmpeg/imageio-ffmpeg.")
PROGRESS = Command(
    "progress", "animate the same noise through every kept checkpoint of a run",
    progress_arguments, run_progress,
    description="One grid per numbered checkpoint (RUN/checkpoints/step-*.pt, oldest first), "
                "all from the same noise: how the generator learned.")
