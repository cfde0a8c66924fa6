"""The class-conditional GAN task: G(z, y) against D(x, y) (``--task conditional``).

Same phases, trainer and fake-reuse trick as :class:`~ganforge.training.tasks.gan.GANTask` (which this
extends); what changes is that every image travels with a class label. Labels come from the
dataset (named datasets, or one subfolder per class); a dataset without labels is an error.

Objective, for a registered adversarial loss with D-halves ``A(real) + B(fake)`` (e.g. the
log loss: ``A = -log D``, ``B = -log(1 - D)``), labels ``c`` of the real batch and ``c~`` drawn
for G (uniform under ``cond.balance``, else with the training data's class frequencies)::

    L_D = A(D(x, c)) + B(D(G(z, c~), c~))                          (Mirza & Osindero 2014)
          + lambda_match * B(D(x, c'))          c' != c             (Reed et al. 2016; off by default)
          + lambda_ac * [CE(C(x), c) (+ CE(C(G(z, c~)), c~) with cond.ac_fake)]   (AC-GAN)
    L_G = g_loss(D(G(z, c~), c~)) + lambda_ac * CE(C(G(z, c~)), c~)

AC-GAN (Odena et al. 2017, eq. 2-3): D maximises L_S + L_C and G maximises L_C - L_S, where
L_C is the log-likelihood of the right class on real *and* generated images. D's half on
generated images is off by default (``cond.ac_fake=true`` restores it): with it, D's class head
is free to learn "a generated boot asked for as 'coat' is a coat" (it can tell generated from
real), and G and D then agree on a permuted label mapping. On Fashion-MNIST (5 CPU minutes,
5600 steps, domain-evaluator class accuracy) the paper's form made 4 of 10 classes come out as
other classes (35.4 %); with the class head trained on real images only: 97.9 %.

How G and D see the label is ``cond.method`` (see :mod:`ganforge.models.conditioning`):
``concat``, ``cbn``, ``projection`` (default) or ``acgan`` (the only one with a class head C).

Matching-aware discriminator (Reed et al. 2016, "Generative Adversarial Text to Image
Synthesis", §4.2, GAN-CLS). A conditional D can score images as "real" without checking that
they fit the label; real images paired with a *wrong* label are a third kind of negative that
only the label explains. With ``cond.matching_weight = lambda > 0``, D maximises

    E[log D(x, c)] + E[log(1 - D(G(z, c), c))] + lambda * E[log(1 - D(x, c'))],   c' != c,

(i.e. minimises the log loss's fake half ``B`` on mismatched real pairs, weighted lambda; for
other losses their own fake half, e.g. ``D^2`` for least squares). ``c'`` is drawn uniformly
from the other K - 1 classes (``c' = (c + U{1..K-1}) mod K``), so it is never ``c``. Reed et
al. weight the two negatives 1/2 each; lambda = 1 is that objective up to the factor on the
real term. lambda = 0 is exactly the plain conditional GAN. No anchor library ships this term;
the equation above is the whole specification.

Class imbalance. ``cond.balance`` (``--balance``): real batches are drawn with probability
proportional to 1 / class frequency (:class:`~ganforge.data.balanced.BalancedBatchLoader`) and
G's labels uniformly, so every class gets the same share of both players' updates.
``cond.class_weights=inverse`` keeps the natural data stream instead and weights each real
image's term of D's loss (and AC-GAN's real cross-entropy) by w_c = N / (K n_c), which has mean
1 over the data (importance weighting to a uniform class mix); G's labels are then uniform too.
The class histogram of the labels G trained on is kept (``label_counts``) and stored with the
checkpoint, so ``ganforge sample`` without ``--class`` draws classes as training did.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, Literal, Optional, Tuple

import torch
import torch.nn.functional as F

from ganforge import models
from ganforge.core.command import Flag
from ganforge.core.config import ConfigError, key
from ganforge.core.distributed import SINGLE, DistInfo, local_slice
from ganforge.data.balanced import BalancedBatchLoader, class_counts
from ganforge.data.base import DataError
from ganforge.data.folder import loose_images
from ganforge.data.spec import local_path, path_is_dir
from ganforge.losses.adversarial import LOSSES, d_prob
from ganforge.models.conditioning import family_g_methods, recipe
from ganforge.training.tasks.base import TASKS, Batch, DataInfo
from ganforge.training.tasks.gan import GANTask, build_d, g_options
from ganforge.use.faces.conditional import ConditionalModel


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class CondConfig:
    """Settings of ``train.task=conditional`` (this module)."""
    method: Literal["concat", "cbn", "projection", "acgan"] = key(
        "projection", "G and D recipe (see `ganforge list`)")
    g_method: Literal["auto", "concat", "cbn"] = key(
        "auto", "G's conditioning; auto: the method's (r3gan, which has no cbn: concat)")
    embed_dim: int = key(0, "label-embedding size for concat inputs", low=0, zero="one per class")
    ac_weight: float = key(1.0, "acgan: weight of the class cross-entropy in both nets", low=0,
                           zero="no class loss")
    ac_fake: bool = key(False, "acgan: D's class head also learns generated images (paper)")
    matching_weight: float = key(0.0, "matching-aware D term (Reed et al. 2016)", low=0, zero="off")
    balance: bool = key(False, "class-balanced real batches, uniform G labels (--balance)")
    class_weights: Literal["none", "inverse"] = key(
        "none", "per-class weights on D's real-data loss")


#: Up to this many classes the progress grid is K x K with row c showing class c.
GRID_MAX_CLASSES = 16


# ----------------------------------------------------------------------------- pure helpers
def mismatched_labels(y: torch.Tensor, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A wrong label for each entry of ``y``, uniform over the other K - 1 classes."""
    shift = torch.randint(1, n_classes, y.shape, device=y.device, generator=generator)
    return (y + shift) % n_classes


def fake_half(objective, logits: torch.Tensor) -> torch.Tensor:
    """The "fake" half ``B`` of ``objective.d_loss = A(real) + B(fake)``: what D minimises on a
    negative (each loss's ``d_fake``; e.g. ``softplus(l)`` for the log losses, ``l^2`` for
    least squares). The relativistic losses (relativistic, rpgan) compare real with fake and
    have no such half."""
    own = getattr(objective, "d_fake", None)
    if callable(own):
        return own(logits)
    raise ConfigError(f"cond.matching_weight: the loss {type(objective).__name__} has no separate "
                      f"fake half (d_fake); use train.loss=nonsaturating, minimax, lsgan, hinge or "
                      f"wasserstein, or cond.matching_weight=0")


def weighted_d_loss(objective, real_logits: torch.Tensor, fake_logits: torch.Tensor,
                    weights: torch.Tensor) -> torch.Tensor:
    """D's loss with per-image weights on the real half: ``sum_i w_i A(r_i) / sum_i w_i + B(f)``.

    Computed as the w-weighted mean over i of ``d_loss(r_i, f)`` (one vectorised call per real
    image), which equals the formula for every loss of the form ``A(real) + B(fake)``."""
    per_image = torch.func.vmap(lambda r: objective.d_loss(r.unsqueeze(0), fake_logits))(real_logits)
    w = weights.to(per_image.dtype)
    return (w * per_image).sum() / w.sum()


# ----------------------------------------------------------------------------- the task
@TASKS.register("conditional", help="class-conditional GAN: G(z, y) vs D(x, y); "
                                    "cond.method=projection (default), cbn, concat or acgan")
class ConditionalGANTask(GANTask):
    progress_keys = ("loss_D", "loss_G", "D(x)", "D(G(z))")
    config_section = "cond"
    config_class = CondConfig
    flags = (Flag("--balance", "cond.balance", "draw real images class-balanced (inverse class "
                  "frequency) and G's labels uniformly"),)
    trained_class = ConditionalModel
    new_head_from = ("gan",)     # --init-from an unconditional run: new label layers only

    @classmethod
    def check_config(cls, cfg) -> None:
        """The cond.* combinations that cannot work, refused before any data is loaded."""
        super().check_config(cfg)
        c = cfg.cond
        try:
            _, d_cond = recipe(c.method, c.g_method, family_g_methods(cfg.model.name))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if c.balance and c.class_weights != "none":
            raise ConfigError("cond.balance and cond.class_weights both correct for class "
                              "imbalance (resampling vs loss weights); choose one")
        if c.class_weights != "none" and LOSSES.get(cfg.train.loss).g_needs_real:
            raise ConfigError(f"cond.class_weights={c.class_weights} weights each real image's loss, "
                              f"but train.loss={cfg.train.loss} compares real images with fakes "
                              f"(the batch average, or the paired fake); use cond.balance instead, "
                              f"or another loss")
        if c.matching_weight > 0 and d_cond == "acgan":
            raise ConfigError("cond.matching_weight needs a D whose real/fake score sees the "
                              "label (concat, cbn or projection); AC-GAN's does not")

    # ------------------------------------------------------------------ data
    @classmethod
    def describe_data(cls, data) -> DataInfo:
        labels = getattr(data, "labels", None)
        source = local_path(str(getattr(data, "source", "") or ""))
        loose = loose_images(source) if labels is None and path_is_dir(source) else ""
        if loose:
            raise DataError(f"--task conditional: {loose}")
        if labels is None:
            raise DataError(
                f"dataset '{getattr(data, 'name', data)}' has no class labels, and --task "
                f"conditional needs one label per image: use a named dataset with labels "
                f"(fashion-mnist, mnist), a folder with one subfolder per class "
                f"(root/cat/*.png, root/dog/*.png), or a .npz with a 'labels' array; or train "
                f"an unconditional model with --task gan")
        info = super().describe_data(data)
        names = info.class_names or [str(i) for i in range(data.num_classes)]
        if len(names) < 2:
            raise DataError(f"dataset '{data.name}' has only one class ({names[0]!r}); a "
                            f"conditional GAN needs at least two")
        return replace(info, class_names=list(names))

    @classmethod
    def loader_class(cls, cfg) -> type:
        if not cfg.cond.balance:
            return super().loader_class(cfg)
        return BalancedBatchLoader

    @classmethod
    def run_label(cls, cfg) -> str:
        return f"c{cfg.model.name}"          # runs/cdcgan-fashion-mnist

    # ------------------------------------------------------------------ construction
    def __init__(self, cfg, *, img_size: int, channels: int, device: torch.device,
                 n_classes: int = 0, seed: int = 0, dist: DistInfo = SINGLE):
        c = cfg.cond
        if n_classes < 2:
            raise DataError(f"--task conditional needs labeled data with at least 2 classes "
                            f"(got {n_classes})")
        self.check_config(cfg)
        self.g_cond, self.d_cond = recipe(c.method, c.g_method, family_g_methods(cfg.model.name))
        self.n_classes = n_classes
        super().__init__(cfg, img_size=img_size, channels=channels, device=device,
                         n_classes=n_classes, seed=seed, dist=dist)
        self.matching_weight = float(c.matching_weight)
        self.ac_weight = float(c.ac_weight)
        self.ac_fake = bool(c.ac_fake)
        if self.matching_weight > 0:
            fake_half(self.objective, torch.zeros(1))   # unsupported loss: fail now, not mid-run
        # Labels are drawn from their own checkpointed stream (z keeps the GAN task's).
        self.label_gen = torch.Generator(device=device).manual_seed(seed + 3)
        self.label_probs = torch.full((n_classes,), 1.0 / n_classes, device=device)
        self.class_weight: Optional[torch.Tensor] = None
        self.label_counts = torch.zeros(n_classes, dtype=torch.int64, device=device)
        self._fake_y: Optional[torch.Tensor] = None
        if self.d_cond == "acgan":
            self.progress_keys = self.progress_keys + ("acc_D_cls",)

    def build_networks(self, *, img_size: int, channels: int, n_classes: int):
        m, c = self.cfg.model, self.cfg.cond
        G = models.build("G", m.name, img_size=img_size, channels=channels, z_dim=m.z_dim,
                         width=m.g_width, n_classes=n_classes, cond=self.g_cond,
                         embed_dim=c.embed_dim, **g_options(self.cfg))
        D = build_d(self.cfg.reg, m.name, img_size=img_size, channels=channels, width=m.d_width,
                    n_classes=n_classes, cond=self.d_cond, embed_dim=c.embed_dim)
        return G, D

    def bind_data(self, data: Any) -> None:
        """Class frequencies of the training data: G's label distribution and class weights."""
        c = self.cfg.cond
        counts = class_counts(data.labels, self.n_classes)[:self.n_classes].double()
        if c.balance or c.class_weights == "inverse":
            probs = torch.full_like(counts, 1.0 / self.n_classes)
        else:
            probs = counts / counts.sum()
        self.label_probs = probs.float().to(self.device)
        if c.class_weights == "inverse":
            # w_c = N / (K n_c): mean 1 over the data; classes without images get 0.
            w = torch.where(counts > 0, counts.sum() / (self.n_classes * counts.clamp(min=1)),
                            torch.zeros_like(counts))
            self.class_weight = w.float().to(self.device)

    # ------------------------------------------------------------------ labels
    def sample_labels(self, n: int) -> torch.Tensor:
        """Labels for ``n`` generated images (this process's rows of a global draw, as for z)."""
        ws = self.dist.world_size
        y = torch.multinomial(self.label_probs, n * ws, replacement=True, generator=self.label_gen)
        return y if ws == 1 else y[local_slice(n, self.dist)]

    # ------------------------------------------------------------------ losses
    def loss(self, phase: str, batch: Batch, *, last_repeat: bool = True
             ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        if phase == "D":
            return self._d_loss(batch, last_repeat)
        if phase == "G":
            return self._g_loss(batch)
        raise KeyError(phase)

    def _d_loss(self, batch: Batch, last_repeat: bool):
        tb = self.toolbox
        real, y = tb.real(batch[0]), batch[1]
        if y is None:
            raise DataError("--task conditional got a batch without labels")
        n = real.shape[0]
        z = self.noise(n)
        yf = self.sample_labels(n)
        self.label_counts += torch.bincount(yf, minlength=self.n_classes)
        if last_repeat:
            fake = self.G(z, yf)                  # keep the graph for the G phase
            self._fake, self._fake_y = fake, yf
            fake_in = fake.detach()
        else:
            with torch.no_grad():
                fake_in = self.G(z, yf)
        fake_in = tb.fake(fake_in)               # requires grad when lazy R2 is due
        real_v, fake_v = tb.view(real), tb.view(fake_in)
        real_logits, real_cls = self.D(real_v, y, with_classes=True)
        fake_logits, fake_cls = self.D(fake_v, yf, with_classes=True)
        w = self.class_weight[y] if self.class_weight is not None else None
        if w is None:
            loss = self.objective.d_loss(real_logits, fake_logits)
        else:
            loss = weighted_d_loss(self.objective, real_logits, fake_logits, w)
        logs = {"D(x)": d_prob(real_logits.detach()), "D(G(z))": d_prob(fake_logits.detach())}
        if self.matching_weight > 0:
            wrong = mismatched_labels(y, self.n_classes, self.label_gen)
            mis_logits = self.D(real_v, wrong)
            match = fake_half(self.objective, mis_logits)
            loss = loss + self.matching_weight * match
            logs["loss_D_match"] = match.detach()
            logs["D(x,c')"] = d_prob(mis_logits.detach())
        if real_cls is not None:
            ce_real = F.cross_entropy(real_cls.float(), y, reduction="none")
            ce = (ce_real * w).sum() / w.sum() if w is not None else ce_real.mean()
            if self.ac_fake:
                ce = ce + F.cross_entropy(fake_cls.float(), yf)
            loss = loss + self.ac_weight * ce
            logs["loss_D_cls"] = ce.detach()
            logs["acc_D_cls"] = (real_cls.detach().argmax(1) == y).float().mean()
        extra, more = tb.d_extra(real, real_logits, fake_in, fake_logits,
                                 critic=lambda x: self.D(x, y))
        if extra is not None:
            loss = loss + extra
        logs.update(more)
        logs["loss_D"] = loss.detach()
        return loss, logs

    def _g_loss(self, batch: Batch):
        if self._fake is not None:
            fake, yf = self._fake, self._fake_y
        else:
            yf = self.sample_labels(self.batch_size)
            fake = self.G(self.noise(self.batch_size), yf)
        self._fake = self._fake_y = None
        tb = self.toolbox
        logits, cls = self.D(tb.view(fake), yf, with_classes=True)
        real_logits = None
        if self.objective.g_needs_real:      # relativistic, rpgan: compare with D on real data
            with torch.no_grad():
                real_logits = self.D(tb.view(batch[0]), batch[1])
        loss = self.objective.g_loss(logits, real_logits)
        logs = {}
        if cls is not None:
            ce = F.cross_entropy(cls.float(), yf)
            loss = loss + self.ac_weight * ce
            logs["loss_G_cls"] = ce.detach()
        logs["loss_G"] = loss.detach()
        return loss, logs

    # ------------------------------------------------------------------ grids and state
    def fixed_inputs(self, n: int, generator: torch.Generator, device: torch.device) -> Dict[str, torch.Tensor]:
        """K x K inputs (row c = class c) when K <= 16, else ``n`` inputs cycling the classes."""
        k = self.n_classes
        if k <= GRID_MAX_CLASSES:
            y = torch.arange(k).repeat_interleave(k)
        else:
            y = torch.arange(n) % k
        z = torch.randn(len(y), self.z_dim, generator=generator)
        return {"z": z.to(device), "y": y.to(device)}

    def state_dict(self) -> Dict[str, Any]:
        st = super().state_dict()
        st.update({"label_gen": self.label_gen.get_state(),
                   "label_counts": self.label_counts.cpu(),
                   "label_probs": self.label_probs.cpu()})
        return st

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.label_gen.set_state(state["label_gen"])
        self.label_counts = state["label_counts"].to(self.device)
