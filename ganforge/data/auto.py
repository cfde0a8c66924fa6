"""Defaults chosen from the data: ``ganforge train --data FOLDER`` with no other flag trains.

A folder of a user's own images says nothing about its size or count in advance; the fixed
defaults (the images' own smallest side, a batch of 64) fail on it (a 300 px side is no size
DCGAN can reach; 50 images are fewer than one batch). :func:`choose_data_defaults` looks at the
folder before it is decoded (file count, image headers only) and fills in what the user left
unset, the keys *not* in :func:`ganforge.core.config.explicit_keys` (set by a preset, a flag, an
override or a resumed run's saved config; those always win):

=====================  =========================================================================
``data.img_size``      the largest size <= min(:data:`MAX_AUTO_SIZE` = 64, the smallest shorter
                       side among the images) that the model family can build (``fits``);
                       64 px is the classic DCGAN size. Left unset when no size fits.
``train.batch_size``   the configured batch (64), but no more than the images (floored to a
                       multiple of the torchrun process count).
``aug.diffaug``        ``translation,cutout,color`` (DiffAugment, Zhao et al. 2020) when the
                       folder has fewer than :data:`SMALL_DATA` images;
``ema.half_life``      ``10`` (thousand images; an EMA of G's weights) likewise. Both the best
                       combination of ``benchmarks/bench_toolbox.py`` (1,000 and 60,000
                       Fashion-MNIST images; the default preset before ganforge tune).
                       On colour data the evidence is mixed, so colour folders get the
                       same: the colour jitter hurt the resize-convolution DCGAN on the
                       emoji glyphs and helped FastGAN (one run each,
                       benchmarks/results/emoji.md); on the Wesnoth sprites as a plain
                       folder (4,019 images, 32 px, 5 minutes, one seed) these defaults
                       gave FID 152 and the same without the jitter 166
                       (benchmarks/results/colour/wesnoth-folder-32.md).
=====================  =========================================================================

Why 10,000 images for "small": DiffAugment's gains are largest below that size (Zhao et al.
2020 report them at 100 images, 10 % and 20 % of CIFAR-10 (5,000 and 10,000) and 1k-10k FFHQ
subsets) and shrink on the full 50k-70k sets; ADA (Karras et al. 2020) shows the same turn
between 10k and 30k. On larger folders neither is switched on unasked.

Only a folder (``--data PATH`` naming a directory, or ``PATH:CLASS``) is looked at; named
datasets and arrays come with presets. :func:`describe` is the one line the trainer prints
first, each choice with the key that overrides it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from PIL import Image

from ganforge.core.config import Config, explicit_keys
from ganforge.data.folder import scan
from ganforge.data.spec import local_path, parse_spec, path_is_dir

#: Folders with fewer images than this get the small-data aids (see the module docstring).
SMALL_DATA = 10_000
#: The largest resolution chosen unasked (the classic DCGAN size); data.img_size=N goes higher.
MAX_AUTO_SIZE = 64
#: The small-data aids: key -> (value, how to switch it off).
SMALL_DATA_AIDS = {"aug.diffaug": ("translation,cutout,color", "aug.diffaug=none"),
                   "ema.half_life": (10.0, "ema.half_life=0")}


@dataclass(frozen=True)
class Choice:
    """One default chosen from the data: ``key=value``, why, and how to override it."""
    key: str
    value: object
    why: str
    override: str

    def __str__(self) -> str:
        return f"{self.key}={self.value} (auto: {self.why}; override with {self.override})"


@dataclass(frozen=True)
class FolderFacts:
    """What the header scan found: the folder, how many images it will train on (after
    ``data.limit``), and the smallest shorter side in px (0 when no header was readable)."""
    folder: Path
    n_images: int
    min_side: int
    smallest: Optional[Path] = None     #: the file with that side (named in the printed line)


def training_folder(cfg: Config) -> Optional[Path]:
    """The folder ``cfg.data`` trains on, or None when it is not a folder (a named dataset,
    an array file, a path that does not exist): ``PATH``, ``PATH:CLASS`` (the class
    subfolder) or, for a split other than train/all, ``PATH/SPLIT`` when it exists."""
    parsed = parse_spec(cfg.data.name)
    if parsed.named:
        return None
    folder = local_path(parsed.source)
    split = parsed.split or cfg.data.split
    if split not in ("", "train", "all") and path_is_dir(folder / split):
        folder = folder / split
    if parsed.cls:
        folder = folder / parsed.cls
    return folder if path_is_dir(folder) else None


def scan_folder(folder: Path, limit: int = 0) -> FolderFacts:
    """Count the images under ``folder`` and read their headers (no decoding) for the
    smallest shorter side. Unreadable headers are not counted (the loader skips those
    files too and says so)."""
    files, _ = scan(folder)
    sides = []
    for p in files:
        try:
            # the header only: Image.open reads no pixels (and the shorter side does not
            # depend on the EXIF orientation, whose lookup would decode a whole PNG)
            with Image.open(p) as im:
                sides.append((min(im.size), p))
        except Exception:  # noqa: BLE001 - the loader reports unreadable files by name
            continue
    n = len(sides) if not limit else min(limit, len(sides))
    if not sides:
        return FolderFacts(folder, n, 0)
    side, smallest = min(sides, key=lambda sp: sp[0])
    return FolderFacts(folder, n, side, smallest)


def choose_data_defaults(cfg: Config, *, fits: Callable[[int], bool], world_size: int = 1,
                         facts: Optional[FolderFacts] = None) -> Tuple[Config, List[Choice]]:
    """``cfg`` with the data-dependent defaults filled in where the user set nothing (see the
    module docstring), and the choices made (empty when ``cfg.data`` is not a folder, or
    every key was set explicitly).

    ``fits(size) -> bool``: whether the chosen model family can build ``size`` px (a
    higher layer asks its registry). ``world_size``: torchrun processes (the batch is split
    between them). ``facts``: a scan already made (tests), else :func:`scan_folder`.
    """
    explicit = explicit_keys(cfg)
    wanted = ["data.img_size", "train.batch_size", *SMALL_DATA_AIDS]
    if all(k in explicit for k in wanted):
        return cfg, []
    if facts is None:
        folder = training_folder(cfg)
        if folder is None:
            return cfg, []
        facts = scan_folder(folder, cfg.data.limit)
    if facts.n_images == 0:
        return cfg, []      # the loader says what is wrong with the folder
    choices: List[Choice] = []
    if "data.img_size" not in explicit and facts.min_side > 0:
        cap = min(MAX_AUTO_SIZE, facts.min_side)
        size = next((s for s in range(cap, 0, -1) if fits(s)), 0)
        if size:
            named = f", {facts.smallest.name}" if facts.smallest is not None else ""
            why = (f"{cfg.model.name} at most {MAX_AUTO_SIZE} px and the smallest image side "
                   f"{facts.min_side} px{named}")
            choices.append(Choice("data.img_size", size, why, "data.img_size=N"))
    if "train.batch_size" not in explicit:
        batch = min(cfg.train.batch_size, facts.n_images)
        batch = max(world_size, batch - batch % world_size)
        why = (f"no more than the {facts.n_images} images" if batch < cfg.train.batch_size
               else "the default")
        choices.append(Choice("train.batch_size", batch, why, "train.batch_size=N"))
    if facts.n_images < SMALL_DATA:
        for key, (value, off) in SMALL_DATA_AIDS.items():
            if key not in explicit:
                choices.append(Choice(key, value, f"{facts.n_images} images < {SMALL_DATA:,}",
                                      off))
    out = cfg
    for c in choices:
        out = out.with_overrides({c.key: c.value}, where="data defaults")
    # The chosen values are defaults, not the user's: they stay out of explicit_keys.
    return replace(out, explicit=explicit), choices


def describe(choices: List[Choice], data: str = "") -> str:
    """The one line printed first: ``chosen from the data (DATA): key=value (auto: why;
    override with key=...); ...``."""
    where = f" ({data})" if data else ""
    return f"chosen from the data{where}: " + "; ".join(str(c) for c in choices)
