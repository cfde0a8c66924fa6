"""CycleGAN: unpaired image-to-image translation (Zhu, Park, Isola & Efros 2017).

Paper-to-code name map (domains X, Y of the paper are A, B here)::

    paper            code (module name in checkpoints)   what it does
    G : X -> Y       "G_AB"                              translates A images into B
    F : Y -> X       "G_BA"                              translates B images into A
    D_X              "D_A"                               judges A images (real A vs G_BA(b))
    D_Y              "D_B"                               judges B images (real B vs G_AB(a))

(The authors' PyTorch code names its discriminators after the generator they oppose, so its
``netD_A`` judges domain B; here ``D_A`` judges domain A, like the paper's ``D_X``.) Logged
statistics keep the paper's letters: ``loss_D_X`` is D_A's loss, ``loss_D_Y`` D_B's.

Objective (paper eq. 3 plus the identity term of §5.2, weights as in the authors' code)::

    L_G = L_GAN(G, D_Y) + L_GAN(F, D_X)
        + lambda_cyc * (|F(G(x)) - x|_1 + |G(F(y)) - y|_1)                 (eq. 2)
        + lambda_cyc * lambda_id * (|G(y) - y|_1 + |F(x) - x|_1)            (identity)

with ``|.|_1`` the mean absolute error per pixel in [-1, 1] units, lambda_cyc = 10 and
lambda_id = 0.5 by default. ``L_GAN`` is ``cyclegan.adv_loss``: least squares by default
(paper §4: G minimises E[(D(G(x)) - 1)^2], D minimises E[(D(y) - 1)^2] + E[D(G(x))^2]), or
any registered loss (``nonsaturating``; the relativistic ones, ``relativistic`` and ``rpgan``,
also run each D on the batch's real images of its domain in the G phase). Each D loss is halved, as in the paper ("we divide
the objective by 2 while optimizing D"), and D sees generated images through a 50-image
history pool (:mod:`ganforge.regularize.image_pool`).

Phases on the shared trainer: ``"G"`` steps both generators on L_G (fresh batch: one image
of each domain per row), then ``"D"`` steps both discriminators on the *same* batch
(``new_batch=False``) with the fakes the G phase just made (detached, through the pools).
The two discriminators have separate parameters, so their summed loss gives each exactly its
own gradient; the trainer's ``backward(inputs=...)`` keeps D's weight gradients out of the G
phase. Each generator runs its translation and its identity input as one stacked batch, and
each discriminator its real and fake batch (:func:`run_stacked`): every norm here works per
image, so this equals separate calls and saves CPU time. Adam (0.5, 0.999), lr 2e-4, constant for the first half and linearly decayed to 0
over the second half in the preset (``train.lr_decay=linear``, ``lr_decay_start=0.5``).

Logged: ``loss_G`` (the whole L_G), ``loss_G_adv`` (its two adversarial terms),
``loss_cycle`` and ``loss_identity`` (the *unweighted* L1 sums of eq. 2 and of the identity
term; halve them for the mean per direction), ``loss_D_X``, ``loss_D_Y`` (halved, as
optimised).

Networks: ``cyclegan.generator`` is an image-to-image G (``cyclegan-resnet``);
``cyclegan.discriminator`` is ``patchgan`` (a map of patch logits, paper §4) or the
discriminator of a BatchNorm-free noise-to-image family (``r3gan``, ``resnet``, ``mlp``), which
judges the whole image with one logit (built at the task's size with ``model.d_width``;
``cyclegan.d_layers`` does not apply to it).

Settings live in the ``cyclegan`` config section (domains, lambdas, networks, pool, jitter);
the generator and discriminator widths are ``model.g_width`` and ``model.d_width`` (the
paper's k = 64); ``model.name`` and ``train.loss`` are not used by this task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ganforge import models
from ganforge.core.command import Flag
from ganforge.core.config import ConfigError, key
from ganforge.core.distributed import SINGLE, DistInfo
from ganforge.data import to_float
from ganforge.data.domains import (
    DomainPair,
    TwoDomainLoader,
    domain_specs,
    load_domain_pair,
)
from ganforge.regularize.image_pool import ImagePool
from ganforge.regularize.toolbox import DToolbox, has_batchnorm
from ganforge.render.images import stack_bands, triplet_grid
from ganforge.training.tasks.base import TASKS, Batch, DataInfo, Phase, Task
from ganforge.training.tasks.gan import build_d, build_objective
from ganforge.use.faces.cyclegan import TranslationModel, pick


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class CycleGANConfig:
    """Settings of ``train.task=cyclegan`` (this module). The widths come from model.g_width /
    model.d_width; train.loss is not used (adv_loss is)."""
    domain_a: str = key("", "domain A (paper X): fashion-mnist:sneaker, a folder, ...;")
    domain_b: str = key("", "... and B (paper Y). Both empty: data.name/{trainA,trainB}")
    adv_loss: str = key("lsgan", "adversarial loss (paper: least squares); or nonsaturating",
                        registry="loss")
    lambda_cyc: float = key(10.0, "weight of the cycle-consistency L1 terms (paper eq. 3)",
                            low=0, zero="no cycle loss")
    lambda_id: float = key(0.5, "identity-loss weight, as a fraction of lambda_cyc", low=0,
                           zero="off")
    generator: str = key("cyclegan-resnet", "G of both directions (a registered generator)",
                         registry="generator")
    discriminator: str = key("patchgan", "D of both domains: patchgan, or a whole-image D of a "
                                         "BatchNorm-free family (r3gan, resnet, mlp)",
                             registry="discriminator")
    n_blocks: int = key(6, "residual blocks in G (paper: 6 at 128 px, 9 at 256 px)", low=1)
    d_layers: int = key(3, "PatchGAN stride-2 layers: 3 -> 70x70 patches, 2 -> 34x34", low=1)
    pool_size: int = key(50, "history of generated images shown to D", low=0, zero="off")
    crop: int = key(0, "random-translation jitter in px (pad + random crop)", low=0, zero="off")
    flip: bool = key(False, "random horizontal flips (off: flips can change meaning)")


#: At most this many fixed test images per domain in the progress grid.
MAX_FIXED_PER_DOMAIN = 16
GRID_COLUMNS = 8


# ----------------------------------------------------------------------------- the task
@TASKS.register("cyclegan", help="CycleGAN: unpaired image-to-image translation between "
                                 "two domains (--domain-a, --domain-b)")
class CycleGANTask(Task):
    data_defaults = False    # its own two domains and networks (cyclegan.*)
    discriminators = ("D_A", "D_B")
    #: which D judges each G's outputs (G_AB makes domain-B images, which D_B judges)
    judges = {"G_AB": "D_B", "G_BA": "D_A"}
    progress_keys = ("loss_D_X", "loss_D_Y", "loss_G", "loss_cycle", "loss_identity")
    config_section = "cyclegan"
    config_class = CycleGANConfig
    flags = (Flag("--domain-a", "cyclegan.domain_a", "domain A, e.g. fashion-mnist:sneaker or a folder",
                  metavar="DOMAIN"),
             Flag("--domain-b", "cyclegan.domain_b", "domain B, e.g. fashion-mnist:ankle-boot or a "
                  "folder", metavar="DOMAIN"))
    trained_class = TranslationModel

    # ------------------------------------------------------------------ data
    @classmethod
    def load_data(cls, cfg):
        d, c = cfg.data, cfg.cyclegan
        a, b = domain_specs(d.name, c.domain_a, c.domain_b)
        return load_domain_pair(a, b, img_size=d.img_size, channels=d.channels,
                                data_dir=d.data_dir, strict=d.strict, limit=d.limit,
                                download=d.download)

    @classmethod
    def describe_data(cls, data) -> DataInfo:
        if not isinstance(data, DomainPair):
            raise ConfigError(f"the cyclegan task trains on two domains (a DomainPair from "
                              f"ganforge.data.domains.load_domain_pair), got "
                              f"{type(data).__name__}; give --domain-a and --domain-b")
        return DataInfo(name=data.name, n_images=max(len(data.a), len(data.b)),
                        channels=data.channels, img_size=data.img_size,
                        nbytes=data.a.images.numel() + data.b.images.numel(),
                        class_names=[data.a.name, data.b.name], fingerprint=data.fingerprint())

    @classmethod
    def build_loader(cls, data, cfg, *, device, rank: int = 0, world_size: int = 1):
        t, c = cfg.train, cfg.cyclegan
        return TwoDomainLoader(data.a.images, data.b.images, batch_size=t.batch_size,
                               seed=t.seed, device=device, channels_last=t.channels_last,
                               crop=c.crop, flip=c.flip, names=(data.a.name, data.b.name),
                               rank=rank, world_size=world_size)

    @classmethod
    def run_label(cls, cfg) -> str:
        return "cyclegan"

    # ------------------------------------------------------------------ networks
    def __init__(self, cfg, *, img_size: int, channels: int, device: torch.device,
                 n_classes: int = 0, seed: int = 0, dist: DistInfo = SINGLE):
        super().__init__(cfg, img_size=img_size, channels=channels, device=device,
                         n_classes=n_classes, seed=seed, dist=dist)
        c, m, t = cfg.cyclegan, cfg.model, cfg.train
        if t.d_steps != 1:
            raise ConfigError(f"train.d_steps={t.d_steps}: the cyclegan task alternates one "
                              f"G and one D update per step (as the paper); use 1")
        self.lambda_cyc, self.lambda_id = float(c.lambda_cyc), float(c.lambda_id)
        gkw = dict(img_size=img_size, channels=channels, width=m.g_width, n_blocks=c.n_blocks)
        dkw = dict(img_size=img_size, channels=channels, width=m.d_width)
        if models.is_image_to_image(c.discriminator):
            dkw["n_layers"] = c.d_layers     # a patch D; a whole-image D (r3gan, ...) has no layers knob
        if c.generator in models.GENERATORS and not models.is_image_to_image(c.generator):
            raise ConfigError(f"cyclegan.generator='{c.generator}' is a noise-to-image network; "
                              f"use an image-to-image one (cyclegan-resnet)")
        self.modules = {
            "G_AB": models.build("G", c.generator, **gkw).to(device),      # paper G: X -> Y
            "G_BA": models.build("G", c.generator, **gkw).to(device),      # paper F: Y -> X
            "D_A": build_d(cfg.reg, c.discriminator, **dkw).to(device),    # paper D_X
            "D_B": build_d(cfg.reg, c.discriminator, **dkw).to(device),    # paper D_Y
        }
        for d in self.discriminators:
            if has_batchnorm(self.modules[d]):
                # D sees its real and fake batch stacked (run_stacked): batch statistics would mix them
                raise ConfigError(f"cyclegan.discriminator='{c.discriminator}' has BatchNorm, which "
                                  f"would mix the real and generated images D judges together; use "
                                  f"patchgan or a BatchNorm-free whole-image D (r3gan, resnet, mlp)")
        self.objective = build_objective(c.adv_loss, cfg.reg.label_smoothing, key="cyclegan.adv_loss")
        # One toolbox per discriminator: each has its own augmentation stream and ADA p.
        self.toolboxes = {d: DToolbox(cfg.reg, cfg.aug, device=device, seed=seed + 100 * k, dist=dist)
                          for k, d in enumerate(self.discriminators)}
        for d, tb in self.toolboxes.items():
            tb.check_discriminator(self.modules[d], d)
        self.pool_a = ImagePool(c.pool_size, seed=seed + 3)   # fakes of domain A, for D_A
        self.pool_b = ImagePool(c.pool_size, seed=seed + 4)   # fakes of domain B, for D_B
        self._fake_a: Optional[torch.Tensor] = None
        self._fake_b: Optional[torch.Tensor] = None
        self._data = None

    @property
    def G_AB(self):
        return self.modules["G_AB"]

    @property
    def G_BA(self):
        return self.modules["G_BA"]

    @property
    def D_A(self):
        return self.modules["D_A"]

    @property
    def D_B(self):
        return self.modules["D_B"]

    def bind_data(self, data) -> None:
        self._data = data

    def phases(self) -> List[Phase]:
        t = self.cfg.train
        betas = (t.beta1, t.beta2)
        return [Phase("G", ("G_AB", "G_BA"), lr=t.lr_g, betas=betas, uses=self.discriminators),
                Phase("D", ("D_A", "D_B"), lr=t.lr_d, betas=betas, new_batch=False)]

    # ------------------------------------------------------------------ losses
    def generator_losses(self, real_a: torch.Tensor, real_b: torch.Tensor
                         ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """L_G and its parts for one batch (see the module docstring); keeps the fakes for
        the D phase."""
        if self.lambda_id > 0:
            # One call per generator for its translation and its identity term: instance norm
            # works per image, so a stacked batch gives the same results as two calls, faster.
            fake_b, idt_b = run_stacked(self.G_AB, real_a, real_b)     # G(x), G(y)
            fake_a, idt_a = run_stacked(self.G_BA, real_b, real_a)     # F(y), F(x)
        else:
            fake_b, fake_a = self.G_AB(real_a), self.G_BA(real_b)
        rec_a = self.G_BA(fake_b)            # F(G(x))
        rec_b = self.G_AB(fake_a)            # G(F(y))
        adv = (self._g_adv("D_B", fake_b, real_b)       # G fools D_Y with G(x)
               + self._g_adv("D_A", fake_a, real_a))     # F fools D_X with F(y)
        cycle = cycle_l1(rec_a, real_a) + cycle_l1(rec_b, real_b)
        loss = adv + self.lambda_cyc * cycle
        logs = {"loss_G_adv": adv.detach(), "loss_cycle": cycle.detach()}
        if self.lambda_id > 0:
            identity = cycle_l1(idt_b, real_b) + cycle_l1(idt_a, real_a)
            loss = loss + self.lambda_cyc * self.lambda_id * identity
            logs["loss_identity"] = identity.detach()
        logs["loss_G"] = loss.detach()
        self._fake_a, self._fake_b = fake_a.detach(), fake_b.detach()
        return loss, logs

    def _g_adv(self, d: str, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The adversarial loss of the generator whose fakes ``d`` judges. A loss that compares
        with real data (``g_needs_real``: relativistic, rpgan) also gets ``d``'s logits on the
        batch's real images of that domain (no gradient: they are G's reference, not its
        output; with rpgan the i-th fake is paired with the i-th real of the batch)."""
        tb, D = self.toolboxes[d], self.modules[d]
        real_logits = None
        if self.objective.g_needs_real:
            with torch.no_grad():
                real_logits = D(tb.view(real))
        return self.objective.g_loss(D(tb.view(fake)), real_logits)

    def discriminator_losses(self, real_a: torch.Tensor, real_b: torch.Tensor
                             ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        if self._fake_a is None or self._fake_b is None:   # D phase on its own (tests, tools)
            with torch.no_grad():
                self._fake_b, self._fake_a = self.G_AB(real_a), self.G_BA(real_b)
        fake_a = self.pool_a.query(self._fake_a)
        fake_b = self.pool_b.query(self._fake_b)
        self._fake_a = self._fake_b = None
        total, logs, extras = 0.0, {}, []
        for d, stat, real, fake in (("D_A", "loss_D_X", real_a, fake_a), ("D_B", "loss_D_Y", real_b, fake_b)):
            tb, D = self.toolboxes[d], self.modules[d]
            real = tb.real(real)
            fake = tb.fake(fake)                 # requires grad when lazy R2 is due
            real_logits, fake_logits = run_stacked(D, tb.view(real), tb.view(fake))
            # The paper's ½: "we divide the objective by 2 while optimizing D".
            loss = 0.5 * self.objective.d_loss(real_logits, fake_logits)
            extra, more = tb.d_extra(real, real_logits, fake, fake_logits, critic=D)
            total = total + loss + (extra if extra is not None else 0.0)
            logs[stat] = loss.detach()
            extras.append(more)
        for k in extras[0]:      # both discriminators' statistics, averaged (acc_D for the guard)
            logs[k] = (extras[0][k] + extras[1][k]) / 2
        return total, logs

    def loss(self, phase: str, batch: Batch, *, last_repeat: bool = True
             ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        real_a, real_b = batch[0], batch[1]
        if phase == "G":
            return self.generator_losses(real_a, real_b)
        if phase == "D":
            return self.discriminator_losses(real_a, real_b)
        raise KeyError(phase)

    # ------------------------------------------------------------------ progress grids
    def fixed_inputs(self, n: int, generator: torch.Generator, device: torch.device
                     ) -> Dict[str, torch.Tensor]:
        """Up to ``min(n // 2, 16)`` test images of each domain, drawn once with ``generator``."""
        if self._data is None:
            raise RuntimeError("CycleGANTask.fixed_inputs needs the data: call bind_data(pair) "
                               "first (the trainer does)")
        k = max(1, min(n // 2, MAX_FIXED_PER_DOMAIN))
        out = {}
        for which in ("a", "b"):
            imgs = self._data.test(which).images
            idx = torch.randperm(imgs.shape[0], generator=generator)[:k]
            out[which] = to_float(imgs.index_select(0, idx)).to(device)
        return out

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "a2b") -> Tuple[torch.Tensor, torch.Tensor]:
        """(translated, reconstructed) for images of the source domain of ``direction``."""
        fwd, back = pick({"G_AB": self.ema_or("G_AB"), "G_BA": self.ema_or("G_BA")}, direction)
        y = fwd(x)
        return y, back(y)

    @torch.no_grad()
    def render(self, fixed: Dict[str, torch.Tensor]) -> torch.Tensor:
        """One composite image: for domain A, bands of rows  A | G(A) | F(G(A)); then for
        domain B,  B | F(B) | G(F(B)); ``GRID_COLUMNS`` images per row."""
        fake_b, rec_a = self.translate(fixed["a"], "a2b")
        fake_a, rec_b = self.translate(fixed["b"], "b2a")
        band_a = triplet_grid(fixed["a"], fake_b, rec_a)
        band_b = triplet_grid(fixed["b"], fake_a, rec_b)
        return stack_bands([band_a, band_b]).unsqueeze(0)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict(),
                "toolboxes": {d: tb.state_dict() for d, tb in self.toolboxes.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.pool_a.load_state_dict(state["pool_a"], device=self.device)
        self.pool_b.load_state_dict(state["pool_b"], device=self.device)
        for d, tb in self.toolboxes.items():
            tb.load_state_dict(state.get("toolboxes", {}).get(d))

    def set_total_steps(self, n: int) -> None:
        for tb in self.toolboxes.values():
            tb.total_steps = n


def run_stacked(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(net(x), net(y))`` from one call on the stacked batch. Only for networks without
    cross-image statistics (instance norm, no batch norm), where it equals two calls."""
    out = net(torch.cat([x, y]))
    return out[:x.shape[0]], out[x.shape[0]:]


def cycle_l1(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per pixel, in float32 (``|.|_1`` of the module docstring)."""
    return F.l1_loss(x.float(), target.float())
