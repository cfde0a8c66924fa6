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
from ganforge.losses import LOSSES, d_prob
from ganforge.tasks import TASKS, Batch, Phase, Task


@TASKS.register("gan", help="unconditional GAN: G(z) vs D(x)")
class GANTask(Task):
    progress_keys = ("loss_D", "loss_G", "D(x)", "D(G(z))")

    def __init__(self, cfg, *, img_size: int, channels: int, device: torch.device,
                 n_classes: int = 0, seed: int = 0):
        super().__init__()
        m, t = cfg.model, cfg.train
        self.cfg = cfg
        self.device = device
        self.z_dim = m.z_dim
        self.batch_size = t.batch_size
        G, D = self.build_networks(img_size=img_size, channels=channels, n_classes=n_classes)
        self.modules = {"G": G.to(device), "D": D.to(device)}
        self.objective = LOSSES.build(t.loss)
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
        D = models.build("D", m.name, img_size=img_size, channels=channels, width=m.d_width)
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
                Phase("G", ("G",), lr=t.lr_g, betas=betas, new_batch=False)]

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.z_dim, device=self.device, generator=self.noise_gen)

    def loss(self, phase: str, batch: Batch, *, last_repeat: bool = True) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        if phase == "D":
            real = batch[0]
            z = self.noise(real.shape[0])
            if last_repeat:
                fake = self.G(z)                 # keep the graph for the G phase
                self._fake = fake
                fake_in = fake.detach()
            else:
                with torch.no_grad():
                    fake_in = self.G(z)
            if self._joint_d:   # one D call on [real; fake]: same maths without BatchNorm
                logits = self.D(torch.cat([real, fake_in]))
                real_logits, fake_logits = logits[:real.shape[0]], logits[real.shape[0]:]
            else:
                real_logits = self.D(real)
                fake_logits = self.D(fake_in)
            loss = self.objective.d_loss(real_logits, fake_logits)
            return loss, {"loss_D": loss.detach(), "D(x)": d_prob(real_logits.detach()),
                          "D(G(z))": d_prob(fake_logits.detach())}
        if phase == "G":
            fake = self._fake if self._fake is not None else self.G(self.noise(self.batch_size))
            self._fake = None
            fake_logits = self.D(fake)
            loss = self.objective.g_loss(fake_logits)
            return loss, {"loss_G": loss.detach()}
        raise KeyError(phase)

    def fixed_inputs(self, n: int, generator: torch.Generator, device: torch.device) -> Dict[str, torch.Tensor]:
        return {"z": torch.randn(n, self.z_dim, generator=generator).to(device)}

    @torch.no_grad()
    def render(self, fixed: Dict[str, torch.Tensor]) -> torch.Tensor:
        was = self.G.training
        self.G.eval()
        try:
            return self.G(fixed["z"]).float()
        finally:
            self.G.train(was)

    def state_dict(self) -> Dict[str, Any]:
        return {"noise_gen": self.noise_gen.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.noise_gen.set_state(state["noise_gen"])
