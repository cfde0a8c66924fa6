"""The truncation trick's trade-off, measured: FID, precision and recall at several psi.

Run by hand (never part of the test suite), on a trained run of the default preset::

    .venv/bin/ganforge train --config dcgan-fashion-mnist --out runs/dcgan-fashion-mnist
    .venv/bin/ganforge evaluator train --data fashion-mnist --img-size 32     # once, cached
    .venv/bin/python benchmarks/bench_truncation.py runs/dcgan-fashion-mnist \\
        --psi none,1.5,1.0,0.5 --n 10000 --out benchmarks/results/truncation

For each psi, ``--n`` images come from ``ganforge.load(RUN).sample(n, seed=0, truncation=psi)``
(z components with |z| > psi resampled until inside: Brock et al. 2019, "Large Scale GAN
Training for High Fidelity Natural Image Synthesis", §3.1) and are scored against the real
test split with the run's domain evaluator (32 px), exactly as ``ganforge eval`` scores them.
Expected shape: smaller psi trades diversity (recall) for fidelity (precision); FID usually
worsens once recall drops.
"""
from __future__ import annotations

import argparse
import time

from results_io import save

import ganforge
from ganforge.metrics import scoring


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--psi", default="none,1.5,1.0,0.5", help="comma list; none = no truncation")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--out", help="write OUT.md and OUT.json")
    args = ap.parse_args()
    g = ganforge.load(args.run)
    info = g.info
    ex = scoring.get_extractor("domain", data_spec=g.model.info.data, img_size=info.img_size)
    real = scoring.real_features(ex, g.model.info.data, "test", img_size=info.img_size,
                                 channels=info.channels, n=args.n)
    metrics = ("fid", "kid", "pr", "dc")
    rows = []
    for text in args.psi.split(","):
        psi = None if text.strip().lower() == "none" else float(text)
        t0 = time.perf_counter()
        x = g.sample(args.n, seed=0, truncation=psi)
        scores = scoring.score_images((x[i:i + 500] for i in range(0, len(x), 500)), ex, real,
                                      metrics=metrics)
        rows.append({"psi": text.strip(), **scores, "seconds": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
    head = ["psi", "fid", "kid_mean", "precision", "recall", "density", "coverage"]
    lines = [f"`python benchmarks/bench_truncation.py {args.run} --psi {args.psi} --n {args.n}`",
             "", f"run step {info.step}, {args.n} samples vs {real['data']} (test), domain evaluator "
                 f"{info.img_size} px", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(r["psi"] if k == "psi" else f"{r[k]:.3f}" for k in head) + " |")
    save("\n".join(lines), rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
