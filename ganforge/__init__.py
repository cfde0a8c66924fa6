"""ganforge: train, evaluate and use generative adversarial networks.

The package face. From Python, a trained run is one call away::

    import ganforge
    g = ganforge.load("runs/dcgan-fashion-mnist")     # a ganforge.Generator: the run's task face
    x = g.sample(16, seed=0)                          # float32 (16, C, H, W) in [-1, 1]

The house, bottom to top (docs/ARCHITECTURE.md; ``lint-imports`` checks the order):

- ``core/``: errors, files, config, registry, devices, distributed, checkpoint and run-folder
  formats, version;
- building blocks: ``data/``, ``models/``, ``losses/``, ``regularize/``, ``render/``;
- the measuring wing, ``metrics/``: features -> statistics -> scores, scoring against real
  data, the domain evaluator;
- the use wing, ``use/``: a run's face (sample, translate, interpolate, evaluate) and the
  commands built on it (sample, translate, eval, export, report, serve);
- the training wing, ``training/``: the trainer, the tasks' training halves, callbacks,
  transfer, distillation, tuning;
- ``cli.py``: the ``ganforge`` command, one parser per command from the wings.

``import ganforge`` stays light (every ``ganforge`` command imports it, ``--help`` included):
torch and the use wing are imported when :func:`load` is first called or :class:`Generator`
first named.

Module paths of ganforge 0.1 (``ganforge.runs``, ``ganforge.api``, ``ganforge.config``, ...)
still import, as the modules that took their place, with a DeprecationWarning naming the new
path (:data:`MOVED`); they go in 0.3.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING, Any

from ganforge.core.version import __version__

if TYPE_CHECKING:                       # for the annotations only: no import at run time
    from ganforge.use.face import Generator

__all__ = ["__version__", "load", "Generator", "GeneratorInfo"]

#: 0.1 module path -> where it lives since 0.2 (old code and old export cards keep working)
MOVED = {
    "ganforge.api": "ganforge.use.api",
    "ganforge.argtypes": "ganforge.core.argtypes",
    "ganforge.checkpoint": "ganforge.core.checkpoint",
    "ganforge.config": "ganforge.core.config",
    "ganforge.devices": "ganforge.core.devices",
    "ganforge.distributed": "ganforge.core.distributed",
    "ganforge.errors": "ganforge.core.errors",
    "ganforge.evaluate": "ganforge.use.evaluate",
    "ganforge.evaluator": "ganforge.metrics.domain.train",
    "ganforge.export": "ganforge.use.export",
    "ganforge.files": "ganforge.core.files",
    "ganforge.latent": "ganforge.models.latent",
    "ganforge.registry": "ganforge.core.registry",
    "ganforge.report": "ganforge.render",
    "ganforge.run_report": "ganforge.use.report",
    "ganforge.runs": "ganforge.use.load",
    "ganforge.sampling": "ganforge.use.sample",
    "ganforge.scoring": "ganforge.metrics.scoring",
    "ganforge.serve": "ganforge.use.serve",
    "ganforge.tasks": "ganforge.training.tasks",
    "ganforge.trainer": "ganforge.training.trainer",
    "ganforge.transfer": "ganforge.training.transfer",
    "ganforge.translate": "ganforge.use.translate",
    "ganforge.tune": "ganforge.training.tune",
}


def load(path: Any, checkpoint: str = "latest", ema: bool = True, device: Any = "cpu") -> Generator:
    """The trained generator(s) of a run folder, a checkpoint file or an export folder, as the
    run's task face: a :class:`Generator` (``.sample``, ``.translate``, ``.interpolate``,
    ``.evaluate``, ``.info``, ``.to``). See :func:`ganforge.use.load.load` for the arguments
    and the errors it raises."""
    from ganforge.use.load import load as load_face
    return load_face(path, checkpoint=checkpoint, ema=ema, device=device)


def __getattr__(name: str) -> Any:
    """``ganforge.Generator`` / ``ganforge.GeneratorInfo`` (the use wing's face, imported on
    first use) and the 0.1 module names as attributes (``ganforge.runs.load_run``)."""
    if name in ("Generator", "GeneratorInfo"):
        from ganforge.use import face
        return getattr(face, name)
    if f"ganforge.{name}" in MOVED:
        return importlib.import_module(f"ganforge.{name}")
    raise AttributeError(f"module 'ganforge' has no attribute '{name}'")


def __dir__() -> list:
    """What the face offers (not its helpers' imports)."""
    return sorted(__all__ + ["MOVED"])


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a 0.1 module path (:data:`MOVED`) as the module that took its place: ``import
    ganforge.runs`` gives ``ganforge.use.load`` itself (one module object, so state and
    ``isinstance`` agree), with a DeprecationWarning naming the new path."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new} in ganforge 0.2; import that (the old path "
                      f"goes in 0.3)", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        """Nothing to run: the module that took the old path's place is already loaded."""


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
