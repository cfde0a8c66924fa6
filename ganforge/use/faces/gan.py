"""The face of the unconditional GAN task (``gan``): a generator ``G(z)`` fed with noise.

The training half is :mod:`ganforge.training.tasks.gan`.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

import torch

from ganforge.metrics import scoring
from ganforge.models.latent import check_truncation, truncate_
from ganforge.render.images import make_grid
from ganforge.use.face import FACES, EvalRequest, Generator, eval_mode


@torch.no_grad()
def generate(G: torch.nn.Module, n: int, seed: int = 0, batch_size: int = 256,
             device: str | torch.device = "cpu", labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``n`` images (float32 (n, C, H, W) in [-1, 1], CPU) from ``G``, with noise from a
    generator seeded ``seed`` drawn ``batch_size`` rows at a time (as :meth:`NoiseModel.noise`
    draws it); ``labels`` (n,) int64 are the classes for a conditional G(z, y)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    with eval_mode(G):
        for i in range(0, n, batch_size):
            m = min(batch_size, n - i)
            z = torch.randn(m, G.z_dim, generator=g).to(device)
            x = G(z) if labels is None else G(z, labels[i:i + m].to(device))
            out.append(x.float().clamp(-1, 1).cpu())
    return torch.cat(out) if out else torch.empty(0)


@FACES.register("gan", help="a generator G(z) fed with noise")
class NoiseModel(Generator):
    """A trained unconditional GAN: ``G(z)`` with ``z ~ N(0, I)`` of ``G.z_dim`` dimensions.

    ``sample(n, seed)``: the same seed gives the same images on any device. ``evaluate``: FID,
    KID, precision/recall, density/coverage and the high-frequency ratio (as asked) of ``n``
    samples against the real split of the data the run trained on, in the feature space of the
    requested extractor."""

    inputs = "noise"
    generators = ("G",)
    usage = "which generates images from noise; use `ganforge sample`"

    @property
    def generator(self) -> torch.nn.Module:
        """The generator used (``G``, or its average ``G_ema`` when the run kept one)."""
        return self.modules["G"]

    @property
    def z_dim(self) -> int:
        """Size of the generator's noise vectors."""
        return int(self.generator.z_dim)

    def noise(self, n: int, seed: int = 0, truncation: Optional[float] = None,
              batch_size: int = 256) -> torch.Tensor:
        """The float32 (n, z_dim) CPU noise :meth:`sample` feeds G for ``seed``: N(0, I) drawn
        ``batch_size`` rows at a time from a generator seeded ``seed``; with ``truncation``
        psi > 0, each batch truncated to [-psi, psi] by resampling
        (:func:`ganforge.models.latent.truncate_`)."""
        psi = check_truncation(truncation)
        g = torch.Generator().manual_seed(seed)
        out = []
        for i in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - i), self.z_dim, generator=g)
            out.append(z if psi is None else truncate_(z, psi, g))
        return torch.cat(out) if out else torch.empty(0, self.z_dim)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None,
               batch_size: int = 256) -> torch.Tensor:
        G, dev, out = self.generator, self.device, []
        with eval_mode(G):
            for i in range(0, z.shape[0], batch_size):
                zb = z[i:i + batch_size].to(dev)
                x = G(zb) if labels is None else G(zb, labels[i:i + batch_size].to(dev))
                out.append(x.float().clamp(-1, 1).cpu())
        return torch.cat(out) if out else torch.empty(0)

    def eval_batches(self, n: int, seed: int = 0, batch_size: int = 250) -> Iterator[torch.Tensor]:
        """``n`` images in batches of ``batch_size`` (noise from a generator seeded ``seed``),
        on the generators' device."""
        G, dev = self.generator, self.device
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad(), eval_mode(G):
            for i in range(0, n, batch_size):
                m = min(batch_size, n - i)
                z = torch.randn(m, G.z_dim, generator=g).to(dev)
                yield self._generate_batch(G, z, i).float().clamp(-1, 1)

    def _generate_batch(self, G: torch.nn.Module, z: torch.Tensor, start: int) -> torch.Tensor:
        return G(z)

    def example_inputs(self, name: str, n: int = 2, seed: int = 0):
        G = self.modules[name]
        return (torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)),), ("z",)

    def preview(self, fixed: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        return make_grid(self.sample(64, seed=0), nrow=8)

    def _evaluate(self, req: EvalRequest) -> Dict[str, Any]:
        info = self.info
        spec = info.data
        ex = scoring.get_extractor(req.extractor, data_spec=spec, img_size=info.img_size,
                                   weights=req.weights, device=req.device)
        opts = dict(img_size=info.img_size, channels=info.channels, n=req.n,
                    data_dir=req.data_dir or info.data_dir, progress=req.progress)
        real = scoring.real_features(ex, spec, req.split, **opts)   # test, else train
        scores = scoring.score_images(self.eval_batches(req.n, req.seed), ex, real,
                                      metrics=req.metrics, seed=req.seed)
        return {"step": info.step, "extractor": ex.label, "generator": info.modules.get("G", "G"),
                "real": f"{real['data']} ({real['split']})", "n_real": real["n"], "n_fake": req.n,
                **scores, **({"caveats": scores.caveats} if scores.caveats else {})}
