"""``emoji``: a colour dataset rendered from the Noto Color Emoji font; works offline.

Every glyph reachable from the font's character map (cmap) is rendered once with Pillow
(``embedded_color=True``; the font is a CBDT bitmap font whose only strike is 109 ppem,
136x128 pixels per glyph) onto a transparent canvas, cropped to its content, composited on
white, padded to a square (white) and resized to the requested size (64 by default) with
Lanczos. Glyphs that render empty (spaces, joiners, variation selectors, tag characters)
and codepoints mapped to a glyph already rendered are left out. About 1,400 RGB images, no
labels. The result is cached on disk, so only the first load renders.

The font is looked for in ``<root>/emoji/NotoColorEmoji.ttf`` for the usual roots
(``data_dir``, ``$GANFORGE_DATA``, the user cache), then in the system font folders
(Debian/Ubuntu: ``sudo apt-get install fonts-noto-color-emoji``), and last downloaded from
the upstream release (tag :data:`FONT_TAG` of github.com/googlefonts/noto-emoji).

About the download's checksum: no SHA-256 of the upstream ``NotoColorEmoji.ttf`` is
published, and the Debian file cannot stand in for it (Debian rebuilds the font from source:
its ``head.modified`` equals the Debian changelog date, so the bytes differ from upstream's).
:data:`FONT_SHA256` is therefore None and a download is verified by content instead (it must
parse as a font named Noto Color Emoji with colour bitmaps and 1,000+ mapped characters);
its SHA-256 is printed so it can be pinned here.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ganforge.data import cache as cache_mod
from ganforge.data.base import DATASETS, DataError, ImageDataset
from ganforge.data.download import DownloadError, RemoteFile, fetch, mirror_env_var, mirrors_for
from ganforge.data.paths import describe_dirs, download_dir, search_dirs
from ganforge.data.transforms import convert_channels

NAME = "emoji"
FONT_FILE = "NotoColorEmoji.ttf"
FONT_TAG = "v2.042"
FONT_SHA256: Optional[str] = None   # see the module docstring
FONT_MIRRORS: List[str] = [f"https://github.com/googlefonts/noto-emoji/raw/{FONT_TAG}/fonts/"]
SYSTEM_FONT_PATHS: List[str] = [
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",               # Debian, Ubuntu
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",                        # Arch
    "/usr/share/fonts/google-noto-color-emoji-fonts/NotoColorEmoji.ttf",  # Fedora
    "/usr/share/fonts/truetype/NotoColorEmoji.ttf",
    "/usr/local/share/fonts/NotoColorEmoji.ttf",
]
NATIVE_PPEM = 109        # the font's only bitmap strike; other sizes fail to load
BASE_SIZE = 64
MIN_GLYPHS = 1000


def _check_font(path: Path) -> None:
    """Content check for a downloaded font (used when no checksum is known)."""
    from fontTools.ttLib import TTFont, TTLibError
    try:
        tt = TTFont(path, lazy=True)
        family = tt["name"].getDebugName(1) or ""
        n = len(tt.getBestCmap() or {})
        colour = any(t in tt for t in ("CBDT", "sbix", "COLR"))
    except (TTLibError, OSError, KeyError, AssertionError) as e:
        raise DataError(f"{path}: not a readable font ({e})") from None
    if "Emoji" not in family or not colour or n < MIN_GLYPHS:
        raise DataError(f"{path}: not the Noto Color Emoji font (family {family!r}, "
                        f"{n} characters, colour tables: {colour})")


def find_font(data_dir: Optional[str] = None, download: bool = True) -> Path:
    dirs = search_dirs(NAME, data_dir)
    for d, _ in dirs:
        if (d / FONT_FILE).is_file():
            return d / FONT_FILE
    for p in SYSTEM_FONT_PATHS:
        if Path(p).is_file():
            return Path(p)
    where = describe_dirs(dirs) + "\n" + "\n".join(f"  - {p} (system)" for p in SYSTEM_FONT_PATHS)
    fix = (f"Fix: sudo apt-get install fonts-noto-color-emoji\n"
           f"  or put {FONT_FILE} (github.com/googlefonts/noto-emoji, fonts/) into "
           f"{download_dir(NAME, data_dir)}\n"
           f"  or point {mirror_env_var(NAME)} at a reachable copy")
    if not download:
        raise DataError(f"emoji: font {FONT_FILE} not found and downloading is disabled.\n"
                        f"Searched:\n{where}\n{fix}")
    try:
        return fetch(RemoteFile(FONT_FILE, FONT_SHA256), mirrors_for(NAME, FONT_MIRRORS),
                     download_dir(NAME, data_dir), validate=_check_font)
    except DownloadError as e:
        raise DataError(f"emoji: font {FONT_FILE} not found locally and the download failed."
                        f"\n{e}\nSearched:\n{where}\n{fix}") from None


def glyph_chars(font_path: Path) -> List[str]:
    """One character per distinct glyph of the font's cmap, in codepoint order."""
    from fontTools.ttLib import TTFont
    cmap = TTFont(font_path, lazy=True).getBestCmap() or {}
    seen, chars = set(), []
    for cp in sorted(cmap):
        glyph = cmap[cp]
        if glyph in seen:
            continue
        seen.add(glyph)
        chars.append(chr(cp))
    return chars


# Every bitmap of the font is 136x128 at 109 ppem; drawn at (PAD, PAD) it stays well inside a
# CANVAS-sized square, so no per-glyph bounding-box query is needed.
PAD, CANVAS = 24, 192


def render_glyph(font: ImageFont.FreeTypeFont, ch: str, size: int) -> Optional[np.ndarray]:
    """(size, size, 3) uint8 on white, or None when the glyph draws nothing."""
    canvas = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    try:
        ImageDraw.Draw(canvas).text((PAD, PAD), ch, font=font, embedded_color=True)
    except (OSError, RuntimeError, ValueError):
        return None
    box = canvas.getchannel("A").getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    w, h = glyph.size
    side = max(w, h)
    # Composite on white and pad to a centred square in one paste (alpha as the mask).
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(glyph, ((side - w) // 2, (side - h) // 2), mask=glyph)
    if side != size:
        square = square.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(square)


def render(font_path: Path, size: int = BASE_SIZE, limit: int = 0) -> Tuple[torch.Tensor, List[str]]:
    """All glyphs as a (N, 3, size, size) uint8 tensor, and the characters rendered."""
    try:
        # BASIC layout: single codepoints need no shaping, and raqm rejects some of them.
        font = ImageFont.truetype(str(font_path), NATIVE_PPEM,
                                  layout_engine=ImageFont.Layout.BASIC)
    except OSError as e:
        raise DataError(f"{font_path}: Pillow cannot load this font at {NATIVE_PPEM} px ({e}); "
                        f"is it the bitmap Noto Color Emoji font (not the COLRv1 one)?") from None
    images, chars = [], []
    for ch in glyph_chars(font_path):
        a = render_glyph(font, ch, size)
        if a is None:
            continue
        images.append(a)
        chars.append(ch)
        if limit and len(images) >= limit:
            break
    if not images:
        raise DataError(f"{font_path}: no glyph rendered; Pillow needs FreeType with PNG "
                        f"support to draw colour bitmap fonts")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, chars


def load_emoji(split: str = "train", *, img_size: int = 0, channels: int = 0,
               data_dir: Optional[str] = None, strict: bool = False, limit: int = 0,
               download: bool = True, cache: bool = True) -> ImageDataset:
    if split not in ("train", "all"):
        raise DataError(f"emoji: unknown split '{split}'; the emoji dataset has one split, "
                        f"'train'")
    font_path = find_font(data_dir, download)
    size = img_size or BASE_SIZE

    def build() -> tuple[ImageDataset, list]:
        x, _ = render(font_path, size, limit)
        x = convert_channels(x, channels, NAME)
        return ImageDataset(images=x, labels=None, class_names=None, name=NAME,
                            source=str(font_path)), []

    key = cache_mod.make_key("emoji", cache_mod.fingerprint([font_path]), size=size,
                             channels=channels, limit=limit)
    return cache_mod.cached_dataset(key, build, enabled=cache, strict=strict)


DATASETS.register(NAME, help="Noto Color Emoji glyphs rendered to 64x64 RGB on white "
                             "(~1,400 images, no labels; offline with "
                             "fonts-noto-color-emoji)")(load_emoji)
