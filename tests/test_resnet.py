"""The SNGAN-style ResNet family, spectral normalisation, dropout in D and FreezeD.

The family contract (shapes, determinism, save/load, one train step at 28/32/64 px) runs in
tests/test_models.py over every registered family; this file checks what is specific.
Tiny widths: the whole file runs in a few seconds on one CPU thread."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.models import build, freeze_d, from_spec
from ganforge.models import resnet as rn
from ganforge.models.conditioning import ConditionalBatchNorm, cond_family_names
from ganforge.models.layers import DotHead2d, FoldTranspose2d, ProjectTranspose2d
from ganforge.models.spectral_norm import apply_spectral_norm, is_spectral_normed

Z, W, K = 8, 4, 3


def _g(size=32, ch=3, **kw):
    return build("G", "resnet", img_size=size, channels=ch, z_dim=Z, width=W, **kw)


def _d(size=32, ch=3, **kw):
    return build("D", "resnet", img_size=size, channels=ch, width=W, **kw)


# ----------------------------------------------------------------------------- ResNet family
@pytest.mark.parametrize("size,s0,g_chs,d_chs", [
    (32, 4, [W] * 4, [W] * 4),                                       # CIFAR: constant width
    (64, 4, [8 * W, 8 * W, 4 * W, 2 * W, W], [W, 2 * W, 4 * W, 8 * W, 8 * W]),   # halving
])
def test_shapes_and_channel_plan(size, s0, g_chs, d_chs):
    torch.manual_seed(0)
    G, D = _g(size), _d(size)
    x = G(torch.randn(5, Z))
    assert x.shape == (5, 3, size, size) and x.abs().max() <= 1
    assert D(x).shape == (5,)
    assert G.s0 == s0 and G.chs == g_chs and G.linear.out_features == g_chs[0] * s0 * s0
    assert [b.conv2.out_channels for b in D.blocks] == d_chs
    assert D.features(x).shape == (5, d_chs[-1])
    # resolution ladder: G doubles from s0 n times; D halves back to s0, then one block at s0
    g_trace, d_trace = [], []
    hooks = [b.register_forward_hook(lambda m, i, o: g_trace.append(o.shape[-1])) for b in G.blocks]
    hooks += [b.register_forward_hook(lambda m, i, o: d_trace.append(o.shape[-1])) for b in D.blocks]
    with torch.no_grad():
        D(G(torch.randn(2, Z)))
    for h in hooks:
        h.remove()
    n = len(G.blocks)
    assert g_trace == [s0 * 2 ** (i + 1) for i in range(n)]
    assert d_trace == [size // 2 ** (i + 1) for i in range(n)] + [s0]
    assert rn.g_channels(3, 128) == [128] * 4            # SNGAN/WGAN-GP CIFAR widths
    assert rn.g_channels(5, 64) == [1024, 1024, 512, 256, 128, 64]   # SNGAN ImageNet G
    assert rn.d_channels(5, 64) == [64, 128, 256, 512, 1024, 1024]


def test_generator_blocks_are_residual():
    torch.manual_seed(0)
    G = _g()
    for b in G.blocks:
        assert isinstance(b, rn.UpBlock)
        assert b.shortcut.kernel_size == (1, 1)
        assert [type(m) for m in (b.bn1, b.bn2)] == [nn.BatchNorm2d] * 2
        assert b.conv1.bias is None and b.conv2.bias is None   # each feeds a BN
    b = G.blocks[1]
    x = torch.randn(2, W, 8, 8)
    with torch.no_grad():
        full = b(x)
        nn.init.zeros_(b.conv2.weight)                 # residual branch off: shortcut alone
        torch.testing.assert_close(b(x), F.interpolate(b.shortcut(x), scale_factor=2))
        # conv1x1 and nearest upsampling commute: the cheap order is the same function
        torch.testing.assert_close(b.shortcut(F.interpolate(x, scale_factor=2)),
                                   F.interpolate(b.shortcut(x), scale_factor=2))
    assert not torch.equal(full, b(x))


def test_discriminator_blocks_no_bn_and_shortcuts():
    torch.manual_seed(0)
    D = _d(64)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    assert not any(isinstance(m, nn.Dropout) for m in D.modules())      # dropout=0: none
    assert D.blocks[0].first and all(not b.first for b in D.blocks[1:])
    assert [b.down for b in D.blocks] == [True] * 4 + [False]
    for b in D.blocks[:-1]:
        assert b.shortcut is not None and b.shortcut.kernel_size == (1, 1)
    assert D.blocks[-1].shortcut is None                # same width, no pooling: identity
    # each block is residual: with the residual branch off, only the shortcut remains
    b, x = D.blocks[2], torch.randn(2, 2 * W, 16, 16)
    with torch.no_grad():
        nn.init.zeros_(b.conv2.weight), nn.init.zeros_(b.conv2.bias)
        torch.testing.assert_close(b(x), F.avg_pool2d(b.shortcut(x), 2))
    # forward is the head on the sum-pooled features
    D = _d(32)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(D(x), D.head(D.features(x)).view(-1))
    # no BN: a joint real+fake call equals two separate calls
    torch.testing.assert_close(D(torch.cat([x, -x])), torch.cat([D(x), D(-x)]))


def test_init_is_glorot():
    torch.manual_seed(0)
    D = build("D", "resnet", img_size=32, channels=3, width=64)
    conv = D.blocks[1].conv1                      # 64 -> 64, 3x3, gain sqrt(2)
    bound = 2 ** 0.5 * (6 / (64 * 9 + 64 * 9)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.95 * bound
    sc = D.blocks[1].shortcut                     # 1x1, gain 1
    assert sc.weight.abs().max() <= (6 / 128) ** 0.5
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in D.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None)


def test_bad_size_names_the_family():
    with pytest.raises(ValueError, match=r"resnet: img_size=30"):
        _g(30)
    with pytest.raises(ValueError, match=r"dropout"):
        _d(dropout=1.5)


@pytest.mark.parametrize("g_cond,d_cond", [("cbn", "projection"), ("concat", "concat"),
                                           ("concat", "acgan")])
def test_conditional_resnet(g_cond, d_cond):
    assert "resnet" in cond_family_names()
    torch.manual_seed(0)
    G = _g(16, 1, n_classes=K, cond=g_cond)
    D = _d(16, 1, n_classes=K, cond=d_cond, dropout=0.1)
    assert any(isinstance(m, ConditionalBatchNorm) for m in G.modules()) == (g_cond == "cbn")
    z, y = torch.randn(6, Z), torch.arange(6) % K
    x = G(z, y)
    assert x.shape == (6, 1, 16, 16)
    logits, cls = D.logits_and_classes(x, y)
    assert logits.shape == (6,) and (cls is not None) == (d_cond == "acgan")
    G.eval(), D.eval()
    with torch.no_grad():
        assert not torch.allclose(G(z, y), G(z, (y + 1) % K))
        torch.testing.assert_close(G(z), G(z, y))     # no labels: classes in turn
        if d_cond == "projection":                    # Miyato & Koyama 2018, eq. (3)
            phi = D.features(x)
            torch.testing.assert_close(D(x, y), D.head(phi).view(-1) + (D.embed(y) * phi).sum(1))
    for net, inp in ((G, (z, y)), (D, (x.detach(), y))):
        twin = from_spec(json.loads(json.dumps(net.spec)))
        assert type(twin) is type(net)
        twin.load_state_dict(net.state_dict())
        twin.eval()
        with torch.no_grad():
            assert torch.equal(net(*inp), twin(*inp))


# ----------------------------------------------------------------------------- dropout in D
DCGAN_D_KEYS_32 = [   # dcgan D state-dict keys at 32 px, as saved before D had dropout
    "blocks.0.0.weight", "blocks.0.0.bias",
    "blocks.1.0.weight", "blocks.1.1.weight", "blocks.1.1.bias", "blocks.1.1.running_mean",
    "blocks.1.1.running_var", "blocks.1.1.num_batches_tracked",
    "blocks.2.0.weight", "blocks.2.1.weight", "blocks.2.1.bias", "blocks.2.1.running_mean",
    "blocks.2.1.running_var", "blocks.2.1.num_batches_tracked",
    "head.weight", "head.bias"]


def test_dropout_every_family_and_dcgan_keys_unchanged():
    for p in (0.0, 0.3):
        D = build("D", "dcgan", img_size=32, channels=1, width=W, dropout=p)
        assert list(D.state_dict()) == DCGAN_D_KEYS_32          # old checkpoints still load
        assert sum(isinstance(m, nn.Dropout) for m in D.modules()) == (3 if p else 0)
        if p:
            assert all(isinstance(b[-1], nn.Dropout) and isinstance(b[-2], nn.LeakyReLU)
                       for b in D.blocks)
    old = build("D", "dcgan", img_size=32, channels=1, width=W)
    assert "dropout" not in old.spec["kwargs"]
    build("D", "dcgan", img_size=32, channels=1, width=W, dropout=0.3).load_state_dict(old.state_dict())
    with pytest.raises(ValueError, match="dropout"):
        build("D", "dcgan", img_size=32, channels=1, width=W, dropout=1.0)
    # ResNet: after the ReLUs inside the blocks; active in train mode only
    D = _d(32, dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in D.modules()) == 2 * len(D.blocks) - 1
    assert list(D.state_dict()) == list(_d(32).state_dict())
    x = torch.randn(4, 3, 32, 32)
    assert not torch.equal(D(x), D(x))
    D.eval()
    assert torch.equal(D(x), D(x))
    # conditional Ds pass it through
    for fam in ("dcgan", "mlp", "resnet"):
        Dc = build("D", fam, img_size=16, channels=1, width=W, n_classes=K, dropout=0.2)
        assert any(isinstance(m, nn.Dropout) for m in Dc.modules()), fam


# ----------------------------------------------------------------------------- spectral norm
def _sigma(weight: torch.Tensor, transposed: bool) -> float:
    w = weight.transpose(0, 1) if transposed else weight     # the dim SN normalises first
    return torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item()


def test_spectral_norm_makes_every_layer_1_lipschitz():
    torch.manual_seed(0)
    nets = [build("D", "dcgan", img_size=32, channels=3, width=W),
            _d(32, n_classes=K, cond="projection"),
            build("G", "dcgan", img_size=32, channels=3, z_dim=Z, width=W),
            _g(32, n_classes=K, cond="cbn")]
    for net in nets:
        before = {n: m.weight.detach().clone() for n, m in net.named_modules()
                  if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding))}
        apply_spectral_norm(net)
        wrapped = {n: m for n, m in net.named_modules() if is_spectral_normed(m)}
        cbn = {n for n, m in net.named_modules() if isinstance(m, ConditionalBatchNorm)}
        # every linear map wrapped, but not conditional BN's gain/bias tables
        assert set(wrapped) == {n for n in before if not any(n.startswith(c + ".") for c in cbn)}
        assert any(isinstance(m, nn.Embedding) for m in wrapped.values()) == (net is nets[1])
        for _ in range(30):          # one power iteration per train-mode forward
            with torch.no_grad():
                if hasattr(net, "z_dim"):
                    net(torch.randn(4, Z))
                else:
                    net(torch.randn(4, 3, 32, 32), *((torch.arange(4) % K,) if net is nets[1] else ()))
        net.eval()
        with torch.no_grad():
            for n, m in wrapped.items():
                s = _sigma(m.weight, isinstance(m, nn.ConvTranspose2d))
                assert abs(s - 1) < 0.02, (type(net).__name__, n, s)
                # the normalised weight is the stored one scaled down, direction unchanged
                ratio = before[n] / m.weight
                torch.testing.assert_close(ratio, ratio.flatten()[0].expand_as(ratio))
    # idempotent: a second call wraps nothing twice
    n_params = len(list(nets[0].parameters()))
    apply_spectral_norm(nets[0])
    assert len(list(nets[0].parameters())) == n_params


def test_matmul_layers_read_the_normalised_weight():
    torch.manual_seed(0)
    cases = [(DotHead2d(8, 1, 4, 1, 0, bias=True), torch.randn(3, 8, 4, 4), F.conv2d, {}),
             (ProjectTranspose2d(8, 6, 4, 1, 0, bias=False), torch.randn(3, 8, 1, 1),
              F.conv_transpose2d, {}),
             (FoldTranspose2d(6, 3, 4, 2, 1, bias=True), torch.randn(3, 6, 5, 5),
              F.conv_transpose2d, {"stride": 2, "padding": 1})]
    for layer, x, ref, kw in cases:
        raw = layer.weight.detach().clone()
        apply_spectral_norm(layer)
        assert is_spectral_normed(layer)
        for _ in range(3):
            layer(x)                 # train mode: power iterations move u, v
        layer.eval()
        w = layer.weight.detach()
        assert not torch.allclose(w, raw)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), ref(x, w, layer.bias, **kw))


@pytest.mark.parametrize("kind,name,kw", [
    ("D", "dcgan", {}), ("D", "resnet", {}), ("G", "resnet", {"z_dim": Z}),
    ("D", "resnet", {"n_classes": K, "cond": "projection"}), ("D", "mlp", {})])
def test_spectral_norm_build_round_trip(kind, name, kw):
    torch.manual_seed(0)
    net = build(kind, name, img_size=16, channels=1, width=W, spectral_norm=True, **kw)
    plain = build(kind, name, img_size=16, channels=1, width=W, **kw)
    assert "spectral_norm" not in plain.spec["kwargs"]         # old specs unchanged
    assert net.spec["kwargs"]["spectral_norm"] is True
    keys = list(net.state_dict())
    assert any(k.endswith("parametrizations.weight.original") for k in keys)
    assert any(k.endswith("parametrizations.weight.0._u") for k in keys)
    y = torch.arange(4) % K
    inp = torch.randn(4, Z) if kind == "G" else torch.rand(4, 1, 16, 16) * 2 - 1
    args = (inp, y) if "n_classes" in kw else (inp,)
    with torch.no_grad():
        net(*args)                   # moves u, v (and BN statistics) away from their init
    torch.manual_seed(1)
    twin = from_spec(json.loads(json.dumps(net.spec)))
    twin.load_state_dict(copy.deepcopy(net.state_dict()))     # strict: same keys
    net.eval(), twin.eval()
    with torch.no_grad():
        assert torch.equal(net(*args), twin(*args))
        assert torch.equal(copy.deepcopy(net)(*args), net(*args))   # e.g. an EMA copy
    with pytest.raises(ValueError, match="spectral_norm='yes'"):
        build(kind, name, img_size=16, channels=1, width=W, spectral_norm="yes", **kw)


# ----------------------------------------------------------------------------- FreezeD
D_CASES = [("mlp", {}), ("dcgan", {}), ("resnet", {}), ("patchgan", {"n_layers": 2}),
           ("mlp", {"n_classes": K, "cond": "concat"}),
           ("dcgan", {"n_classes": K, "cond": "projection"}),
           ("resnet", {"n_classes": K, "cond": "acgan"})]


@pytest.mark.parametrize("name,kw", D_CASES, ids=[f"{n}-{kw.get('cond', 'uncond')}" for n, kw in D_CASES])
def test_freeze_d_freezes_exactly_the_first_k_blocks(name, kw):
    torch.manual_seed(0)
    D = build("D", name, img_size=32, channels=3, width=W, **kw)
    blocks = D.freeze_blocks()
    # the blocks partition D's parameters, input first, head last
    ids = [id(p) for b in blocks for p in b.parameters()]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in D.parameters()}
    if hasattr(D, "head"):
        assert any(m is D.head for m in blocks[-1].modules())
    if kw.get("cond") == "concat":
        assert any(m is D.embed for m in blocks[0].modules())
    k = len(blocks) - 2
    n = freeze_d(D, k)
    frozen = {id(p) for b in blocks[:k] for p in b.parameters()}
    assert n == sum(p.numel() for b in blocks[:k] for p in b.parameters()) > 0
    assert all(p.requires_grad == (id(p) not in frozen) for p in D.parameters())
    # one optimizer step over what still requires grad changes exactly the unfrozen params
    before = [p.detach().clone() for p in D.parameters()]
    opt = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % K
    out = D.logits_and_classes(x, y) if "n_classes" in kw else (D(x), None)
    loss = F.softplus(out[0]).mean() + (F.cross_entropy(out[1], y) if out[1] is not None else 0)
    loss.backward()
    opt.step()
    for (pname, p), p0 in zip(D.named_parameters(), before):
        assert torch.equal(p, p0) == (id(p) in frozen), pname
    assert freeze_d(D, 0) == 0


def test_freeze_d_errors():
    D = _d(64)                                       # 5 residual blocks + head
    with pytest.raises(ValueError, match=r"k=6, but D has 6 blocks; freeze at most 5 so the head still learns"):
        freeze_d(D, 6)
    with pytest.raises(ValueError, match="k=-1"):
        freeze_d(D, -1)
    with pytest.raises(ValueError, match="ResNetGenerator has no freeze_blocks"):
        freeze_d(_g(), 1)
    assert all(p.requires_grad for p in D.parameters())        # errors freeze nothing
    assert freeze_d(D, 5) == sum(p.numel() for p in D.blocks.parameters())
    assert all(p.requires_grad for p in D.head.parameters())
