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

import inspect
from typing import Any, Dict, List, Optional, Tuple

import torch

from ganforge import models
from ganforge.core.config import ConfigError, RegConfig
from ganforge.core.distributed import SINGLE, DistInfo, local_slice
from ganforge.losses.adversarial import LOSSES, d_prob
from ganforge.regularize.toolbox import DToolbox
from ganforge.training.tasks.base import TASKS, Batch, Phase, Task
from ganforge.use.face import eval_mode
from ganforge.use.faces.gan import NoiseModel


def g_options(cfg) -> Dict[str, Any]:
    """G's constructor options beyond the common ones: ``upsample`` when ``model.upsample``
    is not the default ``deconv`` (so the stored spec of a default G is unchanged)."""
    return {"upsample": cfg.model.upsample} if cfg.model.upsample != "deconv" else {}


@TASKS.register("gan", help="unconditional GAN: G(z) vs D(x)")
class GANTask(Task):
    progress_keys = ("loss_D", "loss_G", "D(x)", "D(G(z))")
    discriminators = ("D",)
    trained_class = NoiseModel

    def __init__(self, cfg, *, img_size: int, channels: int, device: torch.device,
                 n_classes: int = 0, seed: int = 0, dist: DistInfo = SINGLE):
        super().__init__(cfg, img_size=img_size, channels=channels, device=device,
                         n_classes=n_classes, seed=seed, dist=dist)
        m, t = cfg.model, cfg.train
        self.z_dim = m.z_dim
        self.batch_size = t.batch_size
        try:
            G, D = self.build_networks(img_size=img_size, channels=channels, n_classes=n_classes)
        except ValueError as e:    # the families raise it for arguments they cannot build,
            # all of which come from the config (a size the family cannot reach, a width ...)
            raise ConfigError(f"model.name={m.name}, data.img_size={img_size}: {e}") from None
        self.modules = {"G": G.to(device), "D": D.to(device)}
        self.objective = build_objective(t.loss, cfg.reg.label_smoothing)
        self.toolbox = DToolbox(cfg.reg, cfg.aug, device=device, seed=seed, dist=self.dist)
        self.toolbox.check_discriminator(D)
        # The task's own noise stream, separate from torch's global RNG and checkpointed.
        self.noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self._fake: Optional[torch.Tensor] = None
        # D sees real and fake in one call when that changes nothing: no BatchNorm (whose batch
        # statistics would mix the two) and no other per-batch layer. Saves a D launch per step.
        self._joint_d = not any(isinstance(mod, (torch.nn.modules.batchnorm._BatchNorm,
                                                 torch.nn.modules.instancenorm._InstanceNorm))
                                for mod in D.modules())

    @classmethod
    def check_config(cls, cfg) -> None:
        """Also: ``model.upsample`` other than deconv needs a family whose G has it."""
        super().check_config(cfg)
        m = cfg.model
        if m.upsample != "deconv" and "upsample" not in inspect.signature(
                models.GENERATORS.get(m.name)).parameters:
            raise ConfigError(f"model.upsample={m.upsample}: the {m.name} generator has no "
                              f"upsampling choice; use --model dcgan, or drop the key")

    def build_networks(self, *, img_size: int, channels: int, n_classes: int):
        """(G, D) for this task; the conditional task overrides this with G(z, y), D(x, y)."""
        m = self.cfg.model
        G = models.build("G", m.name, img_size=img_size, channels=channels, z_dim=m.z_dim,
                         width=m.g_width, **g_options(self.cfg))
        D = build_d(self.cfg.reg, m.name, img_size=img_size, channels=channels, width=m.d_width)
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
        so N processes see exactly the noise one process would (ganforge/core/distributed.py)."""
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
            fake_in = tb.fake(fake_in)           # requires grad when lazy R2 is due
            real_v, fake_v = tb.view(real), tb.view(fake_in)
            if self._joint_d:   # one D call on [real; fake]: same maths without BatchNorm
                # (R1/R2 differentiate through the concatenation back to real / fake_in)
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
            if self.objective.g_needs_real:      # relativistic, rpgan: G compares with D on real data
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
        with eval_mode(self.ema_or("G")) as G:
            return G(**fixed).float()

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


def build_d(reg: RegConfig, name: str, **kwargs):
    """Discriminator ``name`` (``models.build("D", name, **kwargs)``) with the ``reg`` section's
    spectral norm and dropout (reg.spectral_norm, reg.d_dropout), shared by every task. Raises
    ConfigError for a dropout the family has no option for."""
    if reg.spectral_norm:
        kwargs["spectral_norm"] = True
    if reg.d_dropout:
        kwargs["dropout"] = float(reg.d_dropout)
    try:
        return models.build("D", name, **kwargs)
    except TypeError as e:
        if "dropout" in str(e):
            raise ConfigError(f"reg.d_dropout: the '{name}' discriminator has no dropout option; "
                              f"use reg.d_dropout=0 or another model") from None
        raise
