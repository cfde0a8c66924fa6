"""Colour quality at 64 px on small data, measured: the emoji presets before and after, and the
few-shot regime (a 100-image colour folder).

Run by hand on an idle machine (never part of the test suite), one run after another::

    .venv/bin/python benchmarks/bench_emoji.py dcgan-emoji dcgan-resize-emoji fastgan-emoji \\
        --few-shot fastgan-emoji --out benchmarks/results/emoji

Needs the emoji domain evaluator (``ganforge evaluator train --data emoji --epochs 40
--shift 6``; flips are on for emoji by default).

1. Every preset trains with ``ganforge train --config PRESET`` into ``<root>/<preset>`` (an
   existing finished run is scored again, not retrained).
2. ``--few-shot PRESET``: 100 emoji (a fixed, seeded spread over all glyphs) are written as
   PNG files into ``<root>/emoji-100/``, and ``ganforge train --config PRESET --data
   <root>/emoji-100`` trains on that folder, as a user's own folder would.
3. Each run's EMA generator: ``--n`` samples scored against all emoji glyphs (the full set, for
   the few-shot run too) with the emoji domain evaluator: FID, KID, precision, recall,
   density, coverage, and the high-frequency artefact ratio (1.0 = the real images' share of
   spectral energy at the highest frequencies; ``ganforge eval``'s ``hf_ratio``). Wall minutes
   of training are the run's own ``elapsed``. A run that kept ``checkpoints/best.pt``
   (``--eval-every``) is scored there too.
4. An 8x8 grid of each run's samples (seed 0) goes to ``<out>-<run>.png``, its training GIF
   to ``<out>-<run>.gif``.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from results_io import md_table, save

import ganforge
from ganforge.data import load_dataset
from ganforge.metrics import scoring
from ganforge.render.images import save_grid

COLS = [("fid", "FID", 1), ("kid_mean", "KID", 2), ("precision", "precision", 3),
        ("recall", "recall", 3), ("density", "density", 3), ("coverage", "coverage", 3),
        ("hf_ratio", "artefact ratio", 2), ("minutes", "train min", 1)]


def write_folder(root: Path, n: int, seed: int) -> Path:
    """``n`` emoji as PNG files (a seeded spread over the whole set), once."""
    folder = root / f"emoji-{n}"
    if folder.exists() and len(list(folder.glob("*.png"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("emoji", img_size=64, channels=3)
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    for i in idx:
        Image.fromarray(ds.images[int(i)].permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return folder


def train(preset: str, out: Path, extra: list[str]) -> None:
    if (out / "checkpoints" / "latest.pt").exists():
        return
    cmd = [sys.executable, "-m", "ganforge", "train", "--config", preset, "--out", str(out),
           "--overwrite", "log.progress=false", *extra]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def score(run: Path, n: int, ckpt: str = "latest.pt") -> dict:
    ex = scoring.get_extractor("domain", data_spec="emoji", img_size=64)
    real = scoring.real_features(ex, "emoji", "train", img_size=64, channels=3)
    g = ganforge.load(run / "checkpoints" / ckpt)
    x = g.sample(n, seed=0)
    res = scoring.score_images((x[i:i + 500] for i in range(0, len(x), 500)), ex, real,
                               metrics=("fid", "kid", "pr", "dc", "hf"))
    st = torch.load(run / "checkpoints" / ckpt, map_location="cpu", weights_only=False)
    res["minutes"] = float(st.get("elapsed", 0)) / 60
    res["steps"] = int(st.get("step", 0))
    return res


def real_row(n: int) -> dict:
    """The real glyphs against themselves (the floor of every column)."""
    ex = scoring.get_extractor("domain", data_spec="emoji", img_size=64)
    real = scoring.real_features(ex, "emoji", "train", img_size=64, channels=3)
    ds = load_dataset("emoji", img_size=64, channels=3)
    x = ds.images.float() / 127.5 - 1
    return scoring.score_images((x[i:i + 500] for i in range(0, len(x), 500)), ex, real,
                                metrics=("fid", "kid", "pr", "dc", "hf"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("presets", nargs="*",
                    default=["dcgan-emoji", "dcgan-resize-emoji", "fastgan-emoji"])
    ap.add_argument("--few-shot", default="", help="preset for the 100-image folder run")
    ap.add_argument("--few-n", type=int, default=100)
    ap.add_argument("--n", type=int, default=10000, help="samples per score")
    ap.add_argument("--root", default="runs/bench-emoji")
    ap.add_argument("--set", nargs="*", default=[], help="key=value for every run")
    ap.add_argument("--out")
    args = ap.parse_args()
    root = Path(args.root)
    jobs = [(p, p, root / p, args.set) for p in args.presets]
    if args.few_shot:
        folder = write_folder(root, args.few_n, seed=0)
        jobs.append((f"{args.few_shot}, {args.few_n}-image folder", args.few_shot,
                     root / f"{args.few_shot}-{args.few_n}", ["--data", str(folder), *args.set]))
    rows = []
    for label, preset, out, extra in jobs:
        train(preset, out, extra)
        r = score(out, args.n)
        r["run"] = label
        rows.append(r)
        print({k: r.get(k) for k in ["run"] + [c for c, _, _ in COLS]}, flush=True)
        if (out / "checkpoints" / "best.pt").exists():   # kept by --eval-every: the best FID seen
            b = score(out, args.n, "best.pt")
            if b["steps"] != r["steps"]:
                b["run"] = f"{label} (best.pt)"
                rows.append(b)
                if args.out:
                    save_grid(ganforge.load(out / "checkpoints" / "best.pt").sample(64, seed=0),
                              f"{args.out}-{out.name}-best.png", nrow=8)
                print({k: b.get(k) for k in ["run"] + [c for c, _, _ in COLS]}, flush=True)
        if args.out:
            tag = out.name
            save_grid(ganforge.load(out).sample(64, seed=0), f"{args.out}-{tag}.png", nrow=8)
            if (out / "training.gif").exists():
                shutil.copy(out / "training.gif", f"{args.out}-{tag}.gif")
    real = real_row(args.n)
    real["run"] = "real glyphs vs themselves"
    rows.append(real)
    lines = [f"`python benchmarks/bench_emoji.py {' '.join(args.presets)}"
             + (f" --few-shot {args.few_shot}" if args.few_shot else "") + "`", "",
             f"{args.n} samples of each run's EMA G vs all {len(load_dataset('emoji'))} emoji "
             f"glyphs, emoji domain evaluator at 64 px; artefact ratio: generated / real share of "
             f"spectral energy in the highest frequencies (1.0 = real)", "",
             *md_table(("run", "steps"), COLS, rows)]
    save("\n".join(lines), rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
