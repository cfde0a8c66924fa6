"""The high-frequency artefact ratio (ganforge/metrics/frequency.py) and DCGAN's
resize-convolution generator (model.upsample), issue 17 parts 2 and 3."""
import math

import pytest
import torch
import torch.nn.functional as F

from ganforge import models
from ganforge.core.config import Config, ConfigError
from ganforge.metrics import DEFAULT_METRICS, METRICS, compute_metrics
from ganforge.metrics.frequency import (
    SpectralStats,
    hf_ratio,
    high_frequency_share,
    spectral_share,
)
from ganforge.render.curves import plot_curves
from ganforge.training.tasks import resolve_config


def _smooth(n=16, c=3, size=32, seed=0):
    """Smooth random images: 4x4 noise upsampled bilinearly, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, 4, 4, generator=g) * 2 - 1
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _checkerboard(x, amp=0.2):
    yy, xx = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
    return (x + amp * ((yy + xx) % 2 * 2 - 1).to(x.dtype)).clamp(-1, 1)


# --------------------------------------------------------------------------- the measure
def test_identical_sets_score_one_and_checkerboard_scores_far_above():
    real = _smooth(seed=0)
    assert hf_ratio(spectral_share(real), spectral_share(real.clone())) == pytest.approx(1.0)
    other = _smooth(seed=1)                        # same kind of images, another draw
    assert 0.5 < hf_ratio(spectral_share(real), spectral_share(other)) < 2.0
    assert hf_ratio(spectral_share(real), spectral_share(_checkerboard(other))) > 10
    blurred = F.avg_pool2d(_checkerboard(other), 3, 1, 1)
    assert hf_ratio(spectral_share(_checkerboard(real)), spectral_share(blurred)) < 1


def test_pure_checkerboard_is_all_high_frequency_and_flat_is_nan():
    board = _checkerboard(torch.zeros(1, 1, 8, 8), 1.0)
    assert high_frequency_share(board).item() == pytest.approx(1.0)
    s = high_frequency_share(torch.zeros(2, 3, 8, 8))
    assert s.shape == (2, 3) and torch.isnan(s).all()
    # a flat channel is left out of the average, not counted as 0
    x = _smooth(2, 2, 16)
    x[0, 1] = 0.5
    st = SpectralStats().update(x)
    assert st.share[1].item() == pytest.approx(high_frequency_share(x[1:2, 1:2]).item())


def test_streaming_is_batch_independent_and_scale_free():
    x = _smooth(10, 3, 16, seed=3)
    whole = spectral_share(x, batch_size=10)
    parts = SpectralStats().update(x[:3]).update(x[3:7]).update(x[7:]).share
    assert torch.allclose(whole, parts)
    assert torch.allclose(spectral_share(x * 0.1), whole)


def test_errors_name_the_input():
    with pytest.raises(ValueError, match="NCHW"):
        high_frequency_share(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="band"):
        high_frequency_share(torch.zeros(1, 1, 8, 8), band=0)
    with pytest.raises(ValueError, match="channels"):
        hf_ratio(torch.ones(1), torch.ones(3))
    assert math.isnan(hf_ratio(torch.zeros(3), torch.ones(3)))


def test_registered_as_a_default_metric():
    assert METRICS.get("hf").keys == ("hf_ratio",) and "hf" in DEFAULT_METRICS
    feats = torch.randn(20, 4)
    real, fake = spectral_share(_smooth()), spectral_share(_checkerboard(_smooth(seed=2)))
    out = compute_metrics(feats, feats + 0.1, ["fid", "hf"], real_hf=real, fake_hf=fake)
    assert out["hf_ratio"] > 10
    with pytest.raises(ValueError, match="real_hf"):
        compute_metrics(feats, feats, ["hf"])
    assert "hf_ratio" not in compute_metrics(feats, feats)     # default without the shares


def test_curves_plot_the_ratio(tmp_path):
    from ganforge.core import runfolder
    for r in [{"step": 1, "loss_D": 1.0, "loss_G": 1.0}, {"step": 2, "fid": 3.0, "hf_ratio": 2.5}]:
        runfolder.append_row(tmp_path, r)
    assert plot_curves(runfolder.read_rows(tmp_path), tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


# --------------------------------------------------------------------------- model.upsample
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resize_conv_builds_at_every_size_and_has_no_checkerboard_at_init(mode):
    for size in (28, 32, 64):
        G = models.build("G", "dcgan", img_size=size, channels=3, z_dim=8, width=4, upsample=mode)
        assert G(torch.randn(2, 8)).shape == (2, 3, size, size)
        assert G.spec["kwargs"]["upsample"] == mode
    Gc = models.build("G", "dcgan", img_size=32, channels=3, z_dim=8, width=4, n_classes=3,
                      cond="cbn", upsample=mode)
    assert Gc(torch.randn(3, 8), torch.tensor([0, 1, 2])).shape == (3, 3, 32, 32)
    # the measure itself: at initialisation a stride-2 4x4 deconv G paints a checkerboard
    # (about half its non-DC power near Nyquist here), a resize-conv G does not (< 5 %)
    shares = {}
    for up in ("deconv", mode):
        torch.manual_seed(0)
        kw = {} if up == "deconv" else {"upsample": up}
        G = models.build("G", "dcgan", img_size=64, channels=3, z_dim=100, width=16, **kw).eval()
        with torch.no_grad():
            shares[up] = spectral_share(G(torch.randn(32, 100))).mean().item()
    assert shares["deconv"] > 5 * shares[mode]


def test_default_spec_unchanged_and_checkpoint_round_trip():
    G = models.build("G", "dcgan", img_size=32, channels=1, z_dim=8, width=4)
    assert "upsample" not in G.spec["kwargs"]      # old checkpoints rebuild the same
    G = models.build("G", "dcgan", img_size=32, channels=1, z_dim=8, width=4, upsample="nearest")
    G2 = models.from_spec(G.spec)
    G2.load_state_dict(G.state_dict())
    z = torch.randn(2, 8)
    G.eval(), G2.eval()
    assert torch.equal(G(z), G2(z))
    with pytest.raises(ValueError, match="upsample"):
        models.build("G", "dcgan", img_size=32, channels=1, upsample="cubic")


def test_config_key_and_family_check():
    cfg = Config().with_overrides({"model.upsample": "bilinear"})
    assert cfg.model.upsample == "bilinear" and Config().model.upsample == "deconv"
    with pytest.raises(ConfigError, match="model.upsample"):
        Config().with_overrides({"model.upsample": "cubic"})
    with pytest.raises(ConfigError, match="model.upsample=nearest"):
        resolve_config(Config().with_overrides({"model.name": "mlp", "model.upsample": "nearest"}))


@pytest.mark.parametrize("task", ["gan", "conditional"])
def test_trains_and_resumes_through_a_checkpoint(tmp_path, task):
    from ganforge.data import ImageDataset
    from ganforge.training.trainer import Trainer
    from ganforge.use.load import load_run
    g = torch.Generator().manual_seed(0)
    ds = ImageDataset(images=torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=g),
                      labels=torch.arange(16) % 2, class_names=["a", "b"], name="tiny", source="memory")
    cfg = Config().with_overrides({
        "train.task": task, "model.upsample": "nearest", "model.g_width": 4, "model.d_width": 4,
        "model.z_dim": 8, "train.steps": 2, "train.batch_size": 8, "out": str(tmp_path / "run"),
        "log.progress": False, "log.tensorboard": False, "log.gif": False})
    Trainer(cfg, dataset=ds, quiet=True).fit()
    model = load_run(str(tmp_path / "run"))
    assert model.generator.spec["kwargs"]["upsample"] == "nearest"
    assert model.sample(4, seed=0).shape == (4, 3, 16, 16)
