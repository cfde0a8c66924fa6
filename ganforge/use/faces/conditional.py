"""The face of the class-conditional GAN task (``conditional``): ``G(z, y)``, noise and a class.

The training half is :mod:`ganforge.training.tasks.conditional`; the class scores' maths is
:mod:`ganforge.metrics.per_class`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from ganforge.core.errors import EvalError, UserError
from ganforge.data.classes import resolve_class
from ganforge.metrics import caveats, scoring
from ganforge.metrics.domain.network import load_evaluator
from ganforge.metrics.per_class import class_index_map, conditional_scores
from ganforge.render.images import make_grid
from ganforge.use.face import FACES, EvalRequest
from ganforge.use.faces.gan import NoiseModel, generate

#: ``classes="all"`` (``--class all``): every class in turn
ALL = "all"


@FACES.register("conditional", help="a class-conditional generator G(z, y)")
class ConditionalModel(NoiseModel):
    """A trained class-conditional GAN: ``G(z, y)`` with ``y`` one of ``class_names``.

    ``sample(n, seed, classes)``: ``classes`` is one class for all n (an index or a name, in
    the forgiving spelling of ``--class``: any case, ``-``/``_``/space/``/`` alike), a
    sequence of n, or ``"all"`` (every class in turn, ceil(n / K) images of each, in class
    order); None draws the classes as G's training labels were (``label_probs``).
    The same seed and class give the same images however the class is named.
    ``evaluate`` adds to the unconditional scores, with the domain evaluator, the class
    accuracy, per-class table and intra-class FID of :meth:`class_scores`."""

    @classmethod
    def classes_of(cls, data_classes: Optional[Sequence[str]], nets: Mapping[str, torch.nn.Module]
                   ) -> List[str]:
        """The data's class names, or ``"0"``, ``"1"``, ... when the run kept none."""
        k = int(nets["G"].n_classes)
        return list(data_classes or [str(i) for i in range(k)])

    def _labels(self, n: int, seed: int, classes: Any) -> torch.Tensor:
        """The (n,) int64 labels for ``classes`` (see the class docstring); ``n`` checked."""
        names, k = self.class_names, len(self.class_names)
        if isinstance(classes, str) and classes.strip().lower() == ALL:
            return torch.arange(k).repeat_interleave(math.ceil(n / k))[:n]
        if classes is None:
            prior = self.task_state.get("label_probs")   # G's training label distribution
            probs = prior.double().cpu() if prior is not None and prior.sum() > 0 \
                else torch.ones(k, dtype=torch.float64)
            return torch.multinomial(probs / probs.sum(), n, replacement=True,
                                     generator=torch.Generator().manual_seed(seed + 1))
        if isinstance(classes, torch.Tensor) and classes.dim() == 1:
            classes = classes.tolist()
        if isinstance(classes, Sequence) and not isinstance(classes, str):
            y = [resolve_class(c, names) for c in classes]
            if len(y) != n:
                raise UserError(f"classes: got {len(y)} classes for n={n} images; give one class "
                                f"or one per image")
            return torch.tensor(y, dtype=torch.int64)
        return torch.full((n,), resolve_class(classes, names), dtype=torch.int64)

    def _generate_batch(self, G: torch.nn.Module, z: torch.Tensor, start: int) -> torch.Tensor:
        k = int(G.n_classes)      # every class in turn: balanced
        return G(z, (torch.arange(start, start + z.shape[0]) % k).to(z.device))

    def export_state(self) -> Dict[str, Any]:
        probs = self.task_state.get("label_probs")
        return {} if probs is None else {"label_probs": probs.float().cpu().tolist()}

    @classmethod
    def import_state(cls, state: Dict[str, Any]) -> Dict[str, Any]:
        probs = state.get("label_probs")
        return {} if probs is None else {"label_probs": torch.tensor(probs, dtype=torch.float32)}

    def example_inputs(self, name: str, n: int = 2, seed: int = 0):
        (z,), _ = super().example_inputs(name, n, seed)
        k = int(self.modules[name].n_classes)
        return (z, torch.arange(n, dtype=torch.int64) % k), ("z", "labels")

    def preview(self, fixed: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        k = len(self.class_names)
        per = 8 if k <= 16 else 1          # one row per class (or one image each, K > 16)
        classes = [c for c in range(k) for _ in range(per)]
        return make_grid(self.sample(len(classes), seed=0, classes=classes), nrow=8)

    def _evaluate(self, req: EvalRequest) -> Dict[str, Any]:
        result = super()._evaluate(req)
        if req.extractor == "domain":
            k = len(self.class_names)
            cond = self.class_scores(evaluator=req.weights, n_per_class=max(50, req.n // k),
                                     seed=req.seed, split=req.split, device=req.device,
                                     data_dir=req.data_dir)
            result.update({key: v for key, v in cond.items() if key not in result and key != "run"})
        return result

    def class_scores(self, evaluator=None, n_per_class: int = 1000, *, seed: int = 0,
                     split: str = "test", device: str = "cpu", data_dir: Optional[str] = None,
                     progress: bool = False) -> Dict[str, Any]:
        """Class accuracy, per-class table, intra-class FID and FID (see
        :mod:`ganforge.metrics.per_class`).

        ``evaluator``: None (the stored domain evaluator of the run's dataset, at the run's
        image size), an evaluator file path, or a loaded evaluator (anything with
        ``features_and_logits`` and ``class_names``). ``n_per_class`` images are generated for
        each class (seeded); the real side is the dataset's ``split`` (all of it), falling back
        to the training images for a folder without a test split. Returns a dict:
        ``accuracy``, ``intra_fid``, ``fid``, ``per_class`` (list of {class, index, accuracy,
        real_accuracy, fid, n_fake, n_real}), ``confusion`` (rows: requested class, columns:
        predicted), and what was compared. Raises :class:`EvalError` for n_per_class < 2, an
        evaluator without the run's classes, or real data without labels."""
        if n_per_class < 2:
            raise EvalError(f"n_per_class={n_per_class}: need at least 2 images per class for a FID")
        info = self.info
        names, k = self.class_names, len(self.class_names)
        spec = info.data
        data_dir = data_dir or info.data_dir
        if evaluator is None:
            ev = scoring.get_extractor("domain", data_spec=spec, img_size=info.img_size, device=device)
        elif isinstance(evaluator, (str, Path)):
            ev = load_evaluator(evaluator, device=device)
        else:
            ev = evaluator
        to_ev = class_index_map(names, ev.class_names)
        from_ev = torch.full((len(ev.class_names),), -1, dtype=torch.int64)
        from_ev[to_ev] = torch.arange(k)

        labels = torch.arange(k).repeat_interleave(n_per_class)
        x = generate(self.generator, len(labels), seed=seed, device=self.device, labels=labels)
        feats, logits = ev.features_and_logits(x)
        pred = from_ev[logits.cpu().argmax(1)]          # -1: a class the run does not have

        opts = dict(img_size=info.img_size, channels=info.channels, n=0, data_dir=data_dir,
                    with_logits=True, progress=progress)
        real = scoring.real_features(ev, spec, split, **opts)   # no test split: the train images
        used = real["split"]
        if real.get("labels") is None:
            raise EvalError(f"the real data '{real['data']}' ({used}) has no labels; intra-class "
                            f"FID needs them")
        real_names = list(real.get("class_names") or names)
        real_y = class_index_map(real_names, names)[real["labels"].long()]  # into the run's order
        real_pred = from_ev[real["logits"].argmax(1)] if real.get("logits") is not None else None
        out = conditional_scores(feats.cpu(), pred, labels, real["features"], real_y, k, real_pred)
        fewest_real = int(torch.bincount(real_y[real_y >= 0], minlength=k).min())
        cav = [f"intra-class {c}" for c in caveats(("fid",), fewest_real, n_per_class,
                                                   feats.shape[1])]
        for row in out["per_class"]:
            row["class"] = names[row["index"]]
        return {"run": str(info.source), "step": info.step, "extractor": ev.label,
                "evaluator": str(getattr(ev, "path", "") or ""),
                "evaluator_accuracy": float(getattr(ev, "accuracy", float("nan"))),
                "real": f"{real['data']} ({used})", "n_per_class": n_per_class,
                "n_real": int(real["features"].shape[0]), **out,
                **({"caveats": cav} if cav else {})}
