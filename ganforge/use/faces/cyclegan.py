"""The face of the CycleGAN task (``cyclegan``): two generators translating images between
domains A and B (paper G: X -> Y is ``G_AB``, F: Y -> X is ``G_BA``).

The training half is :mod:`ganforge.training.tasks.cyclegan`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ganforge.core.errors import EvalError
from ganforge.data import to_float
from ganforge.data.base import DATASETS, DataError
from ganforge.data.domains import (
    domain_specs,
    load_domain,
    normalize_class,
    parse_domain,
    to_test_split,
)
from ganforge.metrics import DEFAULT_METRICS
from ganforge.metrics.domain.network import load_evaluator
from ganforge.metrics.fid import fid_from_features
from ganforge.render.images import stack_bands, triplet_grid
from ganforge.use.face import FACES, EvalRequest, Generator

DIRECTIONS = ("a2b", "b2a")


def pick(nets: Dict[str, torch.nn.Module], direction: str) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """(forward, backward) generators for ``direction``: a2b -> (G_AB, G_BA), b2a -> (G_BA, G_AB)."""
    if direction not in DIRECTIONS:
        raise DataError(f"--direction '{direction}': use a2b or b2a")
    return (nets["G_AB"], nets["G_BA"]) if direction == "a2b" else (nets["G_BA"], nets["G_AB"])


@FACES.register("cyclegan", help="two generators translating images A <-> B")
class TranslationModel(Generator):
    """A trained CycleGAN: ``G_AB`` translates domain A into B, ``G_BA`` B into A.

    ``translate(images, "a2b"|"b2a")`` takes float [-1, 1] NCHW images at the run's size and
    channel count (:meth:`source_images` gives the run's own test images of a domain).
    ``evaluate`` scores the translations of each domain's test images (see
    :meth:`translation_scores`)."""

    inputs = "image"
    generators = ("G_AB", "G_BA")
    usage = ("which translates images rather than sampling from noise; use `ganforge translate "
             "RUN --direction a2b INPUT --out DIR`")
    directions = DIRECTIONS

    @torch.no_grad()
    def _translate(self, images: torch.Tensor, direction: str, batch_size: int, reconstruct: bool
                   ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(translated, reconstructed or None): float32 [-1, 1] CPU tensors shaped like
        ``images``, ``batch_size`` images at a time (checked by the base's ``translate``)."""
        fwd, back = pick(self.modules, direction)
        dev = self.device
        outs, recs = [], []
        for i in range(0, images.shape[0], batch_size):
            y = fwd(images[i:i + batch_size].to(dev)).float().clamp(-1, 1)
            outs.append(y.cpu())
            if reconstruct:
                recs.append(back(y).float().clamp(-1, 1).cpu())
        empty = torch.empty(0, *images.shape[1:])
        out = torch.cat(outs) if outs else empty
        rec = (torch.cat(recs) if recs else empty) if reconstruct else None
        return out, rec

    def example_inputs(self, name: str, n: int = 2, seed: int = 0):
        info = self.info
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, info.channels, info.img_size, info.img_size, generator=g) * 2 - 1
        return (x,), ("images",)

    def preview(self, fixed: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """Rows of input | translated | reconstructed for both directions, from the run's
        stored grid inputs (``fixed``), else from its domains' test images."""
        bands = []
        for which, direction in (("a", "a2b"), ("b", "b2a")):
            x = (fixed or {}).get(which)
            if x is None:
                x = to_float(self.domain_images(which, limit=8)[0])
            x = x[:8].float().cpu()
            out, rec = self.round_trip(x, direction)
            bands.append(triplet_grid(x, out, rec))
        return stack_bands(bands)

    def domain_spec(self, which: str) -> str:
        """The training domain spec of domain ``which`` ('a' or 'b')."""
        cfg = self.info.config
        cg = cfg.get("cyclegan") or {}
        a, b = domain_specs(cfg.get("data", {}).get("name", ""), cg.get("domain_a", ""),
                            cg.get("domain_b", ""))
        return a if which == "a" else b

    def domain_images(self, which: str, split: str = "test", *, limit: int = 0,
                      data_dir: Optional[str] = None) -> Tuple[torch.Tensor, str]:
        """uint8 (N, C, H, W) images of the run's own domain ``which`` ('a'/'b') at the run's
        size, and the name of what was loaded. ``split='test'`` falls back to the training
        images when the domain has no test split."""
        spec = parse_domain(self.domain_spec(which))
        if split == "test":
            t = to_test_split(spec)
            spec = t if t is not None else spec
        ds = load_domain(spec, "train", img_size=self.info.img_size, channels=self.info.channels,
                         limit=limit, data_dir=data_dir or self.info.data_dir)
        return ds.images, ds.name

    def source_images(self, direction: str, split: str = "test", *, limit: int = 0,
                      data_dir: Optional[str] = None) -> Tuple[torch.Tensor, str]:
        """:meth:`domain_images` of the source domain of ``direction``."""
        direction = self.check_direction(direction)
        return self.domain_images("a" if direction == "a2b" else "b", split, limit=limit,
                                  data_dir=data_dir)

    def _evaluate(self, req: EvalRequest) -> Dict[str, Any]:
        if req.extractor != "domain":
            raise EvalError("cyclegan runs are scored with the domain evaluator (--extractor domain)")
        if tuple(req.metrics) != tuple(DEFAULT_METRICS):
            # it was silently ignored: a translation run has its own fixed set of scores
            raise EvalError(f"--metrics {','.join(req.metrics)}: a cyclegan run is scored with "
                            f"its own set (cycle L1, the target-class rates and a FID per "
                            f"direction); drop --metrics")
        ev = _resolve_evaluator(req.weights, self.info.img_size, self.domain_spec("a"),
                                self.domain_spec("b"), req.device)
        scores: Dict[str, Any] = dict(self.translation_scores(
            evaluator=ev, n=min(req.n, 1000) if req.n else 1000, device=req.device,
            data_dir=req.data_dir))
        if ev is not None:
            scores["extractor"] = ev.label        # the ruler the FIDs and rates were taken with
        return scores

    @torch.no_grad()
    def translation_scores(self, evaluator: Any = None, n: int = 1000, *,
                           device: str | torch.device = "cpu", batch_size: int = 250,
                           data_dir: Optional[str] = None) -> Dict[str, float]:
        """Scores on up to ``n`` test images per domain (the first n, so repeated calls agree).

        For each direction (a2b: G_AB on test A; b2a: G_BA on test B):

        - ``*_target_rate``: fraction of translated images that a classifier (the domain
          evaluator, trained on the whole labeled dataset) assigns to the *target* domain's
          class. ``real_*_rate`` is the same classifier on the real test images of that class:
          the ceiling the translations can be compared with.
        - ``cycle_l1_*``: mean absolute error per pixel between an image and its round trip
          (``F(G(x))`` vs ``x``), in [-1, 1] units (a uniform error of 0.1 is 5 % of the range).
        - ``fid_*``: Fréchet distance, in the evaluator's feature space, between the translated
          images and the real test images of the target domain. ``fid_real_a_vs_b`` (the two
          real test sets) is the score of "translating" by doing nothing, for scale.

        ``evaluator``: None (the stored domain evaluator of the domains' dataset, when both are
        classes of one named dataset), a dataset spec or evaluator file path, or an object with
        ``predict(x)``, ``features(x)`` and ``class_names``. Without one only the cycle scores
        are computed (with a warning). Returns a flat ``{name: float}``: ``cycle_l1``,
        ``cycle_l1_a``, ``cycle_l1_b``, ``n_a``, ``n_b`` always; with an evaluator also
        ``target_rate``, ``a2b_target_rate``, ``b2a_target_rate``, ``real_a_rate``,
        ``real_b_rate``, ``fid_a2b``, ``fid_b2a``, ``fid_real_a_vs_b``."""
        self.to(device)
        spec_a, spec_b = self.domain_spec("a"), self.domain_spec("b")
        xa = to_float(self.domain_images("a", "test", limit=n, data_dir=data_dir)[0])
        xb = to_float(self.domain_images("b", "test", limit=n, data_dir=data_dir)[0])
        fake_b, rec_a = self.round_trip(xa, "a2b", batch_size=batch_size)
        fake_a, rec_b = self.round_trip(xb, "b2a", batch_size=batch_size)
        out: Dict[str, float] = {"n_a": float(len(xa)), "n_b": float(len(xb))}
        out["cycle_l1_a"] = float((rec_a - xa).abs().mean())
        out["cycle_l1_b"] = float((rec_b - xb).abs().mean())
        out["cycle_l1"] = (out["cycle_l1_a"] + out["cycle_l1_b"]) / 2

        ev = _resolve_evaluator(evaluator, self.info.img_size, spec_a, spec_b, device)
        if ev is None:
            warnings.warn(f"translation scores: no classifier for domains '{spec_a}' / '{spec_b}' "
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
            warnings.warn(f"translation scores: the evaluator's classes "
                          f"({', '.join(getattr(ev, 'class_names', []))}) do not name the domains "
                          f"'{spec_a}' / '{spec_b}'; target-class rates skipped", stacklevel=2)
        f_xa, f_xb, f_fb, f_fa = feats(xa), feats(xb), feats(fake_b), feats(fake_a)
        if min(len(xa), len(xb)) >= 2:
            out["fid_a2b"] = fid_from_features(f_xb, f_fb)
            out["fid_b2a"] = fid_from_features(f_xa, f_fa)
            out["fid_real_a_vs_b"] = fid_from_features(f_xa, f_xb)
        return out


def _domain_class(spec: str) -> Tuple[Optional[str], Optional[str]]:
    """(registered dataset, class) of a domain spec, or (None, None) for other domains."""
    try:
        s = parse_domain(spec)
    except DataError:
        return None, None
    return (s.source, s.cls) if s.source in DATASETS and s.cls else (None, None)


def _resolve_evaluator(evaluator: Any, img_size: int, spec_a: str, spec_b: str, device):
    if evaluator is None:
        (da, _), (db, _) = _domain_class(spec_a), _domain_class(spec_b)
        if da is None or da != db:
            return None
        return load_evaluator(da, img_size=img_size, device=device)
    if isinstance(evaluator, (str, Path)):
        return load_evaluator(evaluator, img_size=img_size, device=device)
    return evaluator


def _class_index(evaluator, spec: str) -> Optional[int]:
    _, cls = _domain_class(spec)
    if cls is None:                  # a folder domain: try its folder name as the class
        try:
            cls = Path(parse_domain(spec).source).name
        except DataError:
            return None
    names = [normalize_class(c) for c in getattr(evaluator, "class_names", [])]
    key = normalize_class(cls)
    return names.index(key) if key in names else None


def format_translation(scores: Dict[str, float]) -> str:
    """A small text table of :meth:`TranslationModel.translation_scores`' result."""
    rows = []
    for k, v in scores.items():
        if k.startswith("n_"):
            rows.append(f"  {k:<18} {int(v)}")
        elif "rate" in k:
            rows.append(f"  {k:<18} {v:7.2%}")
        else:
            rows.append(f"  {k:<18} {v:9.4f}")
    return "\n".join(rows)
