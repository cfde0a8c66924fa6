"""Time FID of 10k generated samples with the domain extractor (issue: < 30 s on 2 CPU cores,
sampling included). Run by hand:

    python benchmarks/bench_eval.py runs/dcgan-fashion-mnist [--n 10000]

Needs a trained run and its domain evaluator (`ganforge evaluator train --data fashion-mnist
--img-size 32`). Prints one table: the stages, cold (reference features computed) and warm
(reference features from the on-disk cache).
"""
from __future__ import annotations

import argparse
import time

import torch

from ganforge.metrics import extract_features, scoring
from ganforge.use.load import load_run


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--n", type=int, default=10000)
    args = ap.parse_args()
    rows = []
    t0 = time.perf_counter()
    model = load_run(args.run)
    spec, size, ch = model.info.data, model.info.img_size, model.info.channels
    ex = scoring.get_extractor("domain", data_spec=spec, img_size=size)
    rows.append(("load generator + evaluator", time.perf_counter() - t0))
    for label, cache in (("reference features (cold, computed)", False), ("reference features (warm, cached)", True)):
        t = time.perf_counter()
        real = scoring.real_features(ex, spec, "test", img_size=size, channels=ch, n=args.n, cache=cache)
        rows.append((label, time.perf_counter() - t))
    t = time.perf_counter()
    with torch.inference_mode():
        imgs = torch.cat(list(model.eval_batches(args.n)))
    rows.append((f"sample {args.n} images", time.perf_counter() - t))
    t = time.perf_counter()
    feats = extract_features(ex, imgs, batch_size=500).features
    rows.append((f"features of {args.n} images", time.perf_counter() - t))
    t = time.perf_counter()
    fid = scoring.score(real, feats, ["fid"])["fid"]
    rows.append(("FID (float64, eigh)", time.perf_counter() - t))
    warm_total = sum(v for k, v in rows[2:])
    print(f"{'stage':<40} seconds")
    for k, v in rows:
        print(f"{k:<40} {v:7.2f}")
    print(f"{'total, warm cache (sampling included)':<40} {warm_total:7.2f}   FID={fid:.3f}  threads={torch.get_num_threads()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
