"""The FastGAN-style family (ganforge/models/fastgan.py): shapes, skip-layer excitation, the
self-supervised D's reconstruction term (reused trunk maps, wired through DToolbox), the
conditional variants, FreezeD, and short training runs that rebuild from the checkpoint."""
from __future__ import annotations

import json
import math

import pytest
import torch

from ganforge import models
from ganforge.core.checkpoint import load_checkpoint
from ganforge.core.config import ConfigError
from ganforge.models import fastgan
from ganforge.training.trainer import Trainer
from ganforge.use.load import load_run
from tests.helpers import TASK_KITS, cond_cfg, cyclegan_cfg, tiny_cfg

Z, W = 8, 4


def _pair(size, ch, seed=0, **kw):
    torch.manual_seed(seed)
    G = models.build("G", "fastgan", img_size=size, channels=ch, z_dim=Z, width=W, **kw)
    D = models.build("D", "fastgan", img_size=size, channels=ch, width=W)
    return G, D


@pytest.fixture(autouse=True)
def _no_curve_plots(monkeypatch):
    monkeypatch.setattr("ganforge.training.callbacks.artifacts.plot_curves", lambda *a, **k: False)


@pytest.mark.parametrize("size", [16, 28, 32, 64])
@pytest.mark.parametrize("ch", [1, 3])
def test_shapes_ranges_and_reconstruction(size, ch):
    G, D = _pair(size, ch)
    x = G(torch.randn(3, Z) * 3)
    assert x.shape == (3, ch, size, size) and x.abs().max() <= 1
    assert D(x).shape == (3,) and torch.isfinite(D(x)).all()
    rec = D.reconstruction_loss(x)
    assert rec.dim() == 0 and math.isfinite(rec.item()) and rec.item() > 0


def test_sle_pairs_follow_the_rule():
    assert fastgan.sle_pairs(2) == {2: 0}                    # 16 px: the 16 px stage from 4 px
    assert fastgan.sle_pairs(4) == {2: 0, 3: 0, 4: 0}        # 64 px
    assert fastgan.sle_pairs(6) == {4: 0, 5: 1, 6: 2}        # 256 px: 64<-4, 128<-8, 256<-16
    G = models.build("G", "fastgan", img_size=64, channels=3, z_dim=Z, width=W)
    assert set(G.sle) == {"2", "3", "4"}


def test_sle_gates_the_fine_map_per_channel():
    sle = fastgan.SLE(6, 5)
    low, high = torch.randn(2, 6, 4, 4), torch.randn(2, 5, 16, 16)
    out = sle(low, high)
    gate = out / high
    assert out.shape == high.shape
    assert torch.allclose(gate, gate[:, :, :1, :1].expand_as(gate), atol=1e-5)   # one gate per channel
    assert ((gate > 0) & (gate < 1)).all()


def test_upsample_choice():
    G = models.build("G", "fastgan", img_size=32, channels=3, z_dim=Z, width=W, upsample="bilinear")
    modes = {m.mode for m in G.modules() if isinstance(m, torch.nn.Upsample)}
    assert modes == {"bilinear"} and G.spec["kwargs"]["upsample"] == "bilinear"
    assert models.from_spec(G.spec).upsample == "bilinear"
    default = models.build("G", "fastgan", img_size=32, channels=3, z_dim=Z, width=W)
    assert {m.mode for m in default.modules() if isinstance(m, torch.nn.Upsample)} == {"nearest"}
    with pytest.raises(ValueError, match="fastgan: upsample='deconv'"):
        models.build("G", "fastgan", img_size=32, channels=3, upsample="deconv")


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="fastgan: img_size=30"):
        models.build("G", "fastgan", img_size=30, channels=3)
    with pytest.raises(ValueError, match="fastgan: img_size=8 is too small"):
        models.build("D", "fastgan", img_size=8, channels=3)
    with pytest.raises(ValueError, match="fastgan: width=1"):
        models.build("D", "fastgan", img_size=16, channels=3, width=1)


def test_reconstruction_reuses_the_trunk_maps_of_the_real_forward():
    G, D = _pair(32, 3)
    calls = []
    D.stem.register_forward_hook(lambda *a: calls.append(1))
    real, fake = torch.rand(4, 3, 32, 32) * 2 - 1, G(torch.randn(4, Z)).detach()
    D(real), D(fake)
    assert len(calls) == 2
    D.reconstruction_loss(real)
    assert len(calls) == 2                       # the real forward's maps, no new trunk pass
    D(torch.cat([real, fake]))                   # a joint call: the first rows are the reals
    D.reconstruction_loss(real)
    assert len(calls) == 3
    D.reconstruction_loss(real)                  # nothing cached any more: one new pass
    assert len(calls) == 4
    with torch.no_grad():                        # eval-style calls keep nothing
        D(real)
    assert D._recent == []


def test_reconstruction_trains_the_decoders():
    G, D = _pair(16, 1)
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        D(x)
        loss = D.reconstruction_loss(x, quadrant=1)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("d_cond", ["projection", "concat", "acgan"])
def test_conditional_variants(d_cond):
    torch.manual_seed(0)
    e = 3 if d_cond == "concat" else 0
    G = models.build("G", "fastgan", img_size=16, channels=3, z_dim=Z, width=W, n_classes=4,
                     cond="cbn", embed_dim=0)
    D = models.build("D", "fastgan", img_size=16, channels=3, width=W, n_classes=4, cond=d_cond,
                     embed_dim=e)
    y = torch.tensor([0, 1, 2, 3])
    x = G(torch.randn(4, Z), y)
    assert x.shape == (4, 3, 16, 16)
    logits, cls = D(x, y, with_classes=True)
    assert logits.shape == (4,) and (cls is None) == (d_cond != "acgan")
    calls = []
    D.stem.register_forward_hook(lambda *a: calls.append(1))
    D(x, y)
    assert math.isfinite(D.reconstruction_loss(x).item()) and len(calls) == 1


def test_freeze_blocks_cover_every_parameter():
    _, D = _pair(64, 3)
    blocks = D.freeze_blocks()
    ids = {id(p) for b in blocks for p in b.parameters()}
    assert ids == {id(p) for p in D.parameters()}
    frozen = models.freeze_d(D, 2)
    assert frozen > 0 and all(not p.requires_grad for p in blocks[0].parameters())
    assert all(p.requires_grad for p in D.head.parameters())


# ----------------------------------------------------------------------------- training
FG = {"model.name": "fastgan", "model.g_width": W, "model.d_width": W, "train.steps": 2,
      "log.log_every": 1, "log.sample_every": 1000, "log.ckpt_every": 1000, "log.gif": False,
      "ema.half_life": 0.01}


def _rows(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "step" in r and "loss_G" in r]


@pytest.mark.parametrize("task", ["gan", "conditional"])
def test_two_steps_train_log_recon_and_rebuild(tmp_path, task):
    build = tiny_cfg if task == "gan" else cond_cfg
    run = tmp_path / "run"
    tr = Trainer(build(run, **FG, **{"aug.diffaug": "translation"}),
                 dataset=TASK_KITS[task].data(), quiet=True)
    dec = [p.detach().clone() for p in tr.task.modules["D"].decoder_whole.parameters()]
    tr.fit()
    rows = _rows(run)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["recon"]) and r["recon"] > 0 for r in rows)
    after = list(tr.task.modules["D"].decoder_whole.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(dec, after))   # the decoders learn
    st = load_checkpoint(run)
    assert st["specs"]["G"]["name"] == "fastgan" and st["specs"]["D"]["name"] == "fastgan"
    model = load_run(run)
    a, b = model.sample(3, seed=1), model.sample(3, seed=1)
    assert a.shape[0] == 3 and torch.equal(a, b) and a.abs().max() <= 1


def test_d_recon_zero_switches_the_term_off(tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, **FG, **{"reg.d_recon": 0.0}), dataset=TASK_KITS["gan"].data(),
            quiet=True).fit()
    assert not any("recon" in r for r in _rows(run))


def test_cyclegan_refuses_the_batchnorm_d(tmp_path):
    with pytest.raises(ConfigError, match="cyclegan.discriminator='fastgan' has BatchNorm"):
        Trainer(cyclegan_cfg(tmp_path, **{"cyclegan.discriminator": "fastgan"}),
                dataset=TASK_KITS["cyclegan"].data(), quiet=True)
