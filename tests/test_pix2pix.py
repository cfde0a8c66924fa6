"""pix2pix (issue 27): the U-Net, the PatchGAN depth, pairs from two folders and from a named
set, the edge operator, the paired D's losses and options, L1 falling on a tiny set, and the
paired scores. The task contract (build, a step, exact resume, translate, export, eval) is in
tests/test_task_contract.py through its kit in tests/helpers.py."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import models
from ganforge.cli import main
from ganforge.core.config import ConfigError
from ganforge.data.base import DataError, DataWarning
from ganforge.data.pairs import edges, grey, load_pairs
from ganforge.metrics.paired import paired_scores
from ganforge.models.unet import default_down
from ganforge.training.tasks.pix2pix import auto_d_layers
from ganforge.training.trainer import Trainer
from ganforge.use.load import load_run
from tests.helpers import paired_squares, pix2pix_cfg


def _png(path, value, size=16, channels=1, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, channels)
    a = np.clip(rng.normal(value, 20, shape), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(path)


# --------------------------------------------------------------------------- networks
def test_unet_depth_follows_the_size_and_keeps_the_shape():
    assert [default_down(s) for s in (256, 64, 32, 28, 16)] == [8, 6, 5, 2, 4]
    for s in (16, 28, 32):
        g = models.build("G", "pix2pix-unet", img_size=s, channels=1, out_channels=3, width=4)
        y = g(torch.randn(2, 1, s, s))
        assert y.shape == (2, 3, s, s) and y.abs().max() <= 1
    big = models.build("G", "pix2pix-unet", img_size=256, channels=3, width=64)
    assert big.n_down == 8 and sum(p.numel() for p in big.parameters()) > 50e6   # the paper's 54M
    with pytest.raises(ValueError, match="divisible"):
        models.build("G", "pix2pix-unet", img_size=30, channels=1, width=4, n_down=3)


def test_unet_output_sees_fine_input_detail_through_the_skips():
    """A one-pixel change of the input changes the output at that pixel's neighbourhood: the
    outermost skip carries full-resolution structure past the bottleneck."""
    torch.manual_seed(0)
    g = models.build("G", "pix2pix-unet", img_size=16, channels=1, width=4, dropout=0).eval()
    x = torch.zeros(1, 1, 16, 16)
    x2 = x.clone()
    x2[0, 0, 8, 8] = 1
    d = (g(x2) - g(x)).abs()[0, 0]
    assert d[6:11, 6:11].sum() > 0


def test_patchgan_depth_gives_the_papers_patches_at_256_px():
    assert auto_d_layers(256) == 3 and auto_d_layers(64) == 1 and auto_d_layers(16) == 1


# --------------------------------------------------------------------------- data
def test_edges_are_the_outline_of_a_square():
    y = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    y[0, 0, 4:12, 4:12] = 255
    e = edges(y)[0, 0] > 0
    assert e[4, 6] and e[3, 6] and not e[8, 8] and not e[0, 0]      # border on, inside/outside off
    assert grey(torch.full((1, 3, 2, 2), 200, dtype=torch.uint8)).unique().tolist() == [200]


def test_two_folders_pair_by_path_and_name_the_strays(tmp_path):
    for name, v in (("x/1", 60), ("x/2", 120), ("3", 200)):
        _png(tmp_path / "A" / f"{name}.png", v)
        _png(tmp_path / "B" / f"{name}.jpg", 255 - v, channels=3)
    _png(tmp_path / "A" / "alone.png", 10)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        p = load_pairs(data_a=str(tmp_path / "A"), data_b=str(tmp_path / "B"))
    msg = [str(w.message) for w in seen if issubclass(w.category, DataWarning)]
    assert len(msg) == 1 and "1 image(s) without a partner" in msg[0] and "alone.png" in msg[0]
    assert len(p) == 3 and p.cond_channels == 1 and p.channels == 3 and p.test is None
    c, y = p.split(p.train.images)
    # sorted by path: "3", "x/1", "x/2"; each condition with its own target
    assert torch.allclose(c.float().mean((1, 2, 3)), torch.tensor([200.0, 60, 120]), atol=5)
    assert torch.allclose(y.float().mean((1, 2, 3)), torch.tensor([55.0, 195, 135]), atol=5)


def test_folders_with_train_and_test_give_the_splits(tmp_path):
    for split in ("train", "test"):
        for i in range(3):
            _png(tmp_path / "A" / split / f"{i}.png", 50)
            _png(tmp_path / "B" / split / f"{i}.png", 150)
    p = load_pairs(data_a=str(tmp_path / "A"), data_b=str(tmp_path / "B"))
    assert len(p.train) == 3 and p.test is not None and len(p.test) == 3


def test_the_aligned_layout_splits_each_image_in_halves(tmp_path):
    for i in range(2):
        a = np.zeros((16, 32, 3), np.uint8)
        a[:, :16] = 40 * (i + 1)          # A, the left half
        a[:, 16:] = 200                   # B, the right half
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    p = load_pairs(aligned=str(tmp_path))
    c, y = p.split(p.train.images)
    assert p.cond_channels == 3 and c.shape == (2, 3, 16, 16) and p.img_size == 16
    assert c[:, 0, 0, 0].tolist() == [40, 80] and y.unique().tolist() == [200]
    c2, y2 = (q := load_pairs(aligned=str(tmp_path), direction="b2a")).split(q.train.images)
    assert torch.equal(c2, y) and torch.equal(y2, c)
    Image.fromarray(np.zeros((16, 15, 3), np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(DataError, match="odd.png: 15x16 px is not two halves"):
        load_pairs(aligned=str(tmp_path))


def test_pair_errors_are_one_line(tmp_path):
    _png(tmp_path / "A" / "1.png", 50)
    _png(tmp_path / "B" / "2.png", 50)
    with pytest.raises(DataError, match="no pairs"):
        load_pairs(data_a=str(tmp_path / "A"), data_b=str(tmp_path / "B"))
    with pytest.raises(DataError, match="unknown paired set 'nope'"):
        load_pairs(pairs="nope")
    with pytest.raises(DataError, match="--data-b .*: not a folder"):
        load_pairs(data_a=str(tmp_path / "A"), data_b=str(tmp_path / "none"))


def test_a_dataset_that_is_not_pairs_is_refused_in_one_line(tmp_path, capsys):
    assert main(["train", "--task", "pix2pix", "--data", "fashion-mnist", "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pix2pix trains on pairs" in err[0] and "fashion-mnist-edges" in err[0]


# --------------------------------------------------------------------------- training
def test_l1_to_the_target_falls_over_a_few_dozen_steps(tmp_path):
    cfg = pix2pix_cfg(tmp_path, **{"train.steps": 40, "log.log_every": 5, "train.lr_g": 2e-3,
                                   "log.sample_every": 1000})
    tr = Trainer(cfg, dataset=paired_squares(), quiet=True)
    tr.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    l1 = [r["loss_L1"] for r in rows if "loss_L1" in r]
    assert len(l1) == 8 and l1[-1] < 0.6 * l1[0], l1


def test_matching_aware_term_and_toolbox_options(tmp_path):
    cfg = pix2pix_cfg(tmp_path, **{"pix2pix.matching_weight": 1.0, "reg.r1": 1.0,
                                   "aug.diffaug": "translation,cutout", "train.steps": 2,
                                   "log.log_every": 1})
    tr = Trainer(cfg, dataset=paired_squares(), quiet=True)
    stats = tr.step()
    assert "loss_D_match" in stats and all(torch.isfinite(v) for v in stats.values())
    with pytest.raises(ConfigError, match="colour jitter would mix"):
        Trainer(pix2pix_cfg(tmp_path / "c", **{"aug.diffaug": "color"}), dataset=paired_squares(),
                quiet=True)


def test_translate_eval_and_report_of_a_run(tmp_path):
    run = tmp_path / "run"
    Trainer(pix2pix_cfg(run), dataset=paired_squares(), quiet=True).fit()
    model = load_run(run)
    c = torch.rand(3, 1, 16, 16) * 2 - 1
    assert model.translate(c).shape == (3, 1, 16, 16) and model.round_trip(c)[1] is None
    # the run trained in memory: its pairs are not on disk, but scores of given outputs are
    s = paired_scores(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 16))
    assert s["l1"] == 0 and s["psnr_inf"] == 2 and math.isinf(s["psnr"]) and s["ssim"] == 1
    s = paired_scores(torch.zeros(2, 1, 16, 16), torch.full((2, 1, 16, 16), 0.5))
    assert s["l1"] == pytest.approx(0.5) and s["psnr"] == pytest.approx(20 * math.log10(1 / 0.25))


def test_translate_command_on_a_run_of_folder_pairs(tmp_path):
    """`ganforge translate RUN run:test --grid` and `eval` on a run trained from two folders
    (the contract suite covers the rest of the use commands)."""
    from tests.helpers import save_pngs
    p = paired_squares()
    c, y = p.split(p.train.images)
    save_pngs(tmp_path / "A", c)
    save_pngs(tmp_path / "B", y)
    run = tmp_path / "run"
    assert main(["train", "--task", "pix2pix", "--data-a", str(tmp_path / "A"), "--data-b",
                 str(tmp_path / "B"), "--steps", "2", "--batch-size", "4", "--out", str(run),
                 "model.g_width=4", "model.d_width=4", "log.progress=false",
                 "log.tensorboard=false"]) == 0
    assert main(["translate", str(run), "run:train", "--limit", "5", "--grid", "--out",
                 str(tmp_path / "t")]) == 0
    assert len(list((tmp_path / "t").glob("*.png"))) == 6          # 5 outputs and the grid
    out = tmp_path / "e.json"
    assert main(["eval", str(run), "--split", "train", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["n"] == 24 and 0 <= res["l1"] <= 2 and -1 <= res["ssim"] <= 1
