"""``ganforge eval``: score a trained run, or two datasets against each other.

A run is scored by its face (:meth:`ganforge.use.face.Generator.evaluate`: FID & co. of
generated images, plus class metrics for runs with classes, or translation metrics for
image-to-image runs), which checks the request; this module loads the run, passes the request
on and formats the result. The scoring services (extractors, cached reference features) are
:mod:`ganforge.metrics.scoring`; the maths is :mod:`ganforge.metrics`.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from ganforge.data.spec import DataSpec, parse_spec
from ganforge.metrics import DEFAULT_METRICS
from ganforge.metrics.scoring import get_extractor, real_features, score
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
            "extractor": ex.name, "n_real": real["n"], "n_fake": fake["n"], **scores}


def _split(spec: DataSpec) -> str:
    # What load_dataset calls a split: a named dataset's split, or a folder's subfolder
    # (parse_spec reads FOLDER:SUB as a class selection).
    return spec.split or spec.cls or "train"


def format_table(result: Dict[str, Any]) -> str:
    """``key  value`` lines, floats with 4 decimals (1 above 1000)."""
    rows = [(k, v) for k, v in result.items()]
    width = max(len(k) for k, _ in rows)
    out = []
    for k, v in rows:
        if isinstance(v, float):
            v = f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
        out.append(f"{k:<{width}}  {v}")
    return "\n".join(out)
