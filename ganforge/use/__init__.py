"""The use wing: what a trained run is used for, from Python and from the CLI.

It loads a run folder, a checkpoint or an export folder into the run's task face (a
:class:`~ganforge.use.face.Generator`), and every use-time command goes through that face:
``ganforge sample``, ``interpolate``, ``progress``, ``translate``, ``eval``, ``export``,
``report`` and ``serve``, and ``ganforge.load``. It imports nothing of the training wing
(``ganforge.training``), nor the losses or regularisers: sampling a run does not load what
trained it (an import-linter contract in pyproject.toml says so).
"""
