"""``wesnoth``: hand-painted unit sprites of Battle for Wesnoth, labelled by race (folder).

Real artwork in one artist-made style, centred: the offline stand-in for "a folder of my game
sprites / my product photos". Read from the installed game data (Debian's
``wesnoth-1.16-data``, GPL-2+; ``scripts/setup.sh`` installs it when it can), from
``<game>/data/core/images/units/<race>/...`` (:data:`UNIT_DIRS`), or from
``<root>/wesnoth/units/`` under the usual data roots (``--data-dir``, ``$GANFORGE_DATA``).

Which frames: every 72x72 PNG under a race's folder, its subfolders included (standing,
attack, defend, moving ... frames of every unit; other sizes, e.g. the drakes' large
wings, are left out), for the races with at least :data:`MIN_PER_RACE` such frames: 19 races,
4,457 frames in 1.16 (``ogres``, 20, and ``transport``, 4, are too few to be classes).
Classes: the race folders, sorted by name. Split: a fixed tenth of the frames (by a CRC-32
of the file's path below ``units/``, so the same frames whatever the machine) is ``test``,
the rest ``train``.

Team colour: the sprites mark the parts that show a side's colour in magenta (the
``magenta`` palette of the game's ``data/core/team-colors.cfg``); they are recoloured as the
game draws side 1, red (:data:`TEAM_COLOR`), with the game's rule: each palette colour's
brightness, relative to the palette's reference colour, picks a shade between the team
colour's shadow, average and highlight. Without the game's ``team-colors.cfg`` (a units/
folder copied elsewhere) the magenta stays.

Each frame: alpha composited onto the plain background :data:`BACKGROUND`, cropped to the
square around its sprite (the pixels with alpha >= :data:`ALPHA_MIN`, plus a
:data:`MARGIN` px margin; the shadow's faint pixels do not count), resized to 64 px (or the
requested size) with Lanczos. Decoded once into the array cache.
"""
from __future__ import annotations

import glob
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from ganforge.data import cache as cache_mod
from ganforge.data.base import DATASETS, DataError, ImageDataset
from ganforge.data.paths import search_dirs
from ganforge.data.transforms import convert_channels

NAME = "wesnoth"
#: where the game's unit sprites are installed (newest first when several match)
UNIT_DIRS = ("/usr/share/games/wesnoth/*/data/core/images/units",      # Debian, Ubuntu
             "/usr/share/wesnoth/data/core/images/units",              # Fedora, Arch
             "/usr/local/share/wesnoth/data/core/images/units")
PACKAGE = "wesnoth-1.16-data"
FRAME = 72                 # the frames used: 72x72
MIN_PER_RACE = 50
BASE_SIZE = 64
#: the plain background the sprites are composited onto (RGB)
BACKGROUND: Tuple[int, int, int] = (200, 200, 200)
ALPHA_MIN = 64
MARGIN = 2
TEST_TENTHS = 1            # tenths of the frames in the test split
#: the side whose colour the team-colour pixels take (a color_range id of team-colors.cfg)
TEAM_COLOR = "red"


def _hex(text: str) -> Tuple[int, int, int]:
    v = int(text.strip(), 16)
    return (v >> 16) & 255, (v >> 8) & 255, v & 255


def team_colors(units: Path) -> Optional[Dict[int, Tuple[int, int, int]]]:
    """``{packed magenta palette RGB: team RGB}`` from the game's team-colors.cfg beside
    ``units`` (``data/core/``), or None when there is none. The game's recolouring: with the
    palette's first colour as reference (average brightness ``ref``), a colour of brightness
    ``a <= ref`` becomes ``a/ref * mid + (1 - a/ref) * shadow``, a brighter one
    ``(255-a)/(255-ref) * mid + (1 - (255-a)/(255-ref)) * highlight``, per channel."""
    cfg = units.parents[1] / "team-colors.cfg" if len(units.parents) > 1 else None
    if cfg is None or not cfg.is_file():
        return None
    text = cfg.read_text(encoding="utf-8", errors="replace")
    palette, team = None, None
    for block in text.split("[color_range]")[1:]:
        body = block.split("[/color_range]")[0]
        fields = dict(line.strip().split("=", 1) for line in body.splitlines() if "=" in line)
        if fields.get("id", "").strip() == TEAM_COLOR:
            team = [_hex(c) for c in fields["rgb"].split(",")[:3]]
    for line in text.splitlines():
        if line.strip().startswith("magenta="):
            palette = [_hex(c) for c in line.split("=", 1)[1].split(",")]
    if not palette or not team:
        return None
    mid, high, low = team
    ref = sum(palette[0]) / 3
    out = {}
    for c in palette:
        a = sum(c) / 3
        if a <= ref:
            r = a / ref
            new = tuple(int(round(r * m + (1 - r) * lo)) for m, lo in zip(mid, low))
        else:
            r = (255 - a) / (255 - ref)
            new = tuple(int(round(r * m + (1 - r) * hi)) for m, hi in zip(mid, high))
        out[(c[0] << 16) | (c[1] << 8) | c[2]] = new
    return out


def _recolor(rgba: np.ndarray, table: Dict[int, Tuple[int, int, int]]) -> np.ndarray:
    packed = (rgba[..., 0].astype(np.int64) << 16) | (rgba[..., 1].astype(np.int64) << 8) | rgba[..., 2]
    out = rgba.copy()
    for key, rgb in table.items():
        hit = packed == key
        if hit.any():
            out[hit, :3] = rgb
    return out


def find_units(data_dir: Optional[str] = None) -> Path:
    """The ``units`` folder of the sprites: ``<root>/wesnoth/units`` under the data roots,
    else the game's installed data. Raises :class:`DataError` naming the package and the
    alternatives."""
    for root, _ in search_dirs(NAME, data_dir):
        if (root / "units").is_dir():
            return root / "units"
    for pattern in UNIT_DIRS:
        found = sorted(glob.glob(pattern), reverse=True)
        if found:
            return Path(found[0])
    raise DataError(f"{NAME}: the Wesnoth unit sprites are not installed; install the Debian "
                    f"package {PACKAGE} (sudo apt-get install {PACKAGE}; scripts/setup.sh does "
                    f"as root), put its units/ folder under <data dir>/wesnoth/units, or train "
                    f"on a folder of your own sprites with --data FOLDER")


def frames(units: Path) -> Tuple[List[Path], List[str]]:
    """The frames used (72x72 PNGs of the races with >= MIN_PER_RACE of them), sorted, and
    the races (class names, sorted)."""
    by_race: Dict[str, List[Path]] = {}
    for race in sorted(p for p in units.iterdir() if p.is_dir()):
        for f in sorted(race.rglob("*.png")):
            try:
                with Image.open(f) as im:
                    if im.size != (FRAME, FRAME):
                        continue
            except OSError:
                continue
            by_race.setdefault(race.name, []).append(f)
    races = sorted(r for r, fs in by_race.items() if len(fs) >= MIN_PER_RACE)
    if len(races) < 2:
        raise DataError(f"{units}: fewer than two race folders with {MIN_PER_RACE} or more "
                        f"{FRAME}x{FRAME} sprites; is it Wesnoth's data/core/images/units?")
    return [f for r in races for f in by_race[r]], races


def split_of(units: Path, f: Path) -> str:
    """``test`` for a fixed tenth of the frames (CRC-32 of the path below units/), else
    ``train``."""
    rel = f.relative_to(units).as_posix()
    return "test" if zlib.crc32(rel.encode()) % 10 < TEST_TENTHS else "train"


def sprite(path: Path, size: int = BASE_SIZE,
           team: Optional[Dict[int, Tuple[int, int, int]]] = None) -> np.ndarray:
    """One frame as uint8 (size, size, 3): team-coloured with ``team`` (:func:`team_colors`;
    None: as it is), composited onto :data:`BACKGROUND`, cropped to the square around the
    sprite, resized. Raises OSError for an unreadable file."""
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    if team:
        rgba = Image.fromarray(_recolor(np.asarray(rgba), team), "RGBA")
    alpha = np.asarray(rgba)[..., 3]
    ys, xs = np.nonzero(alpha >= ALPHA_MIN)
    bg = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    bg.alpha_composite(rgba)
    img = bg.convert("RGB")
    if len(xs):
        cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
        side = min(FRAME, max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) + 2 * MARGIN)
        x0 = int(round(min(max(cx - side / 2, 0), FRAME - side)))
        y0 = int(round(min(max(cy - side / 2, 0), FRAME - side)))
        img = img.crop((x0, y0, x0 + side, y0 + side))
    return np.asarray(img.resize((size, size), Image.LANCZOS))


def load_wesnoth(split: str = "train", *, img_size: int = 0, channels: int = 0,
                 data_dir: Optional[str] = None, strict: bool = False, limit: int = 0,
                 download: bool = True, cache: bool = True) -> ImageDataset:
    """The ``train`` or ``test`` split of the sprites: uint8 (N, 3, S, S) (S = ``img_size``
    or 64), labels = race. Raises :class:`DataError` for another split or when the sprites
    are not installed."""
    if split not in ("train", "test"):
        raise DataError(f"{NAME}: unknown split '{split}'; the sprites have the splits train "
                        f"and test")
    units = find_units(data_dir)
    size = img_size or BASE_SIZE
    files, races = frames(units)
    files = [f for f in files if split_of(units, f) == split]
    team = team_colors(units)

    def build() -> tuple[ImageDataset, list]:
        images, labels, skipped = [], [], []
        index = {r: i for i, r in enumerate(races)}
        for f in files:
            try:
                images.append(sprite(f, size, team))
            except OSError as e:
                if strict:
                    raise DataError(f"{f}: cannot read this sprite ({e})") from None
                skipped.append(str(f))
                continue
            labels.append(index[f.relative_to(units).parts[0]])
            if limit and len(images) >= limit:
                break
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        x = convert_channels(x, channels, NAME)
        return ImageDataset(images=x, labels=torch.tensor(labels, dtype=torch.int64),
                            class_names=list(races), name=NAME, source=str(units)), skipped

    key = cache_mod.make_key(NAME, cache_mod.fingerprint(files), split=split, size=size,
                             channels=channels, limit=limit, background=list(BACKGROUND),
                             team=TEAM_COLOR if team else "", version=1)
    return cache_mod.cached_dataset(key, build, enabled=cache, strict=strict)


DATASETS.register(NAME, help="Battle for Wesnoth unit sprites (72x72 frames, 19 races as "
                             "classes, ~4,000 train / 450 test) cropped to 64 px RGB; offline "
                             f"with Debian's {PACKAGE}")(load_wesnoth)
