"""Scores of a CycleGAN run on its domains' test images (``evaluate_translation``).

For each direction (a2b: G_AB on test A; b2a: G_BA on test B):

- ``*_target_rate``: fraction of translated images that a classifier (the domain evaluator,
  :mod:`ganforge.metrics.domain`, trained on the whole labeled dataset) assigns to the
  *target* domain's class. ``real_*_rate`` is the same classifier on the real test images of
  that class: the ceiling the translations can be compared with.
- ``cycle_l1_*``: mean absolute error per pixel between an image and its round trip
  (``F(G(x))`` vs ``x``), in [-1, 1] units (a uniform error of 0.1 is 5 % of the range).
- ``fid_*``: Fréchet distance, in the evaluator's feature space, between the translated images
  and the real test images of the target domain. ``fid_real_a_vs_b`` (the two real test sets)
  is the score of "translating" by doing nothing, for scale.

Domains that are classes of a named dataset (``fashion-mnist:sneaker``) find their evaluator
on their own (``ganforge evaluator train --data fashion-mnist`` once). For folder domains
pass an evaluator whose ``class_names`` contain the two domains' names, or get only the cycle
scores (with a warning).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ganforge.data import to_float


def _domain_class(spec: str) -> Tuple[Optional[str], Optional[str]]:
    """(registered dataset, class) of a domain spec, or (None, None) for other domains."""
    from ganforge.data.base import DATASETS
    from ganforge.data.domains import parse_domain
    try:
        s = parse_domain(spec)
    except Exception:
        return None, None
    return (s.source, s.cls) if s.source in DATASETS and s.cls else (None, None)


def _resolve_evaluator(evaluator: Any, st: Dict, spec_a: str, spec_b: str, device):
    from ganforge.metrics.domain import load_evaluator
    size = int(st.get("data", {}).get("img_size", 0))
    if evaluator is None:
        (da, _), (db, _) = _domain_class(spec_a), _domain_class(spec_b)
        if da is None or da != db:
            return None
        return load_evaluator(da, img_size=size, device=device)
    if isinstance(evaluator, (str, Path)):
        return load_evaluator(evaluator, img_size=size, device=device)
    return evaluator


def _class_index(evaluator, spec: str) -> Optional[int]:
    from ganforge.data.domains import normalize_class, parse_domain
    _, cls = _domain_class(spec)
    if cls is None:                  # a folder domain: try its folder name as the class
        try:
            cls = Path(parse_domain(spec).source).name
        except Exception:
            return None
    names = [normalize_class(c) for c in getattr(evaluator, "class_names", [])]
    key = normalize_class(cls)
    return names.index(key) if key in names else None


@torch.no_grad()
def evaluate_translation(run_dir: str | Path, evaluator: Any = None, n: int = 1000, *,
                         which: str = "latest", device: str | torch.device = "cpu",
                         batch_size: int = 250, data_dir: Optional[str] = None,
                         ema: bool = True) -> Dict[str, float]:
    """Score the cyclegan run ``run_dir`` on up to ``n`` test images per domain (the first n,
    so repeated calls agree). ``evaluator``: None (find the stored domain evaluator of the
    domains' dataset), a dataset spec or evaluator file path, or an object with
    ``predict(x)``, ``features(x)`` and ``class_names``. Returns a flat ``{name: float}``:
    ``cycle_l1``, ``cycle_l1_a``, ``cycle_l1_b``, ``n_a``, ``n_b`` always; with an evaluator
    also ``target_rate``, ``a2b_target_rate``, ``b2a_target_rate``, ``real_a_rate``,
    ``real_b_rate``, ``fid_a2b``, ``fid_b2a``, ``fid_real_a_vs_b``."""
    from ganforge.metrics.fid import fid_from_features
    from ganforge.translate import load_run_domain, load_translators, run_domain_spec, translate_tensor
    G_AB, G_BA, st = load_translators(run_dir, which, device, ema=ema)
    spec_a, spec_b = run_domain_spec(st, "a"), run_domain_spec(st, "b")
    xa_u8, _ = load_run_domain(st, "a", "test", limit=n, data_dir=data_dir)
    xb_u8, _ = load_run_domain(st, "b", "test", limit=n, data_dir=data_dir)
    xa, xb = to_float(xa_u8), to_float(xb_u8)
    fake_b, rec_a = translate_tensor(G_AB, G_BA, xa, batch_size, device)
    fake_a, rec_b = translate_tensor(G_BA, G_AB, xb, batch_size, device)
    out: Dict[str, float] = {"n_a": float(len(xa)), "n_b": float(len(xb))}
    out["cycle_l1_a"] = float((rec_a - xa).abs().mean())
    out["cycle_l1_b"] = float((rec_b - xb).abs().mean())
    out["cycle_l1"] = (out["cycle_l1_a"] + out["cycle_l1_b"]) / 2

    ev = _resolve_evaluator(evaluator, st, spec_a, spec_b, device)
    if ev is None:
        warnings.warn(f"evaluate_translation: no classifier for domains '{spec_a}' / '{spec_b}' "
                      f"(not classes of one named dataset); only cycle scores computed. Pass "
                      f"evaluator=... for target-class rates and FID", stacklevel=2)
        return out
    ka, kb = _class_index(ev, spec_a), _class_index(ev, spec_b)

    def predict(x):
        return torch.cat([ev.predict(x[i:i + batch_size]).cpu() for i in range(0, len(x), batch_size)])

    def feats(x):
        return torch.cat([ev.features(x[i:i + batch_size]).cpu() for i in range(0, len(x), batch_size)])

    if ka is not None and kb is not None:
        out["a2b_target_rate"] = float((predict(fake_b) == kb).float().mean())
        out["b2a_target_rate"] = float((predict(fake_a) == ka).float().mean())
        out["target_rate"] = (out["a2b_target_rate"] + out["b2a_target_rate"]) / 2
        out["real_a_rate"] = float((predict(xa) == ka).float().mean())
        out["real_b_rate"] = float((predict(xb) == kb).float().mean())
    else:
        warnings.warn(f"evaluate_translation: the evaluator's classes "
                      f"({', '.join(getattr(ev, 'class_names', []))}) do not name the domains "
                      f"'{spec_a}' / '{spec_b}'; target-class rates skipped", stacklevel=2)
    f_xa, f_xb, f_fb, f_fa = feats(xa), feats(xb), feats(fake_b), feats(fake_a)
    if min(len(xa), len(xb)) >= 2:
        out["fid_a2b"] = fid_from_features(f_xb, f_fb)
        out["fid_b2a"] = fid_from_features(f_xa, f_fa)
        out["fid_real_a_vs_b"] = fid_from_features(f_xa, f_xb)
    return out


def format_translation(scores: Dict[str, float]) -> str:
    """A small text table of :func:`evaluate_translation`'s result."""
    rows = []
    for k, v in scores.items():
        if k.startswith("n_"):
            rows.append(f"  {k:<18} {int(v)}")
        elif "rate" in k:
            rows.append(f"  {k:<18} {v:7.2%}")
        else:
            rows.append(f"  {k:<18} {v:9.4f}")
    return "\n".join(rows)
