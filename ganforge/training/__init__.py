"""The training wing: everything that trains a run, above the use wing it produces runs for.

- ``trainer.py``: the one training loop (phases, optimisers, state, resume);
- ``tasks/``: each task's training half (networks, losses, phases, its config section and
  CLI flags); its use-time face is in ``ganforge/use/faces/``;
- ``callbacks/``: what the loop is surrounded by, one concern per file (artifacts, saving,
  evaluation, the divergence guard, MLflow tracking, the report);
- ``runtime.py`` (device, threads, torchrun, precision, compile, DDP), ``session.py`` (progress
  bar, Ctrl-C), ``averages.py`` (standing statistics of the EMA generators), ``claim.py``
  (claiming a run folder, what may change on resume);
- ``transfer.py`` (``--init-from``, ``--freeze-d``), ``distill.py`` (``ganforge distill``),
  ``tune.py`` (``ganforge tune``).

Nothing below the trainer imports it; the trainer builds the rest from the config.
"""
