"""Training curves: the rows of a run's metrics log (:func:`ganforge.core.runfolder.read_rows`)
as one PNG of stacked panels against step."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Sequence


def plot_curves(rows: Sequence[Dict[str, Any]], out_path: str | Path,
                groups: Dict[str, List[str]] | None = None) -> bool:
    """Plot the losses (``loss_*``), D(x)/D(G(z)), and FID, KID and the high-frequency ratio
    when logged (or the given ``groups``: panel title -> keys) against ``step``, written
    atomically to ``out_path``. Returns False when there is nothing to plot yet."""
    rows = [r for r in rows if "step" in r]
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
