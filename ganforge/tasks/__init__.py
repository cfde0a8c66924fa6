"""Tasks decide *what* is computed; the trainer decides *when* (DESIGN lesson 3).

A task builds its networks, declares its phases, and for a phase returns one scalar loss
plus named statistics. It owns no optimizer, no loop and no I/O, so a plain GAN, a
conditional GAN and a CycleGAN all run on the same :class:`ganforge.trainer.Trainer`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ganforge.registry import Registry

TASKS = Registry("task")


@dataclass(frozen=True)
class Phase:
    """One alternating update: the named modules' parameters are stepped on ``name``'s loss.

    ``repeat`` runs the phase that many times per training step (k D steps per G step);
    ``every`` runs it only on steps divisible by it (lazy regularisation);
    ``new_batch`` draws a fresh real batch for each run of the phase (False: reuse the last).
    """
    name: str
    modules: Tuple[str, ...]
    lr: float
    betas: Tuple[float, float] = (0.5, 0.999)
    repeat: int = 1
    every: int = 1
    new_batch: bool = True


Batch = Tuple[torch.Tensor, Optional[torch.Tensor]]


class Task:
    """Base class. Subclasses fill ``self.modules`` and implement ``phases``/``loss``."""

    #: names of the logged statistics shown in the progress bar, in order
    progress_keys: Tuple[str, ...] = ()

    def __init__(self) -> None:
        self.modules: Dict[str, nn.Module] = {}

    def phases(self) -> List[Phase]:
        raise NotImplementedError

    def loss(self, phase: str, batch: Batch, *, last_repeat: bool = True) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Loss to minimise in ``phase`` and detached statistics to log."""
        raise NotImplementedError

    def fixed_inputs(self, n: int, generator: torch.Generator, device: torch.device) -> Dict[str, torch.Tensor]:
        """Inputs for the progress grid, drawn once and stored in the checkpoint."""
        raise NotImplementedError

    @torch.no_grad()
    def render(self, fixed: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Images in [-1, 1] for the progress grid from the fixed inputs."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Task state beyond module weights (e.g. RNG streams); saved in checkpoints."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


from ganforge.tasks import gan  # noqa: E402,F401  (registers "gan")
