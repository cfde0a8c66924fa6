"""Evaluation glue: which extractor, which real data, cached reference features, scores.

``ganforge eval`` and ``--eval-every`` during training both go through this module; the
maths lives in :mod:`ganforge.metrics` (pure functions). Reference features of real data are
computed once per (dataset, split, extractor + weights hash, resolution, channels, n) and cached
on disk under ``<cache>/refstats/``; changing any of those makes a new entry (the key is the
hash of all of them), so a stale cache can never be used.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import torch

from ganforge.checkpoint import atomic_save
from ganforge.data import load_dataset, to_float
from ganforge.data.paths import cache_dir
from ganforge.errors import UserError
from ganforge.metrics import EXTRACTORS, METRICS, FeatureExtractor, compute_metrics, extract_features

DEFAULT_EVAL_METRICS = ("fid", "kid", "pr", "dc")


class EvalError(UserError, ValueError):
    """A user-facing evaluation problem (bad metric name, missing extractor, ...)."""


def parse_metrics(text: str | Sequence[str]) -> Tuple[str, ...]:
    names = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise EvalError(f"--metrics: unknown metric {', '.join(bad)}; choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names)) or DEFAULT_EVAL_METRICS


def get_extractor(name: str, *, data_spec: str, img_size: int = 0, weights: Optional[str] = None,
                  device: str | torch.device = "cpu") -> FeatureExtractor:
    """``domain``: the classifier trained on ``data_spec``'s dataset; ``inception``: FID Inception."""
    if name == "domain":
        base = data_spec.split(":")[0] if not os.path.exists(data_spec) else data_spec
        return EXTRACTORS.build("domain", data=base, weights=weights, img_size=img_size, device=device)
    if name == "inception":
        from ganforge.metrics import load_inception
        return load_inception(weights).to(device)
    return EXTRACTORS.build(name, weights=weights).to(device)


def _ref_key(data_name: str, split: str, extractor: FeatureExtractor, img_size: int, channels: int,
             n: int, limit_note: str = "") -> str:
    blob = json.dumps({"data": data_name, "split": split, "extractor": extractor.cache_key,
                       "size": img_size, "channels": channels, "n": n, "extra": limit_note}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def real_features(extractor: FeatureExtractor, data_spec: str, split: str = "test", *,
                  img_size: int = 0, channels: int = 0, n: int = 0, data_dir: Optional[str] = None,
                  with_logits: bool = False, cache: bool = True, progress: bool = False,
                  labels: bool = False) -> Dict[str, Any]:
    """Features (and labels) of real images, from the on-disk cache when present."""
    ds = load_dataset(data_spec, split, img_size=img_size, channels=channels, data_dir=data_dir)
    total = ds.images.shape[0]
    n = total if n <= 0 else min(n, total)
    key = _ref_key(ds.name, split, extractor, ds.images.shape[-1], ds.images.shape[1], n,
                   limit_note=f"{total}:{with_logits}")
    path = cache_dir() / "refstats" / f"{_slug(ds.name)}-{key}.pt"
    if cache and path.exists():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry.get("key") == key:
                return entry
        except Exception:
            pass   # unreadable cache entry: recompute and overwrite
    # A fixed, spread-out subset when n < total (the first n of a sorted dataset could be
    # all one class).
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(1234))[:n].sort().values
    images = ds.images.index_select(0, idx)
    ex = extract_features(extractor, _float_batches(images, 500), batch_size=500,
                          with_logits=with_logits, progress=progress)
    entry = {"key": key, "data": ds.name, "split": split, "n": n, "features": ex.features,
             "logits": ex.logits, "labels": ds.labels.index_select(0, idx) if ds.labels is not None else None,
             "class_names": ds.class_names, "img_size": ds.images.shape[-1], "channels": ds.images.shape[1]}
    if cache:
        atomic_save(entry, path)
    return entry


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[-60:]


def _float_batches(images_u8: torch.Tensor, bs: int) -> Iterable[torch.Tensor]:
    for i in range(0, images_u8.shape[0], bs):
        yield to_float(images_u8[i:i + bs])


def score(real: Dict[str, Any], fake_feats: torch.Tensor, metrics: Sequence[str],
          fake_logits: Optional[torch.Tensor] = None, seed: int = 0) -> Dict[str, float]:
    """Compare fake features with a real-feature entry; KID subset size adapts to small n."""
    n = min(real["features"].shape[0], fake_feats.shape[0])
    kw: Dict[str, Any] = {"kid_subset_size": min(1000, n), "kid_subsets": 100 if n >= 1000 else 50}
    if "is" in metrics and fake_logits is None:
        raise EvalError("the Inception Score needs an extractor with class logits")
    return compute_metrics(real["features"], fake_feats, metrics=list(metrics), fake_logits=fake_logits,
                           seed=seed, **kw)


@torch.no_grad()
def generated_batches(G: torch.nn.Module, n: int, *, seed: int = 0, batch_size: int = 250,
                      device: str | torch.device = "cpu") -> Iterable[torch.Tensor]:
    """Images from a generator; a class-conditional G gets every class in turn (balanced)."""
    g = torch.Generator().manual_seed(seed)
    k = int(getattr(G, "n_classes", 0) or 0)
    was = G.training
    G.eval()
    try:
        for i in range(0, n, batch_size):
            m = min(batch_size, n - i)
            z = torch.randn(m, G.z_dim, generator=g).to(device)
            x = G(z) if not k else G(z, (torch.arange(i, i + m) % k).to(device))
            yield x.float().clamp(-1, 1)
    finally:
        G.train(was)


def evaluate_generator(G: torch.nn.Module, extractor: FeatureExtractor, real: Dict[str, Any], *,
                       n: int, metrics: Sequence[str], seed: int = 0,
                       device: str | torch.device = "cpu") -> Dict[str, float]:
    with_logits = "is" in metrics
    ex = extract_features(extractor, generated_batches(G, n, seed=seed, device=device),
                          with_logits=with_logits)
    return score(real, ex.features, metrics, fake_logits=ex.logits, seed=seed)


def evaluate_run(run: str, *, metrics: Sequence[str] = DEFAULT_EVAL_METRICS, n: int = 10000,
                 extractor: str = "domain", weights: Optional[str] = None, split: str = "test",
                 seed: int = 0, which: str = "latest", device: str = "cpu",
                 data_dir: Optional[str] = None, progress: bool = True,
                 ema: bool = True) -> Dict[str, Any]:
    """Score a trained run's generator against the real split of the data it trained on
    (its weight average when the run kept one, unless ``ema`` is false: ``--no-ema``).

    Conditional runs add class accuracy (per class) and intra-class FID; CycleGAN runs are
    scored as translations (target-class rate, cycle L1, FID of translated vs real target)."""
    from ganforge.checkpoint import find_checkpoint, load_checkpoint
    from ganforge.sampling import load_generator
    task = load_checkpoint(find_checkpoint(run, which)).get("task", "gan")
    if task == "cyclegan":
        if extractor != "domain":
            raise EvalError("cyclegan runs are scored with the domain evaluator (--extractor domain)")
        from ganforge.metrics.translation import evaluate_translation
        scores = evaluate_translation(run, evaluator=weights, n=min(n, 1000) if n else 1000, which=which,
                                      device=device, data_dir=data_dir, ema=ema)
        return {"run": str(run), "task": task, **scores}
    G, st = load_generator(run, which, device, ema=ema)
    data = st["data"]
    cfg = st["config"]["data"]
    spec = cfg["name"]
    ex = get_extractor(extractor, data_spec=spec, img_size=data["img_size"], weights=weights, device=device)
    real = real_features(ex, spec, split, img_size=data["img_size"], channels=data["channels"],
                         n=n, data_dir=data_dir or cfg.get("data_dir"), with_logits=False, progress=progress)
    scores = evaluate_generator(G, ex, real, n=n, metrics=metrics, seed=seed, device=device)
    result = {"run": str(run), "task": task, "step": st["step"], "extractor": ex.name,
              "generator": "G_ema" if ema and "G_ema" in st["modules"] else "G",
              "real": f"{real['data']} ({split})", "n_real": real["n"], "n_fake": n, **scores}
    if task == "conditional" and extractor == "domain":
        from ganforge.metrics.conditional import evaluate_conditional
        k = int(getattr(G, "n_classes", 0) or 1)
        cond = evaluate_conditional(run, evaluator=weights, n_per_class=max(50, n // k), seed=seed,
                                    which=which, split=split, device=device, data_dir=data_dir,
                                    ema=ema)
        result.update({k_: v for k_, v in cond.items() if k_ not in result})
    return result


def evaluate_pair(real_spec: str, fake_spec: str, *, metrics: Sequence[str] = DEFAULT_EVAL_METRICS,
                  n: int = 10000, extractor: str = "domain", weights: Optional[str] = None,
                  img_size: int = 0, channels: int = 0, seed: int = 0, device: str = "cpu",
                  data_dir: Optional[str] = None, progress: bool = True) -> Dict[str, Any]:
    """Score two datasets/folders against each other (floors, or users' own comparisons).

    ``fashion-mnist:train`` names a split; a folder or .npy/.npz file is used whole. The fake
    side is resized/converted to the real side's geometry."""
    real_name, real_split = _split_spec(real_spec)
    ex = get_extractor(extractor, data_spec=real_name, img_size=img_size, weights=weights, device=device)
    real = real_features(ex, real_name, real_split, img_size=img_size, channels=channels, n=n,
                         data_dir=data_dir, progress=progress)
    fake_name, fake_split = _split_spec(fake_spec)
    fake = real_features(ex, fake_name, fake_split, img_size=real["img_size"], channels=real["channels"],
                         n=n, data_dir=data_dir, progress=progress, with_logits="is" in metrics)
    scores = score(real, fake["features"], metrics, fake_logits=fake.get("logits"), seed=seed)
    return {"real": f"{real['data']} ({real_split})", "fake": f"{fake['data']} ({fake_split})",
            "extractor": ex.name, "n_real": real["n"], "n_fake": fake["n"], **scores}


def _split_spec(spec: str) -> Tuple[str, str]:
    if os.path.exists(spec):
        return spec, "train"
    if ":" in spec:
        name, split = spec.split(":", 1)
        return name, split
    return spec, "train"


def format_table(result: Dict[str, Any]) -> str:
    rows = [(k, v) for k, v in result.items()]
    width = max(len(k) for k, _ in rows)
    out = []
    for k, v in rows:
        if isinstance(v, float):
            v = f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
        out.append(f"{k:<{width}}  {v}")
    return "\n".join(out)
