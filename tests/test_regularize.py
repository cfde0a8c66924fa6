"""Numeric tests for ganforge/regularize/penalties.py and ganforge/regularize/ema.py."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.regularize.ema import EMA, make_copy, unwrap
from ganforge.regularize.penalties import (
    add_instance_noise,
    gradient_penalty,
    instance_noise_std,
    r1_penalty,
    r2_penalty,
    zero_centered_penalty,
)


def _images(n=4, seed=0):
    return torch.randn(n, 2, 3, 3, generator=torch.Generator().manual_seed(seed))


def _linear_critic(w):
    """D(x) = sum(w * x) over each image: grad_x D = w for every x."""
    return lambda x: (x * w).flatten(1).sum(1)


def _small_d():
    torch.manual_seed(0)
    # PatchGAN-style: a (N, 1, h, w) map of logits; smooth activations so the penalty's
    # double backward is nontrivial.
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Softplus(), nn.Conv2d(4, 1, 3))


# ----------------------------------------------------------------------------- R1
def test_r1_linear_is_norm_of_w():
    w = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(1))
    x = _images().requires_grad_(True)
    got = r1_penalty(_linear_critic(w)(x), x)
    assert got.dim() == 0 and got.dtype == torch.float32
    torch.testing.assert_close(got, w.square().sum())
    # a PatchGAN map (N, 1, 3, 3) whose patches sum to the same D: same penalty
    x2 = _images().requires_grad_(True)
    patch_map = (x2 * w).sum(1, keepdim=True)
    assert patch_map.shape == (4, 1, 3, 3)
    torch.testing.assert_close(r1_penalty(patch_map, x2), w.square().sum())


def test_r1_errors():
    x = _images()
    with pytest.raises(ValueError, match="requires_grad_"):
        r1_penalty(x.sum((1, 2, 3)), x)
    x.requires_grad_(True)
    with pytest.raises(ValueError, match="do not depend"):
        r1_penalty(torch.zeros(4, requires_grad=True), x)


# ----------------------------------------------------------------------------- R2
def test_r2_equals_hand_computed_input_gradient_norm():
    """R2 = E||grad_x D(x)||^2 over generated x, for a tiny nonlinear D, against the gradient
    written out by hand: D(x) = v . tanh(W x) => grad_x D = W^T (v * (1 - tanh(W x)^2))."""
    g = torch.Generator().manual_seed(3)
    W, v = torch.randn(5, 18, generator=g), torch.randn(5, generator=g)
    fake = _images(n=6, seed=4)                         # stands for G(z), detached

    def D(x):
        return torch.tanh(x.flatten(1) @ W.T) @ v

    x = fake.detach().requires_grad_(True)
    got = r2_penalty(D(x), x)
    h = torch.tanh(fake.flatten(1) @ W.T)               # (6, 5)
    grads = ((1 - h.square()) * v) @ W                  # (6, 18): one row per image
    torch.testing.assert_close(got, grads.square().sum(1).mean())
    # the same function as R1: only the batch it is taken on differs
    torch.testing.assert_close(got, r1_penalty(D(x), x))
    torch.testing.assert_close(got, zero_centered_penalty(D(x), x))


def test_r2_errors_name_r2_and_it_trains_d():
    x = _images()
    with pytest.raises(ValueError, match="r2_penalty.*requires_grad_"):
        r2_penalty(x.sum((1, 2, 3)), x)
    x.requires_grad_(True)
    with pytest.raises(ValueError, match="r2_penalty.*batch size 3"):
        r2_penalty(torch.zeros(3, requires_grad=True), x)
    D = _small_d()
    r2 = r2_penalty(D(x), x)
    r2.backward()                                       # double backward into D's weights
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters() if p.dim() > 1)


def test_r1_differentiable_wrt_d():
    D = _small_d()
    x = _images().requires_grad_(True)
    r1 = r1_penalty(D(x), x)
    assert r1.item() > 0
    r1.backward()                                       # double backward into D's weights
    for p in D.parameters():
        if p.dim() > 1:
            assert p.grad is not None and p.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- gradient penalty
@pytest.mark.parametrize("scale, expected", [(1.0, 0.0), (3.0, 4.0)])
def test_gp_linear_critic(scale, expected):
    w = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(2))
    w = scale * w / w.norm()                            # ||w|| = scale: (||w|| - 1)^2
    got = gradient_penalty(_linear_critic(w), _images(seed=3), _images(seed=4))
    assert got.dim() == 0 and got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, abs=1e-5)


def test_gp_uses_generator_per_sample():
    critic = lambda x: x.square().flatten(1).sum(1)     # gradient 2 x^: depends on eps
    real, fake = _images(seed=5), _images(seed=6)
    a = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    b = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    c = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(8))
    assert a.item() == b.item() and a.item() != c.item()
    # by hand: x^ = eps real + (1 - eps) fake with the same per-sample eps draws
    eps = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(7))
    norms = (2 * (eps * real + (1 - eps) * fake)).flatten(1).norm(dim=1)
    torch.testing.assert_close(a, (norms - 1).square().mean())


def test_gp_differentiable_wrt_critic_not_g():
    D = _small_d()
    fake = _images(seed=9).requires_grad_(True)         # stands in for G's output
    gp = gradient_penalty(D, _images(), fake, generator=torch.Generator().manual_seed(0))
    gp.backward()
    assert fake.grad is None                             # fake is detached: trains D only
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters() if p.dim() > 1)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(D, _images(n=4), _images(n=3))


# ----------------------------------------------------------------------------- instance noise
def test_instance_noise_schedule():
    assert instance_noise_std(0, 0.1, 100) == pytest.approx(0.1)
    assert instance_noise_std(50, 0.1, 100) == pytest.approx(0.05)
    assert instance_noise_std(100, 0.1, 100) == 0.0
    assert instance_noise_std(10_000, 0.1, 100) == 0.0   # never negative
    assert instance_noise_std(5, 0.1, 0) == 0.0
    with pytest.raises(ValueError):
        instance_noise_std(0, -0.1, 100)


def test_add_instance_noise():
    x = torch.zeros(20_000)
    assert add_instance_noise(x, 0.0) is x
    a = add_instance_noise(x, 0.5, generator=torch.Generator().manual_seed(0))
    b = add_instance_noise(x, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(0.5, rel=0.03) and abs(a.mean().item()) < 0.02


# ----------------------------------------------------------------------------- EMA
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3)


def _distance(a, b):
    return sum((p - q).square().sum() for p, q in zip(a.parameters(), b.parameters())).sqrt().item()


def test_ema_beta():
    ema = EMA(1000, warmup=0)
    assert ema.beta(10, 0) == pytest.approx(0.5 ** (10 / 1000))
    assert ema.beta(1000, 5) == pytest.approx(0.5)
    assert EMA(0, warmup=0).beta(10, 1e6) == 0.0       # half-life 0: a plain copy
    with pytest.raises(ValueError):
        EMA(-1)


def test_ema_warmup():
    ema = EMA(1000, warmup=0.05)
    assert ema.beta(10, 0) == 0.0                      # first update: G_ema = G
    assert ema.beta(10, 100) == pytest.approx(0.25)    # half-life min(1000, 5) = 5 images
    assert ema.beta(10, 100) < ema.beta(10, 1000) < ema.beta(10, 20_000)
    assert ema.beta(10, 1e6) == pytest.approx(EMA(1000, warmup=0).beta(10, 1e6))


def test_ema_update_copy_and_buffers():
    torch.manual_seed(0)
    src = _Net()
    dst = make_copy(src)
    assert all(not p.requires_grad for p in dst.parameters()) and dst.training
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
        src.bn.running_mean.fill_(3.0)
        src.bn.num_batches_tracked.fill_(7)
    # beta = 1 (images_seen huge, tiny batch): params stay, buffers still copied
    beta = EMA(1e12, warmup=0).update(src, dst, batch_size=1, images_seen=1e12)
    assert beta == pytest.approx(1.0)
    assert not torch.equal(dst.lin.weight, src.lin.weight)
    assert torch.equal(dst.bn.running_mean, src.bn.running_mean)
    assert dst.bn.num_batches_tracked.item() == 7
    # beta = 0 (warm-up at images_seen = 0): dst becomes src exactly
    assert EMA(1000).update(src, dst, batch_size=8, images_seen=0) == 0.0
    for p, q in zip(src.parameters(), dst.parameters()):
        assert torch.equal(p, q)


def test_ema_half_life():
    torch.manual_seed(0)
    src = _Net()
    dst = make_copy(src)
    with torch.no_grad():
        for p in dst.parameters():
            p.add_(torch.randn_like(p))
    ema, batch = EMA(64, warmup=0), 8
    d0 = _distance(src, dst)
    for _ in range(64 // batch):                       # k = half_life / batch updates
        ema.update(src, dst, batch_size=batch, images_seen=1e6)
    assert _distance(src, dst) == pytest.approx(d0 / 2, rel=1e-5)


def test_ema_unwraps_and_mixed_dtype():
    torch.manual_seed(0)
    src = _Net()
    assert unwrap(nn.DataParallel(src)) is src
    dst64 = make_copy(nn.DataParallel(src)).double()   # slow path: dtype differs from src
    dst32 = make_copy(src)                             # fused _foreach path
    with torch.no_grad():
        for p in src.parameters():
            p.mul_(2.0)
    ema = EMA(16, warmup=0)
    ema.update(nn.DataParallel(src), dst64, batch_size=8, images_seen=1e6)
    ema.update(src, dst32, batch_size=8, images_seen=1e6)
    for a, b in zip(dst32.parameters(), dst64.parameters()):
        torch.testing.assert_close(a, b.float())
    with pytest.raises(ValueError, match="make_copy"):
        ema.update(src, nn.Linear(3, 3), batch_size=8, images_seen=0)


def test_recalibrate_batchnorm_gives_the_average_its_own_statistics():
    """Standing statistics: running mean/var become the exact mean/var of the G's activations
    over the fixed noise, and a G without BatchNorm is left alone."""
    from ganforge.regularize.ema import recalibrate_batchnorm

    class TinyG(torch.nn.Module):
        z_dim = 3

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 4)
            self.bn = torch.nn.BatchNorm1d(4)

        def forward(self, z):
            return self.bn(self.lin(z))

    torch.manual_seed(0)
    G = TinyG().eval()
    assert recalibrate_batchnorm(G, n=512, batch_size=128, seed=5)
    z = torch.randn(512, 3, generator=torch.Generator().manual_seed(5))
    h = G.lin(z).detach()
    assert torch.allclose(G.bn.running_mean, h.mean(0), atol=1e-5)
    # per-batch unbiased variances, averaged (what BatchNorm's cumulative average stores)
    per_batch = torch.stack([h[i:i + 128].var(0, unbiased=True) for i in range(0, 512, 128)]).mean(0)
    assert torch.allclose(G.bn.running_var, per_batch, atol=1e-5)
    assert not G.training and G.bn.momentum == 0.1
    plain = torch.nn.Sequential(torch.nn.Linear(3, 3))
    plain.z_dim = 3
    assert not recalibrate_batchnorm(plain)
