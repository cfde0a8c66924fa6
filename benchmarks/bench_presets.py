"""Presets before and after tuning, measured: train each with several seeds, score each run
with ``ganforge eval`` (test split, 10k samples, domain evaluator), report mean +- std.

Run by hand on an idle machine (never part of the test suite), one preset at a time or several
in one run (they train one after another, so timings stay comparable)::

    .venv/bin/python benchmarks/bench_presets.py dcgan-fashion-mnist runs/tune-dcgan/best.yaml \\
        --seeds 0,1,2 --out benchmarks/results/presets-dcgan

Each (preset, seed) trains with ``ganforge train --config PRESET --seed S`` into
``runs/bench-presets/<preset>-s<S>`` (an existing finished run is scored again, not retrained,
so an interrupted benchmark continues) and is scored with ``ganforge eval RUN --n N --json``
(the EMA generator when the run keeps one, as users get). Columns: FID, KID (as ganforge eval
prints it),
precision, recall, density, coverage (Kynkaanniemi et al. 2019; Naeem et al. 2020), and for
conditional runs the share of samples classified as the requested class; wall minutes of
training (the run's own ``elapsed``, excluding start-up and scoring).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from results_io import save

COLS = [("fid", "FID", 2), ("kid_mean", "KID", 3), ("precision", "precision", 3),
        ("recall", "recall", 3), ("density", "density", 3), ("coverage", "coverage", 3),
        ("accuracy", "class acc", 4), ("minutes", "train min", 2)]


def run_one(preset: str, seed: int, root: Path, n: int, extra: list[str]) -> dict:
    name = Path(preset).stem if preset.endswith((".yaml", ".yml")) else preset
    out = root / f"{name}-s{seed}"
    ganforge = [sys.executable, "-m", "ganforge"]
    latest = out / "checkpoints" / "latest.pt"
    if latest.exists():
        subprocess.run(ganforge + ["train", "--config", preset, "--seed", str(seed), "--out", str(out),
                                   "--resume", "log.progress=false", *extra], check=True)
    else:
        subprocess.run(ganforge + ["train", "--config", preset, "--seed", str(seed), "--out", str(out),
                                   "--overwrite", "log.progress=false", *extra], check=True)
    res_file = out / "eval-test.json"
    subprocess.run(ganforge + ["eval", str(out), "--n", str(n), "--json", str(res_file)], check=True,
                   stdout=subprocess.DEVNULL)
    res = json.loads(res_file.read_text())
    state = torch.load(latest, map_location="cpu", weights_only=False)
    res["minutes"] = float(state.get("elapsed", 0.0)) / 60
    res["accuracy"] = res.get("accuracy", res.get("class_accuracy"))
    res["preset"], res["seed"] = name, seed
    print(json.dumps({k: res.get(k) for k in ["preset", "seed"] + [c for c, _, _ in COLS]}), flush=True)
    return res


def summary(rows: list[dict]) -> list[str]:
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["preset"], []).append(r)
    cols = [c for c in COLS if any(r.get(c[0]) is not None for r in rows)]
    lines = ["| preset | seeds | " + " | ".join(h for _, h, _ in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for name, rs in by.items():
        cells = []
        for k, _, d in cols:
            v = [float(r[k]) for r in rs if r.get(k) is not None]
            if not v:
                cells.append("")
            elif len(v) == 1:
                cells.append(f"{v[0]:.{d}f}")
            else:
                cells.append(f"{statistics.mean(v):.{d}f} ± {statistics.stdev(v):.{d}f}")
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    return lines


def write(rows: list[dict], header: list[str], out: str | None) -> str:
    return save("\n".join(header + summary(rows)), rows, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="+", help="preset names or YAML files")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n", type=int, default=10000, help="samples per evaluation")
    ap.add_argument("--root", default="runs/bench-presets")
    ap.add_argument("--out", help="write OUT.md and OUT.json")
    ap.add_argument("--set", nargs="*", default=[], help="key=value for every run (e.g. train.threads=2)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [run_one(p, s, Path(args.root), args.n, args.set) for p in args.presets for s in seeds]
    lines = [f"`python benchmarks/bench_presets.py {' '.join(args.presets)} --seeds {args.seeds} "
             f"--n {args.n}`", "", f"ganforge eval: {args.n} samples vs the test split, domain evaluator; "
             f"mean ± std over seeds {args.seeds}; wall minutes of training on this machine", ""]
    write(rows, lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
