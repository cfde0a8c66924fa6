"""``avatars``: aligned cartoon faces rendered offline with DiceBear, labelled by style.

DiceBear's Python port (``dicebear-core`` renders an SVG from a style definition and a seed,
deterministically; ``dicebear-styles`` holds the definitions) and ``resvg-py`` (a wheel with the
resvg renderer inside) make every image from nothing but the seed: no download, no hub. Each
style picks its options (hair, eyes, mouth, glasses, colours ...) from the seed, so every image
carries exact labels. It is the offline stand-in for an aligned-faces dataset such as CelebA:
one kind of thing, a shared layout, a plain background, as many images as wanted.

The set is fixed: the six colour face styles of :data:`STYLES` (their licences allow reuse;
CC BY 4.0 ones need attribution, given in :data:`STYLES` and the README), each image rendered
at :data:`BASE_SIZE` px (64; a larger ``img_size`` renders a set of that size) onto a plain
light-grey background (:data:`BACKGROUND`), from the seed string ``"<style>-<split>-<i>"``.
Counts: :data:`COUNTS` per style and split (``train``: 2,000, ``test``: 400; 12,000 and 2,400
images in all). Classes: the style (in :data:`STYLES` order); the options DiceBear chose for
each image are kept as attributes, one JSON line per image in ``<set>/<split>/attributes.jsonl``.

Rendering happens once, into the dataset cache (``<cache>/datasets/avatars-<size>/<split>/
<style>/NNNNN.png``): in parallel (one process per core), resumable (an image already written
is not rendered again, so an interrupted render continues), with a progress bar. The PNG tree is
then read as any class-folder dataset (:mod:`ganforge.data.folder`: decoded once into the array
cache). The dependencies are the optional extra ``ganforge[avatars]`` (the README's two
commands install it); without them loading says so in one line.
"""
from __future__ import annotations

import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from ganforge.core.files import atomic_write, atomic_write_text
from ganforge.data.base import DATASETS, DataError, ImageDataset
from ganforge.data.folder import load_folder
from ganforge.data.paths import cache_dir

NAME = "avatars"
#: the styles (classes, in this order) with their licences and authors, from each style's
#: own metadata in dicebear-styles; CC BY 4.0 asks for attribution, given here and in the README
STYLES: Dict[str, str] = {
    "adventurer": "CC BY 4.0, Lisa Wischofsky",
    "avataaars": "free for personal and commercial use, Pablo Stanley",
    "big-smile": "CC BY 4.0, Ashley Seo",
    "micah": "CC BY 4.0, Micah Lanier",
    "open-peeps": "CC0 1.0, Pablo Stanley",
    "personas": "CC BY 4.0, Draftbit",
}
BASE_SIZE = 64
#: images per style in each split
COUNTS: Dict[str, int] = {"train": 2000, "test": 400}
#: the plain background every face is composited onto (RGB)
BACKGROUND: Tuple[int, int, int] = (235, 235, 235)
ATTRIBUTES = "attributes.jsonl"
INSTALL = 'the avatars dataset needs DiceBear and resvg: pip install "ganforge[avatars]"'


def _modules():
    """(dicebear, dicebear_styles' definitions reader, resvg_py), or a DataError saying what
    to install."""
    try:
        from importlib.resources import files

        import dicebear  # type: ignore[import-not-found]
        import resvg_py  # type: ignore[import-not-found]
        files("dicebear_styles")
    except ImportError:
        raise DataError(INSTALL) from None
    return dicebear, files, resvg_py


def seed_of(style: str, split: str, i: int) -> str:
    """The DiceBear seed of image ``i`` of ``style`` in ``split``."""
    return f"{style}-{split}-{i}"


_STYLE_CACHE: Dict[str, Any] = {}


def render(style: str, seed: str, size: int = BASE_SIZE) -> Tuple[np.ndarray, Dict[str, Any]]:
    """One avatar: uint8 (size, size, 3) RGB on :data:`BACKGROUND`, and the options DiceBear
    resolved for it (hair, eyes, colours ...). Deterministic in (style, seed, size)."""
    dicebear, files, resvg_py = _modules()
    st = _STYLE_CACHE.get(style)
    if st is None:
        definition = json.loads(files("dicebear_styles").joinpath(f"{style}.json").read_text("utf-8"))
        st = _STYLE_CACHE[style] = dicebear.Style(definition)
    avatar = dicebear.Avatar(st, {"seed": seed, "size": int(size)})
    png = resvg_py.svg_to_bytes(svg_string=avatar.to_string())
    im = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    bg = Image.new("RGBA", im.size, BACKGROUND + (255,))
    bg.alpha_composite(im)
    return np.asarray(bg.convert("RGB")), avatar.to_json()["options"]


def _render_file(job: Tuple[str, str, int, int, str]) -> Tuple[str, Dict[str, Any]]:
    """Render one image to its file (atomically); returns (relative name, options)."""
    style, split, i, size, root = job
    rel = f"{style}/{i:05d}.png"
    a, options = render(style, seed_of(style, split, i), size)
    atomic_write(Path(root) / rel, lambda f: Image.fromarray(a).save(f, format="PNG"))
    return rel, options


def set_dir(size: int, data_dir: Optional[str] = None) -> Path:
    """Where the rendered set of ``size`` px lives: ``<data_dir>/avatars-<size>`` when a
    ``data_dir`` is given, else ``<cache>/datasets/avatars-<size>``."""
    if data_dir:
        return Path(data_dir).expanduser() / f"{NAME}-{size}"
    return cache_dir() / "datasets" / f"{NAME}-{size}"


def render_split(split: str, size: int = BASE_SIZE, *, root: Optional[Path] = None,
                 workers: int = 0, progress: bool = True, render: bool = True) -> Path:
    """Render the ``split`` of the set at ``size`` px (missing images only) and write its
    ``attributes.jsonl``; returns the split's folder. ``workers``: processes (0: one per
    core, at most 8). With ``render=False`` a split not fully rendered raises
    :class:`DataError` instead (the loaders' ``download=False``: use only what is there)."""
    out = (root or set_dir(size)) / split
    want = [(style, split, i, size, str(out)) for style in STYLES for i in range(COUNTS[split])]
    done_file = out / ATTRIBUTES
    if done_file.is_file() and sum(1 for _ in done_file.open()) == len(want):
        return out
    if not render:
        raise DataError(f"{NAME}: the {split} split at {size} px is not rendered in {out} and "
                        f"rendering is off (download=False); allow it to render once "
                        f"({len(want):,} images, about a minute per core)")
    _modules()                                   # a missing package: one line, before any work
    todo, known = [], {}
    for job in want:
        rel = f"{job[0]}/{job[2]:05d}.png"
        if not (out / rel).is_file():
            todo.append(job)
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(want), initial=len(want) - len(todo), unit="img",
                   desc=f"rendering {NAME} {split} ({size} px)")
    try:
        if workers > 1 and len(todo) > 50:
            with ProcessPoolExecutor(workers) as pool:
                for rel, options in pool.map(_render_file, todo, chunksize=32):
                    known[rel] = options
                    if bar is not None:
                        bar.update(1)
        else:
            for job in todo:
                rel, options = _render_file(job)
                known[rel] = options
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    rows = []
    for style, _, i, _, _ in want:            # options of images rendered earlier: re-resolved
        rel = f"{style}/{i:05d}.png"
        options = known.get(rel)
        if options is None:
            options = _options(style, seed_of(style, split, i))
        rows.append(json.dumps({"file": rel, "style": style, "options": options}))
    atomic_write_text(done_file, "\n".join(rows) + "\n")
    return out


def _options(style: str, seed: str) -> Dict[str, Any]:
    """The options DiceBear resolves for (style, seed), without rasterising."""
    dicebear, files, _ = _modules()
    st = _STYLE_CACHE.get(style)
    if st is None:
        definition = json.loads(files("dicebear_styles").joinpath(f"{style}.json").read_text("utf-8"))
        st = _STYLE_CACHE[style] = dicebear.Style(definition)
    return dicebear.Avatar(st, {"seed": seed}).to_json()["options"]


def attributes(split: str = "train", size: int = BASE_SIZE) -> List[Dict[str, Any]]:
    """The rows of ``attributes.jsonl`` of a rendered split: ``file``, ``style``, ``options``
    (in the order of the images of the split's folder: style by style, by number)."""
    path = set_dir(size) / split / ATTRIBUTES
    if not path.is_file():
        raise DataError(f"{NAME}: the {split} split at {size} px is not rendered yet; load it "
                        f"first (ganforge train --data {NAME}, or load_dataset('{NAME}'))")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_avatars(split: str = "train", *, img_size: int = 0, channels: int = 0,
                 data_dir: Optional[str] = None, strict: bool = False, limit: int = 0,
                 download: bool = True, cache: bool = True) -> ImageDataset:
    """The ``train`` or ``test`` split of the avatars (rendered first when missing): uint8
    (N, 3, S, S), labels = style. ``img_size`` above 64 renders a set of that size; below,
    the 64 px set is resized. ``data_dir``: render into / read from ``<data_dir>/avatars-<S>``
    instead of the cache; ``download=False``: never render, use only a finished set. Raises
    :class:`DataError` for another split, a set not rendered while rendering is off, or a
    missing dependency."""
    if split not in COUNTS:
        raise DataError(f"{NAME}: unknown split '{split}'; the avatars have the splits "
                        f"{', '.join(COUNTS)}")
    size = max(BASE_SIZE, img_size or BASE_SIZE)
    folder = render_split(split, size, root=set_dir(size, data_dir), render=download)
    ds = load_folder(folder, img_size=img_size if img_size and img_size != size else 0,
                     channels=channels, strict=strict, limit=limit, cache=cache, name=NAME)
    if ds.class_names != list(STYLES):
        raise DataError(f"{folder}: holds {ds.class_names}, not the styles {list(STYLES)}; "
                        f"delete the folder to render it again")
    return ds


DATASETS.register(NAME, help="cartoon faces rendered offline with DiceBear, 64 px RGB, "
                             "labelled by style (6 styles; 12,000 train / 2,400 test; needs "
                             "ganforge[avatars])")(load_avatars)
