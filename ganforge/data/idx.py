"""Reader for the IDX format of MNIST-style datasets (gzip-compressed or raw).

Layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type byte, the number of
dimensions ``d``, then ``d`` big-endian uint32 sizes, then the data, big-endian, row-major.
Compression is detected from the gzip magic bytes, not from the file name. The header is
checked against the file before anything is allocated: a file that declares more than it
holds (or, gzipped, inflates to more than it declares) raises a DataError naming it.
"""
from __future__ import annotations

import gzip
import math
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Optional, Tuple

import numpy as np

from ganforge.data.base import DataError
from ganforge.data.limits import check_declared, out_of_memory

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


#: Read this much at a time (a gzip stream is never inflated further than its header says).
CHUNK = 1 << 20
#: A gzip file may inflate to at most this much beyond what its header declares.
GZIP_SLACK = 1 << 20


def _check_magic(head: bytes, where: str) -> Tuple[np.dtype, int]:
    """(dtype, number of dims) from the 4 magic bytes."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES:
        raise DataError(f"{where}: not an IDX file (bad magic number "
                        f"{head[:4].hex() or 'empty'}); expected an MNIST-style "
                        f"*-idx?-ubyte[.gz] file")
    return IDX_TYPES[head[2]], head[3]


def _parse_header(head: bytes, where: str) -> Tuple[np.dtype, Tuple[int, ...], int]:
    """(dtype, dims, header length) from the first bytes of an IDX file."""
    dtype, ndim = _check_magic(head, where)
    header = 4 + 4 * ndim
    if ndim == 0 or len(head) < header:
        raise DataError(f"{where}: truncated IDX header; delete the file so ganforge can "
                        f"fetch it again")
    dims = struct.unpack(f">{ndim}I", head[4:header])
    return dtype, dims, header


def _payload_bytes(dtype: np.dtype, dims: Tuple[int, ...]) -> int:
    return math.prod(dims) * dtype.itemsize        # Python ints: no overflow


def _truncated(where: str, dims: Tuple[int, ...], need: int, have: int, what: str) -> DataError:
    return DataError(f"{where}: truncated IDX file: header says {dims} ({need} bytes) but "
                     f"it has {have} bytes{what}; delete it so ganforge can fetch it again")


def parse_idx(data: bytes, where: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a (writable, native-endian) numpy array."""
    dtype, dims, header = _parse_header(data, where)
    need = header + _payload_bytes(dtype, dims)
    if len(data) < need:
        raise _truncated(where, dims, need, len(data), "")
    return _to_array(memoryview(data)[header:need], dtype, dims)


def _to_array(payload, dtype: np.dtype, dims: Tuple[int, ...]) -> np.ndarray:
    arr = np.frombuffer(payload, dtype=dtype, count=math.prod(dims)).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _read_upto(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes from ``f`` (fewer at the end of the stream), read in chunks so
    nothing is allocated for bytes the stream does not have."""
    parts, left = [], n
    while left > 0:
        b = f.read(min(left, CHUNK))
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


def _read_stream(f: BinaryIO, where: str, size: Optional[int]) -> np.ndarray:
    """Parse an IDX stream; ``size``: the file's length when it is not compressed (then a
    header that declares more than that is refused without reading on)."""
    head = _read_upto(f, 4)
    _, ndim = _check_magic(head, where)
    head += _read_upto(f, 4 * ndim)
    dtype, dims, header = _parse_header(head, where)
    need = _payload_bytes(dtype, dims)
    if size is not None and header + need > size:
        raise _truncated(where, dims, header + need, size, "")
    check_declared(where, need, f"the IDX header's {dims} {dtype.name} array")
    payload = _read_upto(f, need)
    if len(payload) < need:
        raise _truncated(where, dims, header + need, header + len(payload),
                         " (decompressed)" if size is None else "")
    if size is None and len(_read_upto(f, GZIP_SLACK + 1)) > GZIP_SLACK:
        raise DataError(f"{where}: decompresses to more than its IDX header declares "
                        f"({dims}, {header + need} bytes); the file is damaged or not an IDX "
                        f"file")
    return _to_array(payload, dtype, dims)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a writable native-endian array. Only
    as much is read (and inflated) as the header declares; a damaged, truncated or hostile
    file raises a DataError naming it."""
    path = Path(path)
    where = str(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise DataError(f"{path}: not a regular file")
        raw = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    with raw:
        gz = False
        try:
            gz = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            if not gz:
                return _read_stream(raw, where, os.fstat(raw.fileno()).st_size)
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _read_stream(f, where, None)
        except DataError:
            raise
        except MemoryError:
            raise out_of_memory(where) from None
        except (OSError, EOFError, zlib.error) as e:
            if gz:
                raise DataError(f"{path}: corrupt gzip file ({e}); delete it so ganforge can "
                                f"fetch it again, or reinstall the dataset") from None
            raise DataError(f"cannot read {path}: {e}") from None
        except Exception as e:  # noqa: BLE001 - any other failure is about this file's bytes
            raise DataError(f"{path}: not a readable IDX file ({type(e).__name__}: {e}); "
                            f"delete it so ganforge can fetch it again") from None


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX (gzip when ``compress`` or when the name ends in .gz).
    Used by tests and for exporting."""
    path = Path(path)
    arr = np.ascontiguousarray(array)
    for code, dt in IDX_TYPES.items():  # noqa: B007 - `code` is the one found, used after the loop
        if arr.dtype.kind == dt.kind and arr.dtype.itemsize == dt.itemsize:
            break
    else:
        raise ValueError(f"IDX cannot store dtype {arr.dtype}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + arr.astype(dt, copy=False).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
