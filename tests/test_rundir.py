"""A run folder holds one run: refusal, --overwrite, --resume with changed settings, an
unwritable --out, a torn metrics log, and a guard that never rolls back into another run."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from ganforge.cli import main
from ganforge.core.checkpoint import load_checkpoint, save_checkpoint
from ganforge.core.config import ConfigError
from ganforge.training import claim
from ganforge.training.trainer import Trainer
from tests.helpers import blobs, tiny_cfg


def _npz(tmp_path):
    x = blobs().images
    path = tmp_path / "blobs.npz"
    import numpy as np
    np.savez(path, images=x.numpy())
    return path


def _train(data, out, *extra):
    return main(["train", "--data", str(data), "--model", "mlp", "--batch-size", "8",
                 "--out", str(out), "model.g_width=8", "model.d_width=8", "model.z_dim=4",
                 "log.progress=false", "log.tensorboard=false", "log.log_every=2",
                 "log.ckpt_every=2", *extra])


def _snapshot(run):
    files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    return files, (run / "metrics.jsonl").read_bytes(), (run / "config.yaml").read_bytes(), \
        (run / "checkpoints" / "latest.pt").read_bytes()


def test_second_run_into_a_run_folder_is_refused_and_loses_nothing(tmp_path, capsys):
    data, run = _npz(tmp_path), tmp_path / "run"
    assert _train(data, run, "--steps", "4") == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert _train(data, run, "--steps", "6", "--seed", "3") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds a run (step 4)" in err
    assert "--resume" in err and "--overwrite" in err
    assert _snapshot(run) == before


def test_overwrite_starts_over_and_resume_overwrite_is_refused(tmp_path, capsys):
    data, run = _npz(tmp_path), tmp_path / "run"
    assert _train(data, run, "--steps", "4") == 0
    (run / "notes.txt").write_text("mine")            # not a ganforge output: kept
    assert _train(data, run, "--steps", "2", "--overwrite") == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 2 and load_checkpoint(run)["step"] == 2
    assert not (run / "checkpoints" / "step-000000004.pt").exists()
    assert (run / "notes.txt").read_text() == "mine"
    capsys.readouterr()
    assert _train(data, run, "--steps", "4", "--resume", "--overwrite") == 2
    assert "give one" in capsys.readouterr().err


def test_resume_with_changed_network_settings_names_the_keys(tmp_path, capsys):
    data, run = _npz(tmp_path), tmp_path / "run"
    assert _train(data, run, "--steps", "2") == 0
    before = _snapshot(run)
    capsys.readouterr()
    assert _train(data, run, "--steps", "4", "--resume", "model.g_width=16", "train.lr_d=1e-3") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "size mismatch" not in err
    assert "model.g_width: 8 -> 16" in err and "train.lr_d: 0.0002 -> 0.001" in err
    assert _snapshot(run) == before


def test_resume_with_allowed_changes_records_them(tmp_path):
    data, run = _npz(tmp_path), tmp_path / "run"
    assert _train(data, run, "--steps", "2") == 0
    assert _train(data, run, "--steps", "4", "--resume", "log.log_every=1") == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    changed = [r for r in rows if r.get("resumed")]
    assert len(changed) == 1 and changed[0]["step"] == 2
    assert changed[0]["changed"]["train.steps"] == [2, 4]
    assert changed[0]["changed"]["log.log_every"] == [2, 1]
    assert load_checkpoint(run)["step"] == 4


def test_config_changes_split_by_the_resumable_list():
    allowed, refused = claim.config_changes(
        {"train": {"steps": 1, "lr_g": 1.0}, "log": {"gif": True}, "model": {"name": "dcgan"}},
        {"train": {"steps": 2, "lr_g": 2.0}, "log": {"gif": False}, "model": {"name": "dcgan"},
         "new_section": {"x": 1}})
    assert allowed == {"train.steps": (1, 2), "log.gif": (True, False)}
    assert refused == {"train.lr_g": (1.0, 2.0)}
    with pytest.raises(ConfigError, match="train.lr_g"):
        claim.check_resume_config({"train": {"lr_g": 1.0}}, {"train": {"lr_g": 2.0}}, "run")


def test_unwritable_out_is_refused_before_any_work(tmp_path, capsys):
    data = _npz(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert _train(data, blocker / "run", "--steps", "1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write there" in err and "a-file" in err
    if os.geteuid() != 0:                      # root ignores file modes
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        assert _train(data, ro / "run", "--steps", "1") == 2


def test_torn_metrics_line_is_repaired_on_resume(tmp_path):
    data, run = _npz(tmp_path), tmp_path / "run"
    assert _train(data, run, "--steps", "4", "log.ckpt_every=2") == 0
    # a crash after the step-4 checkpoint, mid-row: the log has a step past the checkpoint
    # (the last checkpoint is step 4) and a torn line
    shutil.copy(run / "checkpoints" / "step-000000002.pt", run / "checkpoints" / "latest.pt")
    (run / "checkpoints" / "step-000000004.pt").unlink()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss_D": 1.0')
    assert _train(data, run, "--steps", "4", "--resume") == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss_D" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 4


def test_foreign_checkpoint_is_not_a_rollback_target(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path), dataset=blobs(), quiet=True)
    other = Trainer(tiny_cfg(tmp_path / "other"), dataset=blobs(), quiet=True)
    for p in other.task.modules["G"].parameters():
        p.data.fill_(0.123)
    stranger = other.state_dict()
    stranger["step"] = 3
    orig = tr.task.loss

    def loss(phase, batch, **kw):
        value, logs = orig(phase, batch, **kw)
        if phase == "D" and tr.step_count == 5 and not getattr(loss, "done", False):
            loss.done = True
            save_checkpoint(stranger, tmp_path, 3, keep_last=10)   # appears mid-run
            value = value * float("nan")
            logs = {**logs, "loss_D": value.detach()}
        return value, logs
    tr.task.loss = loss
    tr.fit()
    g = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["modules"]["G"]
    assert not any(torch.all(v == 0.123) for v in g.values() if v.is_floating_point())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    back = [r for r in rows if "rollback" in r]
    assert len(back) == 1 and back[0]["step"] == 4       # this run's step-4 checkpoint
