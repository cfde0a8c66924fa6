"""The divergence guard (rollback with a lower lr) and transfer learning (--init-from, --freeze-d)."""
from __future__ import annotations

import json

import pytest
import torch

from ganforge import cli
from ganforge.core.checkpoint import load_checkpoint
from ganforge.core.config import ConfigError
from ganforge.training.callbacks.guard import TrainingDiverged
from ganforge.training.trainer import Trainer
from tests.helpers import blobs, tiny_cfg


def poison(trainer: Trainer, at_steps) -> None:
    """Make D's loss NaN on the given steps (the first time each is reached)."""
    orig = trainer.task.loss
    todo = set(at_steps)

    def loss(phase, batch, **kw):
        value, logs = orig(phase, batch, **kw)
        if phase == "D" and trainer.step_count in todo:
            todo.discard(trainer.step_count)
            value = value * float("nan")
            logs = {**logs, "loss_D": value.detach()}
        return value, logs
    trainer.task.loss = loss


def rows(run_dir):
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_nan_rolls_back_to_last_checkpoint_with_lower_lr(tmp_path):
    """A NaN after the step-4 checkpoint: back to step 4 with lr x0.5, then training finishes
    with finite weights."""
    tr = Trainer(tiny_cfg(tmp_path), dataset=blobs(), quiet=True)
    poison(tr, {5})
    tr.fit()
    st = load_checkpoint(tmp_path)
    assert st["step"] == 8
    assert all(torch.isfinite(v).all() for m in st["modules"].values() for v in m.values()
               if v.is_floating_point())
    back = [r for r in rows(tmp_path) if "rollback" in r]
    assert len(back) == 1 and back[0]["step"] == 4 and "non-finite" in back[0]["reason"]
    assert st["guard"]["lr_scale"] == 0.5
    assert st["schedulers"]["D"]["base_lrs"] == [pytest.approx(1e-4)]
    assert tr.optimizers["G"].param_groups[0]["lr"] == pytest.approx(1e-4)


def test_nan_before_first_checkpoint_rolls_back_to_start(tmp_path):
    """With no checkpoint yet, the guard restores the state the session started from."""
    tr = Trainer(tiny_cfg(tmp_path), dataset=blobs(), quiet=True)
    poison(tr, {0})
    tr.fit()
    back = [r for r in rows(tmp_path) if "rollback" in r]
    assert [r["step"] for r in back] == [0]
    assert load_checkpoint(tmp_path)["step"] == 8


def test_gives_up_after_max_rollbacks_and_keeps_good_checkpoint(tmp_path):
    """A loss that is always NaN: three rollbacks, then a clear error; no NaN checkpoint."""
    tr = Trainer(tiny_cfg(tmp_path, **{"guard.max_rollbacks": 2}), dataset=blobs(), quiet=True)
    orig = tr.task.loss
    tr.task.loss = lambda phase, batch, **kw: (lambda v, l: (v * float("nan"), {**l, "loss_D": v.detach() * float("nan")}))(*orig(phase, batch, **kw))
    with pytest.raises(TrainingDiverged, match="after 2 rollbacks") as e:
        tr.fit()
    if not (tmp_path / "checkpoints").exists():     # names only what exists
        assert "no checkpoint was written before it diverged" in str(e.value)
        assert "checkpoints" not in str(e.value).replace("no checkpoint was", "")


def test_rollbacks_compound_and_save_a_run_that_diverges_at_its_rates(tmp_path):
    """D's loss is NaN at step 5 while the learning rate is above x0.3 of the configured one
    (a run that diverges at its rates): rollback 1 (x0.5) diverges again at the same step,
    rollback 2 goes to x0.25 and the run trains through (issue 26, qa case 21)."""
    tr = Trainer(tiny_cfg(tmp_path), dataset=blobs(), quiet=True)
    base = tr.optimizers["D"].param_groups[0]["lr"]
    orig = tr.task.loss

    def loss(phase, batch, **kw):
        value, logs = orig(phase, batch, **kw)
        if phase == "D" and tr.step_count == 5 and tr.optimizers["D"].param_groups[0]["lr"] > 0.3 * base:
            value = value * float("nan")
            logs = {**logs, "loss_D": value.detach()}
        return value, logs
    tr.task.loss = loss
    tr.fit()
    back = [r for r in rows(tmp_path) if "rollback" in r]
    assert [r["lr_scale"] for r in back] == [0.5, 0.25] and [r["step"] for r in back] == [4, 4]
    st = load_checkpoint(tmp_path)
    assert st["step"] == 8 and st["guard"]["lr_scale"] == 0.25
    assert st["schedulers"]["D"]["base_lrs"] == [pytest.approx(base * 0.25)]
    assert not (tmp_path / "checkpoints" / "latest.pt").exists() or all(
        torch.isfinite(v).all() for m in load_checkpoint(tmp_path)["modules"].values()
        for v in m.values() if v.is_floating_point())


def test_collapsed_discriminator_triggers_rollback(tmp_path):
    """D accuracy >= guard.collapse_acc on every log step for guard.window steps = collapse."""
    cfg = tiny_cfg(tmp_path, **{"guard.collapse_acc": 0.0, "guard.window": 4, "guard.max_rollbacks": 1})
    with pytest.raises(TrainingDiverged, match="accuracy"):
        Trainer(cfg, dataset=blobs(), quiet=True).fit()
    back = [r for r in rows(tmp_path) if "rollback" in r]
    assert back and "accuracy" in back[0]["reason"]


def test_guard_off_lets_nan_through(tmp_path):
    """guard.enabled=false: no rollback (the user asked for it)."""
    tr = Trainer(tiny_cfg(tmp_path, **{"guard.enabled": False}), dataset=blobs(), quiet=True)
    poison(tr, {5})
    tr.fit()
    assert not [r for r in rows(tmp_path) if "rollback" in r]


# ----------------------------------------------------------------------------- transfer
@pytest.fixture()
def source_run(tmp_path):
    out = tmp_path / "source"
    Trainer(tiny_cfg(out, **{"ema.half_life": 0.1}), dataset=blobs(), quiet=True).fit()
    return out


def test_init_from_loads_weights_and_starts_fresh(tmp_path, source_run):
    """--init-from copies G, D (and G_ema when both have it) but not optimiser state or steps."""
    src = load_checkpoint(source_run)
    tr = Trainer(tiny_cfg(tmp_path / "ft", **{"train.init_from": str(source_run), "ema.half_life": 0.1}),
                 dataset=blobs(seed=1), quiet=True)
    for net in ("G", "D"):
        for k, v in tr.task.modules[net].state_dict().items():
            assert torch.equal(v, src["modules"][net][k]), f"{net}.{k}"
    # the new run's EMA starts at the loaded G
    for k, v in tr.task.modules["G_ema"].state_dict().items():
        assert torch.equal(v, src["modules"]["G"][k])
    assert tr.step_count == 0 and not tr.optimizers["D"].state
    tr.fit()
    assert load_checkpoint(tmp_path / "ft")["step"] == 8


def test_init_from_mismatch_names_tensor_and_setting(tmp_path, source_run):
    """Another width: refused before training, naming the tensor and the settings to match."""
    cfg = tiny_cfg(tmp_path / "ft", **{"train.init_from": str(source_run), "model.g_width": 8})
    with pytest.raises(ConfigError, match=r"do not fit the new networks: G\..*checkpoint \(.*\) vs new .*model\.\*"):
        Trainer(cfg, dataset=blobs(), quiet=True)
    with pytest.raises(ConfigError, match="--init-from .*nowhere"):
        Trainer(tiny_cfg(tmp_path / "x", **{"train.init_from": str(tmp_path / "nowhere")}),
                dataset=blobs(), quiet=True)


def test_freeze_d_keeps_first_blocks_fixed(tmp_path, source_run):
    """--freeze-d 1: D's first block is unchanged by training, the rest learns."""
    cfg = tiny_cfg(tmp_path / "ft", **{"train.init_from": str(source_run), "train.freeze_d": 1})
    tr = Trainer(cfg, dataset=blobs(seed=1), quiet=True)
    before = {k: v.clone() for k, v in tr.task.modules["D"].state_dict().items()}
    tr.fit()
    after = tr.task.modules["D"].state_dict()
    assert torch.equal(after["blocks.0.0.weight"], before["blocks.0.0.weight"])
    assert not torch.equal(after["head.weight"], before["head.weight"])
    with pytest.raises(ConfigError, match="freeze at most"):
        Trainer(tiny_cfg(tmp_path / "y", **{"train.freeze_d": 9}), dataset=blobs(), quiet=True)


def test_cli_init_from_flags(tmp_path, source_run, capsys):
    """The CLI spells them --init-from and --freeze-d; a mismatch exits 2 with the message."""
    data = tmp_path / "blobs.npz"
    import numpy as np
    d = blobs(n=64, size=16, seed=2)
    np.savez(data, images=d.images.numpy())
    common = ["--data", str(data), "--model", "dcgan", "--steps", "2", "model.g_width=4", "model.d_width=4",
              "model.z_dim=8", "train.batch_size=16", "log.progress=false", "log.tensorboard=false",
              "log.n_samples=4"]
    assert cli.main(["train", "--out", str(tmp_path / "c"), "--init-from", str(source_run), "--freeze-d", "1",
                     *common]) == 0
    assert "--freeze-d 1: froze the first 1 blocks" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tmp_path / "d"), "--init-from", str(source_run),
                     *common, "model.d_width=8"]) == 2
    assert "do not fit" in capsys.readouterr().err


def test_init_from_unconditional_into_conditional_gets_new_label_layers(tmp_path):
    """The "new head": an unconditional run's G and D become a conditional run's backbone;
    the class embedding of the projection D starts fresh, conditional BN starts as the source's
    BatchNorm for every class; a backbone that does not fit (concat widens G's input) is refused."""
    from tests.helpers import bars, blobs, cond_cfg
    src = tmp_path / "uncond"
    Trainer(tiny_cfg(src, **{"log.progress": False}), dataset=blobs(n=64), quiet=True).fit()
    saved = torch.load(src / "checkpoints" / "latest.pt", weights_only=False)["modules"]
    tr = Trainer(cond_cfg(tmp_path / "cond", **{"train.init_from": str(src), "cond.g_method": "cbn"}),
                 dataset=bars(), quiet=True)
    G, D = tr.task.modules["G"].state_dict(), tr.task.modules["D"].state_dict()
    for k, v in saved["D"].items():
        assert torch.equal(D[k], v), k
    assert torch.equal(G["blocks.0.0.weight"], saved["G"]["blocks.0.0.weight"])
    gain, bn_w = G["blocks.0.1.gain.weight"], saved["G"]["blocks.0.1.weight"]
    assert gain.shape[0] == 3 and all(torch.equal(row, bn_w) for row in gain)
    assert torch.equal(G["blocks.0.1.bn.running_var"], saved["G"]["blocks.0.1.running_var"])
    tr.fit()
    with pytest.raises(ConfigError, match="unconditional run's networks do not fit.*g_method=cbn"):
        Trainer(cond_cfg(tmp_path / "c2", **{"train.init_from": str(src), "cond.g_method": "concat"}),
                dataset=bars(), quiet=True)
