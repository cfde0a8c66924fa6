"""Numeric tests for the adversarial losses (ganforge/losses.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.losses import LOSSES, AdversarialLoss, d_prob, get_loss
from ganforge.registry import RegistryError

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
