"""torchrun + DDP: two gloo processes on 127.0.0.1 against one process on the same global batch.

Each test launches ``python -m torch.distributed.run --nproc_per_node 2`` (torchrun) as a
subprocess, so it exercises the real launcher, the environment variables it sets, the process
group and the CLI entry point (``-m ganforge train``), with 1 thread per process.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.core.checkpoint import load_checkpoint
from ganforge.core.config import Config
from ganforge.training.trainer import Trainer
from tests.helpers import blobs

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args, tmp_path, nproc=2, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"torchrun failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    return res


@pytest.fixture()
def blob_file(tmp_path):
    d = blobs(n=128, size=16)
    path = tmp_path / "blobs.npz"
    np.savez(path, images=d.images.numpy(), labels=d.labels.numpy())
    return path


def overrides(data, out, **extra):
    kv = {"data.name": str(data), "model.g_width": 4, "model.d_width": 4, "model.z_dim": 8,
          "train.batch_size": 16, "train.steps": 6, "log.log_every": 2, "log.sample_every": 3,
          "log.ckpt_every": 3, "log.n_samples": 4, "log.progress": False, "log.tensorboard": False,
          "train.threads": 1, "out": str(out), **extra}
    return [f"{k}={v}" for k, v in kv.items()]


def single_process(data, out, **extra) -> dict:
    cfg = Config().with_overrides(dict(kv.split("=", 1) for kv in overrides(data, out, **extra)))
    Trainer(cfg, quiet=True).fit()
    return load_checkpoint(out)


def assert_close(a: dict, b: dict, atol: float, buffers: bool = True) -> None:
    for net in a:
        for k, v in a[net].items():
            if not buffers and ("running_" in k or "num_batches" in k):
                continue
            if v.is_floating_point():
                diff = (v - b[net][k]).abs().max().item()
                assert diff <= atol, f"{net}.{k} differs by {diff}"


@pytest.mark.parametrize("model,extra", [
    ("mlp", {}),
    ("mlp", {"reg.r1": 1.0, "reg.r1_every": 2, "ema.half_life": 0.1,
             "aug.diffaug": "translation,cutout"}),
    ("resnet", {"train.loss": "hinge", "train.task": "conditional"}),
    # FastGAN's D adds its reconstruction term (reg.d_recon) through decoders that only D's
    # step uses, read from the trunk maps of the DDP-wrapped forward
    ("fastgan", {"train.loss": "hinge", "aug.diffaug": "translation"}),
    ("fastgan", {"train.loss": "hinge", "train.task": "conditional"}),
])
def test_two_processes_agree_and_match_one_process(tmp_path, blob_file, model, extra):
    """The two processes hold identical weights after training. Without BatchNorm (mlp), DDP
    over 2 processes equals 1 process on the same global batch (up to float summation order).
    The resnet G has BatchNorm, whose statistics are per process on CPU (SyncBatchNorm is
    GPU-only), so there only the parameters are compared across processes."""
    bn = model != "mlp"   # resnet and fastgan have BatchNorm
    args = overrides(blob_file, tmp_path / "ddp", **{"model.name": model, **extra})
    torchrun([str(WORKER), str(tmp_path / "ranks"), *args], tmp_path)
    r0 = torch.load(tmp_path / "ranks" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ranks" / "rank1.pt", weights_only=True)
    assert_close(r0, r1, atol=0.0, buffers=not bn)       # the processes agree exactly
    ddp = load_checkpoint(tmp_path / "ddp")
    assert ddp["step"] == 6 and ddp["images_seen"] == 6 * 16     # counted over both processes
    assert_close(ddp["modules"], r0, atol=0.0)           # rank 0 wrote the checkpoint
    if not bn and "aug.diffaug" not in extra:   # augmentation draws per process: agreement only
        one = single_process(blob_file, tmp_path / "one", **{"model.name": model, **extra})
        assert_close(ddp["modules"], one["modules"], atol=2e-4)
    # only rank 0 wrote the log, and its rows are means over both processes
    rows = [json.loads(l) for l in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss_D" in r] == [2, 4, 6]


def test_cli_dcgan_resume_with_another_world_size(tmp_path, blob_file):
    """`torchrun -m ganforge train` with a BatchNorm model, then resumed by one process."""
    out = tmp_path / "run"
    args = overrides(blob_file, out, **{"model.name": "dcgan", "train.steps": 4})
    res = torchrun(["-m", "ganforge", "train", *args], tmp_path)
    assert "global batch 16 = 2 x 8 per process" in res.stderr
    st = load_checkpoint(out)
    assert st["step"] == 4
    assert len(list((out / "samples").glob("step-*.png"))) >= 2
    # a 1-process resume continues the same run (loader state keyed by the global batch)
    cfg = Config().with_overrides(dict(kv.split("=", 1) for kv in overrides(
        blob_file, out, **{"model.name": "dcgan", "train.steps": 6})))
    tr = Trainer(cfg, resume=True, quiet=True)
    assert tr.step_count == 4
    tr.fit()
    assert load_checkpoint(out)["step"] == 6


def test_cyclegan_and_cli_under_torchrun(tmp_path):
    """Every task runs under DDP: the cyclegan task with two domains of blobs."""
    d = blobs(n=64, size=16, channels=1)
    np.save(tmp_path / "a.npy", d.images.numpy()[:32])
    np.save(tmp_path / "b.npy", 255 - d.images.numpy()[32:])
    out = tmp_path / "cg"
    args = ["-m", "ganforge", "train", "--task", "cyclegan",
            f"cyclegan.domain_a={tmp_path / 'a.npy'}", f"cyclegan.domain_b={tmp_path / 'b.npy'}",
            "model.g_width=4", "model.d_width=4", "cyclegan.n_blocks=1", "cyclegan.d_layers=2",
            "train.batch_size=4", "ema.half_life=0.1",
            "train.steps=3", "log.log_every=1", "log.sample_every=3", "log.ckpt_every=3",
            "log.progress=false", "log.tensorboard=false", "train.threads=1", f"out={out}"]
    torchrun(args, tmp_path)
    assert load_checkpoint(out)["step"] == 3


def test_batch_must_split_over_processes(tmp_path, monkeypatch):
    """The global batch must divide by the number of processes (checked before any rendezvous
    would be needed: a world of 3 is faked through the environment)."""
    from ganforge.core import distributed
    from ganforge.core.config import ConfigError
    monkeypatch.setattr(distributed, "setup", lambda device: (distributed.DistInfo(0, 3, 0, 3), None))
    cfg = Config().with_overrides({"train.batch_size": 16, "model.name": "mlp", "out": str(tmp_path)})
    with pytest.raises(ConfigError, match="global batch and must split evenly over the 3 processes; use 15 or 18"):
        Trainer(cfg, dataset=blobs(), quiet=True)
