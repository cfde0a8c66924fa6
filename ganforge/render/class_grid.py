"""A sample grid with one row per class, each row labelled with its class name at the left
(``ganforge sample RUN --class all``). Pillow's default font, no other dependency."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from ganforge.render.images import _atomic_save, grid_to_uint8, make_grid

PADDING = 2          # make_grid's default padding between images


def _font(px: int):
    try:
        return ImageFont.load_default(size=px)      # Pillow >= 10.1: a scalable default font
    except TypeError:
        return ImageFont.load_default()


def class_grid_image(images: torch.Tensor, n_cols: int, row_names: Sequence[str],
                     scale: int = 1) -> Image.Image:
    """``images`` (rows * n_cols, C, H, W) in [-1, 1], row r showing ``row_names[r]``."""
    n_rows = len(row_names)
    if images.shape[0] != n_rows * n_cols:
        raise ValueError(f"class grid: {images.shape[0]} images for {n_rows} rows of {n_cols}")
    grid = Image.fromarray(grid_to_uint8(make_grid(images, nrow=n_cols, padding=PADDING)))
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    h = images.shape[-2]
    row_h = (h + PADDING) * scale
    font = _font(max(10, min(16, int(row_h * 0.45))))
    probe = ImageDraw.Draw(grid)
    boxes = [probe.textbbox((0, 0), str(n), font=font) for n in row_names]
    margin = 6
    label_w = max(b[2] - b[0] for b in boxes) + 2 * margin
    canvas = Image.new("RGB", (label_w + grid.width, grid.height), (255, 255, 255))
    canvas.paste(grid, (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    for r, (name, box) in enumerate(zip(row_names, boxes)):
        centre = (PADDING + r * (h + PADDING) + h / 2) * scale
        y = centre - (box[1] + box[3]) / 2
        draw.text((label_w - margin - (box[2] - box[0]), y), str(name), fill=(0, 0, 0), font=font)
    return canvas


def save_class_grid(images: torch.Tensor, n_cols: int, row_names: Sequence[str],
                    path: str | Path, scale: int = 1) -> None:
    _atomic_save(class_grid_image(images, n_cols, row_names, scale), Path(path))
