"""``ganforge eval``: score a trained run, or two datasets against each other.

A run is scored by its face (:meth:`ganforge.use.face.Generator.evaluate`: FID & co. of
generated images, plus class metrics for runs with classes, or translation metrics for
image-to-image runs), which checks the request; this module loads the run, passes the request
on and formats the result. The scoring services (extractors, cached reference features) are
:mod:`ganforge.metrics.scoring`; the maths is :mod:`ganforge.metrics`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ganforge.core.argtypes import at_least, seed
from ganforge.core.command import Command
from ganforge.core.errors import UserError
from ganforge.data.spec import DataSpec, parse_spec
from ganforge.metrics import DEFAULT_METRICS, EXTRACTORS, METRICS
from ganforge.metrics.scoring import (
    MIN_EVAL_IMAGES,
    get_extractor,
    parse_metrics,
    real_features,
    score,
)
from ganforge.use.load import load


def evaluate_run(run: str, *, metrics: Sequence[str] = DEFAULT_METRICS, n: int = 10000,
                 extractor: str = "domain", weights: Optional[str] = None, split: str = "test",
                 seed: int = 0, which: str = "latest", device: str = "cpu",
                 data_dir: Optional[str] = None, progress: bool = True,
                 ema: bool = True) -> Dict[str, Any]:
    """Score a trained run's generators against the real split of the data it was trained
    on (their weight averages when the run kept them, unless ``ema`` is false: ``--no-ema``).
    Returns a flat dict: ``run``, ``task``, then what the task reports (see its face's
    ``evaluate``)."""
    model = load(run, which, ema=ema, device=device)
    return {"run": str(run), **model.evaluate(metrics, n, extractor=extractor, weights=weights,
                                              split=split, seed=seed, device=device,
                                              data_dir=data_dir, progress=progress)}


def evaluate_pair(real_spec: str, fake_spec: str, *, metrics: Sequence[str] = DEFAULT_METRICS,
                  n: int = 10000, extractor: str = "domain", weights: Optional[str] = None,
                  img_size: int = 0, channels: int = 0, seed: int = 0, device: str = "cpu",
                  data_dir: Optional[str] = None, progress: bool = True) -> Dict[str, Any]:
    """Score two datasets/folders against each other (floors, or users' own comparisons).

    ``fashion-mnist:train`` names a split; a folder or .npy/.npz file is used whole
    (``FOLDER:SUB``: its subfolder SUB). The fake side is resized/converted to the real side's
    geometry."""
    real_ds = parse_spec(real_spec)
    real_split = _split(real_ds)
    ex = get_extractor(extractor, data_spec=real_ds.source, img_size=img_size, weights=weights,
                       device=device)
    real = real_features(ex, real_ds.source, real_split, img_size=img_size, channels=channels, n=n,
                         data_dir=data_dir, progress=progress)
    fake_ds = parse_spec(fake_spec)
    fake_split = _split(fake_ds)
    fake = real_features(ex, fake_ds.source, fake_split, img_size=real["img_size"],
                         channels=real["channels"], n=n, data_dir=data_dir, progress=progress,
                         with_logits="is" in metrics)
    scores = score(real, fake["features"], metrics, fake_logits=fake.get("logits"), seed=seed,
                   sides=(f"--real {real_spec}", f"--fake {fake_spec}"), fake_hf=fake.get("hf_share"))
    return {"real": f"{real['data']} ({real_split})", "fake": f"{fake['data']} ({fake_split})",
            "extractor": ex.label, "n_real": real["n"], "n_fake": fake["n"], **scores,
            **({"caveats": scores.caveats} if scores.caveats else {})}


def _split(spec: DataSpec) -> str:
    # What load_dataset calls a split: a named dataset's split, or a folder's subfolder
    # (parse_spec reads FOLDER:SUB as a class selection).
    return spec.split or spec.cls or "train"


def format_table(result: Dict[str, Any]) -> str:
    """``key  value`` lines, floats with 4 decimals (1 above 1000); ``caveats`` (the estimates
    unreliable at these counts) are left to :func:`run`, which prints them as warnings."""
    rows = [(k, v) for k, v in result.items() if k != "caveats"]
    width = max(len(k) for k, _ in rows)
    out = []
    for k, v in rows:
        if isinstance(v, float):
            v = f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
        out.append(f"{k:<{width}}  {v}")
    return "\n".join(out)


# --------------------------------------------------------------------------- CLI
def run(args: argparse.Namespace) -> int:
    metrics = parse_metrics(args.metrics)
    common = dict(metrics=metrics, n=args.n, extractor=args.extractor, weights=args.weights,
                  seed=args.seed, device=args.device, data_dir=args.data_dir)
    if args.run and (args.real or args.fake):
        raise UserError("give either RUN_DIR_OR_CKPT or --real/--fake, not both")
    if args.run:
        result = evaluate_run(args.run, split=args.split, which=args.checkpoint,
                              ema=not args.no_ema, **common)
    elif args.real and args.fake:
        result = evaluate_pair(args.real, args.fake, img_size=args.img_size, **common)
    else:
        raise UserError("nothing to evaluate: give a run folder/checkpoint, or both --real and --fake "
                        "(e.g. --real fashion-mnist:train --fake fashion-mnist:test)")
    print(format_table(result))
    for c in result.get("caveats", ()):
        print(f"warning: {c}", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("run", nargs="?", metavar="RUN_DIR_OR_CKPT")
    e.add_argument("--real", metavar="DATA", help="real side, e.g. fashion-mnist:train or a folder")
    e.add_argument("--fake", metavar="DATA", help="fake side, e.g. fashion-mnist:test or a folder")
    e.add_argument("--metrics", help=f"comma list of {','.join(METRICS)} (default "
                                      f"{','.join(DEFAULT_METRICS)}; `ganforge list` says what each is)")
    e.add_argument("--n", type=at_least(MIN_EVAL_IMAGES, most=200000), default=10000, help="images per side (default 10000)")
    e.add_argument("--extractor", default="domain", choices=EXTRACTORS.names(),
                   help="domain: a classifier trained on the dataset (default); inception: the FID Inception-v3")
    e.add_argument("--weights", metavar="PATH", help="extractor weights file (evaluator .pt or Inception .pth)")
    e.add_argument("--split", default="test", help="real split a run is compared with (default test)")
    e.add_argument("--img-size", type=at_least(0, "the real side's own size", most=4096), default=0,
                   help="with --real/--fake: resize both to this size")
    e.add_argument("--checkpoint", default="latest", help="latest (default) or best")
    e.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    e.add_argument("--seed", type=seed(), default=0)
    e.add_argument("--device", default="cpu")
    e.add_argument("--data-dir", help="where named datasets are stored")
    e.add_argument("--no-ema", action="store_true",
                   help="score the raw generator, not its weight average (runs with ema.half_life)")


COMMAND = Command(
    "eval", "score a run (or two datasets) with FID, KID, precision/recall, ...", arguments, run,
    description="Score a trained run against the real data it was trained on, or two "
                "datasets/folders against each other (--real/--fake).")
