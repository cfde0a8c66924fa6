"""The Python API: ``ganforge.load(RUN)`` -> a :class:`Generator`, and the use-time commands
built on it, ``ganforge interpolate`` and ``ganforge progress`` (files in, files out).

:class:`Generator` is a thin, documented face over the run's :class:`ganforge.training.tasks.TrainedModel`
(what :func:`ganforge.use.load.load_run` returns): it names no task and no module, it asks the
model (``inputs``, ``class_names``, ``noise``/``decode``). Images are float32 NCHW tensors in
[-1, 1] on CPU. Every request that does not apply to the run, and every bad argument, raises
a :class:`ganforge.core.errors.UserError` (one line, naming what to do instead).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ganforge.core.argtypes import at_least, positive
from ganforge.core.checkpoint import numbered_checkpoints
from ganforge.data import to_float
from ganforge.data.decode import decode_file, fit_square
from ganforge.data.transforms import convert_channels
from ganforge.core.errors import UserError
from ganforge.core.files import atomic_write, check_output_file
from ganforge.models.latent import MODES, check_truncation, interpolate_noise, loop_positions
from ganforge.metrics import METRICS
from ganforge.render.images import grid_to_uint8, make_grid
from ganforge.use.load import load_run
from ganforge.training.tasks import TrainedModel

ImageInput = Union[torch.Tensor, Image.Image, str, Path, Sequence[Union[Image.Image, str, Path]]]
#: names of the scores an evaluation row of metrics.jsonl may hold
_SCORE_KEYS = {k for keys in METRICS.values() for k in keys}


@dataclass(frozen=True)
class GeneratorInfo:
    """What a loaded run is: ``task`` (gan, conditional, cyclegan, ...), ``model`` (the
    generator family, ``model.name``), ``img_size`` (px, square), ``channels`` (1 or 3),
    ``classes`` (class names, or None without classes), ``step`` (generator steps trained),
    ``inputs`` (``"noise"``: use :meth:`Generator.sample`; ``"image"``: :meth:`Generator.translate`),
    ``metrics`` (the last evaluation row of the run's metrics.jsonl, e.g. ``{"fid": 31.2, "step":
    4000}``; empty when none was logged), ``source`` (the checkpoint file), ``modules`` (which
    weights are used for each generator, e.g. ``{"G": "G_ema"}``)."""
    task: str
    model: str
    img_size: int
    channels: int
    classes: Optional[List[str]]
    step: int
    inputs: str
    metrics: Dict[str, float] = field(default_factory=dict)
    source: str = ""
    modules: Dict[str, str] = field(default_factory=dict)


def last_eval_row(ckpt: str | Path) -> Dict[str, float]:
    """The last row of ``metrics.jsonl`` (next to the checkpoint, or in the run folder above
    its ``checkpoints/``) that holds a score (fid, kid_mean, precision, ...); {} when none."""
    if not ckpt:
        return {}
    ckpt = Path(ckpt)
    for log in (ckpt.parent / "metrics.jsonl", ckpt.parent.parent / "metrics.jsonl"):
        if not log.is_file():
            continue
        found: Dict[str, float] = {}
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            return {}
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and _SCORE_KEYS & set(row):
                found = {k: v for k, v in row.items() if isinstance(v, (int, float))}
        return found
    return {}


class Generator:
    """A trained run, ready to generate. Build it with :func:`load` (or ``ganforge.load``).

    >>> g = ganforge.load("runs/dcgan-fashion-mnist")      # doctest: +SKIP
    >>> x = g.sample(16, seed=1)                            # (16, 1, 28, 28) in [-1, 1]
    """

    def __init__(self, model: TrainedModel):
        self.model = model
        i = model.info
        cfg_model = (i.config or {}).get("model", {}) or {}
        self.info = GeneratorInfo(task=i.task, model=str(cfg_model.get("name", "")),
                                  img_size=i.img_size, channels=i.channels,
                                  classes=list(model.class_names) if model.class_names else None,
                                  step=i.step, inputs=model.inputs,
                                  metrics=dict(i.metrics) or last_eval_row(i.source),
                                  source=i.source, modules=dict(i.modules))

    def __repr__(self) -> str:
        i = self.info
        cls = f", {len(i.classes)} classes" if i.classes else ""
        return (f"Generator({i.task}/{i.model}, {i.channels}x{i.img_size}x{i.img_size}{cls}, "
                f"step {i.step}, {self.device})")

    # ------------------------------------------------------------------ common
    @property
    def device(self) -> torch.device:
        """Where the generators live."""
        return self.model.device

    def to(self, device: str | torch.device) -> "Generator":
        """Move the generators to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``);
        returns self. Outputs stay CPU tensors."""
        self.model.to(device)
        return self

    def _need(self, inputs: str, what: str) -> None:
        if self.model.inputs != inputs:
            raise self.model._wrong(what)

    # ------------------------------------------------------------------ noise runs
    def sample(self, n: int, seed: int = 0, classes: Any = None,
               truncation: Optional[float] = None) -> torch.Tensor:
        """``n`` images: float32 (n, C, H, W) in [-1, 1] on CPU, from noise drawn with ``seed``
        (the same seed gives the same images, on any device, as ``ganforge sample --seed``).

        ``classes`` (runs with classes): one class for all n (an index or a name such as
        ``"sneaker"``, in any case, ``-``/``_``/space alike) or a sequence of n; None draws
        them as the run's training labels were. The same seed and class give the same images
        however the class is named. ``truncation``: psi > 0 for the truncation trick (noise
        components resampled until ``|z| <= psi``: less variety, cleaner images), None: none.

        Raises :class:`UserError` for n < 1, classes on a run without classes, an unknown class,
        a bad truncation, or an image-to-image run (use :meth:`translate`)."""
        self._need("noise", "sample")
        if int(n) < 1:
            raise UserError(f"n={n}: ask for at least one image")
        if classes is not None and not self.info.classes:
            raise UserError(f"classes={classes!r}: '{self.info.source}' has no classes (a "
                            f"{self.info.task} run); train one with --task conditional")
        psi = check_truncation(truncation)
        kw = {} if psi is None else {"truncation": psi}
        return self.model.sample(int(n), seed=int(seed), classes=classes, **kw)

    def interpolate(self, seeds: Sequence[int], frames: int = 60, mode: str = "slerp",
                    classes: Any = None, truncation: Optional[float] = None) -> torch.Tensor:
        """A walk through noise: float32 (F, C, H, W) in [-1, 1], ``F >= frames`` (each of the
        k segments gets ceil(frames / k) frames, so F = frames when k divides it).

        With several ``seeds``: a closed loop through their noise vectors (``seeds[0]`` ->
        ``seeds[1]`` -> ... -> ``seeds[0]``), ``mode`` ``"slerp"`` (spherical, the default: the
        noise norm stays between the endpoints') or ``"lerp"``; frame 0 is exactly
        ``sample(1, seed=seeds[0], classes=..., truncation=...)``.
        Runs with classes: ``classes`` None (the class ``seeds[0]`` draws), one class (all
        frames), or several (with one seed): a walk through those classes at fixed noise, each
        class held for ceil(frames / k) frames (labels are discrete, so classes change in
        steps). ``truncation`` as in :meth:`sample`.

        Raises :class:`UserError` for no seeds, frames < 1, another mode, several seeds *and*
        several classes, classes on a run without classes, or an image-to-image run."""
        self._need("noise", "interpolate")
        seeds = [int(s) for s in (seeds if isinstance(seeds, Sequence) else [seeds])]
        if not seeds:
            raise UserError("seeds: give at least one seed")
        if int(frames) < 1:
            raise UserError(f"frames={frames}: ask for at least 1 frame")
        if mode not in MODES:
            raise UserError(f"mode={mode!r}: use one of {', '.join(MODES)}")
        psi = check_truncation(truncation)
        m = self.model
        names = self.info.classes
        walk: Optional[List[Any]] = None
        if classes is not None:
            if not names:
                raise UserError(f"classes={classes!r}: '{self.info.source}' has no classes (a "
                                f"{self.info.task} run); walk through seeds instead")
            if isinstance(classes, torch.Tensor):
                classes = classes.tolist()
            if isinstance(classes, Sequence) and not isinstance(classes, str):
                walk = list(classes)
                if not walk:
                    raise UserError("classes: give at least one class")
                if len(walk) == 1:
                    classes, walk = walk[0], None
                elif len(seeds) > 1:
                    raise UserError(f"seeds={seeds} and classes={walk}: walk through several seeds "
                                    f"or several classes, not both (one seed for a class walk)")
        zs = torch.cat([m.noise(1, seed=s, truncation=psi) for s in seeds])
        if walk is not None:
            labels = m.labels_for(len(walk), 0, walk)
            pos = loop_positions(len(walk), int(frames))
            z = zs[:1].repeat(len(pos), 1)
            y = torch.stack([labels[s] for s, _ in pos])
            return m.decode(z, y)
        z = interpolate_noise(zs, int(frames), mode)
        y = m.labels_for(z.shape[0], seeds[0], classes)[:1].repeat(z.shape[0]) if names else None
        return m.decode(z, y)

    # ------------------------------------------------------------------ image runs
    def translate(self, images: ImageInput, direction: str = "a2b") -> torch.Tensor:
        """Translated images: float32 (N, C, H, W) in [-1, 1] on CPU, N = the inputs' count.

        ``images``: a float tensor in [-1, 1] (N, C, H, W) or (C, H, W) at the run's size and
        channel count (a uint8 tensor is read as 0..255), a PIL image, a path, or a list of
        PIL images / paths (any mode and size: resized, centre-cropped and converted to the
        run's channels as training data was). ``direction``: ``"a2b"`` or ``"b2a"``.

        Raises :class:`UserError` for a noise run (use :meth:`sample`), a wrong tensor shape,
        an unreadable file (naming it) or another direction."""
        self._need("image", "translate")
        x = self._to_tensor(images)
        out, _ = self.model.translate(x, direction)
        return out

    def _to_tensor(self, images: ImageInput) -> torch.Tensor:
        size, ch = self.info.img_size, self.info.channels
        if isinstance(images, torch.Tensor):
            x = images.detach().cpu()
            if x.dim() == 3:
                x = x.unsqueeze(0)
            if x.dim() != 4 or tuple(x.shape[1:]) != (ch, size, size):
                raise UserError(f"images: a tensor of shape {tuple(images.shape)}; this run "
                                f"translates (N, {ch}, {size}, {size}) images in [-1, 1] (or "
                                f"pass PIL images or paths, which are resized)")
            if x.dtype == torch.uint8:
                return to_float(x)
            if not x.is_floating_point():
                raise UserError(f"images: a {x.dtype} tensor; use float in [-1, 1] or uint8")
            return x.float()
        items = [images] if isinstance(images, (Image.Image, str, Path)) else list(images)
        if not items:
            raise UserError("images: nothing to translate")
        parts = []
        for it in items:
            if isinstance(it, Image.Image):
                im = it.convert("L" if it.mode in ("1", "L", "I", "I;16", "F") else "RGB")
                a = np.asarray(fit_square(im, size))
                a = a[..., None] if a.ndim == 2 else a
                where = "a PIL image"
            elif isinstance(it, (str, Path)):
                p = Path(it).expanduser()
                if not p.is_file():
                    raise UserError(f"images: '{p}' is not an image file")
                a, _ = decode_file(p, size)
                where = str(p)
            else:
                raise UserError(f"images: cannot translate a {type(it).__name__}; give a tensor, "
                                f"PIL images or paths")
            t = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).unsqueeze(0)
            parts.append(convert_channels(t, ch, where))
        return to_float(torch.cat(parts).contiguous())


def load(path: str | Path, checkpoint: str = "latest", ema: bool = True,
         device: str | torch.device = "cpu") -> Generator:
    """The trained generator(s) of a run folder, a checkpoint file or an export folder.

    ``checkpoint``: ``"latest"`` or ``"best"`` (falls back to latest) for a run folder;
    ``ema``: the generators' weight averages when the run kept them; ``device``: where they
    run. Raises :class:`UserError` (a :class:`ganforge.core.checkpoint.CheckpointError`) for a
    missing or unreadable checkpoint, and for a task this ganforge does not know."""
    if checkpoint not in ("latest", "best"):
        raise UserError(f"checkpoint={checkpoint!r}: use 'latest' or 'best'")
    return Generator(load_run(path, checkpoint, ema=ema, device=device))


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
    Raises :class:`UserError` when ``run`` is not a run folder with numbered checkpoints or is
    an image-to-image run."""
    out = check_animation_out(out)
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"'{run}' is not a run folder; progress needs the folder whose "
                        f"checkpoints/ holds step-*.pt files")
    kept = sorted(numbered_checkpoints(run))
    if not kept:
        raise UserError(f"'{run}': no numbered checkpoints (checkpoints/step-*.pt) to show; "
                        f"train with log.keep_last > 0")
    grids = []
    for _, path in kept:
        g = Generator(load_run(path, "latest", ema=ema, device=device))
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
    return out


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR_OR_CKPT")
    p.add_argument("--truncation", type=positive(float), metavar="PSI",
                   help="truncation trick: resample noise components until |z| <= PSI")
    p.add_argument("--fps", type=positive(float), help="frames per second")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ema", action="store_true",
                   help="use the raw generator, not its weight average (runs with ema.half_life)")


def cmd_interpolate(args: argparse.Namespace) -> int:
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


def cmd_progress(args: argparse.Namespace) -> int:
    path = progress_to_file(args.run, args.out, n=args.n, seed=args.seed,
                            truncation=args.truncation, fps=args.fps or 4,
                            ema=not args.no_ema, device=args.device)
    print(f"wrote {path}")
    return 0


def add_interpolate_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``interpolate`` to the top-level CLI's subparsers."""
    p = subparsers.add_parser(
        "interpolate", help="animate a walk through noise (or classes) of a trained run",
        description="Write a looping animation through the noise of the given seeds (spherical "
                    "interpolation by default), or, with --classes a,b,c and one seed, through "
                    "classes at fixed noise. .gif always; .mp4 with ffmpeg/imageio-ffmpeg.")
    _add_common(p)
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], metavar="S1,S2,...",
                   help="seeds whose noise the loop visits (default 0,1,2)")
    p.add_argument("--frames", type=at_least(1), default=60, help="frames at least (default 60)")
    p.add_argument("--out", default="walk.gif", help="walk.gif (default) or .mp4")
    p.add_argument("--mode", default="slerp", choices=list(MODES),
                   help="slerp (default, spherical) or lerp (straight line)")
    p.add_argument("--classes", metavar="A,B,...",
                   help="runs with classes: one class for every frame, or several (one seed) "
                        "to walk through them")
    p.add_argument("--checkpoint", default="latest", help="latest (default) or best")
    p.set_defaults(func=cmd_interpolate)
    return p


def add_progress_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``progress`` to the top-level CLI's subparsers."""
    p = subparsers.add_parser(
        "progress", help="animate the same noise through every kept checkpoint of a run",
        description="One grid per numbered checkpoint (RUN/checkpoints/step-*.pt, oldest "
                    "first), all from the same noise: how the generator learned.")
    _add_common(p)
    p.add_argument("--out", default="progress.gif", help="progress.gif (default) or .mp4")
    p.add_argument("--n", type=at_least(1), default=16, help="images per grid (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_progress)
    return p
