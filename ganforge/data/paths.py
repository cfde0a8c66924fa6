"""Where datasets are looked for, and where downloads and caches go.

Named datasets are searched in these roots, in order; in each root the files live in
``<root>/<dataset-name>/``:

1. the explicit ``data_dir`` argument (``data.data_dir`` in the config); the folder itself is
   also accepted, for users who point it straight at the files;
2. ``$GANFORGE_DATA`` (several roots may be given, separated by ``os.pathsep``);
3. the user cache: ``$GANFORGE_CACHE``, else ``$XDG_CACHE_HOME/ganforge``, else
   ``~/.cache/ganforge``;
4. system locations (:data:`SYSTEM_ROOTS`), e.g. Debian's ``dataset-fashion-mnist`` package
   installs ``/usr/share/datasets/fashion-mnist/*.gz``.

Downloads go to the first of ``data_dir``, ``$GANFORGE_DATA`` or the cache.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

#: System-wide roots (Debian layout: ``/usr/share/datasets/<name>/``). A list so tests can
#: patch it.
SYSTEM_ROOTS: List[str] = ["/usr/share/datasets", "/usr/local/share/datasets"]


def cache_dir() -> Path:
    """The user cache root (downloads, rendered fonts, decoded tensors)."""
    env = os.environ.get("GANFORGE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "ganforge"
    return Path.home() / ".cache" / "ganforge"


def _env_roots() -> List[Path]:
    env = os.environ.get("GANFORGE_DATA", "")
    return [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]


def search_dirs(name: str, data_dir: Optional[str] = None) -> List[Tuple[Path, str]]:
    """Directories that may hold dataset ``name``, in resolution order, each with the reason
    it is searched (for error messages)."""
    out: List[Tuple[Path, str]] = []
    if data_dir:
        root = Path(data_dir).expanduser()
        out.append((root / name, "data_dir"))
        out.append((root, "data_dir"))
    for root in _env_roots():
        out.append((root / name, "$GANFORGE_DATA"))
    out.append((cache_dir() / name, "user cache"))
    for root in SYSTEM_ROOTS:
        out.append((Path(root) / name, "system"))
    seen, unique = set(), []
    for d, why in out:
        if d not in seen:
            seen.add(d)
            unique.append((d, why))
    return unique


def download_dir(name: str, data_dir: Optional[str] = None) -> Path:
    """Where a download of dataset ``name`` is stored."""
    if data_dir:
        return Path(data_dir).expanduser() / name
    roots = _env_roots()
    if roots:
        return roots[0] / name
    return cache_dir() / name


def describe_dirs(dirs: List[Tuple[Path, str]]) -> str:
    return "\n".join(f"  - {d} ({why})" for d, why in dirs)
