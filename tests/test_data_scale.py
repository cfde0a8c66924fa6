"""The data path at scale: two torchrun (gloo) processes train from one memory-mapped cache
entry and neither holds a private copy of the data; DCGAN and ResNet at 128 and 256 px.

The torchrun test decodes a ~98 MB synthetic dataset (8,000 RGB images at 64 px) once into
the cache, then each rank loads it the way the trainer does and draws a whole epoch of its
batches (every image touched). Per process, the anonymous (private) memory must not grow by
anything like the data's size, and the file's pages are shared: the two processes'
proportional share (Pss) of the mapping adds up to about one copy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_distributed import torchrun

WORKER = Path(__file__).with_name("ddp_data_worker.py")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_two_processes_share_one_mapped_copy(tmp_path, monkeypatch):
    n, size = 8000, 64
    data = tmp_path / "big.npy"
    rng = np.random.default_rng(0)
    np.save(data, rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))
    nbytes = n * 3 * size * size
    cache = tmp_path / "cache"
    monkeypatch.setenv("GANFORGE_CACHE", str(cache))
    monkeypatch.delenv("GANFORGE_IN_MEMORY_MB", raising=False)
    from ganforge.data import load_dataset
    ds = load_dataset(str(data))                       # build the cache entry once
    assert ds.mapped and ds.nbytes == nbytes
    del ds                                            # the ranks find the entry by its key
    res = torchrun([str(WORKER), str(tmp_path / "out"), str(data), "private"], tmp_path,
                   timeout=300)
    recs = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    mib = lambda b: f"{b / 2**20:.0f} MiB"  # noqa: E731
    for r in recs:
        assert r["mapped"] and r["nbytes"] == nbytes and r["npy"], res.stdout
        grew = r["peak_anon"] - r["before"]["RssAnon"]
        print(f"\nrank {r['rank']}: data {mib(nbytes)}; private memory grew {mib(grew)} "
              f"(peak RssAnon), peak RSS {mib(r['end']['VmHWM'])} of which the shared map "
              f"{mib(r['map']['rss'])} (its Pss {mib(r['map']['pss'])}); a private copy "
              f"would add {mib(r['private']['status']['RssAnon'] - r['end']['RssAnon'])}")
        assert grew < 0.5 * nbytes, r          # batches, allocator slack: not a copy
        assert r["map"]["rss"] > 0.9 * nbytes            # it did read every image ...
        # ... and the private copy the test makes at the end is visible to this measure
        assert r["private"]["status"]["RssAnon"] - r["end"]["RssAnon"] > 0.9 * nbytes
    assert sum(r["map"]["pss"] for r in recs) <= 1.2 * nbytes
    # the shared permutation, each rank its own slice: disjoint, and together whole batches
    a, b = set(recs[0]["seen"]), set(recs[1]["seen"])
    assert not a & b and len(a | b) == (n // 128) * 128


# --------------------------------------------------------------------------- 128 and 256 px
@pytest.mark.parametrize("preset", ["dcgan-128-folder", "dcgan-256-folder", "resnet-128-folder",
                                    "resnet-256-folder", "r3gan-128-folder", "r3gan-256-folder"])
def test_high_resolution_presets_train_one_step(tmp_path, monkeypatch, preset):
    """Each 128/256 px preset, at tiny widths, on 8 random RGB images at its size: one step."""
    from ganforge.core.config import load_config, preset_names
    from ganforge.training.trainer import Trainer
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    assert preset in preset_names()
    size = int(preset.split("-")[1])
    cfg0 = load_config(preset)
    assert cfg0.data.img_size == size and cfg0.data.channels == 3
    from ganforge import models
    m = cfg0.model
    G = models.build("G", m.name, img_size=size, channels=3, z_dim=m.z_dim, width=m.g_width)
    widest = max(getattr(mod, "out_channels", 0) for mod in G.modules())
    if m.name == "r3gan":     # 2x expanded channels inside its residual blocks
        assert widest == 2 * 8 * m.g_width <= 512
    else:
        assert widest == 512 == m.g_width * 2 ** (size.bit_length() - 4)   # widest layer: 512
    data = tmp_path / "d.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8))
    cfg = load_config(preset, {"data.name": str(data), "model.g_width": 2, "model.d_width": 2,
                               "model.z_dim": 8, "train.batch_size": 4, "train.steps": 1,
                               "train.epochs": 0, "log.progress": False,
                               "log.tensorboard": False, "log.n_samples": 4,
                               "train.threads": 1, "out": str(tmp_path / "run")})
    tr = Trainer(cfg, quiet=True)
    tr.fit()
    g = tr.task.ema_or("G")
    with torch.no_grad():
        x = g(torch.randn(2, 8))
    assert x.shape == (2, 3, size, size) and torch.isfinite(x).all()
