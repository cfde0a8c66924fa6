"""``ganforge sample``: write images from a trained run (a grid image or a ``.npy`` array).

The run's face decides how its generators are fed and checks the request
(:meth:`ganforge.use.face.Generator.sample`); this module only turns what it returns into files.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional

import numpy as np

from ganforge.core.argtypes import at_least, positive, seed
from ganforge.core.command import Command
from ganforge.core.files import check_output_file
from ganforge.render.class_grid import save_class_grid
from ganforge.render.images import save_grid
from ganforge.use.load import load

SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")


def labels_path(out: str | Path) -> Path:
    """``NAME.npy`` -> ``NAME.labels.npy``: the class of each image in the array."""
    out = Path(out)
    return out.with_name(out.stem + ".labels.npy")


def sample_to_file(run: str | Path, n: int = 64, out: str | Path = "samples.png", seed: int = 0,
                   which: str = "latest", device: str = "cpu", class_: Optional[str] = None,
                   ema: bool = True, truncation: Optional[float] = None) -> Path:
    """Write ``n`` samples of ``run`` as a grid image (.png/.jpg) or a float32 (n, C, H, W)
    ``.npy`` array in [-1, 1]. ``class_`` (runs with classes only): a class name (any case;
    '-', '_', ' ', '/' alike) or index -> ``n`` images of that class; ``all`` -> one labelled
    row per class, ceil(n / K) images each; None -> classes drawn as G's training labels
    were. ``truncation``: psi > 0 for the truncation trick (:mod:`ganforge.models.latent`), None: none. A ``.npy`` of a run with classes gets ``NAME.labels.npy`` next to it.
    Raises :class:`UserError` for n < 1, another suffix, or a request the run cannot serve."""
    out = check_output_file(out, SUFFIXES, "a .png/.jpg file for a grid or .npy for an array",
                            "samples.png")
    suffix = out.suffix.lower()
    model = load(run, which, ema=ema, device=device)
    if model.inputs != "noise":
        model.sample(n, seed=seed)        # raises the run's own one-line error
    names = model.class_names
    cols = None
    labels = None
    if names and class_ is not None and str(class_).strip().lower() == "all":
        cols = math.ceil(n / len(names))            # a whole row per class
        labels = model.labels_for(cols * len(names), seed, "all")
    elif names:
        labels = model.labels_for(n, seed, class_)
    x = model.sample(len(labels) if labels is not None else n, seed=seed,
                     classes=labels if labels is not None else class_, truncation=truncation)
    out.parent.mkdir(parents=True, exist_ok=True)
    scale = 2 if x.shape[-1] <= 32 else 1
    if suffix == ".npy":
        np.save(out, x.numpy().astype(np.float32))
        if labels is not None:
            np.save(labels_path(out), labels.numpy().astype(np.int64))
    elif cols is not None:
        save_class_grid(x, cols, names, out, scale=scale)
    else:
        save_grid(x, out, scale=scale)
    return out


# --------------------------------------------------------------------------- CLI
def run(args: argparse.Namespace) -> int:
    path = sample_to_file(args.run, n=args.n, out=args.out, seed=args.seed, which=args.checkpoint,
                          device=args.device, class_=args.class_, ema=not args.no_ema,
                          truncation=args.truncation)
    all_rows = args.class_ is not None and str(args.class_).strip().lower() == "all"
    print(f"wrote {path}" + (" (--class all: ceil(--n / classes) images of every class, --n "
                              "rounded up to whole rows)" if all_rows else ""))
    return 0


def arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", metavar="RUN_DIR_OR_CKPT")
    s.add_argument("--n", type=at_least(1, most=50000, why="for larger sets, score with `ganforge eval --n`"), default=64, help="number of images (default 64)")
    s.add_argument("--out", default="samples.png", help="grid .png/.jpg, or .npy (float32 NxCxHxW in [-1,1])")
    s.add_argument("--seed", type=seed(), default=0)
    s.add_argument("--checkpoint", default="latest", help="latest (default) or best")
    s.add_argument("--device", default="cpu")
    s.add_argument("--class", dest="class_", metavar="CLASS",
                   help="conditional runs: a class name (sneaker, t-shirt-top; any case) or "
                        "index, or 'all' for one labelled row per class (ceil(n/K) images each)")
    s.add_argument("--no-ema", action="store_true",
                   help="use the raw generator, not its weight average (runs with ema.half_life)")
    s.add_argument("--truncation", type=positive(float), metavar="PSI",
                   help="truncation trick: resample noise components until |z| <= PSI (less "
                        "variety, cleaner images)")


COMMAND = Command("sample", "generate images from a trained run", arguments, run)
