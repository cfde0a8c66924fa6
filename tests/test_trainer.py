"""Trainer: determinism, exact resume, phases, run folder, checkpoints, interruption."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ganforge.core.checkpoint import CheckpointError, load_checkpoint
from ganforge.core.config import ConfigError
from ganforge.training.trainer import Trainer
from tests.helpers import assert_resume_exact, assert_same_state, blobs, tiny_cfg


def weights(run_dir):
    st = load_checkpoint(run_dir)
    return st["modules"]


@pytest.mark.parametrize("model,d_steps,decay", [("dcgan", 1, "none"), ("mlp", 2, "none"), ("dcgan", 2, "linear")])
def test_resume_is_exact(tmp_path, model, d_steps, decay):
    """2N steps in one go == N steps, a new process-like Trainer, N more (bit for bit, CPU).

    Plain: train to N, later raise the target to 2N; with an lr schedule (which depends on the
    total) a 2N run is stopped at N instead."""
    ds = blobs()
    over = {"model.name": model, "train.d_steps": d_steps, "train.lr_decay": decay}

    def make(out, steps, resume=False):
        return Trainer(tiny_cfg(out, **over, **{"train.steps": steps}), dataset=ds, quiet=True,
                       resume=resume)
    a, _, _ = assert_resume_exact(make, tmp_path, steps=12, stop=6, extend=decay == "none")
    assert {"pos", "epoch"} <= set(a["loader"]) and all(a["optimizers"][n]["state"] for n in a["optimizers"])


def test_seed_repeatable_and_seed_matters(tmp_path):
    ds = blobs()
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        Trainer(tiny_cfg(tmp_path / name, **{"train.seed": seed}), dataset=ds, quiet=True).fit()
    assert_same_state(weights(tmp_path / "a"), weights(tmp_path / "b"))
    wa, wc = weights(tmp_path / "a"), weights(tmp_path / "c")
    assert not torch.equal(wa["G"]["blocks.0.0.weight"], wc["G"]["blocks.0.0.weight"])


def test_k_discriminator_steps(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, **{"train.d_steps": 3, "train.steps": 4}), dataset=blobs(), quiet=True)
    tr.fit()
    d_state = tr.optimizers["D"].state_dict()["state"]
    g_state = tr.optimizers["G"].state_dict()["state"]
    assert float(d_state[0]["step"]) == 12 and float(g_state[0]["step"]) == 4
    # three fresh real batches per step
    assert tr.images_seen == 4 * 3 * 16


def test_g_phase_leaves_d_untouched(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path), dataset=blobs(), quiet=True)
    tr.step()
    # After a full step D's grads come only from its own phase; run a G phase alone and check
    # D's parameters received no gradient.
    for p in tr.task.D.parameters():
        p.grad = None
    batch = tr.loader.next()
    loss, _ = tr.task.loss("G", batch)
    loss.backward(inputs=tr.params["G"])
    assert all(p.grad is None for p in tr.task.D.parameters())
    assert any(p.grad is not None for p in tr.task.G.parameters())


def test_run_folder_contents(tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, **{"train.steps": 12, "log.keep_last": 2}), dataset=blobs(), quiet=True).fit()
    assert (run / "config.yaml").exists()
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    for key in ("loss_D", "loss_G", "D(x)", "D(G(z))", "images_per_sec", "epoch", "lr_D", "lr_G"):
        assert key in rows[-1]
    assert 0 <= rows[-1]["D(x)"] <= 1
    samples = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert samples == ["step-0000000.png", "step-0000004.png", "step-0000008.png", "step-0000012.png"]
    assert (run / "training.gif").stat().st_size > 0
    assert (run / "curves.png").stat().st_size > 0
    ck = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ck == ["latest.pt", "step-000000008.pt", "step-000000012.pt"]
    st = load_checkpoint(run)
    for key in ("modules", "optimizers", "step", "epoch", "rng", "config", "version", "specs", "loader"):
        assert key in st
    from PIL import Image
    gif = Image.open(run / "training.gif")
    assert gif.n_frames == 4


def test_each_phase_logs_its_own_learning_rate(tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, **{"train.steps": 4, "train.lr_g": 1e-4, "train.lr_d": 4e-4}),
            dataset=blobs(), quiet=True).fit()
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["lr_G"] == pytest.approx(1e-4) and row["lr_D"] == pytest.approx(4e-4)
    assert "lr" not in row


def test_lr_decay_linear_to_zero(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, **{"train.lr_decay": "linear", "train.lr_decay_start": 0.5}),
                 dataset=blobs(), quiet=True)
    tr.fit()
    assert tr.optimizers["G"].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_epochs_translate_to_steps(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, **{"train.steps": 0, "train.epochs": 1.0}), dataset=blobs(n=160), quiet=True)
    assert tr.total_steps == 10


def test_amp_and_compile_flags_harmless_on_cpu(tmp_path):
    from ganforge.training.runtime import cpu_has_bf16
    tr = Trainer(tiny_cfg(tmp_path, **{"train.amp": "bf16", "train.compile": True, "train.steps": 4,
                                       "train.channels_last": True}), dataset=blobs(), quiet=True)
    tr.fit()
    # bf16 autocast is used on CPUs with native bf16 and ignored elsewhere; either way training
    # runs and the weights stay float32.
    assert tr.amp_dtype == (torch.bfloat16 if cpu_has_bf16() else None)
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(abs(r["loss_D"]) < 1e3 and abs(r["loss_G"]) < 1e3 for r in rows)
    assert all(p.dtype == torch.float32 for p in tr.task.G.parameters())
    tr2 = Trainer(tiny_cfg(tmp_path / "fp16", **{"train.amp": "fp16", "train.steps": 1}), dataset=blobs(), quiet=True)
    assert tr2.amp_dtype is None   # fp16 autocast is a CUDA feature here


def test_gpu_defaults_resolve_to_plain_fp32_on_cpu(tmp_path):
    """train.amp=auto and train.compile=auto (the defaults) mean bf16 + compile on CUDA and
    plain float32, uncompiled, on a CPU; unknown values are refused, naming the key."""
    tr = Trainer(tiny_cfg(tmp_path), dataset=blobs(), quiet=True)
    assert tr.cfg.train.amp == "auto" and tr.cfg.train.compile == "auto"
    assert tr.amp_dtype is None and not tr._train_modules and not tr.scalers
    for key, bad in (("train.amp", "fp8"), ("train.compile", "maybe")):
        with pytest.raises(ConfigError, match=key):
            Trainer(tiny_cfg(tmp_path / key, **{key: bad}), dataset=blobs(), quiet=True)


def test_batch_larger_than_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="batch size 16.*8 images.*--batch-size 8"):
        Trainer(tiny_cfg(tmp_path), dataset=blobs(n=8), quiet=True)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ganforge-pwned",))


def test_checkpoint_loading_never_runs_code(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, p)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(p)
    assert not os.path.exists("/tmp/ganforge-pwned")


def test_sigterm_saves_checkpoint_and_resume_continues(tmp_path):
    """A real process: SIGTERM mid-run saves a checkpoint; --resume finishes the run."""
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    from PIL import Image
    x = blobs(n=64).images
    for i in range(64):
        Image.fromarray(x[i, 0].numpy()).save(img_dir / f"{i}.png")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "ganforge", "train", "--data", str(img_dir), "--model", "mlp",
           "--steps", "100000", "--batch-size", "8", "--out", str(run), "model.g_width=8",
           "model.d_width=8", "log.ckpt_every=1000000", "log.sample_every=1000000", "log.progress=false"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.2)
    assert (run / "metrics.jsonl").exists(), proc.stderr.read() if proc.poll() is not None else "no progress"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err
    st = load_checkpoint(run)
    stopped = st["step"]
    assert stopped > 0
    # The resumed run needs no flags but the new target: the run folder has its config.
    r = subprocess.run([sys.executable, "-m", "ganforge", "train", "--out", str(run), "--resume",
                        "--steps", str(stopped + 5)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr
    assert load_checkpoint(run)["step"] == stopped + 5


# 0 = off for the output intervals: sample grids only at the start and the end, a checkpoint only
# at the end (or when the session stops early), no evaluation. Run: 6 steps, a log row every 2.
ZERO_OFF = {
    "log.sample_every": (["step-0000000.png", "step-0000006.png"],
                         ["latest.pt", "step-000000004.pt", "step-000000006.pt"]),
    "log.ckpt_every": (["step-0000000.png", "step-0000004.png", "step-0000006.png"],
                       ["latest.pt", "step-000000006.pt"]),
    "eval.every": (["step-0000000.png", "step-0000004.png", "step-0000006.png"],
                   ["latest.pt", "step-000000004.pt", "step-000000006.pt"]),
}


@pytest.mark.parametrize("key", sorted(ZERO_OFF))
def test_zero_interval_means_off(tmp_path, key):
    run = tmp_path / "run"
    summary = Trainer(tiny_cfg(run, **{key: 0, "train.steps": 6}), dataset=blobs(), quiet=True).fit()
    assert summary["steps"] == 6 and "interrupted" not in summary
    samples, ckpts = ZERO_OFF[key]
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == samples
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ckpts
    assert load_checkpoint(run)["step"] == 6
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6] and not any("fid" in r for r in rows)
    assert (run / "training.gif").stat().st_size > 0 and (run / "curves.png").stat().st_size > 0


def test_ckpt_every_zero_still_saves_when_stopped_early(tmp_path):
    """log.ckpt_every=0: a session that stops early (as on an interruption) saves on the way out,
    and a resumed run continues from there."""
    run = tmp_path / "run"
    over = {"log.ckpt_every": 0, "train.steps": 6}
    Trainer(tiny_cfg(run, **over), dataset=blobs(), quiet=True).fit(stop_at=3)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.pt", "step-000000003.pt"]
    tr = Trainer(tiny_cfg(run, **over), dataset=blobs(), quiet=True, resume=True)
    assert tr.step_count == 3
    tr.fit()
    assert load_checkpoint(run)["step"] == 6
