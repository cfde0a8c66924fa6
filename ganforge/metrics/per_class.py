"""Metrics for class-conditional generators: does G make the class it is asked for?

* **Class accuracy** (the "classification accuracy" of conditional GAN papers, e.g. the
  AC-GAN and projection-discriminator papers' use of a pretrained classifier): generate
  ``n_per_class`` images for every class c, classify them with the domain evaluator (a CNN
  trained on the real data, :mod:`ganforge.metrics.domain.network`), and report the fraction whose
  predicted class is c, overall and per class, with the confusion matrix. Next to it, the
  evaluator's own accuracy on real test images of each class: the ceiling a perfect
  generator would reach (on Fashion-MNIST, "Shirt" is hard even for real images).
* **Intra-class FID** (Miyato & Koyama 2018, §5.1 "intra FID"): the FID between generated
  images of class c and real test images of class c, in the evaluator's feature space, for
  every class; the score is their mean. It penalises what the overall FID cannot see:
  right-looking images of the wrong class, and classes that collapse to a few modes.
* **FID** of all generated images (equal numbers per class) against the whole real split,
  comparable with an unconditional model's FID under the same evaluator.

This module holds the pure part (features, predictions and labels in; numbers out):
:func:`conditional_scores`, and :func:`format_conditional` to print its result as a table.
Generating the images and loading the real ones is the conditional task's use-time face
(:meth:`ganforge.training.tasks.conditional.ConditionalModel.class_scores`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch

from ganforge.core.errors import EvalError
from ganforge.data.classes import normalize_class_name
from ganforge.metrics.fid import fid_from_features


def class_index_map(run_names: Sequence[str], evaluator_names: Sequence[str]) -> torch.Tensor:
    """For each class of the run, the evaluator's index of the same class (matched by name in
    the forgiving spelling of ``--class``)."""
    ev = [normalize_class_name(n) for n in evaluator_names]
    idx: List[int] = []
    for n in run_names:
        key = normalize_class_name(n)
        if key not in ev:
            raise EvalError(f"the evaluator's classes ({', '.join(map(str, evaluator_names))}) do not "
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


def format_conditional(result: Dict[str, Any]) -> str:
    """The result of ``ConditionalModel.class_scores`` (ganforge/training/tasks/conditional.py) as a
    plain-text table."""
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
