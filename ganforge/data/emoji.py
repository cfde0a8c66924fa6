"""``emoji``: a colour dataset rendered from the Noto Color Emoji font; works offline.

Every glyph reachable from the font's character map (cmap) is rendered once with Pillow
(``embedded_color=True``; the font is a CBDT bitmap font whose only strike is 109 ppem,
136x128 pixels per glyph) onto a transparent canvas, cropped to its content, composited on
white, padded to a square (white) and resized to the requested size (64 by default) with
Lanczos. Glyphs that render empty (spaces, joiners, variation selectors, tag characters)
and codepoints mapped to a glyph already rendered are left out. About 1,400 RGB images. The
result is cached on disk, so only the first load renders.

Labels: the Unicode emoji *group* of each glyph's code point, from the Unicode standard's
``emoji-test.txt`` (UTS #51, "Unicode Emoji", the data file of its section 8; version 15.0
as Debian 12's ``unicode-data`` package ships it in ``/usr/share/unicode/emoji/``). Its
groups, in the file's order, are the classes: Smileys & Emotion, People & Body, Component
(skin-tone and hair swatches), Animals & Nature, Food & Drink, Travel & Places, Activities,
Objects, Symbols, Flags (only the groups that some glyph falls in become classes). A code
point's group is that of the file's entry consisting of that code point alone (any
qualification: ``fully-qualified``, ``unqualified``, ``component``); a code point never
listed alone takes the group of the first sequence that starts with it (regional indicator
letters -> Flags, as they spell flags; keycap bases 0-9, #, * -> Symbols), else of the first
sequence containing it; a glyph in none of them is not an emoji (the font also maps NUL, CR,
space and the tag letters) and is left out silently.
The file is read at run time from ``<root>/emoji/emoji-test.txt`` (the usual roots) or the
system paths in :data:`SYSTEM_EMOJI_TEST_PATHS` (Debian/Ubuntu: ``sudo apt-get install
unicode-data``; ``scripts/setup.sh`` installs it); without it loading fails with a message
that says so. Python's :mod:`unicodedata` has no emoji groups, hence the file.

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
from ganforge.data.download import (
    DownloadError,
    RemoteFile,
    fetch,
    mirror_env_var,
    mirrors_for,
)
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
EMOJI_TEST_FILE = "emoji-test.txt"
#: SHA-256 of emoji-test.txt version 15.0 (dated 2022-08-12), as unicode.org publishes it
#: and Debian's unicode-data package installs it.
EMOJI_TEST_SHA256 = "8445f23ac8388e096be19d0262e14fceff856ff52093f2356dc89485f1a853db"
EMOJI_TEST_MIRRORS: List[str] = ["https://unicode.org/Public/emoji/15.0/"]
SYSTEM_EMOJI_TEST_PATHS: List[str] = [
    "/usr/share/unicode/emoji/emoji-test.txt",              # Debian, Ubuntu: unicode-data
    "/usr/share/unicode-data/emoji/emoji-test.txt",
    "/usr/share/unicode/emoji-test.txt",
]


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


def _find_local(filename: str, system_paths: List[str], data_dir: Optional[str]
                ) -> Tuple[Optional[Path], str]:
    """``(path, where)``: ``filename`` in the dataset's search folders, else the first of
    ``system_paths`` that exists (None if neither), and the searched places for a message."""
    dirs = search_dirs(NAME, data_dir)
    where = describe_dirs(dirs) + "\n" + "\n".join(f"  - {p} (system)" for p in system_paths)
    for d, _ in dirs:
        if (d / filename).is_file():
            return d / filename, where
    for p in system_paths:
        if Path(p).is_file():
            return Path(p), where
    return None, where


def find_font(data_dir: Optional[str] = None, download: bool = True) -> Path:
    found, where = _find_local(FONT_FILE, SYSTEM_FONT_PATHS, data_dir)
    if found is not None:
        return found
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
    with TTFont(font_path, lazy=True) as font:        # closes the file (a ResourceWarning)
        cmap = font.getBestCmap() or {}
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


def _check_emoji_test(path: Path) -> None:
    """Content check of a downloaded emoji-test.txt (besides its checksum)."""
    parse_emoji_test(path.read_text(encoding="utf-8", errors="replace"))


def find_emoji_test(data_dir: Optional[str] = None, download: bool = True) -> Path:
    """``emoji-test.txt`` (see the module docstring): found locally, else downloaded from
    unicode.org and checked against :data:`EMOJI_TEST_SHA256`; a DataError saying how to get
    it when neither works."""
    found, where = _find_local(EMOJI_TEST_FILE, SYSTEM_EMOJI_TEST_PATHS, data_dir)
    if found is not None:
        return found
    fix = (f"Fix: sudo apt-get install unicode-data\n"
           f"  or put {EMOJI_TEST_FILE} (unicode.org/Public/emoji/15.0/) into "
           f"{download_dir(NAME, data_dir)}")
    if download:
        try:
            return fetch(RemoteFile(EMOJI_TEST_FILE, EMOJI_TEST_SHA256),
                         mirrors_for(NAME, EMOJI_TEST_MIRRORS), download_dir(NAME, data_dir),
                         validate=_check_emoji_test)
        except DownloadError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            fix = f"(the download failed: {first})\n" + fix
    raise DataError(f"emoji: the Unicode emoji groups (the dataset's labels) come from "
                    f"{EMOJI_TEST_FILE}, which was not found.\nSearched:\n{where}\n{fix}")


def parse_emoji_test(text: str) -> Tuple[List[str], List[Tuple[Tuple[int, ...], int]]]:
    """``(groups, entries)`` of an ``emoji-test.txt``: the group names in file order, and
    every entry as (code points, index into groups). Raises DataError when the text has no
    ``# group:`` line or no entry (not that file)."""
    groups: List[str] = []
    entries: List[Tuple[Tuple[int, ...], int]] = []
    for line in text.splitlines():
        if line.startswith("# group:"):
            groups.append(line.split(":", 1)[1].strip())
            continue
        if not line or line.startswith("#") or ";" not in line or not groups:
            continue
        cps = line.split(";", 1)[0].split()
        try:
            entries.append((tuple(int(c, 16) for c in cps), len(groups) - 1))
        except ValueError:
            continue
    if not groups or not entries:
        raise DataError(f"{EMOJI_TEST_FILE}: no '# group:' lines or no entries; is it the "
                        f"Unicode emoji-test.txt?")
    return groups, entries


def emoji_groups(text: str, chars: List[str]) -> Tuple[List[Optional[int]], List[str]]:
    """The group index of each single-code-point character (None when none applies) and
    the group names, by the rule of the module docstring."""
    groups, entries = parse_emoji_test(text)
    alone: dict = {}
    first: dict = {}
    inside: dict = {}
    for cps, g in entries:
        if len(cps) == 1:
            alone.setdefault(cps[0], g)
        first.setdefault(cps[0], g)
        for cp in cps:
            inside.setdefault(cp, g)
    out: List[Optional[int]] = []
    for ch in chars:
        cp = ord(ch)
        out.append(alone.get(cp, first.get(cp, inside.get(cp))))
    return out, groups


def render(font_path: Path, size: int = BASE_SIZE, limit: int = 0,
           only: Optional[set] = None) -> Tuple[torch.Tensor, List[str]]:
    """All glyphs (``only``: those of these characters) as a (N, 3, size, size) uint8
    tensor, and the characters rendered."""
    try:
        # BASIC layout: single codepoints need no shaping, and raqm rejects some of them.
        font = ImageFont.truetype(str(font_path), NATIVE_PPEM,
                                  layout_engine=ImageFont.Layout.BASIC)
    except OSError as e:
        raise DataError(f"{font_path}: Pillow cannot load this font at {NATIVE_PPEM} px ({e}); "
                        f"is it the bitmap Noto Color Emoji font (not the COLRv1 one)?") from None
    images, chars = [], []
    for ch in glyph_chars(font_path):
        if only is not None and ch not in only:
            continue
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
    test_path = find_emoji_test(data_dir, download)
    size = img_size or BASE_SIZE

    def build() -> tuple[ImageDataset, list]:
        try:
            text = test_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{test_path}: cannot read it ({e})") from None
        candidates = glyph_chars(font_path)
        idx, groups = emoji_groups(text, candidates)
        # A cmap entry in no group is not an emoji (NUL, CR, space, tag letters): left out
        # without a warning, like the glyphs that render empty.
        group_of = {c: g for c, g in zip(candidates, idx) if g is not None}
        skipped: list = []
        x, chars = render(font_path, size, limit, only=set(group_of))
        used = sorted({group_of[c] for c in chars})       # classes in the file's group order
        remap = {g: k for k, g in enumerate(used)}
        labels = torch.tensor([remap[group_of[c]] for c in chars], dtype=torch.int64)
        x = convert_channels(x, channels, NAME)
        return ImageDataset(images=x, labels=labels, class_names=[groups[g] for g in used],
                            name=NAME, source=str(font_path)), skipped

    key = cache_mod.make_key("emoji", cache_mod.fingerprint([font_path, test_path]), size=size,
                             channels=channels, limit=limit, labels="emoji-test-groups", version=2)
    return cache_mod.cached_dataset(key, build, enabled=cache, strict=strict)


DATASETS.register(NAME, help="Noto Color Emoji glyphs rendered to 64x64 RGB on white "
                             "(~1,400 images, labelled by Unicode emoji group; offline with "
                             "fonts-noto-color-emoji and unicode-data)")(load_emoji)
