"""One file holds the whole training state (DESIGN lesson 4), written durably and verified.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, saved with
``torch.save`` and always loaded with ``weights_only=True``: loading never runs code from the
file (a file that asks to is refused with a :class:`CheckpointError`, as is one that is empty,
truncated, random bytes, a zip that is not a torch file, or a folder). Network architectures
travel as ``spec`` dicts (family name + constructor kwargs), not as pickled classes.

**Writes** (:func:`save_checkpoint`) go through :func:`ganforge.core.files.atomic_save`: temporary
file in the same folder, flush + fsync, read-back check, ``os.replace``, fsync of the folder. A
crash, a second Ctrl-C or a full disk mid-write leaves the previous checkpoint intact; a full
disk is a :class:`CheckpointWriteError` (a ``RunError``) saying which checkpoint is intact.
``latest.pt`` is a hard link to (or copy of) the newest numbered checkpoint
(``step-000001000.pt``), replaced atomically; only the last ``keep_last`` numbered ones stay,
and the newest one is read back and verified before any older one is pruned, so pruning
never removes the last checkpoint that verifies.

**Checksum.** Each checkpoint carries ``"checksum": "sha256:<hex>"``: SHA-256 over a canonical
walk of the rest of the dict (:func:`state_checksum`: every key in order; every tensor's
dtype, shape and raw bytes; every plain value), so it does not depend on the device the
tensors were on, nor on torch's zip layout. Loading verifies it (and drops the key: callers
see the dict that was saved); a mismatch is a :class:`CheckpointError` naming the file.
Checkpoints written before checksums existed load as they are, without a warning.

**Finding one** (:func:`find_checkpoint`, :func:`load_latest_good`): for a run folder,
``latest`` is the newest checkpoint that *verifies*. A damaged one (unreadable, truncated,
checksum mismatch) is named in a :class:`CheckpointWarning`, renamed to ``<name>.damaged``
(never deleted) and the next older numbered one is used; ``latest.pt`` is re-pointed to it.
Verifying costs a full read, so the state read while finding is kept (one entry) and the
:func:`load_checkpoint` of the same file that follows takes it instead of reading again.

**Format.** A checkpoint records ``"format"`` (:data:`FORMAT`) and ``"version"`` (the ganforge
that wrote it). One of a format this version does not read (a newer ganforge's) is refused
with a :class:`CheckpointFormatError` naming that version and what to do; it is not damaged,
so it is never set aside. An older format, once there is one, is upgraded where it is read.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ganforge.core import runfolder
from ganforge.core.errors import RunError, UserError
from ganforge.core.files import (
    IMAGE_EXTENSIONS,
    atomic_link,
    atomic_save,
    disk_full_errno,
    remove_stale_temps,
)
from ganforge.core.version import __version__

#: the format this version writes (``state["format"]``), beside ``state["version"]``
FORMAT = "ganforge-checkpoint-1"
#: every format this version reads (a checkpoint without the key predates it: format 1). An
#: older format, once there is one, is upgraded where it is read, here.
READS = (FORMAT,)
CKPT_DIR = runfolder.CHECKPOINTS
LATEST = "latest.pt"
BEST = "best.pt"
CHECKSUM_KEY = "checksum"
#: Written beside the checksum (and covered by it): a file with one of the two keys but not
#: the other was damaged in a key name (a file with neither predates checksums).
SCHEME_KEY = "checksum_scheme"
SCHEME = "sha256-walk-1"
DAMAGED_SUFFIX = ".damaged"
_NUM = re.compile(r"^step-(\d+)\.pt$")
_ACCESS_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR}   # the file, not its content


class CheckpointError(UserError, ValueError):
    """A user-facing problem with a checkpoint path or file (one line, naming the file)."""


class CheckpointFormatError(CheckpointError):
    """A checkpoint of a format this version cannot read (written by a newer ganforge)."""


class CheckpointWriteError(RunError, OSError):
    """A checkpoint could not be written (full disk, read-back failure): the run stops, and
    the message says which checkpoint on disk is intact."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was set aside (renamed ``*.damaged``) and an older one used."""


class _Damaged(Exception):
    """The file's content is not a good checkpoint (reason in ``args[0]``)."""


# --------------------------------------------------------------------------------------------
# Checksum
# --------------------------------------------------------------------------------------------
def _feed(h: Any, obj: Any) -> None:
    """Feed ``obj`` to hash ``h`` canonically (type tags and lengths, so no two different
    values feed the same bytes)."""
    if obj is None:
        h.update(b"N;")
    elif isinstance(obj, bool):
        h.update(b"T;" if obj else b"F;")
    elif isinstance(obj, int):
        h.update(b"i%d;" % obj)
    elif isinstance(obj, float):
        h.update(b"f" + obj.hex().encode() + b";")
    elif isinstance(obj, complex):
        h.update(b"c" + obj.real.hex().encode() + b"," + obj.imag.hex().encode() + b";")
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(b))
        h.update(b)
    elif isinstance(obj, (bytes, bytearray)):
        h.update(b"b%d:" % len(obj))
        h.update(obj)
    elif isinstance(obj, torch.Tensor):
        _feed_tensor(h, obj)
    elif isinstance(obj, Mapping):
        h.update(b"d%d:" % len(obj))
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(b"%s%d:" % (b"l" if isinstance(obj, list) else b"u", len(obj)))
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, (torch.dtype, torch.device)):
        _feed(h, f"torch:{obj}")
    elif isinstance(obj, (np.ndarray, np.generic)):
        a = np.ascontiguousarray(obj)
        _feed(h, f"np:{a.dtype.str}:{a.shape}")
        if a.dtype.hasobject:
            _feed(h, a.tolist())
        else:
            h.update(a.view(np.uint8).reshape(-1) if a.ndim else a.reshape(1).view(np.uint8))
    else:   # nothing else survives a weights_only load; name its type, never its repr
        h.update(b"o" + f"{type(obj).__module__}.{type(obj).__qualname__}".encode() + b";")


def _dense_strides(t: torch.Tensor) -> bool:
    """Whether ``t`` covers ``numel`` consecutive elements of its storage in some dimension
    order (a permutation of a contiguous tensor, e.g. channels_last weights)."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _feed_tensor(h: Any, t: torch.Tensor) -> None:
    t = t.detach()
    h.update(f"t{str(t.dtype)}:{tuple(t.shape)}:".encode())
    try:
        if t.is_sparse:
            t = t.to_dense()
        if t.is_quantized:
            t = t.int_repr()
        t = t.resolve_conj().resolve_neg().to("cpu")
        if t.is_contiguous():
            flat = t.reshape(-1)
        elif _dense_strides(t):
            # Its bytes in memory order, without a copy; the strides say which order (torch.save
            # and torch.load keep strides, so this is as stable as the content).
            h.update(f"s{t.stride()}:".encode())
            flat = t.as_strided((t.numel(),), (1,), t.storage_offset())
        else:
            flat = t.contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy())
    except (RuntimeError, TypeError, NotImplementedError):   # a layout without plain bytes
        h.update(b"?")
    h.update(b";")


def state_checksum(state: Mapping) -> str:
    """``"sha256:<hex>"`` over a canonical walk of ``state`` without its ``"checksum"`` key:
    keys in order, tensors by dtype, shape and bytes (not device), plain values exactly."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return "sha256:" + h.hexdigest()


def with_checksum(state: Mapping) -> Dict[str, Any]:
    """A shallow copy of ``state`` with its ``"checksum"`` set (the caller's dict is untouched)."""
    out = {k: v for k, v in state.items() if k not in (CHECKSUM_KEY, SCHEME_KEY)}
    out[SCHEME_KEY] = SCHEME
    out[CHECKSUM_KEY] = state_checksum(out)
    return out


# --------------------------------------------------------------------------------------------
# Reading one file
# --------------------------------------------------------------------------------------------
def _one_line(s: str, limit: int = 160) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _why_unreadable(e: BaseException) -> str:
    msg = str(e)
    m = re.search(r"GLOBAL (\S+)", msg)
    if m or "Weights only load failed" in msg:
        what = f" ({m.group(1)})" if m else ""
        return (f"it holds objects that would run code when loaded{what}; checkpoints are "
                f"read as plain data only (weights_only), so it is refused")
    if "central directory" in msg or "not in a subdirectory" in msg or "PytorchStreamReader" in msg \
            or "file not found" in msg.lower():
        return "truncated, or not a torch checkpoint (its zip archive is incomplete or foreign)"
    if isinstance(e, EOFError):
        return "truncated (ends too early)"
    return f"not a torch checkpoint ({e.__class__.__name__}: {_one_line(msg, 100)})"


def _read(p: Path, map_location: Any, mmap: bool = False) -> Dict[str, Any]:
    """Load and verify one file. Raises ``_Damaged`` for bad content, ``OSError`` when the
    file cannot be opened (gone, no permission, a folder). ``mmap``: map the tensors' bytes
    from the file instead of copying them (for a read-back check)."""
    if p.is_dir():
        raise IsADirectoryError(21, "is a directory, not a checkpoint file", str(p))
    if os.stat(p).st_size == 0:
        raise _Damaged("the file is empty (0 bytes)")
    try:
        # torch's warnings about a file it then fails to read are noise: pass them on only
        # when the file loads.
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            st = torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
    except OSError as e:
        if e.errno in _ACCESS_ERRNOS:
            raise
        raise _Damaged(f"read error: {_one_line(e)}") from None
    except Exception as e:          # truncated file, foreign file, unsafe content, random bytes
        raise _Damaged(_why_unreadable(e)) from None
    for w in said:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not isinstance(st, Mapping):
        raise _Damaged(f"it holds a {type(st).__name__}, not a checkpoint dict")
    marked = (CHECKSUM_KEY in st, SCHEME_KEY in st)
    if marked == (True, True):
        want = st[CHECKSUM_KEY]
        if not isinstance(want, str) or st[SCHEME_KEY] != SCHEME or state_checksum(st) != want:
            raise _Damaged("checksum mismatch: its content changed after it was written")
        st = {k: v for k, v in st.items() if k not in (CHECKSUM_KEY, SCHEME_KEY)}
    elif any(marked):
        raise _Damaged("its checksum entry is damaged")
    elif "step" not in st:     # a file from before checksums is still a ganforge checkpoint
        raise _Damaged("it holds no checksum and no training step: not a ganforge checkpoint")
    _check_format(st, p)
    return st


def _check_format(st: Mapping, p: Path) -> None:
    """Refuse a checkpoint of a format this version does not read (not damaged: never set
    aside), naming the version that wrote it and what to do."""
    fmt = st.get("format")
    if fmt is None or fmt in READS:
        return
    raise CheckpointFormatError(
        f"'{p}' was written by ganforge {st.get('version', '?')} in format {fmt}; this ganforge "
        f"{__version__} reads {', '.join(READS)}: upgrade ganforge (pip install -U ganforge) to "
        f"use it, or use the version that wrote it")


def _cannot_read(p: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"cannot read checkpoint '{p}': {reason}. If the file is damaged, "
                           f"use an older one from {p.parent}")


def _read_public(p: Path, map_location: Any) -> Dict[str, Any]:
    try:
        return _read(p, map_location)
    except _Damaged as e:
        raise _cannot_read(p, e.args[0]) from None
    except IsADirectoryError:
        raise CheckpointError(f"'{p}' is a directory, not a checkpoint file") from None
    except OSError as e:
        raise _cannot_read(p, _one_line(e.strerror or e)) from None


# One state read while finding a checkpoint, for the load of the same file that follows.
_cache_lock = threading.Lock()
_cache: Optional[Tuple[Tuple[int, int, int, int], Dict[str, Any]]] = None


def _signature(p: Path) -> Tuple[int, int, int, int]:
    s = os.stat(p)
    return (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)


def _remember(sig: Tuple[int, int, int, int], state: Dict[str, Any]) -> None:
    global _cache
    with _cache_lock:
        _cache = (sig, state)


def _take(p: Path, map_location: Any) -> Optional[Dict[str, Any]]:
    global _cache
    if str(map_location) != "cpu":      # the state was read to the CPU
        return None
    with _cache_lock:
        if _cache is None:
            return None
        try:
            sig = _signature(p)
        except OSError:
            return None
        if _cache[0] != sig:
            return None
        state, _cache = _cache[1], None
        return state


def _forget() -> None:
    global _cache
    with _cache_lock:
        _cache = None


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _numbered(d: Path) -> List[Tuple[int, Path]]:
    """The numbered checkpoints in ``d``, newest first."""
    try:
        names = os.listdir(d)
    except OSError:
        return []
    out = [(int(m.group(1)), d / n) for n in names if (m := _NUM.match(n))]
    return sorted(out, key=lambda sp: sp[0], reverse=True)


def numbered_checkpoints(run_dir: str | Path) -> List[Tuple[int, Path]]:
    """``(step, path)`` of the numbered checkpoints of a run folder, newest first (not read)."""
    return _numbered(Path(run_dir) / CKPT_DIR)


def _twin(p: Path, numbered: List[Tuple[int, Path]]) -> Optional[Tuple[int, Path]]:
    """The numbered checkpoint that ``p`` (``latest.pt``) is a hard link of, if any."""
    try:
        a = os.stat(p)
    except OSError:
        return None
    for s, q in numbered:
        try:
            b = os.stat(q)
        except OSError:
            continue
        if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
            return s, q
    return None


def _intact_note(d: Path, exclude: Optional[Path] = None) -> str:
    """What is still on disk, for a failed write's message (no reading)."""
    numbered = [(s, p) for s, p in _numbered(d) if p != exclude]
    latest = d / LATEST
    if latest.is_file():
        tw = _twin(latest, numbered)
        step = tw[0] if tw else (numbered[0][0] if numbered else None)
        return f"{LATEST} (step {step}) is intact" if step is not None else f"{LATEST} is intact"
    if numbered:
        return f"{numbered[0][1].name} is intact"
    return "no checkpoint was written yet"


def _write_failed(e: BaseException, path: Path, d: Path, exclude: Optional[Path] = None) -> CheckpointWriteError:
    note = _intact_note(d, exclude)
    if disk_full_errno(e) is not None:
        return CheckpointWriteError(f"no space left on device writing {path}; {note}; "
                                    f"free space and --resume")
    return CheckpointWriteError(f"cannot write checkpoint {path} ({_one_line(getattr(e, 'strerror', None) or e)}); "
                                f"{note}; fix that and --resume")


def save_checkpoint(state: Dict[str, Any], run_dir: str | Path, step: int, keep_last: int = 3) -> Path:
    """Write ``state`` (with its checksum) as ``RUN/checkpoints/step-<step>.pt``, durably and
    atomically, read it back and verify it, point ``latest.pt`` at it and prune numbered
    checkpoints beyond the newest ``keep_last`` (at least this one is kept). Raises
    :class:`CheckpointWriteError` (RunError) when it cannot be written (full disk: "no space
    left on device writing PATH; latest.pt (step N) is intact; ..."); nothing is changed then.
    Returns the new file's path."""
    d = Path(run_dir) / CKPT_DIR
    path = d / f"step-{step:09d}.pt"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _write_failed(e, path, d) from None
    remove_stale_temps(d)              # left by a write that was SIGKILLed
    stamped = with_checksum(state)

    def read_back(tmp: Path) -> None:
        # Memory-mapped (no second copy of the state in memory); read plainly once more
        # before concluding, in case this file system cannot map files.
        for mmap in (True, False):
            try:
                _read(tmp, "cpu", mmap=mmap)
                return
            except (_Damaged, OSError) as e:
                reason = e.args[0] if isinstance(e, _Damaged) else _one_line(e)
        raise CheckpointWriteError(f"checkpoint {path} did not read back intact ({reason}); it was "
                                   f"not kept; {_intact_note(d)}")

    try:
        atomic_save(stamped, path, verify=read_back)
    except CheckpointWriteError:
        raise
    except OSError as e:
        raise _write_failed(e, path, d) from None
    try:
        atomic_link(path, d / LATEST)
    except OSError as e:
        raise _write_failed(e, d / LATEST, d, exclude=path) from None
    keep = max(1, keep_last)
    numbered = _numbered(d)
    for _, old in numbered[keep:]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def save_best(run_dir: str | Path, src: Path) -> None:
    """Point ``RUN/checkpoints/best.pt`` at checkpoint ``src`` (hard link or copy, atomic)."""
    d = Path(run_dir) / CKPT_DIR
    try:
        atomic_link(src, d / BEST)
    except OSError as e:
        raise _write_failed(e, d / BEST, d) from None


# --------------------------------------------------------------------------------------------
# Finding and loading
# --------------------------------------------------------------------------------------------
def _ckpt_dir(p: Path) -> Path:
    return p / CKPT_DIR if (p / CKPT_DIR).is_dir() else p


def _set_aside(p: Path) -> Optional[Path]:
    """Rename a damaged file to ``<name>.damaged`` (``.damaged-2``, ... when taken); None when
    it cannot be renamed (a read-only run folder)."""
    new = p.with_name(p.name + DAMAGED_SUFFIX)
    i = 2
    while new.exists():
        new = p.with_name(f"{p.name}{DAMAGED_SUFFIX}-{i}")
        i += 1
    try:
        os.rename(p, new)
    except FileNotFoundError:      # another process (a DDP rank) set it aside first
        return new if new.exists() else None
    except OSError:
        return None
    return new


def _step_of(state: Mapping) -> Optional[int]:
    s = state.get("step")
    return s if isinstance(s, int) and not isinstance(s, bool) else None


class _Search:
    """One search of a checkpoints folder: reads candidates, records the damaged ones."""

    def __init__(self, d: Path, map_location: Any):
        self.d, self.map_location = d, map_location
        self.damaged: List[Tuple[Path, str, Optional[Path]]] = []   # (name shown, reason, file)
        self.tried: set = set()

    def attempt(self, p: Path, *, shown: Optional[Path] = None) -> Optional[Tuple[Dict[str, Any], Tuple]]:
        self.tried.add(p)
        try:
            sig = _signature(p)
            return _read(p, self.map_location), sig
        except _Damaged as e:
            self.damaged.append((shown or p, e.args[0], p))
            return None
        except FileNotFoundError:      # pruned by a run that is training right now
            return None
        except OSError as e:
            raise _cannot_read(p, _one_line(e.strerror or e)) from None


def _find_latest(d: Path, search: _Search) -> Optional[Tuple[Path, Dict[str, Any], Tuple]]:
    """``latest.pt`` when it verifies (it names the run's newest state even when an older
    run left higher-numbered files in the folder); else the numbered ones, newest first,
    those older than the damaged latest before any newer one."""
    numbered = _numbered(d)
    latest = d / LATEST
    order = numbered
    if latest.is_file():
        tw = _twin(latest, numbered)
        got = search.attempt(latest, shown=tw[1] if tw else None)
        if got is not None:
            return latest, got[0], got[1]
        if tw is not None:
            order = [sp for sp in numbered if sp[0] < tw[0]] + [sp for sp in numbered if sp[0] > tw[0]]
    for _, p in order:
        if p in search.tried:
            continue
        got = search.attempt(p)
        if got is not None:
            return p, got[0], got[1]
    return None


def _settle(d: Path, search: _Search, found: Optional[Tuple[Path, Dict[str, Any], Tuple]]) -> List[str]:
    """Set the damaged files aside (renamed ``*.damaged``), re-point ``latest.pt`` to the one
    found, and warn once per damaged file. Returns one note per damaged file."""
    latest = d / LATEST
    notes, latest_bad = [], False
    for shown, reason, file in search.damaged:
        latest_bad |= file == latest
        moved = _set_aside(shown)
        where = f"renamed to {moved.name}" if moved else "left in place (cannot rename it)"
        notes.append((shown, reason, where))
    if latest_bad and latest.exists():
        # latest.pt names damaged content (kept under its *.damaged name): point it at the
        # checkpoint found, or drop this name when there is none.
        try:
            if found is not None:
                atomic_link(found[0], latest)
            else:
                latest.unlink()
        except OSError:
            pass
    elif search.damaged and found is not None and found[0] != latest and not latest.exists():
        try:
            atomic_link(found[0], latest)
        except OSError:
            pass
    if found is not None:
        s = _step_of(found[1])
        using = f"using {found[0]}" + (f" (step {s})" if s is not None else "")
        for shown, reason, where in notes:
            warnings.warn(f"checkpoint {shown} is damaged ({reason}); {where}; {using}",
                          CheckpointWarning, stacklevel=4)
    return [f"{shown.name}: {reason}, {where}" for shown, reason, where in notes]


def _no_good(d: Path, notes: List[str]) -> CheckpointError:
    return CheckpointError(f"no checkpoint in {d} can be read ({'; '.join(notes)}); "
                           f"train again or restore a copy")


def _missing(path: Path, shown: Any) -> CheckpointError:
    if path.is_dir() and path.suffix == ".pt":
        return CheckpointError(f"'{shown}' is a directory, not a checkpoint file")
    if runfolder.started_without_checkpoint(path):
        return CheckpointError(runfolder.no_checkpoint_yet(path, shown))
    if path.is_dir() and not (path / CKPT_DIR).exists() and _holds_images(path):
        return CheckpointError(f"'{shown}' is a folder of images, not a run; give a run folder "
                               f"(the --out of ganforge train) or a checkpoint file")
    return CheckpointError(f"no checkpoint in '{shown}' (looked for {path / CKPT_DIR / LATEST}); "
                           f"train first with `ganforge train --out {shown}`")


def _holds_images(folder: Path, look: int = 50) -> bool:
    """Whether the first ``look`` entries of ``folder`` include an image file."""
    try:
        for i, entry in enumerate(folder.iterdir()):
            if i >= look:
                break
            if entry.suffix.lower() in IMAGE_EXTENSIONS or (entry.is_dir() and any(
                    q.suffix.lower() in IMAGE_EXTENSIONS for q in list(entry.iterdir())[:look])):
                return True
    except OSError:
        return False
    return False


def _resolve(path: str | Path, which: str, map_location: Any) -> Tuple[Path, Optional[Dict[str, Any]], Optional[Tuple]]:
    """(file, its verified state or None when not read, its signature)."""
    p = Path(path)
    if p.is_file():
        return p, None, None
    if not p.exists():
        raise CheckpointError(f"'{path}' does not exist; give a run folder (e.g. runs/dcgan-fashion-mnist) "
                              f"or a checkpoint file (.pt)")
    d = _ckpt_dir(p)
    search = _Search(d, map_location)
    found = None
    if which == "best":
        best = d / BEST
        if not best.is_file():
            raise CheckpointError(f"{d.parent if d.name == 'checkpoints' else d}: no {BEST}; a run "
                                  f"keeps one only when it scores FID while training (--eval-every "
                                  f"N); use --checkpoint latest")
        got = search.attempt(best)
        if got is not None:
            return best, got[0], got[1]
    elif which != "latest":
        cand = d / f"{which}.pt"
        if cand.is_file():
            return cand, None, None
    found = _find_latest(d, search)
    notes = _settle(d, search, found)
    if found is None:
        if notes:
            raise _no_good(d, notes)
        raise _missing(p, path)
    return found


def find_checkpoint(path: str | Path, which: str = "latest") -> Path:
    """The checkpoint file for a run folder, its checkpoints folder, or a file (returned as
    is). ``which``: ``latest`` (the newest that verifies: damaged ones are renamed
    ``*.damaged`` with a :class:`CheckpointWarning` and an older one used), ``best`` (a damaged
    one falls back to latest with a warning; a run without one is refused: it keeps one only
    when it scores FID while training), or a file stem in the folder. The state read to verify it is kept for the
    :func:`load_checkpoint` of that file that usually follows (no second read)."""
    f, state, sig = _resolve(path, which, "cpu")
    if state is not None:
        _remember(sig, state)
    return f


def load_latest_good(run_dir: str | Path, map_location: Any = "cpu") -> Tuple[Path, Dict[str, Any]]:
    """(path, state) of the newest checkpoint of a run folder that verifies, read once (see
    :func:`find_checkpoint`); for a file, that file verified. Raises :class:`CheckpointError`."""
    f, state, _ = _resolve(run_dir, "latest", map_location)
    if state is None:
        state = _read_public(f, map_location)
    return f, state


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """The verified state of a checkpoint file, or of a run folder's latest good checkpoint
    (:func:`load_latest_good`). Never runs code from the file; a damaged or foreign file is a
    one-line :class:`CheckpointError` naming it. The ``"checksum"`` key is verified and removed."""
    p = Path(path)
    if p.is_dir():
        return load_latest_good(p, map_location)[1]
    if not p.exists():
        find_checkpoint(p)             # raises the standard "does not exist" error
    cached = _take(p, map_location)
    if cached is not None:
        return cached
    return _read_public(p, map_location)


def latest_step(run_dir: str | Path) -> Optional[int]:
    """The step of the newest numbered checkpoint of a run folder (not read), or None."""
    numbered = _numbered(Path(run_dir) / CKPT_DIR)
    return numbered[0][0] if numbered else None


# --------------------------------------------------------------------------------------------
# RNG state (travels in checkpoints)
# --------------------------------------------------------------------------------------------
def rng_state() -> Dict[str, Any]:
    import random
    st = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
          "python_pos": random.getstate()[2], "numpy": torch.from_numpy(np.random.get_state()[1].astype("int64")),
          "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Dict[str, Any]) -> None:
    import random
    torch.set_rng_state(st["torch"])
    random.setstate((3, tuple(st["python"]), st["python_pos"]))
    np.random.set_state(("MT19937", st["numpy"].numpy().astype("uint32"), st["numpy_pos"], 0, 0.0))
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(st["cuda"])
