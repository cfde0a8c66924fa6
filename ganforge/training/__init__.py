"""What the training loop (ganforge/trainer.py) is surrounded by, one concern per file.

- ``callbacks.py``: the :class:`Callback` interface the loop calls;
- ``artifacts.py``: run folder, metrics log, TensorBoard, sample grids, curves, GIF;
- ``checkpoints.py``: periodic and final checkpoints;
- ``evaluation.py``: scores during training (``--eval-every``) and ``checkpoints/best.pt``;
- ``guard.py``: the divergence guard (rollback with lower learning rates);
- ``averages.py``: standing BatchNorm statistics of the EMA generators;
- ``runtime.py``: device, threads, torchrun, mixed precision, compile, DDP wrappers;
- ``session.py``: the progress bar and Ctrl-C/SIGTERM handling.

Nothing here imports the trainer; the trainer builds these from the config.
"""
from ganforge.training.callbacks import Callback

__all__ = ["Callback"]
