"""Metrics for class-conditional generators: does G make the class it is asked for?

* **Class accuracy** (the "classification accuracy" of conditional GAN papers, e.g. the
  AC-GAN and projection-discriminator papers' use of a pretrained classifier): generate
  ``n_per_class`` images for every class c, classify them with the domain evaluator (a CNN
  trained on the real data, :mod:`ganforge.metrics.domain`), and report the fraction whose
  predicted class is c, overall and per class, with the confusion matrix. Next to it, the
  evaluator's own accuracy on real test images of each class: the ceiling a perfect
  generator would reach (on Fashion-MNIST, "Shirt" is hard even for real images).
* **Intra-class FID** (Miyato & Koyama 2018, §5.1 "intra FID"): the FID between generated
  images of class c and real test images of class c, in the evaluator's feature space, for
  every class; the score is their mean. It penalises what the overall FID cannot see:
  right-looking images of the wrong class, and classes that collapse to a few modes.
* **FID** of all generated images (equal numbers per class) against the whole real split,
  comparable with an unconditional model's FID under the same evaluator.

One entry point, :func:`evaluate_conditional`, which ``ganforge eval`` calls for runs of
``--task conditional``; :func:`format_conditional` prints its result as a table.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from ganforge.metrics.fid import fid_from_features


def _error(msg: str) -> Exception:
    try:
        from ganforge.evaluate import EvalError
        return EvalError(msg)
    except ImportError:   # evaluation glue not installed: still a ValueError, still clear
        return ValueError(msg)


def class_index_map(run_names: Sequence[str], evaluator_names: Sequence[str]) -> torch.Tensor:
    """For each class of the run, the evaluator's index of the same class (matched by name in
    the forgiving spelling of ``--class``)."""
    from ganforge.data.classes import normalize_class_name
    ev = [normalize_class_name(n) for n in evaluator_names]
    idx: List[int] = []
    for n in run_names:
        key = normalize_class_name(n)
        if key not in ev:
            raise _error(f"the evaluator's classes ({', '.join(map(str, evaluator_names))}) do not "
                         f"include the run's class {n!r}; use an evaluator trained on the run's "
                         f"dataset (`ganforge evaluator train --data DATA`)")
        idx.append(ev.index(key))
    return torch.tensor(idx, dtype=torch.int64)


def conditional_scores(fake_feats: torch.Tensor, fake_pred: torch.Tensor, fake_labels: torch.Tensor,
                       real_feats: torch.Tensor, real_labels: torch.Tensor, n_classes: int,
                       real_pred: Optional[torch.Tensor] = None) -> Dict[str, Any]:
    """The pure part: features, predictions and labels (all in the run's class indices) ->
    accuracy, per-class accuracy, intra-class FIDs, overall FID and the confusion matrix."""
    fake_labels, fake_pred = fake_labels.long().cpu(), fake_pred.long().cpu()
    real_labels = real_labels.long().cpu()
    k = n_classes
    confusion = torch.zeros(k, k, dtype=torch.int64)
    known = fake_pred >= 0          # -1: predicted a class the run does not have
    confusion.index_put_((fake_labels[known], fake_pred[known]),
                         torch.ones_like(fake_labels[known]), accumulate=True)
    per_class = []
    for c in range(k):
        f = fake_labels == c
        r = real_labels == c
        row: Dict[str, Any] = {"index": c, "n_fake": int(f.sum()), "n_real": int(r.sum()),
                               "accuracy": float((fake_pred[f] == c).float().mean()) if f.any() else float("nan"),
                               "fid": float("nan")}
        if real_pred is not None and r.any():
            row["real_accuracy"] = float((real_pred.long().cpu()[r] == c).float().mean())
        if f.sum() >= 2 and r.sum() >= 2:
            row["fid"] = fid_from_features(real_feats[r], fake_feats[f])
        per_class.append(row)
    fids = torch.tensor([p["fid"] for p in per_class], dtype=torch.float64)
    valid = ~torch.isnan(fids)
    return {"accuracy": float((fake_pred == fake_labels).float().mean()),
            "intra_fid": float(fids[valid].mean()) if valid.any() else float("nan"),
            "fid": fid_from_features(real_feats, fake_feats),
            "per_class": per_class, "confusion": confusion.tolist()}


def evaluate_conditional(run_dir: Union[str, Path], evaluator=None, n_per_class: int = 1000, *,
                         seed: int = 0, which: str = "latest", split: str = "test",
                         device: str = "cpu", data_dir: Optional[str] = None,
                         progress: bool = False, ema: bool = True) -> Dict[str, Any]:
    """Class accuracy, per-class table, intra-class FID and FID of a conditional run.

    ``evaluator``: None (the stored domain evaluator of the run's dataset, at the run's image
    size), an evaluator file path, or a loaded evaluator (anything with ``features_and_logits``
    and ``class_names``). ``n_per_class`` images are generated for each class (seeded); the
    real side is the dataset's ``split`` (all of it), falling back to the training images for
    a folder without a test split. Returns a dict: ``accuracy``, ``intra_fid``, ``fid``,
    ``per_class`` (list of {class, index, accuracy, real_accuracy, fid, n_fake, n_real}),
    ``confusion`` (rows: requested class, columns: predicted), and what was compared.
    """
    from ganforge import evaluate
    from ganforge.data import DataError
    from ganforge.metrics.domain import load_evaluator
    from ganforge.sampling import generate, load_generator

    if n_per_class < 2:
        raise _error(f"n_per_class={n_per_class}: need at least 2 images per class for a FID")
    G, st = load_generator(run_dir, which, device, ema=ema)
    k = int(getattr(G, "n_classes", 0))
    if not k:
        raise _error(f"'{run_dir}' holds an unconditional generator; class accuracy and "
                     f"intra-class FID apply to runs trained with --task conditional")
    data = st["data"]
    names = list(data.get("class_names") or [str(i) for i in range(k)])
    spec = st["config"]["data"]["name"]
    data_dir = data_dir or st["config"]["data"].get("data_dir")
    if evaluator is None:
        ev = evaluate.get_extractor("domain", data_spec=spec, img_size=data["img_size"], device=device)
    elif isinstance(evaluator, (str, Path)):
        ev = load_evaluator(evaluator, device=device)
    else:
        ev = evaluator
    to_ev = class_index_map(names, ev.class_names)
    from_ev = torch.full((len(ev.class_names),), -1, dtype=torch.int64)
    from_ev[to_ev] = torch.arange(k)

    labels = torch.arange(k).repeat_interleave(n_per_class)
    x = generate(G, len(labels), seed=seed, device=device, labels=labels)
    feats, logits = ev.features_and_logits(x)
    pred = from_ev[logits.cpu().argmax(1)]          # -1: a class the run does not have

    used = split
    try:
        real = evaluate.real_features(ev, spec, split, img_size=data["img_size"],
                                      channels=data["channels"], n=0, data_dir=data_dir,
                                      with_logits=True, progress=progress)
    except DataError:
        used = "train"
        real = evaluate.real_features(ev, spec, "train", img_size=data["img_size"],
                                      channels=data["channels"], n=0, data_dir=data_dir,
                                      with_logits=True, progress=progress)
    if real.get("labels") is None:
        raise _error(f"the real data '{real['data']}' ({used}) has no labels; intra-class FID "
                     f"needs them")
    real_names = list(real.get("class_names") or names)
    real_y = class_index_map(real_names, names)[real["labels"].long()]  # into the run's order
    real_pred = from_ev[real["logits"].argmax(1)] if real.get("logits") is not None else None
    out = conditional_scores(feats.cpu(), pred, labels, real["features"], real_y, k, real_pred)
    for row in out["per_class"]:
        row["class"] = names[row["index"]]
    return {"run": str(run_dir), "step": int(st.get("step", 0)), "extractor": "domain",
            "evaluator": str(getattr(ev, "path", "") or ""),
            "evaluator_accuracy": float(getattr(ev, "accuracy", float("nan"))),
            "real": f"{real['data']} ({used})", "n_per_class": n_per_class,
            "n_real": int(real["features"].shape[0]), **out}


def format_conditional(result: Dict[str, Any]) -> str:
    """The result of :func:`evaluate_conditional` as a plain-text table."""
    lines = [f"{result.get('run', '')} (step {result.get('step', '?')}): "
             f"class accuracy {result['accuracy']:.1%}, intra-class FID {result['intra_fid']:.3f}, "
             f"FID {result['fid']:.3f}  [{result.get('n_per_class')} generated per class vs "
             f"{result.get('real', '')}; domain evaluator, real-test accuracy "
             f"{result.get('evaluator_accuracy', float('nan')):.1%}]",
             f"  {'class':<14} {'accuracy':>9} {'real acc':>9} {'intra FID':>10}"]
    for row in result["per_class"]:
        ra = row.get("real_accuracy")
        lines.append(f"  {str(row.get('class', row['index'])):<14} {row['accuracy']:>9.1%} "
                     f"{(f'{ra:.1%}' if ra is not None else '-'):>9} {row['fid']:>10.3f}")
    return "\n".join(lines)
