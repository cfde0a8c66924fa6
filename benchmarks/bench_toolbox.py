"""The practitioner's toolbox on Fashion-MNIST: which aids help, at equal step budgets.

Run by hand (never part of the test suite)::

    .venv/bin/python benchmarks/bench_toolbox.py --jobs 2 --out benchmarks/results/toolbox
    .venv/bin/python benchmarks/bench_toolbox.py --only diffaug-1k,none-1k --steps 3000

Every variant trains the default preset (DCGAN, 32 px, ``dcgan-fashion-mnist``) for the same
number of generator steps with the same seed, then is scored with the same domain evaluator
(``ganforge evaluator train --data fashion-mnist --img-size 32``, trained once and cached):
FID of ``--n`` generated images against the 10k test images (lower is better), plus
precision/recall. Runs go to ``runs/bench-toolbox/<variant>``; ``--jobs 2`` trains two
variants at a time with one thread each (quality comparisons do not need an idle machine;
speed comparisons do, and are not made here).

Variants (``--only`` picks some):

* ``none-1k`` / ``diffaug-1k``: only the first 1,000 training images (``data.limit=1000``),
  without and with DiffAugment (translation, cutout, colour on every image D sees). The
  limited-data regime where D memorises the training set and augmentation should help.
* ``ada-1k``: the same 1,000 images with adaptive augmentation (p from D's sign on reals).
* ``none`` / ``ema``: all 60,000 images, without and with an EMA of G's weights
  (half-life 10k images, 5 % warm-up); ``ema`` is scored with G_ema (sample/eval's default).
* ``ema-diffaug``: EMA and DiffAugment together on the full data.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIFFAUG = "aug.diffaug=translation,cutout,color"
EMA = "ema.half_life=10"
VARIANTS: Dict[str, List[str]] = {
    "none-1k": ["data.limit=1000"],
    "diffaug-1k": ["data.limit=1000", DIFFAUG],
    "ada-1k": ["data.limit=1000", "aug.ada=true"],
    "none": [],
    "ema": [EMA],
    "ema-diffaug": [EMA, DIFFAUG],
}


def train(name: str, args) -> Dict:
    out = Path(args.runs) / name
    cmd = [sys.executable, "-m", "ganforge", "train", "--config", args.config, "--steps", str(args.steps),
           "--out", str(out), "train.threads=%d" % args.threads, "log.progress=false",
           "log.sample_every=1000", "log.ckpt_every=1000", *VARIANTS[name], *args.extra]
    t0 = time.perf_counter()
    log = open(Path(args.runs) / f"{name}.log", "w")
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return {"variant": name, "seconds": time.perf_counter() - t0, "cmd": " ".join(cmd[2:])}


def score(name: str, args) -> Dict:
    from ganforge.use import evaluate
    res = evaluate.evaluate_run(str(Path(args.runs) / name), n=args.n, metrics=["fid", "kid", "pr"],
                                extractor="domain", progress=False)
    return {k: res[k] for k in ("fid", "kid_mean", "precision", "recall", "generator") if k in res}


def table(rows: List[Dict], markdown: bool) -> str:
    head = ["variant", "settings", "steps", "FID", "KID", "precision", "recall", "G scored", "train s"]
    lines = []
    for r in rows:
        lines.append([r["variant"], " ".join(VARIANTS[r["variant"]]) or "(preset)", str(r["steps"]),
                      f"{r['fid']:.2f}", f"{r['kid_mean']:.4f}", f"{r.get('precision', float('nan')):.3f}",
                      f"{r.get('recall', float('nan')):.3f}", r.get("generator", "G"), f"{r['seconds']:.0f}"])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(l) + " |" for l in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*l) for l in lines])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(VARIANTS), help="comma list of variants")
    ap.add_argument("--config", default="dcgan-fashion-mnist")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="threads per run (default: 2 // jobs, >= 1)")
    ap.add_argument("--n", type=int, default=10000, help="generated images per FID")
    ap.add_argument("--runs", default="runs/bench-toolbox")
    ap.add_argument("--score-only", action="store_true", help="score existing runs, do not train")
    ap.add_argument("--out", default="", help="write PATH.json and PATH.md")
    ap.add_argument("extra", nargs="*", metavar="key=value", help="overrides for every variant")
    args = ap.parse_args(argv)
    args.threads = args.threads or max(1, 2 // args.jobs)
    names = [n for n in args.only.split(",") if n]
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    timing = {}
    if args.score_only and args.out and Path(args.out).with_suffix(".json").exists():
        # keep the training times of the run that trained these variants
        for r in json.loads(Path(args.out).with_suffix(".json").read_text())["rows"]:
            if r.get("seconds") == r.get("seconds"):      # not NaN
                timing[r["variant"]] = r
    if not args.score_only:
        with ThreadPoolExecutor(args.jobs) as ex:
            for r in ex.map(lambda n: train(n, args), names):
                timing[r["variant"]] = r
                print(f"trained {r['variant']} in {r['seconds']:.0f} s", flush=True)
    rows = []
    for n in names:
        r = {"variant": n, "steps": args.steps, "seconds": timing.get(n, {}).get("seconds", float("nan")),
             **score(n, args)}
        rows.append(r)
        print(f"scored {n}: FID {r['fid']:.2f}", flush=True)
    print(table(rows, markdown=False))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({"rows": rows, "steps": args.steps, "n": args.n,
                                                         "config": args.config, "extra": args.extra},
                                                        indent=2) + "\n")
        cmd = "python benchmarks/bench_toolbox.py " + " ".join(sys.argv[1:] if argv is None else argv)
        out.with_suffix(".md").write_text(f"`{cmd}`\n\n" + table(rows, markdown=True) + "\n")
        print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
