"""Training curves from the JSON-lines metrics log."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List


def read_metrics(path: str | Path) -> List[Dict]:
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue   # a line cut by a crash must not break plotting
    return rows


def plot_curves(metrics_path: str | Path, out_path: str | Path,
                groups: Dict[str, List[str]] | None = None) -> bool:
    """Plot loss_D/loss_G and D(x)/D(G(z)) (or the given groups) against step. Returns False
    when there is nothing to plot yet."""
    rows = [r for r in read_metrics(metrics_path) if "step" in r]
    if not rows:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if groups is None:
        keys = {k for r in rows for k in r}
        groups = {"losses": sorted(k for k in keys if k.startswith("loss_")),
                  "discriminator output": [k for k in ("D(x)", "D(G(z))") if k in keys]}
        if "fid" in keys:
            groups["FID (lower is better)"] = ["fid"]
        if "kid_mean" in keys:
            groups["KID (lower is better)"] = ["kid_mean"]
        if "hf_ratio" in keys:       # ganforge/metrics/frequency.py
            groups["high-frequency artefact ratio (1 = like the real data)"] = ["hf_ratio"]
    groups = {k: v for k, v in groups.items() if v}
    if not groups:        # e.g. only rollback rows so far: nothing to draw yet
        return False
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.8 * len(groups)), sharex=True, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], groups.items()):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if k in r and r[k] is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=k, linewidth=1.2)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out_path)
    return True
