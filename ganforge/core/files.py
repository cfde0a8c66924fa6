"""Writing whole files so that a crash never leaves a half-written one (bottom layer).

Every whole-file write of ganforge goes through :func:`atomic_write` (or its wrappers
:func:`atomic_save` for ``torch.save``, :func:`atomic_write_bytes`, :func:`atomic_write_text`,
and :func:`atomic_link` for ``latest.pt`` / ``best.pt``):

1. the content goes to a temporary file next to the target (``.<name>.<random>.tmp``: same
   folder, so the same file system; created with mode 0666 minus the umask);
2. the file is flushed and ``os.fsync``-ed, so its bytes are on the disk before its name is;
3. an optional ``verify(tmp_path)`` reads it back (checkpoints check their checksum here);
4. ``os.replace`` moves it over the target, which is atomic: a reader, a crash, a power cut or
   a second Ctrl-C sees either the previous file or the new one, never a truncated mix;
5. the folder is ``fsync``-ed, so the rename itself survives a power cut.

On any failure (an exception, Ctrl-C, a full disk) the temporary file is removed and the
previous file is untouched; the exception propagates. A full disk always surfaces as an
``OSError`` whose ``errno`` is ``ENOSPC``, ``EFBIG`` (a file-size limit, ``RLIMIT_FSIZE``) or
``EDQUOT``, also when ``torch.save`` reported it as its own ``RuntimeError`` (``[enforce fail at
inline_container.cc ...] unexpected pos``); :func:`disk_full_errno` recognises all of these.
Only SIGKILL (or a power cut) can leave a temporary file behind; the writer of a folder sweeps
them with :func:`remove_stale_temps` (``ganforge.core.checkpoint`` does, before each checkpoint; the
trainer, in the run folder and ``samples/``, as each session starts). The shared caches are not
swept (several processes may write them at once); their leftovers are never read.

Used for training checkpoints (:mod:`ganforge.core.checkpoint`), sample grids and GIFs
(:mod:`ganforge.render.images`), the decoded-data cache (:mod:`ganforge.data.cache`),
cached reference features (:mod:`ganforge.metrics.scoring`) and domain evaluator files
(:mod:`ganforge.metrics.domain.network`).

Test-only hook: ``GANFORGE_TEST_SLOW_WRITE=SECONDS`` makes every atomic write pause twice for
that long, first with half of the content in the temporary file and then with all of it
written (fsync-ed) but not yet renamed, and print one line to stderr before each pause
(``ganforge-test-slow-write: half <tmp> -> <target>`` / ``ganforge-test-slow-write: full
<tmp> -> <target>``), so a test can SIGKILL a process inside a write and check that the
previous file survives. It is for tests only: never set it in real runs.

Imports nothing from ganforge, so every layer may use it.
"""
from __future__ import annotations

import errno
import io
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, List, Optional, Sequence, Union

import torch

from ganforge.core.errors import UserError

#: File extensions read as images (folders of images, and telling such a folder from a run).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

PathLike = Union[str, "os.PathLike[str]"]

SLOW_WRITE_ENV = "GANFORGE_TEST_SLOW_WRITE"
"""Environment variable of the test-only slow-write hook (seconds; see the module docstring)."""

DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", None))
                             if e is not None)
_TEMP = re.compile(r"^\..+\.tmp$")
# What a folder fsync may answer on file systems that do not support it (it is best effort).
_DIR_FSYNC_UNSUPPORTED = frozenset(e for e in (errno.EINVAL, errno.EBADF, errno.EISDIR, errno.EACCES,
                                               errno.EPERM, getattr(errno, "ENOTSUP", None),
                                               getattr(errno, "EOPNOTSUPP", None)) if e is not None)


def temp_path(path: Path) -> Path:
    """A fresh temporary name next to ``path``: ``.<name>.<8 hex>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def disk_full_errno(exc: BaseException) -> Optional[int]:
    """``ENOSPC``/``EFBIG``/``EDQUOT`` when ``exc`` (or an exception it was raised from or
    while handling) says the disk or a file-size limit is full, else None. torch.save reports
    a failed write as ``RuntimeError: [enforce fail at inline_container.cc:N] . unexpected pos
    A vs B``; with the underlying ``OSError`` chained when it wrote to a Python file (as here),
    and with nothing chained when it wrote to a path (then it counts as ENOSPC)."""
    seen = set()
    e: Optional[BaseException] = exc
    torch_short_write = False
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno if e.errno in DISK_FULL_ERRNOS else None
        if isinstance(e, RuntimeError) and "unexpected pos" in str(e):
            torch_short_write = True
        e = e.__cause__ or e.__context__
    return errno.ENOSPC if torch_short_write else None


def fsync_dir(folder: PathLike) -> None:
    """``fsync`` a folder so that renames and new names in it are durable (best effort: file
    systems that cannot fsync a folder are skipped)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _slow_write_seconds() -> float:
    raw = os.environ.get(SLOW_WRITE_ENV, "")
    if not raw:
        return 0.0
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 0.0


def _slow_pause(seconds: float, what: str, tmp: Path, path: Path) -> None:
    print(f"ganforge-test-slow-write: {what} {tmp} -> {path}", file=sys.stderr, flush=True)
    time.sleep(seconds)


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], Any], *,
                 verify: Optional[Callable[[Path], Any]] = None) -> Path:
    """Write a whole file durably and atomically: ``write(f)`` fills a binary file object that
    is a temporary file next to ``path`` (the folder is made if missing); then flush, fsync,
    ``verify(tmp_path)`` when given (raise to refuse the file), ``os.replace`` over ``path``
    and fsync of the folder. On any failure the temporary file is removed, ``path`` is as it
    was, and the exception propagates (a full disk as an ``OSError`` with a disk-full errno,
    see :func:`disk_full_errno`). Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    slow = _slow_write_seconds()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            if slow:
                buf = io.BytesIO()
                write(buf)
                data = buf.getbuffer()
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                _slow_pause(slow, "half", tmp, path)
                f.write(data[half:])
                del data
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        if slow:
            _slow_pause(slow, "full", tmp, path)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        code = disk_full_errno(e) if isinstance(e, Exception) else None
        if code is not None and not isinstance(e, OSError):
            raise OSError(code, f"{os.strerror(code)} (writing {path}: {_one_line(e)})", str(path)) from e
        raise
    fsync_dir(path.parent)
    return path


def atomic_save(obj: Any, path: PathLike, *, verify: Optional[Callable[[Path], Any]] = None) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_write` (durable, atomic, temp file
    removed on failure). ``verify(tmp_path)``: an optional read-back check before the rename."""
    return atomic_write(path, lambda f: torch.save(obj, f), verify=verify)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_write`."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_link(src: PathLike, dst: PathLike) -> Path:
    """Make ``dst`` name the same content as ``src`` atomically (``latest.pt``, ``best.pt``):
    a hard link when the file system has them, else a durable copy; a temporary name next to
    ``dst`` is moved over it with ``os.replace`` and the folder fsync-ed. ``dst`` is as it was
    on any failure. Returns ``dst``."""
    src, dst = Path(src), Path(dst)
    tmp = temp_path(dst)
    try:
        os.link(src, tmp)
    except OSError:
        # No hard links here (FAT, some network file systems) or across file systems: copy.
        def copy(f: IO[bytes]) -> None:
            with open(src, "rb") as s:
                shutil.copyfileobj(s, f, 1 << 20)
        return atomic_write(dst, copy)
    try:
        os.replace(tmp, dst)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(dst.parent)
    return dst


def remove_stale_temps(folder: PathLike) -> List[Path]:
    """Remove the temporary files (``.<name>[.<random>].tmp``) that writes killed with SIGKILL
    left in ``folder``; returns them. Only the one process that writes a folder may call this
    (a write in progress elsewhere would lose its temporary file)."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if _TEMP.match(e.name) and e.is_file(follow_symlinks=False):
            try:
                os.unlink(e.path)
                removed.append(Path(e.path))
            except OSError:
                pass
    return removed


def _one_line(e: BaseException, limit: int = 200) -> str:
    s = " ".join(str(e).split()) or e.__class__.__name__
    return s if len(s) <= limit else s[:limit - 3] + "..."


def probe_writable(folder: PathLike) -> Optional[str]:
    """Create ``folder`` (and its parents) and write and delete a probe file in it. Returns None
    when that works, else why not (e.g. "Read-only file system"), for the caller's one-line
    error naming the folder; checked before work whose results would have nowhere to go. The
    probe is named like a temporary file (``.ganforge-write-test-<pid>.tmp``), so that one a
    SIGKILL left behind goes with the folder's other temporaries (:func:`remove_stale_temps`)."""
    folder = Path(folder)
    probe = folder / f".ganforge-write-test-{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        probe.unlink()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def check_output_file(out: PathLike, suffixes: Sequence[str], what: str, example: str,
                      flag: str = "--out") -> Path:
    """``out`` as a Path once it can be written: its suffix is one of ``suffixes``, it is not a
    folder, and its folder is writable (:func:`probe_writable`). Otherwise a
    :class:`ganforge.core.errors.UserError` naming ``flag``, the file and the fix: ``what`` says
    which files are accepted ("a .gif file"), ``example`` is a file name to suggest inside a
    folder given by mistake (``samples.png``)."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise UserError(f"{flag} '{out}': use {what}")
    if out.is_dir():
        raise UserError(f"{flag} '{out}' is a folder; give a file name in it instead, e.g. "
                        f"{flag} {out / (Path(example).stem + out.suffix.lower())}")
    why = probe_writable(out.parent)
    if why is not None:
        raise UserError(f"{flag} {out}: cannot write in {out.parent} ({why}); choose a folder "
                        f"you can write to")
    return out
