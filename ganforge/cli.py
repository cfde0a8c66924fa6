"""The ``ganforge`` command: one parser per command, each declared beside its feature as a
:class:`ganforge.core.command.Command` (its arguments and what runs it); this module lists them,
reads the command line and turns errors into one line each.

Command and flag names are a contract (README "CLI reference"); keep them stable. Adding a
command: a ``Command`` next to the code it runs, and one entry in :data:`COMMANDS`.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from pathlib import Path
from typing import List, NoReturn, Optional, Tuple

from ganforge.core.command import Command
from ganforge.core.config import all_keys
from ganforge.core.errors import GanforgeError, did_you_mean
from ganforge.metrics.domain import train as evaluator
from ganforge.training import catalog, train, tune
from ganforge.use import animate, evaluate, export, report, sample, serve, translate

#: every ``ganforge`` command, in the order ``ganforge --help`` lists them
COMMANDS: Tuple[Command, ...] = (
    train.COMMAND, sample.COMMAND, evaluate.COMMAND, evaluator.COMMAND, translate.COMMAND,
    export.COMMAND, animate.INTERPOLATE, animate.PROGRESS, report.COMMAND, serve.COMMAND,
    tune.COMMAND, train.DISTILL, catalog.COMMAND,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``ganforge`` parser: one subparser per command of :data:`COMMANDS`."""
    p = _Parser(prog="ganforge", description="Train, evaluate and use GANs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.add_to(sub)
    return p


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``ganforge train: error: ...``, exit code 2) instead of a
    usage block; ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        m = re.match(r"argument (.+?): invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if m:       # a misspelt command or choice: say which one was meant
            choices = re.findall(r"'([^']*)'", m.group(3))
            message = (f"argument {m.group(1)}: invalid choice: '{m.group(2)}'"
                       f"{did_you_mean(m.group(2), choices)} (choose from {', '.join(choices)})")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def subparser(self, name: Optional[str]) -> Optional["_Parser"]:
        """The parser of command ``name`` (None: not a command)."""
        for a in self._actions:
            if isinstance(a, argparse._SubParsersAction):
                return a.choices.get(name) if name else None
        return None


def _split_overrides(args: argparse.Namespace, extra: List[str], parser: argparse.ArgumentParser) -> None:
    """``key=value`` overrides may stand anywhere on the command line of a command that takes
    them (``Command.overrides``; between flags too): argparse leaves the ones after a flag's
    value unparsed, so they are collected here."""
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    takes = any(c.overrides for c in COMMANDS if c.name == getattr(args, "command", None))
    if stray or (extra and not takes):
        bad = stray or extra
        # the command's own parser: its name in the message, its --help, its flags to suggest
        sub = parser.subparser(getattr(args, "command", None)) if isinstance(parser, _Parser) else None
        sub = sub or parser
        hint = _flag_hint(bad[0].split("=")[0], sub, takes) if bad[0].startswith("--") else ""
        sub.error(f"unrecognized argument{'s' if len(bad) > 1 else ''}: {' '.join(bad)}{hint}")
    if extra:
        args.overrides = list(args.overrides) + extra


def _flag_hint(flag: str, parser: argparse.ArgumentParser, takes_overrides: bool) -> str:
    """`` (did you mean --X?)`` for a misspelt flag of ``parser``, or, for a command that takes
    ``key=value`` overrides, the config key a flag-like word names (``--lr-g`` ->
    ``train.lr_g=VALUE``)."""
    flags = {o.lstrip("-"): o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    hint = did_you_mean(flag.lstrip("-"), list(flags))
    if hint:
        return hint.replace("mean ", "mean --", 1)
    if takes_overrides:
        leaf = flag.lstrip("-").replace("-", "_")
        keys = [k for k in all_keys() if k.rsplit(".", 1)[-1] == leaf]
        if keys:
            return f" (a config key? give it as {keys[0]}=VALUE)"
    return ""


def _internal_error(command: str, exc: BaseException) -> int:
    """An error ganforge did not expect (a bug): one line, the traceback in a file."""
    import tempfile
    import time
    import traceback
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        fd, path = tempfile.mkstemp(prefix=f"ganforge-{command}-{time.strftime('%Y%m%d-%H%M%S')}-",
                                    suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        where = f"full traceback in {path}"
    except OSError:
        where = "the traceback could not be written"
    first = str(exc).splitlines()[0] if str(exc) else ""
    print(f"ganforge {command}: internal error: {type(exc).__name__}: {first} ({where}; "
          f"please report it)", file=sys.stderr)
    return 1


_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_python_format_warning = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings ganforge itself gives (a skipped file, a setting that cannot help, ...) as
    one line, ``ganforge: warning: ...``; other libraries' in Python's usual format."""
    if str(filename).startswith(_PACKAGE_DIR):
        return f"ganforge: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


def main(argv: Optional[List[str]] = None) -> int:
    """The ``ganforge`` command. Returns the exit code: 0 done, 1 a failed run (or an internal
    error, with its traceback written to a file), 2 bad input, 130 interrupted."""
    saved, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = saved


def _main(argv: Optional[List[str]]) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        _split_overrides(args, extra, parser)
    except SystemExit as e:        # --help (0) or a bad command line (2, one line printed)
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except GanforgeError as e:      # every error ganforge raises on purpose (ganforge/core/errors.py)
        msg = str(e)
        if msg.startswith(f"{args.command}: "):    # the message named its command already
            msg = msg[len(args.command) + 2:]
        print(f"ganforge {args.command}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\nganforge: interrupted", file=sys.stderr)
        return 130
    except Exception as e:          # a bug: one line here, the whole traceback in a file
        if os.environ.get("GANFORGE_TRACEBACK"):
            raise
        return _internal_error(args.command, e)


if __name__ == "__main__":
    raise SystemExit(main())
