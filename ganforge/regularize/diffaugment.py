"""Differentiable augmentation of everything the discriminator sees, real and fake.

With little data, D memorises the training set and its feedback to G stops being useful.
Augmenting only the reals would teach G to produce augmented images (the augmentation
"leaks"). DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training", §3) and ADA (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data", §2) instead apply the *same* random transformation family T to both reals and
fakes, in both D's and G's phases, and make T differentiable so G's gradient passes through
it. D then compares T(real) with T(G(z)); as long as T is invertible in distribution, matching
those means matching the originals.

Ops (registered in :data:`OPS`, each a pure function ``op(x, p, gen) -> x``):

====================  ======================================================================
``translation``       integer shift by up to 1/8 of the size per axis, zero-filled
``cutout``            zero a square of half the image side at a random position
``color``             brightness + U(-0.5, 0.5); saturation x U(0, 2); contrast x U(0.5, 1.5)
``flip``              ADA's xflip: an applied flip mirrors left-right with probability 1/2
====================  ======================================================================

Common contract of every op:

- ``x`` is a float (N, C, H, W) batch in [-1, 1], C = 1 or 3, any size; the result has the
  same shape, dtype, device and memory format (contiguous or channels_last). Outputs are not
  clamped (DiffAugment does not clamp either: D simply sees values slightly out of range).
- Each image is transformed independently with probability ``p`` (one Bernoulli draw per
  image per op); ``p = 1`` always applies, as DiffAugment does; images not selected come back
  bit-identical.
- The result is differentiable w.r.t. ``x``: only indexing, masking and arithmetic.
- All randomness comes from ``gen`` (a ``torch.Generator``; best on ``x``'s device, a CPU one
  also works at the cost of a small copy). Each call draws a fixed amount from it regardless
  of ``p``, so a run is reproducible and a checkpoint of the generator state resumes it.
- Vectorised over the batch: no Python loop over images.

:class:`DiffAugment` composes ops from a comma-separated policy (DiffAugment's default is
``"translation,cutout,color"``). :class:`ADA` adjusts ``p`` from D's outputs on real images;
the trainer copies ``ada.p`` into ``augment.p`` after each update.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from ganforge.core.registry import Registry

OPS = Registry("augmentation op")

#: Translation range as a fraction of the image size (DiffAugment's ``ratio=0.125``; ADA's
#: integer translation uses the same 0.125).
TRANSLATION_RATIO = 0.125
#: Cutout square side as a fraction of the image size (DiffAugment's ``ratio=0.5``).
CUTOUT_RATIO = 0.5


# --------------------------------------------------------------------------- helpers
def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last when ``x`` is laid out that way (and not also plain-contiguous, as a
    1-channel or 1x1 tensor can be), else contiguous."""
    cl = torch.channels_last
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=cl):
        return torch.channels_last
    return torch.contiguous_format


def _gen_device(gen: Optional[torch.Generator], x: torch.Tensor) -> torch.device:
    return gen.device if gen is not None else x.device


def _uniform(n: int, gen: Optional[torch.Generator], x: torch.Tensor) -> torch.Tensor:
    """``n`` draws of U(0, 1) from ``gen``, as float32 on ``x``'s device."""
    u = torch.rand(n, generator=gen, device=_gen_device(gen, x))
    return u.to(x.device)


def _bernoulli(n: int, p: float, gen: Optional[torch.Generator], x: torch.Tensor) -> torch.Tensor:
    """Per-image "apply this op" mask (bool, on ``x``'s device). Always draws ``n`` numbers,
    even for p = 0 or 1, so the stream advances by a fixed amount per call."""
    return _uniform(n, gen, x) < p


def _randint(low: int, high: int, n: int, gen: Optional[torch.Generator],
             x: torch.Tensor) -> torch.Tensor:
    """``n`` integers uniform in [low, high) (int64, on ``x``'s device)."""
    return torch.randint(low, high, (n,), generator=gen, device=_gen_device(gen, x)).to(x.device)


def _check(x: torch.Tensor) -> None:
    if x.dim() != 4 or not torch.is_floating_point(x):
        raise ValueError(f"augmentation expects a float (N, C, H, W) image batch, got a "
                         f"{x.dim()}-D {x.dtype} tensor of shape {tuple(x.shape)}")


# --------------------------------------------------------------------------- geometry
def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                 max_dy: Optional[int] = None, max_dx: Optional[int] = None) -> torch.Tensor:
    """Move image ``i`` down by ``dy[i]`` and right by ``dx[i]`` whole pixels (negative: up /
    left); pixels shifted in are 0. ``dy``/``dx`` are int tensors of length N; ``max_dy`` /
    ``max_dx`` bound their magnitudes (pass them to avoid a host sync computing them).

    Done as zero padding plus one gather of per-image row/column indices, so it is one
    vectorised (and differentiable) indexing op for the whole batch.
    """
    n, _, h, w = x.shape
    if n == 0:
        return x
    py = int(dy.abs().max()) if max_dy is None else int(max_dy)
    px = int(dx.abs().max()) if max_dx is None else int(max_dx)
    if py == 0 and px == 0:
        return x
    fmt = _memory_format(x)
    # Zero padding in [-1, 1] space is mid-grey, not black: DiffAugment pads with 0 in its
    # [-1, 1] images too, and since reals and fakes get the same fill D learns nothing
    # from its value.
    xp = F.pad(x, (px, px, py, py))
    dy, dx = dy.to(x.device), dx.to(x.device)
    # Output pixel (r, c) reads input (r - dy, c - dx), i.e. padded (r - dy + py, c - dx + px).
    rows = torch.arange(h, device=x.device)[None, :] + py - dy[:, None]      # (N, H)
    cols = torch.arange(w, device=x.device)[None, :] + px - dx[:, None]      # (N, W)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = xp[idx_n, :, rows[:, :, None], cols[:, None, :]]                   # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=fmt)


def erase_squares(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size_h: int,
                  size_w: int, apply: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Zero the ``size_h`` x ``size_w`` rectangle whose top-left corner is
    (``top[i]``, ``left[i]``) in image ``i`` (corners may lie outside the image: only the
    overlap is erased); ``apply`` (bool, N) limits it to some images."""
    n, _, h, w = x.shape
    r = torch.arange(h, device=x.device)[None, :]
    c = torch.arange(w, device=x.device)[None, :]
    top, left = top.to(x.device)[:, None], left.to(x.device)[:, None]
    in_r = (r >= top) & (r < top + size_h)                                   # (N, H)
    in_c = (c >= left) & (c < left + size_w)                                 # (N, W)
    hole = in_r[:, :, None] & in_c[:, None, :]                               # (N, H, W)
    if apply is not None:
        hole = hole & apply.to(x.device)[:, None, None]
    keep = (~hole).to(x.dtype)[:, None]                                      # (N, 1, H, W)
    # A multiply (not masked assignment) keeps the op out-of-place and differentiable; the
    # gradient is zero inside the hole, as it should be.
    return (x * keep).contiguous(memory_format=_memory_format(x))


# --------------------------------------------------------------------------- ops
@OPS.register("translation", help="integer shift by up to 1/8 of the size, zero-filled "
                                  "(DiffAugment, ADA)")
def translation(x: torch.Tensor, p: float, gen: Optional[torch.Generator],
                ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each selected image by integers uniform in [-s, s] per axis, where
    ``s = round(ratio * size)`` (4 px for 28 and 32 px images at ratio 1/8); zero fill.

    Draws: the mask, then N row shifts, then N column shifts. A zero shift in both axes is
    possible (probability 1/(2s+1)^2), as in DiffAugment.
    """
    _check(x)
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    apply = _bernoulli(n, p, gen, x).long()
    dy = _randint(-sy, sy + 1, n, gen, x) * apply
    dx = _randint(-sx, sx + 1, n, gen, x) * apply
    return shift_images(x, dy, dx, sy, sx)


@OPS.register("cutout", help="zero a square of half the image side at a random position "
                             "(DeVries & Taylor 2017; DiffAugment)")
def cutout(x: torch.Tensor, p: float, gen: Optional[torch.Generator],
           ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero an ``s_h x s_w`` square (``s = round(ratio * size)``) in each selected image.

    The square's centre is uniform over the image positions (one extra position for even
    sides, so the square may stick out by half on either edge symmetrically), the placement
    DiffAugment uses; the square is clipped to the image, so at least half of it is visible.
    Draws: the mask, then N centre rows, then N centre columns.
    """
    _check(x)
    n, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    apply = _bernoulli(n, p, gen, x)
    cy = _randint(0, h + (1 - sh % 2), n, gen, x)
    cx = _randint(0, w + (1 - sw % 2), n, gen, x)
    return erase_squares(x, cy - sh // 2, cx - sw // 2, sh, sw, apply)


@OPS.register("color", help="brightness +U(-0.5,0.5), saturation xU(0,2), contrast "
                            "xU(0.5,1.5) (DiffAugment)")
def color(x: torch.Tensor, p: float, gen: Optional[torch.Generator]) -> torch.Tensor:
    """DiffAugment's colour transform, in its order and with its ranges (on [-1, 1] images):

    - brightness: add ``b ~ U(-0.5, 0.5)`` to every pixel;
    - saturation: scale each pixel's deviation from its own channel mean by ``U(0, 2)``
      (0 = grey, 2 = doubly saturated); a no-op on 1-channel images, whose deviation is 0;
    - contrast: scale the deviation from the image's mean (over C, H, W) by ``U(0.5, 1.5)``.

    One mask decides, per image, whether the whole colour op applies (so ``p`` is the
    probability that the op touches an image). Draws: the mask, then N of each factor.
    """
    _check(x)
    n, c = x.shape[:2]
    apply = _bernoulli(n, p, gen, x)
    shape = (n, 1, 1, 1)
    b = (_uniform(n, gen, x) - 0.5).to(x.dtype).view(shape)
    s = (_uniform(n, gen, x) * 2.0).to(x.dtype).view(shape)
    k = (_uniform(n, gen, x) + 0.5).to(x.dtype).view(shape)
    y = x + b
    if c > 1:
        m = y.mean(dim=1, keepdim=True)
        y = (y - m) * s + m
    m = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - m) * k + m
    # where() rather than blending factors towards 1 keeps unselected images bit-identical.
    return torch.where(apply.view(shape), y, x).contiguous(memory_format=_memory_format(x))


@OPS.register("flip", help="ADA's xflip: when applied, mirror left-right with probability 1/2")
def flip(x: torch.Tensor, p: float, gen: Optional[torch.Generator]) -> torch.Tensor:
    """ADA's ``xflip`` (Karras et al. 2020, the first op of its pipeline): each selected
    image is mirrored with probability 1/2, so a fraction ``p/2`` of the batch ends up mirrored.

    The 1/2 is what makes it non-leaking: a mixture ``(1 - q) I + q M`` of identity and mirror
    is invertible in distribution for every ``q != 1/2``, and ``q = p/2 < 1/2`` for p < 1.
    Flipping every selected image instead would hit ``q = 1/2`` at p = 0.5, where G could
    produce any mix of a distribution and its mirror image without D noticing.
    Draws: the mask, then N coins.
    """
    _check(x)
    n = x.shape[0]
    apply = _bernoulli(n, p, gen, x)
    coin = _uniform(n, gen, x) < 0.5
    sel = (apply & coin).view(n, 1, 1, 1)
    return torch.where(sel, x.flip(3), x).contiguous(memory_format=_memory_format(x))


# --------------------------------------------------------------------------- policy
class DiffAugment:
    """Apply a policy of differentiable ops to a batch; call it on every batch D sees.

    >>> aug = DiffAugment("translation,cutout,color", p=1.0, seed=0)
    >>> d_real, d_fake = D(aug(x_real)), D(aug(G(z)))              # doctest: +SKIP

    The same instance serves real and fake batches; each call draws fresh randomness from the
    instance's own generator (on ``device``), so reals and fakes get independent transforms,
    as in DiffAugment. ``p`` (settable, e.g. from :class:`ADA`) is the per-image, per-op
    probability; ``p = 0`` returns ``x`` itself without drawing anything.

    :meth:`state_dict` holds the policy, ``p`` and the generator state: checkpoint it so a
    resumed run draws the same transforms as one that never stopped.
    """

    def __init__(self, policy: str = "translation,cutout,color", p: float = 1.0, seed: int = 0,
                 device: torch.device | str = "cpu"):
        self.names = OPS.parse_list(policy)
        self.policy = ",".join(self.names)
        self._ops: List[Callable[..., torch.Tensor]] = [OPS.get(n) for n in self.names]
        self.p = p
        self.seed = int(seed)
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(self.seed)

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        v = float(value)
        if not 0.0 <= v <= 1.0 or math.isnan(v):
            raise ValueError(f"augmentation probability p must be in [0, 1], got {value!r}")
        self._p = v

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._p == 0.0 or not self._ops:
            return x
        for op in self._ops:
            x = op(x, self._p, self.gen)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment(policy={self.policy!r}, p={self._p:g}, seed={self.seed})"

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"policy": self.policy, "p": self._p, "gen": self.gen.get_state(),
                "gen_device": self.gen.device.type}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.p = s["p"]
        if s.get("gen_device", self.gen.device.type) == self.gen.device.type:
            self.gen.set_state(s["gen"])
        else:
            # CPU and CUDA generators have different state formats (and streams), so the
            # draws cannot continue exactly on another device type anyway; keep our own seed.
            warnings.warn(f"DiffAugment: the checkpoint's augmentation random state is for "
                          f"{s['gen_device']}, this run augments on {self.gen.device.type}; "
                          f"augmentation randomness restarts from seed {self.seed}",
                          stacklevel=2)
        if s.get("policy", self.policy) != self.policy:
            warnings.warn(f"DiffAugment: the checkpoint used policy '{s['policy']}', this run "
                          f"uses '{self.policy}'", stacklevel=2)


# --------------------------------------------------------------------------- ADA
class ADA:
    """Adaptive discriminator augmentation: tune the augmentation probability ``p`` from how
    confidently D calls the training images real (Karras et al. 2020, §3).

    The overfitting heuristic is ``r_t = E[sign(D(x_real))]`` over D's raw logits on the
    (augmented) training reals seen since the last update. The sign makes it scale-free: it
    depends neither on the loss nor on how large D's logits grow, only on which side of the
    decision boundary each real falls, so ``r_t = 2 P(D(x) > 0) - 1``. ``r_t = 0`` means D
    cannot tell training reals apart from fakes; ``r_t -> 1`` means D calls every training
    image real with certainty, the sign of overfitting (it then fails on held-out reals).

    ``target`` (the paper's 0.6, i.e. 80 % of reals on the "real" side) is the value of
    ``r_t`` to hold. Every ``interval`` D steps (the paper: 4 minibatches), ``p`` moves by
    ``sign(r_t - target) * batch_size * interval / speed_images``, so ``p`` can go from 0 to 1
    in ``speed_images`` images (the paper: 500k), then is clamped to ``[0, p_max]``.

    Usage, in D's phase::

        d_real = D(augment(x_real))
        ada.observe(d_real)                         # no host sync
        augment.p = ada.maybe_update(batch_size)    # one .item() every ``interval`` calls

    With several processes, pass the *global* batch size and all-reduce the accumulated sum
    and count before an update, so every rank ends with the same ``p``.

    ``p`` is training state: log it (it shows how much D overfits) and restore it on resume
    (:meth:`state_dict`); a run resumed at p = 0 would overfit again before ADA caught up.

    The ops driven by ADA must be *non-leaking*: applied with probability p < 1, the identity
    stays in the mixture and every op here is invertible in distribution, so matching the
    augmented distributions still means matching the clean ones. Karras et al. (§2)
    found leaks only appear once p exceeds about 0.8; ``p_max`` can cap it below that.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, speed_images: int = 500_000,
                 p_init: float = 0.0, p_max: float = 1.0):
        if not -1.0 < target < 1.0:
            raise ValueError(f"ADA target must be in (-1, 1) (it is a value of "
                             f"E[sign(D(real))]; the paper uses 0.6), got {target!r}")
        if int(interval) != interval or interval < 1:
            raise ValueError(f"ADA interval must be a whole number of D steps >= 1, "
                             f"got {interval!r}")
        if speed_images <= 0:
            raise ValueError(f"ADA speed_images must be > 0 (images for p to go 0 -> 1; the "
                             f"paper uses 500000), got {speed_images!r}")
        if not 0.0 <= p_max <= 1.0:
            raise ValueError(f"ADA p_max must be in [0, 1], got {p_max!r}")
        if not 0.0 <= p_init <= p_max:
            raise ValueError(f"ADA p_init must be in [0, p_max={p_max}], got {p_init!r}")
        self.target = float(target)
        self.interval = int(interval)
        self.speed_images = float(speed_images)
        self.p_max = float(p_max)
        self._p = float(p_init)
        self._r_t: Optional[float] = None
        self._calls = 0                       # maybe_update calls so far
        self._sum: float | torch.Tensor = 0.0  # sum of sign(logit) since the last update
        self._count = 0                       # number of logits in that sum (known on host)

    @property
    def p(self) -> float:
        """The current augmentation probability."""
        return self._p

    @property
    def r_t(self) -> Optional[float]:
        """The overfitting heuristic at the last update (None before the first), for logs."""
        return self._r_t

    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate ``sign(D(x_real))``. Stays on the logits' device: no host sync."""
        s = real_logits.detach().float().sign().sum()
        self._sum = self._sum + s
        self._count += real_logits.numel()

    def maybe_update(self, batch_size: int,
                     reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> float:
        """Count one D step; every ``interval`` steps, update and return ``p`` (else return it
        unchanged). ``batch_size`` is the number of real images per D step (the global batch
        under DDP). ``reduce`` sums a tensor over processes (an all-reduce) so that every
        process computes r_t from all processes' logits and keeps the same p."""
        self._calls += 1
        if self._calls % self.interval or self._count == 0:
            return self._p
        s = self._sum if isinstance(self._sum, torch.Tensor) else torch.tensor(float(self._sum))
        both = torch.stack([s.float().reshape(()), torch.tensor(float(self._count), device=s.device)])
        if reduce is not None:
            both = reduce(both)
        total, count = both.tolist()
        r_t = total / count
        self._r_t = r_t
        step = batch_size * self.interval / self.speed_images
        self._p = min(max(self._p + _sign(r_t - self.target) * step, 0.0), self.p_max)
        self._sum, self._count = 0.0, 0
        return self._p

    def __repr__(self) -> str:
        return (f"ADA(p={self._p:.4f}, r_t={self._r_t}, target={self.target}, "
                f"interval={self.interval}, speed_images={self.speed_images:g})")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        total = self._sum.item() if isinstance(self._sum, torch.Tensor) else float(self._sum)
        return {"p": self._p, "r_t": self._r_t, "calls": self._calls, "sum": total,
                "count": self._count}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self._p = min(max(float(s["p"]), 0.0), self.p_max)
        self._r_t = None if s.get("r_t") is None else float(s["r_t"])
        self._calls = int(s.get("calls", 0))
        self._sum = float(s.get("sum", 0.0))
        self._count = int(s.get("count", 0))


def _sign(v: float) -> float:
    return (v > 0) - (v < 0)
