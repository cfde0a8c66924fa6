"""The face of the pix2pix task (``pix2pix``): one generator ``G`` that turns a condition image
(edges, a grey picture, a map) into its target image; one direction, ``a2b``.

The training half is :mod:`ganforge.training.tasks.pix2pix`; the pairs
:mod:`ganforge.data.pairs`.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from ganforge.core.errors import EvalError
from ganforge.data import to_float
from ganforge.render.images import stack_bands, triplet_grid
from ganforge.use.face import FACES, EvalRequest, Generator
from ganforge.use.inputs import ImageInput, images_to_tensor


@FACES.register("pix2pix", help="one generator translating condition images A into targets B")
class PairedModel(Generator):
    """A trained pix2pix: ``G`` translates a condition image into its target.

    ``translate(images)`` takes the condition images (float [-1, 1] NCHW at the run's size and
    the condition's channel count: ``cond_channels``; or PIL images / paths, converted);
    the output has the run's ``channels``. There is no way back, so ``round_trip`` gives None
    for the reconstruction. :meth:`source_images` / :meth:`target_images` give the run's own
    test pairs."""

    inputs = "image"
    generators = ("G",)
    usage = ("which translates condition images rather than sampling from noise; use "
             "`ganforge translate RUN INPUT --out DIR`")
    directions = ("a2b",)

    @property
    def cond_channels(self) -> int:
        """Channels of the condition images G takes (1: edges or grey; 3: colour)."""
        return int(getattr(self.modules["G"], "channels", self.info.channels))

    def prepare_images(self, images: ImageInput) -> torch.Tensor:
        return images_to_tensor(images, self.info.img_size, self.cond_channels)

    @torch.no_grad()
    def _translate(self, images: torch.Tensor, direction: str, batch_size: int, reconstruct: bool
                   ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        G, dev = self.modules["G"], self.device
        outs = [G(images[i:i + batch_size].to(dev)).float().clamp(-1, 1).cpu()
                for i in range(0, images.shape[0], batch_size)]
        out = torch.cat(outs) if outs else torch.empty(0, self.info.channels, *images.shape[2:])
        return out, None

    # ------------------------------------------------------------------ the run's own pairs
    def _pairs(self, split: str, limit: int, data_dir: Optional[str]):
        from ganforge.data.pairs import load_pairs  # the data loaders only when asked
        cfg = self.info.config
        p, d = cfg.get("pix2pix") or {}, cfg.get("data") or {}
        own = p.get("data_a") or p.get("data_b") or p.get("aligned")
        pairs = load_pairs(pairs="" if own else d.get("name", ""), data_a=p.get("data_a", ""),
                           data_b=p.get("data_b", ""), aligned=p.get("aligned", ""),
                           direction=p.get("direction", "a2b"), img_size=self.info.img_size,
                           data_dir=data_dir or self.info.data_dir,
                           limit=limit if split != "test" else 0)
        ds = pairs.test if split == "test" and pairs.test is not None else pairs.train
        x = ds.images if not limit else ds.gather(torch.arange(min(limit, len(ds))))
        return pairs.split(x), ds.name

    def source_images(self, direction: str, split: str = "test", *, limit: int = 0,
                      data_dir: Optional[str] = None) -> Tuple[torch.Tensor, str]:
        self.check_direction(direction)
        (c, _), name = self._pairs(split, limit, data_dir)
        return c, name

    def target_images(self, split: str = "test", *, limit: int = 0,
                      data_dir: Optional[str] = None) -> Tuple[torch.Tensor, str]:
        """uint8 targets of the run's own pairs (the same images :meth:`source_images` gives
        the conditions of)."""
        (_, y), name = self._pairs(split, limit, data_dir)
        return y, name

    # ------------------------------------------------------------------ pictures, export
    def example_inputs(self, name: str, n: int = 2, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        s = self.info.img_size
        return (torch.rand(n, self.cond_channels, s, s, generator=g) * 2 - 1,), ("images",)

    def preview(self, fixed: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """Rows of condition | output | target, from the run's stored grid pairs (``fixed``),
        else from its own test pairs."""
        if fixed and "c" in fixed:
            c, y = fixed["c"][:8].float().cpu(), fixed["y"][:8].float().cpu()
        else:
            (c, y), _ = self._pairs("test", 8, None)
            c, y = to_float(c), to_float(y)
        out, _ = self._translate(c, "a2b", 64, False)
        return stack_bands([triplet_grid(c, out, y)])

    # ------------------------------------------------------------------ scores
    def _evaluate(self, req: EvalRequest) -> Dict[str, Any]:
        """L1, PSNR and SSIM of the outputs against the targets of the run's test pairs (the
        training pairs when there is no test split), up to ``n`` pairs; with an evaluator
        file (``--weights``), also the FID of the outputs against the targets in its feature
        space (``fid``, the ``extractor`` named)."""
        from ganforge.metrics.paired import paired_scores  # the library only when asked
        if req.extractor != "domain":
            raise EvalError("pix2pix runs are scored against their targets (L1, PSNR, SSIM, and "
                            "FID with a domain evaluator given by --weights); use --extractor domain")
        (c, y), name = self._pairs(req.split, 0, req.data_dir)
        c, y = c[:req.n], y[:req.n]
        target = to_float(y)
        out, _ = self._translate(to_float(c), "a2b", 64, False)
        res: Dict[str, Any] = {"run": str(self.info.source), "pairs": name, "n": int(len(c)),
                               **paired_scores(out, target)}
        if req.weights:
            from ganforge.metrics.domain.network import load_evaluator
            from ganforge.metrics.fid import fid_from_features
            ev = load_evaluator(req.weights, device=req.device)
            if len(c) >= 2:
                res["fid"] = fid_from_features(ev.features(target).cpu(), ev.features(out).cpu())
                res["extractor"] = ev.label
        return res
