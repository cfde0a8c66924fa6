"""A history of generated images for the discriminator (Shrivastava et al. 2017, §2.3; used by
CycleGAN, Zhu et al. 2017, §4 "Training details": "we update the discriminators using a history
of generated images rather than the ones produced by the latest generators. We keep an image
buffer that stores the 50 previously created images").

Semantics (those of the authors' ``ImagePool.query``), per image of the incoming batch, in
order:

- while the pool holds fewer than ``size`` images, the image is stored and returned as is;
- once full, with probability ½ a uniformly chosen stored image is returned and the new image
  takes its slot; otherwise the new image is returned and the pool is unchanged.

So D sees a mix of current and older fakes, which damps oscillation between G and D.
``size = 0`` disables the pool (``query`` returns its input).

The pool's images and its own random stream are part of :meth:`state_dict`, so a resumed run
draws exactly the same history as one that never stopped. Images are stored detached.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch


class ImagePool:
    def __init__(self, size: int = 50, seed: int = 0):
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"image pool size must be a whole number >= 0 (0: off), got {size!r}")
        self.size = size
        self.count = 0                                  # images stored so far (<= size)
        self.images: Optional[torch.Tensor] = None      # (size, C, H, W), allocated lazily
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.count

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The batch D should see for these freshly generated ``images`` (same shape)."""
        if self.size == 0:
            return images.detach()
        images = images.detach()
        n = images.shape[0]
        if self.images is None or self.images.shape[1:] != images.shape[1:] \
                or self.images.device != images.device or self.images.dtype != images.dtype:
            if self.images is not None and self.images.shape[1:] != images.shape[1:]:
                raise ValueError(f"image pool holds {tuple(self.images.shape[1:])} images, "
                                 f"got a batch of {tuple(images.shape[1:])}")
            buf = torch.empty((self.size, *images.shape[1:]), dtype=images.dtype,
                              device=images.device)
            if self.images is not None and self.count:
                buf[:self.count] = self.images[:self.count].to(buf)
            self.images = buf
        # One draw per image whether it is used or not, so the stream advances by a fixed
        # amount per batch (simple to reason about across resumes).
        coins = torch.rand(n, generator=self.gen).tolist()
        slots = torch.randint(0, self.size, (n,), generator=self.gen).tolist()
        out = images.clone()
        for i in range(n):
            if self.count < self.size:
                self.images[self.count] = images[i]
                self.count += 1
            elif coins[i] > 0.5:
                j = slots[i]
                out[i] = self.images[j]
                self.images[j] = images[i]
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        imgs = None if self.images is None else self.images[:self.count].detach().cpu().clone()
        return {"size": self.size, "count": self.count, "images": imgs,
                "gen": self.gen.get_state()}

    def load_state_dict(self, s: Dict[str, Any], device: torch.device | str | None = None) -> None:
        if int(s["size"]) != self.size:
            raise ValueError(f"image pool: the checkpoint's pool has size {s['size']}, this "
                             f"run's has {self.size}; resume with the same cyclegan.pool_size")
        self.gen.set_state(s["gen"])
        self.count = int(s["count"])
        imgs = s["images"]
        if imgs is None or self.count == 0:
            self.images = None
            self.count = 0
            return
        dev = device if device is not None else imgs.device
        self.images = torch.empty((self.size, *imgs.shape[1:]), dtype=imgs.dtype, device=dev)
        self.images[:self.count] = imgs.to(dev)
