"""Adversarial losses: small pure functions on D's raw logits (DESIGN lesson 1).

Every entry of ``LOSSES`` is a class whose instances provide

    d_loss(real_logits, fake_logits)        -> scalar tensor that D minimises
    g_loss(fake_logits, real_logits=None)   -> scalar tensor that G minimises

Sign convention: both functions return quantities to be *minimised* by their own network; the
trainer always calls ``loss.backward()`` and steps, never negates. A logit ``l`` is D's
log-odds that its input is real, ``D(x) = sigmoid(l)``; larger means "more real".

Identities used (exact, and stable for any logit because ``softplus`` never overflows):

    -log D(x)      = -log sigmoid(l)     = softplus(-l)
    -log(1 - D(x)) = -log sigmoid(-l)    = softplus(l)

so ``softplus(-l)`` is ``BCE(l, target=1)`` and ``softplus(l)`` is ``BCE(l, target=0)``, the
same maths as ``nn.Sigmoid`` + ``nn.BCELoss`` without its log(0) at saturated logits and with
autocast support. Losses compute in float32 whatever the logits' dtype (fp16/bf16 AMP).

Reductions are means over the batch; D's loss is the *sum* of its real and fake halves (as in
the PyTorch DCGAN example), so ``d_loss = 2 log 2`` at ``D = 1/2`` everywhere.

``g_loss`` takes an optional ``real_logits`` so losses that compare real and fake (relativistic
average GAN) slot in as further entries; such a loss sets ``g_needs_real = True`` to tell the
task to run D on real data in the generator phase. Hinge, Wasserstein and least-squares
losses are further entries of the same shape.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ganforge.registry import Registry

LOSSES = Registry("loss")


def d_prob(logits: torch.Tensor) -> torch.Tensor:
    """Mean of ``sigmoid(logits)``: D's average belief that the batch is real.

    For logging ``D(x)`` and ``D(G(z))``. Returns a detached 0-dim float32 tensor (call
    ``.item()`` when writing the log, so the GPU is not synchronised on every step).
    """
    return torch.sigmoid(logits.detach().float()).mean()


class AdversarialLoss:
    """Base of the registered losses: ``d_loss(real, fake)`` and ``g_loss(fake, real=None)``.

    Subclasses override the two methods; both return scalar tensors to be minimised.
    """

    #: True when ``g_loss`` needs ``real_logits`` (D must then see real data in G's phase).
    g_needs_real: bool = False

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _SaturatingDLoss(AdversarialLoss):
    """D's side of Goodfellow et al. 2014, eq. 1, shared by "minimax" and "nonsaturating"."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        # Eq. 1: D maximises V = E_x[log D(x)] + E_z[log(1 - D(G(z)))].
        # Minimising -V = E[softplus(-l_real)] + E[softplus(l_fake)]
        #              = BCE(l_real, 1) + BCE(l_fake, 0).
        return (F.softplus(-real_logits.float()).mean()
                + F.softplus(fake_logits.float()).mean())


@LOSSES.register("nonsaturating")
class NonSaturatingLoss(_SaturatingDLoss):
    """Non-saturating GAN loss (default): G minimises -log D(G(z)) = softplus(-l_fake).

    Goodfellow et al. 2014, §3: "Early in learning, when G is poor, D can reject samples with
    high confidence ... log(1 - D(G(z))) saturates. Rather than training G to minimize
    log(1 - D(G(z))) we can train G to maximize log D(G(z))." Same fixed point as eq. 1, but
    d g_loss / d l_fake = -sigmoid(-l_fake) -> -1 (not 0) when D confidently rejects fakes
    (l_fake -> -inf), so G keeps receiving gradient. D's loss is eq. 1's (see ``d_loss``).
    """

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        # -log D(G(z)) = -log sigmoid(l) = softplus(-l) = BCE(l_fake, target=1).
        return F.softplus(-fake_logits.float()).mean()


@LOSSES.register("minimax")
class MinimaxLoss(_SaturatingDLoss):
    """Original minimax GAN loss (Goodfellow et al. 2014, eq. 1): G minimises log(1 - D(G(z))).

    min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]. G's loss is
    log(1 - D(G(z))) = log sigmoid(-l_fake) = -softplus(l_fake), which is <= 0 and decreases
    as D is fooled. Its gradient d/d l_fake = -sigmoid(l_fake) vanishes when D confidently
    rejects fakes (l_fake -> -inf): the saturation that motivated the non-saturating loss.
    Kept for faithfulness to the paper and for comparison; prefer "nonsaturating".
    """

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        return -F.softplus(fake_logits.float()).mean()


@LOSSES.register("least-squares", help="alias of lsgan")
@LOSSES.register("lsgan", help="least-squares GAN (Mao et al. 2017): D -> 1 on real, 0 on "
                               "fake; G -> 1 (CycleGAN's default)")
class LeastSquaresLoss(AdversarialLoss):
    """Least-squares GAN (Mao et al. 2017, eq. 9 with a=0, b=c=1), as written in CycleGAN
    (Zhu et al. 2017, §4 "Training details"):

        D minimises  E_x[(D(x) - 1)^2] + E_z[D(G(z))^2]
        G minimises  E_z[(D(G(z)) - 1)^2]

    ``D(.)`` is the raw output (no sigmoid): here a "logit" is a score regressed to 1 for real
    and 0 for fake. Like the other entries, ``d_loss`` is the plain sum of the two halves;
    CycleGAN's ½ (the paper divides D's objective by 2 "to slow down the rate at which D
    learns") and LSGAN's own ½ factors are left to the caller. Means run over every element,
    so a PatchGAN's map of patch scores works unchanged (every patch is one decision).
    """

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return (real_logits.float() - 1).square().mean() + fake_logits.float().square().mean()

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        return (fake_logits.float() - 1).square().mean()


def get_loss(name: str) -> AdversarialLoss:
    """An instance of the registered loss ``name`` (unknown names list the valid ones)."""
    return LOSSES.build(name)
