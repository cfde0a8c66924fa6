"""Classic dataset augmentation, applied to the *real* batches only.

Caveat, and the reason this module is separate from :mod:`ganforge.regularize.diffaugment`:
a GAN's generator learns to reproduce whatever distribution the real batches come from. If
the reals are rotated, zoomed, cropped, contrast-stretched or noisy, G learns to produce
rotated, zoomed, cropped, contrast-stretched or noisy images: the augmentation *leaks* into
the samples (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training", §3.1; Karras et al. 2020, "Training GANs with Limited Data", §2). That is only
acceptable when the augmented images are themselves plausible samples of the data, which
for most datasets holds for a horizontal ``flip`` (faces, objects, scenes; not digits or
text) and for little else. To fight discriminator overfitting without leaking, augment
*everything D sees*, reals and fakes alike, with :class:`ganforge.regularize.diffaugment.DiffAugment`.

Ops (registered in :data:`CLASSIC_OPS`, each ``op(x, p, gen) -> x`` on float [-1, 1] NCHW):

==============  ==========================================================================
``flip``        mirror left-right
``rotation``    rotate by U(-15, 15) degrees (bilinear, border padding)
``scale``       zoom by U(0.9, 1.1) about the centre (bilinear, border padding)
``contrast``    scale the deviation from the image mean by U(0.8, 1.2)
``crop``        random resized crop: a square of U(0.8, 1.0) of the area, resized back
``noise``       add Gaussian noise with sigma 0.02 (about 2.5 grey levels of 255)
==============  ==========================================================================

:class:`ClassicAugment` applies each op of a comma-separated spec to each image with
probability 1/2 (noise: always), then clamps to [-1, 1]. :class:`AugmentedLoader` wraps a
batch loader so every image tensor of each batch is augmented, and checkpoints both.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ganforge.core.registry import Registry

CLASSIC_OPS = Registry("dataset augmentation")

#: Per-image probability of each op in :class:`ClassicAugment`; ops not listed use 1/2.
OP_PROBABILITY: Dict[str, float] = {"noise": 1.0}
DEFAULT_PROBABILITY = 0.5

ROTATION_DEGREES = 15.0
SCALE_RANGE = (0.9, 1.1)
CONTRAST_RANGE = (0.8, 1.2)
CROP_AREA = (0.8, 1.0)
NOISE_SIGMA = 0.02


# --------------------------------------------------------------------------- helpers
def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _uniform(n: int, lo: float, hi: float, gen: Optional[torch.Generator],
             x: torch.Tensor) -> torch.Tensor:
    """``n`` draws of U(lo, hi) from ``gen`` (on its device), returned on ``x``'s device."""
    dev = gen.device if gen is not None else x.device
    u = torch.rand(n, generator=gen, device=dev).to(x.device)
    return lo + (hi - lo) * u


def _select(p: float, gen: Optional[torch.Generator], x: torch.Tensor) -> torch.Tensor:
    """Per-image bool mask (N, 1, 1, 1): which images the op applies to."""
    return (_uniform(x.shape[0], 0.0, 1.0, gen, x) < p).view(-1, 1, 1, 1)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample each image through its own 2x3 affine map (output -> input coordinates, in
    the [-1, 1] normalised frame of ``affine_grid``); border padding repeats edge pixels so
    no artificial black/grey corners appear."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _blend(mask: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # where(), not arithmetic blending: images not selected come back bit-identical.
    return torch.where(mask, y, x).contiguous(memory_format=_memory_format(x))


# --------------------------------------------------------------------------- ops
@CLASSIC_OPS.register("flip", help="mirror left-right (the safe one for most datasets)")
def flip(x: torch.Tensor, p: float, gen: Optional[torch.Generator]) -> torch.Tensor:
    return _blend(_select(p, gen, x), x.flip(3), x)


@CLASSIC_OPS.register("rotation", help="rotate by U(-15, 15) degrees; leaks into samples")
def rotation(x: torch.Tensor, p: float, gen: Optional[torch.Generator],
             degrees: float = ROTATION_DEGREES) -> torch.Tensor:
    n, _, h, w = x.shape
    mask = _select(p, gen, x)
    a = _uniform(n, -degrees, degrees, gen, x) * (math.pi / 180.0)
    cos, sin = a.cos(), a.sin()
    zero = torch.zeros_like(a)
    # A rotation in pixel space, written in affine_grid's normalised coordinates
    # (x_n = x / (W/2), y_n = y / (H/2)): the off-diagonal terms pick up the aspect ratio,
    # so non-square images rotate rigidly instead of shearing.
    theta = torch.stack([torch.stack([cos, -sin * (h / w), zero], 1),
                         torch.stack([sin * (w / h), cos, zero], 1)], 1)
    return _blend(mask, _warp(x, theta), x)


@CLASSIC_OPS.register("scale", help="zoom by U(0.9, 1.1) about the centre; leaks into samples")
def scale(x: torch.Tensor, p: float, gen: Optional[torch.Generator],
          zoom: Tuple[float, float] = SCALE_RANGE) -> torch.Tensor:
    n = x.shape[0]
    mask = _select(p, gen, x)
    inv = 1.0 / _uniform(n, zoom[0], zoom[1], gen, x)   # grid maps output -> input: 1/zoom
    zero = torch.zeros_like(inv)
    theta = torch.stack([torch.stack([inv, zero, zero], 1),
                         torch.stack([zero, inv, zero], 1)], 1)
    return _blend(mask, _warp(x, theta), x)


@CLASSIC_OPS.register("contrast", help="scale the deviation from the mean by U(0.8, 1.2); leaks")
def contrast(x: torch.Tensor, p: float, gen: Optional[torch.Generator],
             factor: Tuple[float, float] = CONTRAST_RANGE) -> torch.Tensor:
    n = x.shape[0]
    mask = _select(p, gen, x)
    k = _uniform(n, factor[0], factor[1], gen, x).to(x.dtype).view(n, 1, 1, 1)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return _blend(mask, (x - m) * k + m, x)


@CLASSIC_OPS.register("crop", help="random resized crop of 80-100% of the area; leaks")
def crop(x: torch.Tensor, p: float, gen: Optional[torch.Generator],
         area: Tuple[float, float] = CROP_AREA) -> torch.Tensor:
    """Take a crop covering a fraction U(area) of the image (same aspect ratio as the image)
    at a uniform position inside it, and resize it back to full size (bilinear)."""
    n = x.shape[0]
    mask = _select(p, gen, x)
    side = _uniform(n, area[0], area[1], gen, x).sqrt()        # side fraction of the crop
    # The crop's centre, in normalised coordinates, keeps the crop inside the image.
    ty = _uniform(n, -1.0, 1.0, gen, x) * (1.0 - side)
    tx = _uniform(n, -1.0, 1.0, gen, x) * (1.0 - side)
    zero = torch.zeros_like(side)
    theta = torch.stack([torch.stack([side, zero, tx], 1),
                         torch.stack([zero, side, ty], 1)], 1)
    return _blend(mask, _warp(x, theta), x)


@CLASSIC_OPS.register("noise", help="add Gaussian noise, sigma 0.02 (always applied); leaks")
def noise(x: torch.Tensor, p: float, gen: Optional[torch.Generator],
          sigma: float = NOISE_SIGMA) -> torch.Tensor:
    mask = _select(p, gen, x)
    dev = gen.device if gen is not None else x.device
    z = torch.randn(x.shape, generator=gen, device=dev).to(device=x.device, dtype=x.dtype)
    return _blend(mask, x + sigma * z, x)


# --------------------------------------------------------------------------- composition
class ClassicAugment:
    """Apply the ops of ``spec`` in order to a float [-1, 1] NCHW batch of *real* images
    (see the module docstring for why only ``flip`` is usually safe), then clamp to [-1, 1].

    Randomness comes only from the instance's own generator (on ``device``), which
    :meth:`state_dict` saves, so a resumed run sees the same augmented batches.
    """

    def __init__(self, spec: str, seed: int = 0, device: torch.device | str = "cpu"):
        self.names = CLASSIC_OPS.parse_list(spec)
        self.spec = ",".join(self.names)
        self._ops: List[Tuple[Callable[..., torch.Tensor], float]] = [
            (CLASSIC_OPS.get(n), OP_PROBABILITY.get(n, DEFAULT_PROBABILITY)) for n in self.names]
        self.seed = int(seed)
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(self.seed)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self._ops or x.shape[0] == 0:
            return x
        if x.dim() != 4 or not torch.is_floating_point(x):
            raise ValueError(f"ClassicAugment expects a float (N, C, H, W) image batch, got a "
                             f"{x.dim()}-D {x.dtype} tensor of shape {tuple(x.shape)}")
        fmt = _memory_format(x)
        for op, p in self._ops:
            x = op(x, p, self.gen)
        return x.clamp(-1.0, 1.0).contiguous(memory_format=fmt)

    def __repr__(self) -> str:
        return f"ClassicAugment({self.spec!r}, seed={self.seed})"

    def state_dict(self) -> Dict[str, Any]:
        return {"spec": self.spec, "gen": self.gen.get_state(), "gen_device": self.gen.device.type}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        if s.get("gen_device", self.gen.device.type) == self.gen.device.type:
            self.gen.set_state(s["gen"])
        else:
            warnings.warn(f"ClassicAugment: the checkpoint's random state is for "
                          f"{s['gen_device']}, this run augments on {self.gen.device.type}; "
                          f"augmentation randomness restarts from seed {self.seed}", stacklevel=2)


class AugmentedLoader:
    """Wrap a batch loader (``next()`` -> tuple, ``epoch_float``, ``state_dict()``,
    ``load_state_dict()``, e.g. :class:`~ganforge.data.batching.BatchLoader` or
    :class:`~ganforge.data.domains.TwoDomainLoader`) so that every 4-D floating tensor in
    each batch goes through ``augment``; labels and ``None`` pass through untouched.

    Any other attribute (``batch_size``, ``steps_per_epoch``, ...) is the inner loader's.
    """

    def __init__(self, loader: Any, augment: Callable[[torch.Tensor], torch.Tensor]):
        self.loader = loader
        self.augment = augment

    @staticmethod
    def _is_images(t: Any) -> bool:
        return isinstance(t, torch.Tensor) and t.dim() == 4 and torch.is_floating_point(t)

    def next(self) -> Any:
        batch = self.loader.next()
        if isinstance(batch, torch.Tensor):
            return self.augment(batch) if self._is_images(batch) else batch
        return tuple(self.augment(t) if self._is_images(t) else t for t in batch)

    @property
    def epoch_float(self) -> float:
        return self.loader.epoch_float

    def state_dict(self) -> Dict[str, Any]:
        aug_state = getattr(self.augment, "state_dict", None)
        return {"loader": self.loader.state_dict(),
                "augment": aug_state() if callable(aug_state) else None}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.loader.load_state_dict(s["loader"])
        if s.get("augment") is not None and hasattr(self.augment, "load_state_dict"):
            self.augment.load_state_dict(s["augment"])

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails. Guard our own fields so a half-built
        # instance (copy/unpickle) raises AttributeError instead of recursing forever.
        if name in ("loader", "augment") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __repr__(self) -> str:
        return f"AugmentedLoader({self.loader!r}, {self.augment!r})"
