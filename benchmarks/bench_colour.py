"""Colour pictures people recognise, measured: presets on the ``avatars`` faces and the
``wesnoth`` sprites at 64 (or 32) px, each given the same wall-clock minutes.

Run by hand on an idle machine (never part of the test suite), one run after another::

    .venv/bin/python benchmarks/bench_colour.py --data avatars --minutes 15 \\
        --run tutorial=dcgan-avatars --run best=dcgan-hinge-avatars --seeds 0,1,2 \\
        --out benchmarks/results/colour/avatars-64

Needs each dataset's domain evaluator at the run's size (``ganforge evaluator train --data
avatars`` / ``--data wesnoth``, and ``--img-size 32`` for the 32 px presets).

1. Every ``--run NAME=PRESET[,key=value...]`` trains with ``ganforge train --config PRESET``
   (``-``: no preset, the defaults) for
   ``--minutes`` of wall-clock time (``train.time_limit``; the preset's own length is lifted),
   once per seed, into ``<root>/<data>-<NAME>-s<SEED>``, keeping a checkpoint every
   ``--curve-every`` steps (an existing finished run is scored again, not retrained).
2. Its last checkpoint's EMA generator: ``--n`` samples scored against the real training
   images with the dataset's domain evaluator (FID, KID, precision, recall, density, coverage,
   the high-frequency artefact ratio); a conditional run also: the share of samples the
   evaluator puts in the class asked for (``n-per-class`` per class).
3. The curve: every kept checkpoint scored with ``--curve-n`` samples (FID against minutes).
``--train-data`` trains the runs on something else than ``--data`` (a folder of the same
images: how ``train --data FOLDER`` with its defaults does) and still scores against ``--data``.

4. An 8x8 grid (seed 0) of each run of the first seed to ``<out>-<NAME>.png`` and its training
   GIF to ``<out>-<NAME>.gif``; the table to ``<out>.md`` and ``<out>.json``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from results_io import md_table, save

import ganforge
from ganforge.core.checkpoint import load_checkpoint, numbered_checkpoints
from ganforge.data import load_dataset, to_float
from ganforge.metrics import scoring
from ganforge.render.images import save_grid

COLS = [("fid", "FID", 1), ("kid_mean", "KID", 2), ("precision", "precision", 3),
        ("recall", "recall", 3), ("coverage", "coverage", 3), ("hf_ratio", "artefact ratio", 2),
        ("accuracy", "class acc.", 3), ("minutes", "min", 1)]
METRICS = ("fid", "kid", "pr", "dc", "hf")


def parse_run(text: str) -> Tuple[str, str, List[str]]:
    """``NAME=PRESET,k=v,k=v``: a piece without ``=`` continues the value before it (so
    ``aug.diffaug=translation,cutout`` keeps its comma)."""
    name, _, rest = text.partition("=")
    preset, *pieces = rest.split(",")
    pairs: List[str] = []
    for piece in pieces:
        if "=" in piece or not pairs:
            pairs.append(piece)
        else:
            pairs[-1] += "," + piece
    return name, preset, pairs


def train(preset: str, out: Path, minutes: float, seed: int, curve_every: int,
          extra: List[str], data: str) -> None:
    if (out / "checkpoints" / "latest.pt").exists():
        return
    config = [] if preset == "-" else ["--config", preset]
    cmd = [sys.executable, "-m", "ganforge", "train", *config, "--out", str(out), "--overwrite",
           "--data", data, "log.progress=false", f"train.seed={seed}",
           f"train.time_limit={minutes * 60:g}", "train.steps=1000000", "train.epochs=0",
           f"log.ckpt_every={curve_every}", "log.keep_last=1000", *extra]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def real_features(data: str, size: int):
    ex = scoring.get_extractor("domain", data_spec=data, img_size=size)
    return ex, scoring.real_features(ex, data, "train", img_size=size, channels=3)


def score_ckpt(path: Path, data: str, n: int, n_per_class: int = 0) -> Dict[str, float]:
    g = ganforge.load(path)
    size = g.info.img_size
    ex, real = real_features(data, size)
    x = g.sample(n, seed=0)
    res = scoring.score_images((x[i:i + 500] for i in range(0, len(x), 500)), ex, real,
                               metrics=METRICS)
    st = load_checkpoint(path)
    res["minutes"] = float(st.get("elapsed", 0)) / 60
    res["steps"] = int(st.get("step", 0))
    if g.class_names and n_per_class:
        res["accuracy"] = float(g.class_scores(n_per_class=n_per_class)["accuracy"])
    return res


def curve(run: Path, data: str, n: int) -> List[Dict[str, float]]:
    pts = []
    for step, path in sorted(numbered_checkpoints(run)):
        r = score_ckpt(path, data, n)
        pts.append({"step": step, "minutes": round(r["minutes"], 2), "fid": round(r["fid"], 1)})
    return pts


def real_row(data: str, size: int, n: int) -> Dict[str, float]:
    """The real test images against the real training images (the floor of every column)."""
    ex, real = real_features(data, size)
    x = to_float(load_dataset(data, "test", img_size=size, channels=3).images[:n])
    return scoring.score_images((x[i:i + 500] for i in range(0, len(x), 500)), ex, real,
                                metrics=METRICS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--data", required=True, help="avatars or wesnoth")
    ap.add_argument("--train-data", help="what the runs train on, when not --data (e.g. a "
                                         "folder of the same images, to measure the folder "
                                         "defaults); scores are still against --data")
    ap.add_argument("--run", action="append", required=True, metavar="NAME=PRESET[,k=v...]")
    ap.add_argument("--minutes", type=float, required=True, help="wall-clock minutes per run")
    ap.add_argument("--seeds", default="0", help="comma list")
    ap.add_argument("--n", type=int, default=10000, help="samples per final score")
    ap.add_argument("--n-per-class", type=int, default=500, help="conditional runs")
    ap.add_argument("--curve-every", type=int, default=250, help="steps between checkpoints")
    ap.add_argument("--curve-n", type=int, default=2000, help="samples per curve point")
    ap.add_argument("--root", default="runs/bench-colour")
    ap.add_argument("--out")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [parse_run(r) for r in args.run]
    rows, size = [], 64
    for name, preset, extra in runs:
        per_seed = []
        for seed in seeds:
            out = Path(args.root) / f"{args.data}-{name}-s{seed}"
            train(preset, out, args.minutes, seed, args.curve_every, extra,
                  args.train_data or args.data)
            r = score_ckpt(out / "checkpoints" / "latest.pt", args.data, args.n, args.n_per_class)
            r.update(run=name, seed=seed, preset=preset, extra=extra, curve=curve(out, args.data, args.curve_n))
            size = ganforge.load(out).info.img_size
            print({k: r.get(k) for k in ["run", "seed", "steps"] + [c for c, _, _ in COLS]}, flush=True)
            per_seed.append(r)
            if args.out and seed == seeds[0]:
                save_grid(ganforge.load(out).sample(64, seed=0), f"{args.out}-{name}.png", nrow=8)
                if (out / "training.gif").exists():
                    shutil.copy(out / "training.gif", f"{args.out}-{name}.gif")
        rows += per_seed
        if len(per_seed) > 1:
            mean = {"run": f"{name} (mean of {len(per_seed)})", "steps": per_seed[0]["steps"]}
            for k, _, _ in COLS:
                vals = [r[k] for r in per_seed if r.get(k) is not None]
                if vals:
                    mean[k] = statistics.mean(vals)
                    mean[f"{k}_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            rows.append(mean)
    real = real_row(args.data, size, args.n)
    real["run"] = f"real {args.data} test images vs the training images"
    rows.append(real)
    cmd = " ".join(["python benchmarks/bench_colour.py", "--data", args.data]
                   + (["--train-data", args.train_data] if args.train_data else []) + ["--minutes",
                    f"{args.minutes:g}", "--seeds", args.seeds] + [f"--run {r}" for r in args.run])
    lines = [f"`{cmd}`", "",
             f"{args.n} samples of each run's EMA G (seed 0) vs the real {args.data} training "
             f"images, {args.data} domain evaluator at {size} px; each run trained for "
             f"{args.minutes:g} wall-clock minutes; class acc.: the evaluator's class of "
             f"{args.n_per_class} samples per class asked for (conditional runs)", "",
             *md_table(("run", "seed", "steps"), COLS, rows)]
    lines += ["", "FID against minutes (curve points, 2,000 samples each):", ""]
    for r in rows:
        if r.get("curve"):
            pts = ", ".join(f"{p['minutes']:.1f} min {p['fid']:.0f}" for p in r["curve"])
            lines.append(f"- {r['run']} s{r['seed']}: {pts}")
    save("\n".join(lines), rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
