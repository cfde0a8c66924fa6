"""Distilled students against their teacher and against the same network trained from scratch.

Run by hand on an idle machine (never part of the test suite)::

    .venv/bin/ganforge train --config dcgan-fashion-mnist --out runs/dcgan-fashion-mnist   # the teacher
    .venv/bin/python benchmarks/bench_distill.py runs/dcgan-fashion-mnist --widths 16,8,4 \\
        --steps 2000 --out benchmarks/results/distill

For each student width (``model.g_width``; the default teacher has 32, so 16, 8, 4 are 1/2,
1/4, 1/8):

1. ``ganforge distill TEACHER --out ROOT/distill-wW --steps S model.g_width=W``: pixel L1 +
   teacher-D feature matching (ganforge/training/distill.py), no adversarial term;
2. the same network trained from scratch as an ordinary GAN (the teacher's preset with
   ``model.g_width=W``) for the same wall time as the distillation took (``train.time_limit``);
3. both scored with ``ganforge eval --n N`` (test split, domain evaluator, EMA generator).

Sampling speed: ``ganforge.load(RUN).sample(256)`` for the teacher and every student, timed
side by side in one process (interleaved rounds, median), on ``--threads`` threads. Columns:
G parameters, images/s, speed relative to the teacher, FID, precision, recall, training minutes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from results_io import save

import ganforge


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def minutes(run_dir: Path) -> float:
    st = torch.load(run_dir / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)
    return float(st.get("elapsed", 0.0)) / 60


def score(run_dir: Path, n: int) -> dict:
    out = run_dir / "eval-test.json"
    if not out.exists():
        run([sys.executable, "-m", "ganforge", "eval", str(run_dir), "--n", str(n), "--json", str(out)])
    return json.loads(out.read_text())


def sampling_speed(runs: dict[str, Path], batch: int, rounds: int) -> dict[str, float]:
    gens = {k: ganforge.load(v) for k, v in runs.items()}
    times: dict[str, list[float]] = {k: [] for k in gens}
    for g in gens.values():
        g.sample(batch, seed=0)                     # warm-up
    for r in range(rounds):
        for k, g in gens.items():
            t0 = time.perf_counter()
            g.sample(batch, seed=r)
            times[k].append(time.perf_counter() - t0)
    return {k: batch / statistics.median(v) for k, v in times.items()}


def g_params(run_dir: Path) -> int:
    g = ganforge.load(run_dir)
    return sum(p.numel() for m in g.model.modules.values() for p in m.parameters())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher")
    ap.add_argument("--widths", default="16,8,4")
    ap.add_argument("--steps", type=int, default=2000, help="distillation steps per student")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=256, help="sampling batch")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", default="runs/bench-distill")
    ap.add_argument("--out")
    args = ap.parse_args()
    teacher, root = Path(args.teacher), Path(args.root)
    preset = teacher / "config.yaml"
    gf = [sys.executable, "-m", "ganforge"]
    rows, runs = [], {"teacher": teacher}
    for w in [int(x) for x in args.widths.split(",")]:
        d, s = root / f"distill-w{w}", root / f"scratch-w{w}"
        if not (d / "checkpoints" / "latest.pt").exists():
            run(gf + ["distill", str(teacher), "--out", str(d), "--steps", str(args.steps), "--overwrite",
                      f"model.g_width={w}", "log.progress=false"])
        wall = minutes(d) * 60
        if not (s / "checkpoints" / "latest.pt").exists():
            run(gf + ["train", "--config", str(preset), "--out", str(s), "--overwrite", "--steps", "1000000",
                      f"model.g_width={w}", f"train.time_limit={wall:.0f}", "log.progress=false"])
        runs[f"distilled w{w}"], runs[f"scratch w{w}"] = d, s
    torch.set_num_threads(args.threads)
    speed = sampling_speed(runs, args.batch, args.rounds)
    for name, r in runs.items():
        res = score(r, args.n)
        rows.append({"model": name, "params": g_params(r), "img_s": speed[name],
                     "speedup": speed[name] / speed["teacher"], "fid": res["fid"],
                     "precision": res["precision"], "recall": res["recall"], "minutes": minutes(r)})
        print(json.dumps(rows[-1]), flush=True)
    head = ["model", "G params", f"img/s (batch {args.batch})", "× teacher", "FID", "precision",
            "recall", "train min"]
    lines = [f"`python benchmarks/bench_distill.py {args.teacher} --widths {args.widths} --steps "
             f"{args.steps} --n {args.n}`", "",
             f"{args.n} samples vs the test split (domain evaluator); sampling on {args.threads} "
             f"threads, median of {args.rounds} interleaved rounds", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['img_s']:.0f} | {r['speedup']:.2f} | "
                     f"{r['fid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['minutes']:.2f} |")
    save("\n".join(lines), rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
