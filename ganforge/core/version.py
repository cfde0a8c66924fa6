"""The version of ganforge, in one place that every layer may import (``ganforge.__version__``
re-exports it; ``pyproject.toml`` reads it for the package metadata).

Checkpoints and exports record the version that wrote them next to their own file format
version (:data:`ganforge.core.checkpoint.FORMAT`, :data:`ganforge.use.export.EXPORT_FORMAT`):
the format decides whether a file can be read, the version only says who wrote it.

0.2.0 regrouped the modules into a core, building blocks and three wings (use, measuring,
training); the module paths of 0.1 still import, with a DeprecationWarning naming the new one
(``ganforge/__init__.py``). Checkpoint and export formats are unchanged.

0.3.0 added the pix2pix task (a ``pix2pix`` config section) and, in each checkpoint, the
data's count and fingerprint and the device and precision a session ran with (new keys of
the same format: 0.1 and 0.2 checkpoints load, sample and resume as before, without those
checks).
"""
__version__ = "0.3.0"
