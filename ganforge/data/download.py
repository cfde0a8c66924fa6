"""Fetch one file over HTTP(S) (or file://) with checksum verification.

The bytes go to a temp file in the destination folder, are verified, and only then renamed
over the final name (``os.replace`` is atomic on one filesystem). A corrupt or interrupted
download is deleted, so the destination never holds a half-written or unverified file.
Mirrors are tried in order; the base URLs of a named dataset can be overridden with the
environment variable ``GANFORGE_MIRROR_<NAME>`` (``GANFORGE_MIRROR_FASHION_MNIST``,
space- or comma-separated base URLs), e.g. to use a local mirror or a test server.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from ganforge.data.base import DataError

DEFAULT_TIMEOUT = 30.0   # seconds per socket operation, not for the whole transfer
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file to download and how to check it.

    ``sha256`` is the digest of the bytes as published. ``payload_sha256`` (optional) is the
    digest of the gunzipped content; when given, a mirror that recompressed the file (as
    Debian did) is accepted as long as the data inside is identical.
    """

    filename: str
    sha256: Optional[str]
    payload_sha256: Optional[str] = None


class DownloadError(DataError):
    """No mirror delivered a verified copy. ``offline`` is True when every failure was a
    network failure (as opposed to a checksum mismatch)."""

    def __init__(self, message: str, offline: bool, reasons: List[str]):
        super().__init__(message)
        self.offline = offline
        self.reasons = reasons


def mirror_env_var(name: str) -> str:
    return "GANFORGE_MIRROR_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def mirrors_for(name: str, defaults: Sequence[str]) -> List[str]:
    """Base URLs for dataset ``name``: ``$GANFORGE_MIRROR_<NAME>`` if set, else ``defaults``."""
    env = os.environ.get(mirror_env_var(name), "").replace(",", " ").split()
    return env or list(defaults)


def _join(base: str, filename: str) -> str:
    return base if base.endswith(filename) else base.rstrip("/") + "/" + filename


def _sha256_file(path: Path, gunzip: bool = False) -> str:
    h = hashlib.sha256()
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _progress(total: Optional[int], desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but a progress bar is not worth failing for
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, mininterval=0.25, leave=True)


def _download_to_temp(url: str, dest_dir: Path, filename: str, timeout: float,
                      progress: bool) -> tuple[Path, str]:
    """Stream ``url`` into a temp file in ``dest_dir``; return (temp path, sha256)."""
    req = urllib.request.Request(url, headers={"User-Agent": "ganforge (python urllib)"})
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{filename}.", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    bar = None
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if progress:
                print(f"ganforge: downloading {url}", file=sys.stderr, flush=True)
            bar = _progress(total, filename, progress)
            got = 0
            for block in iter(lambda: resp.read(CHUNK), b""):
                out.write(block)
                h.update(block)
                got += len(block)
                if bar is not None:
                    bar.update(len(block))
            if total is not None and got != total:
                raise http.client.IncompleteRead(b"", total - got)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return tmp, h.hexdigest()


def _network_reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"{e.reason}"
    if isinstance(e, http.client.IncompleteRead):
        return f"connection closed early ({e.expected} bytes missing)"
    return f"{type(e).__name__}: {e}"


def fetch(remote: RemoteFile, urls: Sequence[str], dest_dir: Path, *,
          validate: Optional[Callable[[Path], None]] = None,
          timeout: float = DEFAULT_TIMEOUT, progress: bool = True) -> Path:
    """Download ``remote`` from the first base URL in ``urls`` that works into ``dest_dir``.

    The file is accepted when its SHA-256 matches ``remote.sha256``, or its gunzipped
    content matches ``remote.payload_sha256``. Only when no digest is known
    (``remote.sha256 is None``) is ``validate(path)`` used instead; it must raise DataError
    for a bad file. Raises :class:`DownloadError` when no mirror delivered a good copy.
    """
    if remote.sha256 is None and validate is None:
        raise ValueError(f"refusing to download {remote.filename} without a checksum or a "
                         f"validator")
    dest_dir = Path(dest_dir)
    created = []
    for d in reversed([dest_dir, *dest_dir.parents]):
        if not d.exists():
            created.append(d)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create download folder {dest_dir}: {e}; pass a writable "
                        f"data_dir or set $GANFORGE_CACHE") from None
    dest = dest_dir / remote.filename
    reasons: List[str] = []
    offline = True
    for base in urls:
        url = _join(base, remote.filename)
        try:
            tmp, digest = _download_to_temp(url, dest_dir, remote.filename, timeout, progress)
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout,
                ConnectionError, TimeoutError, ValueError) as e:
            reasons.append(f"{url}: {_network_reason(e)}")
            continue
        except OSError as e:  # disk full, permissions: not a mirror problem, stop here
            raise DataError(f"cannot write {dest}: {e}; free some space or pass another "
                            f"data_dir") from None
        try:
            _verify(tmp, digest, remote, url, validate)
        except DataError as e:
            tmp.unlink(missing_ok=True)
            reasons.append(str(e))
            offline = False
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; downloaded data is not secret
        os.replace(tmp, dest)
        return dest
    # Leave no empty folders behind that we created for a download that never came.
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            pass
    what = "network failure" if offline else "no verified copy"
    raise DownloadError(f"could not download {remote.filename} ({what}):\n"
                        + "\n".join(f"  - {r}" for r in reasons), offline, reasons)


def _verify(tmp: Path, digest: str, remote: RemoteFile, url: str,
            validate: Optional[Callable[[Path], None]]) -> None:
    if remote.sha256 is not None:
        if digest == remote.sha256:
            return
        if remote.payload_sha256 is not None:
            try:
                if _sha256_file(tmp, gunzip=True) == remote.payload_sha256:
                    return  # recompressed by the mirror, same data inside
            except (OSError, EOFError, zlib.error):
                pass
        raise DataError(f"{url}: checksum mismatch for {remote.filename}: got sha256 "
                        f"{digest}, expected {remote.sha256}; the download was deleted "
                        f"(corrupted in transit, or the mirror serves a different file)")
    assert validate is not None
    validate(tmp)
    # No published digest to compare with: report what we got so it can be pinned.
    print(f"ganforge: {remote.filename} sha256 {digest} (no published checksum; "
          f"validated by content)", file=sys.stderr)
