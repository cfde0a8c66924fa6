"""One small registry used for models, losses, datasets, tasks and feature extractors.

Anything selectable by name from a config or the CLI goes through a ``Registry`` so that
``ganforge list`` can show it and a typo produces an error listing the valid names.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ganforge.core.errors import UserError


class RegistryError(UserError, KeyError):
    """Unknown or duplicate name in a registry (a user-facing error)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class Registry:
    """Maps names to callables (classes or factory functions).

    ``register(name)`` is a decorator; registering the same name twice is refused so two
    modules cannot silently shadow each other. ``build(name, **kw)`` calls the entry.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable[..., Any]] = {}
        self._help: Dict[str, str] = {}

    def register(self, name: str, help: str | None = None) -> Callable[[Callable], Callable]:
        def deco(obj: Callable) -> Callable:
            if name in self._entries:
                raise RegistryError(f"{self.kind} '{name}' is already registered "
                                    f"(by {self._entries[name]!r}); pick another name")
            self._entries[name] = obj
            doc = help if help is not None else (obj.__doc__ or "").strip().splitlines()
            self._help[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return obj
        return deco

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(f"unknown {self.kind} '{name}'; choose one of: "
                                f"{', '.join(self.names()) or '(none registered)'}") from None

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def parse_list(self, text: Optional[str]) -> Tuple[str, ...]:
        """``"a,b"`` -> ``("a", "b")``, in order (a config value naming several entries, such
        as an augmentation pipeline); ``""``/``"none"``/None -> (). An unknown name is a
        ValueError naming it and listing the valid ones."""
        if text is None:
            return ()
        names = tuple(s.strip().lower() for s in str(text).split(",") if s.strip())
        if names == ("none",):
            return ()
        for name in names:
            if name not in self._entries:
                raise ValueError(f"unknown {self.kind} '{name}' in '{text}'; valid ones: "
                                 f"{', '.join(self.names())} (comma-separated, applied in order)")
        return names

    def names(self, sort: bool = True) -> List[str]:
        """The registered names, sorted (``sort=False``: in the order they were registered)."""
        return sorted(self._entries) if sort else list(self._entries)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def items(self) -> Iterable[tuple[str, Callable[..., Any]]]:
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        """The names, in the order they were registered."""
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
