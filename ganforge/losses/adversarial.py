"""Adversarial losses: small pure functions on D's raw logits (DESIGN lesson 1).

Every entry of ``LOSSES`` is a class whose instances provide

    d_loss(real_logits, fake_logits)        -> scalar tensor that D minimises
    g_loss(fake_logits, real_logits=None)   -> scalar tensor that G minimises

Sign convention: both functions return quantities to be *minimised* by their own network; the
trainer always calls ``loss.backward()`` and steps, never negates. A logit ``l`` is D's
log-odds that its input is real, ``D(x) = sigmoid(l)``; larger means "more real". (For the
least-squares, hinge and Wasserstein losses it is a raw score with the same orientation.)

Identities used (exact, and stable for any logit because ``softplus`` never overflows):

    -log D(x)      = -log sigmoid(l)     = softplus(-l)
    -log(1 - D(x)) = -log sigmoid(-l)    = softplus(l)

so ``softplus(-l)`` is ``BCE(l, target=1)`` and ``softplus(l)`` is ``BCE(l, target=0)``, the
same maths as ``nn.Sigmoid`` + ``nn.BCELoss`` without its log(0) at saturated logits and with
autocast support. Losses compute in float32 whatever the logits' dtype (fp16/bf16 AMP).

Reductions are means over every element (the batch, and a PatchGAN's map of patch scores);
D's loss is the *sum* of its real and fake halves (as in the PyTorch DCGAN example), so the log
loss's ``d_loss = 2 log 2`` at ``D = 1/2`` everywhere.

``g_loss`` takes an optional ``real_logits`` for losses that compare real and fake (relativistic
average and paired GAN); such a loss sets ``g_needs_real = True`` to tell the task to run D on
real data in the generator phase.

Registered losses (``LOSSES.build(name, **kw)`` passes keywords to the constructor):

    nonsaturating   Goodfellow et al. 2014, §3 (default)        D: log loss      G: -log D(G(z))
    minimax         Goodfellow et al. 2014, eq. 1               D: log loss      G: log(1 - D(G(z)))
    lsgan           Mao et al. 2017 (alias least-squares)       D: (l_r-1)^2 + l_f^2   G: (l_f-1)^2
    hinge           Lim & Ye 2017; Miyato et al. 2018           D: relu(1-l_r) + relu(1+l_f)
                                                                G: -l_f
    wasserstein     Arjovsky et al. 2017 (+ Gulrajani et al. 2017 gradient penalty)
                                                                D: l_f - l_r     G: -l_f
    relativistic    Jolicoeur-Martineau 2018 (RaSGAN)           log loss on l_r - mean(l_f) etc.
    rpgan           Jolicoeur-Martineau 2018 (RpGAN/RSGAN), as in Huang et al. 2024 (R3GAN)
                                                                D: softplus(-(l_r,i - l_f,i))
                                                                G: softplus(-(l_f,i - l_r,i))

Every loss whose D objective splits as ``A(real) + B(fake)`` also provides ``d_fake(logits) = B``,
what D minimises on a negative example (used e.g. for the matching-aware conditional D's
mismatched pairs). The relativistic losses do not split that way and have no ``d_fake``.

One-sided label smoothing (Salimans et al. 2016, §3.4): the log and least-squares losses take
``label_smoothing=s`` (0 <= s < 1), which moves D's target on *real* data from 1 to 1 - s and
leaves the fake target and G's loss unchanged. It is one-sided because smoothing the fake
target to beta > 0 puts p_model in the numerator of the optimal D, (alpha p_data + beta p_model)
/ (p_data + p_model) (§3.4): where only the model has mass, bad samples would then get no push
towards the data. The margin and critic losses have no target probability to smooth and refuse
it.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ganforge.core.registry import Registry

LOSSES = Registry("loss")


def d_prob(logits: torch.Tensor) -> torch.Tensor:
    """Mean of ``sigmoid(logits)``: D's average belief that the batch is real.

    For logging ``D(x)`` and ``D(G(z))``. Returns a detached 0-dim float32 tensor (call
    ``.item()`` when writing the log, so the GPU is not synchronised on every step).
    """
    return torch.sigmoid(logits.detach().float()).mean()


def d_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's classification accuracy with the decision threshold at logit 0: the mean over every
    element of ``[real_logits > 0 ; fake_logits < 0]``.

    A value pinned near 1 (D separates everything) or near 0.5 with tiny logits warns of a
    collapsed or overpowered D. For hinge and Wasserstein, where ``sigmoid(l)`` is no
    probability (so ``d_prob`` means little), the sign of the score is still D's natural decision
    boundary: hinge's margins sit at +-1 around it, and a critic scores real above fake.
    PatchGAN maps count each patch as one decision. Detached 0-dim float32 tensor.
    """
    hits = torch.cat([(real_logits.detach() > 0).flatten(), (fake_logits.detach() < 0).flatten()])
    return hits.float().mean()


class AdversarialLoss:
    """Base of the registered losses: ``d_loss(real, fake)`` and ``g_loss(fake, real=None)``.

    Subclasses override the two methods; both return scalar tensors to be minimised. A loss
    whose D objective is ``A(real) + B(fake)`` also defines ``d_fake(logits) = B`` (deliberately
    absent here, so ``getattr(loss, "d_fake", None)`` says whether a loss has one).
    """

    #: True when ``g_loss`` needs ``real_logits`` (D must then see real data in G's phase).
    g_needs_real: bool = False
    #: True when D's loss has a real-data target that one-sided label smoothing can lower.
    supports_label_smoothing: bool = False

    def __init__(self, label_smoothing: float = 0.0):
        s = float(label_smoothing)
        if not 0.0 <= s < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing!r}: must be in [0, 1) (D's target "
                             f"on real data becomes 1 - label_smoothing; 0 turns it off)")
        if s != 0.0 and not self.supports_label_smoothing:
            raise ValueError(f"{type(self).__name__} does not take label_smoothing="
                             f"{label_smoothing!r}: one-sided label smoothing applies to the log "
                             f"and least-squares losses (nonsaturating, minimax, lsgan); hinge, "
                             f"wasserstein, relativistic and rpgan have no probability target to "
                             f"smooth. "
                             f"Use label_smoothing=0 with this loss, or use one of those losses")
        self.label_smoothing = s

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        extra = f"label_smoothing={self.label_smoothing:g}" if self.label_smoothing else ""
        return f"{type(self).__name__}({extra})"


class _SaturatingDLoss(AdversarialLoss):
    """D's side of Goodfellow et al. 2014, eq. 1, shared by "minimax" and "nonsaturating"."""

    supports_label_smoothing = True

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        # Eq. 1: D maximises V = E_x[log D(x)] + E_z[log(1 - D(G(z)))].
        # Minimising -V = E[softplus(-l_real)] + E[softplus(l_fake)]
        #              = BCE(l_real, 1) + BCE(l_fake, 0).
        # With one-sided smoothing s (Salimans et al. 2016, §3.4) the real target is 1 - s:
        # BCE(l, 1 - s) = (1 - s) softplus(-l) + s softplus(l).
        r = real_logits.float()
        real_half = F.softplus(-r).mean()
        s = self.label_smoothing
        if s:
            real_half = (1 - s) * real_half + s * F.softplus(r).mean()
        return real_half + self.d_fake(fake_logits)

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on negatives: -log(1 - D(x)) = softplus(l) = BCE(l, target=0)."""
        return F.softplus(logits.float()).mean()


@LOSSES.register("nonsaturating")
class NonSaturatingLoss(_SaturatingDLoss):
    """Non-saturating GAN loss (default): G minimises -log D(G(z)) = softplus(-l_fake).

    Goodfellow et al. 2014, §3: "Early in learning, when G is poor, D can reject samples with
    high confidence ... log(1 - D(G(z))) saturates. Rather than training G to minimize
    log(1 - D(G(z))) we can train G to maximize log D(G(z))." Same fixed point as eq. 1, but
    d g_loss / d l_fake = -sigmoid(-l_fake) -> -1 (not 0) when D confidently rejects fakes
    (l_fake -> -inf), so G keeps receiving gradient. D's loss is eq. 1's (see ``d_loss``);
    ``label_smoothing=s`` sets D's real target to 1 - s.
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
    ``label_smoothing=s`` regresses real scores to b = 1 - s instead (one-sided: a and G's
    target c stay 0 and 1).
    """

    supports_label_smoothing = True

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        target = 1.0 - self.label_smoothing
        return (real_logits.float() - target).square().mean() + self.d_fake(fake_logits)

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on negatives: D(x)^2 (regress to a = 0)."""
        return logits.float().square().mean()

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        return (fake_logits.float() - 1).square().mean()


@LOSSES.register("hinge", help="hinge loss (Lim & Ye 2017; SN-GAN, Miyato et al. 2018): "
                               "D: relu(1 - l_real) + relu(1 + l_fake); G: -l_fake")
class HingeLoss(AdversarialLoss):
    """Hinge loss (Geometric GAN, Lim & Ye 2017; the form used with spectral normalisation by
    Miyato et al. 2018):

        D minimises  E_x[max(0, 1 - D(x))] + E_z[max(0, 1 + D(G(z)))]
        G minimises  -E_z[D(G(z))]

    ``D(.)`` is a raw score (larger = more real), not a log-odds: ``sigmoid`` of it is no
    probability, so ``d_prob`` logging is only indicative; ``d_accuracy`` (sign threshold) is
    meaningful. D stops being pushed on examples already beyond the margin (real score >= 1,
    fake <= -1), a support-vector-machine margin on the separating hyperplane (Lim & Ye).
    G's loss is the critic-style linear one: its gradient with respect to a fake's score is
    constant, so it never saturates however confidently D rejects.
    """

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real_logits.float()).mean() + self.d_fake(fake_logits)

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """D's loss on negatives: max(0, 1 + D(x))."""
        return F.relu(1 + logits.float()).mean()

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        return -fake_logits.float().mean()


@LOSSES.register("wasserstein", help="WGAN critic loss (Arjovsky et al. 2017): D: l_fake - l_real; "
                                     "G: -l_fake. Needs a Lipschitz D: gradient penalty or SN")
class WassersteinLoss(AdversarialLoss):
    """Wasserstein GAN (Arjovsky et al. 2017, eq. 3; with the gradient penalty of Gulrajani et
    al. 2017, eq. 3, ``ganforge.regularize.penalties.gradient_penalty``):

        critic D maximises  E_x[D(x)] - E_z[D(G(z))]   i.e. minimises  E[D(G(z))] - E[D(x)]
        G minimises         -E_z[D(G(z))]

    The critic's objective estimates the Wasserstein-1 distance (Kantorovich-Rubinstein
    duality) *only if D is 1-Lipschitz*. Without a constraint the loss is unbounded below and D
    simply scales its output up: use it with a gradient penalty (``reg.gp``, lambda = 10 in
    Gulrajani et al.) or spectral normalisation. The output is an unbounded score, not a
    log-odds: ``D(x) = sigmoid(l)`` logging (``d_prob``) is meaningless for this loss; watch
    ``-d_loss`` (the distance estimate) and ``d_accuracy`` instead.
    """

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.d_fake(fake_logits) - real_logits.float().mean()

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        """The critic's loss on negatives: E[D(x)] (it wants them scored low)."""
        return logits.float().mean()

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        return -fake_logits.float().mean()


@LOSSES.register("relativistic", help="relativistic average GAN (RaSGAN, Jolicoeur-Martineau "
                                      "2018): is real more real than the average fake? "
                                      "G also needs D on real data")
class RelativisticAverageLoss(AdversarialLoss):
    """Relativistic average standard GAN (RaSGAN; Jolicoeur-Martineau 2018). With ``C`` the
    raw logit and ``D~(x_r) = sigmoid(C(x_r) - E_f[C(x_f)])``, ``D~(x_f) = sigmoid(C(x_f) -
    E_r[C(x_r)])`` (the probability that a real sample is more realistic than the average fake,
    and vice versa):

        D minimises  -E_r[log D~(x_r)] - E_f[log(1 - D~(x_f))]
                   = E_r[softplus(-(C(x_r) - E_f C))] + E_f[softplus(C(x_f) - E_r C)]
        G minimises  -E_f[log D~(x_f)] - E_r[log(1 - D~(x_r))]   (roles of real and fake swapped)
                   = E_f[softplus(-(C(x_f) - E_r C))] + E_r[softplus(C(x_r) - E_f C)]

    The batch means stand in for the expectations E_f C, E_r C (over every element, so PatchGAN
    maps compare each patch with the average patch). G's loss needs D's logits on a real batch
    (``g_needs_real = True``). Real data does not depend on G, so those logits send G no
    gradient of their own; they set the reference every fake is compared with, and the second
    term makes G's optimum one where D finds real data *less* real than fakes on average, the
    paper's argument for the relativistic form. D's objective does not split as
    ``A(real) + B(fake)`` (each half depends on the other batch's mean), so there is no
    ``d_fake``; per-image weighting of the real half (``weighted_d_loss`` in the conditional
    task) does not apply to it either.
    """

    g_needs_real = True

    @staticmethod
    def _both(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        # BCE(pos - mean(neg), 1) + BCE(neg - mean(pos), 0), each mean over all elements.
        pos, neg = pos.float(), neg.float()
        return (F.softplus(-(pos - neg.mean())).mean()
                + F.softplus(neg - pos.mean()).mean())

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return self._both(real_logits, fake_logits)

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        if real_logits is None:
            raise ValueError("the relativistic loss compares fakes with reals: g_loss needs "
                             "real_logits (D's logits on a real batch in the generator phase; "
                             "the loss has g_needs_real = True so a task can check)")
        return self._both(fake_logits, real_logits)


@LOSSES.register("rpgan", help="relativistic paired GAN (RpGAN: Jolicoeur-Martineau 2018's RSGAN, "
                               "R3GAN's loss, Huang et al. 2024): is the i-th real more real than "
                               "the i-th fake? G also needs D on real data")
class RelativisticPairedLoss(AdversarialLoss):
    """Relativistic paired GAN (RpGAN): the relativistic standard GAN (RSGAN) of
    Jolicoeur-Martineau 2018, "The relativistic discriminator: a key element missing from
    standard GAN", §4.1, as used by R3GAN (Huang, Gokaslan, Kuleshov & Tompkin 2024, "The GAN
    is dead; long live the GAN! A Modern GAN Baseline", eq. 2 and §2.1). With ``C`` the raw
    logit, the i-th real ``x_r,i`` and the i-th fake ``x_f,i`` of the batch form a pair::

        D minimises  E_i[ f(-(C(x_r,i) - C(x_f,i))) ] = E_i[softplus(C(x_f,i) - C(x_r,i))]
        G minimises  E_i[ f(-(C(x_f,i) - C(x_r,i))) ] = E_i[softplus(C(x_r,i) - C(x_f,i))]

    with ``f(t) = softplus(t) = -log sigmoid(-t)``: ``sigmoid(C(x_r) - C(x_f))`` is D's
    probability that the real sample of the pair is the more realistic one. R3GAN's reason for
    it (§2.1, after Sun et al. 2020): the paired form has no mode-dropping local minima of the
    kind the classic (non-relativistic) loss has, because every fake is judged against a real
    sample, not in isolation.

    Differs from ``relativistic`` (RaSGAN), which compares each sample with the *average* logit
    of the other batch; here element i of one batch meets element i of the other, so
    ``real_logits`` and ``fake_logits`` must have the same shape (the same batch size; a
    PatchGAN's maps pair patch by patch) — a ValueError says so otherwise. G's loss needs D's
    logits on a real batch (``g_needs_real = True``); real data does not depend on G, so they
    set the reference G is compared with and send G no gradient of their own. D's objective
    does not split as ``A(real) + B(fake)``, so there is no ``d_fake`` (a matching-aware
    conditional D, which needs one, refuses this loss) and no label smoothing.
    """

    g_needs_real = True

    @staticmethod
    def _check_pairs(real_logits: torch.Tensor, fake_logits: torch.Tensor, who: str) -> None:
        if real_logits.shape != fake_logits.shape:
            raise ValueError(
                f"rpgan pairs the i-th real with the i-th fake, so {who} needs real and fake "
                f"logits of the same shape; got real {tuple(real_logits.shape)} and fake "
                f"{tuple(fake_logits.shape)}: give D equal-sized real and fake batches (or use "
                f"train.loss=relativistic, which compares with batch averages)")

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        # E_i[softplus(-(l_r,i - l_f,i))] = E_i[BCE(l_r,i - l_f,i, target=1)], in float32.
        self._check_pairs(real_logits, fake_logits, "d_loss")
        return F.softplus(fake_logits.float() - real_logits.float()).mean()

    def g_loss(self, fake_logits: torch.Tensor,
               real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        if real_logits is None:
            raise ValueError("the rpgan loss compares each fake with a real sample: g_loss needs "
                             "real_logits (D's logits on a real batch of the same size in the "
                             "generator phase; the loss has g_needs_real = True so a task can "
                             "check)")
        self._check_pairs(real_logits, fake_logits, "g_loss")
        return F.softplus(real_logits.float() - fake_logits.float()).mean()


def get_loss(name: str, **kwargs) -> AdversarialLoss:
    """An instance of the registered loss ``name`` (unknown names list the valid ones);
    keywords (e.g. ``label_smoothing``) go to its constructor."""
    return LOSSES.build(name, **kwargs)
