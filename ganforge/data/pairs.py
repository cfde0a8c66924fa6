"""Paired images for translation with a known target (pix2pix): each condition image A has
its own target image B.

Where pairs come from:

- **Two folders paired by relative path** (``--data-a A --data-b B``): ``A/x/1.png`` pairs
  with ``B/x/1.jpg`` (the path without its extension decides). A file without a partner is
  named in one warning and left out. Each pair must be readable: skipping one side would
  shift every later pair, so an unreadable file is an error naming it. When both folders
  have ``train/`` and ``test/`` subfolders, those are the splits.
- **One folder of side-by-side images** (``pix2pix.aligned=FOLDER``, the pix2pix datasets'
  "aligned" layout: A on the left half, B on the right; ``pix2pix.direction=b2a`` swaps
  them); ``train/`` and ``test/`` subfolders are the splits.
- **A named paired set** (``--data NAME``), made offline from data ganforge already has,
  registered in :data:`PAIRED`: ``fashion-mnist-edges`` (edges -> item, operator below) and
  ``avatars-grey`` / ``wesnoth-grey`` (grey -> colour: colourisation). Their splits are the
  underlying dataset's.

The edge operator (``edges``): the Sobel gradient magnitude of the image's grey level in
[0, 1] (3x3 kernels [1 2 1]^T [-1 0 1], replicate padding), white (255) where it is at
least :data:`EDGE_THRESHOLD`, black elsewhere: outlines and strong texture, like the
HED-then-threshold edges of the pix2pix edges2shoes set but computable in milliseconds.
Grey is ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B).

A pair is stored as one uint8 image of ``Ca + Cb`` channels, the condition's first
(:class:`PairedData`), so a batch loader, random crops and flips treat both halves of a pair
alike for free; :meth:`PairedData.split` cuts a float batch back into (condition, target).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.core.registry import Registry
from ganforge.data.base import DataError, DataWarning, ImageDataset
from ganforge.data.decode import fit_square, open_image
from ganforge.data.folder import decode_folder, scan
from ganforge.data.resolve import load_dataset
from ganforge.data.spec import local_path, path_is_dir

#: named paired sets: ``fn(split, img_size=, data_dir=, limit=, download=) -> (A, B)``, two
#: uint8 (N, C, H, W) tensors of the same N, H, W
PAIRED = Registry("paired dataset")
#: Sobel magnitude (grey in [0, 1]) at which a pixel is an edge
EDGE_THRESHOLD = 0.5


@dataclass
class PairedData:
    """Pairs (condition A, target B): ``train`` and ``test`` (None: none) hold uint8 (N, Ca +
    Cb, H, W) images, the ``cond_channels`` = Ca condition channels first."""
    train: ImageDataset
    test: Optional[ImageDataset]
    cond_channels: int
    name: str

    @property
    def channels(self) -> int:
        """Channels of the target images (what G makes)."""
        return self.train.channels - self.cond_channels

    @property
    def img_size(self) -> int:
        return self.train.img_size

    def split(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(condition, target) of a batch of pairs (N, Ca + Cb, H, W), float or uint8."""
        return x[:, :self.cond_channels], x[:, self.cond_channels:]

    def fingerprint(self) -> str:
        return self.train.fingerprint()

    def __len__(self) -> int:
        return len(self.train)


def luma(x: torch.Tensor) -> torch.Tensor:
    """Grey level of uint8 (N, C, H, W) images as float (N, 1, H, W) in [0, 1] (BT.601)."""
    x = x.float() / 255
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x[:, :3] * w).sum(1, keepdim=True)


def edges(x: torch.Tensor, threshold: float = EDGE_THRESHOLD, batch: int = 4096) -> torch.Tensor:
    """uint8 (N, 1, H, W) edge maps (255 on edges) of uint8 (N, C, H, W) images: the Sobel
    magnitude of :func:`luma` >= ``threshold`` (see the module docstring)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    k = torch.cat([kx, kx.transpose(2, 3)])
    out = []
    for i in range(0, x.shape[0], batch):
        g = F.conv2d(F.pad(luma(x[i:i + batch]), (1, 1, 1, 1), mode="replicate"), k)
        out.append(((g.pow(2).sum(1, keepdim=True).sqrt() >= threshold) * 255).to(torch.uint8))
    return torch.cat(out) if out else torch.empty(0, 1, *x.shape[2:], dtype=torch.uint8)


def grey(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, H, W) grey versions of uint8 (N, C, H, W) images (:func:`luma`)."""
    return (luma(x) * 255).round().clamp(0, 255).to(torch.uint8)


def _derived(base: str, make: Callable[[torch.Tensor], torch.Tensor], channels: int = 0):
    def load(split: str, *, img_size: int = 0, data_dir: Optional[str] = None, limit: int = 0,
             download: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        ds = load_dataset(base, split, img_size=img_size, channels=channels, data_dir=data_dir,
                          limit=limit, download=download)
        b = ds.images
        return make(b), b
    return load


PAIRED.register("fashion-mnist-edges", help="Fashion-MNIST items from their edge maps (Sobel "
                "magnitude >= 0.5, ganforge/data/pairs.py): 60k train / 10k test pairs, 28 px")(
    _derived("fashion-mnist", edges))
PAIRED.register("avatars-grey", help="colourisation: the DiceBear avatars from their grey "
                "(BT.601) versions; 64 px (needs ganforge[avatars])")(
    _derived("avatars", grey, channels=3))
PAIRED.register("wesnoth-grey", help="colourisation: the Wesnoth unit sprites from their grey "
                "(BT.601) versions; 64 px")(_derived("wesnoth", grey, channels=3))


def _stem_key(root: Path, p: Path) -> str:
    return p.relative_to(root).with_suffix("").as_posix()


def _paired_folders(a: Path, b: Path, *, img_size: int, limit: int, name: str
                    ) -> Tuple[ImageDataset, int]:
    fa, _ = scan(a)
    fb, _ = scan(b)
    ma = {_stem_key(a, p): p for p in fa}
    mb = {_stem_key(b, p): p for p in fb}
    both = sorted(set(ma) & set(mb))
    alone = sorted(set(ma) ^ set(mb))
    if alone:
        shown = ", ".join((str(ma.get(k) or mb.get(k))) for k in alone[:3])
        warnings.warn(f"{len(alone)} image(s) without a partner in the other folder left out "
                      f"({shown}{', ...' if len(alone) > 3 else ''}); pairs match by path "
                      f"without extension", DataWarning, stacklevel=3)
    if not both:
        raise DataError(f"--data-a {a} and --data-b {b}: no pairs (no image path, without "
                        f"extension, is in both folders); a pair is A/x.png with B/x.png")
    if limit:
        both = both[:limit]
    # strict: an unreadable file is an error, since skipping one side would shift the pairs
    da, _ = decode_folder(a, [ma[k] for k in both], img_size=img_size, channels=0,
                          strict=True, limit=0, name=str(a))
    db, _ = decode_folder(b, [mb[k] for k in both], img_size=da.img_size, channels=0,
                          strict=True, limit=0, name=str(b))
    x = torch.cat([da.images, db.images], dim=1)
    return ImageDataset(x, None, None, name, f"{a} + {b}"), da.channels


def _aligned(folder: Path, *, img_size: int, limit: int, direction: str, name: str
             ) -> Tuple[ImageDataset, int]:
    """A folder of side-by-side images, A on the left and B on the right (the pix2pix
    datasets' "aligned" layout): each half fitted to ``img_size`` (0: the half's height);
    ``direction`` b2a makes the right half the condition. Both halves as RGB."""
    files, _ = scan(folder)
    if not files:
        raise DataError(f"{folder}: no images found for the aligned layout (side-by-side A|B "
                        f"images)")
    files = files[:limit] if limit else files
    rows, size = [], img_size
    for f in files:
        im = open_image(f)
        w, h = im.size
        if w < 2 or w % 2:
            raise DataError(f"{f}: {w}x{h} px is not two halves side by side (an even width); "
                            f"the aligned layout puts A on the left, B on the right")
        size = size or h
        halves = [fit_square(im.crop(box), size) for box in ((0, 0, w // 2, h), (w // 2, 0, w, h))]
        rows.append(np.concatenate([np.asarray(x.convert("RGB")) for x in halves], axis=2))
    if direction == "b2a":
        rows = [np.concatenate([r[..., 3:], r[..., :3]], axis=2) for r in rows]
    x = torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2).contiguous()
    return ImageDataset(x, None, None, name, str(folder)), 3


def load_pairs(*, pairs: str = "", data_a: str = "", data_b: str = "", aligned: str = "",
               direction: str = "a2b", img_size: int = 0, data_dir: Optional[str] = None,
               limit: int = 0, download: bool = True) -> PairedData:
    """The pairs of a named paired set (``pairs``, one of :data:`PAIRED`), of two folders
    (``data_a``, ``data_b``) or of one folder of side-by-side images (``aligned``, the
    condition on the left unless ``direction`` is b2a). Raises :class:`DataError` naming the
    input."""
    if aligned:
        if pairs or data_a or data_b:
            raise DataError("give one source of pairs: a paired set (--data), two folders "
                            "(--data-a/--data-b) or an aligned folder (pix2pix.aligned)")
        root = local_path(aligned)
        if not path_is_dir(root):
            raise DataError(f"pix2pix.aligned={aligned}: not a folder")
        split_dirs = path_is_dir(root / "train") and path_is_dir(root / "test")
        name = f"{aligned} ({direction})"
        if split_dirs:
            train, cond = _aligned(root / "train", img_size=img_size, limit=limit,
                                   direction=direction, name=f"{name} train")
            test, _ = _aligned(root / "test", img_size=train.img_size, limit=0,
                               direction=direction, name=f"{name} test")
        else:
            train, cond = _aligned(root, img_size=img_size, limit=limit, direction=direction,
                                   name=name)
            test = None
        return PairedData(train, test, cond, name)
    if pairs:
        if data_a or data_b:
            raise DataError(f"give either a paired set (--data {pairs}) or two folders "
                            f"(--data-a/--data-b), not both")
        if pairs not in PAIRED:
            raise DataError(f"unknown paired set '{pairs}'; choose one of "
                            f"{', '.join(PAIRED.names())}, or give two folders with --data-a "
                            f"and --data-b")
        load = PAIRED.get(pairs)
        sets: Dict[str, Optional[ImageDataset]] = {}
        cond = 0
        for split in ("train", "test"):
            try:
                a, b = load(split, img_size=img_size, data_dir=data_dir, limit=limit,
                            download=download)
            except DataError:
                if split == "train":
                    raise
                sets[split] = None
                continue
            cond = a.shape[1]
            sets[split] = ImageDataset(torch.cat([a, b], dim=1), None, None,
                                       f"{pairs}:{split}", pairs)
        return PairedData(sets["train"], sets["test"], cond, pairs)
    if not (data_a and data_b):
        raise DataError("pix2pix trains on pairs: give a paired set (--data fashion-mnist-edges, "
                        "avatars-grey, wesnoth-grey) or two folders paired by file path "
                        "(--data-a CONDITIONS --data-b TARGETS)")
    a, b = local_path(data_a), local_path(data_b)
    for flag, p in (("--data-a", a), ("--data-b", b)):
        if not path_is_dir(p):
            raise DataError(f"{flag} {p}: not a folder")
    split_dirs = all(path_is_dir(p / s) for p in (a, b) for s in ("train", "test"))
    name = f"{data_a} -> {data_b}"
    if split_dirs:
        train, cond = _paired_folders(a / "train", b / "train", img_size=img_size, limit=limit,
                                      name=f"{name} (train)")
        test, _ = _paired_folders(a / "test", b / "test", img_size=train.img_size, limit=0,
                                  name=f"{name} (test)")
    else:
        train, cond = _paired_folders(a, b, img_size=img_size, limit=limit, name=name)
        test = None
    return PairedData(train, test, cond, name)
