"""What the config switches on around a discriminator, in one object every task uses.

A task (gan, conditional, cyclegan) owns one :class:`DToolbox` per run and calls it at four
points of its D and G losses; nothing else in the task changes with the regularisers:

* ``real = tb.real(batch_images)`` at the start of a D step: marks the real batch for the
  input gradient when lazy R1 is due this step (and decides whether R1/R2 are due);
* ``fake = tb.fake(generated)`` on the (detached) generated batch of that D step, after
  ``tb.real``: marks it for the input gradient when lazy R2 is due; D must then see *this*
  tensor (through ``view``, a concatenation with the reals, ...), not another copy;
* ``tb.view(x)`` on every batch D sees, real and fake, in D's *and* G's phase: instance noise
  (annealed to 0) then differentiable augmentation (DiffAugment policy; ADA's adaptive p).
  Augmenting in both phases is what makes it safe: G is trained through the same transform D
  sees, so the transform does not leak into the samples (Zhao et al. 2020, §3);
* ``extra, logs = tb.d_extra(real, real_logits, fake, critic)`` after D's adversarial loss:
  the R1 term ``gamma/2 * E||grad D(x)||^2`` on real data and the R2 term (the same on the
  generated batch, ``reg.r2``'s gamma) every ``r1_every`` D steps scaled by ``r1_every``
  (StyleGAN2's lazy regularisation; one interval for both, so R3GAN's R1 + R2 fall on the
  same steps), the WGAN-GP term, ADA's bookkeeping, and D's accuracy (for the divergence
  guard). Logged as ``r1`` and ``r2`` (the bare expectations) on the steps that compute them.
  A self-supervised D (``D.self_supervised``, e.g. ``--model fastgan``) also gets its
  reconstruction loss on the real batch it just judged (``reg.d_recon`` times
  ``D.reconstruction_loss(view(real))``, logged as ``recon``): the toolbox remembers which
  view of the batch from :meth:`real` D saw, so the tasks pass nothing more.

State (D-step counter, augmentation RNG, ADA's p) is checkpointed through the task.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

from ganforge.core.config import AugConfig, ConfigError, RegConfig
from ganforge.core.distributed import SINGLE, DistInfo
from ganforge.losses.adversarial import d_accuracy
from ganforge.regularize import penalties
from ganforge.regularize.diffaugment import ADA, DiffAugment


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class DToolbox:
    """The regularisers (``reg``: :class:`ganforge.core.config.RegConfig`) and augmentation
    (``aug``: :class:`~ganforge.core.config.AugConfig`) of one discriminator, their values
    already in their keys' ranges (the config schema checks them). ``seed`` (+ the process's
    rank) seeds the augmentation and instance-noise streams on ``device``."""

    def __init__(self, reg: RegConfig, aug: AugConfig, *, device: torch.device, seed: int,
                 dist: DistInfo = SINGLE):
        r, a = reg, aug
        self.r1_gamma, self.r1_every = float(r.r1), int(r.r1_every)
        self.r2_gamma = float(r.r2)
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
        self._r2_due = False
        self.d_recon = float(r.d_recon)
        self._ssl_d: Optional[nn.Module] = None   # a D with reconstruction_loss(x), if any
        self._real: Optional[torch.Tensor] = None        # this D step's batch from real()
        self._real_view: Optional[torch.Tensor] = None   # ... and what D saw of it (view)

    def check_discriminator(self, D: nn.Module, name: str = "D") -> None:
        """The gradient penalty is defined per sample; BatchNorm couples the samples of a batch
        (Gulrajani et al. drop it from the critic), so the combination is refused. Also
        remembers a self-supervised D, whose reconstruction loss :meth:`d_extra` adds."""
        if self.d_recon > 0 and getattr(D, "self_supervised", False):
            self._ssl_d = D
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
        out, std = x, self.noise_std
        if std > 0:
            out = penalties.add_instance_noise(out, std, generator=self.noise_gen)
        if self.augment is not None:
            out = self.augment(out)
        if self._real is not None and x is self._real:   # what D sees of this step's reals
            self._real_view = out
        return out

    def real(self, x: torch.Tensor) -> torch.Tensor:
        """The real batch of a D step; requires grad when this step computes R1. Called first
        in every D step: it decides whether the lazy R1 and R2 terms are due this step."""
        due = self.d_steps % self.r1_every == 0
        self._r1_due = self.r1_gamma > 0 and due
        self._r2_due = self.r2_gamma > 0 and due
        if self._r1_due:
            x = x.detach().requires_grad_(True)
        if self._ssl_d is not None:
            self._real, self._real_view = x, None
        return x

    def fake(self, x: torch.Tensor) -> torch.Tensor:
        """The generated batch of a D step (call after :meth:`real`): a detached copy that
        requires grad when this step computes R2, else ``x`` itself (unchanged, so reg.r2=0
        changes nothing). Pass what this returns to D and to :meth:`d_extra`."""
        if self._r2_due:
            x = x.detach().requires_grad_(True)
        return x

    # ------------------------------------------------------------------ D's extra terms
    def d_extra(self, real: torch.Tensor, real_logits: torch.Tensor, fake: torch.Tensor,
                fake_logits: torch.Tensor, critic: Callable[[torch.Tensor], torch.Tensor]
                ) -> Tuple[Optional[torch.Tensor], Dict[str, torch.Tensor]]:
        """Penalties to add to D's loss this step (None: nothing) and statistics to log.
        ``real`` and ``fake`` are what :meth:`real` and :meth:`fake` returned; ``real_logits``
        and ``fake_logits`` are D's logits on ``view(real)`` and ``view(fake)``; ``critic``
        maps images to D's logits (``lambda x: D(x, y)`` when conditional). Raises
        RuntimeError when R2 is due and ``fake`` does not come from :meth:`fake`."""
        logs: Dict[str, torch.Tensor] = {"acc_D": d_accuracy(real_logits, fake_logits)}
        extra = None
        if self._r1_due:
            r1 = penalties.r1_penalty(real_logits, real)
            extra = (0.5 * self.r1_gamma * self.r1_every) * r1
            logs["r1"] = r1.detach()
        if self._r2_due:
            if not fake.requires_grad:
                raise RuntimeError("reg.r2: the generated batch D saw does not require grad; the "
                                   "task must pass it through DToolbox.fake() before D sees it")
            r2 = penalties.r2_penalty(fake_logits, fake)
            term = (0.5 * self.r2_gamma * self.r1_every) * r2
            extra = term if extra is None else extra + term
            logs["r2"] = r2.detach()
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
        if self._ssl_d is not None and self._real_view is not None:
            rec = self._ssl_d.reconstruction_loss(self._real_view)
            term = self.d_recon * rec
            extra = term if extra is None else extra + term
            logs["recon"] = rec.detach()
        self._real = self._real_view = None
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
