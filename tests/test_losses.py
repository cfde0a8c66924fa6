"""Numeric tests for the adversarial losses (ganforge/losses/adversarial.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.core.registry import RegistryError
from ganforge.losses.adversarial import (
    LOSSES,
    AdversarialLoss,
    d_accuracy,
    d_prob,
    get_loss,
)

NAMES = ("nonsaturating", "minimax")


def bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(target)))


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, generator=g) * 3, torch.randn(64, generator=g) * 3


def test_registry():
    assert set(NAMES) <= set(LOSSES.names())
    for name in NAMES:
        loss = get_loss(name)
        assert isinstance(loss, AdversarialLoss) and not loss.g_needs_real
        assert LOSSES.help(name)
    with pytest.raises(RegistryError, match="nonsaturating"):
        get_loss("nonsaturatng")


@pytest.mark.parametrize("name", NAMES)
def test_d_loss_is_bce(name, logits):
    real, fake = logits
    got = get_loss(name).d_loss(real, fake)
    assert got.dim() == 0
    torch.testing.assert_close(got, bce(real, 1) + bce(fake, 0))


def test_g_losses_are_bce(logits):
    real, fake = logits
    ns, mm = get_loss("nonsaturating"), get_loss("minimax")
    # non-saturating: -log D(G(z)) = BCE(fake, 1)
    torch.testing.assert_close(ns.g_loss(fake), bce(fake, 1))
    # minimax: log(1 - D(G(z))) = -BCE(fake, 0)
    torch.testing.assert_close(mm.g_loss(fake), -bce(fake, 0))
    # by hand, through probabilities, at moderate logits where that is accurate
    p = torch.sigmoid(fake)
    torch.testing.assert_close(ns.g_loss(fake), (-torch.log(p)).mean())
    torch.testing.assert_close(mm.g_loss(fake), torch.log1p(-p).mean())
    # the optional real_logits argument is accepted and does not change these losses
    torch.testing.assert_close(ns.g_loss(fake, real_logits=real), ns.g_loss(fake))
    torch.testing.assert_close(mm.g_loss(fake, real), mm.g_loss(fake))


def test_value_at_equilibrium():
    # Goodfellow et al. 2014, Thm 1: at D = 1/2 the value V(D, G) = -log 4, i.e. d_loss = log 4.
    zeros = torch.zeros(16)
    for name in NAMES:
        torch.testing.assert_close(get_loss(name).d_loss(zeros, zeros), torch.tensor(math.log(4.0)))
    torch.testing.assert_close(get_loss("nonsaturating").g_loss(zeros), torch.tensor(math.log(2.0)))
    torch.testing.assert_close(get_loss("minimax").g_loss(zeros), torch.tensor(-math.log(2.0)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", [100.0, -100.0, 1e4, -1e4])
def test_stable_at_extreme_logits(name, value):
    loss = get_loss(name)
    real = torch.full((8,), value, requires_grad=True)
    fake = torch.full((8,), value, requires_grad=True)
    d = loss.d_loss(real, fake)
    g = loss.g_loss(fake)
    assert torch.isfinite(d) and torch.isfinite(g)
    (d + g).backward()
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()
    # One side of D's loss is ~0, the other ~|value| (softplus(x) ~ x for large x).
    torch.testing.assert_close(d, torch.tensor(abs(value)), rtol=1e-6, atol=1e-4)


def test_extreme_values_match_closed_form():
    ns, mm = get_loss("nonsaturating"), get_loss("minimax")
    hi, lo = torch.full((4,), 100.0), torch.full((4,), -100.0)
    assert ns.d_loss(hi, lo).item() == pytest.approx(0.0, abs=1e-30)  # perfect D
    assert ns.d_loss(lo, hi).item() == pytest.approx(200.0)             # perfectly wrong D
    assert ns.g_loss(lo).item() == pytest.approx(100.0)  # D rejects: large G loss, no inf
    assert mm.g_loss(lo).item() == pytest.approx(0.0, abs=1e-30)
    assert mm.g_loss(hi).item() == pytest.approx(-100.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits(dtype):
    fake = torch.tensor([-60.0, -5.0, 0.0, 5.0, 60.0], dtype=dtype)
    for name in NAMES:
        loss = get_loss(name)
        d, g = loss.d_loss(fake, fake), loss.g_loss(fake)
        assert d.dtype == torch.float32 and g.dtype == torch.float32
        assert torch.isfinite(d) and torch.isfinite(g)
        torch.testing.assert_close(g, loss.g_loss(fake.float()))


def _g_grad(name, logit):
    fake = torch.full((1,), logit, requires_grad=True)
    get_loss(name).g_loss(fake).backward()
    return fake.grad.item()


def test_saturation_minimax_vs_nonsaturating():
    # D confidently rejects the fakes (D(G(z)) = sigmoid(-10) ~ 4.5e-5): early training.
    ns, mm = _g_grad("nonsaturating", -10.0), _g_grad("minimax", -10.0)
    assert ns == pytest.approx(-torch.sigmoid(torch.tensor(10.0)).item())  # ~ -1
    assert mm == pytest.approx(-torch.sigmoid(torch.tensor(-10.0)).item())  # ~ -4.5e-5
    assert abs(ns) > 0.99 and abs(mm) < 1e-4 and abs(ns) > 1e4 * abs(mm)
    # Both push fake logits up (descent on the loss raises l_fake): same direction.
    assert ns < 0 and mm < 0
    # Where D is fooled the roles flip: minimax's gradient is large, non-saturating's small.
    assert abs(_g_grad("minimax", 10.0)) > 0.99 and abs(_g_grad("nonsaturating", 10.0)) < 1e-4
    # At D = 1/2 they agree.
    assert _g_grad("minimax", 0.0) == pytest.approx(_g_grad("nonsaturating", 0.0)) == pytest.approx(-0.5)


@pytest.mark.parametrize("name", NAMES)
def test_sign_conventions(name):
    loss = get_loss(name)
    base = torch.zeros(8)
    # D is better (lower loss) when real logits go up and fake logits go down.
    assert loss.d_loss(base + 2, base) < loss.d_loss(base, base)
    assert loss.d_loss(base, base - 2) < loss.d_loss(base, base)
    # G is better (lower loss) when D scores its fakes as more real.
    assert loss.g_loss(base + 2) < loss.g_loss(base) < loss.g_loss(base - 2)
    # Gradient descent on d_loss moves logits the right way.
    real, fake = base.clone().requires_grad_(), base.clone().requires_grad_()
    loss.d_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()


def test_d_prob():
    logits = torch.tensor([0.0, 100.0, -100.0, math.log(3.0)], requires_grad=True)
    p = d_prob(logits)
    assert p.dim() == 0 and not p.requires_grad and p.dtype == torch.float32
    assert p.item() == pytest.approx((0.5 + 1.0 + 0.0 + 0.75) / 4)
    assert d_prob(torch.zeros(3, dtype=torch.bfloat16)).item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------- hinge, WGAN, RaSGAN
NEW = ("hinge", "wasserstein", "relativistic")
PAIRED = ("rpgan",)
ALL = NAMES + ("lsgan",) + NEW + PAIRED
# D's real half A(real) of d_loss = A(real) + B(fake), by hand, for the losses that split so.
REAL_HALF = {
    "nonsaturating": lambda r: F.softplus(-r).mean(),
    "minimax": lambda r: F.softplus(-r).mean(),
    "lsgan": lambda r: (r - 1).square().mean(),
    "hinge": lambda r: F.relu(1 - r).mean(),
    "wasserstein": lambda r: -r.mean(),
}
FAKE_HALF = {
    "nonsaturating": lambda f: F.softplus(f).mean(),
    "minimax": lambda f: F.softplus(f).mean(),
    "lsgan": lambda f: f.square().mean(),
    "hinge": lambda f: F.relu(1 + f).mean(),
    "wasserstein": lambda f: f.mean(),
}
# Hand-picked logits: mean(real) = 0.5, mean(fake) = -0.5.
HAND_REAL = torch.tensor([2.0, -0.5, 0.0])
HAND_FAKE = torch.tensor([-3.0, 0.5, 1.0])


def sp(x):
    return math.log1p(math.exp(x))


def test_new_losses_registered():
    for name in NEW:
        loss = get_loss(name)
        assert isinstance(loss, AdversarialLoss) and LOSSES.help(name)
        assert loss.g_needs_real == (name == "relativistic")
        assert not loss.supports_label_smoothing
    assert repr(get_loss("hinge")) == "HingeLoss()"


def test_hinge_by_hand():
    hinge = get_loss("hinge")
    # relu(1 - [2, -.5, 0]) = [0, 1.5, 1]; relu(1 + [-3, .5, 1]) = [0, 1.5, 2]
    assert hinge.d_loss(HAND_REAL, HAND_FAKE).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert hinge.g_loss(HAND_FAKE).item() == pytest.approx(0.5)
    # beyond the margins D's loss is exactly 0 and sends no gradient
    real = torch.tensor([1.0, 5.0], requires_grad=True)
    fake = torch.tensor([-1.0, -7.0], requires_grad=True)
    d = hinge.d_loss(real, fake)
    d.backward()
    assert d.item() == 0.0 and not real.grad.any() and not fake.grad.any()


def test_wasserstein_by_hand():
    w = get_loss("wasserstein")
    assert w.d_loss(HAND_REAL, HAND_FAKE).item() == pytest.approx(-0.5 - 0.5)
    assert w.g_loss(HAND_FAKE).item() == pytest.approx(0.5)
    # unbounded: scaling the critic up lowers its loss without limit (hence the Lipschitz need)
    assert w.d_loss(10 * HAND_REAL, 10 * HAND_FAKE).item() == pytest.approx(-10.0)


def test_relativistic_by_hand():
    ra = get_loss("relativistic")
    # D: softplus(-(r - mean f)) = softplus(-[2.5, 0, 0.5]); softplus(f - mean r) = softplus([-3.5, 0, .5])
    d = (sp(-2.5) + sp(0.0) + sp(-0.5)) / 3 + (sp(-3.5) + sp(0.0) + sp(0.5)) / 3
    # G, roles swapped: softplus(-(f - mean r)) = softplus([3.5, 0, -.5]); softplus(r - mean f)
    g = (sp(3.5) + sp(0.0) + sp(-0.5)) / 3 + (sp(2.5) + sp(0.0) + sp(0.5)) / 3
    assert ra.d_loss(HAND_REAL, HAND_FAKE).item() == pytest.approx(d)
    assert ra.g_loss(HAND_FAKE, HAND_REAL).item() == pytest.approx(g)
    # it is the BCE on relative logits
    torch.testing.assert_close(ra.d_loss(HAND_REAL, HAND_FAKE),
                               bce(HAND_REAL - HAND_FAKE.mean(), 1) + bce(HAND_FAKE - HAND_REAL.mean(), 0))
    # shifting every logit by a constant changes nothing: only relative realness counts
    torch.testing.assert_close(ra.d_loss(HAND_REAL + 7, HAND_FAKE + 7), ra.d_loss(HAND_REAL, HAND_FAKE))
    zeros = torch.zeros(5)
    torch.testing.assert_close(ra.d_loss(zeros, zeros), torch.tensor(math.log(4.0)))


def test_relativistic_g_needs_real():
    ra = get_loss("relativistic")
    assert ra.g_needs_real
    with pytest.raises(ValueError, match="real_logits"):
        ra.g_loss(HAND_FAKE)
    # no A(real) + B(fake) split, so no fake half
    assert getattr(ra, "d_fake", None) is None


# ----------------------------------------------------------------------------- RpGAN (R3GAN)
def test_rpgan_by_hand():
    rp = get_loss("rpgan")
    assert isinstance(rp, AdversarialLoss) and LOSSES.help("rpgan") and rp.g_needs_real
    assert not rp.supports_label_smoothing and getattr(rp, "d_fake", None) is None
    # pairs (2, -3), (-.5, .5), (0, 1): r - f = [5, -1, -1]
    # D: softplus(-(r - f)) = softplus([-5, 1, 1]); G: softplus(-(f - r)) = softplus([5, -1, -1])
    d = (sp(-5.0) + sp(1.0) + sp(1.0)) / 3
    g = (sp(5.0) + sp(-1.0) + sp(-1.0)) / 3
    assert rp.d_loss(HAND_REAL, HAND_FAKE).item() == pytest.approx(d)
    assert rp.g_loss(HAND_FAKE, HAND_REAL).item() == pytest.approx(g)
    # the BCE on the pairs' relative logits, and not the average form: pairing matters
    torch.testing.assert_close(rp.d_loss(HAND_REAL, HAND_FAKE), bce(HAND_REAL - HAND_FAKE, 1))
    assert rp.d_loss(HAND_REAL, HAND_FAKE.flip(0)).item() != pytest.approx(d)
    assert rp.d_loss(HAND_REAL, HAND_FAKE).item() != pytest.approx(
        get_loss("relativistic").d_loss(HAND_REAL, HAND_FAKE).item())
    # only relative realness counts; at equal logits both players' loss is log 2
    torch.testing.assert_close(rp.d_loss(HAND_REAL + 7, HAND_FAKE + 7), rp.d_loss(HAND_REAL, HAND_FAKE))
    torch.testing.assert_close(rp.d_loss(torch.zeros(5), torch.zeros(5)), torch.tensor(math.log(2.0)))


def test_rpgan_gradient_signs():
    rp = get_loss("rpgan")
    real = HAND_REAL.clone().requires_grad_()
    fake = HAND_FAKE.clone().requires_grad_()
    rp.d_loss(real, fake).backward()
    # D pushes every real logit up and every fake one down, each by sigmoid(f_i - r_i) / n
    w = torch.sigmoid(HAND_FAKE - HAND_REAL) / 3
    torch.testing.assert_close(real.grad, -w)
    torch.testing.assert_close(fake.grad, w)
    fake2 = HAND_FAKE.clone().requires_grad_()
    rp.g_loss(fake2, HAND_REAL).backward()
    # G pushes its fakes' logits up, by sigmoid(r_i - f_i) / n
    torch.testing.assert_close(fake2.grad, -torch.sigmoid(HAND_REAL - HAND_FAKE) / 3)


def test_rpgan_needs_pairs():
    rp = get_loss("rpgan")
    with pytest.raises(ValueError, match=r"same shape.*\(3,\).*\(2,\)"):
        rp.d_loss(HAND_REAL, HAND_FAKE[:2])
    with pytest.raises(ValueError, match="i-th real with the i-th fake"):
        rp.g_loss(HAND_FAKE[:2], HAND_REAL)
    with pytest.raises(ValueError, match="real_logits"):
        rp.g_loss(HAND_FAKE)
    # PatchGAN maps pair element-wise
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(2, 1, 3, 3, generator=g), torch.randn(2, 1, 3, 3, generator=g)
    torch.testing.assert_close(rp.d_loss(real, fake), F.softplus(fake - real).mean())


@pytest.mark.parametrize("name", NEW + PAIRED)   # (lsgan is not monotone: it regresses to 0/1)
def test_sign_conventions_new(name):
    loss = get_loss(name)
    base = torch.zeros(8)
    g = (lambda f: loss.g_loss(f, base)) if loss.g_needs_real else loss.g_loss
    assert loss.d_loss(base + 0.5, base) < loss.d_loss(base, base)
    assert loss.d_loss(base, base - 0.5) < loss.d_loss(base, base)
    assert g(base + 0.5) < g(base) < g(base - 0.5)
    real, fake = base.clone().requires_grad_(), base.clone().requires_grad_()
    loss.d_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()


@pytest.mark.parametrize("name", ALL)
def test_patchgan_maps_mean_over_all_elements(name):
    loss = get_loss(name)
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, 1, 3, 3, generator=g)
    torch.testing.assert_close(loss.d_loss(real, fake), loss.d_loss(real.flatten(), fake.flatten()))
    torch.testing.assert_close(loss.g_loss(fake, real), loss.g_loss(fake.flatten(), real.flatten()))


@pytest.mark.parametrize("name", ALL)
def test_low_precision_new(name):
    loss = get_loss(name)
    x = torch.tensor([-60.0, -5.0, 0.0, 5.0, 60.0], dtype=torch.bfloat16)
    d, g = loss.d_loss(x, x.flip(0)), loss.g_loss(x, x.flip(0))
    assert d.dtype == g.dtype == torch.float32 and torch.isfinite(d) and torch.isfinite(g)


@pytest.mark.parametrize("name", sorted(REAL_HALF))
def test_d_fake_is_the_fake_half(name, logits):
    loss = get_loss(name)
    real, fake = logits
    torch.testing.assert_close(loss.d_fake(fake), FAKE_HALF[name](fake))
    torch.testing.assert_close(loss.d_loss(real, fake), REAL_HALF[name](real) + loss.d_fake(fake))
    assert loss.d_fake(fake).dim() == 0


# ----------------------------------------------------------------------------- label smoothing
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("s", [0.1, 0.3])
def test_label_smoothing_is_bce_with_target(name, s, logits):
    real, fake = logits
    smooth, plain = LOSSES.build(name, label_smoothing=s), get_loss(name)
    assert smooth.label_smoothing == s and f"label_smoothing={s}" in repr(smooth)
    # Salimans et al. 2016, §3.4: real target 1 - s, fake target 0 (one-sided)
    torch.testing.assert_close(smooth.d_loss(real, fake), bce(real, 1 - s) + bce(fake, 0))
    torch.testing.assert_close(smooth.d_fake(fake), plain.d_fake(fake))
    torch.testing.assert_close(smooth.g_loss(fake), plain.g_loss(fake))


def test_label_smoothing_lsgan(logits):
    real, fake = logits
    ls = get_loss("lsgan", label_smoothing=0.2)
    torch.testing.assert_close(ls.d_loss(real, fake), (real - 0.8).square().mean() + fake.square().mean())
    torch.testing.assert_close(ls.g_loss(fake), get_loss("lsgan").g_loss(fake))
    # smoothing 0 is the default, and equal to no smoothing
    torch.testing.assert_close(get_loss("lsgan", label_smoothing=0.0).d_loss(real, fake),
                               get_loss("lsgan").d_loss(real, fake))


@pytest.mark.parametrize("name", NEW + PAIRED)
def test_label_smoothing_refused(name):
    with pytest.raises(ValueError, match="label smoothing applies to the log and least-squares"):
        get_loss(name, label_smoothing=0.1)
    get_loss(name, label_smoothing=0.0)            # 0 is "off" and always accepted


@pytest.mark.parametrize("s", [-0.1, 1.0, 1.5])
def test_label_smoothing_range(s):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        get_loss("nonsaturating", label_smoothing=s)


# ----------------------------------------------------------------------------- d_accuracy
def test_d_accuracy():
    real = torch.tensor([3.0, -1.0, 0.5, 0.0], requires_grad=True)   # 2 of 4 right (0 is wrong)
    fake = torch.tensor([-2.0, 1.0], dtype=torch.bfloat16)            # 1 of 2 right
    acc = d_accuracy(real, fake)
    assert acc.dim() == 0 and acc.dtype == torch.float32 and not acc.requires_grad
    assert acc.item() == pytest.approx(3 / 6)
    assert d_accuracy(torch.ones(2, 1, 4, 4), -torch.ones(2, 1, 4, 4)).item() == 1.0
