"""Gaussian noise for generators: seeded draws, the truncation trick, and paths through it.

- :func:`truncate_` / :func:`truncated_randn`: the truncation trick of BigGAN (Brock et al.
  2019, "Large Scale GAN Training for High Fidelity Natural Image Synthesis", §3.1): every
  component of ``z ~ N(0, I)`` whose magnitude exceeds the threshold ``psi`` is resampled until
  all lie in ``[-psi, psi]``. Smaller ``psi`` trades variety for fidelity. Seeded and
  deterministic: the same generator state gives the same noise.
- :func:`slerp` / :func:`lerp`: spherical and linear interpolation between noise vectors.
  Gaussian noise in many dimensions lives near a sphere of radius sqrt(d); the straight line
  between two such points passes closer to the origin (images the generator rarely saw), the
  great circle does not (White 2016, "Sampling Generative Networks").

Pure torch, no run or model: the tasks' use-time faces (:mod:`ganforge.training.tasks`) draw their
noise here, which is why this module sits below ``tasks`` in the layers.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ganforge.core.errors import UserError

#: interpolation modes of :func:`interpolate_noise`
MODES = ("slerp", "lerp")


def check_truncation(psi: Optional[float]) -> Optional[float]:
    """``psi`` as a float (None stays None: no truncation). Raises :class:`UserError` unless
    it is a finite number > 0."""
    if psi is None:
        return None
    try:
        value = float(psi)
    except (TypeError, ValueError):
        raise UserError(f"truncation={psi!r}: use a number > 0 (e.g. 0.7) or None") from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"truncation={psi}: use a number > 0 (e.g. 0.7; smaller: less variety, "
                        f"cleaner images) or None for none")
    return value


#: redraw rounds before the components still outside ``[-psi, psi]`` are drawn by inversion
MAX_REDRAWS = 1000


def truncate_(z: torch.Tensor, psi: float, generator: torch.Generator) -> torch.Tensor:
    """Truncate ``z`` (CPU) to ``[-psi, psi]`` in place: each component with ``|z| > psi`` is
    redrawn from N(0, 1) (with ``generator``) until it lies inside, the truncation trick of
    Brock et al. 2019 (BigGAN, section 3.1); returns ``z``. A component still outside after
    :data:`MAX_REDRAWS` rounds (only for psi below about 0.02, where redrawing takes
    thousands of rounds: a psi of 1e-9 took days) is drawn from the same truncated normal by
    inversion, ``sqrt(2) erfinv(u erf(psi / sqrt(2)))`` with ``u ~ U(-1, 1)`` in float64, so
    every psi > 0 finishes at once. For psi >= 0.02 the draws are those of ganforge 0.2
    (the same values for the same seed); a psi no draw exceeds changes nothing."""
    psi = check_truncation(psi)
    flat = z.view(-1) if z.is_contiguous() else z.reshape(-1)
    idx = (flat.abs() > psi).nonzero().flatten()
    for _ in range(MAX_REDRAWS):
        if len(idx) == 0:
            break
        draw = torch.randn(len(idx), generator=generator, dtype=z.dtype)
        flat[idx] = draw
        idx = idx[draw.abs() > psi]      # the positions still outside, in the same order
    if len(idx):
        u = torch.rand(len(idx), generator=generator, dtype=torch.float64) * 2 - 1
        inside = math.sqrt(2) * torch.erfinv(u * math.erf(psi / math.sqrt(2)))
        flat[idx] = inside.clamp_(-psi, psi).to(z.dtype)
    if flat.data_ptr() != z.data_ptr():
        z.copy_(flat.view_as(z))
    return z


def truncated_randn(n: int, dim: int, psi: Optional[float] = None, *, seed: int = 0,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """float32 (n, dim) CPU noise from N(0, I); with ``psi``, truncated to ``[-psi, psi]``
    (see :func:`truncate_`). ``generator`` (continued) or a fresh one seeded ``seed``."""
    g = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, dim, generator=g)
    return z if psi is None else truncate_(z, psi, g)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """``(1 - t) a + t b``."""
    return a + (b - a) * float(t)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation between vectors ``a`` and ``b`` (same shape) at ``t`` in [0, 1]:
    along the great circle through them, with the norm moving linearly from |a| to |b|, so
    every point's norm lies between the endpoints'. (Anti)parallel vectors fall back to
    :func:`lerp` of the directions."""
    t = float(t)
    if t == 0.0 or t == 1.0:          # the endpoints exactly (frame 0 = the seed's own sample)
        return (a if t == 0.0 else b).clone()
    na, nb = a.norm(), b.norm()
    if na < eps or nb < eps:
        return lerp(a, b, t)
    ua, ub = a / na, b / nb
    cos = torch.clamp((ua * ub).sum(), -1.0, 1.0)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        u = lerp(ua, ub, t)
        u = u / u.norm().clamp_min(eps)
    else:
        u = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
    return u * ((1 - t) * na + t * nb)


def loop_positions(points: int, frames: int) -> list:
    """``(segment, t)`` for a closed loop through ``points`` points in at least ``frames`` steps:
    ceil(frames / points) steps per segment, ``t`` in [0, 1) (each point shown once)."""
    per = max(1, math.ceil(frames / points))
    return [(s, i / per) for s in range(points) for i in range(per)]


def interpolate_noise(zs: torch.Tensor, frames: int, mode: str = "slerp") -> torch.Tensor:
    """A closed loop through the rows of ``zs`` (k, d): at least ``frames`` rows, the first
    being ``zs[0]``; ``mode`` ``slerp`` (default) or ``lerp``. One row: it, ``frames`` times.
    Raises :class:`UserError` for another mode or frames < 1."""
    if mode not in MODES:
        raise UserError(f"mode={mode!r}: use one of {', '.join(MODES)}")
    if frames < 1:
        raise UserError(f"frames={frames}: ask for at least 1 frame")
    k = zs.shape[0]
    if k == 1:
        return zs.repeat(frames, *([1] * (zs.dim() - 1)))
    f = slerp if mode == "slerp" else lerp
    return torch.stack([f(zs[s], zs[(s + 1) % k], t) for s, t in loop_positions(k, frames)])
