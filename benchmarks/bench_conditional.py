"""Conditional DCGAN vs unconditional DCGAN on Fashion-MNIST at the same CPU budget.

Run by hand (never part of the test suite). Three steps::

    # 1. steps per second of both presets (min over repeats: the least-disturbed timing, since
    #    the machine may be shared), and the step budget equal to --seconds of quiet CPU time
    .venv/bin/python benchmarks/bench_conditional.py speed --threads 2 --seconds 300

    # 2. train both with that many steps (nice: the machine is shared)
    nice -n 5 .venv/bin/ganforge train --config dcgan-fashion-mnist  --steps N --out runs/bench/dcgan  train.threads=2
    nice -n 5 .venv/bin/ganforge train --config cdcgan-fashion-mnist --steps M --out runs/bench/cdcgan train.threads=2

    # 3. score both with the same domain evaluator (trained once: ganforge evaluator train
    #    --data fashion-mnist --img-size 32): FID of 10k samples vs the 10k test images, and for
    #    the conditional run class accuracy, per-class table and intra-class FID
    .venv/bin/python benchmarks/bench_conditional.py eval --uncond runs/bench/dcgan \\
        --cond runs/bench/cdcgan --out benchmarks/results/conditional
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = ("dcgan-fashion-mnist", "cdcgan-fashion-mnist")


def cmd_speed(args) -> int:
    from ganforge.core.config import load_config
    from ganforge.data import load_dataset
    from ganforge.training.trainer import Trainer
    torch.set_num_threads(args.threads)
    ds = None
    trainers = {}
    for p in PRESETS:
        cfg = load_config(p, {"out": f"/tmp/bench-cond-{p}", "log.progress": False,
                              "log.tensorboard": False, "train.threads": args.threads})
        if ds is None:
            ds = load_dataset(cfg.data.name, img_size=cfg.data.img_size)
        trainers[p] = Trainer(cfg, dataset=ds, quiet=True)
        for _ in range(5):
            trainers[p].step()           # warm-up
    best = {p: float("inf") for p in PRESETS}
    cpu = {p: float("inf") for p in PRESETS}
    for _ in range(args.repeats):        # interleaved, so drift of the machine hits both alike
        for p, tr in trainers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                tr.step()
            best[p] = min(best[p], (time.perf_counter() - t0) / args.steps)
            cpu[p] = min(cpu[p], (time.process_time() - c0) / args.steps)
    print(f"load average {os.getloadavg()[0]:.2f}; threads {args.threads}; min over "
          f"{args.repeats} x {args.steps} steps")
    print(f"| preset | s/step (wall, min) | CPU s/step (min) | steps/s | steps in {args.seconds:g} s |")
    print("|---|---|---|---|---|")
    for p in PRESETS:
        print(f"| {p} | {best[p]:.4f} | {cpu[p]:.4f} | {1 / best[p]:.2f} | "
              f"{int(round(args.seconds / best[p], -1))} |")
    return 0


def cmd_eval(args) -> int:
    from ganforge.metrics import scoring
    from ganforge.metrics.per_class import format_conditional
    from ganforge.use import evaluate
    from ganforge.use.load import load_run
    ev = scoring.get_extractor("domain", data_spec="fashion-mnist", img_size=32,
                                weights=args.evaluator)
    res = {"evaluator": str(ev.path), "evaluator_accuracy": ev.accuracy}
    if args.uncond:
        r = evaluate.evaluate_run(args.uncond, metrics=("fid", "kid"), n=args.n,
                                  weights=args.evaluator, progress=False)
        res["uncond"] = r
        print(f"unconditional {args.uncond}: FID {r['fid']:.3f}, KID {r['kid_mean']:.5f} "
              f"(step {r['step']}, {args.n} samples vs {r['real']})")
    if args.cond:
        c = load_run(args.cond).class_scores(evaluator=ev, n_per_class=args.n // 10)
        res["cond"] = c
        print(format_conditional(c))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {out.with_suffix('.json')}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--repeats", type=int, default=8)
    s.add_argument("--seconds", type=float, default=300)
    s.set_defaults(func=cmd_speed)
    e = sub.add_parser("eval")
    e.add_argument("--uncond")
    e.add_argument("--cond")
    e.add_argument("--evaluator", help="evaluator .pt (default: the cached fashion-mnist 32 px one)")
    e.add_argument("--n", type=int, default=10000, help="generated images (conditional: n/10 per class)")
    e.add_argument("--out")
    e.set_defaults(func=cmd_eval)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
