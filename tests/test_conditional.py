"""Class-conditional GANs: models (families x methods), the task's losses, balanced sampling,
training and exact resume through the Trainer, `ganforge sample --class`, and the conditional
metrics. Synthetic data at tiny sizes; the whole file runs in well under 30 s on 2 cores."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.cli import main
from ganforge.core.checkpoint import load_checkpoint
from ganforge.core.config import ConfigError
from ganforge.data import DataError, ImageDataset
from ganforge.data.balanced import BalancedBatchLoader
from ganforge.data.batching import BatchLoader
from ganforge.data.classes import UnknownClassError, normalize_class_name, resolve_class
from ganforge.losses.adversarial import get_loss
from ganforge.metrics.per_class import conditional_scores
from ganforge.models import build, family_names, from_spec
from ganforge.models.conditioning import RECIPES, cond_family_names, recipe
from ganforge.training.tasks.conditional import ConditionalGANTask, mismatched_labels
from ganforge.training.trainer import Trainer
from tests.helpers import (
    SIZE,
    K,
    W,
    Z,
    assert_resume_exact,
    bars,
    cond_cfg,
    require_fashion_mnist,
)

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def pair(family, method, seed=0, size=SIZE, ch=1):
    g_m, d_m = recipe(method)
    torch.manual_seed(seed)
    G = build("G", family, img_size=size, channels=ch, z_dim=Z, width=W, n_classes=K, cond=g_m)
    D = build("D", family, img_size=size, channels=ch, width=W, n_classes=K, cond=d_m)
    return G, D


CASES = [(f, m) for f in ("mlp", "dcgan") for m in RECIPES]
IDS = [f"{f}-{m}" for f, m in CASES]


# ----------------------------------------------------------------------------- models
def test_registry_keeps_unconditional_contract():
    assert {"mlp", "dcgan"} <= set(cond_family_names())
    assert "dcgan" in family_names() and "mlp" in family_names()
    # without n_classes, the family is the unconditional network
    assert not hasattr(build("G", "dcgan", img_size=SIZE, channels=1, z_dim=Z, width=W), "n_classes")


@pytest.mark.parametrize("family,method", CASES, ids=IDS)
def test_conditional_contract(family, method):
    G, D = pair(family, method)
    z = torch.randn(6, Z)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    x = G(z, y)
    assert x.shape == (6, 1, SIZE, SIZE) and x.min() >= -1 and x.max() <= 1
    logits, cls = D.logits_and_classes(x, y)
    assert logits.shape == (6,) and torch.equal(logits, D(x, y))
    assert (cls is not None) == (method == "acgan")
    if cls is not None:
        assert cls.shape == (6, K)
    # the label changes G's output for the same z (train and eval mode) ...
    for mode in (True, False):
        G.train(mode)
        with torch.no_grad():
            a, b = G(z, y), G(z, (y + 1) % K)
        assert ((a - b).abs().flatten(1).amax(1) > 1e-3 * a.abs().flatten(1).amax(1)).all()
    # ... and D's score of the same image, except AC-GAN's (its logit ignores y by design)
    D.eval()
    x1 = x[:1].detach().expand(3, -1, -1, -1)
    scores = D(x1, torch.arange(K))
    assert torch.allclose(scores[0], scores[1]) == (method == "acgan")
    # G(z) without labels cycles through the classes
    G.eval()
    torch.testing.assert_close(G(z), G(z, torch.arange(6) % K))
    # rebuildable from the JSON-safe spec, n_classes and method included
    with torch.no_grad():
        D(G(z, y), y)            # BN running stats must travel too
    for net, inp in ((G, (z, y)), (D, (x.detach(), y))):
        spec = json.loads(json.dumps(net.spec))
        assert spec["kwargs"]["n_classes"] == K and spec["kwargs"]["cond"] in RECIPES[method]
        torch.manual_seed(99)
        twin = from_spec(spec)
        assert type(twin) is type(net)
        twin.load_state_dict(copy.deepcopy(net.state_dict()))
        net.eval(), twin.eval()
        with torch.no_grad():
            assert torch.equal(net(*inp), twin(*inp))


@pytest.mark.parametrize("family,method", CASES, ids=IDS)
def test_one_conditional_step_updates_everything(family, method):
    G, D = pair(family, method)
    loss = get_loss("nonsaturating")
    y = torch.arange(8) % K
    real = torch.rand(8, 1, SIZE, SIZE) * 2 - 1
    for net, fn in ((D, lambda: loss.d_loss(D(real, y), D(G(torch.randn(8, Z), y).detach(), y))),
                    (G, lambda: loss.g_loss(D(G(torch.randn(8, Z), y), y)))):
        if method == "acgan":
            base = fn
            fn = lambda base=base: base() + F.cross_entropy(D.logits_and_classes(real, y)[1], y) \
                + F.cross_entropy(D.logits_and_classes(G(torch.randn(8, Z), y), y)[1], y)
        before = [p.detach().clone() for p in net.parameters()]
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        opt.zero_grad()
        fn().backward(inputs=list(net.parameters()))
        opt.step()
        for (name, p), p0 in zip(net.named_parameters(), before):
            if name.startswith("embed") and method == "acgan":
                continue
            assert not torch.equal(p.detach(), p0), f"{type(net).__name__}.{name} did not change"


def test_projection_formula():
    for family in ("dcgan", "mlp"):
        _, D = pair(family, "projection")
        D.eval()
        x = torch.rand(5, 1, SIZE, SIZE) * 2 - 1
        y = torch.tensor([0, 1, 2, 1, 0])
        phi = D.features(x)
        psi = D.head(phi).reshape(-1)                       # psi(phi(x)): the unconditional head
        expected = psi + (D.embed(y) * phi.flatten(1)).sum(1)   # + embed(y) . phi(x)
        torch.testing.assert_close(D(x, y), expected)
        # only the projection term depends on y
        diff = D(x, torch.full((5,), 2)) - D(x, torch.zeros(5, dtype=torch.long))
        torch.testing.assert_close(diff, ((D.embed.weight[2] - D.embed.weight[0]) * phi.flatten(1)).sum(1))


def test_bad_model_args_are_clear():
    with pytest.raises(ValueError, match="at least 2 classes"):
        build("G", "dcgan", img_size=SIZE, channels=1, z_dim=Z, width=W, n_classes=1)
    with pytest.raises(ValueError, match="cond='projection' is not a G"):
        build("G", "mlp", img_size=SIZE, channels=1, z_dim=Z, width=W, n_classes=K, cond="projection")
    with pytest.raises(ValueError, match="cond.method='bogus'"):
        recipe("bogus")


# ----------------------------------------------------------------------------- task losses
def _task(**over):
    cfg = cond_cfg("unused", **over)
    torch.manual_seed(0)
    task = ConditionalGANTask(cfg, img_size=SIZE, channels=1, device=torch.device("cpu"),
                              n_classes=K, seed=0)
    task.bind_data(bars())
    return task


def _states(task):
    return task.noise_gen.get_state(), task.label_gen.get_state()


def _restore(task, st):
    task.noise_gen.set_state(st[0])
    task.label_gen.set_state(st[1])


@pytest.mark.parametrize("ac_fake", [False, True])
def test_acgan_losses_add_class_cross_entropy(ac_fake):
    task = _task(**{"cond.method": "acgan", "cond.ac_weight": 0.7, "cond.ac_fake": ac_fake})
    batch = (torch.rand(12, 1, SIZE, SIZE) * 2 - 1, torch.arange(12) % K)
    st = _states(task)
    loss, logs = task.loss("D", batch)
    _restore(task, st)
    z, yf = task.noise(12), task.sample_labels(12)
    with torch.no_grad():
        fake = task.G(z, yf)
        (rl, rc), (fl, fc) = task.D.logits_and_classes(batch[0], batch[1]), task.D.logits_and_classes(fake, yf)
    # D's class head learns real images; generated ones too with ac_fake (Odena et al.'s L_C)
    ce = F.cross_entropy(rc, batch[1]) + (F.cross_entropy(fc, yf) if ac_fake else 0)
    torch.testing.assert_close(loss, task.objective.d_loss(rl, fl) + 0.7 * ce)
    torch.testing.assert_close(logs["loss_D_cls"], ce)
    g_loss, g_logs = task.loss("G", batch)                     # reuses the D phase's fake
    with torch.no_grad():
        gl, gc = task.D.logits_and_classes(fake, yf)
    torch.testing.assert_close(g_loss, task.objective.g_loss(gl) + 0.7 * F.cross_entropy(gc, yf))
    assert "acc_D_cls" in task.progress_keys


def test_mismatched_labels_are_wrong_and_uniform():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(30000) % 5
    wrong = mismatched_labels(y, 5, g)
    assert not (wrong == y).any()
    for c in range(5):     # the other four classes equally often
        freq = torch.bincount(wrong[y == c], minlength=5).float() / (y == c).sum()
        assert freq[c] == 0 and torch.allclose(freq[torch.arange(5) != c], torch.tensor(0.25), atol=0.02)


@pytest.mark.parametrize("loss_name", ["nonsaturating", "lsgan"])
def test_matching_aware_term(loss_name):
    """L_D(lambda) = L_D(0) + lambda * B(D(x, c')), B the loss's fake half; lambda=0 is no term."""
    batch = (torch.rand(12, 1, SIZE, SIZE) * 2 - 1, torch.arange(12) % K)
    out = {}
    for lam in (0.0, 0.5):
        task = _task(**{"cond.matching_weight": lam, "train.loss": loss_name})
        st = _states(task)
        loss, logs = task.loss("D", batch)
        loss.backward(inputs=list(task.D.parameters()))
        out[lam] = (loss.detach(), logs, [p.grad.clone() for p in task.D.parameters()], task, st)
    l0, logs0, g0, t0, _ = out[0.0]
    l1, logs1, g1, t1, st = out[0.5]
    assert "loss_D_match" not in logs0
    # the wrong labels came after G's labels from the same stream: recompute them
    _restore(t1, st)
    t1.noise(12), t1.sample_labels(12)
    wrong = mismatched_labels(batch[1], K, t1.label_gen)
    assert not (wrong == batch[1]).any()
    with torch.no_grad():
        mis = t1.D(batch[0], wrong)
    b = F.softplus(mis).mean() if loss_name == "nonsaturating" else mis.square().mean()
    torch.testing.assert_close(logs1["loss_D_match"], b)
    torch.testing.assert_close(l1, l0 + 0.5 * b)
    assert any(not torch.allclose(a, c) for a, c in zip(g0, g1))
    # weight 0: identical loss and gradients to a plain conditional D step
    plain = _task(**{"train.loss": loss_name})
    loss_p, _ = plain.loss("D", batch)
    loss_p.backward(inputs=list(plain.D.parameters()))
    assert torch.equal(loss_p.detach(), l0)
    assert all(torch.equal(a, p.grad) for a, p in zip(g0, plain.D.parameters()))


@pytest.mark.parametrize("loss_name", ["relativistic", "rpgan"])
def test_matching_term_refuses_losses_without_a_fake_half(loss_name):
    """The relativistic losses compare real with fake: no d_fake, so no mismatched-pair term."""
    with pytest.raises(ConfigError, match=r"cond\.matching_weight.*no separate fake half"):
        _task(**{"cond.matching_weight": 1.0, "train.loss": loss_name})


def test_acgan_rejects_matching_term_and_bad_settings():
    with pytest.raises(ConfigError, match="AC-GAN"):
        _task(**{"cond.method": "acgan", "cond.matching_weight": 1.0})
    with pytest.raises(ConfigError, match="choose one"):
        _task(**{"cond.balance": True, "cond.class_weights": "inverse"})
    with pytest.raises(ConfigError, match="class_weights"):
        _task(**{"cond.class_weights": "sqrt"})


def test_class_weights_inverse_frequency():
    task = _task(**{"cond.class_weights": "inverse"})
    task.bind_data(bars(counts=[60, 30, 10]))
    w = task.class_weight
    torch.testing.assert_close(w, torch.tensor([100 / 180, 100 / 90, 100 / 30]))
    assert abs(float((w * torch.tensor([60., 30., 10.])).sum() / 100) - 1) < 1e-6  # mean 1 over data
    torch.testing.assert_close(task.label_probs, torch.full((K,), 1 / K))        # G: uniform
    # the weighted D loss is the w-weighted mean of the real half plus the fake half
    r, f = torch.randn(6), torch.randn(6)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    from ganforge.training.tasks.conditional import weighted_d_loss
    got = weighted_d_loss(task.objective, r, f, w[y])
    wy = w[y]
    expect = (wy * F.softplus(-r)).sum() / wy.sum() + F.softplus(f).mean()
    torch.testing.assert_close(got, expect)


# ----------------------------------------------------------------------------- balance
def test_balanced_loader_statistics():
    ds = bars(counts=[900, 90, 10])
    nat = BatchLoader(ds.images, ds.labels, batch_size=50, seed=0)
    bal = BalancedBatchLoader(ds.images, ds.labels, batch_size=50, seed=0)
    y_nat = torch.cat([nat.next()[1] for _ in range(120)])
    y_bal = torch.cat([bal.next()[1] for _ in range(120)])
    f_nat = torch.bincount(y_nat, minlength=3).float() / len(y_nat)
    f_bal = torch.bincount(y_bal, minlength=3).float() / len(y_bal)
    assert f_nat[0] > 0.85 and f_nat[2] < 0.03
    assert torch.allclose(f_bal, torch.full((3,), 1 / 3), atol=0.03), f_bal   # 6000 draws: sd ~0.006
    # the images match their labels (indices are shared), and epochs count draws
    x, y = bal.next()
    assert x.shape == (50, 1, SIZE, SIZE)
    assert bal.epoch_float == pytest.approx(121 * 50 / 1000, abs=0.06)
    # state round trip continues the same stream
    s = bal.state_dict()
    a = bal.next()[1]
    bal2 = BalancedBatchLoader(ds.images, ds.labels, batch_size=50, seed=123)
    bal2.load_state_dict(s)
    assert torch.equal(bal2.next()[1], a)


def test_balance_flag_only_for_conditional(tmp_path, capsys):
    assert main(["train", "--balance", "--out", str(tmp_path / "r"), "--print-config"]) == 2
    assert "--task conditional" in capsys.readouterr().err
    assert main(["train", "--balance", "--task", "conditional", "--print-config"]) == 0
    assert "balance: true" in capsys.readouterr().out


def test_balance_moves_generated_histogram_toward_uniform(tmp_path):
    """An imbalanced (90/10) easy two-class set: with --balance the generated classes (by a
    simple classifier: which half holds the bar) move from ~90/10 toward 50/50."""
    counts = [216, 24]
    ds = bars(n=240, size=8, k=2, counts=counts)
    frac = {}
    for balance in (False, True):
        run = tmp_path / f"b{int(balance)}"
        cfg = cond_cfg(run, **{"model.name": "mlp", "model.g_width": 32, "model.d_width": 32,
                              "train.batch_size": 32, "train.steps": 150, "train.lr_g": 2e-3,
                              "train.lr_d": 2e-3, "cond.balance": balance,
                              "log.ckpt_every": 1000, "log.log_every": 50})
        Trainer(cfg, dataset=ds, quiet=True).fit()
        assert main(["sample", str(run), "--n", "400", "--out", str(run / "s.npy")]) == 0
        x = torch.from_numpy(np.load(run / "s.npy"))[:, 0]
        requested = torch.from_numpy(np.load(run / "s.labels.npy"))
        pred = (x[:, 4:].mean((1, 2)) > x[:, :4].mean((1, 2))).long()    # bar in the lower half
        frac[balance] = float(pred.float().mean())
        if balance:   # G learned the conditioning: the classifier agrees with the request
            assert float((pred == requested).float().mean()) > 0.8
    assert frac[False] < 0.25, frac
    assert 0.35 < frac[True] < 0.65, frac


# ----------------------------------------------------------------------------- trainer
def test_trains_through_trainer_and_logs(tmp_path):
    tr = Trainer(cond_cfg(tmp_path / "r", **{"cond.matching_weight": 1.0}), dataset=bars(), quiet=True)
    before = [p.detach().clone() for p in tr.task.G.parameters()]
    tr.fit()
    assert tr.step_count == 6
    assert any(not torch.equal(p, q) for p, q in zip(tr.task.G.parameters(), before))
    rows = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss_D", "loss_G", "loss_D_match", "D(x,c')"):
        assert np.isfinite(rows[-1][key])
    st = load_checkpoint(tmp_path / "r")
    assert st["data"]["class_names"] == ["class 0", "class 1", "class 2"]
    assert st["specs"]["G"]["kwargs"]["n_classes"] == K and st["specs"]["D"]["kwargs"]["cond"] == "projection"
    assert int(st["task_state"]["label_counts"].sum()) == 6 * 12
    assert tuple(st["fixed"]["y"].tolist()) == (0, 0, 0, 1, 1, 1, 2, 2, 2)   # K x K grid
    assert (tmp_path / "r" / "samples" / "step-0000006.png").exists()


def test_unlabeled_data_is_a_clear_error(tmp_path):
    ds = bars()
    ds = ImageDataset(images=ds.images, labels=None, class_names=None, name="nolabels", source="memory")
    with pytest.raises(DataError, match="no class labels.*--task conditional"):
        Trainer(cond_cfg(tmp_path), dataset=ds, quiet=True)


@pytest.mark.parametrize("model,over", [
    ("dcgan", {"cond.balance": True, "cond.matching_weight": 0.5}),
    ("mlp", {"cond.method": "acgan", "cond.class_weights": "inverse", "train.d_steps": 2}),
], ids=["dcgan-balance-matching", "mlp-acgan-weights-k2"])
def test_resume_is_exact(tmp_path, model, over):
    ds = bars(counts=[50, 30, 16])
    over = {"model.name": model, **over}

    def make(out, steps, resume=False):
        return Trainer(cond_cfg(out, **over, **{"train.steps": steps}), dataset=ds, quiet=True,
                       resume=resume)
    a, _, _ = assert_resume_exact(make, tmp_path, steps=8, stop=4, extend=True)
    assert "label_counts" in a["task_state"]


# ----------------------------------------------------------------------------- sample CLI
def test_class_name_resolution():
    assert normalize_class_name("T-shirt/top") == "t-shirt-top"
    assert resolve_class("t-shirt-top", FASHION) == 0
    assert resolve_class("T_SHIRT top", FASHION) == 0
    assert resolve_class("sneaker", FASHION) == 7
    assert resolve_class("ankle-boot", FASHION) == 9
    assert resolve_class("7", FASHION) == 7
    assert resolve_class("3", ["7", "3"]) == 1          # an exact name wins over an index
    with pytest.raises(UnknownClassError, match="did you mean 'Sneaker'.*'Ankle boot'"):
        resolve_class("snekaer", FASHION)
    with pytest.raises(UnknownClassError, match="no class with index 10"):
        resolve_class("10", FASHION)
    emoji = ["Smileys & Emotion", "Food & Drink", "and"]          # the emoji groups' '&'
    for typed in ("food-drink", "Food and Drink", "food_&_drink", "FOOD & DRINK"):
        assert resolve_class(typed, emoji) == 1
    assert resolve_class("and", emoji) == 2 and normalize_class_name("sandal") == "sandal"


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    """A tiny conditional run trained through the CLI on an .npz with named classes."""
    root = tmp_path_factory.mktemp("cond")
    ds = bars(n=60, size=SIZE, k=2)
    np.savez(root / "data.npz", images=ds.images[:, 0].numpy(), labels=ds.labels.numpy(),
             class_names=np.array(["T-shirt/top", "Ankle boot"]))
    run = root / "run"
    rc = main(["train", "--task", "conditional", "--data", str(root / "data.npz"), "--model", "dcgan",
               "--steps", "4", "--batch-size", "8", "--out", str(run), "model.g_width=4",
               "model.d_width=4", "model.z_dim=8", "log.progress=false", "log.tensorboard=false",
               "log.sample_every=100", "log.gif=false"])
    assert rc == 0
    return run


def test_sample_one_class_by_index_and_name(cond_run, tmp_path):
    assert main(["sample", str(cond_run), "--class", "1", "--n", "5", "--out", str(tmp_path / "a.npy")]) == 0
    assert main(["sample", str(cond_run), "--class", "ANKLE_boot", "--n", "5", "--out", str(tmp_path / "b.npy")]) == 0
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (5, 1, SIZE, SIZE) and np.array_equal(a, b)
    assert np.array_equal(np.load(tmp_path / "a.labels.npy"), np.ones(5, dtype=np.int64))
    assert main(["sample", str(cond_run), "--class", "t-shirt-top", "--n", "5", "--out", str(tmp_path / "c.npy")]) == 0
    assert not np.array_equal(np.load(tmp_path / "c.npy"), a)          # same z, other class
    assert main(["sample", str(cond_run), "--class", "0", "--n", "6", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size[0] > 0
    # no --class: classes drawn as in training, with a labels file
    assert main(["sample", str(cond_run), "--n", "7", "--out", str(tmp_path / "d.npy")]) == 0
    assert set(np.load(tmp_path / "d.labels.npy").tolist()) <= {0, 1}


def test_sample_all_classes_grid(cond_run, tmp_path):
    out = tmp_path / "all.png"
    assert main(["sample", str(cond_run), "--class", "all", "--n", "8", "--out", str(out)]) == 0
    im = Image.open(out).convert("RGB")
    grid_w = (4 * (SIZE + 2) + 2) * 2            # 4 per row (8 / 2 classes), scale 2
    grid_h = (2 * (SIZE + 2) + 2) * 2            # one row per class
    assert im.size[1] == grid_h and im.size[0] > grid_w + 20     # room for the names on the left
    label_area = np.asarray(im)[:, : im.size[0] - grid_w]
    assert (label_area < 128).any()                               # some text was drawn
    assert main(["sample", str(cond_run), "--class", "all", "--n", "4", "--out", str(tmp_path / "all.npy")]) == 0
    assert np.load(tmp_path / "all.labels.npy").tolist() == [0, 0, 1, 1]


def test_sample_errors(cond_run, tmp_path, capsys):
    assert main(["sample", str(cond_run), "--class", "sneaker", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "unknown class" in err and "'T-shirt/top'" in err and "'Ankle boot'" in err
    # --class on an unconditional run
    ds = bars(n=40)
    run = tmp_path / "uncond"
    Trainer(cond_cfg(run, **{"train.task": "gan", "train.steps": 2}), dataset=ds, quiet=True).fit()
    assert main(["sample", str(run), "--class", "1", "--out", str(tmp_path / "u.png")]) == 2
    assert "unconditional" in capsys.readouterr().err
    assert main(["sample", str(run), "--n", "3", "--out", str(tmp_path / "u.npy")]) == 0   # unchanged
    assert not (tmp_path / "u.labels.npy").exists()


# ----------------------------------------------------------------------------- metrics
def test_conditional_scores():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(600, 4, generator=g)
    real_y = torch.arange(600) % 3
    real = real + 3 * F.one_hot(real_y, 4).float()          # class c shifted along axis c
    fake_y = torch.arange(300) % 3
    fake = torch.randn(300, 4, generator=g) + 3 * F.one_hot(fake_y, 4).float()
    pred = fake_y.clone()
    pred[:30] = (pred[:30] + 1) % 3                           # 10 % wrong, all in the first 30
    s = conditional_scores(fake, pred, fake_y, real, real_y, 3)
    assert s["accuracy"] == pytest.approx(0.9)
    assert [r["accuracy"] for r in s["per_class"]] == pytest.approx([0.9, 0.9, 0.9])
    assert np.array(s["confusion"]).sum() == 300 and np.trace(np.array(s["confusion"])) == 270
    assert all(r["fid"] < 0.5 for r in s["per_class"])       # same distributions per class
    # wrong classes: swapping generated classes makes intra-FID large, overall FID not
    swapped = conditional_scores(fake, pred, (fake_y + 1) % 3, real, real_y, 3)
    assert swapped["intra_fid"] > 10 * s["intra_fid"] + 5
    assert swapped["fid"] == pytest.approx(s["fid"])


def test_evaluate_conditional_end_to_end(cond_run):
    """With a stand-in evaluator (which half holds the bar) on the run's own data."""
    from ganforge.metrics.extractors import FeatureExtractor
    from ganforge.metrics.per_class import format_conditional
    from ganforge.use.load import load_run

    class Halves(FeatureExtractor):
        name, weights_hash, feature_dim, num_classes = "halves", "test-halves", 4, 2
        class_names = ["t-shirt top", "ankle boot"]          # other spelling, same classes

        def features(self, x):
            h = x.shape[-2] // 2
            return torch.stack([x[..., :h, :].mean((1, 2, 3)), x[..., h:, :].mean((1, 2, 3)),
                                x.std((1, 2, 3)), x.abs().mean((1, 2, 3))], 1)

        def logits(self, x):
            f = self.features(x)
            return torch.stack([f[:, 0] - f[:, 1], f[:, 1] - f[:, 0]], 1)

    res = load_run(cond_run).class_scores(evaluator=Halves(), n_per_class=20)
    assert 0 <= res["accuracy"] <= 1 and len(res["per_class"]) == 2
    assert res["per_class"][1]["class"] == "Ankle boot" and res["per_class"][0]["n_fake"] == 20
    assert res["per_class"][0]["real_accuracy"] == 1.0       # the stand-in is right on real data
    assert np.isfinite(res["intra_fid"]) and np.isfinite(res["fid"])
    assert "(train)" in res["real"]                          # no test split: the train images
    assert "Ankle boot" in format_conditional(res)


@pytest.mark.realdata
def test_fashion_mnist_class_names_reach_the_checkpoint(tmp_path):
    require_fashion_mnist()
    run = tmp_path / "run"
    assert main(["train", "--config", "cdcgan-fashion-mnist", "--steps", "2", "--out", str(run),
                 "model.g_width=4", "model.d_width=4", "log.progress=false", "data.limit=256",
                 "log.tensorboard=false"]) == 0
    assert load_checkpoint(run)["data"]["class_names"][7] == "Sneaker"
    assert main(["sample", str(run), "--class", "sneaker", "--n", "4", "--out", str(tmp_path / "s.npy")]) == 0
    assert main(["sample", str(run), "--class", "all", "--n", "20", "--out", str(tmp_path / "a.png")]) == 0
