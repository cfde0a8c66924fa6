"""Image grids and GIFs with torch and Pillow only (no torchvision).

Library tensors are float in [-1, 1], NCHW; conversion to uint8 happens here, at the edge.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ganforge.core.files import atomic_write


def make_grid(images: torch.Tensor, nrow: Optional[int] = None, padding: int = 2,
              pad_value: float = 1.0) -> torch.Tensor:
    """Tile (N, C, H, W) images into one (C, H', W') image, ``nrow`` images per row."""
    if images.dim() != 4:
        raise ValueError(f"make_grid expects (N, C, H, W), got {tuple(images.shape)}")
    images = images.detach().float().cpu()
    n, c, h, w = images.shape
    if c == 1:
        images = images.expand(n, 3, h, w)
        c = 3
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = nrow
    nrows = math.ceil(n / ncol)
    grid = torch.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y:y + h, x:x + w] = images[i]
    return grid


def grid_to_uint8(grid: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, C) uint8."""
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return arr.permute(1, 2, 0).numpy()


def _atomic_save(img: Image.Image, path: Path, **kw) -> None:
    """``img.save`` through :func:`ganforge.core.files.atomic_write` (durable, atomic)."""
    path = Path(path)
    fmt = kw.pop("format", None) or path.suffix.lstrip(".").upper().replace("JPG", "JPEG")
    atomic_write(path, lambda f: img.save(f, format=fmt, **kw))


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """Save one (C, H, W) image in [-1, 1]."""
    arr = grid_to_uint8(image if image.shape[0] == 3 else image.expand(3, *image.shape[1:]))
    if image.shape[0] == 1:
        arr = arr[..., 0]
    _atomic_save(Image.fromarray(arr), Path(path))


def save_grid(images: torch.Tensor, path: str | Path, nrow: Optional[int] = None,
              scale: int = 1) -> None:
    grid = make_grid(images, nrow=nrow)
    img = Image.fromarray(grid_to_uint8(grid))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    _atomic_save(img, Path(path))


def write_gif(frames: Sequence[str | Path], path: str | Path, duration_ms: int = 200,
              max_frames: int = 100, max_side: int = 512) -> None:
    """Assemble saved grid PNGs into an animated GIF (last frame held longer)."""
    frames = list(frames)
    if not frames:
        return
    if len(frames) > max_frames:   # keep first and last, thin the middle evenly
        idx = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames = [frames[i] for i in sorted(set(idx))]
    imgs = []
    for f in frames:
        im = Image.open(f).convert("RGB")
        if max(im.size) > max_side:
            s = max_side / max(im.size)
            im = im.resize((int(im.width * s), int(im.height * s)), Image.LANCZOS)
        imgs.append(im)
    durations = [duration_ms] * (len(imgs) - 1) + [duration_ms * 10]
    _atomic_save(imgs[0], Path(path), format="GIF", save_all=True, append_images=imgs[1:],
                 duration=durations, loop=0)


def triplet_grid(inputs: torch.Tensor, translated: torch.Tensor,
                 reconstructed: Optional[torch.Tensor], columns: int = 8) -> torch.Tensor:
    """(C, H, W) grid in [-1, 1]: for every ``columns`` images, a row of inputs, a row of their
    translations and a row of the reconstructions (pix2pix: the targets; None: no third row);
    short rows padded with white. Grey rows are shown in colour's channels when another row
    has three (an edge map beside the item drawn from it)."""
    parts = [p for p in (inputs, translated, reconstructed) if p is not None]
    c = max(p.shape[1] for p in parts)
    parts = [p.expand(-1, c, -1, -1) if p.shape[1] == 1 else p for p in parts]
    n = inputs.shape[0]
    cols = max(1, min(columns, n))
    tiles = []
    for s in range(0, n, cols):
        for part in parts:
            chunk = part[s:s + cols].detach().float().cpu()
            if chunk.shape[0] < cols:
                pad = torch.ones((cols - chunk.shape[0], *chunk.shape[1:]))
                chunk = torch.cat([chunk, pad])
            tiles.append(chunk)
    return make_grid(torch.cat(tiles), nrow=cols)


def stack_bands(bands: List[torch.Tensor], gap: int = 6) -> torch.Tensor:
    """Stack (C, H, W) grids vertically with a white gap, padding widths to the widest."""
    width = max(b.shape[-1] for b in bands)
    out = []
    for i, b in enumerate(bands):
        if b.shape[-1] < width:
            b = torch.cat([b, torch.ones((b.shape[0], b.shape[1], width - b.shape[-1]))], dim=2)
        if i:
            out.append(torch.ones((b.shape[0], gap, width)))
        out.append(b)
    return torch.cat(out, dim=1)
