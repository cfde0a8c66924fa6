"""The tasks' training halves, registered by name in :data:`TASKS`: ``gan``, ``conditional``,
``cyclegan`` and ``pix2pix`` (one file each), on the contract of :mod:`ganforge.training.tasks.base`
(:class:`Task`, :class:`Phase`, :func:`resolve_config`), whose names this package hands on.
"""
from __future__ import annotations

from ganforge.training.tasks.base import (
    TASKS,
    Batch,
    DataInfo,
    Phase,
    Task,
    registered_names,
    resolve_config,
)

# Importing a task module registers the task (and its config section). In this order: it is
# the order of the task sections in every config.yaml (cyclegan, then cond, as since 0.1).
from ganforge.training.tasks import gan  # noqa: E402,F401  # isort: skip
from ganforge.training.tasks import cyclegan  # noqa: E402,F401  # isort: skip
from ganforge.training.tasks import conditional  # noqa: E402,F401  # isort: skip
from ganforge.training.tasks import pix2pix  # noqa: E402,F401  # isort: skip

__all__ = ["TASKS", "Batch", "DataInfo", "Phase", "Task", "registered_names", "resolve_config"]
