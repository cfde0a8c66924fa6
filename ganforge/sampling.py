"""Rebuild a generator from a checkpoint alone and sample from it (`ganforge sample`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ganforge import models
from ganforge.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from ganforge.report.images import save_grid


def load_generator(run_or_ckpt: str | Path, which: str = "latest", device: str = "cpu") -> Tuple[torch.nn.Module, dict]:
    path = find_checkpoint(run_or_ckpt, which)
    st = load_checkpoint(path, map_location=device)
    if "specs" not in st or "G" not in st["specs"]:
        raise CheckpointError(f"'{path}' holds no generator (keys: {', '.join(st)})")
    name = "G_ema" if "G_ema" in st["modules"] else "G"
    G = models.from_spec(st["specs"]["G"])
    G.load_state_dict(st["modules"][name])
    G.to(device).eval()
    return G, st


@torch.no_grad()
def generate(G: torch.nn.Module, n: int, seed: int = 0, batch_size: int = 256, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        z = torch.randn(m, G.z_dim, generator=g).to(device)
        out.append(G(z).float().clamp(-1, 1).cpu())
    return torch.cat(out) if out else torch.empty(0)


def sample_to_file(run: str | Path, n: int = 64, out: str | Path = "samples.png", seed: int = 0,
                   which: str = "latest", device: str = "cpu") -> Path:
    if n <= 0:
        raise CheckpointError(f"--n {n}: ask for at least one image")
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg", ".npy"):
        raise CheckpointError(f"--out '{out}': use a .png/.jpg file for a grid or .npy for an array")
    G, _ = load_generator(run, which, device)
    x = generate(G, n, seed=seed, device=device)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(out, x.numpy().astype(np.float32))
    else:
        save_grid(x, out, scale=2 if x.shape[-1] <= 32 else 1)
    return out
