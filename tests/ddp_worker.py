"""Run by tests/test_distributed.py under torchrun: train, then save this rank's weights.

    torchrun --nproc_per_node 2 tests/ddp_worker.py OUT_DIR key=value ...
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from ganforge.core import distributed
from ganforge.core.config import Config
from ganforge.training.trainer import Trainer


def main() -> None:
    out = Path(sys.argv[1])
    cfg = Config().with_overrides(dict(kv.split("=", 1) for kv in sys.argv[2:]))
    tr = Trainer(cfg, quiet=True)
    tr.fit()
    out.mkdir(parents=True, exist_ok=True)
    state = {n: {k: v.detach().cpu() for k, v in distributed.unwrap(m).state_dict().items()}
             for n, m in tr.task.modules.items()}
    torch.save(state, out / f"rank{tr.dist.rank}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main()
