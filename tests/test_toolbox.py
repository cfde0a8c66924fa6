"""The D toolbox (reg.*, aug.*, ema.*) through the real Trainer, for every task it applies to.

Each option, switched on for a gan (dcgan, mlp), conditional or cyclegan run, trains a few
steps with finite losses and leaves its mark (a logged statistic, a parametrised D, an
average of G); combinations the code refuses are ConfigErrors naming the key; and a run with
the stateful options all on resumes bit for bit. The pieces alone are unit-tested in
tests/test_regularize.py and tests/test_augment.py. Tiny widths, 16 px synthetic data, a few
steps; the loss-curve plot (matplotlib, ~90% of a tiny run's time) is stubbed out.
"""
from __future__ import annotations

import functools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from ganforge import models
from ganforge.cli import main
from ganforge.core.checkpoint import load_checkpoint
from ganforge.core.config import ConfigError
from ganforge.data.classic_augment import AugmentedLoader
from ganforge.losses.adversarial import LOSSES
from ganforge.models.spectral_norm import SN_TYPES, is_spectral_normed
from ganforge.training.trainer import Trainer
from ganforge.use.load import load_run
from tests.helpers import (
    TASK_KITS,
    assert_resume_exact,
    assert_same_state,
    cond_cfg,
    cyclegan_cfg,
    tiny_cfg,
)

STEPS = 4
#: every step logged, no sample grids or checkpoints besides the last
QUIET = {"log.gif": False, "log.sample_every": 1000, "log.ckpt_every": 1000,
         "log.log_every": 1, "train.steps": STEPS}
#: (config builder, data kind, overrides) per target
TARGETS = {
    "gan-dcgan": (tiny_cfg, "gan", {}),
    "gan-mlp": (tiny_cfg, "gan", {"model.name": "mlp"}),
    "conditional": (cond_cfg, "conditional", {}),               # dcgan, projection D
    "conditional-mlp": (cond_cfg, "conditional", {"model.name": "mlp"}),
    "cyclegan": (cyclegan_cfg, "cyclegan", {}),
}
LOSS_KEYS = {"gan": ("loss_D", "loss_G"), "conditional": ("loss_D", "loss_G"),
             "cyclegan": ("loss_D_X", "loss_D_Y", "loss_G", "loss_cycle")}


@pytest.fixture(autouse=True)
def _no_curve_plots(monkeypatch):
    """The loss-curve PNG is matplotlib and dominates a 4-step run; nothing here reads it."""
    monkeypatch.setattr("ganforge.training.callbacks.artifacts.plot_curves", lambda *a, **k: False)


@functools.lru_cache(maxsize=None)
def data(kind):
    return TASK_KITS[kind].data()


def make_cfg(target, out, **over):
    build, _, base = TARGETS[target]
    return build(out, **{**QUIET, **base, **over})


def trainer(target, out, resume=False, **over):
    return Trainer(make_cfg(target, out, **over), dataset=data(TARGETS[target][1]), quiet=True,
                   resume=resume)


def rows_of(run_dir):
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train(target, out, **over):
    """Train ``target`` for the configured steps; (trainer, metric rows)."""
    tr = trainer(target, out, **over)
    tr.fit()
    return tr, rows_of(out)


def toolboxes(tr):
    t = tr.task
    return list(t.toolboxes.values()) if hasattr(t, "toolboxes") else [t.toolbox]


def discriminators(tr):
    return [tr.task.modules[d] for d in tr.task.discriminators]


def toolbox_states(st):
    ts = st["task_state"]
    return list(ts["toolboxes"].values()) if "toolboxes" in ts else [ts["toolbox"]]


def advanced(gen, seed):
    """True when ``gen`` has drawn since it was seeded with ``seed``."""
    return not torch.equal(gen.get_state(), torch.Generator().manual_seed(seed).get_state())


def differs(a: nn.Module, b: nn.Module) -> bool:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    return any(not torch.equal(pa[k], pb[k]) for k in pa)


class DInputWatch:
    """Wraps each toolbox's ``view`` and hooks its discriminator: counts D calls whose input is
    not what ``view`` returned (or two view outputs stacked, as joint/stacked D calls do), and
    view calls that changed their input."""

    def __init__(self, tr):
        self.calls = self.unmatched = self.views = self.changed = 0
        t = tr.task
        pairs = ([(t.modules[d], tb) for d, tb in t.toolboxes.items()] if hasattr(t, "toolboxes")
                 else [(t.D, t.toolbox)])
        for D, tb in pairs:
            recent = []
            tb.view = functools.partial(self._view, tb.view, recent)
            D.register_forward_pre_hook(functools.partial(self._seen_by_d, recent))

    def _view(self, view, recent, x):
        out = view(x)
        self.views += 1
        self.changed += not torch.equal(out, x)
        recent.append(out.detach())
        del recent[:-4]
        return out

    def _seen_by_d(self, recent, module, args):
        x = args[0].detach()
        self.calls += 1
        self.unmatched += not (any(torch.equal(x, o) for o in recent) or any(
            x.shape[0] == a.shape[0] + b.shape[0] and torch.equal(x, torch.cat([a, b]))
            for a, b in zip(recent, recent[1:])))


# ----------------------------------------------------------------------------- per-option checks
# Each takes the run: .tr (the Trainer after fit), .rows (metrics), .watch (DInputWatch),
# .init (every module's state before training).
def check_r1(run):
    # r1_every=2: due on D steps 0, 2, ..., i.e. in the rows of steps 1, 3 (one D step a step)
    assert [r["step"] for r in run.rows if "r1" in r] == [1, 3]
    assert all(math.isfinite(r["r1"]) and r["r1"] > 0 for r in run.rows if "r1" in r)


def check_r2(run):
    # as R1: lazy on the same D steps (r1_every=2 governs both)
    assert [r["step"] for r in run.rows if "r2" in r] == [1, 3]
    assert all(math.isfinite(r["r2"]) and r["r2"] > 0 for r in run.rows if "r2" in r)


def check_r3gan_recipe(run):
    # R3GAN's objective: RpGAN + gamma/2 (R1 + R2), the penalties on the same steps
    check_r1(run)
    check_r2(run)
    assert type(run.tr.task.objective).__name__ == "RelativisticPairedLoss"


def check_gp(run):
    assert all("gp" in r and math.isfinite(r["gp"]) and r["gp"] >= 0 for r in run.rows)


def check_spectral_norm(run):
    for D in discriminators(run.tr):
        layers = [m for m in D.modules() if isinstance(m, SN_TYPES)]
        assert layers and all(is_spectral_normed(m) for m in layers)
        assert D.spec["kwargs"]["spectral_norm"] is True
    assert not any(is_spectral_normed(m) for n in run.tr.task.generators
                   for m in run.tr.task.modules[n].modules())         # G untouched


def check_label_smoothing(run):
    assert run.tr.task.objective.label_smoothing == 0.1


def check_instance_noise(run):
    # sigma0=0.1 annealed linearly to 0 over reg.instance_noise_steps=3 D steps
    assert [r["noise_std"] for r in run.rows] == pytest.approx([0.1, 0.2 / 3, 0.1 / 3, 0.0], abs=1e-6)
    assert 0 < run.watch.changed < run.watch.views          # noisy views, then clean ones


def check_d_dropout(run):
    for D in discriminators(run.tr):
        drops = [m for m in D.modules() if isinstance(m, nn.Dropout)]
        assert drops and all(m.p == 0.3 for m in drops)


def check_diffaug(run):
    for tb in toolboxes(run.tr):
        assert tb.augment.policy == "translation,cutout,color" and tb.augment.p == 1.0
        assert tb.ada is None and advanced(tb.augment.gen, tb.augment.seed)
    assert run.watch.changed == run.watch.views             # every batch D saw was augmented


def check_ada(run):
    rows, tbs = run.rows, toolboxes(run.tr)
    assert all("aug_p" in r for r in rows)
    ps = [tb.augment.p for tb in tbs]
    assert all(p > 0 for p in ps), ps                     # p moved within 4 steps
    assert ps == [tb.ada.p for tb in tbs]                 # the augmentation uses ADA's p
    assert rows[-1]["aug_p"] == pytest.approx(sum(ps) / len(ps), abs=1e-6)
    assert rows[0]["aug_p"] < rows[-1]["aug_p"]
    assert run.watch.changed > 0                          # ... and D saw augmented batches


def check_classic(run):
    assert isinstance(run.tr.loader, AugmentedLoader)
    aug = run.tr.loader.augment
    assert aug.names == ("flip", "rotation") and advanced(aug.gen, aug.seed)


def check_ema(run):
    for name in run.tr.task.generators:
        avg = run.tr.task.modules[f"{name}_ema"]
        assert not any(p.requires_grad for p in avg.parameters())
        assert differs(run.tr.task.modules[name], avg)                  # not G ...
        start = run.init[f"{name}_ema"]
        assert any(not torch.equal(p, start[k]) for k, p in avg.named_parameters())  # ... and moved


ALL = ("gan-dcgan", "gan-mlp", "conditional", "cyclegan")
OPTIONS = {   # name: (overrides, targets, check)
    "r1": ({"reg.r1": 1.0, "reg.r1_every": 2}, ALL, check_r1),
    "r2": ({"reg.r2": 1.0, "reg.r1_every": 2}, ALL, check_r2),
    "r3gan_recipe": ({"reg.r1": 1.0, "reg.r2": 1.0, "reg.r1_every": 2, "train.loss": "rpgan"},
                     ("gan-dcgan", "gan-mlp", "conditional"), check_r3gan_recipe),
    "r3gan_recipe_cyclegan": ({"reg.r1": 1.0, "reg.r2": 1.0, "reg.r1_every": 2,
                               "cyclegan.adv_loss": "rpgan"}, ("cyclegan",), check_r3gan_recipe),
    "gp": ({"reg.gp": 10.0}, ("gan-mlp", "conditional-mlp", "cyclegan"), check_gp),
    "spectral_norm": ({"reg.spectral_norm": True}, ALL, check_spectral_norm),
    "label_smoothing": ({"reg.label_smoothing": 0.1}, ALL, check_label_smoothing),
    "instance_noise": ({"reg.instance_noise": 0.1, "reg.instance_noise_steps": 3}, ALL,
                       check_instance_noise),
    "d_dropout": ({"reg.d_dropout": 0.3}, ("gan-dcgan", "gan-mlp", "conditional", "conditional-mlp"),
                  check_d_dropout),
    "diffaug": ({"aug.diffaug": "translation,cutout,color"}, ALL, check_diffaug),
    # target -0.99: D's sign on reals is (nearly surely) above it, so p rises every update
    "ada": ({"aug.ada": True, "aug.ada_speed": 64, "aug.ada_interval": 1, "aug.ada_target": -0.99},
            ALL, check_ada),
    "classic": ({"aug.classic": "flip,rotation"}, ALL, check_classic),
    "ema": ({"ema.half_life": 1.0, "ema.warmup": 0.0}, ("gan-dcgan", "conditional", "cyclegan"),
            check_ema),
}
#: options that change what D sees (the others leave tb.view the identity)
VIEWING = ("instance_noise", "diffaug", "ada")
CASES = [pytest.param(opt, target, id=f"{opt}-{target}")
         for opt, (_, targets, _) in OPTIONS.items() for target in targets]


@pytest.mark.parametrize("option,target", CASES)
def test_option_trains_with_finite_losses_and_leaves_its_mark(tmp_path, option, target):
    """Each reg./aug./ema. option trains a few steps of each task it applies to, finite, no rollback."""
    over, _, check = OPTIONS[option]
    tr = trainer(target, tmp_path, **over)
    init = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in tr.task.modules.items()}
    watch = DInputWatch(tr)
    tr.fit()
    rows = rows_of(tmp_path)
    assert tr.step_count == STEPS and [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert not any("rollback" in r for r in rows)          # the guard never had to step in
    for r in rows:
        for k in LOSS_KEYS[TARGETS[target][1]]:
            assert math.isfinite(r[k]), (k, r)
    assert all(torch.isfinite(p).all() for m in tr.task.modules.values() for p in m.parameters())
    for d in tr.task.discriminators:                       # D trained
        assert any(not torch.equal(v, init[d][k]) for k, v in tr.task.modules[d].named_parameters())
    # every batch D judged (real and fake, D's and G's phase) went through the toolbox's view;
    # the gradient penalty's interpolates are the one exception
    assert watch.calls > 0 and (watch.unmatched == 0 or option == "gp")
    if option not in VIEWING:
        assert watch.changed == 0
    check(SimpleNamespace(tr=tr, rows=rows, watch=watch, init=init))


# ----------------------------------------------------------------------------- refused combinations
@pytest.mark.parametrize("target", ["gan-dcgan", "conditional"])
def test_gradient_penalty_refuses_a_batchnorm_discriminator(tmp_path, target):
    """reg.gp with dcgan's BatchNorm D is a ConfigError naming reg.gp (mlp trains, see above)."""
    with pytest.raises(ConfigError, match=r"reg\.gp.*BatchNorm"):
        trainer(target, tmp_path, **{"reg.gp": 10.0})


@pytest.mark.parametrize("target,loss_key,loss", [
    ("gan-dcgan", "train.loss", "hinge"), ("gan-mlp", "train.loss", "wasserstein"),
    ("conditional", "train.loss", "hinge"), ("gan-dcgan", "train.loss", "relativistic"),
    ("cyclegan", "cyclegan.adv_loss", "hinge")])
def test_label_smoothing_refused_for_losses_without_a_target(tmp_path, target, loss_key, loss):
    """reg.label_smoothing with a margin/critic/relativistic loss is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"reg\.label_smoothing=0\.1"):
        trainer(target, tmp_path, **{"reg.label_smoothing": 0.1, loss_key: loss})


def test_label_smoothing_error_names_cyclegans_own_loss_key(tmp_path):
    """The cyclegan refusal names cyclegan.adv_loss (train.loss is not used by that task)."""
    with pytest.raises(ConfigError) as e:
        trainer("cyclegan", tmp_path, **{"reg.label_smoothing": 0.1, "cyclegan.adv_loss": "hinge"})
    assert "cyclegan.adv_loss=hinge" in str(e.value)


def test_cyclegan_patchgan_has_no_dropout_option(tmp_path):
    """PatchGAN takes no dropout, so reg.d_dropout with cyclegan is a ConfigError naming both."""
    with pytest.raises(ConfigError, match=r"reg\.d_dropout.*'patchgan'"):
        trainer("cyclegan", tmp_path, **{"reg.d_dropout": 0.3})


def test_conditional_relativistic_with_class_weights_is_refused(tmp_path):
    """cond.class_weights=inverse weights per real image; relativistic compares with batch means."""
    with pytest.raises(ConfigError, match=r"cond\.class_weights=inverse.*train\.loss=relativistic"):
        trainer("conditional", tmp_path, **{"train.loss": "relativistic",
                                            "cond.class_weights": "inverse"})
    tr, rows = train("conditional", tmp_path / "ok", **{"train.loss": "relativistic",
                                                        "cond.class_weights": "none"})
    assert all(math.isfinite(r["loss_D"]) and math.isfinite(r["loss_G"]) for r in rows)


# ----------------------------------------------------------------------------- losses
@pytest.mark.parametrize("target,loss", [("gan-dcgan", n) for n in LOSSES.names()]
                         + [("conditional", "relativistic")])
def test_every_loss_trains_and_g_sees_real_logits_when_it_needs_them(tmp_path, target, loss):
    """Each registered train.loss trains; G's loss gets D's real logits exactly when g_needs_real."""
    tr = trainer(target, tmp_path, **{"train.loss": loss, "train.steps": 3})
    obj = tr.task.objective
    seen = []
    g_loss = obj.g_loss

    def spy(fake_logits, real_logits=None):
        seen.append(real_logits)
        return g_loss(fake_logits, real_logits)

    obj.g_loss = spy
    tr.fit()
    rows = rows_of(tmp_path)
    assert len(seen) == 3 and not any("rollback" in r for r in rows)
    assert all(math.isfinite(r["loss_D"]) and math.isfinite(r["loss_G"]) for r in rows)
    if obj.g_needs_real:
        n = tr.cfg.train.batch_size
        assert all(t is not None and t.shape[0] == n and not t.requires_grad for t in seen)
    else:
        assert all(t is None for t in seen)


# ----------------------------------------------------------------------------- spectral norm
@pytest.mark.parametrize("target", ["gan-dcgan", "gan-mlp", "conditional", "cyclegan"])
def test_spectral_norm_checkpoint_rebuilds_d_and_sampling_still_works(tmp_path, target):
    """With reg.spectral_norm, D's spec records it, D rebuilds from the checkpoint, `sample` works."""
    run = tmp_path / "run"
    train(target, run, **{"reg.spectral_norm": True})
    st = load_checkpoint(run)
    for d in ("D_A", "D_B") if target == "cyclegan" else ("D",):
        spec = st["specs"][d]
        assert spec["kwargs"]["spectral_norm"] is True
        assert any(k.endswith("parametrizations.weight.original") for k in st["modules"][d])
        D = models.from_spec(spec)
        D.load_state_dict(st["modules"][d])           # strict: the same parametrised keys
    for g in [n for n in st["specs"] if n.startswith("G")]:
        assert "spectral_norm" not in st["specs"][g]["kwargs"]
    if target == "cyclegan":
        return
    G = load_run(run).generator
    assert G.z_dim == 8
    out = tmp_path / "s.npy"
    assert main(["sample", str(run), "--n", "5", "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (5, 1, 16, 16) and np.isfinite(x).all() and np.abs(x).max() <= 1


# ----------------------------------------------------------------------------- classic augmentation
@pytest.mark.parametrize("target", ["gan-dcgan", "cyclegan"])
def test_classic_augmentation_changes_real_batches_not_sampling(tmp_path, target):
    """aug.classic alters the real batches (every image tensor) but not G's samples or grids."""
    plain = trainer(target, tmp_path / "plain")
    aug = trainer(target, tmp_path / "aug", **{"aug.classic": "flip,rotation"})
    # the same initial networks and fixed inputs: the progress grid is G's, untouched
    assert torch.equal(plain.task.render(plain.fixed), aug.task.render(aug.fixed))
    bp, ba = plain.loader.next(), aug.loader.next()
    images = [i for i, t in enumerate(bp) if t is not None and t.dim() == 4]
    assert len(images) == (2 if target == "cyclegan" else 1)
    for i in images:
        assert bp[i].shape == ba[i].shape and ba[i].min() >= -1 and ba[i].max() <= 1
        assert not torch.equal(bp[i], ba[i])
    if target == "gan-dcgan":
        assert torch.equal(bp[1], ba[1])                    # labels pass through
    # the step-0 grid written by fit() is the same; D trained on different reals
    for tr in (plain, aug):
        tr.fit()
    assert (tmp_path / "plain/samples/step-0000000.png").read_bytes() == \
        (tmp_path / "aug/samples/step-0000000.png").read_bytes()
    assert differs(discriminators(plain)[0], discriminators(aug)[0])
    if target == "gan-dcgan":   # sampling a run trained with classic augmentation is plain G
        model = load_run(tmp_path / "aug")
        z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
        aug.task.G.eval()
        with torch.no_grad():
            assert torch.equal(model.sample(3, seed=0), aug.task.G(z).clamp(-1, 1))


# ----------------------------------------------------------------------------- EMA
@pytest.mark.parametrize("target", ["gan-dcgan", "gan-mlp", "conditional", "cyclegan"])
def test_ema_copies_are_checkpointed_and_sampling_picks_them(tmp_path, target):
    """ema.half_life: <G>_ema in the checkpoint, differs from G; load_generator uses it unless ema=False."""
    run = tmp_path / "run"
    tr, _ = train(target, run, **{"ema.half_life": 1.0, "ema.warmup": 0.0})
    st = load_checkpoint(run)
    sources = ("G_AB", "G_BA") if target == "cyclegan" else ("G",)
    assert set(st["modules"]) == set(tr.task.discriminators) | set(sources) \
        | {f"{s}_ema" for s in sources}
    for s in sources:
        assert st["specs"][f"{s}_ema"] == st["specs"][s]
        raw, avg = st["modules"][s], st["modules"][f"{s}_ema"]
        assert raw.keys() == avg.keys()
        assert any(v.is_floating_point() and not torch.equal(v, avg[k]) for k, v in raw.items())
    if target == "cyclegan":
        return
    for ema, name in ((True, "G_ema"), (False, "G")):
        G = load_run(run, ema=ema).generator
        assert_same_state({"G": st["modules"][name]}, {"G": G.state_dict()})
    assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "a.npy")]) == 0
    assert main(["sample", str(run), "--n", "2", "--no-ema", "--out", str(tmp_path / "b.npy")]) == 0
    assert not np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


# ----------------------------------------------------------------------------- logging of lazy R1
def test_lazy_r1_logged_value_does_not_depend_on_log_every(tmp_path):
    """The row's r1 is the penalty's mean over the steps that computed it, whatever log.log_every."""
    over = {"reg.r1": 1.0, "reg.r1_every": 2}
    _, every1 = train("gan-mlp", tmp_path / "a", **over)
    _, every2 = train("gan-mlp", tmp_path / "b", **over, **{"log.log_every": 2})
    # the same training (logging does not touch it): steps 1 and 3 computed R1
    by_step = {r["step"]: r for r in every1}
    assert "r1" in by_step[1] and "r1" not in by_step[2]
    assert [r["step"] for r in every2] == [2, 4]
    assert every2[0]["r1"] == pytest.approx(by_step[1]["r1"], rel=1e-5)
    assert every2[1]["r1"] == pytest.approx(by_step[3]["r1"], rel=1e-5)


# ----------------------------------------------------------------------------- R2 in the tasks
@pytest.mark.parametrize("target", ["gan-mlp", "gan-dcgan", "conditional", "cyclegan"])
def test_r2_is_taken_on_the_fake_batch_d_saw(tmp_path, target):
    """The logged r2 equals E||grad_x D(x)||^2 recomputed on the very fakes of that D step
    (gan-mlp: through the joint real+fake D call; dcgan: separate calls; cyclegan: stacked)."""
    from ganforge.regularize.penalties import r2_penalty
    loss_key = "cyclegan.adv_loss" if target == "cyclegan" else "train.loss"
    tr = trainer(target, tmp_path, **{"reg.r2": 2.0, "reg.r1_every": 1, loss_key: "rpgan"})
    task = tr.task
    if target.startswith("gan"):
        assert task._joint_d == (target == "gan-mlp")
    seen = []
    for tb in toolboxes(tr):
        tb.fake = functools.partial(lambda f, x: seen.append(f(x)) or seen[-1], tb.fake)
    batch = tr.loader.next()
    if target == "cyclegan":
        task.loss("G", batch)
    loss, logs = task.loss("D", batch)
    assert seen and all(f.requires_grad and f.is_leaf for f in seen)
    if target == "cyclegan":
        critics = [task.modules[d] for d in task.discriminators]          # D_A, D_B in order
    elif target == "conditional":
        critics = [lambda x, y=task._fake_y: task.D(x, y)]
    else:
        critics = [task.D]
    want = []
    for critic, fake in zip(critics, seen, strict=True):
        x = fake.detach().requires_grad_(True)
        want.append(r2_penalty(critic(x), x))
    torch.testing.assert_close(logs["r2"], sum(want) / len(want), rtol=1e-4, atol=1e-7)
    assert logs["r2"] > 0 and torch.isfinite(loss)


def test_r2_zero_leaves_the_fake_batch_alone(tmp_path):
    """reg.r2=0 (the default): tb.fake is the identity, the very same tensor."""
    tr = trainer("gan-mlp", tmp_path, **{"reg.r1": 1.0, "reg.r1_every": 1})
    tb = tr.task.toolbox
    x = torch.randn(3, 1, 16, 16)
    tb.real(x)
    assert tb.fake(x) is x and not x.requires_grad


# ----------------------------------------------------------------------------- exact resume
RESUME = {"reg.r1": 1.0, "reg.r1_every": 3, "aug.ada": True, "aug.ada_speed": 320,
          "aug.ada_interval": 2, "aug.ada_target": -0.99,
          "aug.diffaug": "translation,cutout,color", "reg.instance_noise": 0.1,
          "ema.half_life": 0.05, "aug.classic": "flip", "train.steps": 10}


@pytest.mark.parametrize("target,extra", [("gan-dcgan", {}), ("gan-mlp", {"train.d_steps": 2}),
                                          ("conditional", {}), ("cyclegan", {})])
def test_resume_with_the_toolbox_on_is_exact(tmp_path, target, extra):
    """10 steps == 5 + resume + 5, bit for bit, with lazy R1, ADA, DiffAugment, noise, EMA, flips."""
    over = {**RESUME, **extra}

    def make(out, steps, resume=False):
        return trainer(target, out, resume=resume, **{**over, "train.steps": steps})

    def on_resume(tr, mid):
        # mid-run state the resume must restore: ADA has moved p, R1's counter is mid-period
        for s in toolbox_states(mid):
            assert s["ada"]["p"] > 0 and s["d_steps"] % 3 != 0
        assert [tb.augment.p for tb in toolboxes(tr)] == [s["ada"]["p"] for s in toolbox_states(mid)]

    a, b, mid = assert_resume_exact(make, tmp_path, steps=10, stop=5, on_resume=on_resume)
    assert any(n.endswith("_ema") for n in a["modules"])
    for sa, sb, sm in zip(toolbox_states(a), toolbox_states(b), toolbox_states(mid), strict=True):
        assert sa["ada"]["p"] == sb["ada"]["p"] > sm["ada"]["p"]     # p kept moving after resume
        assert sa["ada"] == sb["ada"] and sa["d_steps"] == sb["d_steps"]
        assert torch.equal(sa["augment"]["gen"], sb["augment"]["gen"])
        assert torch.equal(sa["noise_gen"], sb["noise_gen"])
    assert torch.equal(a["loader"]["augment"]["gen"], b["loader"]["augment"]["gen"])
