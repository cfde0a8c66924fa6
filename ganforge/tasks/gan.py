"""The unconditional GAN task (Goodfellow et al. 2014; DCGAN, Radford et al. 2015).

Phases: D minimises ``loss.d_loss(D(x), D(G(z)))``; G minimises ``loss.g_loss(D(G(z)))``.
With ``d_steps = k`` the D phase runs k times per G step, each on a fresh real batch.

The fake batch made in the last D repeat is kept, with its graph, for the G phase that
follows: G's weights have not changed in between, so ``D(fake)`` there is exactly the G loss
of a fresh ``G(z)`` with the same z, and one generator forward per step is saved (the same
trick as the classic DCGAN example). The trainer restricts each backward to the phase's own
parameters, so D's weight gradients are never computed in the G phase.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch

from ganforge import models
from ganforge.config import ConfigError
from ganforge.distributed import SINGLE, DistInfo, local_slice
from ganforge.losses import LOSSES, d_prob
from ganforge.regularize.toolbox import DToolbox
from ganforge.tasks import TASKS, Batch, Phase, Task


@TASKS.register("gan", help="unconditional GAN: G(z) vs D(x)")
class GANTask(Task):
    progress_keys = ("loss_D", "loss_G", "D(x)", "D(G(z))")
    ema_sources = ("G",)
    discriminators = ("D",)

    def __init__(self, cfg, *, img_size: int, channels: int, device: torch.device,
                 n_classes: int = 0, seed: int = 0, dist: DistInfo = SINGLE):
        super().__init__()
        self.dist = dist
        m, t = cfg.model, cfg.train
        self.cfg = cfg
        self.device = device
        self.z_dim = m.z_dim
        self.batch_size = t.batch_size
        G, D = self.build_networks(img_size=img_size, channels=channels, n_classes=n_classes)
        self.modules = {"G": G.to(device), "D": D.to(device)}
        self.objective = build_objective(t.loss, cfg.reg.label_smoothing)
        self.toolbox = DToolbox(cfg, device=device, seed=seed, dist=self.dist)
        self.toolbox.check_discriminator(D)
        # The task's own noise stream, separate from torch's global RNG and checkpointed.
        self.noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self._fake: Optional[torch.Tensor] = None
        # D sees real and fake in one call when that changes nothing: no BatchNorm (whose batch
        # statistics would mix the two) and no other per-batch layer. Saves a D launch per step.
        self._joint_d = not any(isinstance(mod, (torch.nn.modules.batchnorm._BatchNorm,
                                                 torch.nn.modules.instancenorm._InstanceNorm))
                                for mod in D.modules())

    def build_networks(self, *, img_size: int, channels: int, n_classes: int):
        """(G, D) for this task; the conditional task overrides this with G(z, y), D(x, y)."""
        m = self.cfg.model
        G = models.build("G", m.name, img_size=img_size, channels=channels, z_dim=m.z_dim, width=m.g_width)
        D = build_d(self.cfg, m.name, img_size=img_size, channels=channels, width=m.d_width)
        return G, D

    @property
    def G(self):
        return self.modules["G"]

    @property
    def D(self):
        return self.modules["D"]

    def phases(self) -> List[Phase]:
        t = self.cfg.train
        betas = (t.beta1, t.beta2)
        return [Phase("D", ("D",), lr=t.lr_d, betas=betas, repeat=t.d_steps),
                Phase("G", ("G",), lr=t.lr_g, betas=betas, new_batch=False, uses=("D",))]

    def set_total_steps(self, n: int) -> None:
        self.toolbox.total_steps = n

    def noise(self, n: int) -> torch.Tensor:
        """``n`` noise vectors. Under DDP, this process's rows of one draw for the global batch,
        so N processes see exactly the noise one process would (ganforge/distributed.py)."""
        ws = self.dist.world_size
        z = torch.randn(n * ws, self.z_dim, device=self.device, generator=self.noise_gen)
        return z if ws == 1 else z[local_slice(n, self.dist)]

    def loss(self, phase: str, batch: Batch, *, last_repeat: bool = True) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        tb = self.toolbox
        if phase == "D":
            real = tb.real(batch[0])
            z = self.noise(real.shape[0])
            if last_repeat:
                fake = self.G(z)                 # keep the graph for the G phase
                self._fake = fake
                fake_in = fake.detach()
            else:
                with torch.no_grad():
                    fake_in = self.G(z)
            real_v, fake_v = tb.view(real), tb.view(fake_in)
            if self._joint_d:   # one D call on [real; fake]: same maths without BatchNorm
                logits = self.D(torch.cat([real_v, fake_v]))
                real_logits, fake_logits = logits[:real.shape[0]], logits[real.shape[0]:]
            else:
                real_logits = self.D(real_v)
                fake_logits = self.D(fake_v)
            loss = self.objective.d_loss(real_logits, fake_logits)
            logs = {"loss_D": loss.detach(), "D(x)": d_prob(real_logits.detach()),
                    "D(G(z))": d_prob(fake_logits.detach())}
            extra, more = tb.d_extra(real, real_logits, fake_in, fake_logits, critic=self.D)
            if extra is not None:
                loss = loss + extra
            return loss, {**logs, **more}
        if phase == "G":
            fake = self._fake if self._fake is not None else self.G(self.noise(self.batch_size))
            self._fake = None
            fake_logits = self.D(tb.view(fake))
            real_logits = None
            if self.objective.g_needs_real:      # relativistic: G compares with D on real data
                with torch.no_grad():
                    real_logits = self.D(tb.view(batch[0]))
            loss = self.objective.g_loss(fake_logits, real_logits)
            return loss, {"loss_G": loss.detach()}
        raise KeyError(phase)

    def fixed_inputs(self, n: int, generator: torch.Generator, device: torch.device) -> Dict[str, torch.Tensor]:
        """G's keyword arguments for the grid (``z``; the conditional task adds ``y``)."""
        return {"z": torch.randn(n, self.z_dim, generator=generator).to(device)}

    @torch.no_grad()
    def render(self, fixed: Dict[str, torch.Tensor]) -> torch.Tensor:
        G = self.ema_or("G")
        was = G.training
        G.eval()
        try:
            return G(**fixed).float()
        finally:
            G.train(was)

    def state_dict(self) -> Dict[str, Any]:
        return {"noise_gen": self.noise_gen.get_state(), "toolbox": self.toolbox.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.noise_gen.set_state(state["noise_gen"])
        self.toolbox.load_state_dict(state.get("toolbox"))


def build_objective(name: str, label_smoothing: float = 0.0, key: str = "train.loss"):
    """The adversarial loss ``name`` (the config key ``key``: train.loss, cyclegan.adv_loss)
    with one-sided label smoothing (reg.label_smoothing); a bad combination is a config error."""
    try:
        return LOSSES.build(name, **({"label_smoothing": label_smoothing} if label_smoothing else {}))
    except ValueError as e:
        raise ConfigError(f"{key}={name}, reg.label_smoothing={label_smoothing}: {e}") from None


def build_d(cfg, name: str, **kwargs):
    """A discriminator with the config's spectral norm and dropout (reg.spectral_norm,
    reg.d_dropout), shared by every task."""
    r = cfg.reg
    if r.spectral_norm:
        kwargs["spectral_norm"] = True
    if r.d_dropout:
        if not 0 < r.d_dropout < 1:
            raise ConfigError(f"reg.d_dropout={r.d_dropout}: use a probability in [0, 1)")
        kwargs["dropout"] = float(r.d_dropout)
    try:
        return models.build("D", name, **kwargs)
    except TypeError as e:
        if "dropout" in str(e):
            raise ConfigError(f"reg.d_dropout: the '{name}' discriminator has no dropout option; "
                              f"use reg.d_dropout=0 or another model") from None
        raise
