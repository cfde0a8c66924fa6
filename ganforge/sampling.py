"""Rebuild a generator from a checkpoint alone and sample from it (`ganforge sample`)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ganforge import models
from ganforge.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from ganforge.report.images import save_grid


def load_generator(run_or_ckpt: str | Path, which: str = "latest", device: str = "cpu",
                   ema: bool = True) -> Tuple[torch.nn.Module, dict]:
    """The run's generator: its weight average ``G_ema`` when the run kept one (ema.half_life)
    and ``ema`` is true (the default: ``--no-ema`` asks for the raw G), else G."""
    path = find_checkpoint(run_or_ckpt, which)
    st = load_checkpoint(path, map_location=device)
    if "specs" not in st or "G" not in st["specs"]:
        if st.get("task") == "cyclegan":
            raise CheckpointError(f"'{path}' is a cyclegan run: it translates images rather than "
                                  f"sampling from noise; use `ganforge translate {run_or_ckpt} "
                                  f"--direction a2b INPUT --out DIR`")
        raise CheckpointError(f"'{path}' holds no generator (keys: {', '.join(st)})")
    name = "G_ema" if ema and "G_ema" in st["modules"] else "G"
    G = models.from_spec(st["specs"]["G"])
    G.load_state_dict(st["modules"][name])
    G.to(device).eval()
    return G, st


@torch.no_grad()
def generate(G: torch.nn.Module, n: int, seed: int = 0, batch_size: int = 256, device: str = "cpu",
             labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``n`` images from ``G``; ``labels`` (n,) are the classes for a conditional G."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        z = torch.randn(m, G.z_dim, generator=g).to(device)
        x = G(z) if labels is None else G(z, labels[i:i + m].to(device))
        out.append(x.float().clamp(-1, 1).cpu())
    return torch.cat(out) if out else torch.empty(0)


def sample_to_file(run: str | Path, n: int = 64, out: str | Path = "samples.png", seed: int = 0,
                   which: str = "latest", device: str = "cpu", class_: Optional[str] = None,
                   ema: bool = True) -> Path:
    """Write ``n`` samples as a grid image or a ``.npy`` array. ``class_`` (conditional runs
    only): a class name or index, or ``all`` for one labelled row per class; see
    :func:`sample_conditional`."""
    if n <= 0:
        raise CheckpointError(f"--n {n}: ask for at least one image")
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg", ".npy"):
        raise CheckpointError(f"--out '{out}': use a .png/.jpg file for a grid or .npy for an array")
    G, st = load_generator(run, which, device, ema=ema)
    if getattr(G, "n_classes", 0):      # a class-conditional generator (--task conditional)
        return sample_conditional(G, st, n=n, out=out, seed=seed, device=device, class_=class_)
    if class_ is not None:
        raise CheckpointError(f"--class {class_}: '{run}' holds an unconditional generator, which "
                              f"cannot be asked for a class; train one with --task conditional")
    x = generate(G, n, seed=seed, device=device)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(out, x.numpy().astype(np.float32))
    else:
        save_grid(x, out, scale=2 if x.shape[-1] <= 32 else 1)
    return out


# ----------------------------------------------------------------------------- conditional runs
def labels_path(out: str | Path) -> Path:
    """``NAME.npy`` -> ``NAME.labels.npy``: the class of each image in the array."""
    out = Path(out)
    return out.with_name(out.stem + ".labels.npy")


def sample_conditional(G: torch.nn.Module, st: dict, *, n: int, out: Path, seed: int = 0,
                       device: str = "cpu", class_: Optional[str] = None) -> Path:
    """Samples from a class-conditional generator.

    ``class_``: a name (any case; '-', '_', ' ', '/' alike) or index -> ``n`` images of that
    class; ``all`` -> one row per class, ceil(n / K) images each, class names at the left of
    the rows; None -> classes drawn as G's training labels were (``label_probs``). A ``.npy``
    output gets ``NAME.labels.npy`` next to it.
    """
    from ganforge.data.classes import resolve_class
    from ganforge.report.class_grid import save_class_grid
    k = int(G.n_classes)
    names = list(st.get("data", {}).get("class_names") or [str(i) for i in range(k)])
    cols = None
    if class_ is None:
        prior = st.get("task_state", {}).get("label_probs")   # G's training label distribution
        probs = prior.double() if prior is not None and prior.sum() > 0 else torch.ones(k, dtype=torch.float64)
        labels = torch.multinomial(probs / probs.sum(), n, replacement=True,
                                   generator=torch.Generator().manual_seed(seed + 1))
    elif str(class_).strip().lower() == "all":
        cols = math.ceil(n / k)
        labels = torch.arange(k).repeat_interleave(cols)
    else:
        labels = torch.full((n,), resolve_class(class_, names), dtype=torch.int64)
    x = generate(G, len(labels), seed=seed, device=device, labels=labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    scale = 2 if x.shape[-1] <= 32 else 1
    if out.suffix.lower() == ".npy":
        np.save(out, x.numpy().astype(np.float32))
        np.save(labels_path(out), labels.numpy().astype(np.int64))
    elif cols is not None:
        save_class_grid(x, cols, names, out, scale=scale)
    else:
        save_grid(x, out, scale=scale)
    return out
