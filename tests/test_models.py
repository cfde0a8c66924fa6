"""Contract tests over every registered model family, plus DCGAN-specific checks.

Each family is built at a tiny width so the whole file runs in a few seconds on a CPU.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn

from ganforge.losses import adversarial as losses
from ganforge.models import DISCRIMINATORS, GENERATORS, build, family_names, from_spec
from ganforge.models import dcgan as dcgan_mod

SIZES = (28, 32, 64)
CHANNELS = (1, 3)
Z_DIM = 8
WIDTH = 4
N = 4

CASES = [(f, s, c) for f in family_names() for s in SIZES for c in CHANNELS]
IDS = [f"{f}-{s}px-{c}ch" for f, s, c in CASES]


def _build_pair(family, size, ch, seed=0):
    torch.manual_seed(seed)
    G = build("G", family, img_size=size, channels=ch, z_dim=Z_DIM, width=WIDTH)
    D = build("D", family, img_size=size, channels=ch, width=WIDTH)
    return G, D


def test_families_registered():
    assert {"mlp", "dcgan"} <= set(family_names())
    for name in family_names():
        assert GENERATORS.help(name) and DISCRIMINATORS.help(name), name


@pytest.mark.parametrize("family,size,ch", CASES, ids=IDS)
def test_shapes_ranges_and_logits(family, size, ch):
    G, D = _build_pair(family, size, ch)
    assert G.z_dim == Z_DIM
    z = torch.randn(N, Z_DIM) * 3  # large noise pushes tanh towards its limits
    x = G(z)
    assert x.shape == (N, ch, size, size)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    logits = D(x)
    assert logits.shape == (N,)
    assert torch.isfinite(logits).all()
    # Raw logits, not probabilities: a real-looking scale of input must be able to leave [0, 1].
    big = D(torch.randn(N, ch, size, size) * 50)
    assert big.shape == (N,)
    # D accepts channels_last input (the trainer's default memory format for conv models).
    D.eval()
    xr = torch.rand(N, ch, size, size) * 2 - 1
    torch.testing.assert_close(D(xr.contiguous(memory_format=torch.channels_last)), D(xr))


@pytest.mark.parametrize("family,size,ch", CASES, ids=IDS)
def test_determinism_under_seed(family, size, ch):
    outs = []
    for _ in range(2):
        G, D = _build_pair(family, size, ch, seed=123)
        torch.manual_seed(7)
        z = torch.randn(N, Z_DIM)
        x = G(z)
        outs.append((x, D(x)))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])
    # ... and a different seed gives a different network.
    G2, _ = _build_pair(family, size, ch, seed=124)
    assert not torch.equal(G2(z), outs[0][0])


@pytest.mark.parametrize("family,size,ch", CASES, ids=IDS)
def test_save_load_round_trip(family, size, ch):
    G, D = _build_pair(family, size, ch)
    # One train-mode pass updates BN running statistics: buffers must travel too.
    with torch.no_grad():
        D(G(torch.randn(N, Z_DIM)))
    for net in (G, D):
        spec = json.loads(json.dumps(net.spec))  # specs must survive a text format (no pickling)
        state = copy.deepcopy(net.state_dict())
        torch.manual_seed(999)  # the rebuilt net starts from different random weights
        twin = from_spec(spec)
        assert type(twin) is type(net)
        twin.load_state_dict(state)
        net.eval(), twin.eval()
        inp = torch.randn(N, Z_DIM) if spec["kind"] == "G" else torch.rand(N, ch, size, size) * 2 - 1
        with torch.no_grad():
            assert torch.equal(net(inp), twin(inp))


@pytest.mark.parametrize("family,size,ch", CASES, ids=IDS)
def test_one_training_step(family, size, ch):
    G, D = _build_pair(family, size, ch)
    loss = losses.get_loss("nonsaturating")
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    real = torch.rand(N, ch, size, size) * 2 - 1
    z = torch.randn(N, Z_DIM)

    before_d = [p.detach().clone() for p in D.parameters()]
    before_g = [p.detach().clone() for p in G.parameters()]
    # A family whose residual branches end in a zero-initialised layer (r3gan, Fixup) sends
    # the layers before it no gradient on the first step; they move from the second.
    for _ in range(2 if family == "r3gan" else 1):
        opt_d.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        d_loss = loss.d_loss(D(real), D(G(z).detach()))
        if getattr(D, "self_supervised", False):   # fastgan: its decoders learn from this term
            d_loss = d_loss + D.reconstruction_loss(real)
        d_loss.backward()
        assert all(p.grad is None for p in G.parameters())  # detach kept G out of D's phase
        opt_d.step()
        assert torch.isfinite(d_loss)

        opt_g.zero_grad(set_to_none=True)
        D.requires_grad_(False)
        g_loss = loss.g_loss(D(G(z)))
        g_loss.backward()
        D.requires_grad_(True)
        opt_g.step()
        assert torch.isfinite(g_loss)

    for name, net, before in (("D", D, before_d), ("G", G, before_g)):
        for (pname, p), p0 in zip(net.named_parameters(), before):
            assert not torch.equal(p.detach(), p0), f"{name}.{pname} did not change"
            assert torch.isfinite(p).all(), f"{name}.{pname} is not finite"


def test_mlp_any_size_and_dropout():
    G = build("G", "mlp", img_size=20, channels=3, z_dim=Z_DIM, width=WIDTH)
    D = build("D", "mlp", img_size=20, channels=3, width=WIDTH, dropout=0.3)
    assert G(torch.randn(2, Z_DIM)).shape == (2, 3, 20, 20)
    assert D(torch.zeros(2, 3, 20, 20)).shape == (2,)
    assert any(isinstance(m, nn.Dropout) for m in D.modules())
    assert not any(isinstance(m, nn.Dropout)
                   for m in build("D", "mlp", img_size=20, channels=3, width=WIDTH).modules())
    # default widths are the tutorial's 256 / 512 / 1024
    Gd = build("G", "mlp", img_size=28, channels=1)
    assert [m.out_features for m in Gd.modules() if isinstance(m, nn.Linear)] == [256, 512, 1024, 784]
    Dd = build("D", "mlp", img_size=28, channels=1)
    assert [m.out_features for m in Dd.modules() if isinstance(m, nn.Linear)] == [1024, 512, 256, 1]
    assert not any(isinstance(m, (nn.Sigmoid, nn.BatchNorm1d)) for m in Dd.modules())


# ----------------------------------------------------------------------------- DCGAN specifics

def _spatial_trace(net, inp, types):
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
             for m in net.modules() if isinstance(m, types)]
    with torch.no_grad():
        net(inp)
    for h in hooks:
        h.remove()
    return sizes


@pytest.mark.parametrize("size,trace", [
    (64, [4, 8, 16, 32, 64]), (32, [4, 8, 16, 32]), (28, [7, 14, 28]), (48, [6, 12, 24, 48])])
def test_dcgan_resolution_ladder(size, trace):
    G = build("G", "dcgan", img_size=size, channels=3, z_dim=Z_DIM, width=WIDTH)
    assert _spatial_trace(G, torch.randn(2, Z_DIM), nn.ConvTranspose2d) == [(s, s) for s in trace]
    strided = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2)]
    assert len(strided) == len(trace) - 1  # 64: four doublings 4->8->16->32->64
    assert all(m.kernel_size == (4, 4) and m.padding == (1, 1) for m in strided)
    D = build("D", "dcgan", img_size=size, channels=3, width=WIDTH)
    d_trace = _spatial_trace(D, torch.randn(2, 3, size, size), nn.Conv2d)
    assert d_trace == [(s, s) for s in reversed(trace[:-1])] + [(1, 1)]


def test_dcgan_channels_bn_and_bias_placement():
    w = 8
    G = build("G", "dcgan", img_size=64, channels=3, z_dim=Z_DIM, width=w)
    g_convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in g_convs] == [8 * w, 4 * w, 2 * w, w, 3]
    assert g_convs[0].kernel_size == (4, 4) and g_convs[0].in_channels == Z_DIM
    # BN + ReLU after every G layer except the last, which is bias + tanh only.
    # (isinstance: the first and last layers are ConvTranspose2d subclasses computed as
    # matmuls, see ganforge/models/layers.py)
    def kinds(block):
        return [next(c for c in (nn.ConvTranspose2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.Tanh)
                     if isinstance(m, c)) for m in block]
    for block in G.blocks[:-1]:
        assert kinds(block) == [nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU]
        assert block[0].bias is None
    assert kinds(G.blocks[-1]) == [nn.ConvTranspose2d, nn.Tanh]

    D = build("D", "dcgan", img_size=64, channels=3, width=w)
    assert [type(m) for m in D.blocks[0]] == [nn.Conv2d, nn.LeakyReLU]  # no BN on D's input
    assert D.blocks[0][0].bias is not None
    for block in D.blocks[1:]:
        assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU]
        assert block[0].bias is None
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    assert [m.out_channels for m in D.modules() if isinstance(m, nn.Conv2d)] == [w, 2 * w, 4 * w, 8 * w, 1]
    assert D.head.kernel_size == (4, 4)
    assert not any(isinstance(m, nn.Sigmoid) for m in D.modules())


def test_dcgan_init():
    torch.manual_seed(0)
    for net in (build("G", "dcgan", img_size=64, channels=3, z_dim=100, width=16),
                build("D", "dcgan", img_size=64, channels=3, width=16)):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.weight.numel() >= 4000:
                assert abs(m.weight.std().item() - 0.02) < 0.002
                assert abs(m.weight.mean().item()) < 0.002
            if isinstance(m, nn.BatchNorm2d):
                assert abs(m.weight.mean().item() - 1.0) < 0.02
                assert 0.0 < m.weight.std().item() < 0.05
                assert torch.equal(m.bias, torch.zeros_like(m.bias))
            if getattr(m, "bias", None) is not None and isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                assert torch.equal(m.bias, torch.zeros_like(m.bias))


@pytest.mark.parametrize("bad", [30, 100, 7, 9, 0])
def test_dcgan_bad_img_size(bad):
    for kind, kw in (("G", {"z_dim": Z_DIM}), ("D", {})):
        with pytest.raises(ValueError) as exc:
            build(kind, "dcgan", img_size=bad, channels=3, width=WIDTH, **kw)
        msg = str(exc.value)
        assert f"img_size={bad}" in msg
        for ok in ("28", "32", "64"):
            assert ok in msg


def test_dcgan_supported_sizes_all_build():
    sizes = dcgan_mod.supported_sizes(128)
    assert {8, 14, 28, 32, 48, 64, 96, 128} <= set(sizes) and 30 not in sizes
    for s in sizes:
        s0, n = dcgan_mod.plan(s)
        assert 4 <= s0 <= 7 and n >= 1 and s0 * 2 ** n == s
