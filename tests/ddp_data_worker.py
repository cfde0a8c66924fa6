"""Run by tests/test_data_scale.py (and benchmarks/bench_data.py) under torchrun: load the
training data the way the trainer does, draw one epoch of this rank's batches, and write what
the process's memory looked like (JSON) to OUT_DIR/rank<R>.json.

    torchrun --nproc_per_node 2 tests/ddp_data_worker.py OUT_DIR DATA [private] [key=value ...]

``private``: then also read the same cache entry whole into this process (what every rank
held before the cache was memory-mapped), to show what a private copy costs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ganforge.core import distributed
from ganforge.core.config import Config
from ganforge.training.tasks import TASKS


def status() -> dict:
    """VmHWM (peak RSS), VmRSS, RssAnon, RssFile from /proc/self/status, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) * 1024
    return out


def mapping(path: str) -> dict:
    """Rss and Pss (bytes) of this process's mappings of ``path`` (/proc/self/smaps)."""
    rss = pss = 0
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isdigit() or line[:1] in "abcdef" and "-" in line.split()[0]:
            inside = line.rstrip().endswith(path)
        elif inside and line.startswith("Rss:"):
            rss += int(line.split()[1]) * 1024
        elif inside and line.startswith("Pss:"):
            pss += int(line.split()[1]) * 1024
    return {"rss": rss, "pss": pss}


def main() -> None:
    out, data = Path(sys.argv[1]), sys.argv[2]
    private = "private" in sys.argv[3:]
    extra = dict(kv.split("=", 1) for kv in sys.argv[3:] if "=" in kv)
    info, _ = distributed.setup("cpu")
    torch.set_num_threads(1)
    before = status()
    cfg = Config().with_overrides({"data.name": data, "train.batch_size": 64, **extra})
    task = TASKS.get("gan")
    ds = task.load_data(cfg)
    after_load = status()
    loader = task.build_loader(ds, cfg, device=torch.device("cpu"), rank=info.rank,
                               world_size=info.world_size)
    seen, peak_anon = [], after_load["RssAnon"]
    draw = loader.next_indices
    loader.next_indices = lambda: seen.append(draw()) or seen[-1]   # record, then use
    after_first = None
    for _ in range(loader.steps_per_epoch):          # one whole epoch: every image touched
        x, _ = loader.next()
        peak_anon = max(peak_anon, status()["RssAnon"])
        if after_first is None:                       # the batch buffers, allocated once
            after_first = status()
    npy = ""
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(".npy") and "/arrays/" in line:
            npy = line.split()[-1]
    rec = {"rank": info.rank, "world_size": info.world_size, "n": len(ds), "nbytes": ds.nbytes,
           "mapped": ds.mapped, "before": before, "after_load": after_load, "end": status(),
           "after_first": after_first,
           "peak_anon": peak_anon, "npy": npy, "map": mapping(npy) if npy else {},
           "seen": torch.cat(seen).tolist()}
    dist.barrier()
    if private and npy:
        from ganforge.data import cache
        key = Path(npy).stem
        copy = cache.load(key, in_memory=True)
        assert copy is not None and not copy.mapped
        rec["private"] = {"status": status(), "nbytes": copy.nbytes}
        del copy
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{info.rank}.json").write_text(json.dumps(rec))
    dist.barrier()
    distributed.shutdown()


if __name__ == "__main__":
    main()
