"""The r3gan family (ganforge/models/r3gan.py): shapes, ranges, the channel plan, the zero
init that makes every residual block the identity, Fixup's scaling, the conditional variants,
spectral norm, FreezeD groups, and short training runs of gan, conditional and cyclegan (with
the r3gan D as the domain discriminator) that round-trip through a checkpoint.

(The family contract over every registered family, tests/test_models.py, covers r3gan too.)
"""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from ganforge import models
from ganforge.core.checkpoint import load_checkpoint
from ganforge.core.config import ConfigError
from ganforge.models import r3gan
from ganforge.models.conditioning import recipe
from ganforge.models.spectral_norm import SN_TYPES, is_spectral_normed
from ganforge.regularize.penalties import r1_penalty, r2_penalty
from ganforge.training.trainer import Trainer
from ganforge.use.load import load_run
from tests.helpers import TASK_KITS, cond_cfg, cyclegan_cfg, tiny_cfg

Z, W = 8, 8


def _pair(size, ch, seed=0, **kw):
    torch.manual_seed(seed)
    G = models.build("G", "r3gan", img_size=size, channels=ch, z_dim=Z, width=W, **kw)
    D = models.build("D", "r3gan", img_size=size, channels=ch, width=W, **kw)
    return G, D


@pytest.fixture(autouse=True)
def _no_curve_plots(monkeypatch):
    """The loss-curve PNG is matplotlib and dominates a tiny run; nothing here reads it."""
    monkeypatch.setattr("ganforge.training.callbacks.artifacts.plot_curves", lambda *a, **k: False)


# ----------------------------------------------------------------------------- networks
@pytest.mark.parametrize("size", [16, 28, 32, 64, 128, 256])
@pytest.mark.parametrize("ch", [1, 3])
def test_shapes_and_ranges(size, ch):
    G, D = _pair(size, ch)
    z = torch.randn(3, Z) * 3                       # large noise: tanh still bounds the images
    x = G(z)
    assert x.shape == (3, ch, size, size) and x.abs().max() <= 1 and torch.isfinite(x).all()
    logits = D(x)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    assert not any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                                  nn.GroupNorm, nn.LayerNorm)) for m in [*G.modules(), *D.modules()])
    assert D.features(x).shape == (3, D.chs[-1])
    assert G.s0 == (7 if size == 28 else 4)


def test_channel_plan_and_cardinality():
    assert r3gan.stage_channels(3, 16) == [128, 64, 32, 16]           # 32 px: halving to w
    assert r3gan.stage_channels(2, 16) == [64, 32, 16]                # 28 / 16 px
    assert r3gan.stage_channels(4, 16) == [128, 128, 64, 32, 16]      # 64 px: at most 8w
    assert r3gan.stage_channels(6, 96) == [768] * 4 + [384, 192, 96]  # the reference's FFHQ-256
    assert r3gan.groups(1536) == 96                                   # ... its CIFAR-10 cardinality
    assert r3gan.groups(16) == 1 and r3gan.groups(8) == 1
    assert r3gan.groups(100) == 5                                     # 6 does not divide 100
    G, D = _pair(64, 3)
    assert G.chs == [64, 64, 32, 16, 8] and D.chs == [8, 16, 32, 64, 64]   # D mirrors G
    blocks = [m for m in G.modules() if isinstance(m, r3gan.ResidualBlock)]
    assert len(blocks) == 2 * 5 and blocks[0].conv2.groups == r3gan.groups(128) == 8


def test_residual_blocks_are_the_identity_at_init():
    G, D = _pair(32, 3)
    blocks = [m for m in [*G.modules(), *D.modules()] if isinstance(m, r3gan.ResidualBlock)]
    assert len(blocks) == 16
    for b in blocks:
        assert not b.conv3.weight.any()
        x = torch.randn(2, b.conv1.in_channels, 4, 4)
        assert torch.equal(b(x), x)
    # so D is linear in its input at init (1x1 convs, bilinear resampling, depthwise basis,
    # linear head): its input gradient is the same everywhere, and R1 = R2
    real = torch.rand(4, 3, 32, 32).requires_grad_(True)
    fake = (torch.rand(4, 3, 32, 32) * 2 - 1).requires_grad_(True)
    torch.testing.assert_close(r1_penalty(D(real), real), r2_penalty(D(fake), fake))


def test_fixup_scaling_of_the_branch_convs():
    torch.manual_seed(0)
    b = r3gan.ResidualBlock(64, n_blocks_total=16)
    gain = r3gan.ACT_GAIN * 16 ** -0.25             # L^(-1/(2m-2)) with m = 3
    for conv in (b.conv1, b.conv2):
        fan_in = conv.weight[0].numel()
        assert conv.weight.std().item() == pytest.approx(gain / math.sqrt(fan_in), rel=0.05)
    # the biased activations' biases (held by conv1 / conv2) start at 0; conv3 has none
    assert not b.conv1.bias.any() and not b.conv2.bias.any() and b.conv3.bias is None


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="r3gan: img_size=30"):
        models.build("G", "r3gan", img_size=30, channels=1, z_dim=Z, width=W)
    with pytest.raises(ValueError, match="r3gan: width"):
        models.build("D", "r3gan", img_size=32, channels=1, width=0)
    with pytest.raises(ValueError, match="r3gan: blocks"):
        models.build("G", "r3gan", img_size=32, channels=1, z_dim=Z, width=W, blocks=0)


def test_spectral_norm_and_freeze_blocks():
    torch.manual_seed(0)
    D = models.build("D", "r3gan", img_size=32, channels=1, width=W, spectral_norm=True)
    layers = [m for m in D.modules() if isinstance(m, SN_TYPES)]
    assert layers and all(is_spectral_normed(m) for m in layers)
    out = D(torch.randn(4, 1, 32, 32))
    assert torch.isfinite(out).all()                # zero-init convs were re-initialised first
    rebuilt = models.from_spec(D.spec)
    rebuilt.load_state_dict(D.state_dict())
    # FreezeD: groups from the input to the head cover every parameter once
    D = _pair(32, 1)[1]
    groups = D.freeze_blocks()
    assert groups[-1] is D.head and len(groups) == 4 + 1
    ids = [id(p) for g in groups for p in g.parameters()]
    assert sorted(ids) == sorted(id(p) for p in D.parameters()) and len(set(ids)) == len(ids)
    frozen = models.freeze_d(D, 2)
    assert frozen == sum(p.numel() for g in groups[:2] for p in g.parameters())


def test_dropout_in_d_blocks():
    torch.manual_seed(0)
    D = models.build("D", "r3gan", img_size=16, channels=1, width=W, dropout=0.3)
    drops = [m for m in D.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 * 2 * 3 and all(m.p == 0.3 for m in drops)


# ----------------------------------------------------------------------------- conditional
@pytest.mark.parametrize("d_cond", ["projection", "concat", "acgan"])
def test_conditional_variants(d_cond):
    K = 3
    torch.manual_seed(0)
    G = models.build("G", "r3gan", img_size=28, channels=1, z_dim=Z, width=W, n_classes=K,
                     cond="concat")
    D = models.build("D", "r3gan", img_size=28, channels=1, width=W, n_classes=K, cond=d_cond)
    y = torch.tensor([0, 1, 2, 1])
    z = torch.randn(4, Z)
    x = G(z, y)
    assert x.shape == (4, 1, 28, 28) and x.abs().max() <= 1
    assert G.z_dim == Z and G.basis.linear.in_features == Z + K    # label embedding joins z
    assert not torch.equal(G(z, y), G(z, (y + 1) % K))
    logits, cls = D(x, y, with_classes=True)
    assert logits.shape == (4,) and (cls is None) == (d_cond != "acgan")
    if d_cond == "acgan":
        assert cls.shape == (4, K)
    else:
        assert not torch.equal(D(x, y), D(x, (y + 1) % K))
    G2 = models.from_spec(G.spec)
    G2.load_state_dict(G.state_dict())
    assert torch.equal(G2(z, y), x)


def test_conditional_g_has_no_cbn_and_auto_picks_concat(tmp_path):
    with pytest.raises(ValueError, match=r"r3gan G: cond='cbn' is not supported.*concat"):
        models.build("G", "r3gan", img_size=16, channels=1, z_dim=Z, width=W, n_classes=3,
                     cond="cbn")
    fam = models.conditioning.family_g_methods("r3gan")
    assert fam == ("concat",)
    assert recipe("projection", "auto", fam) == ("concat", "projection")
    assert recipe("projection", "auto") == ("cbn", "projection")   # other families: unchanged
    with pytest.raises(ValueError, match="cond.g_method='cbn'.*concat only"):
        recipe("projection", "cbn", fam)
    with pytest.raises(ConfigError, match="cond.g_method='cbn'"):
        Trainer(cond_cfg(tmp_path, **{"model.name": "r3gan", "cond.g_method": "cbn"}),
                dataset=TASK_KITS["conditional"].data(), quiet=True)


# ----------------------------------------------------------------------------- training
R3 = {"model.name": "r3gan", "train.loss": "rpgan", "reg.r1": 1.0, "reg.r2": 1.0,
      "reg.r1_every": 1, "train.steps": 2, "log.log_every": 1, "log.sample_every": 1000,
      "log.ckpt_every": 1000, "log.gif": False, "ema.half_life": 0.01}
CASES = {
    "gan": (tiny_cfg, "gan", {**R3, "model.g_width": W, "model.d_width": W}),
    "conditional": (cond_cfg, "conditional", {**R3, "model.g_width": W, "model.d_width": W}),
    "cyclegan": (cyclegan_cfg, "cyclegan",
                 {"cyclegan.discriminator": "r3gan", "cyclegan.adv_loss": "rpgan", "reg.r1": 1.0,
                  "reg.r2": 1.0, "reg.r1_every": 1, "train.steps": 2, "log.log_every": 1,
                  "log.sample_every": 1000, "log.ckpt_every": 1000, "log.gif": False}),
}


@pytest.mark.parametrize("task", list(CASES))
def test_two_steps_train_and_the_checkpoint_rebuilds(tmp_path, task):
    build, kind, over = CASES[task]
    run = tmp_path / "run"
    tr = Trainer(build(run, **over), dataset=TASK_KITS[kind].data(), quiet=True)
    tr.fit()
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "step" in r and "loss_G" in r]
    assert [r["step"] for r in rows] == [1, 2] and not any("rollback" in r for r in rows)
    assert all(math.isfinite(v) for r in rows for k, v in r.items()
               if k.startswith(("loss", "r1", "r2")))
    assert all(r["r1"] > 0 and r["r2"] > 0 for r in rows)
    st = load_checkpoint(run)
    for name, spec in st["specs"].items():
        if spec["name"] != "r3gan":
            continue
        net = models.from_spec(spec)                 # the spec rebuild, strict keys
        net.load_state_dict(st["modules"][name])
        assert sum(p.numel() for p in net.parameters()) == \
            sum(p.numel() for p in tr.task.modules[name].parameters())
    if task == "cyclegan":
        assert {st["specs"][d]["name"] for d in ("D_A", "D_B")} == {"r3gan"}
        assert "n_layers" not in st["specs"]["D_A"]["kwargs"]
        return
    assert st["specs"]["G"]["name"] == "r3gan" and "G_ema" in st["modules"]
    if task == "conditional":
        assert st["specs"]["G"]["kwargs"]["cond"] == "concat"
        assert st["specs"]["D"]["kwargs"]["cond"] == "projection"
    model = load_run(run)                            # sampling from the file alone (EMA G)
    a, b = model.sample(3, seed=1), model.sample(3, seed=1)
    assert a.shape == (3, 1, 16, 16) and torch.equal(a, b) and a.abs().max() <= 1


def test_cyclegan_refuses_a_batchnorm_whole_image_d(tmp_path):
    with pytest.raises(ConfigError, match="cyclegan.discriminator='dcgan' has BatchNorm"):
        Trainer(cyclegan_cfg(tmp_path, **{"cyclegan.discriminator": "dcgan"}),
                dataset=TASK_KITS["cyclegan"].data(), quiet=True)
