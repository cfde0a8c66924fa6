"""Transfer learning on few images, measured: pre-train on eight Fashion-MNIST classes, then
fine-tune on the other two with 500 (and 100) images, against training from scratch.

Run by hand on an idle machine (never part of the test suite)::

    .venv/bin/python benchmarks/bench_transfer.py --shots 500,100 --steps 2000 \\
        --out benchmarks/results/transfer

1. Arrays are written to ``--root``: ``pretrain.npz`` (every training image of the classes
   other than ``--target``, default Bag and Ankle boot), ``few-<n>.npz`` (the first ``n``
   training images of the target classes, in a fixed shuffled order, both classes mixed) and
   ``test-target.npz`` (the target classes' test images: the reference for FID).
2. ``ganforge train --config PRESET --data pretrain.npz`` (the default preset).
3. For every shot count: from scratch; ``--init-from`` the pre-trained run; and
   ``--init-from`` with ``--freeze-d K`` (FreezeD, Mo et al. 2020); each ``--steps`` steps on
   ``few-<n>.npz`` with the preset's DiffAugment and EMA.
4. Each run's EMA generator: ``--n`` samples scored against ``test-target.npz`` with the
   Fashion-MNIST domain evaluator (FID, precision, recall), as ``ganforge eval`` scores; FID
   also at half the steps (the checkpoint kept there), where a head start shows.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from results_io import save

import ganforge
from ganforge.data import load_dataset
from ganforge.metrics import scoring


def write_arrays(root: Path, target: list[str], shots: list[int], seed: int) -> dict:
    train, test = load_dataset("fashion-mnist"), load_dataset("fashion-mnist:test")
    names = train.class_names
    idx = [names.index(t) for t in target]
    is_t = np.isin(train.labels.numpy(), idx)
    root.mkdir(parents=True, exist_ok=True)
    files = {"pretrain": root / "pretrain.npz", "test": root / "test-target.npz"}
    np.savez(files["pretrain"], images=train.images[~is_t].numpy(), labels=train.labels[~is_t].numpy())
    order = np.random.default_rng(seed).permutation(np.flatnonzero(is_t))
    for n in shots:
        files[n] = root / f"few-{n}.npz"
        np.savez(files[n], images=train.images[order[:n]].numpy())
    t = np.isin(test.labels.numpy(), idx)
    np.savez(files["test"], images=test.images[t].numpy())
    return files


def train(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "ganforge", "train", *args, "log.progress=false"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def score(run: Path, test: Path, n: int, img_size: int) -> dict:
    ex = scoring.get_extractor("domain", data_spec="fashion-mnist", img_size=img_size)
    real = scoring.real_features(ex, str(test), "train", img_size=img_size, channels=1)
    g = ganforge.load(run)
    x = g.sample(n, seed=0)
    return scoring.score_images((x[i:i + 500] for i in range(0, len(x), 500)), ex, real,
                                metrics=("fid", "pr"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="dcgan-fashion-mnist")
    ap.add_argument("--target", default="Bag,Ankle boot", help="the two classes held out")
    ap.add_argument("--shots", default="500,100")
    ap.add_argument("--steps", type=int, default=2000, help="steps of every few-shot run")
    ap.add_argument("--pretrain-steps", type=int, default=0, help="0: the preset's")
    ap.add_argument("--freeze-d", type=int, default=2)
    ap.add_argument("--n", type=int, default=2000, help="samples per score")
    ap.add_argument("--root", default="runs/bench-transfer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    root, shots = Path(args.root), [int(s) for s in args.shots.split(",")]
    files = write_arrays(root, [t.strip() for t in args.target.split(",")], shots, args.seed)
    pre = root / "pretrain"
    if not (pre / "checkpoints" / "latest.pt").exists():
        train(["--config", args.config, "--data", str(files["pretrain"]), "--out", str(pre), "--overwrite",
               *(["--steps", str(args.pretrain_steps)] if args.pretrain_steps else [])])
    img_size = ganforge.load(pre).info.img_size
    rows = []
    for n in shots:
        for method, extra in (("scratch", []), ("--init-from", ["--init-from", str(pre)]),
                              (f"--init-from --freeze-d {args.freeze_d}",
                               ["--init-from", str(pre), "--freeze-d", str(args.freeze_d)])):
            run = root / f"{n}-{method.replace('--', '').replace(' ', '-')}"
            if not (run / "checkpoints" / "latest.pt").exists():
                train(["--config", args.config, "--data", str(files[n]), "--out", str(run), "--overwrite",
                       "--steps", str(args.steps), f"train.batch_size={min(64, n)}",
                       f"log.ckpt_every={args.steps // 2}", *extra])
            s = score(run, files["test"], args.n, img_size)
            half = run / "checkpoints" / f"step-{args.steps // 2:09d}.pt"   # the head start
            s_half = score(half, files["test"], args.n, img_size) if half.exists() else {}
            st = torch.load(run / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)
            rows.append({"images": n, "method": method, "fid": s["fid"], "precision": s["precision"],
                         "recall": s["recall"], "fid_half": s_half.get("fid", float("nan")),
                         "minutes": float(st.get("elapsed", 0)) / 60})
            print(rows[-1], flush=True)
    lines = [f"`python benchmarks/bench_transfer.py --shots {args.shots} --steps {args.steps}`", "",
             f"pre-trained on the 8 other classes ({args.config}); {args.n} samples of each run vs "
             f"the test images of {args.target} (domain evaluator)", "",
             f"| images | method | FID at {args.steps // 2} steps | FID | precision | recall | train min |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['images']} | {r['method']} | {r['fid_half']:.2f} | {r['fid']:.2f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['minutes']:.2f} |")
    save("\n".join(lines), rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
