"""How a ``ganforge`` command is declared: a :class:`Command` (its name, help, a function that
adds its arguments and one that runs it), written beside the feature it runs
(``ganforge/use/sample.py``'s ``COMMAND``, ...); ``ganforge/cli.py`` lists them.

And :class:`Flag`: a flag that sets one config key (``--balance`` -> ``cond.balance``). Its type,
choices and range are the key's own (:meth:`ganforge.core.config.KeySpec.check`), so a range
lives in the config schema only; a bool key makes a switch. ``ganforge train`` takes the
shared ones and every task's (``Task.flags``, declared beside the task's code).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional

from ganforge.core.config import ConfigError, coerce, key_spec


@dataclass(frozen=True)
class Command:
    """One ``ganforge`` subcommand: ``name``, a one-line ``help`` (``ganforge --help``), a
    longer ``description`` (``ganforge NAME --help``), ``arguments(parser)`` which adds its
    arguments, and ``run(args) -> exit code``. ``overrides``: whether ``key=value`` config
    overrides may stand anywhere on its command line (they land in ``args.overrides``)."""
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""
    overrides: bool = False

    def add_to(self, subparsers: Any) -> argparse.ArgumentParser:
        """The command's parser, added to ``subparsers`` (argparse's ``add_subparsers()``)."""
        p = subparsers.add_parser(self.name, help=self.help,
                                  description=self.description or self.help)
        self.arguments(p)
        p.set_defaults(func=self.run)
        return p


def key_type(name: str) -> Callable[[str], Any]:
    """An argparse type for a flag that sets config key ``name``: the text coerced to the
    key's type and checked against its choices and range, refused with the key's own words."""
    spec = key_spec(name)

    def parse(text: str) -> Any:
        try:
            value = coerce(text, spec.type, spec.name, "flag")
            spec.check(value, "flag")
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("flag: ")) from None
        return value
    parse.__name__ = spec.name
    return parse


@dataclass(frozen=True)
class Flag:
    """``option`` (``"--domain-a"``) sets config ``key`` (``"cyclegan.domain_a"``); ``help``
    (empty: the key's own), ``metavar`` (empty: the option's name upper-cased)."""
    option: str
    key: str
    help: str = ""
    metavar: Optional[str] = None

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        spec = key_spec(self.key)
        text = self.help or spec.help
        if spec.base_type is bool:
            parser.add_argument(self.option, dest=self.dest, action="store_true", default=None,
                                help=f"{text} ({self.key})")
            return
        parser.add_argument(self.option, dest=self.dest, type=key_type(self.key), default=None,
                            metavar=self.metavar or self.dest.upper(), help=f"{text} ({self.key})")


def flag_values(args: argparse.Namespace, flags: Iterable[Flag]) -> Dict[str, Any]:
    """``{key: value}`` of the ``flags`` given on the command line (their config overrides)."""
    out = {}
    for f in flags:
        value = getattr(args, f.dest, None)
        if value is not None:
            out[f.key] = value
    return out
