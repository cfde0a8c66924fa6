"""The one family of errors ganforge raises on purpose.

Every error a user can cause, and every run that fails for a reason we can name, is a
:class:`GanforgeError`. The CLI catches exactly this base class and prints the message as one
line, with the subclass's ``exit_code``:

=====================  =====  ========================================================
class                  exit   meaning
=====================  =====  ========================================================
``UserError``          2      bad input: a flag, a config value, a path, a file; nothing
                              was trained or written. The message names the input and
                              the fix.
``RunError``           1      the input was fine but the run failed (training diverged
                              past the guard's limit, ...); the last good checkpoint is
                              kept and the message says where it is.
=====================  =====  ========================================================

``EvalError`` (bad evaluation requests) lives here because metrics, scoring and the tasks
all raise it. Module-specific errors subclass one of these (``ConfigError``, ``DataError``,
``CheckpointError``, ``RegistryError``, ``EvaluatorError``; ``TrainingDiverged`` and
``CheckpointWriteError`` are ``RunError`` s)
and keep a builtin base (``ValueError``, ``KeyError``, ``RuntimeError``) for callers that
catch those. Anything else that escapes is a bug in ganforge, not the user's doing.
"""
from __future__ import annotations

import difflib
from typing import Collection


class GanforgeError(Exception):
    """Base class of every error ganforge raises on purpose; ``exit_code`` is the CLI's."""

    exit_code: int = 2


class UserError(GanforgeError):
    """Bad input (a flag, config value, path or file): exit code 2, nothing written."""

    exit_code = 2


class RunError(GanforgeError):
    """A run that failed for a reason we can name (not the input): exit code 1."""

    exit_code = 1


class EvalError(UserError, ValueError):
    """A user-facing evaluation problem: an unknown metric, a missing or unsuitable extractor,
    too few images for a score."""


def did_you_mean(value: object, names: Collection[object]) -> str:
    """`` (did you mean X?)`` with the name in ``names`` closest to ``value`` (difflib's
    ratio >= 0.6), or "" when none is close: the hint every "unknown name" message ends with
    (config values, flags, commands, presets)."""
    close = difflib.get_close_matches(str(value), [str(n) for n in names], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
