"""pix2pix: paired image-to-image translation (Isola, Zhu, Zhou & Efros 2017, "Image-to-Image
Translation with Conditional Adversarial Networks", CVPR).

The tutorials' conditional GAN with an image for the condition: D judges a pair (c, x) --
the condition and an image, concatenated channel-wise -- real when x is c's own target y,
fake when x = G(c); G also pays an L1 distance to the known target. Paper eq. 4::

    G* = arg min_G max_D  L_cGAN(G, D) + lambda * L_L1(G)
    L_cGAN = E[log D(c, y)] + E[log(1 - D(c, G(c)))],   L_L1 = E[|y - G(c)|_1]

Name map (paper -> code): x (the input) -> ``c``, the condition images A; y (the target) ->
the target images B; G -> ``"G"`` (:mod:`ganforge.models.unet`, the U-Net, dropout as its
noise); D -> ``"D"`` (the PatchGAN of :mod:`ganforge.models.cyclegan` over ``Ca + Cb``
channels); lambda -> ``pix2pix.lambda_l1`` (100, the paper's). ``|.|_1`` is the mean absolute
error per pixel in [-1, 1] units. D's loss is halved, as in the paper ("we divide the
objective by 2 while optimizing D"). L_cGAN is ``train.loss`` (any registered loss; the
paper's is ``nonsaturating``, its G minimising -log D(c, G(c)), the default here).

The matching-aware term of the tutorials' conditional GAN (Reed et al. 2016), as an option
(``pix2pix.matching_weight``): D also learns that a real image with another pair's condition
(the batch's targets rolled by one) is fake, so it must check that x fits c, not only that x
looks real. Not in the pix2pix paper.

PatchGAN depth: ``pix2pix.d_layers`` (0: chosen from the image size so a logit sees at most
0.3 of the image side, the paper's 70 px patches on 256 px images; 1 layer, 16 px patches, at
28-64 px). Toolbox options for a conditional D apply to the pair: R1/R2, spectral norm,
label smoothing, instance noise, DiffAugment translation/cutout (the same shift and hole for
both halves of a pair, since they are one tensor); DiffAugment ``color`` is refused (it would
mix the condition's channels with the image's).

Phases on the shared trainer: ``"G"`` (fresh batch) then ``"D"`` on the same batch with the
fakes the G phase made (detached).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Optional, Tuple

import torch
import torch.nn.functional as F

from ganforge import models
from ganforge.core.command import Flag
from ganforge.core.config import ConfigError, key
from ganforge.core.distributed import SINGLE, DistInfo
from ganforge.data import to_float
from ganforge.data.batching import BatchLoader
from ganforge.data.domains import jitter_and_flip
from ganforge.data.pairs import PAIRED, PairedData, load_pairs
from ganforge.losses.adversarial import d_prob
from ganforge.models.cyclegan import receptive_field
from ganforge.regularize.toolbox import DToolbox, has_batchnorm
from ganforge.render.images import stack_bands, triplet_grid
from ganforge.training.tasks.base import TASKS, Batch, DataInfo, Phase, Task
from ganforge.training.tasks.conditional import fake_half
from ganforge.training.tasks.gan import build_d, build_objective
from ganforge.use.faces.pix2pix import PairedModel


@dataclass(frozen=True)
class Pix2PixConfig:
    """Settings of ``train.task=pix2pix`` (this module). The widths are model.g_width /
    model.d_width; the data is data.name (a paired set) or data_a + data_b."""
    data_a: str = key("", "--data-a: the condition images (a folder; pairs match by file path)")
    data_b: str = key("", "--data-b: their targets (a folder)")
    aligned: str = key("", "a folder of side-by-side A|B images (the pix2pix datasets' layout)")
    direction: Literal["a2b", "b2a"] = key("a2b", "aligned layout: a2b: the left half is the "
                                                  "condition; b2a: the right half")
    lambda_l1: float = key(100.0, "weight of the L1 distance to the target (paper: 100)", low=0,
                           zero="no L1 term: a plain conditional GAN")
    matching_weight: float = key(0.0, "matching-aware D term: a real image with another pair's "
                                      "condition is fake (Reed et al. 2016)", low=0, zero="off")
    dropout: float = key(0.5, "dropout in G's innermost three decoder layers, G's noise "
                              "(paper: 0.5)", low=0, high=1, high_open=True)
    d_layers: int = key(0, "PatchGAN stride-2 layers", low=0,
                        zero="from the image size: patches of at most 0.3 of its side")
    discriminator: str = key("patchgan", "D of the pairs: patchgan, or a whole-image D of a "
                                         "BatchNorm-free family (r3gan, resnet, mlp)",
                             registry="discriminator")
    crop: int = key(0, "random-translation jitter in px, the same for both halves", low=0,
                    zero="off")
    flip: bool = key(False, "random horizontal flips of both halves together")


#: pairs shown in the progress grid
FIXED_PAIRS = 16
#: the largest patch, as a fraction of the image side (the paper's 70 px of 256 px)
PATCH_FRACTION = 0.3


def auto_d_layers(img_size: int) -> int:
    """PatchGAN layers whose receptive field is at most ``PATCH_FRACTION`` of ``img_size``
    (at least 1): 256 px -> 3 (70 px patches, the paper's), 28-64 px -> 1 (16 px)."""
    n = 1
    while receptive_field(n + 1) <= PATCH_FRACTION * img_size:
        n += 1
    return n


class PairLoader:
    """``next()`` -> ``(condition, target)`` float batches in [-1, 1] from the stored pairs;
    jitter and flips move both halves of a pair together (they are one tensor)."""

    def __init__(self, data: PairedData, *, batch_size: int, seed: int, device, channels_last: bool,
                 crop: int, flip: bool, rank: int = 0, world_size: int = 1):
        self.data = data
        self.loader = BatchLoader(data.train.base_images, None, batch_size=batch_size, seed=seed,
                                  device=device, channels_last=False, rank=rank,
                                  world_size=world_size, index=data.train.index)
        self.crop, self.flip, self.channels_last = int(crop), bool(flip), channels_last
        self.aug_gen = torch.Generator().manual_seed(seed + 2 + 1000 * rank)

    def next(self) -> Tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.loader.next()
        c, y = self.data.split(jitter_and_flip(x, self.crop, self.flip, self.aug_gen))
        if self.channels_last:
            c, y = (t.contiguous(memory_format=torch.channels_last) for t in (c, y))
        return c, y

    @property
    def epoch_float(self) -> float:
        return self.loader.epoch_float

    @property
    def steps_per_epoch(self) -> int:
        return self.loader.steps_per_epoch

    def state_dict(self) -> Dict[str, Any]:
        return {"pairs": self.loader.state_dict(), "aug": self.aug_gen.get_state()}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.loader.load_state_dict(s["pairs"])
        self.aug_gen.set_state(s["aug"])


@TASKS.register("pix2pix", help="pix2pix: paired image-to-image translation, a conditional GAN "
                                "whose condition is an image, plus L1 to the known target "
                                "(--data fashion-mnist-edges, or --data-a A --data-b B)")
class Pix2PixTask(Task):
    data_defaults = False    # its own paired data and networks (pix2pix.*)
    discriminators = ("D",)
    progress_keys = ("loss_D", "loss_G", "loss_L1", "D(x)", "D(G(z))")
    config_section = "pix2pix"
    config_class = Pix2PixConfig
    flags = (Flag("--data-a", "pix2pix.data_a", "pix2pix: the condition images (a folder)",
                  metavar="FOLDER"),
             Flag("--data-b", "pix2pix.data_b", "pix2pix: their targets, paired by file path",
                  metavar="FOLDER"))
    trained_class = PairedModel

    # ------------------------------------------------------------------ data
    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        ops = [o.strip() for o in str(cfg.aug.diffaug or "").split(",") if o.strip()]
        if "color" in ops:
            raise ConfigError("aug.diffaug=color: colour jitter would mix the condition's "
                              "channels with the image's in pix2pix's paired D input; use "
                              "translation and/or cutout")
        if cfg.train.d_steps != 1:
            raise ConfigError(f"train.d_steps={cfg.train.d_steps}: the pix2pix task alternates "
                              f"one G and one D update per step (as the paper); use 1")

    @classmethod
    def load_data(cls, cfg):
        d, p = cfg.data, cfg.pix2pix
        named = d.name if d.name in PAIRED else ""
        if not named and not (p.data_a or p.data_b or p.aligned) and d.name:
            raise ConfigError(f"--data {d.name}: pix2pix trains on pairs: a paired set "
                              f"({', '.join(PAIRED.names())}) or two folders (--data-a A "
                              f"--data-b B, paired by file path)")
        return load_pairs(pairs=named, data_a=p.data_a, data_b=p.data_b, aligned=p.aligned,
                          direction=p.direction, img_size=d.img_size, data_dir=d.data_dir,
                          limit=d.limit, download=d.download)

    @classmethod
    def describe_data(cls, data) -> DataInfo:
        if not isinstance(data, PairedData):
            raise ConfigError(f"the pix2pix task trains on pairs (ganforge.data.pairs."
                              f"PairedData), got {type(data).__name__}")
        return DataInfo(name=data.name, n_images=len(data), channels=data.channels,
                        img_size=data.img_size, nbytes=data.train.nbytes,
                        fingerprint=data.fingerprint())

    @classmethod
    def build_loader(cls, data, cfg, *, device, rank: int = 0, world_size: int = 1):
        t, p = cfg.train, cfg.pix2pix
        return PairLoader(data, batch_size=t.batch_size, seed=t.seed, device=device,
                          channels_last=t.channels_last, crop=p.crop, flip=p.flip, rank=rank,
                          world_size=world_size)

    @classmethod
    def run_label(cls, cfg) -> str:
        return "pix2pix"

    @classmethod
    def data_label(cls, cfg) -> str:
        """The targets' folder when pairs come from two folders, else the paired set."""
        return cfg.pix2pix.data_b or cfg.pix2pix.aligned or cfg.data.name

    # ------------------------------------------------------------------ networks
    def __init__(self, cfg, *, img_size: int, channels: int, device: torch.device,
                 n_classes: int = 0, seed: int = 0, dist: DistInfo = SINGLE):
        super().__init__(cfg, img_size=img_size, channels=channels, device=device,
                         n_classes=n_classes, seed=seed, dist=dist)
        p, m = cfg.pix2pix, cfg.model
        self.lambda_l1, self.matching_weight = float(p.lambda_l1), float(p.matching_weight)
        self.cond_channels = channels          # until bind_data says otherwise
        self._p, self._m, self._reg = p, m, cfg.reg
        self._fake: Optional[torch.Tensor] = None
        self._data: Optional[PairedData] = None
        self.objective = build_objective(cfg.train.loss, cfg.reg.label_smoothing)
        if self.matching_weight > 0:
            fake_half(self.objective, torch.zeros(1))   # a loss without a fake half: fail now
        self.toolbox = DToolbox(cfg.reg, cfg.aug, device=device, seed=seed + 100, dist=dist)
        # G's dropout draws from torch's global generator; each G call gets its own seed from
        # this stream (checkpointed), so a resumed run drops the same units as a straight one
        self.noise_gen = torch.Generator().manual_seed(seed + 5 + 1000 * dist.rank)
        self._build(channels)

    def _build(self, cond_channels: int) -> None:
        p, m, s = self._p, self._m, self.img_size
        self.cond_channels = cond_channels
        dkw = dict(img_size=s, channels=cond_channels + self.channels, width=m.d_width)
        if models.is_image_to_image(p.discriminator):
            dkw["n_layers"] = p.d_layers or auto_d_layers(s)
        try:
            self.modules = {
                "G": models.build("G", "pix2pix-unet", img_size=s, channels=cond_channels,
                                  out_channels=self.channels, width=m.g_width,
                                  dropout=p.dropout).to(self.device),
                "D": build_d(self._reg, p.discriminator, **dkw).to(self.device),
            }
        except ValueError as e:
            raise ConfigError(f"pix2pix at {s} px: {e}") from None
        if has_batchnorm(self.modules["D"]):
            raise ConfigError(f"pix2pix.discriminator='{p.discriminator}' has BatchNorm, which "
                              f"would mix the real and generated pairs D judges together; use "
                              f"patchgan or a BatchNorm-free whole-image D (r3gan, resnet, mlp)")
        self.toolbox.check_discriminator(self.modules["D"], "D")

    def bind_data(self, data) -> None:
        self._data = data
        if isinstance(data, PairedData) and data.cond_channels != self.cond_channels:
            self._build(data.cond_channels)      # before any EMA copy, optimiser or load

    def phases(self) -> List[Phase]:
        t = self.cfg.train
        betas = (t.beta1, t.beta2)
        return [Phase("G", ("G",), lr=t.lr_g, betas=betas, uses=self.discriminators),
                Phase("D", ("D",), lr=t.lr_d, betas=betas, new_batch=False)]

    # ------------------------------------------------------------------ losses
    def run_g(self, c: torch.Tensor) -> torch.Tensor:
        """``G(c)`` with its dropout seeded from :attr:`noise_gen` (the global RNG is left as
        it was): the task's own random stream, as every other random draw of a run."""
        seed = int(torch.randint(0, 2**62, (1,), generator=self.noise_gen))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self.modules["G"](c)

    def _pair(self, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([c, x.to(c.dtype)], dim=1)

    def generator_losses(self, c: torch.Tensor, y: torch.Tensor
                         ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        fake = self.run_g(c)
        tb = self.toolbox
        real_logits = None
        if self.objective.g_needs_real:
            with torch.no_grad():
                real_logits = self.modules["D"](tb.view(self._pair(c, y)))
        adv = self.objective.g_loss(self.modules["D"](tb.view(self._pair(c, fake))), real_logits)
        l1 = F.l1_loss(fake.float(), y.float())
        loss = adv + self.lambda_l1 * l1
        self._fake = fake.detach()
        return loss, {"loss_G": loss.detach(), "loss_G_adv": adv.detach(), "loss_L1": l1.detach()}

    def discriminator_losses(self, c: torch.Tensor, y: torch.Tensor
                             ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        if self._fake is None:                    # D phase on its own (tests, tools)
            with torch.no_grad():
                self._fake = self.run_g(c)
        fake, self._fake = self._fake, None
        tb = self.toolbox
        real = tb.real(self._pair(c, y))
        fake = tb.fake(self._pair(c, fake))       # requires grad when lazy R2 is due
        out = self.modules["D"](torch.cat([tb.view(real), tb.view(fake)]))
        real_logits, fake_logits = out[:real.shape[0]], out[real.shape[0]:]
        loss = 0.5 * self.objective.d_loss(real_logits, fake_logits)   # the paper's 1/2
        logs = {"loss_D": loss.detach(), "D(x)": d_prob(real_logits.detach()),
                "D(G(z))": d_prob(fake_logits.detach())}
        if self.matching_weight > 0 and c.shape[0] > 1:
            # real images with the next pair's condition: real-looking, but not c's target
            mis_logits = self.modules["D"](tb.view(self._pair(c.roll(1, 0), y)))
            match = 0.5 * fake_half(self.objective, mis_logits)
            loss = loss + self.matching_weight * match
            logs["loss_D_match"] = match.detach()
        extra, more = tb.d_extra(real, real_logits, fake, fake_logits, critic=self.modules["D"])
        if extra is not None:
            loss = loss + extra
        logs.update(more)
        return loss, logs

    def loss(self, phase: str, batch: Batch, *, last_repeat: bool = True
             ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        c, y = batch[0], batch[1]
        if phase == "G":
            return self.generator_losses(c, y)
        if phase == "D":
            return self.discriminator_losses(c, y)
        raise KeyError(phase)

    # ------------------------------------------------------------------ progress grids
    def fixed_inputs(self, n: int, generator: torch.Generator, device: torch.device
                     ) -> Dict[str, torch.Tensor]:
        """Up to ``min(n, 16)`` test pairs (training pairs without a test split), drawn once."""
        if self._data is None:
            raise RuntimeError("Pix2PixTask.fixed_inputs needs the data: call bind_data(pairs) "
                               "first (the trainer does)")
        ds = self._data.test if self._data.test is not None else self._data.train
        k = max(1, min(n, FIXED_PAIRS, len(ds)))
        idx = torch.randperm(len(ds), generator=generator)[:k]
        c, y = self._data.split(to_float(ds.gather(idx)))
        return {"c": c.to(device), "y": y.to(device)}

    @torch.no_grad()
    def render(self, fixed: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Bands of rows condition | output | target."""
        out = self.ema_or("G")(fixed["c"]).float().clamp(-1, 1)
        return stack_bands([triplet_grid(fixed["c"], out, fixed["y"])]).unsqueeze(0)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"toolbox": self.toolbox.state_dict(), "noise": self.noise_gen.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.toolbox.load_state_dict(state.get("toolbox"))
        if "noise" in state:
            self.noise_gen.set_state(state["noise"])

    def set_total_steps(self, n: int) -> None:
        self.toolbox.total_steps = n
