"""Standing statistics for the generator averages (``ema.*``, ganforge/regularize/ema.py).

An EMA generator's BatchNorm buffers are copied from G at every update, and G's statistics
do not fit the averaged weights (on the DCGAN preset they cost 1.8 FID). So before the
averages are *used* (a sample grid, an evaluation, a checkpoint) each one with BatchNorm gets
its own statistics, recomputed on fixed noise: the "standing statistics" of Brock et al. 2019
(BigGAN, appendix C.1). Recomputing costs a few forward passes, so it is done on demand and at
most once per step, not after every update; whoever is about to use the averages calls
:meth:`ganforge.training.trainer.Trainer.refresh_averages`, which lands here.
"""
from __future__ import annotations

from typing import Dict, Iterable

import torch.nn as nn

from ganforge.regularize.ema import recalibrate_batchnorm


class StandingStatistics:
    """Recompute the BatchNorm statistics of the averages ``<name>_ema`` of ``generators``
    (deterministic in ``seed``), once per training step at most."""

    def __init__(self, generators: Iterable[str], seed: int):
        self.averages = [f"{name}_ema" for name in generators]
        self.seed = seed
        self._step = -1          # the step whose statistics the averages hold

    def refresh(self, modules: Dict[str, nn.Module], step: int) -> None:
        if self._step == step:
            return
        for name in self.averages:
            recalibrate_batchnorm(modules[name], seed=self.seed)
        self._step = step
