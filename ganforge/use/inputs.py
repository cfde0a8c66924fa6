"""What a user hands an image-to-image run: tensors, PIL images or image files, as the float
tensors the run takes (:meth:`ganforge.use.face.Generator.translate`, ``ganforge translate``,
``ganforge serve``'s uploads).

Files and PIL images of any mode and size are converted as training data was: the shorter side
resized, the centre cropped to a square (:func:`ganforge.data.decode.fit_square`), gray <-> RGB
to the run's channel count (:func:`ganforge.data.transforms.convert_channels`).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ganforge.core.errors import UserError
from ganforge.data import to_float
from ganforge.data.decode import decode_file, fit_square
from ganforge.data.transforms import convert_channels

#: what :func:`images_to_tensor` takes
ImageInput = Union[torch.Tensor, Image.Image, str, Path, Sequence[Union[Image.Image, str, Path]]]


def decode_files(files: Sequence[Path], size: int, channels: int) -> torch.Tensor:
    """Image files as float32 (N, channels, size, size) in [-1, 1]. Raises
    :class:`ganforge.data.base.DataError` naming a file that cannot be read."""
    parts = []
    for f in files:
        a, _ = decode_file(Path(f), size)
        t = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).unsqueeze(0)
        parts.append(convert_channels(t, channels, str(f)))
    return to_float(torch.cat(parts).contiguous())


def images_to_tensor(images: ImageInput, size: int, channels: int) -> torch.Tensor:
    """``images`` as float32 (N, channels, size, size) in [-1, 1] on CPU.

    ``images``: a float tensor in [-1, 1], (N, C, H, W) or (C, H, W), already at ``size`` and
    ``channels`` (a uint8 tensor is read as 0..255); a PIL image; a path; or a list of PIL
    images / paths (any mode and size, converted as training data was).

    Raises :class:`UserError` for a tensor of another shape or dtype or with values outside
    [-1, 1], a path that is not an image file, an empty list or another kind of input."""
    if isinstance(images, torch.Tensor):
        x = images.detach().cpu()
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or tuple(x.shape[1:]) != (channels, size, size):
            raise UserError(f"images: a tensor of shape {tuple(images.shape)}; this run "
                            f"translates (N, {channels}, {size}, {size}) images in [-1, 1] (or "
                            f"pass PIL images or paths, which are resized)")
        if x.dtype == torch.uint8:
            return to_float(x)
        if not x.is_floating_point():
            raise UserError(f"images: a {x.dtype} tensor; use float in [-1, 1] or uint8")
        x = x.float()
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
        if lo < -1 - 1e-3 or hi > 1 + 1e-3 or x.isnan().any():
            raise UserError(f"images: values from {lo:g} to {hi:g}; give float images in [-1, 1] "
                            f"(x / 127.5 - 1 for 0..255), a uint8 tensor, PIL images or paths")
        return x
    items: List = [images] if isinstance(images, (Image.Image, str, Path)) else list(images)
    if not items:
        raise UserError("images: nothing to translate")
    parts = []
    for it in items:
        if isinstance(it, Image.Image):
            im = it.convert("L" if it.mode in ("1", "L", "I", "I;16", "F") else "RGB")
            a = np.asarray(fit_square(im, size))
            a = a[..., None] if a.ndim == 2 else a
            t = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).unsqueeze(0)
            parts.append(to_float(convert_channels(t, channels, "a PIL image")))
        elif isinstance(it, (str, Path)):
            p = Path(it).expanduser()
            if not p.is_file():
                raise UserError(f"images: '{p}' is not an image file")
            parts.append(decode_files([p], size, channels))
        else:
            raise UserError(f"images: cannot translate a {type(it).__name__}; give a tensor, "
                            f"PIL images or paths")
    return torch.cat(parts).contiguous()
