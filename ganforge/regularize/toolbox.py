"""What the config switches on around a discriminator, in one object every task uses.

A task (gan, conditional, cyclegan) owns one :class:`DToolbox` per run and calls it at three
points of its D and G losses; nothing else in the task changes with the regularisers:

* ``real = tb.real(batch_images)`` at the start of a D step: marks the real batch for the
  input gradient when lazy R1 is due this step;
* ``tb.view(x)`` on every batch D sees, real and fake, in D's *and* G's phase: instance noise
  (annealed to 0) then differentiable augmentation (DiffAugment policy; ADA's adaptive p).
  Augmenting in both phases is what makes it safe: G is trained through the same transform D
  sees, so the transform does not leak into the samples (Zhao et al. 2020, §3);
* ``extra, logs = tb.d_extra(real, real_logits, fake, critic)`` after D's adversarial loss:
  the R1 term ``gamma/2 * E||grad D(x)||^2`` every ``r1_every`` D steps scaled by
  ``r1_every`` (StyleGAN2's lazy regularisation), the WGAN-GP term, ADA's bookkeeping, and
  D's accuracy (for the divergence guard).

State (D-step counter, augmentation RNG, ADA's p) is checkpointed through the task.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

from ganforge.config import ConfigError
from ganforge.distributed import SINGLE, DistInfo
from ganforge.losses import d_accuracy
from ganforge.regularize import penalties
from ganforge.regularize.augment import ADA, DiffAugment


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class DToolbox:
    def __init__(self, cfg, *, device: torch.device, seed: int, dist: DistInfo = SINGLE):
        r, a = cfg.reg, cfg.aug
        for key, v in (("reg.r1", r.r1), ("reg.gp", r.gp), ("reg.instance_noise", r.instance_noise)):
            if v < 0:
                raise ConfigError(f"{key}={v}: must be >= 0 (0 switches it off)")
        if r.r1_every < 1:
            raise ConfigError(f"reg.r1_every={r.r1_every}: must be >= 1 (1: R1 on every D step)")
        self.r1_gamma, self.r1_every = float(r.r1), int(r.r1_every)
        self.gp = float(r.gp)
        self.noise0, self.noise_steps = float(r.instance_noise), int(r.instance_noise_steps)
        self.total_steps = 0          # the run's length, for the default noise anneal
        self.dist = dist
        self.d_steps = 0              # D steps taken (lazy R1, noise anneal)
        self.augment = None
        self.ada = None
        if a.diffaug or a.ada:
            # ADA's default pipeline: flips, translations and colour, each applied per image
            # with probability p (all invertible in distribution while p stays below ~0.8).
            policy = a.diffaug or "flip,translation,color"
            try:
                self.augment = DiffAugment(policy, p=0.0 if a.ada else 1.0,
                                           seed=seed + 11 + dist.rank, device=device)
                if a.ada:
                    self.ada = ADA(target=a.ada_target, interval=a.ada_interval,
                                   speed_images=a.ada_speed)
            except ValueError as e:
                raise ConfigError(f"aug: {e}") from None
        self.noise_gen = torch.Generator(device=device).manual_seed(seed + 13 + dist.rank)
        self._r1_due = False

    def check_discriminator(self, D: nn.Module, name: str = "D") -> None:
        """The gradient penalty is defined per sample; BatchNorm couples the samples of a batch
        (Gulrajani et al. drop it from the critic), so the combination is refused."""
        if self.gp > 0 and has_batchnorm(D):
            raise ConfigError(f"reg.gp (WGAN-GP) needs a discriminator without BatchNorm, and {name} "
                              f"({type(D).__name__}) has BatchNorm; use model.name=resnet or mlp, or "
                              f"reg.spectral_norm=true / reg.r1 instead of the gradient penalty")

    # ------------------------------------------------------------------ D's inputs
    @property
    def noise_std(self) -> float:
        if self.noise0 <= 0:
            return 0.0
        steps = self.noise_steps or self.total_steps or 1
        return penalties.instance_noise_std(self.d_steps, self.noise0, steps)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """What D sees of a batch (real or fake): instance noise, then augmentation."""
        std = self.noise_std
        if std > 0:
            x = penalties.add_instance_noise(x, std, generator=self.noise_gen)
        if self.augment is not None:
            x = self.augment(x)
        return x

    def real(self, x: torch.Tensor) -> torch.Tensor:
        """The real batch of a D step; requires grad when this step computes R1."""
        self._r1_due = self.r1_gamma > 0 and self.d_steps % self.r1_every == 0
        if self._r1_due:
            x = x.detach().requires_grad_(True)
        return x

    # ------------------------------------------------------------------ D's extra terms
    def d_extra(self, real: torch.Tensor, real_logits: torch.Tensor, fake: torch.Tensor,
                fake_logits: torch.Tensor, critic: Callable[[torch.Tensor], torch.Tensor]
                ) -> Tuple[Optional[torch.Tensor], Dict[str, torch.Tensor]]:
        """Penalties to add to D's loss this step (None: nothing) and statistics to log.
        ``real`` is what :meth:`real` returned; ``real_logits`` are D's logits on
        ``view(real)``; ``critic`` maps images to D's logits (``lambda x: D(x, y)`` when
        conditional)."""
        logs: Dict[str, torch.Tensor] = {"acc_D": d_accuracy(real_logits, fake_logits)}
        extra = None
        if self._r1_due:
            r1 = penalties.r1_penalty(real_logits, real)
            extra = (0.5 * self.r1_gamma * self.r1_every) * r1
            logs["r1"] = r1.detach()
        if self.gp > 0:
            gp = penalties.gradient_penalty(critic, real.detach(), fake.detach())
            extra = self.gp * gp if extra is None else extra + self.gp * gp
            logs["gp"] = gp.detach()
        if self.ada is not None:
            self.ada.observe(real_logits)
            self.augment.p = self.ada.maybe_update(real.shape[0] * self.dist.world_size,
                                                   reduce=self._sum_over_processes)
            logs["aug_p"] = torch.tensor(self.augment.p, device=real_logits.device)
        if self.noise0 > 0:
            logs["noise_std"] = torch.tensor(self.noise_std, device=real_logits.device)
        self.d_steps += 1
        return extra, logs

    def _sum_over_processes(self, t: torch.Tensor) -> torch.Tensor:
        if self.dist.enabled:
            import torch.distributed as dist
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"d_steps": self.d_steps, "noise_gen": self.noise_gen.get_state(),
                "augment": self.augment.state_dict() if self.augment is not None else None,
                "ada": self.ada.state_dict() if self.ada is not None else None}

    def load_state_dict(self, s: Optional[Dict[str, Any]]) -> None:
        if not s:
            return
        self.d_steps = int(s["d_steps"])
        self.noise_gen.set_state(s["noise_gen"])
        if self.augment is not None and s.get("augment"):
            self.augment.load_state_dict(s["augment"])
        if self.ada is not None and s.get("ada"):
            self.ada.load_state_dict(s["ada"])
            self.augment.p = self.ada.p
