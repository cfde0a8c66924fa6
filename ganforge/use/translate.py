"""``ganforge translate``: apply a trained image-to-image run (CycleGAN) to images.

::

    ganforge translate RUN --direction a2b INPUT --out DIR [--grid]

``INPUT`` is an image file, a folder of images (searched recursively), a dataset domain such
as ``fashion-mnist:test:sneaker`` (see :mod:`ganforge.data.domains`; without a split, e.g.
``fashion-mnist:sneaker``, the test split is meant), or ``run:test`` / ``run:train`` for the
run's own source domain (domain A for ``a2b``, B for ``b2a``).

Each translated image is written under ``DIR`` with the input's own name (its path relative
to an input folder, extension kept); dataset items are named by their position in the
selected domain, ``00000.png``, ``00001.png``, ... Outputs have the run's image size and
channel count (inputs are converted: shorter side resized, centre-cropped, gray <-> RGB).
``--grid`` also writes ``DIR/grid.png``: for every 8 inputs, a row of inputs, a row of their
translations and a row of the reconstructions (translated back).

The generators are rebuilt from the checkpoint alone: their specs (family + constructor
arguments) are stored next to the weights (DESIGN lesson 5). The run's face translates and
checks the request (:meth:`ganforge.use.face.Generator.round_trip`); this module reads the
inputs and writes the files.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from PIL import Image

from ganforge.core.argtypes import at_least
from ganforge.core.command import Command
from ganforge.core.files import probe_writable
from ganforge.data import to_float, to_uint8
from ganforge.data.base import DataError
from ganforge.data.domains import load_domain
from ganforge.data.folder import scan
from ganforge.render.images import grid_to_uint8, triplet_grid
from ganforge.use.face import Generator
from ganforge.use.inputs import decode_files
from ganforge.use.load import load

GRID_NAME = "grid.png"
RUN_INPUTS = ("run:test", "run:train")


# --------------------------------------------------------------------------- the inputs
def load_inputs(spec: str, model: Generator, direction: str, *, limit: int = 0,
                data_dir: Optional[str] = None) -> Tuple[torch.Tensor, List[str], Optional[Path]]:
    """``(images float [-1, 1], output names, input root or None)`` for ``INPUT``, at the
    run's image size and channel count."""
    size, ch = model.info.img_size, model.info.channels
    if spec in RUN_INPUTS:
        images, _ = model.source_images(direction, spec.split(":")[1], limit=limit, data_dir=data_dir)
        return to_float(images), _index_names(images.shape[0]), None
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix.lower() not in (".npy", ".npz"):
        return decode_files([p], size, ch), [p.name], p.parent
    if p.is_dir():
        files, _ = scan(p)
        if not files:
            raise DataError(f"{p}: no images found to translate")
        if limit:
            files = files[:limit]
        names = [f.relative_to(p).as_posix() for f in files]
        return decode_files(files, size, ch), names, p
    ds = load_domain(spec, "test", img_size=size, channels=ch, limit=limit, data_dir=data_dir)
    return to_float(ds.images), _index_names(len(ds)), None


def _index_names(n: int) -> List[str]:
    return [f"{i:05d}.png" for i in range(n)]


# --------------------------------------------------------------------------- writing
def _to_pil(img: torch.Tensor):
    a = to_uint8(img).permute(1, 2, 0).numpy()
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def write_images(images: torch.Tensor, names: List[str], out: Path) -> List[Path]:
    paths = []
    for img, name in zip(images, names):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _to_pil(img).save(path)
        paths.append(path)
    return paths


def write_grid(inputs: torch.Tensor, translated: torch.Tensor,
               reconstructed: Optional[torch.Tensor], path: Path, max_images: int = 64) -> Path:
    """Rows of input | translated | reconstructed (None, a run with no way back: two rows)."""
    n = min(max_images, inputs.shape[0])
    grid = triplet_grid(inputs[:n], translated[:n],
                        reconstructed[:n] if reconstructed is not None else None)
    img = Image.fromarray(grid_to_uint8(grid))
    if inputs.shape[-1] <= 32:
        img = img.resize((img.width * 2, img.height * 2), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def translate_to_dir(run: str | Path, input_spec: str, out: str | Path, *, direction: str = "a2b",
                     grid: bool = False, grid_max: int = 64, limit: int = 0, which: str = "latest",
                     device: str = "cpu", batch_size: int = 64,
                     data_dir: Optional[str] = None, ema: bool = True) -> Dict[str, object]:
    """Translate ``input_spec`` with the run's generators and write the results to ``out``.
    Returns ``{"n": count, "out": dir, "grid": path or None}``."""
    model = load(run, which, ema=ema, device=device)
    model.check_direction(direction)         # a noise run, or no such direction: refused now
    why = probe_writable(Path(out).expanduser())     # before any image is read or translated
    if why is not None:
        raise DataError(f"--out {out}: cannot write there ({why}); choose a folder you can write to")
    x, names, root = load_inputs(input_spec, model, direction, limit=limit, data_dir=data_dir)
    out = Path(out).expanduser()
    if root is not None and out.resolve() == root.resolve():
        raise DataError(f"--out {out} is the input folder: the translations would overwrite the "
                        f"originals; choose another folder")
    if grid and GRID_NAME in names:
        raise DataError(f"an input is named {GRID_NAME}, which --grid writes too; translate into "
                        f"a folder without --grid, or rename the input")
    y, rec = model.round_trip(x, direction, batch_size=batch_size, reconstruct=grid)
    out.mkdir(parents=True, exist_ok=True)
    write_images(y, names, out)
    grid_path = write_grid(x, y, rec, out / GRID_NAME, grid_max) if grid else None
    return {"n": len(names), "out": str(out), "grid": str(grid_path) if grid_path else None}


# --------------------------------------------------------------------------- CLI
def run(args: argparse.Namespace) -> int:
    res = translate_to_dir(args.run, args.input, args.out, direction=args.direction,
                           grid=args.grid, grid_max=args.grid_max, limit=args.limit,
                           which=args.checkpoint, device=args.device, batch_size=args.batch_size,
                           data_dir=args.data_dir, ema=not args.no_ema)
    print(f"translated {res['n']} image(s) ({args.direction}) into {res['out']}"
          + (f"; grid: {res['grid']}" if res["grid"] else ""))
    return 0


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR_OR_CKPT")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--direction", default="a2b",
                   help="a2b (default): domain A -> B; b2a: B -> A")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the translated images")
    p.add_argument("--grid", action="store_true",
                   help=f"also write DIR/{GRID_NAME}: rows of input | translated | reconstructed")
    p.add_argument("--grid-max", type=at_least(1, most=4096), default=64, metavar="N",
                   help="images shown in the grid (default 64)")
    p.add_argument("--limit", type=at_least(0, "all", most=10**9), default=0, metavar="N", help="translate at most N images")
    p.add_argument("--checkpoint", default="latest", help="latest (default) or best")
    p.add_argument("--no-ema", action="store_true",
                   help="use the raw generators, not their weight averages (runs with ema.half_life)")
    p.add_argument("--batch-size", type=at_least(1, most=4096), default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", help="where named datasets are stored")


COMMAND = Command(
    "translate", "translate images with a trained cyclegan run", arguments, run,
    description="Translate images A->B (a2b) or B->A (b2a) with a trained cyclegan run. INPUT: an "
                "image file, a folder, a dataset domain such as fashion-mnist:test:sneaker, or "
                "run:test / run:train (the run's own source domain). Outputs keep the input names "
                "(dataset items: 00000.png, ...).")
